// The regression gate: Mann-Whitney U p-values against scipy's numbers, and the gate's verdicts on
// runs built in memory.
#include <algorithm>
#include <cmath>
#include <random>
#include <sstream>

#include <gtest/gtest.h>

#include "cb/harness/verdicts/compare.h"

using namespace cb::harness;

namespace {
Metric make(const std::string& key, std::vector<double> samples, Direction dir, NoiseClass noise, std::string unit = "x") {
  Metric m;
  m.key = key;
  m.samples = std::move(samples);
  m.value = m.samples.empty() ? 0.0 : median(m.samples);
  m.direction = dir;
  m.noise = noise;
  m.unit = std::move(unit);
  return m;
}
Metric single(const std::string& key, double v, Direction dir, NoiseClass noise) {
  Metric m = make(key, {}, dir, noise);
  m.value = v;
  return m;
}

RunData run(std::vector<std::pair<std::string, Metric>> metrics, const std::string& fp = "abc123") {
  RunData r;
  r.dir = "/tmp/run-" + fp;
  r.manifest = {{"schema", "claimbench.manifest"}, {"schema_version", "1.0"}, {"run_id", "r-" + fp},
                {"hardware", {{"cpu_model", "Test CPU"}, {"cores", 2}, {"gpus", nlohmann::json::array()}, {"fingerprint", fp}}}};
  for (auto& [suite, m] : metrics) {
    r.suites[suite].suite = suite;
    r.suites[suite].add(m);
  }
  return r;
}

const MetricComparison* find(const CompareResult& r, const std::string& key) {
  for (const auto& m : r.metrics)
    if (m.key == key) return &m;
  return nullptr;
}
}  // namespace

// Reference values: scipy.stats.mannwhitneyu(x, y, alternative="two-sided"), reproduced by full
// enumeration of the C(n1+n2, n1) orderings (exact) and by scipy's normal-approximation formula
// (asymptotic: z = (max(U1,U2) - n1 n2/2 - 0.5) / sigma, sigma with the tie correction).
TEST(CompareMwu, ExactPValuesMatchScipy) {
  // U1 = 0 of 20 orderings: 2 * 1/20.
  EXPECT_DOUBLE_EQ(mann_whitney_u_pvalue({1, 2, 3}, {4, 5, 6}), 0.1);
  // Fully separated 5 vs 5: 2 / C(10,5) = 2/252 = 0.0079365...
  EXPECT_NEAR(mann_whitney_u_pvalue({1, 2, 3, 4, 5}, {6, 7, 8, 9, 10}), 2.0 / 252.0, 1e-15);
  EXPECT_NEAR(mann_whitney_u_pvalue({6, 7, 8, 9, 10}, {1, 2, 3, 4, 5}), 0.0079365079365079, 1e-15);
  // scipy's documentation example: males vs females, U = 17, exact p = 0.1111111111111111 (14/126).
  const std::vector<double> males = {19, 22, 16, 29, 24}, females = {20, 11, 17, 12};
  EXPECT_DOUBLE_EQ(mann_whitney_u_statistic(males, females), 17.0);
  EXPECT_NEAR(mann_whitney_u_pvalue(males, females), 0.1111111111111111, 1e-15);
  // Interleaved 4 vs 5: U1 = 6, p = 52/126 = 0.4126984126984127.
  EXPECT_NEAR(mann_whitney_u_pvalue({1, 3, 5, 7}, {2, 4, 6, 8, 10}), 0.4126984126984127, 1e-15);
}

