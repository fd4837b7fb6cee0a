#pragma once
#include <CLI/CLI.hpp>

namespace cb::cli {
// Each adds a subcommand whose callback runs it; errors print "refengine <cmd>: <message>" to
// stderr and set a non-zero exit code (no exception escapes to the user).
void add_init_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_bench_batching_command(CLI::App& app);
void add_serve_command(CLI::App& app);     // cmd_serve.cpp (issue #5)
void add_train_command(CLI::App& app);     // cmd_train.cpp (issue #6)
void add_compress_commands(CLI::App& app); // cmd_compress.cpp: quantize, prune (issue #6)
int exit_code();
void set_exit_code(int code);
// Runs fn, turning exceptions into a message naming the command and exit code 1.
void run_guarded(const char* command, const std::function<void()>& fn);
}  // namespace cb::cli
