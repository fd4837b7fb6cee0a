// The report renderer (harness/src/report_*.cpp, report/svg_charts.cpp) on two synthetic run folders:
// files written, the expected charts present, text from files escaped, output byte-identical
// across renders, SKIP / NOT MEASURED claims never drawn as bars.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <unistd.h>

#include "cb/harness/report/report.h"
#include "cb/harness/core/results.h"
#include "cb/harness/report/svg_charts.h"
#include "test_support.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace cb::harness;
using cb::test::read_file;

namespace cb_report_test {

// Deterministic pseudo-random numbers (own LCG: std distributions differ between libraries).
struct Lcg {
  uint64_t s;
  double next() {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<double>(s >> 11) / 9007199254740992.0;
  }
};

json manifest(const std::string& id, bool gpu) {
  json hw = {{"cpu_model", gpu ? "AMD EPYC 7763 64-Core Processor" : "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz"},
             {"cpu_flags", gpu ? json{"avx2", "fma", "f16c"} : json{"avx2", "fma", "avx512f", "avx512_vnni"}},
             {"cores", gpu ? 128 : 64}, {"threads", gpu ? 256 : 128},
             {"memory_bytes", gpu ? 1099511627776LL : 274877906944LL}, {"os", "Linux 6.1.0 x86_64"},
             {"hostname", gpu ? "gpu-node-1" : "cpu-node-7"}, {"gpus", json::array()}, {"fingerprint", gpu ? "a1b2c3" : "d4e5f6"}};
  if (gpu) {
    for (int i = 0; i < 8; ++i) hw["gpus"].push_back({{"name", "NVIDIA A100-SXM4-80GB"}, {"memory", "81920 MiB"}});
    hw["driver"] = "550.54.15";
    hw["cuda_version"] = "12.4";
    hw["nccl_version"] = "2.21.5";
  }
  json suites = {{"kernels", {{"status", "ok"}, {"seconds", 12.5}, {"file", "kernels.json"}}},
                 {"load", {{"status", "ok"}, {"seconds", 60.0}, {"file", "load.json"}}},
                 {"scaling", {{"status", "not_built"}, {"seconds", 0}, {"reason", "built without MPI"}}}};
  return {{"schema", "claimbench.manifest"}, {"schema_version", "1.0"}, {"run_id", id}, {"command", "claimbench run --suites all"},
          {"build", {{"commit", "0123456789abcdef"}, {"commit_dirty", gpu}, {"build_type", "release"}, {"compiler", "gcc 12.2"}, {"cuda_built", gpu}}},
          {"hardware", hw}, {"started_at", "2026-11-29T07:00:00Z"}, {"finished_at", "2026-11-29T07:20:00Z"},
          {"params", json::object()}, {"seeds", {{"load", 42}}}, {"suites", suites}};
}

SuiteResult kernels_suite(bool gpu) {
  SuiteResult s;
  s.suite = "kernels";
  s.seconds = 12.5;
  const double peak = gpu ? 19500 : 2500, bw = gpu ? 1800 : 150;
  s.add({"kernels.peak.fp32_fma_gflops", peak, "GFLOP/s", Direction::HigherIsBetter, NoiseClass::Timing, {}, json::object(), ""});
  s.add({"kernels.peak.mem_read_gbs", bw, "GB/s", Direction::HigherIsBetter, NoiseClass::Timing, {}, json::object(), ""});
  s.add({"kernels.matmul.bf16_vs_f32.speedup", gpu ? 2.9 : 1.4, "x", Direction::HigherIsBetter, NoiseClass::Ratio, {}, json::object(), ""});
  if (!gpu) s.add({"<script>alert(1)</script>", 1, "x", Direction::Neutral, NoiseClass::Exact, {}, json::object(), ""});
  json rows = json::array();
  for (const char* dt : {"f32", "bf16", "int8"})
    for (int n : {64, 256, 1024, 4096}) {
      const double flops = 2.0 * n * n * n, bytes = 3.0 * n * n * (std::string(dt) == "f32" ? 4 : 2);
      const double ai = flops / bytes, gf = std::min(peak * 0.8, bw * ai * 0.7);
      rows.push_back({{"name", std::string("matmul_") + dt + "_" + std::to_string(n)}, {"op", "matmul"},
                      {"backend", gpu ? "cuda" : "cpu"}, {"dtype", dt}, {"M", n}, {"N", n}, {"K", n}, {"gflops", gf},
                      {"gbs", gf / ai}, {"intensity", ai}, {"ns_per_iter", flops / gf}, {"roofline_fraction", gf / std::min(peak, bw * ai)}});
    }
  for (const char* op : {"rmsnorm", "softmax", "silu_mul"})
    rows.push_back({{"name", op}, {"op", op}, {"backend", gpu ? "cuda" : "cpu"}, {"dtype", "f32"}, {"M", 4096}, {"N", 4096},
                    {"K", 1}, {"gflops", bw * 0.25 * 0.6}, {"gbs", bw * 0.6}, {"intensity", 0.25}, {"ns_per_iter", 1e5},
                    {"roofline_fraction", 0.6}});
  rows.push_back({{"name", "embedding"}, {"op", "embedding"}, {"backend", "cpu"}, {"dtype", "f32"}, {"gflops", 0}, {"intensity", 0}});
  s.tables["benchmarks"] = rows;
  return s;
}

SuiteResult load_suite(bool gpu) {
  SuiteResult s;
  s.suite = "load";
  s.seconds = 60;
  s.add({"load.util.busy_fraction", gpu ? 0.86 : 0.71, "fraction", Direction::HigherIsBetter, NoiseClass::Ratio, {}, json::object(), ""});
  Lcg rng{gpu ? 7u : 3u};
  const double speed = gpu ? 0.25 : 1.0;
  json req = json::array(), sweep = json::array();
  for (const char* w : {"chat-short", "long-context"}) {
    const double base = std::string(w) == "chat-short" ? 40 : 400;
    for (int i = 0; i < 300; ++i) {
      const double ttft = speed * base * std::exp(0.5 * (rng.next() + rng.next() + rng.next() - 1.5));
      const double tpot = speed * 20 * (0.8 + 0.4 * rng.next());
      const int out = 32 + static_cast<int>(rng.next() * 96);
      req.push_back({{"workload", w}, {"rate_rps", 4}, {"ttft_ms", ttft}, {"tpot_ms", tpot}, {"e2e_ms", ttft + tpot * out}, {"output_tokens", out}});
    }
    const double cap = (std::string(w) == "chat-short" ? 24 : 6) / speed;
    for (double r : {1.0, 2.0, 4.0, 8.0, 16.0, 32.0}) {
      const double tp = std::min(r, cap) * (0.97 + 0.02 * rng.next());
      sweep.push_back({{"workload", w}, {"rate_rps", r}, {"throughput_rps", tp}, {"tokens_per_s", tp * 80},
                       {"p99_ttft_ms", speed * base * (r < cap ? 2 : 2 + 10 * (r - cap) / cap)},
                       {"p99_e2e_ms", speed * base * (r < cap ? 6 : 6 + 20 * (r - cap) / cap) + 1500 * speed},
                       {"goodput_rps", r < cap ? tp : tp * 0.5}});
    }
  }
  s.tables["requests"] = req;
  s.tables["sweep"] = sweep;
  return s;
}

json claim(const std::string& id, const std::string& desc, const std::string& fig, const json& measured, const std::string& unit,
           const std::string& cmp, double thr, const std::string& verdict, const std::string& reason) {
  return {{"id", id}, {"description", desc}, {"figure", fig}, {"metric", "m." + id}, {"unit", unit}, {"measured", measured},
          {"comparator", cmp}, {"threshold", thr}, {"verdict", verdict}, {"reason", reason},
          {"scope", "measured on this machine's reference engine (tiny LLaMA), not a 70B-175B model on A100s"}};
}

json claims_file(bool gpu) {
  json r = json::array();
  r.push_back(claim("util-busy", "adaptive batching keeps the accelerator busy", ">= 82% busy", gpu ? 0.86 : 0.71, "fraction", ">=", 0.82,
                    gpu ? "PASS" : "FAIL", ""));
  r.push_back(claim("batch-gain", "dynamic batching raises throughput", "1.83x", gpu ? 2.1 : 1.52, "x", ">=", 1.83, gpu ? "PASS" : "FAIL", ""));
  r.push_back(claim("tc-speedup", "half-precision matrix units", "2.3x", gpu ? json(2.9) : json(), "x", ">=", 2.3, gpu ? "PASS" : "SKIP",
                    gpu ? "" : "needs avx512_bf16 CPU flag or 1 GPU; this machine has neither"));
  r.push_back(claim("int8-err", "INT8 keeps accuracy", "error < 1%", gpu ? -0.004 : 0.013, "fraction", "<=", 0.01, gpu ? "PASS" : "FAIL", ""));
  r.push_back(claim("kv-cut", "paged KV cache cuts memory", "-55%", json(), "fraction", ">=", 0.55, "NOT MEASURED",
                    "metric engine.kv.paged_vs_contiguous.reduction is not in the run"));
  r.push_back(claim("allreduce", "faster all-reduce", "12 ms -> 4 ms on 8 GPUs", json(), "ms", "<=", 4.0, "SKIP",
                    gpu ? "scaling suite not built" : "needs 8 GPUs; this machine has 0"));
  r.push_back(claim("rt-service", "real-time service", ">= 2000 req/s < 80 ms", gpu ? 96.0 : 18.0, "req/s", ">=", 2000, "FAIL", ""));
  r.push_back(claim("sparse-acc", "accuracy kept after pruning", ">= 98% of dense", json(), "fraction", ">=", 0.98, "ERROR",
                    "suite accuracy: error (weights missing)"));
  json dyn = claim("dyn-price", "peak/off-peak pricing", "revenue +45%, cost +8%", 0.31, "fraction", ">=", 0.45, "FAIL", "revenue change below threshold");
  dyn["conditions"] = json::array({{{"metric", "cost.dyn_price.revenue_change"}, {"comparator", ">="}, {"threshold", 0.45},
                                    {"measured", 0.31}, {"verdict", "FAIL"}, {"unit", "fraction"}},
                                   {{"metric", "cost.dyn_price.cost_change"}, {"comparator", "<="}, {"threshold", 0.08},
                                    {"measured", 0.05}, {"verdict", "PASS"}, {"unit", "fraction"}}});
  r.push_back(dyn);
  r.push_back(claim("margin", "theoretical cost-profit margin", "545%", 5.4504, "x", "==", 5.45, "PASS", ""));
  r.back()["tolerance"] = 0.005;
  return {{"schema", "claimbench.claims"}, {"schema_version", "1.0"}, {"claim_set", "suites/claims/deepseek-article.json"},
          {"run_dir", "results/runs/x"}, {"results", r}, {"counts", json::object()}};
}

// Two run folders under base: "run-a" (CPU machine) and "run-b" (8 x A100), each with a kernels
// suite, a load suite and claims.json. Returns their paths.
std::vector<fs::path> make_sample_runs(const fs::path& base) {
  std::vector<fs::path> dirs;
  for (bool gpu : {false, true}) {
    const fs::path d = base / (gpu ? "run-b" : "run-a");
    fs::create_directories(d);
    write_json_atomic(d / "manifest.json", manifest(gpu ? "run-b" : "run-a", gpu));
    write_json_atomic(d / "kernels.json", kernels_suite(gpu).to_json());
    write_json_atomic(d / "load.json", load_suite(gpu).to_json());
    write_json_atomic(d / "claims.json", claims_file(gpu));
    dirs.push_back(d);
  }
  return dirs;
}

size_t count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = hay.find(needle); pos != std::string::npos; pos = hay.find(needle, pos + 1)) ++n;
  return n;
}

}  // namespace cb_report_test

