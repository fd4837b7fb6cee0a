// The kernels suite on `--backend cuda`: runs cb_cuda_bench (the device's own limits measured on
// the GPU in the same run, the cuda backend's matmul at llama-1b shapes in f32 / bf16 / W8A8, the
// best cuBLASLt algorithm beside it, paged decode attention against the copy bandwidth) and turns
// its JSON into the suite's metrics and the claims' headline ratios. The load suite asks the same
// binary for the device's limits alone (its MFU / MBU denominators on a GPU).
#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <tuple>

#include "cb/harness/core/process.h"
#include "cb/harness/suites/kernel_metrics.h"
#include "cb/harness/suites/suites.h"

namespace cb::harness {
namespace fs = std::filesystem;
using nlohmann::json;

fs::path cuda_bench_binary() {
#ifdef CB_CUDA_BENCH_PATH
  const fs::path p = CB_CUDA_BENCH_PATH;
  if (fs::exists(p)) return p;
#endif
  return {};
}

namespace {

constexpr Direction Hi = Direction::HigherIsBetter;

double num(const json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_number() ? j[key].get<double>() : std::nan("");
}

std::vector<double> chunks(const json& timing) {
  std::vector<double> v;
  if (timing.is_object() && timing.contains("chunk_ms") && timing["chunk_ms"].is_array())
    for (const auto& x : timing["chunk_ms"])
      if (x.is_number() && x.get<double>() > 0) v.push_back(x.get<double>());
  return v;
}

// Same-run ratio samples of two timings taken chunk by chunk: chunk i of `den` / chunk i of
// `num` (a faster numerator gives > 1); the ratio of the medians when neither has chunks.
std::vector<double> chunk_ratios(const json& den, const json& num, double median_ratio) {
  const std::vector<double> d = chunks(den), n = chunks(num);
  std::vector<double> s;
  for (size_t i = 0; i < std::min(d.size(), n.size()); ++i) s.push_back(d[i] / n[i]);
  if (s.empty()) s.push_back(median_ratio);
  return s;
}

// "ok" cases of cb_cuda_bench's matmul section by (variant, shape, M).
using CaseKey = std::tuple<std::string, std::string, int64_t>;
std::map<CaseKey, json> matmul_cases(const json& cb) {
  std::map<CaseKey, json> out;
  if (!cb.contains("matmul") || !cb["matmul"].contains("cases")) return out;
  for (const auto& c : cb["matmul"]["cases"])
    if (c.value("status", "") == "ok") out[{c.value("variant", ""), c.value("shape", ""), c.value("M", int64_t(0))}] = c;
  return out;
}

}  // namespace

void add_cuda_bench_metrics(const json& cb, SuiteResult& r) {
  r.params["device"] = cb.value("device", json::object());
  r.params["cuda_bench_params"] = cb.value("params", json::object());
  if (cb.contains("errors") && cb["errors"].is_array())
    for (const auto& e : cb["errors"]) r.tables["errors"].push_back({{"error", e}});

  // The device's limits, each measured on it in this run (best repetition: a slower one is the
  // machine or a neighbour, never the hardware being faster than it is).
  const json peaks = cb.value("peaks", json::object());
  const json copy = peaks.value("d2d_copy", json::object());
  if (const double gbs = num(copy, "read_plus_written_gbps_best"); gbs > 0)
    r.add({"kernels.peak.gpu.copy_gbs", gbs, "GB/s", Hi, NoiseClass::Timing, {gbs, num(copy, "read_plus_written_gbps_median")},
           {{"bytes", copy.value("bytes", json())}, {"method", copy.value("method", "")}},
           "device-to-device copy, bytes read + written per second (the limit attention and GEMV are divided by)"});
  const json gemm = peaks.value("gemm", json::object());
  for (const auto& [type, key] : std::vector<std::pair<std::string, std::string>>{
           {"bf16", "bf16_tflops"}, {"int8_imma", "int8_tops"}, {"tf32", "tf32_tflops"}, {"fp32", "fp32_tflops"}}) {
    const json g = gemm.value(type, json::object());
    if (const double t = num(g, "best_tflops"); t > 0)
      r.add({"kernels.peak.gpu.gemm_" + key, t, type == "int8_imma" ? "TOP/s" : "TFLOP/s", Hi, NoiseClass::Timing, {t},
             {{"m", g.value("m", json())}, {"n", g.value("n", json())}, {"k", g.value("k", json())},
              {"algorithms_timed", g.contains("algos") ? g["algos"].size() : 0}},
             "raw cuBLASLt GEMM, best of the heuristic's algorithms, each timed between CUDA events"});
  }

  // The backend's matmul per case, and same-run ratios per shape and row count. Each sample is
  // one chunk of back-to-back calls: chunk i of the denominator / chunk i of the numerator.
  const auto cases = matmul_cases(cb);
  json rows = json::array();
  for (const auto& [k, c] : cases) {
    const auto& [variant, shape, m] = k;
    rows.push_back({{"variant", variant}, {"shape", shape}, {"M", m}, {"N", c.value("N", json())}, {"K", c.value("K", json())},
                    {"median_ms", c.value("median_ms", json())}, {"tflops", c.value("tflops", json())},
                    {"weight_gbps", c.value("weight_gbps", json())}});
  }
  r.tables["cuda_matmul"] = rows;
  auto ratio = [&](const std::string& key, const std::string& num_variant, const std::string& shape, int64_t m, const std::string& note) {
    auto a = cases.find({num_variant, shape, m}), b = cases.find({"f32", shape, m});
    if (a == cases.end() || b == cases.end()) return false;
    const double med_a = num(a->second, "median_ms"), med_b = num(b->second, "median_ms");
    if (!(med_a > 0 && med_b > 0)) return false;
    const std::vector<double> s = chunk_ratios(b->second, a->second, med_b / med_a);
    r.add({key, med_b / med_a, "x", Hi, NoiseClass::Ratio, s,
           {{"numerator", "cuda " + num_variant}, {"denominator", "cuda f32"}, {"shape", shape}, {"M", m},
            {"N", a->second.value("N", json())}, {"K", a->second.value("K", json())},
            {"samples", "one per chunk of back-to-back calls: f32 per-call time / " + num_variant + " per-call time"}},
           note});
    return true;
  };
  std::set<std::pair<std::string, int64_t>> shape_m;
  for (const auto& [k, c] : cases) shape_m.insert({std::get<1>(k), std::get<2>(k)});
  for (const auto& [shape, m] : shape_m) {
    const std::string sfx = shape + ".M" + std::to_string(m);
    ratio("kernels.matmul.bf16_vs_f32." + sfx, "bf16_act_bf16", shape, m,
          "cuda backend BF16 tensor-core GEMM (x rounded to bf16 inside the op) vs its FP32 GEMM (cuBLASLt, FP32 compute)");
    ratio("kernels.matmul.int8_vs_f32." + sfx, "w8a8", shape, m,
          "cuda backend W8A8 (x quantized per token, IMMA, dequantized, all inside the op) vs its FP32 GEMM");
    ratio("kernels.matmul.bf16w_vs_f32." + sfx, "bf16_weight_only", shape, m,
          "bf16-stored weights with f32 activations vs f32 weights (memory-bound at small M)");
  }
  // The claims read the q/o projection shape (K = N = 2048, as on the CPU) at M = 4096: a
  // 4096-token prefill, the first row count measured where these GEMMs are compute-bound on a
  // GPU (at M = 128 one call is a few microseconds: launch and latency, not the matrix units).
  // The M = 128 ratios stay beside them under kernels.matmul.*.q_o.M128.
  auto headline = [&](const std::string& from, const std::string& key, const std::string& note) {
    if (const Metric* m = r.find(from)) {
      Metric c = *m;
      c.key = key;
      c.note = note;
      r.add(c);
      return;
    }
    r.params["not_measured"][key] = from + " was not measured in this run (see the errors table and cb_cuda_bench's log)";
  };
  headline("kernels.matmul.bf16_vs_f32.q_o.M4096", "kernels.matmul.bf16_vs_f32.speedup",
           "cuda: BF16 tensor-core GEMM / FP32 GEMM of the cuda backend at M=4096, K=N=2048 (q/o projection, compute-bound)");
  headline("kernels.matmul.int8_vs_f32.q_o.M4096", "kernels.matmul.int8_vs_f32.speedup",
           "cuda: W8A8 INT8 (IMMA) GEMM / FP32 GEMM of the cuda backend at M=4096, K=N=2048 (q/o projection, compute-bound)");

  // The backend against the best cuBLASLt algorithm for the same GEMM (issue target 0.9).
  const json ref = cb.value("cublaslt_reference", json::object());
  for (const auto& e : ref.value("backend_bf16_vs_cublaslt_best", json::array())) {
    const double f = num(e, "fraction");
    if (!(f > 0)) continue;
    const std::string key = "kernels.cuda.matmul.bf16_vs_cublaslt_best." + e.value("shape", std::string("?")) + ".M" +
                            std::to_string(e.value("M", int64_t(0)));
    r.add({key, f, "fraction", Hi, NoiseClass::Ratio, {f},
           {{"N", e.value("N", json())}, {"K", e.value("K", json())}, {"target", e.value("target", json())}},
           "cuda backend BF16 matmul rate / the best cuBLASLt algorithm's rate on the same shape: " + e.value("note", std::string())});
  }
  for (const auto& e : ref.value("int8_speedup", json::array())) {
    const double x = num(e, "backend_speedup");
    if (!(x > 0)) continue;
    r.add({"kernels.cuda.matmul.w8a8_vs_bf16." + e.value("shape", std::string("?")) + ".M" + std::to_string(e.value("M", int64_t(0))), x, "x",
           Hi, NoiseClass::Ratio, {x},
           {{"cublaslt_int8_vs_bf16", e.value("cublaslt_speedup", json())}, {"target", e.value("target", json())}},
           "cuda backend W8A8 rate / its BF16 rate, same shape (raw cuBLASLt IMMA / BF16 in params)"});
  }

  // Decode attention: bandwidth against the copy limit, paged against contiguous.
  const json att = cb.value("attention", json::object());
  json arows = json::array();
  for (const auto& c : att.value("cases", json::array())) {
    const int64_t B = c.value("B", int64_t(0)), L = c.value("L", int64_t(0));
    const json paged = c.value("paged", json::object()), contig = c.value("contiguous", json::object());
    arows.push_back({{"B", B}, {"L", L}, {"paged_gbps", paged.value("gbps", json())}, {"paged_fraction", paged.value("fraction_of_limit", json())},
                     {"contiguous_gbps", contig.value("gbps", json())}});
    const std::string sfx = "B" + std::to_string(B) + ".ctx" + std::to_string(L);
    if (const double f = num(paged, "fraction_of_limit"); f > 0)
      r.add({"kernels.cuda.attention.decode." + sfx + ".copy_fraction", f, "fraction", Hi, NoiseClass::Ratio, {f},
             {{"gbps", paged.value("gbps", json())}, {"limit_gbps", att.value("limit_gbps", json())}, {"target", att.value("target", json())}},
             "paged decode attention: K/V bytes read per second / the device's copy bandwidth (read + written) of this run"});
    const double pm = num(paged, "median_ms"), cm = num(contig, "median_ms");
    if (pm > 0 && cm > 0) {
      const std::vector<double> s = chunk_ratios(contig, paged, cm / pm);
      r.add({"kernels.cuda.attention.paged_vs_contiguous." + sfx, cm / pm, "x", Hi, NoiseClass::Ratio, s, {{"B", B}, {"L", L}},
             "contiguous time / paged time, same kernel, shuffled blocks (1.0 = no paging overhead)"});
    }
  }
  r.tables["cuda_attention"] = arows;
}

SuiteResult run_kernels_suite_cuda(const SuiteContext& ctx) {
  SuiteResult r;
  r.suite = "kernels";
  const fs::path bin = cuda_bench_binary();
  if (bin.empty()) {
    r.status = SuiteStatus::Skipped;
    r.reason = "--backend cuda: cb_cuda_bench is not in this build (the cuda preset builds it: cmake --preset cuda)";
    return r;
  }
  fs::create_directories(ctx.run_dir / "raw");
  const fs::path raw = ctx.run_dir / "raw" / "cuda_bench.json", log = ctx.run_dir / "raw" / "cuda_bench.log";
  // The bench bounds itself (cases past the budget are recorded as skipped); the timeout is the
  // backstop for a hung device.
  const double budget = ctx.quick ? 40 : 80;
  std::vector<std::string> argv = {bin.string(), "--json", raw.string(), "--budget-s", std::to_string(int(budget)),
                                   "--seed", std::to_string(uint32_t(ctx.seed))};
  if (ctx.quick) argv.push_back("--quick");
  r.params = {{"binary", bin.string()}, {"backend", "cuda"}, {"quick", ctx.quick}, {"budget_s", budget},
              {"raw_output", "raw/cuda_bench.json"}, {"log", "raw/cuda_bench.log"}};
  if (ctx.progress) ctx.progress("running cb_cuda_bench (budget " + std::to_string(int(budget)) + " s)");
  const ProcessResult pr = run_process(argv, budget + 120, log, {}, /*own_group=*/false);
  if (pr.exit_code == 77) {
    r.status = SuiteStatus::Skipped;
    std::string why = "no usable CUDA device";
    std::ifstream f(log);
    for (std::string line; std::getline(f, line);)
      if (line.rfind("SKIP: ", 0) == 0) why = line.substr(6);
    r.reason = "--backend cuda: cb_cuda_bench cannot run here: " + why;
    return r;
  }
  if (pr.exit_code != 0 || !fs::exists(raw)) {
    r.status = pr.timed_out ? SuiteStatus::Timeout : SuiteStatus::Error;
    r.reason = "cb_cuda_bench " + pr.describe() + " (log: raw/cuda_bench.log)";
    return r;
  }
  add_cuda_bench_metrics(read_benchmark_json(raw), r);
  return r;
}

std::optional<DevicePeaks> measure_cuda_peaks(const fs::path& raw_json, std::string& why) {
  const fs::path bin = cuda_bench_binary();
  if (bin.empty()) {
    why = "cb_cuda_bench is not in this build, so the GPU's limits cannot be measured";
    return std::nullopt;
  }
  fs::path log = raw_json;
  log.replace_extension(".log");
  const ProcessResult pr = run_process({bin.string(), "--peaks-only", "--json", raw_json.string(), "--budget-s", "30"}, 150, log, {}, false);
  if (pr.exit_code != 0 || !fs::exists(raw_json)) {
    why = "cb_cuda_bench --peaks-only " + pr.describe() + " (" + log.filename().string() + ")";
    return std::nullopt;
  }
  const json cb = read_benchmark_json(raw_json);
  const json peaks = cb.value("peaks", json::object());
  DevicePeaks p;
  p.copy_gbs = num(peaks.value("d2d_copy", json::object()), "read_plus_written_gbps_best");
  const json gemm = peaks.value("gemm", json::object());
  p.fp32_gflops = 1e3 * num(gemm.value("fp32", json::object()), "best_tflops");
  p.bf16_gflops = 1e3 * num(gemm.value("bf16", json::object()), "best_tflops");
  p.source = "cb_cuda_bench --peaks-only on " + cb.value("device", json::object()).value("name", std::string("the GPU")) +
             ": device-to-device copy (read + written) and raw cuBLASLt FP32 / BF16 GEMMs, best algorithm";
  if (!(p.copy_gbs > 0) || !(p.fp32_gflops > 0)) {
    why = "cb_cuda_bench --peaks-only measured no copy bandwidth or FP32 GEMM rate (errors: " + cb.value("errors", json::array()).dump() + ")";
    return std::nullopt;
  }
  return p;
}

}  // namespace cb::harness
