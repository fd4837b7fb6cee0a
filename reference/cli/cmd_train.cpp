// Placeholder: replaced by `refengine train` (issue #6).
#include "commands.h"
namespace cb::cli {
void add_train_command(CLI::App&) {}
}  // namespace cb::cli