TEST(CompareMwu, AsymptoticPValuesMatchScipy) {
  // scipy docs, method="asymptotic": 0.11134688653314041 (normal approximation, continuity-corrected).
  const std::vector<double> males = {19, 22, 16, 29, 24}, females = {20, 11, 17, 12};
  EXPECT_NEAR(mann_whitney_u_pvalue(males, females, /*exact_max_n=*/0), 0.11134688653314041, 1e-12);
  // With ties (2 three times, 3 twice, 6 twice): U1 = 4.5, tie term 24+6+6 = 36, n = 11,
  // sigma^2 = 30/12 * (12 - 36/110), z = (25.5 - 15 - 0.5)/sigma, p = 0.06414661873440443.
  EXPECT_NEAR(mann_whitney_u_pvalue({1, 2, 2, 3, 4}, {2, 3, 5, 6, 6, 7}), 0.06414661873440443, 1e-12);
  // 25 vs 25 (past the exact limit), shifted by 10.5: U1 = 105, p = 5.909644085596031e-05.
  std::vector<double> a, b;
  for (int i = 0; i < 25; ++i) {
    a.push_back(i);
    b.push_back(i + 10.5);
  }
  EXPECT_NEAR(mann_whitney_u_pvalue(a, b), 5.909644085596031e-05, 1e-15);
}

TEST(CompareMwu, EdgeCases) {
  EXPECT_EQ(mann_whitney_u_pvalue({}, {1, 2}), 1.0);
  EXPECT_EQ(mann_whitney_u_pvalue({3, 3, 3}, {3, 3}), 1.0);  // every value ties
  const std::vector<double> a = {1.5, 2.5, 9, 4}, b = {3, 7, 8, 10, 11};
  EXPECT_DOUBLE_EQ(mann_whitney_u_pvalue(a, b), mann_whitney_u_pvalue(b, a));
  EXPECT_DOUBLE_EQ(mann_whitney_u_pvalue(a, a), 1.0);
}

TEST(CompareGate, PlantedTwoTimesSlowdownOnRatioMetricFails) {
  const auto base = run({{"kernels", make("kernels.matmul.int8_vs_f32.speedup", {2.00, 2.02, 1.98, 2.01, 1.99}, Direction::HigherIsBetter, NoiseClass::Ratio)}});
  const auto next = run({{"kernels", make("kernels.matmul.int8_vs_f32.speedup", {1.00, 1.01, 0.99, 1.005, 0.995}, Direction::HigherIsBetter, NoiseClass::Ratio)}});
  const CompareResult r = compare_runs(base, next);
  const auto* m = find(r, "kernels.matmul.int8_vs_f32.speedup");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->verdict, CompareVerdict::Regression);
  EXPECT_TRUE(m->failure);
  EXPECT_NEAR(*m->change, -0.5, 1e-12);
  EXPECT_NEAR(*m->p_value, 2.0 / 252.0, 1e-15);
  EXPECT_EQ(m->n_base, 5u);
  EXPECT_EQ(m->n_next, 5u);
  EXPECT_EQ(compare_exit_code(r), 1);
  ASSERT_EQ(r.geomeans.size(), 1u);
  EXPECT_NEAR(r.geomeans[0].ratio, 0.5, 1e-12);
}

TEST(CompareGate, SameDataRerunPasses) {
  const auto base = run({{"kernels", make("kernels.matmul.int8_vs_f32.speedup", {2.00, 2.02, 1.98, 2.01, 1.99}, Direction::HigherIsBetter, NoiseClass::Ratio)},
                         {"load", make("load.e2e_ms", {10, 11, 12}, Direction::LowerIsBetter, NoiseClass::Timing, "ms")}});
  const CompareResult r = compare_runs(base, base);
  for (const auto& m : r.metrics) EXPECT_EQ(m.verdict, CompareVerdict::Unchanged) << m.key;
  EXPECT_TRUE(r.failures.empty());
  EXPECT_EQ(compare_exit_code(r), 0);
  for (const auto& g : r.geomeans) EXPECT_DOUBLE_EQ(g.ratio, 1.0);
}

