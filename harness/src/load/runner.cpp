#include "cb/harness/load/runner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <memory>
#include <future>
#include <mutex>
#include <tuple>
#include <thread>

namespace cb::harness::load {
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

// Shared between the issuing thread and the SUT's callback threads; the callbacks keep it alive,
// so a SUT answering after the run gave up on a request writes nowhere that matters.
struct State {
  std::mutex m;
  std::condition_variable cv;
  std::vector<RequestRecord> recs;
  std::vector<uint8_t> closed;  // the request's last event (or the drain deadline) has been recorded
  size_t finished = 0;
  Clock::time_point t0;
  bool keep_tokens = true;

  double since_start(Clock::time_point t) const { return std::chrono::duration<double>(t - t0).count(); }
  void close(size_t i) {  // with m held
    closed[i] = 1;
    ++finished;
    cv.notify_all();
  }
};

SutCallbacks callbacks_for(const std::shared_ptr<State>& st, size_t i) {
  SutCallbacks cb;
  cb.on_sent = [st, i] {
    const auto now = Clock::now();
    std::lock_guard lk(st->m);
    if (st->closed[i] || st->recs[i].sent_s >= 0) return;
    st->recs[i].sent_s = st->since_start(now);
  };
  cb.on_tokens = [st, i](int n) {
    const auto now = Clock::now();  // first thing: the harness's timestamp
    std::lock_guard lk(st->m);
    if (st->closed[i]) return;
    RequestRecord& r = st->recs[i];
    const double t = st->since_start(now);
    if (r.first_token_s < 0) r.first_token_s = t;
    r.output_tokens += n;
    if (st->keep_tokens) r.token_s.push_back(t);
  };
  cb.on_complete = [st, i](int reported) {
    const auto now = Clock::now();
    std::lock_guard lk(st->m);
    if (st->closed[i]) return;
    RequestRecord& r = st->recs[i];
    r.done_s = st->since_start(now);
    if (reported >= 0) r.output_tokens = reported;
    if (r.output_tokens < r.max_tokens) {
      r.error = ErrorKind::Short;
      r.error_message = "completed with " + std::to_string(r.output_tokens) + " of " + std::to_string(r.max_tokens) + " tokens";
    } else if (r.first_token_s < 0) {
      r.error = ErrorKind::Protocol;
      r.error_message = "completed with " + std::to_string(r.output_tokens) + " of " + std::to_string(r.max_tokens) +
                        " tokens by the SUT's count, but no token was seen arriving (no streamed chunk carried one): TTFT "
                        "cannot be measured";
    }
    st->close(i);
  };
  cb.on_error = [st, i](ErrorKind k, const std::string& msg) {
    const auto now = Clock::now();
    std::lock_guard lk(st->m);
    if (st->closed[i]) return;
    RequestRecord& r = st->recs[i];
    r.done_s = st->since_start(now);
    r.error = k == ErrorKind::None ? ErrorKind::Engine : k;
    r.error_message = msg;
    st->close(i);
  };
  return cb;
}

// Whether the run can no longer meet `slo` at its percentile over `planned` requests: for some
// limit, more requests already exceed it (completed over it, failed, or open for longer than it)
// than nearest rank allows (planned - ceil(p/100 * planned)). Called with st.m held.
std::string slo_unreachable(const State& st, size_t issued, size_t planned, const Slo& slo, double now_s) {
  const size_t allowed = planned - std::min(planned, size_t(std::ceil(slo.percentile / 100.0 * double(planned) - 1e-9)));
  size_t ttft_bad = 0, tpot_bad = 0, e2e_bad = 0;
  for (size_t i = 0; i < issued; ++i) {
    const RequestRecord& r = st.recs[i];
    if (st.closed[i]) {
      if (!r.completed()) {
        ++ttft_bad, ++tpot_bad, ++e2e_bad;
        continue;
      }
      ttft_bad += r.ttft_s() * 1e3 > slo.ttft_ms;
      e2e_bad += r.e2e_s() * 1e3 > slo.e2e_ms;
      const double tp = r.tpot_s();
      tpot_bad += std::isfinite(tp) && tp * 1e3 > slo.tpot_ms;
    } else {
      const double age_ms = (now_s - r.scheduled_s) * 1e3;  // from the schedule, as the latencies
      e2e_bad += age_ms > slo.e2e_ms;
      ttft_bad += r.first_token_s < 0 && age_ms > slo.ttft_ms;
    }
  }
  auto why = [&](const char* name, size_t bad) {
    return std::to_string(bad) + " of " + std::to_string(planned) + " requests already over the " + name + " limit (p" +
           std::to_string(int(slo.percentile)) + " allows " + std::to_string(allowed) + ")";
  };
  if (e2e_bad > allowed) return why("E2E", e2e_bad);
  if (ttft_bad > allowed) return why("TTFT", ttft_bad);
  if (tpot_bad > allowed) return why("TPOT", tpot_bad);
  return "";
}

}  // namespace

