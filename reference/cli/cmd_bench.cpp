#include <cstdio>
#include <filesystem>
#include <fstream>

#include "cb/engine/model/engine.h"
#include "cb/engine/bench/engine_bench.h"
#include "commands.h"

namespace cb::cli {

void add_bench_command(CLI::App& app) {
  struct Opts {
    engine::EngineBenchOptions b;
    std::string model, out;
  };
  auto o = std::make_shared<Opts>();
  auto* c = app.add_subcommand("bench", "batch-1 decode and prefill speed vs the machine's measured limits");
  c->add_option("--model", o->model, "model directory (default: the embedded default model)");
  c->add_option("--backend", o->b.backend, "ref | cpu | cuda");
  c->add_option("--prefill-tokens", o->b.prefill_tokens, "prompt length for the prefill measurement")->check(CLI::PositiveNumber);
  c->add_option("--decode-tokens", o->b.decode_tokens, "decode steps per repetition")->check(CLI::PositiveNumber);
  c->add_option("--repetitions", o->b.repetitions, "repetitions")->check(CLI::PositiveNumber);
  c->add_option("--seed", o->b.seed, "prompt seed");
  c->add_option("--out", o->out, "write the result JSON here (atomically)");
  c->callback([o] {
    run_guarded("bench", [&] {
      o->b.model_dir = o->model.empty() ? engine::default_model_dir() : std::filesystem::path(o->model);
      const auto r = engine::run_engine_bench(o->b, [](const std::string& m) { std::fprintf(stderr, "[bench] %s\n", m.c_str()); });
      const auto& pk = r["peaks"];
      std::printf("model %s (%s, %.2f GB of weights), backend %s\n", o->b.model_dir.filename().c_str(),
                  r["model"]["weight_dtype"].get<std::string>().c_str(), r["model"]["weight_bytes"].get<double>() / 1e9,
                  r["backend"].get<std::string>().c_str());
      std::printf("machine: peak fp32 FMA %.1f GFLOP/s (%s), memory read %.1f GB/s\n", pk["fp32_fma"]["value"].get<double>(),
                  pk["fp32_fma"]["method"].get<std::string>().c_str(), pk["mem_read"]["value"].get<double>());
      std::printf("prefill %d tokens: %.1f GFLOP/s median -> %.0f%% of peak FP32 FMA (target >= 50%%)\n",
                  r["params"]["prefill_tokens"].get<int>(), r["prefill"]["gflops"]["median"].get<double>(),
                  100 * r["ratios"]["prefill_peak_fraction"].get<double>());
      std::printf("decode batch 1: %.2f tokens/s median, %.0f%% of the memory read bandwidth measured before each "
                  "repetition (median; target >= 80%%)\n",
                  r["decode"]["tokens_per_s"]["median"].get<double>(), 100 * r["ratios"]["decode_bw_fraction"].get<double>());
      if (!o->out.empty()) {
        const std::filesystem::path p(o->out);
        if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
        const auto tmp = p.string() + ".tmp";
        std::ofstream(tmp) << r.dump(2) << "\n";
        std::filesystem::rename(tmp, p);
        std::printf("wrote %s\n", o->out.c_str());
      }
    });
  });
}

}  // namespace cb::cli