TEST(CompareGate, ThreePercentChangeUnderFivePercentThresholdPasses) {
  // Single values (exact metric): judged on the threshold alone.
  auto r = compare_runs(run({{"accuracy", single("accuracy.int8.size_ratio", 4.0, Direction::HigherIsBetter, NoiseClass::Exact)}}),
                        run({{"accuracy", single("accuracy.int8.size_ratio", 3.88, Direction::HigherIsBetter, NoiseClass::Exact)}}));
  EXPECT_EQ(find(r, "accuracy.int8.size_ratio")->verdict, CompareVerdict::Unchanged);
  EXPECT_NEAR(*find(r, "accuracy.int8.size_ratio")->change, -0.03, 1e-12);
  EXPECT_FALSE(find(r, "accuracy.int8.size_ratio")->p_value.has_value());
  EXPECT_EQ(compare_exit_code(r), 0);
  // With samples: significant (p = 0.0079) but only 3% worse: still unchanged.
  r = compare_runs(run({{"k", make("k.ratio", {1.00, 1.001, 1.002, 1.003, 1.004}, Direction::HigherIsBetter, NoiseClass::Ratio)}}),
                   run({{"k", make("k.ratio", {0.97, 0.971, 0.972, 0.973, 0.974}, Direction::HigherIsBetter, NoiseClass::Ratio)}}));
  EXPECT_LT(*find(r, "k.ratio")->p_value, 0.05);
  EXPECT_EQ(find(r, "k.ratio")->verdict, CompareVerdict::Unchanged);
  EXPECT_EQ(compare_exit_code(r), 0);
  // The same single-value 6% drop is a regression.
  r = compare_runs(run({{"accuracy", single("accuracy.int8.size_ratio", 4.0, Direction::HigherIsBetter, NoiseClass::Exact)}}),
                   run({{"accuracy", single("accuracy.int8.size_ratio", 3.76, Direction::HigherIsBetter, NoiseClass::Exact)}}));
  EXPECT_EQ(find(r, "accuracy.int8.size_ratio")->verdict, CompareVerdict::Regression);
  EXPECT_EQ(compare_exit_code(r), 1);
}

TEST(CompareGate, NeutralMetricNeverFails) {
  const auto r = compare_runs(run({{"cost", make("cost.power_day.cost", {5.76, 5.76, 5.76}, Direction::Neutral, NoiseClass::Exact)}}),
                              run({{"cost", make("cost.power_day.cost", {11.5, 11.6, 11.7}, Direction::Neutral, NoiseClass::Exact)}}));
  const auto* m = find(r, "cost.power_day.cost");
  EXPECT_EQ(m->verdict, CompareVerdict::Neutral);
  EXPECT_FALSE(m->failure);
  EXPECT_GT(*m->change, 0.9);  // reported
  EXPECT_TRUE(r.geomeans.empty());  // neutral metrics stay out of the geomean
  EXPECT_EQ(compare_exit_code(r), 0);
}

TEST(CompareGate, LowerIsBetterDirection) {
  const auto base = run({{"scaling", make("scaling.allreduce.8dev.time_ms", {10, 10.1, 9.9, 10.05, 9.95}, Direction::LowerIsBetter, NoiseClass::Ratio, "ms")}});
  const auto slower = run({{"scaling", make("scaling.allreduce.8dev.time_ms", {20, 20.2, 19.8, 20.1, 19.9}, Direction::LowerIsBetter, NoiseClass::Ratio, "ms")}});
  const auto faster = run({{"scaling", make("scaling.allreduce.8dev.time_ms", {5, 5.05, 4.95, 5.02, 4.98}, Direction::LowerIsBetter, NoiseClass::Ratio, "ms")}});
  auto r = compare_runs(base, slower);
  EXPECT_EQ(r.metrics[0].verdict, CompareVerdict::Regression);
  EXPECT_NEAR(*r.metrics[0].change, -1.0, 1e-12);  // twice the time: -100% (positive = better)
  EXPECT_NEAR(r.geomeans[0].ratio, 0.5, 1e-12);    // base/new
  r = compare_runs(base, faster);
  EXPECT_EQ(r.metrics[0].verdict, CompareVerdict::Improvement);
  EXPECT_NEAR(*r.metrics[0].change, 0.5, 1e-12);
  EXPECT_NEAR(r.geomeans[0].ratio, 2.0, 1e-12);
  EXPECT_EQ(compare_exit_code(r), 0);
}

