// Workloads: seeded arrival processes, trace CSV parsing (errors name file and line), workload
// specs (quick overrides, field errors), request plans, and the committed workloads themselves.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "cb/harness/load/workload.h"
#include "test_support.h"

using namespace cb::harness::load;
namespace fs = std::filesystem;

namespace {

// Mean and coefficient of variation of the gaps between consecutive arrivals.
std::pair<double, double> gap_stats(const std::vector<double>& t) {
  std::vector<double> g;
  for (size_t i = 1; i < t.size(); ++i) g.push_back(t[i] - t[i - 1]);
  const double mean = std::accumulate(g.begin(), g.end(), 0.0) / double(g.size());
  double var = 0;
  for (double x : g) var += (x - mean) * (x - mean);
  var /= double(g.size() - 1);
  return {mean, std::sqrt(var) / mean};
}

// The message of the exception f must throw (a test failure when it throws none).
std::string expected_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an exception";
  return "";
}

}  // namespace

TEST(LoadArrivals, PoissonMeanRateWithinStatisticalBound) {
  const size_t n = 20001;
  const auto t = poisson_arrivals(100.0, n, 42);
  ASSERT_EQ(t.size(), n);
  EXPECT_EQ(t[0], 0.0);
  for (size_t i = 1; i < n; ++i) ASSERT_GE(t[i], t[i - 1]);
  const auto [mean, cv] = gap_stats(t);
  // 20000 exponential gaps: the mean's standard error is mean / sqrt(20000) = 0.7%; 4 sigma = 2.8%.
  EXPECT_NEAR(mean, 0.01, 0.01 * 0.028);
  EXPECT_NEAR(cv, 1.0, 0.05);  // exponential: CV 1
  // Reproducible with the seed; a different seed gives different times.
  EXPECT_EQ(poisson_arrivals(100.0, n, 42), t);
  EXPECT_NE(poisson_arrivals(100.0, n, 43), t);
  EXPECT_THROW(poisson_arrivals(0, 10, 1), std::invalid_argument);
}

TEST(LoadArrivals, GammaBurstinessConvention) {
  const size_t n = 20001;
  for (double k : {0.25, 1.0, 4.0}) {
    const auto t = gamma_arrivals(50.0, k, n, 7);
    const auto [mean, cv] = gap_stats(t);
    // Mean gap 1/rate whatever the burstiness; CV of the gaps = 1/sqrt(shape).
    // Standard error of the mean gap: cv * mean / sqrt(n) (<= 1.4% at CV 2); bound 5 sigma.
    const double cv_expected = 1.0 / std::sqrt(k);
    EXPECT_NEAR(mean, 0.02, 0.02 * 5 * cv_expected / std::sqrt(double(n))) << "burstiness " << k;
    EXPECT_NEAR(cv, cv_expected, 0.1 * cv_expected) << "burstiness " << k;
    EXPECT_EQ(gamma_arrivals(50.0, k, n, 7), t);
  }
}

TEST(LoadArrivals, SeedsAreSeparatePerSource) {
  const Seeds a = derive_seeds(101, 1), b = derive_seeds(101, 2), c = derive_seeds(102, 1);
  EXPECT_NE(a.arrivals, a.prompt_lengths);
  EXPECT_NE(a.prompt_lengths, a.output_lengths);
  EXPECT_NE(a.output_lengths, a.prompt_ids);
  EXPECT_NE(a.arrivals, b.arrivals);
  EXPECT_NE(a.arrivals, c.arrivals);
  EXPECT_EQ(derive_seeds(101, 1).prompt_ids, a.prompt_ids);
}

class LoadTrace : public ::testing::Test {
 protected:
  cb::test::TempDir dir{"cb-load"};
  fs::path write(const std::string& text) {
    const fs::path p = dir.path() / "t.csv";
    cb::test::write_file(p, text);
    return p;
  }
};

TEST_F(LoadTrace, ParsesRowsAndComments) {
  const fs::path p = write("# a comment\narrival_s,prompt_tokens,output_tokens\n0,10,5\n0.5, 20 ,6\n# mid comment\n1.25,30,7\n");
  const auto rows = read_trace_csv(p, 100);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[1].arrival_s, 0.5);
  EXPECT_EQ(rows[1].prompt_tokens, 20);
  EXPECT_EQ(rows[2].output_tokens, 7);
}

