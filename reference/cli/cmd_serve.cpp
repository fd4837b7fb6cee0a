// Placeholder: replaced by the OpenAI-compatible server command (issue #5).
#include "commands.h"
namespace cb::cli {
void add_serve_command(CLI::App&) {}
}  // namespace cb::cli