TEST(CompareGate, TimingWithSingleSamplesIsInsufficientNeverRegression) {
  const auto r = compare_runs(run({{"load", single("load.rt_service.max_rate_rps", 100, Direction::HigherIsBetter, NoiseClass::Timing)}}),
                              run({{"load", single("load.rt_service.max_rate_rps", 40, Direction::HigherIsBetter, NoiseClass::Timing)}}));
  EXPECT_EQ(r.metrics[0].verdict, CompareVerdict::InsufficientSamples);
  EXPECT_NEAR(*r.metrics[0].change, -0.6, 1e-12);
  EXPECT_EQ(compare_exit_code(r), 0);
}

TEST(CompareGate, TimingNotSignificantIsUnchanged) {
  // 2 vs 2 samples: the smallest possible exact p is 1/3, so no timing change can be significant.
  const auto r = compare_runs(run({{"load", make("load.tps", {100, 101}, Direction::HigherIsBetter, NoiseClass::Timing)}}),
                              run({{"load", make("load.tps", {50, 51}, Direction::HigherIsBetter, NoiseClass::Timing)}}));
  EXPECT_NEAR(*r.metrics[0].p_value, 1.0 / 3.0, 1e-15);
  EXPECT_EQ(r.metrics[0].verdict, CompareVerdict::Unchanged);
  EXPECT_NE(r.metrics[0].note.find("too few repetitions"), std::string::npos) << r.metrics[0].note;
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].find("too few repetitions"), std::string::npos);
  std::ostringstream os;
  print_compare_table(os, r);
  EXPECT_NE(os.str().find("unchanged (not significant)"), std::string::npos);
}

TEST(CompareGate, ExactMetricWithConstantSamplesIsJudgedOnThreshold) {
  const auto r = compare_runs(run({{"accuracy", make("accuracy.int8.size_ratio", {4, 4}, Direction::HigherIsBetter, NoiseClass::Exact)}}),
                              run({{"accuracy", make("accuracy.int8.size_ratio", {2, 2}, Direction::HigherIsBetter, NoiseClass::Exact)}}));
  EXPECT_EQ(r.metrics[0].verdict, CompareVerdict::Regression);
}

TEST(CompareGate, MissingNewAndRequired) {
  const auto base = run({{"k", single("k.a", 1, Direction::HigherIsBetter, NoiseClass::Exact)},
                         {"k", single("k.b", 1, Direction::HigherIsBetter, NoiseClass::Exact)}});
  const auto next = run({{"k", single("k.a", 1, Direction::HigherIsBetter, NoiseClass::Exact)},
                         {"k", single("k.c", 1, Direction::HigherIsBetter, NoiseClass::Exact)}});
  auto r = compare_runs(base, next);
  EXPECT_EQ(find(r, "k.b")->verdict, CompareVerdict::Missing);
  EXPECT_FALSE(find(r, "k.b")->failure);
  EXPECT_EQ(find(r, "k.c")->verdict, CompareVerdict::New);
  EXPECT_EQ(compare_exit_code(r), 0);
  CompareOptions o;
  o.required = {"k.b"};
  r = compare_runs(base, next, o);
  EXPECT_TRUE(find(r, "k.b")->failure);
  EXPECT_EQ(compare_exit_code(r), 1);
  o.required = {"k.*"};
  EXPECT_EQ(compare_exit_code(compare_runs(base, next, o)), 1);
  o.required = {"k.zzz"};  // in neither run
  EXPECT_EQ(compare_exit_code(compare_runs(base, next, o)), 1);
}

