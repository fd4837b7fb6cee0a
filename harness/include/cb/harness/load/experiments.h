// The load suite's building blocks: one measured run of a workload on a fresh SUT, an SLO search
// over such runs, and the bookkeeping every run leaves behind (params entry with requested and
// effective settings and the VALID/INVALID line, a "sweep" row, optionally its "requests" rows).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "cb/harness/load/engine_config.h"
#include "cb/harness/load/metrics_sampler.h"
#include "cb/harness/load/sut.h"
#include "cb/harness/load/runner.h"
#include "cb/harness/load/slo_search.h"
#include "cb/harness/load/workload.h"

namespace cb::harness::load {

struct LoadContext {
  // A fresh SUT for an engine configuration (HTTP: the configuration is ignored, the endpoint is
  // whatever it is).
  std::function<std::unique_ptr<Sut>(const InProcessConfig&)> make_sut;
  bool inprocess = true;
  PlanOptions plan;       // run seed, BOS, context, vocabulary
  RunOptions run;
  std::function<void(const std::string&)> say;
  // A server /metrics sampler for each measured run (HTTP SUTs whose profile names series);
  // empty: none. Started just before the run, stopped after it; the time series and the
  // steady-window summary land in the run's params entry ("server_metrics").
  std::function<std::unique_ptr<MetricsSampler>()> make_sampler;
  nlohmann::json runs = nlohmann::json::object();    // label -> what the run asked for and got
  nlohmann::json sweep_rows = nlohmann::json::array();
  nlohmann::json request_rows = nlohmann::json::array();
  size_t max_request_rows = 20000;
  size_t request_rows_dropped = 0;
};

// InProcessConfig fields from a workload's engine object (keys as the struct's, kv_mode
// "paged" | "contiguous"); unknown keys throw WorkloadError naming `where`.
InProcessConfig inprocess_config_from_json(const nlohmann::json& j, InProcessConfig base, const std::string& where);

struct MeasureOptions {
  double rate_rps = 0;       // > 0: override the workload's rate
  int concurrency = 0;       // > 0: closed loop at this concurrency
  bool requests_table = false;
  bool sweep_row = true;
  std::string table_workload; // the "workload" column (default: the workload's name)
  bool stop_when_slo_unreachable = false;  // SLO-search trials (RunOptions)
};

struct Measured {
  std::string label;
  RunResult result;
  nlohmann::json sut;         // the SUT's description
  std::optional<MetricsSummary> server_metrics;  // steady window of the sampled /metrics series
};

// One seeded run on a fresh SUT. Throws what the SUT or the plan throws.
Measured measure(LoadContext& ctx, const WorkloadSpec& w, const InProcessConfig& cfg, const std::string& label,
                 const MeasureOptions& mo = {});

// SLO search over measured runs of `w` on configuration `cfg`; every trial lands in the sweep table.
SloSearchResult search_max_rate(LoadContext& ctx, const WorkloadSpec& w, const InProcessConfig& cfg, const std::string& label,
                                const SloSearchOptions& so, const std::string& table_workload);

// "p99 e2e 95.1 ms > 80 ms; p99 ttft ..." for the limits a summary misses, or "meets SLO".
std::string slo_verdict(const RunSummary& s, const Slo& slo);

}  // namespace cb::harness::load
