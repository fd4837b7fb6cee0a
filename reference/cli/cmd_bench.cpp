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
  auto* c = app.add_subcommand("bench", "decode and prefill speed vs the machine's limits measured in the same run");
  c->add_option("--model", o->model, "model directory (default: the embedded default model)");
  c->add_option("--backend", o->b.backend, "ref | cpu | cuda");
  c->add_option("--prefill-tokens", o->b.prefill_tokens, "prompt length for the prefill measurement")->check(CLI::PositiveNumber);
  c->add_option("--decode-tokens", o->b.decode_tokens, "decode steps per repetition")->check(CLI::PositiveNumber);
  c->add_option("--repetitions", o->b.repetitions, "repetitions")->check(CLI::PositiveNumber);
  c->add_option("--seed", o->b.seed, "prompt seed");
  c->add_flag("--bf16-activations", o->b.bf16_activations, "bf16 x bf16 matmuls (bf16 weights only); prefill is divided by the bf16 dot-product peak");
  c->add_flag("--step-graphs", o->b.step_graphs,
              "replay decode steps from recordings (CUDA graphs; backends that cannot record run as usual and the JSON says why)");
  c->add_option("--batch-sizes", o->b.batch_sizes, "batched decode at these batch sizes, on the roofline (e.g. 1,4,16,64)")->delimiter(',');
  c->add_option("--batch-steps", o->b.batch_steps, "decode steps timed per batch size and repetition")->check(CLI::PositiveNumber);
  c->add_flag("--thread-scaling", o->b.thread_scaling, "prefill and decode at 1 thread and at all threads");
  c->add_option("--overhead-batches", o->b.overhead_batches, "serving-engine per-step overhead at these decode batch sizes (e.g. 1,64)")->delimiter(',');
  c->add_flag("--op-profile", o->b.op_profile, "per-op time of decode steps at batch 1 and each --batch-sizes entry (where a step's time goes)");
  c->add_option("--out", o->out, "write the result JSON here (atomically)");
  c->callback([o] {
    run_guarded("bench", [&] {
      o->b.model_dir = o->model.empty() ? engine::default_model_dir() : std::filesystem::path(o->model);
      const auto r = engine::run_engine_bench(o->b, [](const std::string& m) { std::fprintf(stderr, "[bench] %s\n", m.c_str()); });
      const auto& pk = r["peaks"];
      std::printf("model %s (%s, %.2f GB of weights), backend %s\n", o->b.model_dir.filename().c_str(),
                  r["model"]["weight_dtype"].get<std::string>().c_str(), r["model"]["weight_bytes"].get<double>() / 1e9,
                  r["backend"].get<std::string>().c_str());
      if (!pk.is_null())  // null on a device backend: the host's peaks bound nothing there
        std::printf("machine: peak fp32 FMA %.1f GFLOP/s (%s), memory triad %.1f GB/s, read %.1f GB/s\n",
                    pk["fp32_fma"]["value"].get<double>(), pk["fp32_fma"]["method"].get<std::string>().c_str(),
                    pk["triad"]["value"].get<double>(), pk["mem_read"]["value"].get<double>());
      if (r.contains("limits_not_applicable")) {
        // A device backend: tokens/s and GFLOP/s only (the host CPU's peaks were not measured).
        std::printf("prefill %d tokens: %.1f GFLOP/s median\ndecode batch 1: %.2f tokens/s median\n(%s)\n",
                    r["params"]["prefill_tokens"].get<int>(), r["prefill"]["gflops"]["median"].get<double>(),
                    r["decode"]["tokens_per_s"]["median"].get<double>(), r["limits_not_applicable"].get<std::string>().c_str());
      } else {
        std::printf("prefill %d tokens: %.1f GFLOP/s median -> %.0f%% of peak %s (target >= 50%%)\n",
                    r["params"]["prefill_tokens"].get<int>(), r["prefill"]["gflops"]["median"].get<double>(),
                    100 * r["ratios"]["prefill_peak_fraction"].get<double>(),
                    r["prefill"]["peak"] == "bf16_dot" ? "BF16 dot" : "FP32 FMA");
        std::printf("decode batch 1: %.2f tokens/s median, %.0f%% of the triad bandwidth, each step against the triad pass right "
                    "before it (target >= 80%%); %.0f%% of the repetition's best triad pass, %.0f%% of the read bandwidth measured "
                    "before it (medians over the repetitions)\n",
                    r["decode"]["tokens_per_s"]["median"].get<double>(), 100 * r["ratios"]["decode_triad_paired_fraction"].get<double>(),
                    100 * r["ratios"]["decode_triad_fraction"].get<double>(), 100 * r["ratios"]["decode_bw_fraction"].get<double>());
      }
      if (r.contains("batched_decode"))
        for (const auto& row : r["batched_decode"]["rows"]) {
          if (row["roofline_fraction"].is_null()) {
            std::printf("decode batch %3d: %7.1f tokens/s\n", row["batch"].get<int>(), row["tokens_per_s"]["median"].get<double>());
            continue;
          }
          std::printf("decode batch %3d: %7.1f tokens/s  MFU %.2f  MBU %.2f  %s-bound, %.0f%% of the roofline bound\n", row["batch"].get<int>(),
                      row["tokens_per_s"]["median"].get<double>(), row["mfu"].get<double>(), row["mbu"].get<double>(),
                      row["bound"].get<std::string>().c_str(), 100 * row["roofline_fraction"].get<double>());
        }
      if (r.contains("thread_scaling")) {
        const auto& ts = r["thread_scaling"];
        std::printf("threads 1 -> %d: prefill x%.2f, decode x%.2f (FMA peak x%.2f, read bandwidth x%.2f)\n",
                    ts["rows"].back()["threads"].get<int>(), ts["prefill_speedup"].get<double>(), ts["decode_speedup"].get<double>(),
                    ts["fma_peak_speedup"].get<double>(), ts["read_bandwidth_speedup"].get<double>());
      }
      if (r.contains("serving_overhead"))
        for (const auto& row : r["serving_overhead"]["rows"])
          if (row.contains("overhead_fraction"))
            std::printf("serving engine at batch %d: step %.2f ms, forward %.2f ms -> overhead %.1f%% (target < 10%%)\n",
                        row["batch"].get<int>(), row["step_ms_mean"].get<double>(), row["forward_ms_mean"].get<double>(),
                        100 * row["overhead_fraction"].get<double>());
      // Decode rows say how close the matmuls stream to the read bandwidth, the prefill row how close
      // they compute to the peak prefill is divided by.
      const auto print_profile = [](const nlohmann::json& row, const std::string& what) {
        std::printf("op profile, %s %.2f ms = matmuls %.2f ms (%.0f%%", what.c_str(), row["step_ms"].get<double>(),
                    row["matmul_ms"].get<double>(), 100 * row["matmul_fraction"].get<double>());
        if (row.contains("matmul_peak_fraction"))
          std::printf(", %.0f GFLOP/s = %.0f%% of the %s peak", row["matmul_gflops"].get<double>(),
                      100 * row["matmul_peak_fraction"].get<double>(),
                      row["peak"] == "bf16_dot" ? "BF16 dot" : "FP32 FMA");
        else if (row.contains("matmul_read_bandwidth_fraction"))
          std::printf(", %.1f GB/s = %.0f%% of the read bandwidth", row["matmul_gbs"].get<double>(),
                      100 * row["matmul_read_bandwidth_fraction"].get<double>());
        std::printf(") + other ops %.2f ms + outside the ops %.2f ms\n", row["ops_ms"].get<double>() - row["matmul_ms"].get<double>(),
                    row["outside_ops_ms"].get<double>());
        int shown = 0;
        for (const auto& op : row["ops"]) {
          if (++shown > 8) break;
          std::printf("  %5.1f%% %8.3f ms  %-12s %s", 100 * op["step_fraction"].get<double>(), op["ms_per_step"].get<double>(),
                      op["op"].get<std::string>().c_str(), op["shape"].get<std::string>().c_str());
          if (op.contains("gbs")) std::printf("  %.1f GB/s", op["gbs"].get<double>());
          if (op.contains("gflops")) std::printf("  %.0f GFLOP/s", op["gflops"].get<double>());
          std::printf("\n");
        }
      };
      if (r.contains("op_profile")) {
        for (const auto& row : r["op_profile"]["rows"]) print_profile(row, "decode batch " + std::to_string(row["batch"].get<int>()) + ": step");
        if (r["op_profile"].contains("prefill"))
          print_profile(r["op_profile"]["prefill"], "prefill " + std::to_string(r["op_profile"]["prefill"]["tokens"].get<int>()) + " tokens:");
      }
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