// A ratio whose peer changed (oneDNN's matmul primitive joined sgemm as the denominator) is not
// the same measurement: a 3x drop is not a regression, and a gate requiring it fails until the
// baseline is re-made.
TEST(CompareGate, RatioWhoseDenominatorChangedIsNotComparable) {
  auto with_peer = [](std::vector<double> samples, const std::string& den) {
    Metric m = make("kernels.matmul.cpu_vs_onednn.M16", std::move(samples), Direction::HigherIsBetter, NoiseClass::Ratio);
    m.params = {{"numerator", "matmul/cpu/f32/K2048_N2048/M16"}, {"denominator", den}};
    return m;
  };
  const auto base = run({{"kernels", with_peer({3.1, 3.0, 3.2, 3.1, 3.05}, "matmul/onednn_sgemm/f32/K2048_N2048/M16")}});
  const auto next = run({{"kernels", with_peer({0.9, 0.88, 0.91, 0.9, 0.89},
                                               "fastest of matmul/onednn_matmul/f32/K2048_N2048/M16, "
                                               "matmul/onednn_sgemm/f32/K2048_N2048/M16")}});
  auto r = compare_runs(base, next);
  const auto* m = find(r, "kernels.matmul.cpu_vs_onednn.M16");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->verdict, CompareVerdict::Invalid);
  EXPECT_FALSE(m->failure);
  EXPECT_NE(m->note.find("denominator changed"), std::string::npos) << m->note;
  EXPECT_NE(m->note.find("onednn_matmul"), std::string::npos) << m->note;
  EXPECT_EQ(compare_exit_code(r), 0);
  EXPECT_TRUE(r.geomeans.empty() || r.geomeans[0].count == 0u);  // not folded into the geomean
  ASSERT_EQ(r.warnings.size(), 1u);
  CompareOptions o;
  o.required = {"kernels.matmul.cpu_vs_onednn.M16"};
  r = compare_runs(base, next, o);
  EXPECT_TRUE(find(r, "kernels.matmul.cpu_vs_onednn.M16")->failure);
  EXPECT_NE(find(r, "kernels.matmul.cpu_vs_onednn.M16")->note.find("re-make the baseline"), std::string::npos);
  EXPECT_EQ(compare_exit_code(r), 1);
  // The same peers on both sides: judged as usual (here a regression).
  r = compare_runs(base, run({{"kernels", with_peer({0.9, 0.88, 0.91, 0.9, 0.89}, "matmul/onednn_sgemm/f32/K2048_N2048/M16")}}));
  EXPECT_EQ(find(r, "kernels.matmul.cpu_vs_onednn.M16")->verdict, CompareVerdict::Regression);
}

TEST(CompareGate, HardwareMismatchFailsUnlessAllowed) {
  const auto base = run({{"k", single("k.a", 1, Direction::HigherIsBetter, NoiseClass::Exact)}}, "aaaa");
  const auto next = run({{"k", single("k.a", 1, Direction::HigherIsBetter, NoiseClass::Exact)}}, "bbbb");
  auto r = compare_runs(base, next);
  EXPECT_TRUE(r.hardware_mismatch);
  EXPECT_EQ(compare_exit_code(r), 1);
  CompareOptions o;
  o.allow_hardware_mismatch = true;
  r = compare_runs(base, next, o);
  EXPECT_EQ(compare_exit_code(r), 0);
  ASSERT_FALSE(r.warnings.empty());
  EXPECT_NE(r.warnings[0].find("differ"), std::string::npos);
}

TEST(CompareGate, DifferentLastLevelCacheInOneClassIsAWarningNotAFailure) {
  auto base = run({{"k", single("k.a", 1, Direction::HigherIsBetter, NoiseClass::Exact)}}, "aaaa");
  auto next = run({{"k", single("k.a", 1, Direction::HigherIsBetter, NoiseClass::Exact)}}, "aaaa");
  EXPECT_TRUE(compare_runs(base, next).warnings.empty());
  base.manifest["hardware"]["llc_bytes"] = int64_t(508) << 20;
  next.manifest["hardware"]["llc_bytes"] = int64_t(32) << 20;
  const auto r = compare_runs(base, next);
  EXPECT_FALSE(r.hardware_mismatch);
  EXPECT_EQ(compare_exit_code(r), 0);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].find("base 508 MiB, new 32 MiB"), std::string::npos) << r.warnings[0];
  next.manifest["hardware"]["llc_bytes"] = int64_t(508) << 20;
  EXPECT_TRUE(compare_runs(base, next).warnings.empty());
}

