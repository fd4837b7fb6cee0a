// The in-process SUT: the default model behind cb::engine::EngineLoop, driven by the runner.
#include <gtest/gtest.h>

#include <cmath>

#include <atomic>
#include <mutex>

#include "cb/harness/engine/inprocess_sut.h"
#include "cb/harness/load/runner.h"
#include "test_support.h"

using namespace cb::harness::load;

namespace {

WorkloadSpec small_spec() {
  const nlohmann::json j = {{"schema", "claimbench.workload"}, {"schema_version", "1.0"}, {"name", "inproc"}, {"seed", 4},
                            {"arrival", {{"process", "poisson"}, {"rate_rps", 200}}},
                            {"prompt_tokens", {{"dist", "uniform"}, {"min", 4}, {"max", 24}}},
                            {"output_tokens", {{"dist", "uniform"}, {"min", 1}, {"max", 6}}},
                            {"slo", {{"e2e_ms", 10000}}}, {"duration_s", 0}, {"min_requests", 24},
                            {"max_requests", 24}, {"validity", {{"max_issue_lag_p99_ms", 1000}}}};
  return parse_workload(j, "inproc.json", false);
}

}  // namespace

TEST(LoadInProcess, ClosedLoopRunReturnsEveryTokenAndEngineCounters) {
  auto model = cb::engine::LoadedModel::open(cb::engine::default_model_dir());
  const WorkloadSpec w = small_spec();
  PlanOptions po;
  po.concurrency = 4;
  po.bos_token = model->config().bos_token_id;
  po.max_context = model->config().max_position_embeddings;
  const Plan plan = make_plan(w, po);
  ASSERT_EQ(plan.requests.size(), 24u);
  InProcessConfig cfg;
  cfg.kv_pool_tokens = 4096;
  InProcessSut sut(*model, cfg);
  const RunResult r = run_load(sut, plan, w.slo, w.validity);
  EXPECT_EQ(r.summary.completed, 24u) << r.summary.to_json().dump();
  int64_t want_out = 0, want_in = 0;
  for (const auto& p : plan.requests) {
    want_out += p.req.max_tokens;
    want_in += int64_t(p.req.prompt.size());
  }
  EXPECT_EQ(r.summary.output_tokens, want_out);  // EOS ignored: exactly max_tokens each
  EXPECT_EQ(r.summary.input_tokens, want_in);
  ASSERT_TRUE(r.at_end.has_value());
  EXPECT_EQ(r.at_end->decode_tokens + r.at_end->prefill_tokens, want_in + want_out - 24)  // the last token is never fed back
      << "prefill " << r.at_end->prefill_tokens << " decode " << r.at_end->decode_tokens;
  EXPECT_GT(r.at_end->busy_seconds, 0);
  // The cpu backend has no device clock: no device busy time, rather than a copy of the host's.
  EXPECT_TRUE(std::isnan(r.at_end->device_busy_seconds));
  EXPECT_TRUE(std::isnan(r.device_busy_fraction()));
  EXPECT_FALSE(sut.stats().device_busy_seconds.has_value());
  EXPECT_GT(r.at_end->kv_bytes_reserved_peak, 0u);
  EXPECT_TRUE(r.validity.valid) << r.validity.line();
  EXPECT_EQ(sut.describe()["policy"], "queue-table");
}

TEST(LoadInProcess, RejectionsAndInvalidRequestsAreErrorsByKind) {
  auto model = cb::engine::LoadedModel::open(cb::engine::default_model_dir());
  // Before the SUT: its destructor aborts the waiting request, whose callback writes here.
  std::vector<std::pair<ErrorKind, std::string>> errors;
  std::mutex m;
  InProcessConfig cfg;
  cfg.kv_pool_tokens = 1024;
  cfg.max_queue = 1;
  cfg.policy = "static";
  cfg.static_batch = 64;       // waits for 64 requests or the timeout: the queue fills first
  cfg.static_timeout_s = 0.5;
  InProcessSut sut(*model, cfg);
  auto cb = [&] {
    SutCallbacks c;
    c.on_tokens = [](int) {};
    c.on_complete = [](int) {};
    c.on_error = [&](ErrorKind k, const std::string& msg) {
      std::lock_guard lk(m);
      errors.push_back({k, msg});
    };
    return c;
  };
  LoadRequest bad;
  bad.prompt = {1, 2, 100000};  // outside the vocabulary
  bad.max_tokens = 2;
  sut.issue(bad, cb());
  LoadRequest ok;
  ok.prompt = {256, 1, 2};
  ok.max_tokens = 2;
  for (int i = 0; i < 3; ++i) sut.issue(ok, cb());  // max_queue 1: the later ones are refused
  std::lock_guard lk(m);
  ASSERT_GE(errors.size(), 2u);
  EXPECT_EQ(errors[0].first, ErrorKind::Invalid);
  EXPECT_CONTAINS(errors[0].second, "prompt");
  EXPECT_EQ(errors[1].first, ErrorKind::Rejected);
  EXPECT_CONTAINS(errors[1].second, "queue full");
}

TEST(LoadInProcess, AbortAllEndsOpenRequestsAndLeavesAUsableEngine) {
  auto model = cb::engine::LoadedModel::open(cb::engine::default_model_dir());
  std::atomic<int> engine_errors{0}, completions{0};  // before the SUT, which calls back into them
  InProcessConfig cfg;
  cfg.kv_pool_tokens = 2048;
  cfg.policy = "static";
  cfg.static_batch = 2;
  cfg.static_timeout_s = 0.2;  // a lone request waits 0.2 s for a partner: abort_all comes first
  InProcessSut sut(*model, cfg);
  SutCallbacks c;
  c.on_tokens = [](int) {};
  c.on_complete = [&](int) { ++completions; };
  c.on_error = [&](ErrorKind k, const std::string&) { engine_errors += k == ErrorKind::Engine; };
  LoadRequest req;
  req.prompt = {256, 5, 6};
  req.max_tokens = 3;
  sut.issue(req, c);
  sut.abort_all();
  EXPECT_EQ(engine_errors.load(), 1);  // its "abort" finish event, delivered before abort_all returns
  EXPECT_EQ(completions.load(), 0);
  // The same SUT takes new work afterwards.
  WorkloadSpec w = small_spec();
  PlanOptions po;
  po.concurrency = 2;
  po.bos_token = 256;
  const RunResult r = run_load(sut, make_plan(w, po), w.slo, w.validity);
  EXPECT_EQ(r.summary.completed, 24u) << r.summary.to_json().dump();
}