namespace {
using namespace cb_report_test;

class ReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = fs::temp_directory_path() / ("cb_report_test_" + std::to_string(::getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(base_);
    dirs_ = make_sample_runs(base_);
    for (const auto& d : dirs_) runs_.push_back(load_report_input(d));
  }
  void TearDown() override { fs::remove_all(base_); }
  fs::path base_;
  std::vector<fs::path> dirs_;
  std::vector<ReportInput> runs_;
};

TEST_F(ReportTest, WritesBothFilesWithAllCharts) {
  ASSERT_TRUE(runs_[0].claims.has_value());
  const fs::path out = base_ / "out" / "nested";
  write_report(runs_, out);
  ASSERT_TRUE(fs::exists(out / "report.md"));
  ASSERT_TRUE(fs::exists(out / "report.html"));
  const std::string html = read_file(out / "report.html");
  // claims, roofline, TTFT CDF, E2E CDF, throughput vs rate, p99 vs rate
  EXPECT_EQ(count(html, "<svg"), 6u);
  for (const char* id : {"chart-claims", "chart-roofline", "chart-latency-cdf-ttft", "chart-latency-cdf-e2e",
                         "chart-throughput-rate", "chart-p99-latency-rate"})
    EXPECT_EQ(count(html, std::string("id=\"") + id + "\""), 1u) << id;
  EXPECT_NE(html.find("<title>claimbench report: run-a vs run-b</title>"), std::string::npos);
  EXPECT_NE(html.find("8 \xC3\x97 NVIDIA A100-SXM4-80GB (81920 MiB)"), std::string::npos);
  EXPECT_NE(html.find("0123456789abcdef (dirty)"), std::string::npos);
  EXPECT_NE(html.find("built without MPI"), std::string::npos);  // suite only in the manifest
  // self-contained: no scripts, stylesheets, images or fonts from elsewhere
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);
  EXPECT_EQ(html.find("src="), std::string::npos);
  EXPECT_EQ(count(html, "http"), count(html, "xmlns=\"http://www.w3.org/2000/svg\""));
  EXPECT_EQ(html.find("no load results in these runs"), std::string::npos);