TEST_F(LoadTrace, ErrorsNameFileAndLine) {
  const std::string f = (dir.path() / "t.csv").string();
  // libfccp's own errors (bad number, missing column): FILE:LINE first, then its message.
  const std::string bad_int = expected_error_of([&] { read_trace_csv(write("arrival_s,prompt_tokens,output_tokens\n0,10,5\n1,x,5\n")); });
  EXPECT_EQ(bad_int.rfind(f + ":3: ", 0), 0u) << bad_int;
  EXPECT_CONTAINS(bad_int, "prompt_tokens");
  const std::string short_row = expected_error_of([&] { read_trace_csv(write("# c\narrival_s,prompt_tokens,output_tokens\n0,10,5\n1,10\n")); });
  EXPECT_EQ(short_row.rfind(f + ":4: ", 0), 0u) << short_row;
  EXPECT_EQ(expected_error_of([&] { read_trace_csv(write("arrival_s,prompt_tokens,output_tokens\n1,10,5\n0.5,10,5\n")); }),
            f + ":3: arrival_s 0.500000 is before the previous row's 1.000000 (rows must be in arrival order)");
  EXPECT_EQ(expected_error_of([&] { read_trace_csv(write("arrival_s,prompt_tokens,output_tokens\n0,0,5\n")); }),
            f + ":2: prompt_tokens 0 must be >= 1");
  EXPECT_EQ(expected_error_of([&] { read_trace_csv(write("arrival_s,prompt_tokens,output_tokens\n0,90,20\n"), 100); }),
            f + ":2: prompt_tokens + output_tokens = 110 exceeds the model context of 100");
  EXPECT_CONTAINS(expected_error_of([&] { read_trace_csv(write("time,prompt,output\n0,1,1\n")); }), f);
  EXPECT_EQ(expected_error_of([&] { read_trace_csv(write("arrival_s,prompt_tokens,output_tokens\n")); }), f + ": trace has no rows");
  EXPECT_EQ(expected_error_of([&] { read_trace_csv(dir.path() / "missing.csv"); }),
            (dir.path() / "missing.csv").string() + ": trace file does not exist");
}

namespace {
nlohmann::json minimal_spec() {
  return {{"schema", "claimbench.workload"},
          {"schema_version", "1.0"},
          {"name", "t"},
          {"seed", 5},
          {"arrival", {{"process", "poisson"}, {"rate_rps", 100}}},
          {"prompt_tokens", {{"dist", "uniform"}, {"min", 4}, {"max", 8}}},
          {"output_tokens", {{"dist", "fixed"}, {"value", 3}}},
          {"slo", {{"e2e_ms", 50}}},
          {"duration_s", 2},
          {"min_requests", 50},
          {"quick", {{"duration_s", 0.5}, {"min_requests", 10}, {"arrival", {{"rate_rps", 40}}}}}};
}
}  // namespace

TEST(LoadWorkloadSpec, QuickOverridesAndValidityDefaults) {
  const WorkloadSpec full = parse_workload(minimal_spec(), "w.json", false);
  EXPECT_EQ(full.duration_s, 2);
  EXPECT_EQ(full.arrival.rate_rps, 100);
  EXPECT_EQ(full.validity.min_duration_s, 2);
  EXPECT_EQ(full.validity.min_completed, 50u);
  const WorkloadSpec q = parse_workload(minimal_spec(), "w.json", true);
  EXPECT_TRUE(q.quick);
  EXPECT_EQ(q.duration_s, 0.5);
  EXPECT_EQ(q.min_requests, 10u);
  EXPECT_EQ(q.arrival.process, "poisson");  // merge patch keeps the other keys
  EXPECT_EQ(q.arrival.rate_rps, 40);
  EXPECT_EQ(q.validity.min_completed, 10u);
  EXPECT_FALSE(q.effective.contains("quick"));
}

TEST(LoadWorkloadSpec, ErrorsNameFileAndField) {
  auto err = [](nlohmann::json j) { return expected_error_of([&] { parse_workload(j, "w.json", false); }); };
  auto j = minimal_spec();
  j["arrival"]["process"] = "uniform";
  EXPECT_EQ(err(j), "w.json: arrival.process: unknown 'uniform' (expected poisson, gamma, trace, closed)");
  j = minimal_spec();
  j["arrival"]["rate_rps"] = "fast";
  EXPECT_EQ(err(j), "w.json: arrival.rate_rps: expected a number, got \"fast\"");
  j = minimal_spec();
  j["prompt_tokens"] = {{"dist", "uniform"}, {"min", 8}, {"max", 4}};
  EXPECT_EQ(err(j), "w.json: prompt_tokens.max: value 4 outside [8, 1048576]");
  j = minimal_spec();
  j["durration_s"] = 1;
  EXPECT_CONTAINS(err(j), "w.json: durration_s: unknown key");
  j = minimal_spec();
  j.erase("output_tokens");
  EXPECT_EQ(err(j), "w.json: output_tokens: missing (needed unless the arrival process is a trace)");
  j = minimal_spec();
  j["slo"] = {{"p99_ms", 3}};
  EXPECT_CONTAINS(err(j), "w.json: slo.p99_ms: unknown key");
  j = minimal_spec();
  j["schema"] = "other";
  EXPECT_EQ(err(j), "w.json: schema: expected \"claimbench.workload\"");
  // Found by fuzz_workload: a non-string schema or schema_version escaped as nlohmann's type_error.
  j = minimal_spec();
  j["schema"] = {{"process", "gamma"}};
  EXPECT_EQ(err(j), "w.json: schema: expected \"claimbench.workload\"");
  j = minimal_spec();
  j["schema_version"] = 1.0;
  EXPECT_EQ(err(j), "w.json: schema_version: expected \"1.x\"");
}