double RunResult::busy_fraction() const {
  if (!steady_begin || !steady_end || steady_end_s <= steady_begin_s) return std::nan("");
  return (steady_end->busy_seconds - steady_begin->busy_seconds) / (steady_end_s - steady_begin_s);
}

double RunResult::device_busy_fraction() const {
  if (!steady_begin || !steady_end || steady_end_s <= steady_begin_s) return std::nan("");
  return (steady_end->device_busy_seconds - steady_begin->device_busy_seconds) / (steady_end_s - steady_begin_s);
}

RunResult run_load(Sut& sut, const Plan& plan, const Slo& slo, const ValidityRules& rules, const RunOptions& opt) {
  const size_t n = plan.requests.size();
  auto st = std::make_shared<State>();
  st->keep_tokens = opt.keep_token_times;
  st->recs.resize(n);
  st->closed.assign(n, 0);
  for (size_t i = 0; i < n; ++i) {  // preparation, outside the timed region
    RequestRecord& r = st->recs[i];
    r.index = int64_t(i);
    r.scheduled_s = plan.requests[i].arrival_s;
    r.prompt_tokens = int(plan.requests[i].req.prompt.size());
    r.max_tokens = plan.requests[i].req.max_tokens;
    if (opt.keep_token_times) r.token_s.reserve(size_t(r.max_tokens));
  }
  RunResult res;
  size_t issued = 0;
  const double window_begin = plan.closed_loop ? opt.warmup_fraction * plan.duration_s
                                               : opt.warmup_fraction * (n ? plan.requests.back().arrival_s : 0.0);
  // The window's first counter sample is taken on a helper thread: over HTTP it is a /metrics
  // scrape, which would otherwise hold up the issuing thread (issue lag) for a round trip.
  std::future<std::pair<std::optional<SutCounters>, double>> begin_sample;
  auto maybe_sample_begin = [&](double now_s) {
    if (!begin_sample.valid() && now_s >= window_begin)
      begin_sample = std::async(std::launch::async, [&sut, st] {
        auto c = sut.counters();
        return std::make_pair(std::move(c), st->since_start(Clock::now()));
      });
  };
  auto issue = [&](size_t i, double scheduled) {
    {
      std::lock_guard lk(st->m);
      st->recs[i].scheduled_s = scheduled;
      st->recs[i].issued_s = st->since_start(Clock::now());
    }
    sut.issue(plan.requests[i].req, callbacks_for(st, i));  // not under the lock: a SUT may answer inline
    ++issued;
  };

  auto at = [&](double s) { return st->t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s)); };
  const bool watch = opt.stop_when_slo_unreachable && !plan.closed_loop && slo.any();
  double next_check = opt.check_interval_s;
  auto check = [&] {  // the SLO watch: sets res.abandoned
    std::lock_guard lk(st->m);
    res.abandoned = slo_unreachable(*st, issued, n, slo, st->since_start(Clock::now()));
    return res.abandoned.empty();
  };

  // Connections (and whatever else a SUT sets up per concurrent request) are opened before the
  // timed window: closed loop, its concurrency; open loop, the most arrivals in any 1 s window.
  int expected = plan.closed_loop ? std::max(1, plan.concurrency) : 0;
  if (!plan.closed_loop)
    for (size_t lo = 0, hi = 0; hi < n; ++hi) {
      while (plan.requests[hi].arrival_s - plan.requests[lo].arrival_s > 1.0) ++lo;
      expected = std::max(expected, int(hi - lo + 1));
    }
  sut.prepare(std::min(expected, 256));
  st->t0 = Clock::now();
  if (opt.on_start) opt.on_start();
  if (!plan.closed_loop) {
    for (size_t i = 0; i < n && res.abandoned.empty(); ++i) {
      const double arrival = plan.requests[i].arrival_s;
      while (watch && next_check < arrival) {  // wake for the SLO watch between arrivals
        std::this_thread::sleep_until(at(next_check));
        next_check = st->since_start(Clock::now()) + opt.check_interval_s;
        if (!check()) break;
      }
      if (!res.abandoned.empty()) break;
      std::this_thread::sleep_until(at(arrival));
      maybe_sample_begin(arrival);
      issue(i, arrival);
    }
  } else {
    const size_t conc = size_t(std::max(1, plan.concurrency));
    std::unique_lock lk(st->m);
    for (;;) {
      const double now_s = st->since_start(Clock::now());
      const bool enough = now_s >= plan.duration_s && issued >= plan.min_requests;
      if (issued >= n || enough) break;
      if (issued - st->finished < conc) {
        lk.unlock();
        maybe_sample_begin(now_s);
        issue(issued, st->since_start(Clock::now()));
        lk.lock();
        continue;
      }
      // Wake on a completion, or at the latest when the duration is reached (once it has passed,
      // only a completion can change anything: no timed wake-ups then).
      const auto slot_free = [&] { return issued - st->finished < conc; };
      if (now_s < plan.duration_s) st->cv.wait_until(lk, at(plan.duration_s), slot_free);
      else st->cv.wait(lk, slot_free);
    }
  }
  res.issue_window_s = st->since_start(Clock::now());
  if (begin_sample.valid()) {
    std::tie(res.steady_begin, res.steady_begin_s) = begin_sample.get();
  } else {  // a window too short to reach its start: take it from here
    res.steady_begin = sut.counters();
    res.steady_begin_s = st->since_start(Clock::now());
  }
  res.steady_end = sut.counters();
  res.steady_end_s = st->since_start(Clock::now());

  // Drain: wait for every issued request, up to the deadline (or until the SLO watch gives up);
  // then the rest are timeouts (abandoned).
  std::optional<SutCounters> before_abort;
  {
    std::unique_lock lk(st->m);
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opt.drain_timeout_s));
    while (res.abandoned.empty()) {
      const auto until = watch ? std::min(deadline, Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                                        std::chrono::duration<double>(opt.check_interval_s)))
                               : deadline;
      if (st->cv.wait_until(lk, until, [&] { return st->finished >= issued; })) break;
      if (Clock::now() >= deadline) break;
      res.abandoned = slo_unreachable(*st, issued, n, slo, st->since_start(Clock::now()));
    }
    if (st->finished < issued) {
      const double t = st->since_start(Clock::now());
      const bool gave_up = !res.abandoned.empty();
      for (size_t i = 0; i < issued; ++i)
        if (!st->closed[i]) {
          st->recs[i].error = gave_up ? ErrorKind::Abandoned : ErrorKind::Timeout;
          st->recs[i].error_message = gave_up ? "abandoned: " + res.abandoned
                                              : "not finished " + std::to_string(opt.drain_timeout_s) + " s after the last issue";
          st->recs[i].done_s = t;
          st->close(i);
        }
      lk.unlock();
      // abort_all may leave a fresh engine behind: its counters would describe nothing that ran
      // (a fresh engine's zero KV peak once turned a timed-out paged run into a 100% KV saving).
      before_abort = sut.counters();
      sut.abort_all();
      lk.lock();
    }
    res.records = st->recs;  // a copy: late callbacks may still touch st after this
  }
  res.at_end = before_abort ? before_abort : sut.settled_counters();

  res.summary = summarize_run(res.records, slo);
  res.validity = check_validity(res.summary, rules, !plan.closed_loop);
  if (!res.abandoned.empty()) {
    res.validity.conditions.push_back({"ran_to_end", false, "stopped after " + std::to_string(issued) + " of " + std::to_string(n) +
                                                                " requests: " + res.abandoned});
    res.validity.valid = false;
  }
  res.requested = plan.requested;
  const double last_issue = issued ? res.records[issued - 1].issued_s : 0.0;
  double busy_sum = 0;  // Little's law: mean requests in flight = sum of E2E / duration
  for (const auto& r : res.records)
    if (r.issued_s >= 0 && r.done_s >= 0) busy_sum += r.done_s - r.issued_s;
  res.effective = {{"issued", issued},
                   {"issue_window_s", res.issue_window_s},
                   {"duration_s", res.summary.duration_s},
                   {"offered_rps", last_issue > 0 ? double(issued - 1) / last_issue : 0.0},
                   {"mean_in_flight", res.summary.duration_s > 0 ? busy_sum / res.summary.duration_s : 0.0},
                   {"issue_lag_ms_p99", res.summary.issue_lag_ms.n ? json(res.summary.issue_lag_ms.p99) : json()},
                   {"steady_window_s", {res.steady_begin_s, res.steady_end_s}}};
  if (!res.abandoned.empty()) res.effective["abandoned"] = res.abandoned;
  return res;
}

}  // namespace cb::harness::load
