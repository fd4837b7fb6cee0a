#include "cb/harness/verdicts/claim_stats.h"

#include <cmath>

namespace cb::harness {

const char* to_string(Comparator c) {
  switch (c) {
    case Comparator::GE: return ">=";
    case Comparator::LE: return "<=";
    case Comparator::GT: return ">";
    case Comparator::LT: return "<";
    case Comparator::EQ: return "==";
  }
  return "?";
}

Comparator comparator_from_string(const std::string& s, const std::string& where) {
  for (auto c : {Comparator::GE, Comparator::LE, Comparator::GT, Comparator::LT, Comparator::EQ})
    if (s == to_string(c)) return c;
  throw SchemaError(where + ": unknown comparator '" + s + "' (expected one of >=, <=, >, <, ==)");
}

bool holds(double v, Comparator c, double t, double tol) {
  if (std::isnan(v)) return false;
  switch (c) {
    case Comparator::GE: return v >= t;
    case Comparator::LE: return v <= t;
    case Comparator::GT: return v > t;
    case Comparator::LT: return v < t;
    case Comparator::EQ: return std::fabs(v - t) <= tol;
  }
  return false;
}

double student_t_975(size_t df) {
  // Table values for df 1..30; beyond, 1.96 + 2.4 / df is within 0.002 of the exact quantile.
  static const double table[] = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
                                 2.201,  2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
                                 2.080,  2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042};
  if (df == 0) return INFINITY;
  if (df <= 30) return table[df - 1];
  return 1.96 + 2.4 / double(df);
}

std::optional<Interval> trial_interval(const Metric& m, std::string& why, size_t min_trials) {
  Interval iv;
  if (m.noise == NoiseClass::Exact) {
    iv.low = iv.high = iv.mean = m.value;
    iv.n = std::max<size_t>(1, m.samples.size());
    iv.method = "exact";
    return iv;
  }
  const auto& s = m.samples;
  if (s.size() < min_trials) {
    why = std::to_string(s.size()) + (s.size() == 1 ? " trial" : " trials") + " of a " + to_string(m.noise) +
          " metric; at least " + std::to_string(min_trials) + " are needed for a 95% interval";
    return std::nullopt;
  }
  double sum = 0;
  for (double x : s) {
    if (!std::isfinite(x)) {
      why = "a trial of " + m.key + " is not a finite number";
      return std::nullopt;
    }
    sum += x;
  }
  const double n = double(s.size());
  iv.mean = sum / n;
  double ss = 0;
  for (double x : s) ss += (x - iv.mean) * (x - iv.mean);
  const double sd = std::sqrt(ss / (n - 1));
  const double half = student_t_975(s.size() - 1) * sd / std::sqrt(n);
  iv.low = iv.mean - half;
  iv.high = iv.mean + half;
  iv.n = s.size();
  iv.method = "student-t";
  return iv;
}

IntervalSide judge_interval(const Interval& iv, Comparator c, double t, double tol) {
  const bool lo = holds(iv.low, c, t, tol), hi = holds(iv.high, c, t, tol);
  if (c == Comparator::EQ) {
    if (lo && hi) return IntervalSide::Holds;  // both ends inside a convex band: all of it is
    // Disjoint from [t - tol, t + tol]?
    if (iv.high < t - tol || iv.low > t + tol) return IntervalSide::Fails;
    return IntervalSide::Straddles;
  }
  // For the one-sided comparators the set where they hold is a half-line: both ends decide.
  if (lo && hi) return IntervalSide::Holds;
  if (!lo && !hi) return IntervalSide::Fails;
  return IntervalSide::Straddles;
}

}  // namespace cb::harness
