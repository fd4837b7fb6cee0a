// Placeholder: replaced by `refengine quantize` and `refengine prune` (issue #6).
#include "commands.h"
namespace cb::cli {
void add_compress_commands(CLI::App&) {}
}  // namespace cb::cli
