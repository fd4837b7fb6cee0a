// Verdicts from intervals: Student's t interval of repeated trials, where it lies against the
// threshold, INCONCLUSIVE / INVALID / SKIP verdicts, and arithmetic claims kept out of the tally.
#include <cmath>
#include <sstream>

#include <gtest/gtest.h>

#include "cb/harness/verdicts/claims.h"
#include "test_support.h"

using namespace cb::harness;
using nlohmann::json;

namespace {
Metric trials(const std::string& key, std::vector<double> v, NoiseClass n = NoiseClass::Ratio) {
  Metric m;
  m.key = key;
  m.value = median(v);
  m.samples = std::move(v);
  m.noise = n;
  return m;
}
json claim(const std::string& id, const std::string& metric, const std::string& cmp, double thr) {
  return {{"id", id}, {"claim", "c"}, {"figure", "f"}, {"metric", metric}, {"comparator", cmp}, {"threshold", thr}, {"suite", "s"}};
}
std::vector<ClaimResult> eval(const json& claims, const SuiteResult& s) {
  RunData run;
  run.manifest = {{"hardware", {{"gpus", json::array()}, {"cpu_flags", json::array()}}}};
  run.suites["s"] = s;
  const json set = {{"schema", "claimbench.claimset"}, {"schema_version", "1.0"}, {"name", "t"}, {"source", "t"}, {"claims", claims}};
  return evaluate(claim_set_from_json(set, "mem"), run);
}
using cb::test::by_id;
}  // namespace

TEST(ClaimStats, StudentTQuantiles) {
  EXPECT_NEAR(student_t_975(1), 12.706, 1e-3);
  EXPECT_NEAR(student_t_975(2), 4.303, 1e-3);
  EXPECT_NEAR(student_t_975(30), 2.042, 1e-3);
  EXPECT_NEAR(student_t_975(60), 2.000, 3e-3);   // exact 2.0003
  EXPECT_NEAR(student_t_975(120), 1.980, 3e-3);  // exact 1.9799
  EXPECT_TRUE(std::isinf(student_t_975(0)));
}

TEST(ClaimStats, IntervalOfTrials) {
  std::string why;
  // 1, 2, 3: mean 2, s = 1, half width 4.303 / sqrt(3).
  const auto iv = trial_interval(trials("k", {1, 2, 3}), why);
  ASSERT_TRUE(iv) << why;
  EXPECT_NEAR(iv->mean, 2.0, 1e-12);
  EXPECT_NEAR(iv->high - iv->mean, 4.303 / std::sqrt(3.0), 1e-9);
  EXPECT_NEAR(iv->mean - iv->low, 4.303 / std::sqrt(3.0), 1e-9);
  EXPECT_EQ(iv->n, 3u);
  EXPECT_EQ(iv->method, "student-t");
  // Too few trials of a noisy metric: no interval, and the reason says how many are needed.
  EXPECT_FALSE(trial_interval(trials("k", {1, 2}), why));
  EXPECT_NE(why.find("at least 3"), std::string::npos) << why;
  // An exact metric needs none.
  const auto ex = trial_interval(trials("k", {4}, NoiseClass::Exact), why);
  ASSERT_TRUE(ex);
  EXPECT_EQ(ex->low, 4);
  EXPECT_EQ(ex->high, 4);
  EXPECT_EQ(ex->method, "exact");
  EXPECT_FALSE(trial_interval(trials("k", {1, NAN, 3}), why));
}

TEST(ClaimStats, WhereTheIntervalLies) {
  Interval iv;
  iv.low = 1.0;
  iv.high = 2.0;
  EXPECT_EQ(judge_interval(iv, Comparator::GE, 0.9, 0), IntervalSide::Holds);
  EXPECT_EQ(judge_interval(iv, Comparator::GE, 1.5, 0), IntervalSide::Straddles);
  EXPECT_EQ(judge_interval(iv, Comparator::GE, 2.1, 0), IntervalSide::Fails);
  EXPECT_EQ(judge_interval(iv, Comparator::LE, 2.0, 0), IntervalSide::Holds);
  EXPECT_EQ(judge_interval(iv, Comparator::LT, 1.0, 0), IntervalSide::Fails);
  EXPECT_EQ(judge_interval(iv, Comparator::GT, 1.0, 0), IntervalSide::Straddles);
  EXPECT_EQ(judge_interval(iv, Comparator::EQ, 1.5, 0.5), IntervalSide::Holds);
  EXPECT_EQ(judge_interval(iv, Comparator::EQ, 1.5, 0.1), IntervalSide::Straddles);
  EXPECT_EQ(judge_interval(iv, Comparator::EQ, 3.0, 0.5), IntervalSide::Fails);
}

