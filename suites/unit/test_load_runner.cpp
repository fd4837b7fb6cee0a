// The load runner against synthetic SUTs (null, erroring, silent, capacity-limited) and the SLO
// search, first on a pure pass/fail function (exact trial sequence), then end to end on a fake
// SUT with a known capacity.
#include <gtest/gtest.h>

#include <cmath>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "cb/harness/load/runner.h"
#include "cb/harness/load/slo_search.h"
#include "test_support.h"

using namespace cb::harness::load;
using Clock = std::chrono::steady_clock;

namespace {

WorkloadSpec spec(double rate, double duration, size_t min_requests, int out_tokens = 4) {
  nlohmann::json j = {{"schema", "claimbench.workload"},
                      {"schema_version", "1.0"},
                      {"name", "unit"},
                      {"seed", 9},
                      {"arrival", {{"process", "poisson"}, {"rate_rps", rate}}},
                      {"prompt_tokens", {{"dist", "fixed"}, {"value", 8}}},
                      {"output_tokens", {{"dist", "fixed"}, {"value", out_tokens}}},
                      {"slo", {{"e2e_ms", 25}}},
                      {"duration_s", duration},
                      {"min_requests", min_requests},
                      {"max_requests", 5000},
                      {"validity", {{"max_issue_lag_p99_ms", 50}}}};
  return parse_workload(j, "unit.json", false);
}

// Answers with fewer tokens than asked, or with an error, or never; counts abort_all().
class ScriptedSut : public Sut {
 public:
  enum Mode { Short, Error, Silent } mode;
  explicit ScriptedSut(Mode m) : mode(m) {}
  int aborts = 0;
  std::string name() const override { return "scripted"; }
  nlohmann::json describe() const override { return {}; }
  void issue(const LoadRequest& req, SutCallbacks cb) override {
    if (mode == Short) {
      cb.on_tokens(1);
      cb.on_complete(-1);
    } else if (mode == Error) {
      cb.on_error(ErrorKind::Http5xx, "HTTP 503");
    } else {
      held_.push_back(std::move(cb));  // never answers
    }
    (void)req;
  }
  void abort_all() override { ++aborts; }
  // Counters that, like an in-process engine rebuilt by abort_all, start from zero after it.
  std::optional<SutCounters> counters() const override {
    SutCounters c;
    c.kv_bytes_reserved_peak = aborts ? 0 : 4096;
    c.steps = aborts ? 0 : 7;
    return c;
  }

