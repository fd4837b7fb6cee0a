// The kernels suite: runs the Google Benchmark binary (machine peaks + every op), ingests its JSON,
// adds roofline fractions against the peaks measured in the same run and same-run ratios (stable
// on shared machines), then measures the engine's batch-1 decode and prefill on the run's model.
#include <algorithm>
#include <cstdlib>
#include <cmath>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <sstream>

#include <omp.h>

#include "cb/peaks/machine_peaks.h"
#include "cb/harness/core/engine_access.h"
#include "cb/harness/suites/likwid.h"
#include "cb/harness/suites/kernel_metrics.h"
#include "cb/harness/core/process.h"
#include "cb/harness/suites/suites.h"

namespace cb::harness {
namespace fs = std::filesystem;
using nlohmann::json;

fs::path kernel_bench_binary() {
#ifdef CB_KERNEL_BENCH_PATH
  const fs::path p = CB_KERNEL_BENCH_PATH;
  if (fs::exists(p)) return p;
#endif
  return {};
}

namespace {

// The quick subset: peaks, the decode- and prefill-sized matmuls of one llama-1b shape in every
// precision (f32, weight-only bf16/int8, W8A8, bf16 dot, 2:4 sparse) with the oneDNN peers, the
// cpu-vs-ref pair, and one decode-sized case of every other op.
// Kernel names end in "/real_time" (the ops are multi-threaded, so they are timed in real time).
const char* kQuickFilter =
    "^BM_(peak_fp32_fma|peak_bf16_dot|peak_int8_dot|mem_read_bw|mem_triad_bw)"
    "|^matmul/(cpu|ref)/f32/K512_N512/M8/"
    "|^matmul/cpu/(f32|f32rowmajor|bf16|int8pc|w8a8|w8a8rowmajor|bf16dot|sparse24)/K2048_N2048/M(1|128)/"
    "|^matmul/onednn_(sgemm|s8s8|matmul)/[a-z0-9]+/K2048_N2048/M(1|128)/"
    "|^(rmsnorm|rope|silu_mul|add|softmax|kv_store)/cpu/f32/[^/]+/M1/"
    "|^embedding/cpu/f32/[^/]+/M1/"
    "|^attention/cpu/f32/[^/]+/decode_ctx512/M1/"
    "|^attention/cpu/f32/[^/]+/decode_ctx4096_S8/M8/"
    "|^paired/attention/cpu/f32/[^/]+/decode_ctx4096_S8/M8/";

// "matmul/cpu/f32/K2048_N2048/M1/real_time" -> "matmul/cpu/f32/K2048_N2048/M1", and a
// benchmark's own minimum time ("/min_time:0.250", before the timing suffix) goes too.
std::string strip_suffix(std::string name) {
  for (const char* suffix : {"/real_time", "/manual_time", "/process_time"}) {
    const std::string sfx = suffix;
    if (name.size() > sfx.size() && name.compare(name.size() - sfx.size(), sfx.size(), sfx) == 0) name.resize(name.size() - sfx.size());
  }
  // A benchmark's own run length ("/min_time:0.250", "/iterations:32") is not part of its name.
  for (const char* tag : {"/min_time:", "/iterations:"}) {
    const size_t at = name.rfind(tag);
    if (at != std::string::npos && name.find('/', at + 1) == std::string::npos) name.resize(at);
  }
  return name;
}

struct BenchSeries {
  std::string name;
  std::vector<double> gflops, gbs, gops, ns;
  std::vector<double> paired_ratio;  // paired/ benchmarks: time(b) / time(a) of each repetition
  json counters = json::object();
  std::string label;
};

double counter(const json& e, const char* key) {
  return e.contains(key) && e[key].is_number() ? e[key].get<double>() : std::nan("");
}

double to_ns(double t, const std::string& unit) {
  if (unit == "ms") return t * 1e6;
  if (unit == "us") return t * 1e3;
  if (unit == "s") return t * 1e9;
  return t;
}

}  // namespace

// Google Benchmark writes non-finite aggregates (e.g. the CV of a counter that is always 0) as
// bare NaN / -nan / inf, which is not JSON; read them as null.
json read_benchmark_json(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw SchemaError(path.string() + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  static const std::regex non_finite(R"((:\s*)-?(nan|NaN|inf|Inf|Infinity)\b)");
  const std::string text = std::regex_replace(ss.str(), non_finite, "$1null");
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    throw SchemaError(path.string() + ": invalid JSON at byte " + std::to_string(e.byte) + ": " + e.what());
  } catch (const json::out_of_range& e) {  // a number no double holds (1e400): nlohmann's 406
    throw SchemaError(path.string() + ": invalid JSON: " + e.what());
  }
}

void add_kernel_metrics(const json& gb, SuiteResult& r) {
  // Ingest: one series per benchmark, one sample per repetition.
  std::map<std::string, BenchSeries> series;
  for (const auto& e : gb.at("benchmarks")) {
    if (e.value("run_type", "iteration") != "iteration") continue;
    if (e.contains("error_occurred") && e["error_occurred"].get<bool>()) {
      r.tables["errors"].push_back({{"name", e.value("run_name", e.value("name", ""))}, {"error", e.value("error_message", "")}});
      continue;
    }
    const std::string name = strip_suffix(e.value("run_name", e.value("name", "")));
    BenchSeries& s = series[name];
    s.name = name;
    s.gflops.push_back(counter(e, "GFLOP/s"));
    s.gbs.push_back(counter(e, "GB/s"));
    s.gops.push_back(counter(e, "GOP/s"));
    s.paired_ratio.push_back(counter(e, "ratio"));
    s.ns.push_back(to_ns(e.value("real_time", 0.0), e.value("time_unit", "ns")));
    s.label = e.value("label", "");
    for (const char* k : {"M", "N", "K", "mean_run_blocks", "jumps_per_sequence"})
      if (e.contains(k)) s.counters[k] = e[k];
  }
  r.params["context"] = gb.value("context", json::object());

  auto med = [](const std::vector<double>& v) {
    std::vector<double> f;
    for (double x : v)
      if (std::isfinite(x)) f.push_back(x);
    return median(f);
  };
  // A peak is the best repetition (each a window timed inside the threads): a neighbour or an
  // interrupt can only make a window slower than the hardware.
  auto peak_metric = [&](const char* bench, const char* col, const std::string& key, const std::string& unit) -> double {
    auto it = series.find(bench);
    if (it == series.end()) return std::nan("");
    const std::string c = col;
    const auto& v = c == "GB/s" ? it->second.gbs : c == "GOP/s" ? it->second.gops : it->second.gflops;
    double best = std::nan("");
    for (double x : v)
      if (std::isfinite(x) && !(x <= best)) best = x;
    Metric m{key, best, unit, Direction::HigherIsBetter, NoiseClass::Timing, v, {{"benchmark", bench}, {"estimator", "best repetition"}},
             "best ISA path, all threads; best of " + std::to_string(v.size()) + " repetitions, each timed inside the threads: " + it->second.label};
    if (!std::isfinite(m.value) || m.value <= 0) return std::nan("");
    r.add(m);
    return m.value;
  };
  const double peak = peak_metric("BM_peak_fp32_fma", "GFLOP/s", "kernels.peak.fp32_fma_gflops", "GFLOP/s");
  const double bw = peak_metric("BM_mem_read_bw", "GB/s", "kernels.peak.mem_read_gbs", "GB/s");
  peak_metric("BM_mem_triad_bw", "GB/s", "kernels.peak.mem_triad_gbs", "GB/s");
  const double bf16_peak = peak_metric("BM_peak_bf16_dot", "GFLOP/s", "kernels.peak.bf16_dot_gflops", "GFLOP/s");
  const double int8_peak = peak_metric("BM_peak_int8_dot", "GOP/s", "kernels.peak.int8_dot_gops", "GOP/s");
  if (std::isfinite(peak) && std::isfinite(bf16_peak))
    r.add({"kernels.peak.bf16_vs_fp32", bf16_peak / peak, "x", Direction::Neutral, NoiseClass::Ratio, {}, {},
           "instruction-rate ratio of vdpbf16ps to vfmadd (hardware ceiling for a BF16 GEMM, not a GEMM result)"});

  // Table rows with roofline fractions against the compute roof of the row's arithmetic: W8A8
  // GEMMs run on int8 dot products, BF16-dot GEMMs on bf16 dot products, everything else (f32,
  // and weight-only f16/bf16/int8 and 2:4, which widen to f32 in registers) on f32 FMAs.
  json rows = json::array();
  for (const auto& [name, s] : series) {
    if (name.rfind("BM_", 0) == 0 || name.rfind("paired/", 0) == 0) continue;  // peaks, A/B pairs: not kernel rows
    const double gf = med(s.gflops), gbs = med(s.gbs);
    const double intensity = (gbs > 0 && gf > 0) ? gf / gbs : 0;
    std::string op = name.substr(0, name.find('/'));
    std::string rest = name.substr(name.find('/') + 1);
    std::string backend = rest.substr(0, rest.find('/'));
    rest = rest.substr(rest.find('/') + 1);
    std::string dtype = rest.substr(0, rest.find('/'));
    const char* roof_name = dtype == "w8a8" ? "int8_dot" : dtype == "bf16dot" ? "bf16_dot" : "fp32_fma";
    const double compute_roof = dtype == "w8a8" ? int8_peak : dtype == "bf16dot" ? bf16_peak : peak;
    double roof = std::nan("");
    if (std::isfinite(compute_roof) && std::isfinite(bw)) {
      const double attainable = intensity > 0 ? std::min(compute_roof, intensity * bw) : bw;
      roof = intensity > 0 ? gf / attainable : gbs / attainable;
    }
    json row = {{"name", name}, {"op", op}, {"backend", backend}, {"dtype", dtype}, {"gflops", gf}, {"gbs", gbs},
                {"intensity", intensity}, {"ns_per_iter", med(s.ns)}, {"compute_roof", roof_name},
                {"compute_roof_peak", std::isfinite(compute_roof) ? json(compute_roof) : json()}, {"roofline_fraction", roof}};
    for (const char* k : {"M", "N", "K"}) row[k] = s.counters.value(k, json());
    rows.push_back(row);
    const bool compute = gf > 0;
    r.add({"kernels.bench." + metric_key_segments(name) + (compute ? ".gflops" : ".gbs"), compute ? gf : gbs, compute ? "GFLOP/s" : "GB/s",
           Direction::HigherIsBetter, NoiseClass::Timing, compute ? s.gflops : s.gbs, {{"label", s.label}}, ""});
  }
  r.tables["benchmarks"] = rows;

  // Same-run ratios: the noise of a shared machine mostly cancels, so the CI gate uses these.
  // Each sample is one repetition: the two kernels' GFLOP/s in that repetition, divided.
  const json ctxj = r.params["context"];
  const std::string threads = ctxj.is_object() && ctxj.contains("omp_max_threads") ? ctxj["omp_max_threads"].get<std::string>() : "?";
  // Against the strongest of several peers (oneDNN's BLAS call and its matmul primitive): each
  // repetition divides by the fastest peer in that repetition, so the ratio never rests on a
  // weaker path of the library. The peers that ran are named in params.denominator.
  auto ratio_best = [&](const std::string& key, const std::string& a, const std::vector<std::string>& peers,
                        const std::string& note) -> const Metric* {
    auto ia = series.find(a);
    std::vector<const BenchSeries*> found;
    std::string names;
    for (const std::string& b : peers)
      if (auto ib = series.find(b); ib != series.end() && !ib->second.gflops.empty()) {
        found.push_back(&ib->second);
        names += (names.empty() ? "" : ", ") + b;
      }
    if (ia == series.end() || found.empty()) return nullptr;
    std::vector<double> samples;
    for (size_t i = 0; i < ia->second.gflops.size(); ++i) {
      double best = 0;
      bool all = true;
      for (const BenchSeries* b : found) {
        if (i >= b->gflops.size()) all = false;
        else best = std::max(best, b->gflops[i]);
      }
      if (all && best > 0) samples.push_back(ia->second.gflops[i] / best);
    }
    if (samples.empty()) return nullptr;
    json p = {{"numerator", a}, {"denominator", found.size() == 1 ? names : "fastest of " + names}, {"threads", threads},
              {"samples", found.size() == 1 ? "one per repetition: numerator GFLOP/s / denominator GFLOP/s in that repetition"
                                            : "one per repetition: numerator GFLOP/s / the fastest denominator's GFLOP/s in "
                                              "that repetition"}};
    for (const char* k : {"M", "N", "K"})
      if (ia->second.counters.contains(k)) p[k] = ia->second.counters[k];
    r.add({key, median(samples), "x", Direction::HigherIsBetter, NoiseClass::Ratio, samples, p, note});
    return r.find(key);
  };
  auto ratio = [&](const std::string& key, const std::string& a, const std::string& b, const std::string& note) {
    return ratio_best(key, a, {b}, note);
  };
  ratio("kernels.matmul.cpu_vs_ref.speedup", "matmul/cpu/f32/K512_N512/M8", "matmul/ref/f32/K512_N512/M8",
        "optimized cpu backend vs the plain-loop oracle, same shape");
  // Paged vs contiguous from the benchmark that times both alternately (kernel_bench.cpp
  // bm_paired_cases): two separate benchmarks' repetitions ran seconds apart, and the host's
  // drift in between spread their ratio over 0.77-1.31 in one run.
  // Block 16 on shuffled tables (every block a jump: a fully fragmented pool, the worst case) is
  // the gated figure; 64 and 128 are recorded beside it (the paging cost per block switch, seen as
  // the blocks grow). The target is on the engine's own placement: block 16 on the tables its
  // allocator gives after a churn trace (the harness's --cb_paged_tables file).
  struct Paired {
    std::string bench, key, what, target;
    int block;
  };
  std::vector<Paired> pairs = {{"paired/attention/cpu/f32/H32_KV4_D64_B16_given_tables_vs_contiguous/decode_ctx4096_S8/M8",
                                "kernels.attention.paged_vs_contiguous.ctx4096.engine_placement",
                                "block 16, the engine allocator's placement after a seeded churn trace", "target >= 0.95", 16}};
  for (int block : {16, 64, 128})
    pairs.push_back({"paired/attention/cpu/f32/H32_KV4_D64_B" + std::to_string(block) + "_vs_contiguous/decode_ctx4096_S8/M8",
                     "kernels.attention.paged_vs_contiguous.ctx4096" + (block == 16 ? std::string() : ".block" + std::to_string(block)),
                     "block " + std::to_string(block) + ", shuffled blocks", block == 16 ? "worst case, gated" : "recorded", block});
  for (const Paired& pr : pairs) {
    auto it = series.find(pr.bench);
    if (it == series.end()) continue;
    std::vector<double> samples;
    for (double x : it->second.paired_ratio)
      if (std::isfinite(x) && x > 0) samples.push_back(x);
    if (samples.empty()) continue;
    json p = {{"benchmark", it->first}, {"threads", threads}, {"block_size", pr.block},
              {"samples", "one per repetition: contiguous time / paged time over that repetition's iterations, the two "
                          "kernels run back to back in alternating order"}};
    for (const char* k : {"mean_run_blocks", "jumps_per_sequence"})
      if (it->second.counters.contains(k)) p[k] = it->second.counters[k];
    r.add({pr.key, median(samples), "x", Direction::HigherIsBetter, NoiseClass::Ratio, samples, p,
           "paged attention (" + pr.what + ") vs the same kernel on a contiguous cache, 8 sequences at 4K context, timed "
           "alternately (1.0 = no paging overhead; " + pr.target + ")"});
  }
  // Per row count (decode M=1..16, prefill M=128) on every llama-1b shape the run measured.
  std::set<std::string> shapes, row_counts;
  static const std::regex f32_name(R"(^matmul/cpu/f32/(K\d+_N\d+)/(M\d+)$)");
  for (const auto& [name, s] : series) {
    std::smatch mt;
    if (std::regex_match(name, mt, f32_name) && mt[1] != "K512_N512") {
      shapes.insert(mt[1]);
      row_counts.insert(mt[2]);
    }
  }
  for (const std::string& sh : shapes)
    for (const std::string& m : row_counts) {
      const std::string sfx = sh == "K2048_N2048" ? m : sh + "." + m;  // q/o proj keeps the short keys
      const std::string f32 = "matmul/cpu/f32/" + sh + "/" + m;
      ratio_best("kernels.matmul.cpu_vs_onednn." + sfx, f32,
                 {"matmul/onednn_matmul/f32/" + sh + "/" + m, "matmul/onednn_sgemm/f32/" + sh + "/" + m},
                 "cpu backend f32 matmul vs oneDNN's faster f32 path (matmul primitive with W reordered once, or "
                 "sgemm), same shape (1.0 = as fast as the peer)");
      ratio("kernels.matmul.packed_vs_rowmajor." + sfx, f32, "matmul/cpu/f32rowmajor/" + sh + "/" + m,
            "f32 weight packed at upload (panels of 16 rows, outer-product tiles) vs the same weight row-major "
            "(dot-product GEMV tiles), cpu backend, same shape");
      ratio("kernels.matmul.bf16w_packed_vs_rowmajor." + sfx, "matmul/cpu/bf16/" + sh + "/" + m,
            "matmul/cpu/bf16rowmajor/" + sh + "/" + m,
            "bf16-stored weight packed at upload vs the same weight row-major (both widened to f32 in registers)");
      ratio("kernels.matmul.w8a8_packed_vs_rowmajor." + sfx, "matmul/cpu/w8a8/" + sh + "/" + m,
            "matmul/cpu/w8a8rowmajor/" + sh + "/" + m,
            "W8A8 weight packed at upload into k-quad panels (outer-product vpdpbusd tiles) vs the same weight "
            "row-major (dot-product tiles), cpu backend, same shape; both row-major (about 1) without AVX512_VNNI");
      ratio("kernels.matmul.int8_vs_f32." + sfx, "matmul/cpu/w8a8/" + sh + "/" + m, f32,
            "W8A8 INT8 GEMM (x quantized per token inside each call) vs f32 GEMM, cpu backend, same shape");
      ratio_best("kernels.matmul.w8a8_vs_onednn." + sfx, "matmul/cpu/w8a8/" + sh + "/" + m,
                 {"matmul/onednn_matmul/w8a8/" + sh + "/" + m, "matmul/onednn_s8s8/w8a8/" + sh + "/" + m},
                 "cpu W8A8 (with quantize + dequantize) vs oneDNN's faster integer GEMM alone (matmul primitive "
                 "with W reordered once, or dnnl_gemm_s8s8s32)");
      ratio("kernels.matmul.bf16dot_vs_onednn." + sfx, "matmul/cpu/bf16dot/" + sh + "/" + m, "matmul/onednn_matmul/bf16dot/" + sh + "/" + m,
            "cpu BF16-dot GEMM (with x rounded to bf16) vs oneDNN's bf16 matmul primitive (W reordered once, x already "
            "bf16), same shape");
      ratio("kernels.matmul.int8w_vs_f32." + sfx, "matmul/cpu/int8pc/" + sh + "/" + m, f32,
            "int8 weight-only (x stays f32, W widened in registers) vs f32 weights");
      ratio("kernels.matmul.bf16_vs_f32." + sfx, "matmul/cpu/bf16dot/" + sh + "/" + m, f32,
            "bf16 x bf16 dot-product GEMM (x rounded to bf16 per call) vs f32 GEMM, same shape");
      ratio("kernels.matmul.bf16w_vs_f32." + sfx, "matmul/cpu/bf16/" + sh + "/" + m, f32,
            "bf16-stored weights (converted to f32 in registers) vs f32 weights; not a BF16 dot-product GEMM");
      ratio("kernels.matmul.sparse24_vs_f32." + sfx, "matmul/cpu/sparse24/" + sh + "/" + m, f32,
            "2:4 sparse (f32 kept values + 2-bit indices) vs dense f32 GEMM, same shape: a time ratio");
    }
  // The claims read the compute-bound (prefill, M=128) GEMM of the q/o projection shape.
  auto headline = [&](const std::string& from, const std::string& key, const std::string& note) {
    if (const Metric* m = r.find(from)) {
      Metric c = *m;
      c.key = key;
      c.note = note;
      r.add(c);
      return true;
    }
    return false;
  };
  const std::string cpu_isa = ctxj.is_object() ? ctxj.value("cpu_isa", "") : "";
  const char* forced_isa = std::getenv("CB_CPU_ISA");
  const bool have_bf16 = cpu_isa.find("avx512_bf16") != std::string::npos &&
                         (forced_isa == nullptr || *forced_isa == '\0' || std::string(forced_isa) == "avx512_bf16");
  const bool have_vnni = cpu_isa.find("avx512_vnni") != std::string::npos;
  if (!headline("kernels.matmul.int8_vs_f32.M128", "kernels.matmul.int8_vs_f32.speedup",
                std::string("W8A8 INT8 GEMM / FP32 GEMM at M=128, K=N=2048 (cpu backend, ") +
                    (have_vnni ? "AVX512_VNNI vpdpbusd" : "no VNNI on this CPU: vpmaddubsw or scalar") + ")"))
    r.params["not_measured"]["kernels.matmul.int8_vs_f32.speedup"] =
        "matmul/cpu/w8a8 or matmul/cpu/f32 at K2048_N2048/M128 was not in this run (filter)";
  if (!have_bf16) {
    r.params["not_measured"]["kernels.matmul.bf16_vs_f32.speedup"] =
        "needs BF16 dot-product instructions (avx512_bf16) or a GPU; this CPU (" + (cpu_isa.empty() ? "?" : cpu_isa) +
        (forced_isa ? std::string(", CB_CPU_ISA=") + forced_isa : std::string()) +
        ") runs the bf16 GEMM by widening to f32 FMAs (kernels.matmul.bf16_vs_f32.M* still record it)";
  } else if (!headline("kernels.matmul.bf16_vs_f32.M128", "kernels.matmul.bf16_vs_f32.speedup",
                       "BF16 dot-product GEMM (vdpbf16ps, x rounded to bf16) / FP32 GEMM at M=128, K=N=2048, cpu backend")) {
    r.params["not_measured"]["kernels.matmul.bf16_vs_f32.speedup"] =
        "matmul/cpu/bf16dot or matmul/cpu/f32 at K2048_N2048/M128 was not in this run (filter)";
  }
  if (!headline("kernels.matmul.sparse24_vs_f32.M128", "kernels.matmul.sparse24_vs_f32.speedup",
                "2:4 sparse GEMM / dense FP32 GEMM time ratio at M=128, K=N=2048 (compute-bound; the decode-sized "
                "kernels.matmul.sparse24_vs_f32.M1 is memory-bound)"))
    r.params["not_measured"]["kernels.matmul.sparse24_vs_f32.speedup"] =
        "matmul/cpu/sparse24 or matmul/cpu/f32 at K2048_N2048/M128 was not in this run (filter)";

}

SuiteResult run_kernels_suite(const SuiteContext& ctx) {
  SuiteResult r;
  r.suite = "kernels";
  const fs::path bin = kernel_bench_binary();
  if (bin.empty()) {
    r.status = SuiteStatus::NotBuilt;
    r.reason = "cb_kernel_bench was not built (configure with -DCB_BUILD_BENCHMARKS=ON)";
    return r;
  }
  // 5 repetitions: with fewer, a two-sided Mann-Whitney U test can never reach p < 0.05.
  const int reps = ctx.repetitions > 0 ? ctx.repetitions : 5;
  const std::string min_time = ctx.quick ? "0.05" : "0.2";
  // Raw output goes to raw/: the run folder's top level holds only files in the claimbench schema.
  fs::create_directories(ctx.run_dir / "raw");
  const fs::path raw = ctx.run_dir / "raw" / "kernels.gbench.json";
  std::vector<std::string> argv = {bin.string(), "--benchmark_format=console", "--benchmark_out_format=json",
                                   "--benchmark_out=" + raw.string(), "--benchmark_repetitions=" + std::to_string(reps),
                                   "--benchmark_min_time=" + min_time,
                                   // Repetitions of all benchmarks in a random (seeded by gbench) order: a ratio's
                                   // repetitions then span the run instead of two back-to-back blocks, so a host
                                   // slowdown during one block shows as spread, not as a confident shifted interval
                                   // (run-to-run flips of tc-speedup seen by ci/stability.sh).
                                   "--benchmark_enable_random_interleaving=true"};
  // The engine allocator's block tables for the paired paged-vs-contiguous benchmark, as a file
  // the benchmark reads (kernels/ does not link the engine); none in a build without the engine.
  json placement;  // kept: its prefix-cache trace is recorded after the benchmark
  if (const EngineAccess* ea = engine_access(); ea && ea->kv_placement_tables) {
    const fs::path tables = ctx.run_dir / "raw" / "kv_placement.json";
    placement = ea->kv_placement_tables(8, 4096, 16, uint32_t(ctx.seed));
    std::ofstream(tables) << placement.dump() << "\n";
    argv.push_back("--cb_paged_tables=" + tables.string());
  } else {
    r.params["not_measured"]["kernels.attention.paged_vs_contiguous.ctx4096.engine_placement"] = no_engine_reason();
  }
  const std::string filter = !ctx.bench_filter.empty() ? ctx.bench_filter : ctx.quick ? kQuickFilter : "";
  if (!filter.empty()) argv.push_back("--benchmark_filter=" + filter);
  r.params = {{"binary", bin.string()}, {"repetitions", reps}, {"min_time_s", min_time}, {"quick", ctx.quick},
              {"filter", filter.empty() ? "all" : filter}, {"raw_output", "raw/kernels.gbench.json"}};
  if (ctx.progress) ctx.progress("running cb_kernel_bench (" + std::to_string(reps) + " repetitions)");
  // Same process group as this suite: when `run` kills the suite on a timeout, the benchmark dies too.
  const ProcessResult pr = run_process(argv, ctx.quick ? 600 : 3000, {}, {}, /*own_group=*/false);
  if (pr.exit_code != 0 || !fs::exists(raw)) {
    r.status = pr.timed_out ? SuiteStatus::Timeout : SuiteStatus::Error;
    r.reason = "cb_kernel_bench " + pr.describe();
    return r;
  }

  add_kernel_metrics(read_benchmark_json(raw), r);

  // Where the same churn trace puts the long sequences with the prefix cache on (the pool full of
  // cached blocks, new ones by eviction), beside the engine-placement pair it does not time.
  if (r.find("kernels.attention.paged_vs_contiguous.ctx4096.engine_placement") && placement.contains("prefix_cache_trace")) {
    const json& pc = placement["prefix_cache_trace"];
    r.add({"kernels.attention.engine_placement.prefix_cache.mean_run_blocks", pc.value("mean_run_blocks", 0.0), "blocks",
           Direction::Neutral, NoiseClass::Exact, {}, pc,
           "the engine allocator's runs of adjacent blocks per long sequence on the engine-placement trace with the "
           "prefix cache on (seeded; the timed pair's tables come from the same trace with it off); near 1 block "
           "(eviction in LRU order scatters them) the pair would be the shuffled case"});
  }

  // The machine limits, checked by an independent tool in the same job and on the same threads.
  if (r.find("kernels.peak.fp32_fma_gflops") || r.find("kernels.peak.mem_read_gbs")) {
    // At least 1 s per run: with -s below 1 likwid-bench 5.2 settles on 10 iterations (microseconds).
    const std::string isa = bench::cpu_has(bench::Isa::Avx512) ? "avx512" : bench::cpu_has(bench::Isa::Avx2) ? "avx" : "sse";
    if (ctx.progress) ctx.progress("cross-checking the machine peaks with likwid-bench");
    // Ours, like with like: the mean over one 1 s window (likwid-bench's own -s 1), on 4 KiB pages
    // (what likwid-bench's buffers get; the suite's own peaks use huge pages, ~20% faster under a
    // hypervisor), run right after each likwid run so both see the same state of a shared machine.
    // The FP32 peak is cheap (L1-resident, ~2 s a pair) and the host's clock moves by 20% between
    // seconds, so it gets 5 pairs in both modes. Memory, quick: 2 runs each on 1 GiB (allocating and
    // first-touching 2 GiB on 4 KiB pages, as likwid does for each run, takes seconds under a
    // hypervisor); full: 5 runs on the suite's buffer size.
    const size_t bytes = ctx.quick ? std::min<size_t>(bench::default_read_buffer_bytes(), size_t(1) << 30) : bench::default_read_buffer_bytes();
    OwnMeasures ours;
    std::unique_ptr<bench::ReadBuffer> rb;  // allocated once, on first use
    std::unique_ptr<bench::TriadBuffers> tb;
    ours.fp32 = [] { return bench::sustained_fp32_fma_rate(0, 1.0); };
    ours.read = [&] {
      if (!rb) rb = std::make_unique<bench::ReadBuffer>(bytes, 0, /*huge_pages=*/false);
      return bench::sustained_rate(*rb, 1.0);
    };
    ours.triad = [&] {
      if (!tb) tb = std::make_unique<bench::TriadBuffers>(bytes, 0, /*huge_pages=*/false);
      return bench::sustained_rate(*tb, 1.0);
    };
    const LikwidCrosscheck lc = run_likwid_crosscheck(omp_get_max_threads(), isa, bytes, 5, ctx.quick ? 2 : 5, 1.0, ctx.run_dir / "raw", ours);
    add_likwid_metrics(lc, r);
  }

  // Engine-level: batch-1 decode vs bandwidth limit, prefill vs peak FMA, on the run's model.
  // A --bench-filter run is a focused microbenchmark run: no engine measurement.
  if (!ctx.bench_filter.empty()) return r;
  const EngineAccess* access = engine_access();
  if (!access) {
    for (const char* k : {"kernels.engine.decode.tokens_per_s", "kernels.engine.decode.bw_fraction", "kernels.engine.decode.triad_paired_fraction",
                          "kernels.engine.prefill.gflops", "kernels.engine.prefill.peak_fraction"})
      r.params["not_measured"][k] = no_engine_reason();
    return r;
  }
  if (ctx.progress) ctx.progress("engine bench on " + ctx.model_dir.string());
  EngineBenchRequest eo;
  eo.model_dir = ctx.model_dir;
  eo.prefill_tokens = 128;  // the speed target is stated for a 128-token prefill
  eo.decode_tokens = ctx.quick ? 8 : 16;
  eo.repetitions = 3;
  eo.seed = ctx.seed;
  const EngineBenchFigures eb = access->bench(eo, ctx.progress);
  const json mparams = {{"model", ctx.model_dir.filename().string()}, {"weight_bytes", eb.weight_bytes},
                        {"prefill_tokens", eo.prefill_tokens}, {"decode_tokens", eo.decode_tokens}};
  r.add({"kernels.engine.decode.tokens_per_s", eb.decode_tokens_per_s_median, "tokens/s", Direction::HigherIsBetter, NoiseClass::Timing,
         eb.decode_tokens_per_s, mparams, "batch 1"});
  r.add({"kernels.engine.decode.bw_fraction", eb.decode_bw_fraction_median, "fraction", Direction::HigherIsBetter, NoiseClass::Ratio,
         eb.decode_bw_fraction, mparams,
         "decode tokens/s x bytes read per token / memory read bandwidth measured just before each repetition (>1 means the model fits in cache)"});
  r.add({"kernels.engine.decode.triad_paired_fraction", eb.decode_triad_paired_fraction_median, "fraction", Direction::HigherIsBetter,
         NoiseClass::Ratio, eb.decode_triad_paired_fraction, mparams,
         "each decode step's bytes read / its seconds over the triad pass run right before it, the median over the steps "
         "(triad counts 12 of the 16 bytes a write-allocating host moves, so a read-only stream can pass 1)"});
  r.add({"kernels.engine.prefill.gflops", eb.prefill_gflops_median, "GFLOP/s", Direction::HigherIsBetter, NoiseClass::Timing, eb.prefill_gflops,
         mparams, ""});
  r.add({"kernels.engine.prefill.peak_fraction", eb.prefill_peak_fraction, "fraction", Direction::HigherIsBetter, NoiseClass::Ratio,
         eb.prefill_peak_fraction_samples, mparams, "prefill FLOP/s / peak FP32 FMA measured right before each repetition"});
  r.tables["engine_bench"] = json::array({{{"model", ctx.model_dir.string()},
                                           {"decode_tokens_per_s", eb.decode_tokens_per_s_median},
                                           {"decode_bw_fraction", eb.decode_bw_fraction_median},
                                           {"decode_triad_paired_fraction", eb.decode_triad_paired_fraction_median},
                                           {"prefill_gflops", eb.prefill_gflops_median},
                                           {"prefill_peak_fraction", eb.prefill_peak_fraction}}});
  return r;
}

}  // namespace cb::harness
