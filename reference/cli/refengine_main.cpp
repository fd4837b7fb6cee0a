// refengine: the reference engine's command line.
//   refengine init --preset tiny|llama-1b --seed S --out DIR [--dtype f32|f16|bf16]
//   refengine generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3) --max-tokens N
//                      [--temperature T --top-k K --top-p P --seed S --backend cpu|ref]
//   refengine bench --model DIR [--prefill-tokens 128 --decode-tokens 16 --out FILE]
//   refengine bench-batching [--model DIR --quick --out FILE]
#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>

#include "commands.h"

int main(int argc, char** argv) {
  CLI::App app{"refengine: reference LLaMA inference engine (claimbench)"};
  app.require_subcommand(1);
  cb::cli::add_init_command(app);
  cb::cli::add_generate_command(app);
  cb::cli::add_bench_command(app);
  cb::cli::add_bench_batching_command(app);
  cb::cli::add_serve_command(app);
  cb::cli::add_train_command(app);
  cb::cli::add_compress_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return cb::cli::exit_code();
}
