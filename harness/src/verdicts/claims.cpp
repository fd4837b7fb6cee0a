#include "cb/harness/verdicts/claims.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>
#include <sstream>

namespace cb::harness {
namespace fs = std::filesystem;
using nlohmann::json;

// ---------------------------------------------------------------------------------------------
// Comparators and verdicts

const char* to_string(Verdict v) {
  switch (v) {
    case Verdict::Pass: return "PASS";
    case Verdict::Fail: return "FAIL";
    case Verdict::Inconclusive: return "INCONCLUSIVE";
    case Verdict::Invalid: return "INVALID";
    case Verdict::Skip: return "SKIP";
    case Verdict::NotMeasured: return "NOT MEASURED";
    case Verdict::Error: return "ERROR";
  }
  return "ERROR";
}

namespace {
constexpr Verdict kAllVerdicts[] = {Verdict::Pass, Verdict::Fail,        Verdict::Inconclusive, Verdict::Invalid,
                                    Verdict::Skip, Verdict::NotMeasured, Verdict::Error};
}

Verdict verdict_from_string(const std::string& s, const std::string& where) {
  for (auto v : kAllVerdicts)
    if (s == to_string(v)) return v;
  throw SchemaError(where + ": verdict '" + s + "' is not one of PASS, FAIL, INCONCLUSIVE, INVALID, SKIP, NOT MEASURED, ERROR");
}

const char* to_string(ClaimKind k) {
  switch (k) {
    case ClaimKind::Measurement: return "measurement";
    case ClaimKind::Arithmetic: return "arithmetic";
    case ClaimKind::Simulation: return "simulation";
  }
  return "measurement";
}

ClaimKind claim_kind_from_string(const std::string& s, const std::string& where) {
  for (auto k : {ClaimKind::Measurement, ClaimKind::Arithmetic, ClaimKind::Simulation})
    if (s == to_string(k)) return k;
  throw SchemaError(where + ": unknown kind '" + s + "' (expected measurement, arithmetic or simulation)");
}

const Claim* ClaimSet::find(const std::string& id) const {
  for (const auto& c : claims)
    if (c.id == id) return &c;
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// Claim-set parsing: every error names the source, the JSON path and what is wrong.

namespace {
struct Parser {
  std::string src;

  [[noreturn]] void fail(const std::string& path, const std::string& msg) const {
    throw SchemaError(src + ": " + (path.empty() ? std::string("(top level)") : path) + ": " + msg);
  }
  static std::string sub(const std::string& path, const std::string& key) { return path.empty() ? key : path + "." + key; }

  void only_keys(const json& obj, const std::string& path, const std::set<std::string>& allowed, const char* what) const {
    for (const auto& [k, v] : obj.items()) {
      if (!k.empty() && k[0] == '$') continue;  // comments
      if (!allowed.count(k)) {
        std::string list;
        for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
        fail(sub(path, k), std::string("unknown ") + what + " key '" + k + "' (expected one of " + list + ")");
      }
    }
  }
  const json& need(const json& obj, const std::string& key, const std::string& path) const {
    if (!obj.contains(key)) fail(sub(path, key), "missing required key '" + key + "'");
    return obj.at(key);
  }
  std::string str(const json& obj, const std::string& key, const std::string& path, bool required) const {
    if (!obj.contains(key)) {
      if (required) need(obj, key, path);
      return "";
    }
    const json& v = obj.at(key);
    if (!v.is_string()) fail(sub(path, key), std::string("expected a string, got ") + v.type_name() + " " + v.dump());
    return v.get<std::string>();
  }
  double num(const json& obj, const std::string& key, const std::string& path) const {
    const json& v = need(obj, key, path);
    if (!v.is_number()) fail(sub(path, key), std::string("expected a number, got ") + v.type_name() + " " + v.dump());
    const double d = v.get<double>();
    if (!std::isfinite(d)) fail(sub(path, key), "must be a finite number");
    return d;
  }
  int count(const json& v, const std::string& path) const {
    if (!v.is_number_integer() && !(v.is_number() && std::floor(v.get<double>()) == v.get<double>()))
      fail(path, std::string("expected a whole number, got ") + v.type_name() + " " + v.dump());
    const double d = v.get<double>();
    if (d < 1) fail(path, "must be at least 1, got " + v.dump());
    return static_cast<int>(d);
  }

  Requirement requirement(const json& j, const std::string& path) const {
    if (!j.is_object()) fail(path, std::string("expected an object, got ") + j.type_name());
    Requirement r;
    bool any = false;
    for (const auto& [k, v] : j.items()) {
      if (!k.empty() && k[0] == '$') continue;
      const std::string p = sub(path, k);
      any = true;
      if (k == "gpus") {
        r.gpus = count(v, p);
      } else if (k == "devices") {
        r.devices = count(v, p);
      } else if (k == "cpu_flags") {
        if (!v.is_array() || v.empty()) fail(p, "expected a non-empty array of CPU flag names");
        for (size_t i = 0; i < v.size(); ++i) {
          if (!v[i].is_string()) fail(p + "[" + std::to_string(i) + "]", "expected a string");
          r.cpu_flags.push_back(v[i].get<std::string>());
        }
      } else if (k == "any_of") {
        if (!v.is_array() || v.empty()) fail(p, "expected a non-empty array of requirements");
        for (size_t i = 0; i < v.size(); ++i) r.any_of.push_back(requirement(v[i], p + "[" + std::to_string(i) + "]"));
      } else {
        fail(p, "unknown requires key '" + k + "' (expected gpus, devices, cpu_flags or any_of)");
      }
    }
    if (!any) fail(path, "empty requirement (expected gpus, devices, cpu_flags or any_of)");
    return r;
  }

  Condition condition(const json& j, const std::string& path) const {
    Condition c;
    c.metric = str(j, "metric", path, true);
    if (c.metric.empty()) fail(sub(path, "metric"), "must not be empty");
    c.comparator = comparator_from_string(str(j, "comparator", path, true), src + ": " + sub(path, "comparator"));
    c.threshold = num(j, "threshold", path);
    if (j.contains("tolerance")) {
      if (c.comparator != Comparator::EQ)
        fail(sub(path, "tolerance"), std::string("tolerance only applies to '==', not '") + to_string(c.comparator) + "'");
      c.tolerance = num(j, "tolerance", path);
      if (c.tolerance < 0) fail(sub(path, "tolerance"), "must be >= 0");
    }
    return c;
  }

  Claim claim(const json& j, const std::string& path) const {
    if (!j.is_object()) fail(path, std::string("expected an object, got ") + j.type_name());
    only_keys(j, path, {"id", "claim", "figure", "metric", "conditions", "comparator", "threshold", "tolerance", "unit", "suite",
                        "requires", "scope", "kind"}, "claim");
    Claim c;
    c.id = str(j, "id", path, true);
    if (c.id.empty()) fail(sub(path, "id"), "must not be empty");
    c.claim = str(j, "claim", path, true);
    c.figure = str(j, "figure", path, true);
    c.suite = str(j, "suite", path, true);
    c.unit = str(j, "unit", path, false);
    c.scope = str(j, "scope", path, false);
    if (j.contains("kind")) c.kind = claim_kind_from_string(str(j, "kind", path, true), src + ": " + sub(path, "kind"));
    const bool single = j.contains("metric") || j.contains("comparator") || j.contains("threshold") || j.contains("tolerance");
    if (j.contains("conditions")) {
      if (single) fail(path, "has both 'conditions' and metric/comparator/threshold/tolerance: use one form");
      const json& cs = j.at("conditions");
      const std::string cp = sub(path, "conditions");
      if (!cs.is_array() || cs.empty()) fail(cp, "expected a non-empty array of conditions");
      for (size_t i = 0; i < cs.size(); ++i) {
        const std::string p = cp + "[" + std::to_string(i) + "]";
        if (!cs[i].is_object()) fail(p, std::string("expected an object, got ") + cs[i].type_name());
        only_keys(cs[i], p, {"metric", "comparator", "threshold", "tolerance", "unit", "suite"}, "condition");
        Condition cond = condition(cs[i], p);
        cond.unit = cs[i].contains("unit") ? str(cs[i], "unit", p, false) : c.unit;
        cond.suite = cs[i].contains("suite") ? str(cs[i], "suite", p, false) : c.suite;
        c.conditions.push_back(std::move(cond));
      }
    } else {
      if (!j.contains("metric")) fail(sub(path, "metric"), "missing required key 'metric' (or a 'conditions' array)");
      Condition cond = condition(j, path);
      cond.unit = c.unit;
      cond.suite = c.suite;
      c.conditions.push_back(std::move(cond));
    }
    if (j.contains("requires")) c.requirement = requirement(j.at("requires"), sub(path, "requires"));
    return c;
  }
};
}  // namespace

ClaimSet claim_set_from_json(const json& j, const std::string& source) {
  check_schema(j, "claimbench.claimset", source);
  const Parser p{source};
  p.only_keys(j, "", {"schema", "schema_version", "name", "source", "claims"}, "claim-set");
  ClaimSet set;
  set.name = p.str(j, "name", "", true);
  set.source = p.str(j, "source", "", true);
  const json& cs = p.need(j, "claims", "");
  if (!cs.is_array()) p.fail("claims", std::string("expected an array, got ") + cs.type_name());
  std::map<std::string, size_t> seen;
  for (size_t i = 0; i < cs.size(); ++i) {
    const std::string path = "claims[" + std::to_string(i) + "]";
    Claim c = p.claim(cs[i], path);
    if (auto it = seen.find(c.id); it != seen.end())
      p.fail(path + ".id", "duplicate id '" + c.id + "' (first used at claims[" + std::to_string(it->second) + "])");
    seen[c.id] = i;
    set.claims.push_back(std::move(c));
  }
  return set;
}

ClaimSet load_claim_set(const fs::path& path) {
  ClaimSet set = claim_set_from_json(read_json_file(path), path.string());
  set.file = path;
  return set;
}

// ---------------------------------------------------------------------------------------------
// Hardware requirements

namespace {
std::string plural(int n, const std::string& one, const std::string& many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}
std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}
}  // namespace

std::string Requirement::describe() const {
  std::vector<std::string> parts;
  if (gpus) parts.push_back(plural(*gpus, "GPU", "GPUs"));
  if (devices) parts.push_back(">= " + plural(*devices, "device", "devices"));
  if (!cpu_flags.empty()) parts.push_back(join(cpu_flags, ", ") + (cpu_flags.size() == 1 ? " CPU flag" : " CPU flags"));
  if (!any_of.empty()) {
    std::vector<std::string> alts;
    for (const auto& a : any_of) alts.push_back(a.describe());
    parts.push_back(any_of.size() == 1 ? alts[0] : (parts.empty() ? "" : "(") + join(alts, " or ") + (parts.empty() ? "" : ")"));
  }
  return join(parts, " and ");
}

RunHardware run_hardware(const json& manifest, const json& suite_params) {
  RunHardware hw;
  if (manifest.is_object() && manifest.contains("hardware") && manifest["hardware"].is_object()) {
    hw.recorded = true;
    const json& h = manifest["hardware"];
    if (h.contains("gpus") && h["gpus"].is_array()) hw.gpus = static_cast<int>(h["gpus"].size());
    if (h.contains("cpu_flags") && h["cpu_flags"].is_array())
      for (const auto& f : h["cpu_flags"])
        if (f.is_string()) hw.cpu_flags.push_back(f.get<std::string>());
  }
  // The ranks a suite actually measured on (e.g. the scaling suite's MPI processes) come first:
  // they are what its metrics describe; then what the run's command line recorded.
  auto from_params = [&](const json& p, const std::string& where) {
    if (!p.is_object()) return false;
    for (const char* k : {"devices", "ranks", "world_size"})
      if (p.contains(k) && p[k].is_number() && p[k].get<double>() >= 1) {
        hw.devices = static_cast<int>(p[k].get<double>());
        hw.devices_from = where + k;
        return true;
      }
    return false;
  };
  if (from_params(suite_params, "suite params.")) return hw;
  if (manifest.is_object() && manifest.contains("params") && from_params(manifest["params"], "manifest params.")) return hw;
  if (hw.gpus > 0) {
    hw.devices = hw.gpus;
    hw.devices_from = "GPU count";
  } else {
    hw.devices = 1;
    hw.devices_from = "no devices/ranks in manifest params and no GPUs";
  }
  return hw;
}

namespace {
bool satisfied(const Requirement& r, const RunHardware& hw) {
  if (r.gpus && hw.gpus < *r.gpus) return false;
  if (r.devices && hw.devices < *r.devices) return false;
  for (const auto& f : r.cpu_flags)
    if (std::find(hw.cpu_flags.begin(), hw.cpu_flags.end(), f) == hw.cpu_flags.end()) return false;
  if (!r.any_of.empty() && std::none_of(r.any_of.begin(), r.any_of.end(), [&](const Requirement& a) { return satisfied(a, hw); }))
    return false;
  return true;
}
void uses(const Requirement& r, bool& g, bool& d, bool& f) {
  g = g || r.gpus.has_value();
  d = d || r.devices.has_value();
  f = f || !r.cpu_flags.empty();
  for (const auto& a : r.any_of) uses(a, g, d, f);
}
}  // namespace

std::optional<std::string> unmet(const Requirement& r, const RunHardware& hw) {
  if (satisfied(r, hw)) return std::nullopt;
  bool g = false, d = false, f = false;
  uses(r, g, d, f);
  std::vector<std::string> have;
  if (g) have.push_back(plural(hw.gpus, "GPU", "GPUs"));
  if (d) have.push_back(plural(hw.devices, "device", "devices") + " (" + hw.devices_from + ")");
  if (f) have.push_back("CPU flags [" + join(hw.cpu_flags, " ") + "]");
  std::string s = "needs " + r.describe() + "; this run has " + join(have, ", ");
  if (!hw.recorded) s += " (the manifest records no hardware)";
  return s;
}

// ---------------------------------------------------------------------------------------------
// Evaluation

namespace {
std::string fmt(double v, int digits = 6) {
  if (std::isnan(v)) return "NaN";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  return buf;
}
std::string cond_text(const Condition& c) {
  std::string s = std::string(to_string(c.comparator)) + " " + fmt(c.threshold);
  if (c.comparator == Comparator::EQ && c.tolerance > 0) s += " +/-" + fmt(c.tolerance);
  return s;
}

// Why a metric's run is INVALID by its suite's rules (params.valid == false), or nullopt.
std::optional<std::string> invalid_reason(const Metric& m) {
  const json& p = m.params;
  if (!p.is_object() || !p.contains("valid") || !p["valid"].is_boolean() || p["valid"].get<bool>()) return std::nullopt;
  if (p.contains("validity")) {
    const json& v = p["validity"];
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object() && v.contains("line") && v["line"].is_string()) return v["line"].get<std::string>();
    return v.dump();
  }
  return m.note.empty() ? std::string("the suite marked it valid=false") : m.note;
}

ConditionResult evaluate_condition(const Condition& c, const RunData& run) {
  ConditionResult r;
  r.condition = c;
  for (const auto& [name, suite] : run.suites) {
    const Metric* m = suite.find(c.metric);
    if (!m) continue;
    r.measured = m->value;
    if (suite.status == SuiteStatus::Error || suite.status == SuiteStatus::Timeout) {
      r.verdict = Verdict::Error;
      r.reason = "suite '" + name + "' has status " + to_string(suite.status) + (suite.reason.empty() ? "" : ": " + suite.reason);
      return r;
    }
    if (std::isnan(m->value)) {
      r.verdict = Verdict::Error;
      r.reason = "metric " + c.metric + " is NaN (suite '" + name + "' produced no valid number)";
      return r;
    }
    std::string why;
    r.interval = trial_interval(*m, why);
    if (auto invalid = invalid_reason(*m)) {
      // The run behind it broke its suite's own rules: no verdict either way.
      r.verdict = Verdict::Invalid;
      r.reason = "metric " + c.metric + " comes from an INVALID run: " + *invalid;
      return r;
    }
    if (!r.interval) {
      r.verdict = Verdict::Inconclusive;
      r.reason = why;
      return r;
    }
    switch (judge_interval(*r.interval, c.comparator, c.threshold, c.tolerance)) {
      case IntervalSide::Holds: r.verdict = Verdict::Pass; break;
      case IntervalSide::Fails: r.verdict = Verdict::Fail; break;
      case IntervalSide::Straddles:
        r.verdict = Verdict::Inconclusive;
        r.reason = "95% interval [" + fmt(r.interval->low, 4) + ", " + fmt(r.interval->high, 4) + "] of " +
                   std::to_string(r.interval->n) + " trials straddles the threshold " + cond_text(c);
        break;
    }
    return r;
  }
  // Absent: say why, from the suite's own file or, failing that, the manifest's record of it.
  const std::string sname = c.suite.empty() ? std::string("?") : c.suite;
  std::optional<SuiteStatus> status;
  std::string reason;
  bool from_file = false;
  if (auto it = run.suites.find(c.suite); it != run.suites.end()) {
    status = it->second.status;
    reason = it->second.reason;
    from_file = true;
  } else if (run.manifest.is_object() && run.manifest.contains("suites") && run.manifest["suites"].is_object() &&
             run.manifest["suites"].contains(c.suite)) {
    const json& e = run.manifest["suites"][c.suite];
    const std::string st = e.is_object() ? e.value("status", std::string("ok")) : std::string("ok");
    try {
      status = suite_status_from_string(st, "manifest suites." + c.suite);
    } catch (const SchemaError&) {
      status = SuiteStatus::Error;
      reason = "manifest status '" + st + "' is not recognised";
    }
    if (e.is_object() && reason.empty()) reason = e.value("reason", std::string());
  }
  auto set = [&](Verdict v, const std::string& text) {
    r.verdict = v;
    r.reason = "suite '" + sname + "' " + text;
  };
  const std::string why = reason.empty() ? "" : ": " + reason;
  if (!status) set(Verdict::NotMeasured, "did not run (metric " + c.metric + " absent)");
  else if (*status == SuiteStatus::Error || *status == SuiteStatus::Timeout) set(Verdict::Error, std::string("has status ") + to_string(*status) + why);
  else if (*status == SuiteStatus::NotBuilt) set(Verdict::NotMeasured, "is not built" + why);
  else if (*status == SuiteStatus::Skipped) set(Verdict::NotMeasured, "was skipped" + why);
  else if (from_file) {
    // A suite may say a metric does not apply to this run (params.skip.<key>: SKIP, like absent
    // hardware) or why it could not produce it (params.not_measured.<key>).
    if (auto it = run.suites.find(sname); it != run.suites.end()) {
      const json& p = it->second.params;
      if (p.is_object() && p.contains("skip") && p["skip"].is_object() && p["skip"].contains(c.metric) && p["skip"][c.metric].is_string()) {
        r.verdict = Verdict::Skip;
        r.reason = p["skip"][c.metric].get<std::string>();
        return r;
      }
    }
    std::string detail;
    if (auto it = run.suites.find(sname); it != run.suites.end()) {
      const json& p = it->second.params;
      if (p.is_object() && p.contains("not_measured") && p["not_measured"].is_object() && p["not_measured"].contains(c.metric) &&
          p["not_measured"][c.metric].is_string())
        detail = ": " + p["not_measured"][c.metric].get<std::string>();
    }
    set(Verdict::NotMeasured, "ran without producing metric " + c.metric + detail);
  }
  else set(Verdict::Error, "is listed as ok in the manifest but its results file is not in the run folder");
  return r;
}
}  // namespace

