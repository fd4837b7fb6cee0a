// The kernels suite's cuda path: cb_cuda_bench's JSON -> metrics and the claims' headline ratios.
// On the published H200 run (a real GPU's output), on synthetic outputs with a planted defect (the
// ratio must flip below the claim's threshold), and the suite's SKIP where no GPU can run it.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "cb/harness/suites/kernel_metrics.h"
#include "cb/harness/suites/suites.h"

namespace {
namespace fs = std::filesystem;
using cb::harness::SuiteResult;
using nlohmann::json;

// One cb_cuda_bench matmul case with chunk times (ms per call).
json mm(const std::string& variant, int64_t M, const std::vector<double>& chunk_ms) {
  std::vector<double> s = chunk_ms;
  std::sort(s.begin(), s.end());
  const double med = s.size() % 2 ? s[s.size() / 2] : 0.5 * (s[s.size() / 2 - 1] + s[s.size() / 2]);
  return {{"variant", variant}, {"shape", "q_o"}, {"N", 2048}, {"K", 2048}, {"M", M}, {"status", "ok"},
          {"median_ms", med}, {"best_ms", s.front()}, {"chunk_ms", chunk_ms},
          {"tflops", 2.0 * double(M) * 2048 * 2048 / (med * 1e-3) / 1e12}};
}

// f32 at 0.68 ms, bf16 `bf16_ms`, W8A8 `int8_ms` per call at M=4096; three chunks each.
json synthetic(double bf16_ms, double int8_ms) {
  json cases = json::array({mm("f32", 4096, {0.68, 0.69, 0.70}), mm("bf16_act_bf16", 4096, {bf16_ms, bf16_ms * 1.01, bf16_ms * 0.99}),
                            mm("w8a8", 4096, {int8_ms, int8_ms, int8_ms}), mm("f32", 128, {0.036, 0.036, 0.037}),
                            mm("bf16_act_bf16", 128, {0.016, 0.016, 0.016})});
  json failed = mm("w8a8", 128, {1});
  failed["status"] = "skipped: time budget";  // not a measurement: no metric may come from it
  cases.push_back(failed);
  return {{"schema", "cb_cuda_bench/1"},
          {"device", {{"name", "Synthetic GPU"}}},
          {"peaks",
           {{"d2d_copy", {{"read_plus_written_gbps_best", 4000.0}, {"read_plus_written_gbps_median", 3990.0}, {"bytes", 1 << 30}}},
            {"gemm", {{"bf16", {{"best_tflops", 800.0}, {"m", 8192}}}, {"fp32", {{"best_tflops", 50.0}}}}}}},
          {"matmul", {{"cases", cases}}},
          {"attention",
           {{"limit_gbps", 4000.0},
            {"target", 0.7},
            {"cases", json::array({{{"B", 32}, {"L", 4096},
                                    {"paged", {{"median_ms", 0.40}, {"gbps", 2600.0}, {"fraction_of_limit", 0.65}, {"chunk_ms", {0.40, 0.40}}}},
                                    {"contiguous", {{"median_ms", 0.39}, {"gbps", 2660.0}, {"chunk_ms", {0.39, 0.39}}}}}})}}},
          {"errors", json::array()},
          {"ok", true}};
}

TEST(KernelsCuda, SyntheticOutputGivesRatiosPerChunkAndTheHeadlines) {
  SuiteResult r;
  cb::harness::add_cuda_bench_metrics(synthetic(0.075, 0.09), r);
  const auto* tc = r.find("kernels.matmul.bf16_vs_f32.speedup");
  ASSERT_NE(tc, nullptr);
  EXPECT_NEAR(tc->value, 0.69 / 0.075, 1e-9);  // median over median
  ASSERT_EQ(tc->samples.size(), 3u);           // chunk i of f32 / chunk i of bf16
  EXPECT_NEAR(tc->samples[1], 0.69 / (0.075 * 1.01), 1e-9);
  EXPECT_EQ(tc->params.value("M", 0), 4096);
  const auto* i8 = r.find("kernels.matmul.int8_vs_f32.speedup");
  ASSERT_NE(i8, nullptr);
  EXPECT_NEAR(i8->value, 0.69 / 0.09, 1e-9);
  ASSERT_NE(r.find("kernels.matmul.bf16_vs_f32.q_o.M128"), nullptr);
  EXPECT_EQ(r.find("kernels.matmul.int8_vs_f32.q_o.M128"), nullptr) << "a case past the time budget is no measurement";
  ASSERT_NE(r.find("kernels.peak.gpu.copy_gbs"), nullptr);
  EXPECT_DOUBLE_EQ(r.find("kernels.peak.gpu.copy_gbs")->value, 4000.0);
  EXPECT_DOUBLE_EQ(r.find("kernels.peak.gpu.gemm_bf16_tflops")->value, 800.0);
  ASSERT_NE(r.find("kernels.cuda.attention.decode.B32.ctx4096.copy_fraction"), nullptr);
  EXPECT_NEAR(r.find("kernels.cuda.attention.paged_vs_contiguous.B32.ctx4096")->value, 0.39 / 0.40, 1e-9);
}

// A planted defect: BF16 that runs no faster than FP32 (a tensor-core path falling back to FP32
// cores) must drop tc-speedup below the claim's 2.3x; an INT8 path slower than FP32 likewise.
TEST(KernelsCuda, PlantedSlowHalfPrecisionFlipsTheHeadlinesBelowTheThresholds) {
  SuiteResult good, bad;
  cb::harness::add_cuda_bench_metrics(synthetic(0.075, 0.09), good);
  cb::harness::add_cuda_bench_metrics(synthetic(0.66, 0.8), bad);
  EXPECT_GE(good.find("kernels.matmul.bf16_vs_f32.speedup")->value, 2.3);
  EXPECT_GE(good.find("kernels.matmul.int8_vs_f32.speedup")->value, 3.0);
  EXPECT_LT(bad.find("kernels.matmul.bf16_vs_f32.speedup")->value, 2.3);
  EXPECT_LT(bad.find("kernels.matmul.int8_vs_f32.speedup")->value, 3.0);
}

TEST(KernelsCuda, MissingHeadlineCaseIsNotMeasuredWithTheReason) {
  json cb = synthetic(0.075, 0.09);
  json kept = json::array();
  for (const auto& c : cb["matmul"]["cases"])
    if (c["M"] != 4096) kept.push_back(c);
  cb["matmul"]["cases"] = kept;
  cb["errors"] = json::array({"matmul section: planted"});
  SuiteResult r;
  cb::harness::add_cuda_bench_metrics(cb, r);
  EXPECT_EQ(r.find("kernels.matmul.bf16_vs_f32.speedup"), nullptr);
  ASSERT_TRUE(r.params["not_measured"].contains("kernels.matmul.bf16_vs_f32.speedup"));
  EXPECT_NE(r.params["not_measured"]["kernels.matmul.bf16_vs_f32.speedup"].get<std::string>().find("q_o.M4096"), std::string::npos);
  ASSERT_EQ(r.tables["errors"].size(), 1u);
}

// The published H200 run (results/published/gpu-check-*): real output, older than chunk_ms, so
// each ratio has the one median-over-median sample.
TEST(KernelsCuda, PublishedH200RunReadsBack) {
  const fs::path f = fs::path(CB_SOURCE_DIR) / "results/published/gpu-check-20261204T114446Z-a63f7ed575f6/cuda_bench.json";
  ASSERT_TRUE(fs::exists(f)) << f;
  SuiteResult r;
  cb::harness::add_cuda_bench_metrics(cb::harness::read_benchmark_json(f), r);
  const auto* tc = r.find("kernels.matmul.bf16_vs_f32.speedup");
  ASSERT_NE(tc, nullptr);
  EXPECT_NEAR(tc->value, 0.6855893135070801 / 0.07503, 0.01);  // f32 685.6 us / bf16 75.0 us per call
  EXPECT_GT(r.find("kernels.peak.gpu.gemm_bf16_tflops")->value, 800);
  EXPECT_NEAR(r.find("kernels.cuda.attention.decode.B32.ctx16384.copy_fraction")->value, 0.620, 0.001);
  ASSERT_NE(r.find("kernels.cuda.matmul.bf16_vs_cublaslt_best.q_o.M4096"), nullptr);
  ASSERT_NE(r.find("kernels.cuda.matmul.w8a8_vs_bf16.down.M4096"), nullptr);
}

// Without a usable GPU (or without the cuda build) the suite is SKIP with the reason, never a
// failure and never a measurement.
TEST(KernelsCuda, SuiteWithoutAGpuIsSkippedWithTheReason) {
  if (!cb::harness::cuda_bench_binary().empty()) {
    // A cuda build: the bench decides. On a GPU machine this would run the real bench, which
    // cb_cuda_tests and ci/gpu-check.sh cover; here only the no-GPU answer is checked.
    const int rc = std::system((cb::harness::cuda_bench_binary().string() + " --peaks-only >/dev/null 2>&1").c_str());
    if (WIFEXITED(rc) && WEXITSTATUS(rc) != 77) GTEST_SKIP() << "a GPU is usable here: covered by ci/gpu-check.sh";
  }
  cb::harness::SuiteContext ctx;
  ctx.backend = "cuda";
  ctx.quick = true;
  ctx.run_dir = fs::temp_directory_path() / ("cb_kernels_cuda_" + std::to_string(::getpid()));
  const SuiteResult r = cb::harness::run_kernels_suite_cuda(ctx);
  fs::remove_all(ctx.run_dir);
  EXPECT_EQ(r.status, cb::harness::SuiteStatus::Skipped);
  EXPECT_NE(r.reason.find("--backend cuda"), std::string::npos) << r.reason;
  EXPECT_TRUE(r.metrics.empty());
}

}  // namespace
