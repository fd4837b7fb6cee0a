// Runs one plan against a SUT: issues requests on schedule (open loop) or at a fixed concurrency
// (closed loop), timestamps every callback, waits for the stragglers up to a drain deadline, and
// summarizes. Also samples the SUT's engine counters at the edges of the steady-state window (the
// part of the issue window after the warm-up fraction) for utilization figures.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "cb/harness/load/stats.h"
#include "cb/harness/load/sut.h"
#include "cb/harness/load/workload.h"

namespace cb::harness::load {

struct RunOptions {
  double drain_timeout_s = 60;  // after the last issue; open requests then count as "timeout"
  double warmup_fraction = 0.2; // steady-state window = [warmup_fraction, 1] of the issue window
  bool keep_token_times = true; // per-token timestamps (ITL); off saves memory on huge runs
  // Open loop: stop as soon as the SLO can no longer be met at its percentile (more requests of
  // the plan already over a limit, by completion or by age, than the percentile allows). Used by
  // SLO-search trials: an overloaded trial then fails in a fraction of a second instead of
  // draining a backlog for minutes. The rest is aborted ("abandoned"), the run marked INVALID.
  bool stop_when_slo_unreachable = false;
  double check_interval_s = 0.05;
  // Called once at the run's time zero (after the SUT's prepare(), before the first issue): lets
  // a /metrics sampler put its samples on the run's time base.
  std::function<void()> on_start;
};

struct RunResult {
  std::vector<RequestRecord> records;
  RunSummary summary;
  Validity validity;
  double issue_window_s = 0;  // run start to the last issue
  // Counters at the steady window's edges (when the SUT has them) and at the end.
  std::optional<SutCounters> steady_begin, steady_end, at_end;
  double steady_begin_s = 0, steady_end_s = 0;
  nlohmann::json requested, effective;  // MLPerf-style: what was asked, what happened
  std::string abandoned;      // why the run stopped early ("" = it ran to the end)
  // Steady-window utilization from the counters (NaN when the SUT has none).
  double busy_fraction() const;
  double device_busy_fraction() const;  // NaN unless the SUT's backend times its own work (GPU)
};

RunResult run_load(Sut& sut, const Plan& plan, const Slo& slo, const ValidityRules& rules, const RunOptions& opt = {});

}  // namespace cb::harness::load
