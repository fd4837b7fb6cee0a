// Load generator statistics: nearest-rank percentiles, TPOT, goodput, SLO checks, validity rules.
#include <gtest/gtest.h>

#include <cmath>

#include "cb/harness/load/stats.h"
#include "test_support.h"

using namespace cb::harness::load;

namespace {

// A completed request: issued at `issued`, first token after `ttft`, done after `e2e`, n tokens.
RequestRecord req(double issued, double ttft, double e2e, int n, int prompt = 10) {
  RequestRecord r;
  r.scheduled_s = issued;
  r.issued_s = issued;
  r.first_token_s = issued + ttft;
  r.done_s = issued + e2e;
  r.output_tokens = n;
  r.max_tokens = n;
  r.prompt_tokens = prompt;
  return r;
}

}  // namespace

TEST(LoadStats, NearestRankPercentiles) {
  std::vector<double> v;
  for (int i = 100; i >= 1; --i) v.push_back(i);  // 1..100, unsorted
  EXPECT_EQ(percentile_nearest_rank(v, 50), 50);
  EXPECT_EQ(percentile_nearest_rank(v, 90), 90);
  EXPECT_EQ(percentile_nearest_rank(v, 99), 99);
  EXPECT_EQ(percentile_nearest_rank(v, 99.9), 100);  // rank ceil(99.9) = 100
  EXPECT_EQ(percentile_nearest_rank(v, 100), 100);
  EXPECT_EQ(percentile_nearest_rank(v, 0.5), 1);
  // n = 1000: p99.9 is rank 999 exactly (no floating-point round-up to 1000).
  std::vector<double> k(1000);
  for (int i = 0; i < 1000; ++i) k[size_t(i)] = i + 1;
  EXPECT_EQ(percentile_nearest_rank(k, 99.9), 999);
  EXPECT_EQ(percentile_nearest_rank(k, 99), 990);
  // n = 4: median is the lower middle (rank 2), p90 rank ceil(3.6) = 4.
  EXPECT_EQ(percentile_nearest_rank({4, 1, 3, 2}, 50), 2);
  EXPECT_EQ(percentile_nearest_rank({4, 1, 3, 2}, 90), 4);
  EXPECT_TRUE(std::isnan(percentile_nearest_rank({}, 50)));
  EXPECT_THROW(percentile_nearest_rank({1}, 0), std::invalid_argument);
  EXPECT_THROW(percentile_nearest_rank({1}, 101), std::invalid_argument);
}

TEST(LoadStats, SummarizeDistribution) {
  const Distribution d = summarize({5, 1, 3, 2, 4});
  EXPECT_EQ(d.n, 5u);
  EXPECT_DOUBLE_EQ(d.mean, 3);
  EXPECT_EQ(d.median, 3);
  EXPECT_EQ(d.p90, 5);
  EXPECT_EQ(d.p99, 5);
  EXPECT_EQ(d.min, 1);
  EXPECT_EQ(d.max, 5);
  EXPECT_TRUE(std::isnan(summarize({}).mean));
}

TEST(LoadStats, TpotFormula) {
  // E2E 1.0 s, TTFT 0.1 s, 10 tokens: (1.0 - 0.1) / 9 = 0.1 s.
  EXPECT_DOUBLE_EQ(req(2.0, 0.1, 1.0, 10).tpot_s(), 0.9 / 9);
  EXPECT_DOUBLE_EQ(req(0, 0.25, 0.5, 2).tpot_s(), 0.25);
  EXPECT_TRUE(std::isnan(req(0, 0.1, 0.1, 1).tpot_s()));  // one token: undefined
}

TEST(LoadStats, RunSummaryThroughputGoodputAndErrors) {
  Slo slo;
  slo.ttft_ms = 200;
  slo.e2e_ms = 1000;
  std::vector<RequestRecord> rs;
  rs.push_back(req(0.0, 0.1, 0.5, 5, 100));   // good
  rs.push_back(req(0.5, 0.3, 0.9, 5, 100));   // TTFT 300 ms > 200: completed, not good
  rs.push_back(req(1.0, 0.1, 1.5, 5, 100));   // E2E 1500 > 1000: not good; ends at 2.5 s
  rs.push_back(req(1.5, 0.05, 0.5, 5, 100));  // good
  RequestRecord failed;
  failed.issued_s = 1.8;
  failed.done_s = 1.9;
  failed.error = ErrorKind::Http429;
  rs.push_back(failed);
  RequestRecord never;  // not issued: ignored
  rs.push_back(never);
  const RunSummary s = summarize_run(rs, slo);
  EXPECT_EQ(s.issued, 5u);
  EXPECT_EQ(s.completed, 4u);
  EXPECT_EQ(s.failed, 1u);
  EXPECT_EQ(s.errors_by_kind.at("http_429"), 1u);
  EXPECT_DOUBLE_EQ(s.duration_s, 2.5);
  EXPECT_DOUBLE_EQ(s.requests_per_s, 4 / 2.5);
  EXPECT_DOUBLE_EQ(s.output_tokens_per_s, 20 / 2.5);
  EXPECT_DOUBLE_EQ(s.input_tokens_per_s, 400 / 2.5);
  EXPECT_EQ(s.good, 2u);
  EXPECT_DOUBLE_EQ(s.goodput_rps, 2 / 2.5);
  // The failed request counts as +inf at the SLO percentile: p99 of 5 samples is the max.
  EXPECT_TRUE(std::isinf(s.slo_e2e_ms));
  EXPECT_FALSE(s.slo_met);
  EXPECT_NEAR(s.ttft_ms.max, 300, 1e-9);
  EXPECT_NEAR(s.e2e_ms.median, 500, 1e-9);  // sorted {500, 500, 900, 1500}: rank ceil(0.5 * 4) = 2
}

