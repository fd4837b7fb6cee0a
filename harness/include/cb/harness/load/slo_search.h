// SLO search: the highest offered rate whose run meets the SLO, found with a bounded number of
// trials. Doubling from the start rate until a trial fails (or halving until one passes), then
// bisection between the highest pass and the lowest fail until they are within the relative
// tolerance or the trials run out. Every trial is a full seeded run with the same seeds (only the
// rate changes), so trials differ by load, not by a different request mix. A trial passes when
// its SLO percentiles meet every limit AND the run is valid (an invalid run demonstrates nothing).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace cb::harness::load {

struct SloSearchOptions {
  double start_rps = 1;
  double min_rps = 0;         // stop halving below this (0: start / 64)
  double max_rps = 0;         // stop doubling above this (0: start * 1024)
  int max_trials = 8;
  double rel_tolerance = 0.1; // stop when (lowest fail - highest pass) / highest pass <= this
  nlohmann::json to_json() const;
};
SloSearchOptions slo_search_options_from_json(const nlohmann::json& j);  // keys as in workloads/README.md

struct SloTrial {
  double rate_rps = 0;
  bool passed = false;
  std::string why;             // what failed ("p99 e2e 95 ms > 80 ms", "INVALID: ...") or "meets SLO"
  nlohmann::json detail;       // whatever the trial function wants recorded (summary figures)
};

struct SloSearchResult {
  double max_rate_rps = 0;     // highest passing rate; 0 when none passed
  int best_trial = -1;         // index into trials
  std::vector<SloTrial> trials;
  std::string stop_reason;     // "converged", "trial budget spent", "max_rps reached", "nothing passed down to min_rps"
  nlohmann::json to_json() const;
};

SloSearchResult slo_search(const std::function<SloTrial(double rate_rps)>& run_trial, const SloSearchOptions& o);

}  // namespace cb::harness::load