std::vector<ClaimResult> evaluate(const ClaimSet& set, const RunData& run) {
  std::vector<ClaimResult> out;
  for (const Claim& c : set.claims) {
    const auto suite = run.suites.find(c.suite);
    const RunHardware hw = run_hardware(run.manifest, suite != run.suites.end() ? suite->second.params : json());
    ClaimResult r;
    r.id = c.id;
    r.description = c.claim;
    r.figure = c.figure;
    r.unit = c.unit;
    r.scope = c.scope;
    r.kind = c.kind;
    const Condition& first = c.conditions.front();
    r.metric = first.metric;
    r.comparator = first.comparator;
    r.threshold = first.threshold;
    r.tolerance = first.tolerance;
    for (const auto& cond : c.conditions) r.parts.push_back(evaluate_condition(cond, run));
    r.measured = r.parts.front().measured;
    r.interval = r.parts.front().interval;
    if (c.requirement) {
      if (auto why = unmet(*c.requirement, hw)) {
        // The hardware is absent: SKIP even if some value was recorded, never PASS.
        r.verdict = Verdict::Skip;
        r.reason = *why;
        out.push_back(std::move(r));
        continue;
      }
    }
    auto any = [&](Verdict v) { return std::any_of(r.parts.begin(), r.parts.end(), [&](const ConditionResult& p) { return p.verdict == v; }); };
    // A broken measurement dominates; then a failed part (the conjunction is false whatever the
    // rest); then a part without a trustworthy value (invalid run, absent, within the noise).
    r.verdict = any(Verdict::Error)          ? Verdict::Error
              : any(Verdict::Fail)           ? Verdict::Fail
              : any(Verdict::Invalid)        ? Verdict::Invalid
              : any(Verdict::Skip)           ? Verdict::Skip
              : any(Verdict::NotMeasured)    ? Verdict::NotMeasured
              : any(Verdict::Inconclusive)   ? Verdict::Inconclusive
                                             : Verdict::Pass;
    if (r.parts.size() == 1) {
      r.reason = r.parts.front().reason;
    } else {
      std::vector<std::string> lines;
      for (const auto& p : r.parts) {
        std::string s = p.condition.metric + " " + (p.measured ? fmt(*p.measured) : std::string("absent")) + " " +
                        cond_text(p.condition) + ": " + to_string(p.verdict);
        if (!p.reason.empty()) s += " (" + p.reason + ")";
        lines.push_back(s);
      }
      r.reason = join(lines, "; ");
    }
    out.push_back(std::move(r));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Printing, JSON, exit code

std::map<std::string, int> count_verdicts(const std::vector<ClaimResult>& results, bool measurements) {
  std::map<std::string, int> n;
  for (auto v : kAllVerdicts) n[to_string(v)] = 0;
  for (const auto& r : results)
    if ((r.kind == ClaimKind::Measurement) == measurements) ++n[to_string(r.verdict)];
  return n;
}

std::string summary_line(const std::vector<ClaimResult>& results) {
  auto line = [&](bool measurements, bool all) {
    auto n = count_verdicts(results, measurements);
    std::string s;
    for (auto v : kAllVerdicts)
      if (all || n[to_string(v)] > 0) s += (s.empty() ? "" : ", ") + std::to_string(n[to_string(v)]) + " " + to_string(v);
    return s;
  };
  std::string s = "measured: " + line(true, true);
  const bool others = std::any_of(results.begin(), results.end(), [](const ClaimResult& r) { return r.kind != ClaimKind::Measurement; });
  if (others) s += "; not measurements (arithmetic, simulation): " + line(false, false);
  return s;
}

namespace {
// Cuts at the last space before `width` and marks the cut, so words are not split.
std::string truncate(const std::string& s, size_t width) {
  if (s.size() <= width) return s;
  if (width <= 3) return s.substr(0, width);
  size_t cut = s.rfind(' ', width - 3);
  if (cut == std::string::npos || cut < width / 2) cut = width - 3;
  return s.substr(0, cut) + "...";
}
std::string pad(const std::string& s, size_t width) {
  std::string t = truncate(s, width);
  return t + std::string(width - t.size() + 1, ' ');
}
}  // namespace

namespace {
std::string interval_text(const std::optional<Interval>& iv) {
  if (!iv) return "-";
  if (iv->method == "exact") return "exact";
  return "[" + fmt(iv->low, 4) + ", " + fmt(iv->high, 4) + "] n=" + std::to_string(iv->n);
}
}  // namespace

void print_claims_table(std::ostream& os, const std::vector<ClaimResult>& results) {
  constexpr size_t kId = 15, kMeasured = 22, kInterval = 24, kThreshold = 20, kVerdict = 13, kScope = 50;
  os << pad("id", kId) << pad("measured", kMeasured) << pad("95% interval", kInterval) << pad("threshold", kThreshold)
     << pad("verdict", kVerdict) << "scope\n";
  const std::string rule(kId + kMeasured + kInterval + kThreshold + kVerdict + 5 + kScope, '-');
  os << rule << "\n";
  auto row = [&](const ClaimResult& r) {
    std::vector<std::string> measured, threshold, interval;
    for (const auto& p : r.parts) {
      measured.push_back(!p.measured ? std::string("-") : r.parts.size() > 1 ? fmt(*p.measured, 4) : fmt(*p.measured));
      threshold.push_back(cond_text(p.condition));
      interval.push_back(interval_text(p.interval));
    }
    if (r.parts.empty()) {  // results read back from claims.json
      measured.push_back(r.measured ? fmt(*r.measured) : std::string("-"));
      threshold.push_back(cond_text(Condition{r.metric, r.comparator, r.threshold, r.tolerance, r.unit, ""}));
      interval.push_back(interval_text(r.interval));
    }
    std::string m = join(measured, " / ");
    if (m != "-" && !r.unit.empty()) m += " " + r.unit;
    std::string iv = join(interval, " / ");
    if (iv == "exact / exact" || iv == "exact / exact / exact") iv = "exact";
    os << pad(r.id, kId) << pad(m, kMeasured) << pad(iv, kInterval) << pad(join(threshold, " & "), kThreshold)
       << pad(to_string(r.verdict), kVerdict) << truncate(r.scope, kScope) << "\n";
    const bool plain = (r.verdict == Verdict::Pass || r.verdict == Verdict::Fail) && r.parts.size() <= 1;
    if (!plain && !r.reason.empty()) os << std::string(kId + 1, ' ') << "reason: " << r.reason << "\n";
  };
  for (const auto& r : results)
    if (r.kind == ClaimKind::Measurement) row(r);
  bool header = false;
  for (const auto& r : results) {
    if (r.kind == ClaimKind::Measurement) continue;
    if (!header) {
      os << "-- not measurements (not counted among the measured verdicts): arithmetic on published figures, simulations on "
            "assumed inputs --\n";
      header = true;
    }
    row(r);
  }
  os << summary_line(results) << "\n";
}

namespace {
json number_or_null(const std::optional<double>& v) {
  if (!v || !std::isfinite(*v)) return nullptr;
  return *v;
}
json interval_json(const std::optional<Interval>& iv) {
  if (!iv) return nullptr;
  return {{"low", number_or_null(iv->low)}, {"high", number_or_null(iv->high)}, {"level", iv->level}, {"n", iv->n},
          {"mean", number_or_null(iv->mean)}, {"method", iv->method}};
}
std::optional<Interval> interval_from_json(const json& j, const std::string& where) {
  if (!j.is_object()) {
    if (j.is_null()) return std::nullopt;
    throw SchemaError(where + ": expected an object or null");
  }
  Interval iv;
  auto num = [&](const char* k) {
    if (!j.contains(k) || !j.at(k).is_number()) throw SchemaError(where + "." + k + ": missing or not a number");
    return j.at(k).get<double>();
  };
  iv.low = num("low");
  iv.high = num("high");
  iv.level = j.value("level", 0.95);
  iv.n = j.value("n", size_t(0));
  iv.mean = j.contains("mean") && j.at("mean").is_number() ? j.at("mean").get<double>() : 0.5 * (iv.low + iv.high);
  iv.method = j.value("method", std::string());
  return iv;
}
}  // namespace

json claims_to_json(const std::vector<ClaimResult>& results, const std::string& claim_set_file, const std::string& run_dir) {
  json arr = json::array();
  for (const auto& r : results) {
    json e = {{"id", r.id}, {"description", r.description}, {"figure", r.figure}, {"metric", r.metric}, {"unit", r.unit},
              {"measured", number_or_null(r.measured)}, {"comparator", to_string(r.comparator)}, {"threshold", r.threshold},
              {"verdict", to_string(r.verdict)}, {"reason", r.reason}, {"scope", r.scope}, {"kind", to_string(r.kind)},
              {"interval", interval_json(r.interval)}};
    if (r.comparator == Comparator::EQ) e["tolerance"] = r.tolerance;
    if (r.parts.size() > 1) {
      json parts = json::array();
      for (const auto& p : r.parts) {
        json pj = {{"metric", p.condition.metric}, {"unit", p.condition.unit}, {"measured", number_or_null(p.measured)},
                   {"comparator", to_string(p.condition.comparator)}, {"threshold", p.condition.threshold},
                   {"verdict", to_string(p.verdict)}, {"reason", p.reason}, {"interval", interval_json(p.interval)}};
        if (p.condition.comparator == Comparator::EQ) pj["tolerance"] = p.condition.tolerance;
        parts.push_back(pj);
      }
      e["conditions"] = parts;
    }
    arr.push_back(e);
  }
  return {{"schema", "claimbench.claims"}, {"schema_version", schema_version_string()}, {"claim_set", claim_set_file},
          {"run_dir", run_dir}, {"results", arr}, {"counts", count_verdicts(results, true)},
          {"counts_not_measurements", count_verdicts(results, false)}};
}

namespace {
std::optional<double> opt_number(const json& j, const char* key, const std::string& where) {
  if (!j.contains(key) || j.at(key).is_null()) return std::nullopt;
  if (!j.at(key).is_number()) throw SchemaError(where + "." + key + ": expected a number or null");
  return j.at(key).get<double>();
}
std::string req_string(const json& j, const char* key, const std::string& where) {
  if (!j.contains(key) || !j.at(key).is_string()) throw SchemaError(where + "." + key + ": missing or not a string");
  return j.at(key).get<std::string>();
}
}  // namespace

ClaimsReport claims_report_from_json(const json& j, const std::string& source) {
  check_schema(j, "claimbench.claims", source);
  ClaimsReport rep;
  rep.claim_set = j.value("claim_set", "");
  rep.run_dir = j.value("run_dir", "");
  if (!j.contains("results") || !j.at("results").is_array()) throw SchemaError(source + ": results: missing or not an array");
  size_t i = 0;
  for (const auto& e : j.at("results")) {
    const std::string w = source + ": results[" + std::to_string(i++) + "]";
    if (!e.is_object()) throw SchemaError(w + ": expected an object");
    ClaimResult r;
    r.id = req_string(e, "id", w);
    r.description = e.value("description", "");
    r.figure = e.value("figure", "");
    r.metric = req_string(e, "metric", w);
    r.unit = e.value("unit", "");
    r.measured = opt_number(e, "measured", w);
    r.comparator = comparator_from_string(req_string(e, "comparator", w), w + ".comparator");
    r.threshold = opt_number(e, "threshold", w).value_or(0.0);
    r.tolerance = opt_number(e, "tolerance", w).value_or(0.0);
    r.verdict = verdict_from_string(req_string(e, "verdict", w), w + ".verdict");
    r.reason = e.value("reason", "");
    r.scope = e.value("scope", "");
    if (e.contains("kind")) r.kind = claim_kind_from_string(req_string(e, "kind", w), w + ".kind");
    if (e.contains("interval")) r.interval = interval_from_json(e.at("interval"), w + ".interval");
    if (e.contains("conditions") && e.at("conditions").is_array()) {
      size_t k = 0;
      for (const auto& pj : e.at("conditions")) {
        const std::string pw = w + ".conditions[" + std::to_string(k++) + "]";
        ConditionResult p;
        p.condition.metric = req_string(pj, "metric", pw);
        p.condition.unit = pj.value("unit", "");
        p.condition.comparator = comparator_from_string(req_string(pj, "comparator", pw), pw + ".comparator");
        p.condition.threshold = opt_number(pj, "threshold", pw).value_or(0.0);
        p.condition.tolerance = opt_number(pj, "tolerance", pw).value_or(0.0);
        p.measured = opt_number(pj, "measured", pw);
        p.verdict = verdict_from_string(req_string(pj, "verdict", pw), pw + ".verdict");
        p.reason = pj.value("reason", "");
        if (pj.contains("interval")) p.interval = interval_from_json(pj.at("interval"), pw + ".interval");
        r.parts.push_back(std::move(p));
      }
    }
    rep.results.push_back(std::move(r));
  }
  rep.counts = count_verdicts(rep.results, true);
  rep.counts_not_measurements = count_verdicts(rep.results, false);
  return rep;
}

ClaimsReport load_claims_json(const fs::path& path) { return claims_report_from_json(read_json_file(path), path.string()); }

int check_exit_code(const std::vector<ClaimResult>& results, bool allow_fail) {
  bool fail = false, error = false;
  for (const auto& r : results) {
    fail = fail || r.verdict == Verdict::Fail || r.verdict == Verdict::Invalid;
    error = error || r.verdict == Verdict::Error;
  }
  if (error) return 2;
  if (fail && !allow_fail) return 1;
  return 0;
}

}  // namespace cb::harness
