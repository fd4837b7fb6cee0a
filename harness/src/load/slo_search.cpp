#include "cb/harness/load/slo_search.h"

#include <cmath>
#include <limits>
#include <stdexcept>

namespace cb::harness::load {
using nlohmann::json;

json SloSearchOptions::to_json() const {
  return {{"start_rps", start_rps}, {"min_rps", min_rps}, {"max_rps", max_rps}, {"max_trials", max_trials}, {"rel_tolerance", rel_tolerance}};
}

SloSearchOptions slo_search_options_from_json(const json& j) {
  SloSearchOptions o;
  if (!j.is_object()) return o;
  o.start_rps = j.value("start_rps", o.start_rps);
  o.min_rps = j.value("min_rps", o.min_rps);
  o.max_rps = j.value("max_rps", o.max_rps);
  o.max_trials = j.value("max_trials", o.max_trials);
  o.rel_tolerance = j.value("rel_tolerance", o.rel_tolerance);
  return o;
}

json SloSearchResult::to_json() const {
  json t = json::array();
  for (const auto& x : trials) t.push_back({{"rate_rps", x.rate_rps}, {"passed", x.passed}, {"why", x.why}, {"detail", x.detail}});
  return {{"max_rate_rps", max_rate_rps}, {"best_trial", best_trial}, {"stop_reason", stop_reason}, {"trials", t}};
}

SloSearchResult slo_search(const std::function<SloTrial(double)>& run_trial, const SloSearchOptions& o) {
  if (!(o.start_rps > 0)) throw std::invalid_argument("slo_search: start_rps must be > 0");
  if (o.max_trials < 1) throw std::invalid_argument("slo_search: max_trials must be >= 1");
  const double min_rps = o.min_rps > 0 ? o.min_rps : o.start_rps / 64;
  const double max_rps = o.max_rps > 0 ? o.max_rps : o.start_rps * 1024;
  SloSearchResult res;
  double pass = 0, fail = std::numeric_limits<double>::infinity();
  auto trial = [&](double rate) {
    SloTrial t = run_trial(rate);
    t.rate_rps = rate;
    res.trials.push_back(t);
    if (t.passed && rate > pass) {
      pass = rate;
      res.best_trial = int(res.trials.size()) - 1;
    }
    if (!t.passed && rate < fail) fail = rate;
    return t.passed;
  };
  auto budget_left = [&] { return int(res.trials.size()) < o.max_trials; };

  // 1. Bracket: double up from a pass, or halve down from a fail.
  double rate = std::min(std::max(o.start_rps, min_rps), max_rps);
  if (trial(rate)) {
    while (std::isinf(fail)) {
      if (rate >= max_rps) {
        res.stop_reason = "max_rps reached (" + std::to_string(max_rps) + " req/s passed)";
        break;
      }
      if (!budget_left()) {
        res.stop_reason = "trial budget spent while doubling";
        break;
      }
      rate = std::min(rate * 2, max_rps);
      trial(rate);
    }
  } else {
    while (pass == 0) {
      if (rate <= min_rps) {
        res.stop_reason = "nothing passed down to min_rps " + std::to_string(min_rps) + " req/s";
        break;
      }
      if (!budget_left()) {
        res.stop_reason = "trial budget spent while halving";
        break;
      }
      rate = std::max(rate / 2, min_rps);
      trial(rate);
    }
  }
  // 2. Bisect the bracket [pass, fail].
  if (res.stop_reason.empty()) {
    while ((fail - pass) / pass > o.rel_tolerance) {
      if (!budget_left()) {
        res.stop_reason = "trial budget spent while bisecting";
        break;
      }
      trial((pass + fail) / 2);
    }
    if (res.stop_reason.empty()) res.stop_reason = "converged";
  }
  res.max_rate_rps = pass;
  return res;
}

}  // namespace cb::harness::load