TEST(CompareGate, FiltersAndThresholdOverrides) {
  const auto base = run({{"kernels", single("kernels.x.speedup", 2.0, Direction::HigherIsBetter, NoiseClass::Ratio)},
                         {"load", make("load.tps", {100, 100.5, 99.5, 100.2, 99.8}, Direction::HigherIsBetter, NoiseClass::Timing)}});
  const auto next = run({{"kernels", single("kernels.x.speedup", 1.8, Direction::HigherIsBetter, NoiseClass::Ratio)},
                         {"load", make("load.tps", {50, 50.5, 49.5, 50.2, 49.8}, Direction::HigherIsBetter, NoiseClass::Timing)}});
  CompareOptions ci;
  ci.noise_classes = {NoiseClass::Exact, NoiseClass::Ratio};
  auto r = compare_runs(base, next, ci);
  ASSERT_EQ(r.metrics.size(), 1u);
  EXPECT_EQ(r.metrics[0].key, "kernels.x.speedup");
  EXPECT_EQ(r.metrics[0].verdict, CompareVerdict::Regression);  // -10% past 5%
  ci.noise_threshold[NoiseClass::Ratio] = 0.15;
  EXPECT_EQ(compare_runs(base, next, ci).metrics[0].verdict, CompareVerdict::Unchanged);
  ci.prefix_threshold["kernels."] = 0.08;  // the prefix beats the noise class
  EXPECT_EQ(compare_runs(base, next, ci).metrics[0].verdict, CompareVerdict::Regression);
  ci.prefix_threshold["kernels.x."] = 0.2;  // the longest prefix wins
  EXPECT_EQ(compare_runs(base, next, ci).metrics[0].verdict, CompareVerdict::Unchanged);
  CompareOptions only_load;
  only_load.suites = {"load"};
  r = compare_runs(base, next, only_load);
  ASSERT_EQ(r.metrics.size(), 1u);
  EXPECT_EQ(r.metrics[0].verdict, CompareVerdict::Regression);
}

TEST(CompareGate, GeomeanAndNaN) {
  const auto base = run({{"k", single("k.a", 1, Direction::HigherIsBetter, NoiseClass::Exact)},
                         {"k", single("k.b", 1, Direction::HigherIsBetter, NoiseClass::Exact)},
                         {"k", single("k.c", 1, Direction::HigherIsBetter, NoiseClass::Exact)}});
  const auto next = run({{"k", single("k.a", 2, Direction::HigherIsBetter, NoiseClass::Exact)},
                         {"k", single("k.b", 0.5, Direction::HigherIsBetter, NoiseClass::Exact)},
                         {"k", single("k.c", std::nan(""), Direction::HigherIsBetter, NoiseClass::Exact)}});
  const auto r = compare_runs(base, next);
  ASSERT_EQ(r.geomeans.size(), 1u);
  EXPECT_NEAR(r.geomeans[0].ratio, 1.0, 1e-12);
  EXPECT_EQ(r.geomeans[0].count, 2u);
  EXPECT_EQ(find(r, "k.c")->verdict, CompareVerdict::Invalid);
  EXPECT_TRUE(find(r, "k.c")->failure);
  EXPECT_EQ(compare_exit_code(r), 1);
}

TEST(CompareGate, SuiteThatBrokeFailsTheGate) {
  auto base = run({{"load", single("load.x", 1, Direction::HigherIsBetter, NoiseClass::Ratio)}});
  auto next = run({{"load", single("load.x", 1, Direction::HigherIsBetter, NoiseClass::Ratio)}});
  next.suites["load"].status = SuiteStatus::Error;
  next.suites["load"].reason = "engine crashed";
  const auto r = compare_runs(base, next);
  ASSERT_EQ(r.failures.size(), 1u);
  EXPECT_NE(r.failures[0].find("engine crashed"), std::string::npos);
}