TEST(LoadPlan, OpenLoopPlanIsSeededAndSized) {
  const WorkloadSpec w = parse_workload(minimal_spec(), "w.json", false);
  PlanOptions o;
  o.run_seed = 3;
  o.bos_token = 256;
  o.vocab_limit = 256;
  const Plan a = make_plan(w, o);
  // As MLPerf: arrivals continue until they span the 2 s minimum duration (about 200 requests at
  // 100 req/s, above min_requests 50): the last one at or past 2 s, the one before it earlier.
  ASSERT_GE(a.requests.size(), 50u);
  EXPECT_GE(a.requests.back().arrival_s, 2.0);
  EXPECT_LT(a.requests[a.requests.size() - 2].arrival_s, 2.0);
  EXPECT_NEAR(double(a.requests.size()), 201, 4 * std::sqrt(200.0));
  EXPECT_FALSE(a.closed_loop);
  EXPECT_EQ(a.rate_rps, 100);
  for (const auto& r : a.requests) {
    ASSERT_GE(r.req.prompt.size(), 4u);
    ASSERT_LE(r.req.prompt.size(), 8u);
    ASSERT_EQ(r.req.prompt[0], 256);
    for (size_t i = 1; i < r.req.prompt.size(); ++i) ASSERT_LT(r.req.prompt[i], 256);
    ASSERT_EQ(r.req.max_tokens, 3);
  }
  const Plan b = make_plan(w, o);
  for (size_t i = 0; i < a.requests.size(); ++i) {
    ASSERT_EQ(a.requests[i].arrival_s, b.requests[i].arrival_s);
    ASSERT_EQ(a.requests[i].req.prompt, b.requests[i].req.prompt);
  }
  // A rate override changes the arrival times only: the same request mix (common random numbers).
  o.rate_rps = 200;
  const Plan c = make_plan(w, o);
  EXPECT_GE(c.requests.back().arrival_s, 2.0);
  ASSERT_GT(c.requests.size(), a.requests.size());
  EXPECT_EQ(c.requests[5].req.prompt, a.requests[5].req.prompt);
  EXPECT_NEAR(c.requests[5].arrival_s, a.requests[5].arrival_s / 2, 1e-12);
  // A low rate: min_requests sets the count, the arrivals then run past the duration.
  o.rate_rps = 5;
  const Plan low = make_plan(w, o);
  EXPECT_EQ(low.requests.size(), 50u);
  EXPECT_GT(low.requests.back().arrival_s, 2.0);
  // Closed loop: the pool is max_requests, arrivals unused.
  o.concurrency = 4;
  const Plan d = make_plan(w, o);
  EXPECT_TRUE(d.closed_loop);
  EXPECT_EQ(d.concurrency, 4);
  EXPECT_EQ(d.requests.size(), w.max_requests);
}

