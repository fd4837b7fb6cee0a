// The statistics behind a claim's verdict: a 95% confidence interval of the measured value from
// its repeated trials, and where that interval lies against the claim's threshold. A verdict is
// PASS only when the whole interval clears the threshold, FAIL only when it lies wholly on the
// failing side, INCONCLUSIVE otherwise (the noise of the run does not allow a call either way).
//
// The interval (documented for readers in results/SCHEMA.md, "Claim intervals"):
//   - exact metrics (NoiseClass::Exact: byte counts, counted FLOPs, arithmetic, deterministic
//     conformance) have no run-to-run noise: the interval is the value itself;
//   - every other metric needs at least kMinTrials repeated trials in Metric::samples; the
//     interval is Student's t interval of their mean, mean +/- t(0.975, n-1) * s / sqrt(n).
//     Trials of a closed-loop load run or a benchmark repetition are close to independent and
//     their means close to normal; with 3-5 trials t is wide (4.30 at n = 3) on purpose: a claim
//     that sits within the noise is INCONCLUSIVE, not a coin toss.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "cb/harness/core/results.h"

namespace cb::harness {

enum class Comparator { GE, LE, GT, LT, EQ };
const char* to_string(Comparator c);  // ">=", "<=", ">", "<", "=="
// Throws SchemaError "<where>: unknown comparator 'x' (expected one of >=, <=, >, <, ==)".
Comparator comparator_from_string(const std::string& s, const std::string& where);
// value <cmp> threshold; for EQ: |value - threshold| <= tolerance. NaN never holds.
bool holds(double value, Comparator c, double threshold, double tolerance);

inline constexpr size_t kMinTrials = 3;

struct Interval {
  double low = 0, high = 0;
  double level = 0.95;
  size_t n = 0;        // trials behind it (1 for an exact value)
  double mean = 0;     // of the trials (the value itself when exact)
  std::string method;  // "exact" or "student-t"
};

// Two-sided 97.5% quantile of Student's t with `df` degrees of freedom (df >= 1).
double student_t_975(size_t df);

// The 95% interval of m's trials, or nullopt with `why` set (too few trials for a noisy metric,
// or a non-finite trial).
std::optional<Interval> trial_interval(const Metric& m, std::string& why, size_t min_trials = kMinTrials);

enum class IntervalSide { Holds, Fails, Straddles };
// Holds: every value in [low, high] satisfies `value <c> threshold` (EQ: lies within +/- tolerance);
// Fails: none does; Straddles: otherwise.
IntervalSide judge_interval(const Interval& iv, Comparator c, double threshold, double tolerance);

}  // namespace cb::harness