TEST(ClaimStats, VerdictsFollowTheInterval) {
  SuiteResult s;
  s.suite = "s";
  s.add(trials("clear", {2.0, 2.1, 2.2}));        // [1.95, 2.35]
  s.add(trials("noisy", {1.0, 2.0, 3.0}));        // [-0.48, 4.48]
  s.add(trials("low", {0.5, 0.6, 0.55}));
  s.add(trials("single", {2.5}));                 // one trial of a ratio metric
  Metric bad = trials("bad", {3, 3, 3});
  bad.params = {{"valid", false}, {"validity", "INVALID: 4 errors"}};
  s.add(bad);
  s.params["skip"]["priced"] = "prices of another model";
  const auto rs = eval(json::array({claim("pass", "clear", ">=", 1.83), claim("inc", "noisy", ">=", 1.83), claim("fail", "low", ">=", 1.83),
                                    claim("one", "single", ">=", 1.83), claim("inv", "bad", ">=", 1.83),
                                    claim("skip", "priced", ">=", 1.0)}),
                       s);
  EXPECT_EQ(by_id(rs, "pass").verdict, Verdict::Pass);
  ASSERT_TRUE(by_id(rs, "pass").interval);
  EXPECT_EQ(by_id(rs, "inc").verdict, Verdict::Inconclusive);
  EXPECT_NE(by_id(rs, "inc").reason.find("straddles"), std::string::npos) << by_id(rs, "inc").reason;
  EXPECT_EQ(by_id(rs, "fail").verdict, Verdict::Fail);
  EXPECT_EQ(by_id(rs, "one").verdict, Verdict::Inconclusive);  // 2.5 >= 1.83, but one trial is no evidence
  EXPECT_NE(by_id(rs, "one").reason.find("1 trial"), std::string::npos);
  EXPECT_EQ(by_id(rs, "inv").verdict, Verdict::Invalid);  // would PASS on its value
  EXPECT_NE(by_id(rs, "inv").reason.find("4 errors"), std::string::npos);
  EXPECT_EQ(by_id(rs, "skip").verdict, Verdict::Skip);
  EXPECT_EQ(by_id(rs, "skip").reason, "prices of another model");
  EXPECT_EQ(check_exit_code(rs), 1);  // FAIL and INVALID
  EXPECT_EQ(check_exit_code(rs, true), 0);
}

TEST(ClaimStats, ArithmeticClaimsAreReportedApart) {
  SuiteResult s;
  s.suite = "s";
  s.add(trials("m", {2.0, 2.0, 2.0}));
  Metric a = trials("published", {5.45}, NoiseClass::Exact);
  s.add(a);
  json arith = claim("arith", "published", "==", 5.45);
  arith["kind"] = "arithmetic";
  arith["tolerance"] = 0.01;
  json sim = claim("sim", "published", ">=", 9);
  sim["kind"] = "simulation";
  const auto rs = eval(json::array({claim("meas", "m", ">=", 1.0), arith, sim}), s);
  EXPECT_EQ(by_id(rs, "arith").kind, ClaimKind::Arithmetic);
  EXPECT_EQ(by_id(rs, "arith").verdict, Verdict::Pass);
  EXPECT_EQ(count_verdicts(rs).at("PASS"), 1);  // the measured tally holds only the measurement
  EXPECT_EQ(count_verdicts(rs, false).at("PASS"), 1);
  EXPECT_EQ(count_verdicts(rs, false).at("FAIL"), 1);
  EXPECT_EQ(summary_line(rs),
            "measured: 1 PASS, 0 FAIL, 0 INCONCLUSIVE, 0 INVALID, 0 SKIP, 0 NOT MEASURED, 0 ERROR; "
            "not measurements (arithmetic, simulation): 1 PASS, 1 FAIL");
  std::ostringstream os;
  print_claims_table(os, rs);
  const std::string t = os.str();
  const size_t section = t.find("-- not measurements");
  ASSERT_NE(section, std::string::npos) << t;
  EXPECT_LT(t.find("meas "), section);
  EXPECT_GT(t.find("arith "), section);
  EXPECT_NE(t.find("95% interval"), std::string::npos);
  // claims.json keeps kind and interval, and reads them back.
  const json j = claims_to_json(rs, "set.json", "run");
  EXPECT_EQ(j["results"][1]["kind"], "arithmetic");
  EXPECT_EQ(j["results"][0]["interval"]["method"], "student-t");
  EXPECT_EQ(j["counts"]["PASS"], 1);
  EXPECT_EQ(j["counts_not_measurements"]["FAIL"], 1);
  const ClaimsReport back = claims_report_from_json(j, "mem");
  EXPECT_EQ(back.results[1].kind, ClaimKind::Arithmetic);
  ASSERT_TRUE(back.results[0].interval);
  EXPECT_EQ(back.results[0].interval->n, 3u);
  EXPECT_EQ(back.counts_not_measurements.at("FAIL"), 1);
  // A bad kind names where it is.
  json wrong = claim("w", "m", ">=", 1);
  wrong["kind"] = "guess";
  const json set = {{"schema", "claimbench.claimset"}, {"schema_version", "1.0"}, {"name", "t"}, {"source", "t"}, {"claims", {wrong}}};
  try {
    claim_set_from_json(set, "mem");
    FAIL() << "expected SchemaError";
  } catch (const SchemaError& e) {
    EXPECT_NE(std::string(e.what()).find("claims[0].kind"), std::string::npos) << e.what();
  }
}