TEST(LoadStats, SloMetAtPercentile) {
  Slo slo;
  slo.e2e_ms = 100;
  slo.percentile = 90;
  std::vector<RequestRecord> rs;
  for (int i = 0; i < 9; ++i) rs.push_back(req(i * 0.01, 0.01, 0.05, 3));
  rs.push_back(req(0.2, 0.01, 0.5, 3));  // one slow request of ten: p90 (rank 9) is still fast
  EXPECT_TRUE(summarize_run(rs, slo).slo_met);
  slo.percentile = 99;  // rank 10: the slow one
  EXPECT_FALSE(summarize_run(rs, slo).slo_met);
  EXPECT_NEAR(summarize_run(rs, slo).slo_e2e_ms, 500, 1e-9);
}

TEST(LoadStats, MeetsSloPerRequest) {
  Slo slo;
  slo.ttft_ms = 100;
  slo.tpot_ms = 15.625;  // binary-exact times below, so "at the limit" is exact
  slo.e2e_ms = 1000;
  EXPECT_TRUE(meets_slo(req(0, 0.0625, 0.0625 + 9 * 0.015625, 10), slo));  // TPOT 15.625 ms: at the limit
  EXPECT_FALSE(meets_slo(req(0, 0.0625, 0.0625 + 9 * 0.0157, 10), slo));   // TPOT 15.7 ms
  EXPECT_FALSE(meets_slo(req(0, 0.15, 0.2, 10), slo));   // TTFT
  EXPECT_TRUE(meets_slo(req(0, 0.05, 0.05, 1), slo));    // one token: TPOT not checked
  RequestRecord bad = req(0, 0.01, 0.02, 2);
  bad.error = ErrorKind::Short;
  EXPECT_FALSE(meets_slo(bad, slo));
}

TEST(LoadStats, SloFromJsonNamesTheField) {
  const Slo s = slo_from_json({{"ttft_ms", 200}, {"percentile", 95}}, "w.json: slo");
  EXPECT_EQ(s.ttft_ms, 200);
  EXPECT_EQ(s.percentile, 95);
  EXPECT_TRUE(std::isinf(s.e2e_ms));
  try {
    slo_from_json({{"ttft", 1}}, "w.json: slo");
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_CONTAINS(e.what(), "w.json: slo.ttft: unknown key");
  }
  EXPECT_THROW(slo_from_json({{"e2e_ms", -1}}, "x"), std::invalid_argument);
}

TEST(LoadStats, ValidityListsEveryCondition) {
  ValidityRules rules;
  rules.min_duration_s = 10;
  rules.min_completed = 100;
  rules.max_error_fraction = 0.01;
  rules.max_issue_lag_p99_ms = 5;
  RunSummary s;
  s.duration_s = 12;
  s.issued = 200;
  s.completed = 200;
  s.issue_lag_ms = summarize({0.1, 0.2, 0.3});
  Validity v = check_validity(s, rules, true);
  EXPECT_TRUE(v.valid);
  ASSERT_EQ(v.conditions.size(), 5u);  // duration, completed, errors, drained, issue_lag
  EXPECT_EQ(v.line().rfind("VALID (duration ok: 12 s >= 10 s; completed ok: 200 >= 100", 0), 0u) << v.line();
  EXPECT_TRUE(v.reasons().empty());

  s.duration_s = 3;
  s.completed = 50;
  s.failed = 150;
  s.errors_by_kind = {{"timeout", 100}, {"http_5xx", 50}};
  s.issue_lag_ms = summarize({20});
  v = check_validity(s, rules, true);
  EXPECT_FALSE(v.valid);
  const auto reasons = v.reasons();
  ASSERT_EQ(reasons.size(), 5u);
  EXPECT_EQ(reasons[0], "duration: 3 s < 10 s");
  EXPECT_EQ(reasons[1], "completed: 50 < 100");
  EXPECT_EQ(reasons[2], "errors: 0.75 > 0.01 [http_5xx 50, timeout 100]");
  EXPECT_EQ(reasons[3], "drained: 100 request(s) still open at the drain deadline");
  EXPECT_EQ(reasons[4], "issue_lag: p99 20 ms > 5 ms");
  EXPECT_EQ(v.line().rfind("INVALID (duration FAILED: 3 s < 10 s;", 0), 0u) << v.line();
  // Closed loop: no issue-lag condition.
  EXPECT_EQ(check_validity(s, rules, false).conditions.size(), 4u);
}