  const std::string md = read_file(out / "report.md");
  EXPECT_NE(md.find("see report.html"), std::string::npos);
  EXPECT_NE(md.find("| util-busy |"), std::string::npos);
  EXPECT_NE(md.find("| 0.86 fraction | PASS |"), std::string::npos);  // run-b's measured + verdict
  EXPECT_NE(md.find("| chat-short |"), std::string::npos);              // latency percentiles
  EXPECT_EQ(md.find("<svg"), std::string::npos);
}

TEST_F(ReportTest, EscapesTextFromFiles) {
  const std::string html = render_report_html(runs_);
  EXPECT_EQ(html.find("<script>alert(1)</script>"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
  const std::string md = render_report_markdown(runs_);
  EXPECT_EQ(md.find("<script>"), std::string::npos);
  EXPECT_NE(md.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
  EXPECT_EQ(cb::harness::svg::escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
}

TEST_F(ReportTest, DeterministicOutput) {
  write_report(runs_, base_ / "out1");
  // reload from disk (fresh JSON objects, same data) and render again
  std::vector<ReportInput> again;
  for (const auto& d : dirs_) again.push_back(load_report_input(d));
  write_report(again, base_ / "out2");
  EXPECT_EQ(read_file(base_ / "out1" / "report.html"), read_file(base_ / "out2" / "report.html"));
  EXPECT_EQ(read_file(base_ / "out1" / "report.md"), read_file(base_ / "out2" / "report.md"));
}

TEST_F(ReportTest, SkippedClaimsAreListedNotDrawn) {
  const std::string html = render_report_html(runs_);
  const size_t a = html.find("id=\"chart-claims\""), b = html.find("</svg>", a);
  ASSERT_NE(a, std::string::npos);
  const std::string chart = html.substr(a, b - a);
  // allreduce (SKIP everywhere), kv-cut (NOT MEASURED), sparse-acc (ERROR without a value): no bar group
  for (const char* id : {">allreduce<", ">kv-cut<", ">sparse-acc<"}) EXPECT_EQ(chart.find(id), std::string::npos) << id;
  // drawn: tc-speedup (run-b PASS; run-a SKIP row stays empty), and each part of dyn-price
  EXPECT_NE(chart.find(">tc-speedup<"), std::string::npos);
  EXPECT_NE(chart.find("SKIP: not drawn"), std::string::npos);
  EXPECT_NE(chart.find(">dyn-price (1/2)<"), std::string::npos);
  EXPECT_NE(chart.find(">dyn-price (2/2)<"), std::string::npos);
  // and the reasons are listed under the chart
  const std::string rest = html.substr(b);
  EXPECT_NE(rest.find("needs 8 GPUs; this machine has 0"), std::string::npos);
  EXPECT_NE(rest.find("metric engine.kv.paged_vs_contiguous.reduction is not in the run"), std::string::npos);
}

TEST_F(ReportTest, SingleRunHasAllCharts) {
  const std::string html = render_report_html({runs_[0]});
  EXPECT_EQ(count(html, "<svg"), 6u);
  EXPECT_NE(html.find("<title>claimbench report: run-a</title>"), std::string::npos);
  EXPECT_EQ(html.find("run-b"), std::string::npos);
}

TEST_F(ReportTest, SingleRunWithoutLoadOrClaims) {
  fs::remove(dirs_[0] / "load.json");
  fs::remove(dirs_[0] / "claims.json");
  const ReportInput in = load_report_input(dirs_[0]);
  EXPECT_FALSE(in.claims.has_value());
  write_report({in}, base_ / "single");
  const std::string html = read_file(base_ / "single" / "report.html");
  EXPECT_EQ(count(html, "<svg"), 1u);  // the roofline only
  EXPECT_NE(html.find("no load results in these runs"), std::string::npos);
  EXPECT_NE(html.find("No claims.json in these runs"), std::string::npos);
  const std::string md = read_file(base_ / "single" / "report.md");
  EXPECT_NE(md.find("no load results in these runs"), std::string::npos);
}

TEST_F(ReportTest, RejectsBadInput) {
  EXPECT_THROW(write_report({}, base_ / "none"), std::invalid_argument);
  write_json_atomic(dirs_[0] / "claims.json", json{{"schema", "claimbench.claimset"}, {"schema_version", "1.0"}});
  EXPECT_THROW(load_report_input(dirs_[0]), SchemaError);
  EXPECT_THROW(load_report_input(base_ / "no-such-run"), SchemaError);
}

TEST(SvgCharts, TicksAndNumbers) {
  using namespace cb::harness::svg;
  EXPECT_EQ(linear_ticks(0, 1, 6), (std::vector<double>{0, 0.2, 0.4, 0.6, 0.8, 1.0}));
  EXPECT_EQ(log_ticks(1, 1000), (std::vector<double>{1, 10, 100, 1000}));
  EXPECT_EQ(log_ticks(1, 10), (std::vector<double>{1, 2, 5, 10}));
  EXPECT_EQ(fmt_num(0.82), "0.82");
  EXPECT_EQ(fmt_num(2200), "2200");
  EXPECT_EQ(fmt_num(123456), "123456");
  EXPECT_EQ(fmt_num(std::nan("")), "n/a");
  EXPECT_EQ(fmt_tick(20000), "20k");
  EXPECT_EQ(fmt_tick(1e9), "1G");
  XYChart empty;
  empty.id = "chart-empty";
  EXPECT_NE(render_xy(empty).find("no data to draw"), std::string::npos);
}

}  // namespace
