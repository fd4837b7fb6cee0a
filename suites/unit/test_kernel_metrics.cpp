// The kernels suite's cpu path: cb_kernel_bench's Google Benchmark JSON -> metrics. Here the
// paged vs contiguous figure, which must come from the paired benchmark (both kernels timed
// alternately) and not from two separate benchmarks whose repetitions ran seconds apart.
#include <gtest/gtest.h>

#include "cb/harness/suites/kernel_metrics.h"

namespace {
using cb::harness::SuiteResult;
using nlohmann::json;

const char* kPaired = "paired/attention/cpu/f32/H32_KV4_D64_B16_vs_contiguous/decode_ctx4096_S8/M8/min_time:0.250/manual_time";
const char* kPaged = "attention/cpu/f32/H32_KV4_D64_B16/decode_ctx4096_S8/M8/real_time";
const char* kContiguous = "attention/cpu/f32/H32_KV4_D64_contiguous/decode_ctx4096_S8/M8/real_time";

json repetition(const std::string& name, int index, json counters) {
  json e = {{"name", name}, {"run_name", name}, {"run_type", "iteration"}, {"repetitions", 3}, {"repetition_index", index},
            {"real_time", 1000.0}, {"time_unit", "us"}};
  for (auto& [k, v] : counters.items()) e[k] = v;
  return e;
}

// Three repetitions of the paired benchmark with these ratios, and of the two separate
// benchmarks with GFLOP/s whose index-paired ratio is 0.5 (what the figure must not use).
json run_with(const std::vector<double>& paired_ratios) {
  json b = json::array();
  for (int i = 0; i < 3; ++i) {
    const double r = paired_ratios[size_t(i)];
    b.push_back(repetition(kPaired, i, {{"ratio", r}, {"a_ms", 4.0}, {"b_ms", 4.0 * r}, {"placements", 4.0}}));
    b.push_back(repetition(kPaged, i, {{"GFLOP/s", 40.0}, {"GB/s", 10.0}}));
    b.push_back(repetition(kContiguous, i, {{"GFLOP/s", 80.0}, {"GB/s", 20.0}}));
  }
  b.push_back({{"name", std::string(kPaired) + "_mean"}, {"run_type", "aggregate"}, {"ratio", 9.0}});  // not a repetition
  return {{"context", {{"omp_max_threads", "2"}}}, {"benchmarks", b}};
}

TEST(KernelMetrics, PagedVsContiguousComesFromThePairedBenchmarkOneSamplePerRepetition) {
  SuiteResult r;
  cb::harness::add_kernel_metrics(run_with({1.02, 1.06, 0.98}), r);
  const auto* m = r.find("kernels.attention.paged_vs_contiguous.ctx4096");
  ASSERT_NE(m, nullptr);
  EXPECT_DOUBLE_EQ(m->value, 1.02);  // the median of the repetitions' ratios
  EXPECT_EQ(m->samples, (std::vector<double>{1.02, 1.06, 0.98}));
  EXPECT_EQ(m->params.value("benchmark", ""), "paired/attention/cpu/f32/H32_KV4_D64_B16_vs_contiguous/decode_ctx4096_S8/M8");
  // The pair is an A/B measurement, not a kernel: no table row of its own; the two separate
  // benchmarks stay rows.
  int paired_rows = 0, attention_rows = 0;
  for (const auto& row : r.tables["benchmarks"]) {
    const std::string n = row.value("name", "");
    paired_rows += n.rfind("paired/", 0) == 0;
    attention_rows += n.rfind("attention/", 0) == 0;
  }
  EXPECT_EQ(paired_rows, 0);
  EXPECT_EQ(attention_rows, 2);
}

// A paging overhead (the paged side twice as slow) takes the figure below its 0.95 target.
TEST(KernelMetrics, PlantedPagingOverheadFlipsThePagedVsContiguousFigure) {
  SuiteResult good, bad;
  cb::harness::add_kernel_metrics(run_with({1.02, 1.06, 0.98}), good);
  cb::harness::add_kernel_metrics(run_with({0.51, 0.53, 0.49}), bad);
  EXPECT_GE(good.find("kernels.attention.paged_vs_contiguous.ctx4096")->value, 0.95);
  EXPECT_LT(bad.find("kernels.attention.paged_vs_contiguous.ctx4096")->value, 0.95);
}

// The paired benchmark runs a fixed 32 alternations since 2026-12-07 ("/iterations:32" where it
// said "/min_time:0.250"): the same figure under the same key either way.
TEST(KernelMetrics, PairedRunLengthSuffixIsNotPartOfTheName) {
  json run = run_with({1.02, 1.06, 0.98});
  for (auto& e : run["benchmarks"]) {
    std::string n = e.value("name", "");
    const size_t at = n.find("/min_time:0.250");
    if (at != std::string::npos) n.replace(at, std::string("/min_time:0.250").size(), "/iterations:32");
    e["name"] = n;
    if (e.contains("run_name")) e["run_name"] = n;
  }
  SuiteResult r;
  cb::harness::add_kernel_metrics(run, r);
  const auto* m = r.find("kernels.attention.paged_vs_contiguous.ctx4096");
  ASSERT_NE(m, nullptr);
  EXPECT_DOUBLE_EQ(m->value, 1.02);
  EXPECT_EQ(m->params.value("benchmark", ""), "paired/attention/cpu/f32/H32_KV4_D64_B16_vs_contiguous/decode_ctx4096_S8/M8");
}

// Without the paired benchmark (a filter left it out) there is no figure: the separate
// benchmarks' repetitions are not paired in time, so no ratio is made of them.
TEST(KernelMetrics, NoPairedBenchmarkNoPagedVsContiguousFigure) {
  json run = run_with({1.0, 1.0, 1.0});
  json kept = json::array();
  for (const auto& e : run["benchmarks"])
    if (e.value("name", "").rfind("paired/", 0) != 0) kept.push_back(e);
  run["benchmarks"] = kept;
  SuiteResult r;
  cb::harness::add_kernel_metrics(run, r);
  EXPECT_EQ(r.find("kernels.attention.paged_vs_contiguous.ctx4096"), nullptr);
}

// cpu vs oneDNN divides each repetition by the faster of oneDNN's two f32 paths in it (the
// matmul primitive with W reordered once, sgemm): a ratio against sgemm alone (which packs W in
// every call) flattered the cpu kernel 3x at M=16.
TEST(KernelMetrics, CpuVsOnednnDividesByTheFasterPeerOfEachRepetition) {
  const std::string sh = "K2048_N2048/M16";
  auto bench = [&](bool with_primitive) {
    json b = json::array();
    const double cpu[3] = {300, 310, 290}, sgemm[3] = {30, 31, 29}, primitive[3] = {350, 300, 320};
    for (int i = 0; i < 3; ++i) {
      b.push_back(repetition("matmul/cpu/f32/" + sh + "/real_time", i, {{"GFLOP/s", cpu[i]}, {"GB/s", 1.0}, {"M", 16}}));
      b.push_back(repetition("matmul/onednn_sgemm/f32/" + sh + "/real_time", i, {{"GFLOP/s", sgemm[i]}, {"GB/s", 1.0}}));
      if (with_primitive)
        b.push_back(repetition("matmul/onednn_matmul/f32/" + sh + "/real_time", i, {{"GFLOP/s", primitive[i]}, {"GB/s", 1.0}}));
    }
    return json{{"context", {{"omp_max_threads", "2"}}}, {"benchmarks", b}};
  };
  SuiteResult r;
  cb::harness::add_kernel_metrics(bench(true), r);
  const auto* m = r.find("kernels.matmul.cpu_vs_onednn.M16");
  ASSERT_NE(m, nullptr);
  ASSERT_EQ(m->samples.size(), 3u);
  EXPECT_DOUBLE_EQ(m->samples[0], 300.0 / 350.0);
  EXPECT_DOUBLE_EQ(m->samples[1], 310.0 / 300.0);
  EXPECT_DOUBLE_EQ(m->samples[2], 290.0 / 320.0);
  EXPECT_DOUBLE_EQ(m->value, 290.0 / 320.0);  // the median
  EXPECT_EQ(m->params.value("denominator", ""),
            "fastest of matmul/onednn_matmul/f32/" + sh + ", matmul/onednn_sgemm/f32/" + sh);
  // An older binary without the primitive: the ratio against sgemm, and its params say so.
  SuiteResult old;
  cb::harness::add_kernel_metrics(bench(false), old);
  const auto* o = old.find("kernels.matmul.cpu_vs_onednn.M16");
  ASSERT_NE(o, nullptr);
  EXPECT_DOUBLE_EQ(o->value, 10.0);
  EXPECT_EQ(o->params.value("denominator", ""), "matmul/onednn_sgemm/f32/" + sh);
}

}  // namespace