 private:
  std::vector<SutCallbacks> held_;
};

// One FIFO server with a fixed service time per request: capacity 1 / service requests/s.
// Sleeps (no CPU) so the capacity holds on a busy machine.
class CapacitySut : public Sut {
 public:
  explicit CapacitySut(std::chrono::microseconds service) : service_(service), worker_([this] { run(); }) {}
  ~CapacitySut() override {
    {
      std::lock_guard lk(m_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }
  std::string name() const override { return "capacity"; }
  nlohmann::json describe() const override { return {{"service_us", service_.count()}}; }
  void issue(const LoadRequest& req, SutCallbacks cb) override {
    std::lock_guard lk(m_);
    q_.push_back({req.max_tokens, std::move(cb)});
    cv_.notify_one();
  }

 private:
  void run() {
    auto free_at = Clock::now();
    std::unique_lock lk(m_);
    for (;;) {
      cv_.wait(lk, [&] { return stop_ || !q_.empty(); });
      if (stop_) return;  // drop any backlog: the run has already recorded these requests
      auto [n, cb] = std::move(q_.front());
      q_.pop_front();
      lk.unlock();
      free_at = std::max(free_at, Clock::now()) + service_;
      std::this_thread::sleep_until(free_at);
      for (int i = 0; i < n; ++i) cb.on_tokens(1);
      cb.on_complete(-1);
      lk.lock();
    }
  }
  std::chrono::microseconds service_;
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::pair<int, SutCallbacks>> q_;
  bool stop_ = false;
  std::thread worker_;
};

}  // namespace

TEST(LoadRunner, NullSutOpenLoopCompletesEveryRequest) {
  const WorkloadSpec w = spec(1000, 0.3, 100);
  const Plan plan = make_plan(w, PlanOptions{});
  NullSut sut;
  const RunResult r = run_load(sut, plan, w.slo, w.validity);
  EXPECT_EQ(r.summary.issued, plan.requests.size());
  EXPECT_EQ(r.summary.completed, plan.requests.size());
  EXPECT_EQ(r.summary.output_tokens, int64_t(4 * plan.requests.size()));
  EXPECT_EQ(r.summary.input_tokens, int64_t(8 * plan.requests.size()));
  for (const auto& rec : r.records) {
    ASSERT_TRUE(rec.completed());
    ASSERT_GE(rec.issued_s, rec.scheduled_s);  // never early
    ASSERT_GE(rec.first_token_s, rec.issued_s);
    ASSERT_GE(rec.done_s, rec.first_token_s);
    ASSERT_EQ(rec.token_s.size(), 4u);
  }
  // The run spans the plan's arrivals; the null SUT adds (almost) nothing.
  EXPECT_GE(r.summary.duration_s, plan.requests.back().arrival_s);
  EXPECT_TRUE(r.summary.slo_met);
  // The null SUT answers inline: what E2E measures is the generator's own bookkeeping (a few us),
  // so a request is done before the next one arrives: E2E against the plan's own gaps, a ratio
  // that holds on a slow or busy machine as long as the run kept up with the plan at all.
  std::vector<double> gaps;
  for (size_t i = 1; i < plan.requests.size(); ++i) gaps.push_back(plan.requests[i].arrival_s - plan.requests[i - 1].arrival_s);
  std::nth_element(gaps.begin(), gaps.begin() + gaps.size() / 2, gaps.end());
  EXPECT_LT(r.summary.e2e_ms.median, 1000.0 * gaps[gaps.size() / 2]);
  EXPECT_EQ(r.requested["process"], "poisson");
  EXPECT_EQ(r.effective["issued"], plan.requests.size());
  EXPECT_FALSE(r.steady_begin.has_value());  // the null SUT has no engine counters
  EXPECT_TRUE(std::isnan(r.busy_fraction()));
  EXPECT_TRUE(std::isnan(r.device_busy_fraction()));
}

// Both busy fractions are counter deltas over the steady window; the device one only where the
// backend times its own work (a GPU's CUDA events), NaN otherwise.
TEST(LoadRunner, BusyFractionsAreCounterDeltasOverTheSteadyWindow) {
  RunResult r;
  SutCounters a, b;
  a.busy_seconds = 1.0, b.busy_seconds = 2.8;
  r.steady_begin = a, r.steady_end = b;
  r.steady_begin_s = 10.0, r.steady_end_s = 12.0;
  EXPECT_DOUBLE_EQ(r.busy_fraction(), 0.9);
  EXPECT_TRUE(std::isnan(r.device_busy_fraction()));  // host backend: NaN counters
  r.steady_begin->device_busy_seconds = 0.5, r.steady_end->device_busy_seconds = 1.7;
  EXPECT_DOUBLE_EQ(r.device_busy_fraction(), 0.6);
  r.steady_end_s = r.steady_begin_s;  // an empty window measures nothing
  EXPECT_TRUE(std::isnan(r.device_busy_fraction()));
}

TEST(LoadRunner, ClosedLoopKeepsConcurrencyAndStopsAfterDuration) {
  const WorkloadSpec w = spec(1, 0.2, 50);
  PlanOptions o;
  o.concurrency = 3;
  const Plan plan = make_plan(w, o);
  NullSut sut;
  const auto t0 = Clock::now();
  const RunResult r = run_load(sut, plan, w.slo, w.validity);
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_GE(r.summary.issued, 50u);
  EXPECT_EQ(r.summary.completed, r.summary.issued);
  EXPECT_LT(wall, 5.0);
  // Issued until the duration passed (or the 5000-request pool ran out).
  EXPECT_TRUE(r.issue_window_s >= 0.2 || r.summary.issued == 5000u) << r.issue_window_s;
  EXPECT_EQ(r.validity.conditions.size(), 4u);  // no issue-lag condition in a closed loop
}

TEST(LoadRunner, ShortAnswersAndErrorsAreCountedByKind) {
  const WorkloadSpec w = spec(2000, 0.05, 20);
  const Plan plan = make_plan(w, PlanOptions{});
  ScriptedSut shorty(ScriptedSut::Short);
  RunResult r = run_load(shorty, plan, w.slo, w.validity);
  EXPECT_EQ(r.summary.completed, 0u);
  EXPECT_EQ(r.summary.errors_by_kind.at("short"), plan.requests.size());
  EXPECT_EQ(r.records[0].error_message, "completed with 1 of 4 tokens");
  EXPECT_FALSE(r.summary.slo_met);
  EXPECT_FALSE(r.validity.valid);

  ScriptedSut failing(ScriptedSut::Error);
  r = run_load(failing, plan, w.slo, w.validity);
  EXPECT_EQ(r.summary.errors_by_kind.at("http_5xx"), plan.requests.size());
  EXPECT_EQ(r.records[3].error_message, "HTTP 503");
  EXPECT_EQ(r.validity.reasons()[0].rfind("completed: 0 <", 0), 0u);
}

TEST(LoadRunner, DrainDeadlineTurnsSilenceIntoTimeouts) {
  const WorkloadSpec w = spec(2000, 0.02, 10);
  const Plan plan = make_plan(w, PlanOptions{});
  ScriptedSut silent(ScriptedSut::Silent);
  RunOptions ro;
  ro.drain_timeout_s = 0.1;
  const RunResult r = run_load(silent, plan, w.slo, w.validity, ro);
  EXPECT_EQ(r.summary.errors_by_kind.at("timeout"), plan.requests.size());
  EXPECT_EQ(silent.aborts, 1);
  EXPECT_FALSE(r.validity.valid);
  bool drained_failed = false;
  for (const auto& c : r.validity.conditions) drained_failed = drained_failed || (c.name == "drained" && !c.ok);
  EXPECT_TRUE(drained_failed) << r.validity.line();
  // The counters at the end are those of the engine that ran the requests, read before the abort
  // replaced it, not the fresh engine's zeros.
  ASSERT_TRUE(r.at_end);
  EXPECT_EQ(r.at_end->kv_bytes_reserved_peak, 4096u);
  EXPECT_EQ(r.at_end->steps, 7);
}

TEST(LoadRunner, StopsEarlyOnceTheSloIsOutOfReach) {
  // Capacity 50 req/s (20 ms each), offered 400 req/s for 2 s: the backlog would take ~16 s to
  // drain. With the SLO watch the run gives up as soon as more than 1% of the plan is past 25 ms.
  const WorkloadSpec w = spec(400, 2.0, 100, 1);
  const Plan plan = make_plan(w, PlanOptions{});
  CapacitySut sut(std::chrono::microseconds(20000));
  RunOptions ro;
  ro.stop_when_slo_unreachable = true;
  const auto t0 = Clock::now();
  const RunResult r = run_load(sut, plan, w.slo, w.validity, ro);
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  // Gave up before the plan's last arrival (the whole run with its backlog would take ~8x that).
  EXPECT_LT(wall, plan.requests.back().arrival_s);
  EXPECT_CONTAINS(r.abandoned, "already over the E2E limit (p99 allows");
  EXPECT_LT(r.summary.issued, plan.requests.size());
  EXPECT_GT(r.summary.errors_by_kind.at("abandoned"), 0u);
  EXPECT_FALSE(r.summary.slo_met);
  EXPECT_FALSE(r.validity.valid);
  EXPECT_EQ(r.validity.conditions.back().name, "ran_to_end");
  // A healthy run with the watch on runs to the end.
  NullSut null;
  const RunResult ok = run_load(null, make_plan(spec(1000, 0.2, 50), PlanOptions{}), w.slo, w.validity, ro);
  EXPECT_EQ(ok.abandoned, "");
  EXPECT_EQ(ok.summary.completed, ok.summary.issued);
}

TEST(LoadSloSearch, DoublingThenBisectionExactSequence) {
  std::vector<double> asked;
  auto f = [&](double rate) {
    asked.push_back(rate);
    SloTrial t;
    t.passed = rate <= 137;
    return t;
  };
  SloSearchOptions o;
  o.start_rps = 10;
  o.max_trials = 12;
  o.rel_tolerance = 0.05;
  const SloSearchResult r = slo_search(f, o);
  EXPECT_EQ(asked, (std::vector<double>{10, 20, 40, 80, 160, 120, 140, 130, 135}));
  EXPECT_EQ(r.max_rate_rps, 135);
  EXPECT_EQ(r.best_trial, 8);
  EXPECT_EQ(r.stop_reason, "converged");
  EXPECT_EQ(r.trials.size(), 9u);
  EXPECT_FALSE(r.trials[4].passed);
}

TEST(LoadSloSearch, HalvingFromAFailingStart) {
  std::vector<double> asked;
  auto f = [&](double rate) {
    asked.push_back(rate);
    SloTrial t;
    t.passed = rate <= 137;
    return t;
  };
  SloSearchOptions o;
  o.start_rps = 1000;
  o.max_trials = 20;
  o.rel_tolerance = 0.05;
  const SloSearchResult r = slo_search(f, o);
  EXPECT_EQ(asked, (std::vector<double>{1000, 500, 250, 125, 187.5, 156.25, 140.625, 132.8125, 136.71875}));
  EXPECT_EQ(r.max_rate_rps, 136.71875);
}

TEST(LoadSloSearch, BoundedTrialsAndNothingPassing) {
  auto always = [](bool pass) {
    return [pass](double) {
      SloTrial t;
      t.passed = pass;
      return t;
    };
  };
  SloSearchOptions o;
  o.start_rps = 10;
  o.max_trials = 3;
  SloSearchResult r = slo_search(always(true), o);
  EXPECT_EQ(r.trials.size(), 3u);
  EXPECT_EQ(r.max_rate_rps, 40);
  EXPECT_EQ(r.stop_reason, "trial budget spent while doubling");
  o.max_trials = 50;
  o.min_rps = 1;
  r = slo_search(always(false), o);
  EXPECT_EQ(r.max_rate_rps, 0);
  EXPECT_EQ(r.best_trial, -1);
  EXPECT_EQ(r.trials.back().rate_rps, 1);  // 10, 5, 2.5, 1.25, 1
  EXPECT_EQ(r.trials.size(), 5u);
  EXPECT_CONTAINS(r.stop_reason, "nothing passed down to min_rps");
  o.max_rps = 30;
  r = slo_search(always(true), o);
  EXPECT_EQ(r.max_rate_rps, 30);
  EXPECT_CONTAINS(r.stop_reason, "max_rps reached");
}

TEST(LoadSloSearch, FindsTheKneeOfACapacityLimitedSut) {
  // 4 ms per request, one at a time: capacity 250 req/s. Past it the queue grows without bound
  // and p99 E2E leaves the 100 ms SLO; well below it E2E is a few ms. The limits leave room for
  // scheduling hiccups of a busy (or sanitized) test machine.
  WorkloadSpec w = spec(50, 0.4, 40, 1);
  w.slo.e2e_ms = 100;
  SloSearchOptions o;
  o.start_rps = 50;
  o.max_trials = 6;
  o.rel_tolerance = 0.2;
  const std::chrono::microseconds service(4000);
  const double capacity_rps = 1e6 / double(service.count());
  auto trial = [&](double rate) {
    PlanOptions po;
    po.rate_rps = rate;
    CapacitySut sut(service);
    RunOptions ro;
    ro.drain_timeout_s = 5;
    ro.stop_when_slo_unreachable = true;
    const RunResult r = run_load(sut, make_plan(w, po), w.slo, w.validity, ro);
    SloTrial t;
    t.passed = r.summary.slo_met && r.validity.valid;
    t.why = r.validity.line();
    return t;
  };
  const SloSearchResult r = slo_search(trial, o);
  // Against the SUT's capacity: doubling from 0.2x, 0.2x and 0.4x pass on any machine that can
  // sleep 4 ms; 1.6x cannot, nor can anything past capacity (plus the search's tolerance).
  EXPECT_GE(r.max_rate_rps, 0.3 * capacity_rps) << r.to_json().dump();
  EXPECT_LE(r.max_rate_rps, 1.04 * capacity_rps) << r.to_json().dump();
  for (const auto& t : r.trials) {
    if (t.rate_rps >= 1.6 * capacity_rps) {
      EXPECT_FALSE(t.passed) << t.rate_rps;
    }
  }
}
