#include <cstdio>
#include <filesystem>
#include <fstream>

#include "cb/peaks/machine_peaks.h"
#include "cb/engine/bench/batching_bench.h"
#include "cb/engine/model/engine.h"
#include "commands.h"

namespace cb::cli {

void add_bench_batching_command(CLI::App& app) {
  struct Opts {
    engine::BatchingBenchOptions b;
    std::string model, out;
  };
  auto o = std::make_shared<Opts>();
  auto* c = app.add_subcommand("bench-batching", "batching policies, paged vs contiguous KV, batch policy, 16K context");
  c->add_option("--model", o->model, "model directory (default: the embedded default model)");
  c->add_option("--backend", o->b.backend, "ref | cpu");
  c->add_option("--seed", o->b.seed, "seed of the request mixes");
  c->add_option("--requests", o->b.requests, "requests in the chat mix")->check(CLI::PositiveNumber);
  c->add_option("--long-requests", o->b.long_requests, "requests in the long-context mix")->check(CLI::PositiveNumber);
  c->add_option("--long-max-tokens", o->b.long_max_tokens, "longest prompt + output in the long-context mix")->check(CLI::PositiveNumber);
  c->add_flag("--quick", o->b.quick, "small mixes (CI)");
  c->add_option("--out", o->out, "write the result JSON here (atomically)");
  c->callback([o] {
    run_guarded("bench-batching", [&] {
      o->b.model_dir = o->model.empty() ? engine::default_model_dir() : std::filesystem::path(o->model);
      o->b.peak_gflops = bench::measure_peak_fp32_fma(0, 0.2).value;
      o->b.peak_gbs = bench::measure_memory_read_bandwidth(0, 0, 0.2).value;
      const auto r = engine::run_batching_bench(o->b, [](const std::string& m) { std::fprintf(stderr, "[bench-batching] %s\n", m.c_str()); });
      std::printf("%-12s %8s %10s %10s %10s %10s %8s %8s %6s %6s\n", "policy", "req/s", "out tok/s", "ttft p50", "e2e p50",
                  "e2e p99", "batch", "busy", "MFU", "MBU");
      for (const auto& p : r["policies"])
        std::printf("%-12s %8.2f %10.1f %8.1fms %8.1fms %8.1fms %8.1f %7.0f%% %5.1f%% %5.1f%%\n", p["policy"].get<std::string>().c_str(),
                    p["requests_per_s"].get<double>(), p["output_tokens_per_s"].get<double>(), p["ttft_ms_p50"].get<double>(),
                    p["e2e_ms_p50"].get<double>(), p["e2e_ms_p99"].get<double>(), p["mean_batch"].get<double>(),
                    100 * p["busy_fraction"].get<double>(), 100 * p.value("mfu", 0.0), 100 * p.value("mbu", 0.0));
      std::printf("greedy outputs identical across policies: %s\n", r["policies_outputs_identical"].get<bool>() ? "yes" : "NO");
      for (const auto& [dist, d] : r["kv"].items()) {
        const auto& al = d["allocators"];
        std::printf("KV peak reserved, %s-like lengths (%d requests): paged %.1f MB vs", dist.c_str(), d["requests"].get<int>(),
                    al["paged"]["all_admitted"]["kv_bytes_reserved_peak"].get<double>() / 1e6);
        for (const auto& [name, red] : d["reduction_vs"].items())
          std::printf(" %s %.1f MB (-%.1f%%)", name.c_str(), al[name]["all_admitted"]["kv_bytes_reserved_peak"].get<double>() / 1e6,
                      100 * red.get<double>());
        std::printf("; strongest baseline without future knowledge: %s\n", d["strongest_baseline"].get<std::string>().c_str());
      }
      std::printf("batch policy from the step trace: %d/%d checked steps match the article's rule\n", r["batch_policy"]["matched"].get<int>(),
                  r["batch_policy"]["checked"].get<int>());
      const auto& c16 = r["ctx16k"];
      if (c16["ok"].is_null()) std::printf("16K context: not run (%s)\n", c16["reason"].get<std::string>().c_str());
      else std::printf("16K context: %s\n", c16["ok"].get<int>() ? "completed, tokens match one-step generation" : "FAILED");
      if (!o->out.empty()) {
        const std::filesystem::path p(o->out);
        if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
        std::ofstream(p.string() + ".tmp") << r.dump(2) << "\n";
        std::filesystem::rename(p.string() + ".tmp", p);
        std::printf("wrote %s\n", o->out.c_str());
      }
    });
  });
}

}  // namespace cb::cli
