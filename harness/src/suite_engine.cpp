// The engine suite: offline measurements of the serving engine (continuous batching over the paged
// KV cache) on seeded request mixes: policies compared, paged vs contiguous KV reservation
// (`kv-cut`), the batch-size policy on a scripted queue (`batch-policy`), a 16K-token request
// (`ctx-16k`).
#include <cmath>

#include "cb/bench/machine_peaks.h"
#include "cb/engine/batching_bench.h"
#include "cb/harness/suites.h"

namespace cb::harness {
using nlohmann::json;

SuiteResult run_engine_suite(const SuiteContext& ctx) {
  SuiteResult r;
  r.suite = "engine";
  engine::BatchingBenchOptions o;
  o.model_dir = ctx.model_dir;
  o.seed = ctx.seed;
  o.quick = ctx.quick;
  if (ctx.progress) ctx.progress("measuring machine peaks for MFU / MBU");
  o.peak_gflops = bench::measure_peak_fp32_fma(0, 0.2).value;
  o.peak_gbs = bench::measure_memory_read_bandwidth(0, 0, 0.2).value;
  const json b = engine::run_batching_bench(o, ctx.progress);
  r.params = b["params"];
  r.params["model"] = b["model"];
  r.params["peak_fp32_gflops"] = o.peak_gflops;
  r.params["peak_mem_read_gbs"] = o.peak_gbs;

  const json model = {{"model", b["model"]}};
  json rows = json::array();
  double static_tps = 0, continuous_tps = 0;
  for (const auto& p : b["policies"]) {
    const std::string pol = p["policy"];
    const std::string k = "engine.batching." + pol;
    rows.push_back(p);
    r.add({k + ".output_tokens_per_s", p["output_tokens_per_s"], "tokens/s", Direction::HigherIsBetter, NoiseClass::Timing, {},
           model, "offline: the whole seeded chat mix submitted at t=0"});
    r.add({k + ".e2e_ms_p99", p["e2e_ms_p99"], "ms", Direction::LowerIsBetter, NoiseClass::Timing, {}, model, ""});
    r.add({k + ".busy_fraction", p["busy_fraction"], "fraction", Direction::HigherIsBetter, NoiseClass::Ratio, {}, model,
           "time in the forward pass / wall time"});
    if (p.contains("mfu"))
      r.add({k + ".mfu", p["mfu"], "fraction", Direction::HigherIsBetter, NoiseClass::Ratio, {}, model,
             "matmul FLOP/s / measured peak FP32 FMA"});
    if (p.contains("mbu"))
      r.add({k + ".mbu", p["mbu"], "fraction", Direction::HigherIsBetter, NoiseClass::Ratio, {}, model,
             "(weights per step + KV attended) bytes/s / measured memory read bandwidth"});
    if (pol == "static") static_tps = p["output_tokens_per_s"];
    if (pol == "continuous") continuous_tps = p["output_tokens_per_s"];
  }
  r.tables["policies"] = rows;
  if (static_tps > 0)
    r.add({"engine.batching.continuous_vs_static.throughput", continuous_tps / static_tps, "x", Direction::HigherIsBetter,
           NoiseClass::Ratio, {}, model, "offline, no latency SLO (the batch-gain claim needs the load suite's SLO run)"});
  r.add({"engine.batching.outputs_identical", b["policies_outputs_identical"].get<bool>() ? 1.0 : 0.0, "bool",
         Direction::HigherIsBetter, NoiseClass::Exact, {}, model, "greedy tokens equal across all policies"});

  const json& kv = b["kv"];
  const json kvp = {{"model", b["model"]}, {"requests", kv["requests"]}, {"max_tokens_per_request", kv["max_tokens_per_request"]}};
  r.add({"kv.paged_vs_contiguous.reduction", kv["reduction"], "fraction", Direction::HigherIsBetter, NoiseClass::Exact, {}, kvp,
         "1 - peak KV bytes reserved (paged, 16-token blocks) / (contiguous max-context reservation), same long-context mix"});
  r.add({"kv.paged.reserved_peak_bytes", kv["paged_reserved_peak"], "bytes", Direction::LowerIsBetter, NoiseClass::Exact, {}, kvp, ""});
  r.add({"kv.contiguous.reserved_peak_bytes", kv["contiguous_reserved_peak"], "bytes", Direction::LowerIsBetter, NoiseClass::Exact, {},
         kvp, ""});
  r.add({"kv.paged.waste_fraction", kv["paged_waste_fraction"], "fraction", Direction::LowerIsBetter, NoiseClass::Exact, {}, kvp,
         "reserved but unused at peak"});
  r.add({"kv.contiguous.waste_fraction", kv["contiguous_waste_fraction"], "fraction", Direction::LowerIsBetter, NoiseClass::Exact,
         {}, kvp, "reserved but unused at peak"});
  r.tables["kv"] = json::array({{{"allocator", "paged"}, {"reserved_peak_bytes", kv["paged_reserved_peak"]},
                                 {"used_peak_bytes", kv["paged_used_peak"]}, {"pool_bytes_allocated", kv["pool_bytes_allocated"]}},
                                {{"allocator", "contiguous"}, {"reserved_peak_bytes", kv["contiguous_reserved_peak"]},
                                 {"used_peak_bytes", kv["contiguous_used_peak"]}, {"pool_bytes_allocated", kv["pool_bytes_allocated"]}}});

  r.add({"scheduler.batch_policy.conformance", b["batch_policy"]["conformance"], "fraction", Direction::HigherIsBetter,
         NoiseClass::Exact, {}, {{"checked", b["batch_policy"]["checked"]}}, "queue-table policy on the scripted queue"});
  r.tables["batch_policy"] = b["batch_policy"]["script"];

  const json& c16 = b["ctx16k"];
  if (!c16["ok"].is_null())
    r.add({"engine.ctx16k.ok", c16["ok"], "bool", Direction::HigherIsBetter, NoiseClass::Exact, {}, model,
           "a 16384-token request completes through chunked prefill over the paged cache with the same tokens as "
           "one-step generation; the attention op itself is checked against ref at 16K in the conformance suite"});
  else
    r.params["ctx16k_not_run"] = c16["reason"];
  return r;
}

}  // namespace cb::harness