TEST(LoadPlan, TraceReplayTimeScale) {
  cb::test::TempDir dir("cb-load");
  cb::test::write_file(dir.path() / "t.csv", "arrival_s,prompt_tokens,output_tokens\n10,5,2\n11,6,3\n14,7,4\n");
  auto j = minimal_spec();
  j["arrival"] = {{"process", "trace"}, {"trace", "t.csv"}, {"time_scale", 2}};
  j["min_requests"] = 3;
  j.erase("quick");
  const WorkloadSpec w = parse_workload(j, dir.path() / "w.json", false);
  PlanOptions o;
  const Plan p = make_plan(w, o);
  ASSERT_EQ(p.requests.size(), 3u);
  EXPECT_EQ(p.requests[0].arrival_s, 0.0);  // shifted to start at 0, then divided by the scale
  EXPECT_EQ(p.requests[1].arrival_s, 0.5);
  EXPECT_EQ(p.requests[2].arrival_s, 2.0);
  EXPECT_EQ(p.requests[2].req.prompt.size(), 7u);
  EXPECT_EQ(p.requests[2].req.max_tokens, 4);
  // The trace's own rate is 2 requests / 4 s = 0.5 req/s; asking for 2 req/s scales time by 4.
  o.rate_rps = 2;
  const Plan q = make_plan(w, o);
  EXPECT_EQ(q.requests[2].arrival_s, 1.0);
  EXPECT_EQ(q.requested["time_scale"], 4.0);
  // More rows needed than the trace has: an error naming both.
  j["min_requests"] = 4;
  EXPECT_CONTAINS(expected_error_of([&] { parse_workload(j, dir.path() / "w.json", false); }), "min_requests 4 exceeds the 3 rows of");
}

TEST(LoadWorkloadFiles, CommittedWorkloadsParseInBothVariants) {
  for (const char* name : {"chat", "burst", "rt-service", "long-context"}) {
    for (bool quick : {false, true}) {
      SCOPED_TRACE(std::string(name) + (quick ? " quick" : ""));
      const WorkloadSpec w = load_workload(name, quick);
      EXPECT_EQ(w.name, name);
      EXPECT_TRUE(w.slo.any());
      PlanOptions o;
      o.max_context = 16384;
      o.bos_token = 256;
      const Plan p = make_plan(w, o);
      EXPECT_GE(p.requests.size(), w.min_requests);
      for (const auto& r : p.requests) ASSERT_LE(int(r.req.prompt.size()) + r.req.max_tokens, 16384);
    }
  }
  EXPECT_EQ(load_workload("rt-service", false).slo.e2e_ms, 80);
  EXPECT_EQ(load_workload("burst", false).arrival.process, "gamma");
  // long-context: prompts up to 16K tokens in the full trace.
  int longest = 0;
  for (const auto& r : read_trace_csv(workloads_dir() / "traces" / "long-context.csv", 16384)) longest = std::max(longest, r.prompt_tokens);
  EXPECT_GT(longest, 8192);
  EXPECT_CONTAINS(expected_error_of([] { load_workload("no-such-workload", false); }), "no-such-workload.json: cannot open");
}

// The fuzzers' number-overflow finding: 1e400 is nlohmann's out_of_range, not a parse_error; it
// escaped load_workload as something other than WorkloadError.
TEST(LoadWorkloadSpec, NumberOverflowIsNotValidJson) {
  cb::test::TempDir dir("cb-load");
  const auto p = dir.path() / "big.json";
  cb::test::write_file(p, "{\"seed\": 1e400}");
  const std::string msg = expected_error_of([&] { load_workload(p.string(), false); });
  EXPECT_CONTAINS(msg, "big.json: not valid JSON");
  EXPECT_CONTAINS(msg, "number overflow");
}

TEST(LoadPlan, TextPromptsAreValidUtf8AndCountedByTheirEncoding) {
  EXPECT_EQ(valid_utf8("ab\xC3\xA9"), "ab\xC3\xA9");                 // é stays
  EXPECT_EQ(valid_utf8("a\xC3"), "a\xEF\xBF\xBD");                    // truncated sequence
  EXPECT_EQ(valid_utf8("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");      // overlong '/'
  EXPECT_EQ(valid_utf8("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // a surrogate
  const WorkloadSpec w = parse_workload(minimal_spec(), "w.json", false);
  PlanOptions o;
  o.vocab_limit = 256;
  // A tokenizer that merges "aa" into one token: re-encoding gives fewer or as many tokens as drawn.
  o.to_text = [](const std::vector<int32_t>& ids) {
    std::string s;
    for (int32_t id : ids) s += id == 1000 ? std::string("aa") : std::string(1, char('a' + id % 3));
    return s;
  };
  o.encode = [](const std::string& text) {
    std::vector<int32_t> ids;
    for (size_t i = 0; i < text.size();) {
      if (text.compare(i, 2, "aa") == 0) ids.push_back(1000), i += 2;
      else ids.push_back(int32_t(text[i] - 'a')), i += 1;
    }
    return ids;
  };
  const Plan p = make_plan(w, o);
  ASSERT_FALSE(p.requests.empty());
  for (const auto& r : p.requests) {
    ASSERT_FALSE(r.req.text.empty());
    EXPECT_EQ(r.req.prompt, o.encode(r.req.text)) << r.req.text;  // the counted tokens are the text's
    EXPECT_LE(r.req.prompt.size(), 8u);
  }
}
