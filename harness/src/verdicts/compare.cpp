#include "cb/harness/verdicts/compare.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <stdexcept>

namespace cb::harness {
using nlohmann::json;

// ---------------------------------------------------------------------------------------------
// Mann-Whitney U

double mann_whitney_u_statistic(const std::vector<double>& a, const std::vector<double>& b) {
  double u = 0;
  for (double x : a)
    for (double y : b) u += x > y ? 1.0 : (x == y ? 0.5 : 0.0);
  return u;
}

namespace {
// Number of orderings of m a's and n b's with U = u, for every u in [0, m*n]:
//   f(m, n, u) = f(m-1, n, u-n) + f(m, n-1, u)   (the largest value is an a, or a b)
// Counts reach C(40, 20) ~ 1.4e11 for m = n = 20: exact in a double.
std::vector<double> u_distribution(int m, int n) {
  // table[i][j] = distribution for sizes (i, j); built bottom-up.
  std::vector<std::vector<std::vector<double>>> t(m + 1, std::vector<std::vector<double>>(n + 1));
  for (int i = 0; i <= m; ++i)
    for (int j = 0; j <= n; ++j) {
      auto& d = t[i][j];
      d.assign(static_cast<size_t>(i * j + 1), 0.0);
      if (i == 0 || j == 0) {
        d[0] = 1;
        continue;
      }
      const auto& left = t[i - 1][j];  // largest is an a: it beats all j b's
      for (size_t u = 0; u < left.size(); ++u) d[u + j] += left[u];
      const auto& down = t[i][j - 1];  // largest is a b
      for (size_t u = 0; u < down.size(); ++u) d[u] += down[u];
    }
  return t[m][n];
}

bool has_ties(std::vector<double> all) {
  std::sort(all.begin(), all.end());
  return std::adjacent_find(all.begin(), all.end()) != all.end();
}
}  // namespace

double mann_whitney_u_pvalue(const std::vector<double>& a, const std::vector<double>& b, int exact_max_n) {
  const size_t n1 = a.size(), n2 = b.size();
  if (n1 == 0 || n2 == 0) return 1.0;
  const double u1 = mann_whitney_u_statistic(a, b);
  const double u = std::max(u1, static_cast<double>(n1 * n2) - u1);  // the larger U, as scipy
  std::vector<double> all(a);
  all.insert(all.end(), b.begin(), b.end());
  const size_t cap = static_cast<size_t>(std::max(0, exact_max_n));
  if (n1 <= cap && n2 <= cap && !has_ties(all)) {
    const auto d = u_distribution(static_cast<int>(n1), static_cast<int>(n2));
    double total = 0, tail = 0;
    for (size_t k = 0; k < d.size(); ++k) {
      total += d[k];
      if (static_cast<double>(k) >= u) tail += d[k];
    }
    return std::min(1.0, 2.0 * tail / total);
  }
  // Normal approximation with tie correction and continuity correction.
  const double n = static_cast<double>(n1 + n2);
  std::sort(all.begin(), all.end());
  double ties = 0;
  for (size_t i = 0; i < all.size();) {
    size_t j = i;
    while (j < all.size() && all[j] == all[i]) ++j;
    const double t = static_cast<double>(j - i);
    ties += t * t * t - t;
    i = j;
  }
  const double mu = static_cast<double>(n1 * n2) / 2.0;
  const double var = static_cast<double>(n1 * n2) / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
  if (var <= 0) return 1.0;  // every value ties
  const double z = (u - mu - 0.5) / std::sqrt(var);
  return std::clamp(std::erfc(z / std::sqrt(2.0)), 0.0, 1.0);
}

PairedDifference paired_bootstrap(const std::vector<double>& a, const std::vector<double>& b, double alpha, int resamples,
                                  uint64_t seed) {
  if (a.size() != b.size() || a.empty())
    throw std::invalid_argument("paired_bootstrap: needs equal, non-zero sample counts (got " + std::to_string(a.size()) + " and " +
                                std::to_string(b.size()) + ")");
  const size_t n = a.size();
  std::vector<double> d(n);
  double sum = 0;
  for (size_t i = 0; i < n; ++i) sum += d[i] = b[i] - a[i];
  PairedDifference r;
  r.n = n;
  r.mean = sum / double(n);
  if (std::all_of(d.begin(), d.end(), [&](double x) { return x == d[0]; })) {  // no spread: the mean is exact
    r.low = r.high = r.mean;
    r.p_value = r.mean == 0 ? 1.0 : 0.0;
    return r;
  }
  // Indices from raw mt19937_64 output (no std distributions: the same draws with every library).
  std::mt19937_64 rng(seed);
  std::vector<double> means(size_t(std::max(resamples, 1)));
  for (double& m : means) {
    double s = 0;
    for (size_t i = 0; i < n; ++i) s += d[size_t(rng() % n)];
    m = s / double(n);
  }
  std::sort(means.begin(), means.end());
  auto quantile = [&](double q) {
    const double pos = q * double(means.size() - 1);
    const size_t lo = size_t(std::floor(pos));
    const size_t hi = std::min(lo + 1, means.size() - 1);
    return means[lo] + (pos - double(lo)) * (means[hi] - means[lo]);
  };
  r.low = quantile(alpha / 2);
  r.high = quantile(1 - alpha / 2);
  const double le = double(std::count_if(means.begin(), means.end(), [](double m) { return m <= 0; }));
  const double ge = double(std::count_if(means.begin(), means.end(), [](double m) { return m >= 0; }));
  r.p_value = std::min(1.0, 2.0 * std::min(le, ge) / double(means.size()));
  return r;
}

// ---------------------------------------------------------------------------------------------
// Options and verdicts

double CompareOptions::threshold_for(const std::string& key, NoiseClass noise) const {
  double t = threshold;
  if (auto it = noise_threshold.find(noise); it != noise_threshold.end()) t = it->second;
  size_t best = 0;
  for (const auto& [prefix, v] : prefix_threshold)
    if (key.rfind(prefix, 0) == 0 && prefix.size() >= best) {
      best = prefix.size();
      t = v;
    }
  return t;
}

bool CompareOptions::is_required(const std::string& key) const {
  for (const auto& r : required) {
    if (!r.empty() && r.back() == '*') {
      if (key.rfind(r.substr(0, r.size() - 1), 0) == 0) return true;
    } else if (r == key) {
      return true;
    }
  }
  return false;
}

const char* to_string(CompareVerdict v) {
  switch (v) {
    case CompareVerdict::Regression: return "regression";
    case CompareVerdict::Improvement: return "improvement";
    case CompareVerdict::Unchanged: return "unchanged";
    case CompareVerdict::InsufficientSamples: return "insufficient samples";
    case CompareVerdict::Neutral: return "neutral";
    case CompareVerdict::Invalid: return "invalid";
    case CompareVerdict::New: return "new";
    case CompareVerdict::Missing: return "missing";
  }
  return "?";
}

int CompareResult::count(CompareVerdict v) const {
  return static_cast<int>(std::count_if(metrics.begin(), metrics.end(), [&](const MetricComparison& m) { return m.verdict == v; }));
}

// ---------------------------------------------------------------------------------------------
// The gate

namespace {
struct Entry {
  std::string suite;
  const Metric* metric = nullptr;
};

// "a.b" matches the key a.b; "a.*" matches every key starting with "a.".
bool key_matches(const std::string& pattern, const std::string& key) {
  if (!pattern.empty() && pattern.back() == '*') return key.rfind(pattern.substr(0, pattern.size() - 1), 0) == 0;
  return pattern == key;
}

std::map<std::string, Entry> index_run(const RunData& run, const CompareOptions& o) {
  std::map<std::string, Entry> idx;
  for (const auto& [name, s] : run.suites) {
    if (!o.suites.empty() && std::find(o.suites.begin(), o.suites.end(), name) == o.suites.end()) continue;
    for (const auto& m : s.metrics) {
      if (!o.noise_classes.empty() && std::find(o.noise_classes.begin(), o.noise_classes.end(), m.noise) == o.noise_classes.end())
        continue;
      if (!o.metrics.empty() &&
          std::none_of(o.metrics.begin(), o.metrics.end(), [&](const std::string& pat) { return key_matches(pat, m.key); }))
        continue;
      idx.emplace(m.key, Entry{name, &m});  // first suite wins when two suites share a key
    }
  }
  return idx;
}

std::vector<double> samples_of(const Metric& m) {
  std::vector<double> s;
  for (double v : m.samples)
    if (!std::isnan(v)) s.push_back(v);
  if (s.empty() && !std::isnan(m.value)) s.push_back(m.value);
  return s;
}

bool constant(const std::vector<double>& v) {
  return std::all_of(v.begin(), v.end(), [&](double x) { return x == v.front(); });
}

std::string num(const std::optional<double>& v) {
  if (!v) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.5g", *v);
  return buf;
}

std::string pct(double v) {
  if (std::isinf(v)) return v > 0 ? "+inf%" : "-inf%";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%+.2f%%", 100.0 * v);
  return buf;
}

std::string fingerprint(const RunData& r) {
  if (r.manifest.is_object() && r.manifest.contains("hardware") && r.manifest["hardware"].is_object())
    return r.manifest["hardware"].value("fingerprint", std::string());
  return "";
}

// The verdict from the signed change and whether the test found it significant (paired or not):
// a regression or improvement only when significant and past the threshold.
void decide(MetricComparison& mc, bool significant) {
  const double c = *mc.change;
  if (significant && c < -mc.threshold) {
    mc.verdict = CompareVerdict::Regression;
    mc.failure = true;
  } else if (significant && c > mc.threshold) {
    mc.verdict = CompareVerdict::Improvement;
  } else {
    mc.verdict = CompareVerdict::Unchanged;
    if (!significant && std::fabs(c) > mc.threshold)
      mc.note = "change past the threshold but not significant (p >= alpha)" + (mc.note.empty() ? "" : "; " + mc.note);
  }
}

void judge(MetricComparison& mc, const Metric& b, const Metric& n, const CompareOptions& o) {
  const std::vector<double> sb = samples_of(b), sn = samples_of(n);
  mc.n_base = sb.size();
  mc.n_next = sn.size();
  mc.threshold = o.threshold_for(mc.key, mc.noise);
  if (std::isnan(b.value) || std::isnan(n.value)) {
    mc.verdict = CompareVerdict::Invalid;
    mc.failure = std::isnan(n.value);
    mc.note = std::isnan(n.value) ? "new value is NaN" : "base value is NaN";
    return;
  }
  // A ratio whose numerator or denominator names other benchmarks (a peer added or renamed) is
  // another measurement under the same key: not a regression, not comparable. A required metric
  // fails, so a gate never passes on a figure it could not judge.
  for (const char* part : {"numerator", "denominator"}) {
    const std::string pb = b.params.is_object() && b.params.contains(part) && b.params[part].is_string() ? b.params[part].get<std::string>() : "";
    const std::string pn = n.params.is_object() && n.params.contains(part) && n.params[part].is_string() ? n.params[part].get<std::string>() : "";
    if (!pb.empty() && !pn.empty() && pb != pn) {
      mc.verdict = CompareVerdict::Invalid;
      mc.failure = o.is_required(mc.key);
      mc.note = std::string("not comparable: the ratio's ") + part + " changed (base: " + pb + "; new: " + pn +
                ")" + (mc.failure ? "; re-make the baseline with this version" : "");
      return;
    }
  }
  const double sign = mc.direction == Direction::LowerIsBetter ? -1.0 : 1.0;
  if (b.value == 0) {
    mc.change = n.value == 0 ? 0.0 : sign * (n.value > 0 ? 1.0 : -1.0) * std::numeric_limits<double>::infinity();
  } else {
    mc.change = sign * (n.value - b.value) / std::fabs(b.value);
  }
  // Paired: the same examples (params.pair_key) on both sides, sample for sample.
  const std::string kb = b.params.is_object() ? b.params.value("pair_key", std::string()) : "";
  const std::string kn = n.params.is_object() ? n.params.value("pair_key", std::string()) : "";
  const bool paired = !kb.empty() && kb == kn && b.samples.size() == n.samples.size() && !b.samples.empty() &&
                      std::none_of(b.samples.begin(), b.samples.end(), [](double v) { return std::isnan(v); }) &&
                      std::none_of(n.samples.begin(), n.samples.end(), [](double v) { return std::isnan(v); });
  if (paired && mc.direction != Direction::Neutral) {
    const PairedDifference d = paired_bootstrap(b.samples, n.samples, o.alpha);
    mc.test = "paired-bootstrap";
    mc.p_value = d.p_value;
    mc.diff_mean = d.mean;
    mc.diff_low = d.low;
    mc.diff_high = d.high;
    const bool significant = d.low > 0 || d.high < 0;
    const bool points = mc.unit == "fraction";
    char buf[200];
    std::snprintf(buf, sizeof buf, "paired over %zu %s: mean difference %+.4g%s, %.0f%% interval [%+.4g, %+.4g]", d.n,
                  points ? "examples" : "samples", points ? 100 * d.mean : d.mean, points ? " points" : "", 100 * (1 - o.alpha),
                  points ? 100 * d.low : d.low, points ? 100 * d.high : d.high);
    mc.note = buf;
    decide(mc, significant);
    return;
  }
  if (!kb.empty() && !kn.empty() && kb != kn)
    mc.note = "params.pair_key differs (not the same examples): unpaired test";
  const bool tested = mc.n_base >= 2 && mc.n_next >= 2;
  if (tested) {
    mc.p_value = mann_whitney_u_pvalue(sb, sn, o.exact_max_n);
    mc.test = "mann-whitney";
  }
  if (mc.direction == Direction::Neutral) {
    mc.verdict = CompareVerdict::Neutral;
    mc.note = "neutral metric: reported, never a regression";
    return;
  }
  bool significant;
  const bool deterministic = mc.noise == NoiseClass::Exact && constant(sb) && constant(sn);
  if (tested) {
    significant = *mc.p_value < o.alpha || deterministic;
    if (deterministic && *mc.p_value >= o.alpha) {
      mc.note = "exact metric with constant samples: judged on the threshold";
    } else {
      // Fully separated samples give the smallest p: 2 / C(n1 + n2, n1). With 3 vs 3 that is 0.1.
      double orderings = 1;
      for (size_t i = 1; i <= mc.n_base; ++i) orderings = orderings * static_cast<double>(mc.n_next + i) / static_cast<double>(i);
      if (2.0 / orderings >= o.alpha)
        mc.note = "too few repetitions (" + std::to_string(mc.n_base) + "/" + std::to_string(mc.n_next) +
                  ") for p < alpha: the smallest possible p is " + num(2.0 / orderings);
    }
  } else if (mc.noise == NoiseClass::Exact || mc.noise == NoiseClass::Ratio) {
    significant = true;
    mc.note = "fewer than 2 samples: judged on the threshold alone";
  } else {
    mc.verdict = CompareVerdict::InsufficientSamples;
    mc.note = "timing metric with fewer than 2 samples on a side: no test, never a regression";
    return;
  }
  decide(mc, significant);
}
}  // namespace

CompareResult compare_runs(const RunData& base, const RunData& next, const CompareOptions& o) {
  CompareResult r;
  r.base_label = base.label();
  r.next_label = next.label();
  r.base_fingerprint = fingerprint(base);
  r.next_fingerprint = fingerprint(next);
  if (r.base_fingerprint.empty() || r.next_fingerprint.empty()) {
    r.warnings.push_back("a run records no hardware fingerprint: cannot tell whether both ran on the same machine class");
  } else if (r.base_fingerprint != r.next_fingerprint) {
    r.hardware_mismatch = true;
    const std::string msg = "hardware fingerprints differ (base " + r.base_fingerprint + ", new " + r.next_fingerprint +
                            "): comparing different machines is rarely meaningful";
    if (o.allow_hardware_mismatch)
      r.warnings.push_back(msg + " (allowed)");
    else
      r.failures.push_back(msg + " (pass allow_hardware_mismatch to compare anyway)");
  }
  // Same class, different cache: a VM host can change under one CPU model (a 32 MiB and a 508 MiB
  // L3 were both seen under one fingerprint), and kernel speeds on weights between the two differ.
  const auto llc = [](const RunData& d) -> int64_t {
    if (!d.manifest.is_object() || !d.manifest.contains("hardware") || !d.manifest["hardware"].is_object()) return 0;
    const auto& v = d.manifest["hardware"].value("llc_bytes", nlohmann::json());
    return v.is_number_integer() ? v.get<int64_t>() : 0;
  };
  const int64_t llc_base = llc(base), llc_next = llc(next);
  if (!r.hardware_mismatch && llc_base > 0 && llc_next > 0 && llc_base != llc_next)
    r.warnings.push_back("same machine class, different last-level cache (base " + std::to_string(llc_base >> 20) +
                         " MiB, new " + std::to_string(llc_next >> 20) +
                         " MiB): kernels whose data fits one but not the other are not compared like with like");
  // A suite that was fine in the base and broke in the new run is a failure, not a quiet "missing".
  for (const auto& [name, s] : next.suites) {
    if (!o.suites.empty() && std::find(o.suites.begin(), o.suites.end(), name) == o.suites.end()) continue;
    if (s.status != SuiteStatus::Error && s.status != SuiteStatus::Timeout) continue;
    const std::string msg = "suite '" + name + "' has status " + to_string(s.status) + " in the new run" +
                            (s.reason.empty() ? "" : ": " + s.reason);
    auto it = base.suites.find(name);
    if (it != base.suites.end() && it->second.status == SuiteStatus::Ok)
      r.failures.push_back(msg);
    else
      r.warnings.push_back(msg);
  }

  const auto bi = index_run(base, o), ni = index_run(next, o);
  std::map<std::string, std::pair<double, size_t>> logsum;  // suite -> (sum log ratio, count)
  int underpowered = 0;
  for (const auto& [key, be] : bi) {
    MetricComparison mc;
    mc.key = key;
    mc.suite = be.suite;
    mc.unit = be.metric->unit;
    mc.direction = be.metric->direction;
    mc.noise = be.metric->noise;
    mc.base = be.metric->value;
    auto it = ni.find(key);
    if (it == ni.end()) {
      mc.n_base = samples_of(*be.metric).size();
      mc.verdict = CompareVerdict::Missing;
      mc.failure = o.is_required(key);
      mc.note = mc.failure ? "required metric absent from the new run" : "absent from the new run";
      if (mc.failure) r.failures.push_back(key + ": required metric absent from the new run");
      r.metrics.push_back(std::move(mc));
      continue;
    }
    const Metric& nm = *it->second.metric;
    mc.suite = it->second.suite;
    mc.unit = nm.unit;
    mc.noise = nm.noise;
    mc.next = nm.value;
    if (nm.direction != be.metric->direction)
      r.warnings.push_back(key + ": direction changed from " + to_string(be.metric->direction) + " to " + to_string(nm.direction) +
                           " (the new run's is used)");
    mc.direction = nm.direction;
    judge(mc, *be.metric, nm, o);
    if (mc.verdict == CompareVerdict::Regression) {
      std::string msg = key + ": regression " + pct(*mc.change) + " (threshold " + pct(mc.threshold);
      if (mc.p_value) {
        char buf[32];
        std::snprintf(buf, sizeof buf, ", p=%.4g", *mc.p_value);
        msg += buf;
      }
      r.failures.push_back(msg + ")");
    } else if (mc.failure) {
      r.failures.push_back(key + ": " + mc.note);
    } else if (mc.verdict == CompareVerdict::Invalid) {
      r.warnings.push_back(key + ": " + mc.note);
    }
    if (mc.verdict != CompareVerdict::Invalid && mc.direction != Direction::Neutral && *mc.base > 0 && *mc.next > 0 &&
        std::isfinite(*mc.base) && std::isfinite(*mc.next)) {
      const double ratio = mc.direction == Direction::HigherIsBetter ? *mc.next / *mc.base : *mc.base / *mc.next;
      auto& [sum, n] = logsum[mc.suite];
      sum += std::log(ratio);
      ++n;
    }
    if (mc.note.find("too few repetitions") != std::string::npos) ++underpowered;
    r.metrics.push_back(std::move(mc));
  }
  if (underpowered) {
    char buf[200];
    std::snprintf(buf, sizeof buf, "%d metric(s) have too few repetitions for the Mann-Whitney test to reach p < %g "
                  "(at alpha 0.05, use >= 4 per side): they can never be called a regression", underpowered, o.alpha);
    r.warnings.push_back(buf);
  }
  for (const auto& [key, ne] : ni) {
    if (bi.count(key)) continue;
    MetricComparison mc;
    mc.key = key;
    mc.suite = ne.suite;
    mc.unit = ne.metric->unit;
    mc.direction = ne.metric->direction;
    mc.noise = ne.metric->noise;
    mc.next = ne.metric->value;
    mc.n_next = samples_of(*ne.metric).size();
    mc.verdict = CompareVerdict::New;
    mc.note = "absent from the base run";
    r.metrics.push_back(std::move(mc));
  }
  // Required exact keys absent from both runs never show up above; they still fail the gate.
  for (const auto& req : o.required) {
    if (req.empty() || req.back() == '*' || bi.count(req) || ni.count(req)) continue;
    if (!next.find_metric(req)) r.failures.push_back(req + ": required metric absent from the new run (and the base)");
  }
  std::stable_sort(r.metrics.begin(), r.metrics.end(), [](const MetricComparison& a, const MetricComparison& b) {
    return a.suite != b.suite ? a.suite < b.suite : a.key < b.key;
  });
  for (const auto& [suite, sn] : logsum)
    r.geomeans.push_back(SuiteGeomean{suite, std::exp(sn.first / static_cast<double>(sn.second)), sn.second});
  return r;
}

// ---------------------------------------------------------------------------------------------
// Printing and JSON

namespace {
std::string cell(const std::string& s, size_t w, bool left = false) {
  std::string t = s.size() > w ? s.substr(0, w - 1) + "~" : s;
  const std::string fill(w - t.size(), ' ');
  return (left ? t + fill : fill + t) + " ";
}
json opt(const std::optional<double>& v) {
  if (!v || !std::isfinite(*v)) return nullptr;
  return *v;
}
}  // namespace

void print_compare_table(std::ostream& os, const CompareResult& r) {
  os << "base: " << r.base_label << "\nnew:  " << r.next_label << "\n";
  constexpr size_t kMetric = 46, kVal = 12, kChange = 10, kP = 9, kN = 7;
  os << cell("metric", kMetric, true) << cell("base", kVal) << cell("new", kVal) << cell("change", kChange) << cell("p-value", kP)
     << cell("n", kN) << " verdict\n";
  os << std::string(kMetric + 2 * kVal + kChange + kP + kN + 6 + 22, '-') << "\n";
  for (const auto& m : r.metrics) {
    char p[32] = "-";
    if (m.p_value) std::snprintf(p, sizeof p, "%.4f", *m.p_value);
    const std::string n = std::to_string(m.n_base) + "/" + std::to_string(m.n_next);
    os << cell(m.key, kMetric, true) << cell(num(m.base), kVal) << cell(num(m.next), kVal)
       << cell(m.change ? pct(*m.change) : "-", kChange) << cell(p, kP) << cell(n, kN) << " " << to_string(m.verdict)
       << (m.verdict == CompareVerdict::Unchanged && m.note.find("not significant") != std::string::npos ? " (not significant)" : "")
       << (m.failure ? "  <-- FAIL" : "") << "\n";
    if (m.test == "paired-bootstrap") os << "    " << m.note << "\n";
  }
  for (const auto& g : r.geomeans)
    os << cell("[geomean] " + g.suite, kMetric, true) << cell("", kVal) << cell("", kVal) << cell(pct(g.ratio - 1.0), kChange)
       << cell("", kP) << cell(std::to_string(g.count), kN) << " " << (g.ratio >= 1 ? "better or same" : "worse")
       << " (new/base, direction-adjusted: " << num(g.ratio) << ")\n";
  for (const auto& w : r.warnings) os << "warning: " << w << "\n";
  for (const auto& f : r.failures) os << "FAIL: " << f << "\n";
  os << "change is signed so that positive = better; " << r.count(CompareVerdict::Regression) << " regression(s), "
     << r.count(CompareVerdict::Improvement) << " improvement(s), " << r.count(CompareVerdict::Unchanged) << " unchanged, "
     << r.count(CompareVerdict::Missing) << " missing, " << r.count(CompareVerdict::New) << " new\n";
  os << (r.passed() ? "GATE PASS" : "GATE FAIL") << "\n";
}

json to_json(const CompareResult& r) {
  json ms = json::array();
  for (const auto& m : r.metrics)
    ms.push_back({{"suite", m.suite}, {"key", m.key}, {"unit", m.unit}, {"direction", to_string(m.direction)},
                  {"noise", to_string(m.noise)}, {"base", opt(m.base)}, {"new", opt(m.next)}, {"n_base", m.n_base},
                  {"n_new", m.n_next}, {"change", opt(m.change)}, {"p_value", opt(m.p_value)}, {"test", m.test},
                  {"diff_mean", opt(m.diff_mean)}, {"diff_low", opt(m.diff_low)}, {"diff_high", opt(m.diff_high)},
                  {"threshold", m.threshold},
                  {"verdict", to_string(m.verdict)}, {"failure", m.failure}, {"note", m.note}});
  json gs = json::array();
  for (const auto& g : r.geomeans) gs.push_back({{"suite", g.suite}, {"ratio", g.ratio}, {"count", g.count}});
  return {{"schema", "claimbench.compare"}, {"schema_version", schema_version_string()}, {"base", r.base_label},
          {"new", r.next_label}, {"base_fingerprint", r.base_fingerprint}, {"new_fingerprint", r.next_fingerprint},
          {"hardware_mismatch", r.hardware_mismatch}, {"metrics", ms}, {"geomeans", gs}, {"warnings", r.warnings},
          {"failures", r.failures}, {"passed", r.passed()}};
}

int compare_exit_code(const CompareResult& r) { return r.passed() && r.count(CompareVerdict::Regression) == 0 ? 0 : 1; }

}  // namespace cb::harness