TEST(CompareGate, TableAndJson) {
  const auto base = run({{"kernels", make("kernels.s", {2.00, 2.02, 1.98, 2.01, 1.99}, Direction::HigherIsBetter, NoiseClass::Ratio)}});
  const auto next = run({{"kernels", make("kernels.s", {1.00, 1.01, 0.99, 1.005, 0.995}, Direction::HigherIsBetter, NoiseClass::Ratio)}});
  const auto r = compare_runs(base, next);
  std::ostringstream os;
  print_compare_table(os, r);
  const std::string t = os.str();
  EXPECT_NE(t.find("kernels.s"), std::string::npos);
  EXPECT_NE(t.find("-50.00%"), std::string::npos);
  EXPECT_NE(t.find("0.0079"), std::string::npos);
  EXPECT_NE(t.find("5/5"), std::string::npos);
  EXPECT_NE(t.find("regression"), std::string::npos);
  EXPECT_NE(t.find("[geomean] kernels"), std::string::npos);
  EXPECT_NE(t.find("GATE FAIL"), std::string::npos);
  const auto j = to_json(r);
  EXPECT_EQ(j["schema"], "claimbench.compare");
  EXPECT_EQ(j["passed"], false);
  EXPECT_EQ(j["metrics"][0]["verdict"], "regression");
  EXPECT_EQ(j["metrics"][0]["n_base"], 5);
}

// ---- Paired accuracy metrics (params.pair_key): per-example 0/1 of the same examples ----------
namespace {
Metric exact_match(const std::vector<int>& correct, const std::string& key = "k1") {
  Metric m;
  m.key = "accuracy.http.exact_match";
  for (int c : correct) m.samples.push_back(c);
  double s = 0;
  for (double v : m.samples) s += v;
  m.value = s / double(m.samples.size());
  m.unit = "fraction";
  m.direction = Direction::HigherIsBetter;
  m.noise = NoiseClass::Exact;
  m.params = {{"pair_key", key}};
  return m;
}
// 200 examples, `right` of them correct: the first `right`, or a seeded choice.
std::vector<int> answers(int n, int right, uint64_t seed = 0) {
  std::vector<int> v(size_t(n), 0);
  for (int i = 0; i < right; ++i) v[size_t(i)] = 1;
  if (seed) std::shuffle(v.begin(), v.end(), std::mt19937_64(seed));
  return v;
}
}  // namespace

TEST(ComparePaired, BootstrapIntervalOfTheMeanDifference) {
  // No spread: the difference is exact.
  auto d = paired_bootstrap({1, 1, 0, 0}, {1, 1, 0, 0});
  EXPECT_EQ(d.mean, 0);
  EXPECT_EQ(d.low, 0);
  EXPECT_EQ(d.high, 0);
  EXPECT_EQ(d.p_value, 1);
  // 40 of 200 flipped from right to wrong, none the other way: mean -0.2, interval well below 0.
  const auto a = answers(200, 160), b0 = answers(200, 120);
  std::vector<double> av(a.begin(), a.end()), bv(b0.begin(), b0.end());
  d = paired_bootstrap(av, bv);
  EXPECT_DOUBLE_EQ(d.mean, -0.2);
  EXPECT_LT(d.high, -0.1);
  EXPECT_GT(d.low, -0.3);
  EXPECT_LT(d.p_value, 0.001);
  // Repeats exactly (fixed seed).
  const auto d2 = paired_bootstrap(av, bv);
  EXPECT_EQ(d.low, d2.low);
  EXPECT_EQ(d.high, d2.high);
  EXPECT_THROW(paired_bootstrap({1}, {1, 0}), std::invalid_argument);
}

TEST(ComparePaired, IdenticalRunsAreUnchanged) {
  const auto v = answers(200, 150, 7);
  const auto r = compare_runs(run({{"accuracy", exact_match(v)}}), run({{"accuracy", exact_match(v)}}));
  const auto* m = find(r, "accuracy.http.exact_match");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->test, "paired-bootstrap");
  EXPECT_EQ(m->verdict, CompareVerdict::Unchanged);
  EXPECT_EQ(*m->diff_mean, 0);
  EXPECT_TRUE(r.passed());
  EXPECT_EQ(compare_exit_code(r), 0);
}

