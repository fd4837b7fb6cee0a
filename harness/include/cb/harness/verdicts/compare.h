// `claimbench compare`: the regression gate between a baseline run and a new run, in the manner of
// Google Benchmark's compare.py: raw repetitions on both sides, a two-sided Mann-Whitney U test, a
// relative threshold, and a per-suite geometric mean before anything is called a regression.
//
// Per metric key present in both runs (after the suite / noise-class filters):
//   change   = (new - base) / |base|, negated for lower-is-better metrics: positive = better.
//   p_value  = Mann-Whitney U, two-sided, on the raw samples, when both sides have >= 2 samples
//              (exact distribution when n1, n2 <= 20 and no ties, else the normal approximation with
//              tie and continuity correction, as scipy.stats.mannwhitneyu).
//   significant = p < alpha; or, with < 2 samples on a side, true for exact/ratio metrics (judged
//              on the threshold alone); or true for exact metrics whose samples are all identical on
//              each side (deterministic values need no test).
//   verdict  = regression   significant and change < -threshold
//              improvement  significant and change > +threshold
//              unchanged    otherwise
//              insufficient samples   timing metric with < 2 samples on a side (never a regression)
//              neutral      direction neutral: reported, never a regression
//              invalid      a side's value is NaN (a failure when the new value is NaN)
//   and for keys in only one run: new (only in the new run), missing (only in the base run; a
//   failure when the options mark the key as required).
// The threshold is options.threshold, overridden per noise class, overridden per key prefix
// (longest prefix wins). Runs on different hardware fingerprints fail unless allowed (then warn).
//
// Paired metrics (the accuracy suite's per-example exact-match 0/1 and per-window perplexities):
// when both runs' metric carries the same non-empty params.pair_key (a hash of the inputs behind
// the samples: sample i of both runs measured the same example) and as many samples, the test is
// paired instead of Mann-Whitney: d_i = new_i - base_i, and a percentile bootstrap of mean(d)
// (kPairedBootstrapResamples resamples of the pairs, fixed seed, so a comparison repeats) gives its
// (1 - alpha) interval (diff_low, diff_high, in the samples' unit; for a fraction x100 = points)
// and a two-sided p-value (twice the smaller share of resampled means on either side of 0).
//   significant = the interval excludes 0 (p < alpha);
//   verdict     = as above, with the same relative threshold on the values' change: a regression
//                 is a significant paired difference whose change is past -threshold; a change
//                 past the threshold inside the noise (interval holds 0) stays "unchanged (not
//                 significant)". Different pair keys (other examples): the unpaired test, noted.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cb/harness/core/results.h"

namespace cb::harness {

// Two-sided Mann-Whitney U p-value of samples a vs b (1.0 when either is empty or all values tie):
// exact distribution when both sizes are <= exact_max_n and no value ties, else normal approximation.
double mann_whitney_u_pvalue(const std::vector<double>& a, const std::vector<double>& b, int exact_max_n = 20);
// U statistic of the first sample: number of pairs (a_i, b_j) with a_i > b_j, ties counting 1/2.
double mann_whitney_u_statistic(const std::vector<double>& a, const std::vector<double>& b);

struct CompareOptions {
  double alpha = 0.05;
  double threshold = 0.05;                        // relative, default for every metric
  std::map<NoiseClass, double> noise_threshold;   // overrides per noise class
  std::map<std::string, double> prefix_threshold; // overrides per key prefix (longest wins)
  std::vector<std::string> suites;                // compare only these suites (empty: all)
  std::vector<NoiseClass> noise_classes;          // compare only these noise classes (empty: all); CI: exact+ratio
  std::vector<std::string> metrics;               // compare only these keys (empty: all); "prefix*" allowed
  std::vector<std::string> required;              // keys that must be present in the new run;
                                                  //   an entry ending in '*' is a prefix
  bool allow_hardware_mismatch = false;
  int exact_max_n = 20;                           // exact MWU distribution up to this size per side

  double threshold_for(const std::string& key, NoiseClass noise) const;
  bool is_required(const std::string& key) const;
};

enum class CompareVerdict { Regression, Improvement, Unchanged, InsufficientSamples, Neutral, Invalid, New, Missing };
const char* to_string(CompareVerdict v);  // "regression", "improvement", "unchanged", "insufficient samples",
                                          // "neutral", "invalid", "new", "missing"

struct MetricComparison {
  std::string suite;
  std::string key;
  std::string unit;
  Direction direction = Direction::Neutral;
  NoiseClass noise = NoiseClass::Timing;
  std::optional<double> base;  // summary values
  std::optional<double> next;
  size_t n_base = 0;  // repetitions (1 when a metric has a value but no samples)
  size_t n_next = 0;
  std::optional<double> change;   // relative, positive = better; absent when not computable
  std::optional<double> p_value;  // absent when no test was run
  std::string test;               // "mann-whitney", "paired-bootstrap" or "" (none)
  // Paired test only: mean of new_i - base_i and its (1 - alpha) bootstrap interval, sample units.
  std::optional<double> diff_mean, diff_low, diff_high;
  double threshold = 0;
  CompareVerdict verdict = CompareVerdict::Unchanged;
  bool failure = false;  // counts toward the exit code
  std::string note;
};

struct SuiteGeomean {
  std::string suite;
  double ratio = 1;  // geometric mean of direction-adjusted new/base ratios: > 1 = better
  size_t count = 0;  // metrics that entered it (non-neutral, positive values on both sides)
};

struct CompareResult {
  std::string base_label;
  std::string next_label;
  std::string base_fingerprint;
  std::string next_fingerprint;
  bool hardware_mismatch = false;
  std::vector<MetricComparison> metrics;
  std::vector<SuiteGeomean> geomeans;
  std::vector<std::string> warnings;
  std::vector<std::string> failures;  // every reason the gate fails, one line each

  int count(CompareVerdict v) const;
  bool passed() const { return failures.empty(); }
};

CompareResult compare_runs(const RunData& base, const RunData& next, const CompareOptions& options = {});

// Fixed-width table: metric, base, new, change %, p-value, n, verdict; then geomean rows,
// warnings, failures and a one-line verdict.
void print_compare_table(std::ostream& os, const CompareResult& r);
nlohmann::json to_json(const CompareResult& r);

inline constexpr int kPairedBootstrapResamples = 4000;
struct PairedDifference {
  double mean = 0, low = 0, high = 0;  // mean of b_i - a_i and its (1 - alpha) percentile interval
  double p_value = 1;
  size_t n = 0;
};
// Paired bootstrap of mean(b_i - a_i); a and b of equal size >= 1 (throws std::invalid_argument).
PairedDifference paired_bootstrap(const std::vector<double>& a, const std::vector<double>& b, double alpha = 0.05,
                                  int resamples = kPairedBootstrapResamples, uint64_t seed = 20240601);

// 0 when the gate passes; 1 on any regression or other failure (missing required metric, NaN,
// hardware mismatch not allowed).
int compare_exit_code(const CompareResult& r);

}  // namespace cb::harness