TEST(ComparePaired, AnswersWorseBeyondTheThresholdAreARegression) {
  // 150 -> 130 correct of 200: -10 points, -13.3% relative (threshold 5%); only flips right->wrong.
  auto worse = answers(200, 150);
  for (int i = 130; i < 150; ++i) worse[size_t(i)] = 0;
  const auto r = compare_runs(run({{"accuracy", exact_match(answers(200, 150))}}), run({{"accuracy", exact_match(worse)}}));
  const auto* m = find(r, "accuracy.http.exact_match");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->verdict, CompareVerdict::Regression) << m->note;
  EXPECT_TRUE(m->failure);
  EXPECT_NEAR(*m->change, -20.0 / 150.0, 1e-12);
  EXPECT_NEAR(*m->diff_mean, -0.1, 1e-12);
  EXPECT_LT(*m->diff_high, 0);
  EXPECT_NE(m->note.find("points"), std::string::npos) << m->note;
  EXPECT_FALSE(r.passed());
  EXPECT_EQ(compare_exit_code(r), 1);
  std::ostringstream os;
  print_compare_table(os, r);
  EXPECT_NE(os.str().find("paired over 200 examples"), std::string::npos) << os.str();
}

TEST(ComparePaired, NoiseWithinTheIntervalIsNotFlagged) {
  // 12 answers flip each way, plus 4 more right->wrong: 150 -> 146 of 200 (-2.7% relative) and an
  // interval that holds 0. With threshold 1% the change is past it, but not significant.
  auto base = answers(200, 150), next = base;
  for (int i = 0; i < 16; ++i) next[size_t(i)] = 0;         // 16 right -> wrong
  for (int i = 150; i < 162; ++i) next[size_t(i)] = 1;      // 12 wrong -> right
  CompareOptions o;
  o.threshold = 0.01;
  const auto r = compare_runs(run({{"accuracy", exact_match(base)}}), run({{"accuracy", exact_match(next)}}), o);
  const auto* m = find(r, "accuracy.http.exact_match");
  ASSERT_TRUE(m);
  EXPECT_LT(*m->change, -o.threshold);
  EXPECT_LT(*m->diff_low, 0);
  EXPECT_GT(*m->diff_high, 0);
  EXPECT_GE(*m->p_value, 0.05);
  EXPECT_EQ(m->verdict, CompareVerdict::Unchanged) << m->note;
  EXPECT_NE(m->note.find("not significant"), std::string::npos) << m->note;
  EXPECT_TRUE(r.passed());
}

TEST(ComparePaired, PerplexityWindowsArePairedToo) {
  auto ppl = [](std::vector<double> w, const std::string& key) {
    Metric m;
    m.key = "accuracy.http.perplexity";
    m.samples = w;
    m.value = w[0];
    m.unit = "ppl";
    m.direction = Direction::LowerIsBetter;
    m.noise = NoiseClass::Exact;
    m.params = {{"pair_key", key}};
    return m;
  };
  const std::vector<double> base = {3.0, 3.2, 2.9, 3.1, 3.05, 2.95};
  std::vector<double> up;
  for (double v : base) up.push_back(v * 1.2);
  auto r = compare_runs(run({{"accuracy", ppl(base, "w")}}), run({{"accuracy", ppl(up, "w")}}));
  EXPECT_EQ(find(r, "accuracy.http.perplexity")->verdict, CompareVerdict::Regression) << find(r, "accuracy.http.perplexity")->note;
  // Other windows (pair keys differ): not paired.
  r = compare_runs(run({{"accuracy", ppl(base, "w")}}), run({{"accuracy", ppl(up, "other")}}));
  EXPECT_EQ(find(r, "accuracy.http.perplexity")->test, "mann-whitney");
}
