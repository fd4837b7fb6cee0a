#include "cb/harness/verdicts/cost_model.h"

#include <cmath>
#include <cstdio>
#include <algorithm>
#include <limits>

namespace cb::harness {
using nlohmann::json;

// ---------------------------------------------------------------------------------------------
// DeepSeek's published figures

DeepSeekMargin deepseek_margin(const DeepSeekInputs& in) {
  DeepSeekMargin m;
  m.daily_cost = in.nodes * in.gpus_per_node * in.gpu_hour_usd * in.hours;
  m.revenue_hit = in.cache_hit_tokens * in.price_hit_per_m / 1e6;
  m.revenue_miss = (in.input_tokens - in.cache_hit_tokens) * in.price_miss_per_m / 1e6;
  m.revenue_output = in.output_tokens * in.price_output_per_m / 1e6;
  m.revenue_tokens = m.revenue_hit + m.revenue_miss + m.revenue_output;
  m.revenue_published = in.published_revenue;
  m.margin_published = (m.revenue_published - m.daily_cost) / m.daily_cost;
  m.margin_tokens = (m.revenue_tokens - m.daily_cost) / m.daily_cost;
  return m;
}

// ---------------------------------------------------------------------------------------------
// Defaults and their JSON form

CostDefaults::CostDefaults() {
  // Illustrative diurnal curve (not measured anywhere): quiet nights, a busy working day.
  load_curve = {0.30, 0.25, 0.22, 0.20, 0.20, 0.25, 0.35, 0.50, 0.65, 0.78, 0.85, 0.88,
                0.86, 0.84, 0.86, 0.88, 0.85, 0.80, 0.75, 0.70, 0.62, 0.55, 0.45, 0.38};
}

namespace {
struct NumField {
  const char* section;
  const char* key;
  double* value;
  double lo, hi;  // accepted range
};
struct StrField {
  const char* section;
  const char* key;
  std::string* value;
};
constexpr double kInf = std::numeric_limits<double>::infinity();

std::vector<NumField> num_fields(CostDefaults& d) {
  DeepSeekInputs& s = d.deepseek;
  return {
      {"hardware", "device_hour_usd", &d.device_hour_usd, 0, kInf},
      {"hardware", "devices", &d.devices, 1e-9, kInf},
      {"hardware", "power_watts", &d.power_watts, 0, kInf},
      {"hardware", "idle_power_fraction", &d.idle_power_fraction, 0, 1},
      {"hardware", "electricity_usd_per_kwh", &d.electricity_usd_per_kwh, 0, kInf},
      {"hardware", "pue", &d.pue, 1, kInf},
      {"prices", "input_hit_per_m", &d.price_input_hit_per_m, 0, kInf},
      {"prices", "input_miss_per_m", &d.price_input_miss_per_m, 0, kInf},
      {"prices", "output_per_m", &d.price_output_per_m, 0, kInf},
      {"prices", "cache_hit_fraction", &d.cache_hit_fraction, 0, 1},
      {"prices", "served_fraction", &d.served_fraction, 1e-9, 1},
      {"dyn_price", "low_util", &d.low_util, 0, 1},
      {"dyn_price", "high_util", &d.high_util, 0, 1},
      {"dyn_price", "low_price_change", &d.low_price_change, -0.999999, kInf},
      {"dyn_price", "high_price_change", &d.high_price_change, -0.999999, kInf},
      {"dyn_price", "demand_elasticity", &d.demand_elasticity, -kInf, kInf},
      {"power_day", "watts", &d.power_day_watts, 0, kInf},
      {"power_day", "hours", &d.power_day_hours, 0, kInf},
      {"power_day", "price_per_kwh", &d.power_day_price_per_kwh, 0, kInf},
      {"deepseek", "nodes", &s.nodes, 0, kInf},
      {"deepseek", "gpus_per_node", &s.gpus_per_node, 0, kInf},
      {"deepseek", "gpu_hour_usd", &s.gpu_hour_usd, 0, kInf},
      {"deepseek", "hours", &s.hours, 0, kInf},
      {"deepseek", "input_tokens", &s.input_tokens, 0, kInf},
      {"deepseek", "cache_hit_tokens", &s.cache_hit_tokens, 0, kInf},
      {"deepseek", "output_tokens", &s.output_tokens, 0, kInf},
      {"deepseek", "price_hit_per_m", &s.price_hit_per_m, 0, kInf},
      {"deepseek", "price_miss_per_m", &s.price_miss_per_m, 0, kInf},
      {"deepseek", "price_output_per_m", &s.price_output_per_m, 0, kInf},
      {"deepseek", "published_revenue", &s.published_revenue, 0, kInf},
  };
}

std::vector<StrField> str_fields(CostDefaults& d) {
  MeasuredKeys& k = d.keys;
  return {{"prices", "model", &d.price_model},
          {"measured_keys", "requests_per_s", &k.requests_per_s},
          {"measured_keys", "input_tokens_per_s", &k.input_tokens_per_s},
          {"measured_keys", "output_tokens_per_s", &k.output_tokens_per_s},
          {"measured_keys", "baseline_requests_per_s", &k.baseline_requests_per_s},
          {"measured_keys", "throughput_ratio", &k.throughput_ratio},
          {"measured_keys", "busy_fraction", &k.busy_fraction},
          {"measured_keys", "power_watts", &k.power_watts},
          {"measured_keys", "baseline_power_watts", &k.baseline_power_watts}};
}
}  // namespace

CostDefaults cost_defaults_from_json(const json& j, const std::string& source) {
  check_schema(j, "claimbench.cost_defaults", source);
  CostDefaults d;
  d.source = source;
  auto fail = [&](const std::string& path, const std::string& msg) { throw SchemaError(source + ": " + path + ": " + msg); };
  auto nf = num_fields(d);
  auto sf = str_fields(d);
  for (const auto& [section, body] : j.items()) {
    if (section.empty() || section[0] == '$' || section == "schema" || section == "schema_version") continue;
    if (!body.is_object()) fail(section, std::string("expected an object, got ") + body.type_name());
    bool known_section = section == "dyn_price";
    for (const auto& f : nf) known_section = known_section || section == f.section;
    for (const auto& f : sf) known_section = known_section || section == f.section;
    if (!known_section)
      fail(section, "unknown section '" + section + "' (expected hardware, prices, dyn_price, power_day, measured_keys, deepseek)");
    for (const auto& [key, v] : body.items()) {
      if (key.empty() || key[0] == '$') continue;
      const std::string path = section + "." + key;
      bool done = false;
      if (section == "dyn_price" && key == "load_curve") {
        if (!v.is_array() || v.size() != 24) fail(path, "expected an array of 24 hourly utilization values");
        d.load_curve.clear();
        for (size_t i = 0; i < v.size(); ++i) {
          if (!v[i].is_number() || v[i].get<double>() < 0 || v[i].get<double>() > 1)
            fail(path + "[" + std::to_string(i) + "]", "expected a number in [0, 1], got " + v[i].dump());
          d.load_curve.push_back(v[i].get<double>());
        }
        done = true;
      }
      for (const auto& f : nf) {
        if (done || section != f.section || key != f.key) continue;
        if (!v.is_number()) fail(path, std::string("expected a number, got ") + v.type_name() + " " + v.dump());
        const double x = v.get<double>();
        if (!(x >= f.lo && x <= f.hi)) fail(path, "value " + v.dump() + " is out of range");
        *f.value = x;
        done = true;
      }
      for (const auto& f : sf) {
        if (done || section != f.section || key != f.key) continue;
        if (!v.is_string() || v.get<std::string>().empty()) fail(path, "expected a non-empty metric key string");
        *f.value = v.get<std::string>();
        done = true;
      }
      if (!done) fail(path, "unknown key '" + key + "' in section '" + section + "'");
    }
  }
  if (d.low_util > d.high_util) fail("dyn_price", "low_util must not exceed high_util");
  if (d.deepseek.cache_hit_tokens > d.deepseek.input_tokens) fail("deepseek.cache_hit_tokens", "exceeds input_tokens");
  return d;
}

CostDefaults load_cost_defaults(const std::filesystem::path& path) {
  return cost_defaults_from_json(read_json_file(path), path.string());
}

json cost_defaults_to_json(const CostDefaults& in) {
  CostDefaults d = in;  // the field tables take non-const pointers
  json j = {{"schema", "claimbench.cost_defaults"}, {"schema_version", schema_version_string()}};
  for (const auto& f : num_fields(d)) j[f.section][f.key] = *f.value;
  for (const auto& f : str_fields(d)) j[f.section][f.key] = *f.value;
  j["dyn_price"]["load_curve"] = d.load_curve;
  j["source"] = d.source;
  return j;
}

// ---------------------------------------------------------------------------------------------
// Economics of a measured run

Economics economics(const CostDefaults& d, const MeasuredThroughput& t) {
  Economics e;
  e.power_measured = t.power_watts.has_value();
  e.power_supplied = !e.power_measured && t.supplied_power_watts.has_value();
  e.power_watts = t.power_watts.value_or(t.supplied_power_watts.value_or(d.power_watts * d.devices));
  e.cost_per_hour = d.devices * d.device_hour_usd + e.power_watts * d.pue / 1000.0 * d.electricity_usd_per_kwh;
  e.cost_per_day = 24.0 * e.cost_per_hour;
  const double input_price = d.cache_hit_fraction * d.price_input_hit_per_m + (1.0 - d.cache_hit_fraction) * d.price_input_miss_per_m;
  const double seconds = 86400.0 * d.served_fraction;
  e.revenue_per_day = seconds * (t.input_tokens_per_s * input_price + t.output_tokens_per_s * d.price_output_per_m) / 1e6;
  e.margin = (e.revenue_per_day - e.cost_per_day) / e.cost_per_day;
  const double out_m_per_day = t.output_tokens_per_s * seconds / 1e6;
  e.cost_per_m_output_tokens = out_m_per_day > 0 ? e.cost_per_day / out_m_per_day : std::numeric_limits<double>::infinity();
  e.cost_per_qps = e.cost_per_hour / t.requests_per_s;
  e.energy_per_request_j = e.power_watts * d.pue / t.requests_per_s;
  e.w_per_qps = e.power_watts / t.requests_per_s;
  return e;
}

// ---------------------------------------------------------------------------------------------
// dyn-price and power-day

DynPriceResult simulate_dynamic_pricing(const CostDefaults& d) {
  DynPriceResult r;
  const double hardware = d.devices * d.device_hour_usd;
  auto energy = [&](double util) {
    const double watts = d.devices * d.power_watts * (d.idle_power_fraction + (1.0 - d.idle_power_fraction) * util);
    return watts * d.pue / 1000.0 * d.electricity_usd_per_kwh;
  };
  for (size_t h = 0; h < d.load_curve.size(); ++h) {
    DynPriceHour x;
    x.hour = static_cast<int>(h);
    x.util_flat = d.load_curve[h];
    // The rule reads the flat-price (forecast) utilization: prices are set ahead of the hour.
    x.price_mult = 1.0 + (x.util_flat < d.low_util ? d.low_price_change : x.util_flat > d.high_util ? d.high_price_change : 0.0);
    x.demand = x.util_flat * std::pow(x.price_mult, d.demand_elasticity);
    x.util_dyn = std::min(1.0, x.demand);
    x.revenue_flat = x.util_flat;
    x.revenue_dyn = x.price_mult * x.util_dyn;
    x.cost_flat = hardware + energy(x.util_flat);
    x.cost_dyn = hardware + energy(x.util_dyn);
    r.revenue_flat += x.revenue_flat;
    r.revenue_dyn += x.revenue_dyn;
    r.cost_flat += x.cost_flat;
    r.cost_dyn += x.cost_dyn;
    r.lost_demand += x.demand - x.util_dyn;
    r.hours.push_back(x);
  }
  r.revenue_change = r.revenue_flat > 0 ? r.revenue_dyn / r.revenue_flat - 1.0 : 0.0;
  r.cost_change = r.cost_flat > 0 ? r.cost_dyn / r.cost_flat - 1.0 : 0.0;
  return r;
}

double power_day_cost(double watts, double hours, double price_per_kwh) { return watts * hours / 1000.0 * price_per_kwh; }

// ---------------------------------------------------------------------------------------------
// The cost suite

namespace {
std::string g(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

Metric metric(const std::string& key, double value, const std::string& unit, Direction dir, NoiseClass noise, const std::string& note) {
  Metric m;
  m.key = key;
  m.value = value;
  m.unit = unit;
  m.direction = dir;
  m.noise = noise;
  m.note = note;
  if (noise == NoiseClass::Exact) m.samples = {value};
  return m;
}

std::optional<double> positive(const RunData* run, const std::string& key) {
  if (!run) return std::nullopt;
  const Metric* m = run->find_metric(key);
  if (!m || !std::isfinite(m->value) || m->value <= 0) return std::nullopt;
  return m->value;
}

// The trials of a measured input (its samples, else its value), for per-trial economics.
std::vector<double> trials_of(const RunData* run, const std::string& key) {
  const Metric* m = run ? run->find_metric(key) : nullptr;
  if (!m) return {};
  return m->samples.empty() ? std::vector<double>{m->value} : m->samples;
}

// Why the measured inputs cannot be trusted (a run behind one broke its suite's validity rules).
std::string invalid_inputs(const RunData* run, const std::vector<std::string>& keys) {
  std::string why;
  for (const auto& k : keys) {
    const Metric* m = run ? run->find_metric(k) : nullptr;
    if (!m || !m->params.is_object() || !m->params.contains("valid") || !m->params["valid"].is_boolean() || m->params["valid"].get<bool>())
      continue;
    const json v = m->params.value("validity", json());
    why += (why.empty() ? "" : "; ") + k + ": " + (v.is_string() ? v.get<std::string>() : v.is_null() ? std::string("valid=false") : v.dump());
  }
  return why;
}
}  // namespace

SuiteResult cost_suite(const RunData* measured, const CostDefaults& d) {
  SuiteResult s;
  s.suite = "cost";
  s.params = {{"defaults", cost_defaults_to_json(d)}};
  if (measured) s.params["measured_run"] = measured->dir.string();
  const auto E = NoiseClass::Exact;

  const DeepSeekMargin ds = deepseek_margin(d.deepseek);
  const DeepSeekInputs& in = d.deepseek;
  const std::string cost_note = "cost " + g(in.nodes) + " nodes x " + g(in.gpus_per_node) + " GPUs x $" + g(in.gpu_hour_usd) +
                                "/GPU-h x " + g(in.hours) + " h = $" + g(ds.daily_cost);
  s.add(metric("cost.margin.deepseek_published", ds.margin_published, "x", Direction::Neutral, E,
               "(published revenue $" + g(ds.revenue_published) + " - cost) / cost; " + cost_note));
  s.add(metric("cost.margin.deepseek_tokens", ds.margin_tokens, "x", Direction::Neutral, E,
               "revenue from token arithmetic $" + g(ds.revenue_tokens) + " (" + g(in.cache_hit_tokens) + " hit x $" +
                   g(in.price_hit_per_m) + "/M + " + g(in.input_tokens - in.cache_hit_tokens) + " miss x $" + g(in.price_miss_per_m) +
                   "/M + " + g(in.output_tokens) + " output x $" + g(in.price_output_per_m) + "/M); differs from the published $" +
                   g(ds.revenue_published) + " by $" + g(ds.revenue_tokens - ds.revenue_published) +
                   " because the published token counts are rounded; " + cost_note));
  s.add(metric("cost.deepseek.daily_cost_usd", ds.daily_cost, "USD/day", Direction::Neutral, E, cost_note));
  s.add(metric("cost.deepseek.revenue_tokens_usd", ds.revenue_tokens, "USD/day", Direction::Neutral, E,
               "token arithmetic at the published prices"));

  const DynPriceResult dp = simulate_dynamic_pricing(d);
  const std::string dp_note = "simulation over the " + std::string(d.source == "built-in" ? "built-in" : "configured") +
                              " illustrative 24 h load curve; price " + g(100 * d.low_price_change) + "% when util < " +
                              g(d.low_util) + ", +" + g(100 * d.high_price_change) + "% when util > " + g(d.high_util) +
                              "; demand elasticity " + g(d.demand_elasticity) + "; capacity-capped (lost demand " +
                              g(dp.lost_demand) + " capacity-hours); cost = " + g(d.devices) + " x $" + g(d.device_hour_usd) +
                              "/h + energy at " + g(d.power_watts) + " W x util, PUE " + g(d.pue) + ", $" +
                              g(d.electricity_usd_per_kwh) + "/kWh";
  s.add(metric("cost.dyn_price.revenue_change", dp.revenue_change, "fraction", Direction::HigherIsBetter, E, dp_note));
  s.add(metric("cost.dyn_price.cost_change", dp.cost_change, "fraction", Direction::LowerIsBetter, E, dp_note));
  json rows = json::array();
  for (const auto& h : dp.hours)
    rows.push_back({{"hour", h.hour}, {"util_flat", h.util_flat}, {"price_mult", h.price_mult}, {"demand", h.demand},
                    {"util_dyn", h.util_dyn}, {"revenue_flat", h.revenue_flat}, {"revenue_dyn", h.revenue_dyn},
                    {"cost_flat_usd", h.cost_flat}, {"cost_dyn_usd", h.cost_dyn}});
  s.tables["dyn_price"] = rows;

  s.add(metric("cost.power_day.cost", power_day_cost(d.power_day_watts, d.power_day_hours, d.power_day_price_per_kwh), "currency/day",
               Direction::Neutral, E,
               g(d.power_day_watts) + " W x " + g(d.power_day_hours) + " h / 1000 x " + g(d.power_day_price_per_kwh) + " per kWh"));

  // Measured economics: only from a run that carries the throughput it needs.
  const MeasuredKeys& k = d.keys;
  const auto rps = positive(measured, k.requests_per_s);
  const auto in_tps = positive(measured, k.input_tokens_per_s);
  const auto out_tps = positive(measured, k.output_tokens_per_s);
  std::vector<std::string> absent;
  if (!rps) absent.push_back(k.requests_per_s);
  if (!in_tps) absent.push_back(k.input_tokens_per_s);
  if (!out_tps) absent.push_back(k.output_tokens_per_s);
  if (!measured || !absent.empty()) {
    std::string list;
    for (const auto& a : absent) list += (list.empty() ? "" : ", ") + a;
    s.params["measured_inputs"] = measured ? "absent: " + list : "no measured run";
    const std::string why = "needs measured throughput (" + (measured ? list : std::string("no measured run")) +
                            ") from the load suite";
    for (const char* key : {"cost.cost_per_qps.reduction", "cost.energy_per_qps.reduction", "cost.measured.margin",
                            "cost.measured.cost_per_m_output_tokens", "cost.measured.energy_per_request_j"})
      s.params["not_measured"][key] = why;
    return s;
  }
  MeasuredThroughput t;
  t.requests_per_s = *rps;
  t.input_tokens_per_s = *in_tps;
  t.output_tokens_per_s = *out_tps;
  t.power_watts = positive(measured, k.power_watts);
  t.baseline_power_watts = positive(measured, k.baseline_power_watts);
  t.busy_fraction = positive(measured, k.busy_fraction);
  // How the load suite got power (params.power: measured by a sensor, supplied by the user, or
  // none with the reason).
  const json load_power = [&] {
    const auto it = measured->suites.find("load");
    return it != measured->suites.end() && it->second.params.is_object() && it->second.params.contains("power")
               ? it->second.params["power"]
               : json::object();
  }();
  if (!t.power_watts && load_power.value("source", "") == "supplied" && load_power.value("watts", 0.0) > 0)
    t.supplied_power_watts = load_power["watts"].get<double>();
  t.baseline_requests_per_s = positive(measured, k.baseline_requests_per_s);
  std::string base_from = k.baseline_requests_per_s;
  if (!t.baseline_requests_per_s) {
    if (auto ratio = positive(measured, k.throughput_ratio)) {
      t.baseline_requests_per_s = t.requests_per_s / *ratio;
      base_from = k.requests_per_s + " / " + k.throughput_ratio;
    }
  }
  s.params["measured_inputs"] = "used";
  const Economics e = economics(d, t);  // at the medians, for the notes
  // Per-trial economics: trial i of every input comes from the same seed (the load suite's
  // interleaved trials), so each trial gives one value and the interval covers the run's noise.
  std::vector<std::string> used = {k.requests_per_s, k.input_tokens_per_s, k.output_tokens_per_s};
  const auto rps_t = trials_of(measured, k.requests_per_s), in_t = trials_of(measured, k.input_tokens_per_s),
             out_t = trials_of(measured, k.output_tokens_per_s);
  std::vector<double> base_t;
  if (positive(measured, k.baseline_requests_per_s)) {
    base_t = trials_of(measured, k.baseline_requests_per_s);
    used.push_back(k.baseline_requests_per_s);
  } else if (positive(measured, k.throughput_ratio)) {
    for (double r : trials_of(measured, k.throughput_ratio)) base_t.push_back(r > 0 ? t.requests_per_s / r : NAN);
    used.push_back(k.throughput_ratio);
  }
  // Power per trial when the load suite measured it per trial (same seeds as the rates).
  const auto pw_t = t.power_watts ? trials_of(measured, k.power_watts) : std::vector<double>{};
  const auto bpw_t = t.baseline_power_watts ? trials_of(measured, k.baseline_power_watts) : std::vector<double>{};
  size_t n = std::min({rps_t.size(), in_t.size(), out_t.size()});
  if (!base_t.empty()) n = std::min(n, base_t.size());
  struct Trial {
    Economics e;
    std::optional<Economics> base;
  };
  std::vector<Trial> trials;
  for (size_t i = 0; i < n; ++i) {
    MeasuredThroughput ti = t;
    ti.requests_per_s = rps_t[i];
    ti.input_tokens_per_s = in_t[i];
    ti.output_tokens_per_s = out_t[i];
    if (pw_t.size() == rps_t.size()) ti.power_watts = pw_t[i];
    Trial tr{economics(d, ti), std::nullopt};
    if (!base_t.empty() && base_t[i] > 0) {
      MeasuredThroughput b = ti;
      b.requests_per_s = base_t[i];
      b.power_watts = t.baseline_power_watts ? (bpw_t.size() == base_t.size() ? std::optional<double>(bpw_t[i]) : t.baseline_power_watts)
                                             : ti.power_watts;
      tr.base = economics(d, b);
    }
    trials.push_back(tr);
  }
  const std::string invalid = invalid_inputs(measured, used);
  const std::string inputs = "measured " + g(t.requests_per_s) + " req/s, " + g(t.input_tokens_per_s) + " input tok/s, " +
                             g(t.output_tokens_per_s) + " output tok/s (medians; " + std::to_string(n) + " trials)" +
                             (t.busy_fraction ? " at busy fraction " + g(*t.busy_fraction) : std::string()) + "; " +
                             g(d.devices) + " device(s) x $" + g(d.device_hour_usd) + "/h; power " + g(e.power_watts) + " W " +
                             (e.power_measured ? "(measured)" : e.power_supplied ? "(supplied with --power-watts, not measured)" : "(configured, not measured)") + ", PUE " + g(d.pue) + ", $" +
                             g(d.electricity_usd_per_kwh) + "/kWh; served fraction " + g(d.served_fraction);
  const auto T = NoiseClass::Timing;
  // A metric over the trials: median value, the trials as samples, invalid when an input is.
  auto add = [&](const std::string& key, auto f, const std::string& unit, Direction dir, NoiseClass noise, const std::string& note) {
    std::vector<double> v;
    for (const auto& tr : trials) {
      const std::optional<double> x = f(tr);
      if (!x) return;
      v.push_back(*x);
    }
    if (v.empty()) return;
    Metric m = metric(key, median(v), unit, dir, noise, note);
    m.samples = v;
    m.params = {{"inputs", used}, {"trials", v.size()}};
    if (!invalid.empty()) {
      m.params["valid"] = false;
      m.params["validity"] = invalid;
      m.note = "INVALID inputs (" + invalid + "): " + m.note;
    }
    s.add(m);
  };
  using Tr = const Trial&;
  // Token prices belong to one model: revenue and margin only for a run of that model.
  const std::string run_model = measured->suites.count("load") ? measured->suites.at("load").params.value("model", std::string()) : "";
  if (run_model == d.price_model) {
    add("cost.measured.revenue_per_day", [](Tr x) { return std::optional<double>(x.e.revenue_per_day); }, "USD/day", Direction::HigherIsBetter, T,
        inputs + "; prices $" + g(d.price_input_hit_per_m) + "/$" + g(d.price_input_miss_per_m) + "/$" + g(d.price_output_per_m) +
            " per M (hit/miss/output) for model '" + d.price_model + "', cache-hit fraction " + g(d.cache_hit_fraction));
    add("cost.measured.margin", [](Tr x) { return std::optional<double>(x.e.margin); }, "x", Direction::HigherIsBetter, T,
        "(revenue - cost) / cost; " + inputs);
  } else {
    const std::string why = "the token prices in " + d.source + " belong to model '" + d.price_model + "', the run measured model '" +
                            (run_model.empty() ? std::string("(unknown)") : run_model) +
                            "': pricing its tokens at another model's prices says nothing; give `claimbench run --cost-defaults FILE` "
                            "a file whose prices.model is the run's model";
    for (const char* key : {"cost.measured.revenue_per_day", "cost.measured.margin"}) s.params["skip"][key] = why;
  }
  add("cost.measured.cost_per_day", [](Tr x) { return std::optional<double>(x.e.cost_per_day); }, "USD/day", Direction::LowerIsBetter, T, inputs);
  add("cost.measured.cost_per_m_output_tokens", [](Tr x) { return std::optional<double>(x.e.cost_per_m_output_tokens); }, "USD/M tokens",
      Direction::LowerIsBetter, T, inputs);
  add("cost.measured.cost_per_qps", [](Tr x) { return std::optional<double>(x.e.cost_per_qps); }, "USD/h per req/s", Direction::LowerIsBetter, T,
      inputs);
  add("cost.measured.energy_per_request_j", [](Tr x) { return std::optional<double>(x.e.energy_per_request_j); }, "J", Direction::LowerIsBetter,
      T, "power x PUE / req/s; " + inputs);
  add("cost.measured.w_per_qps", [](Tr x) { return std::optional<double>(x.e.w_per_qps); }, "W/QPS", Direction::LowerIsBetter, T,
      "device power / req/s; " + inputs);
  if (t.baseline_requests_per_s) {
    add("cost.cost_per_qps.reduction",
        [](Tr x) { return x.base ? std::optional<double>(1.0 - x.e.cost_per_qps / x.base->cost_per_qps) : std::nullopt; }, "fraction",
        Direction::HigherIsBetter, NoiseClass::Ratio,
        "1 - engine / baseline cost per QPS per trial (same hardware and prices both sides, so it is the throughput ratio's "
        "effect); baseline rate from " + base_from + "; " + inputs);
    if (t.power_watts) {
      add("cost.energy_per_qps.reduction",
          [](Tr x) { return x.base ? std::optional<double>(1.0 - x.e.w_per_qps / x.base->w_per_qps) : std::nullopt; }, "fraction",
          Direction::HigherIsBetter, NoiseClass::Ratio,
          "1 - engine / baseline W per QPS per trial; baseline power " +
              std::string(t.baseline_power_watts ? "measured" : "assumed equal to the engine's measured power") + "; " +
              load_power.value("sensor", std::string("sensor unknown")) + "; " + inputs);
    } else {
      // No measured power: the claim key stays unmeasured, with the reason; a supplied figure is
      // reported apart, under its own key, labelled.
      std::string why = "the run measured no power";
      if (load_power.contains("why") && load_power["why"].is_string()) why += " (" + load_power["why"].get<std::string>() + ")";
      if (t.supplied_power_watts) {
        add("cost.supplied_power.energy_per_qps.reduction",
            [](Tr x) { return x.base ? std::optional<double>(1.0 - x.e.w_per_qps / x.base->w_per_qps) : std::nullopt; }, "fraction",
            Direction::HigherIsBetter, NoiseClass::Ratio,
            "NOT A MEASUREMENT: power supplied with --power-watts " + g(*t.supplied_power_watts) +
                " W, the same for both configurations, so this is the throughput ratio's effect only; " + inputs);
        why += "; --power-watts " + g(*t.supplied_power_watts) + " W was supplied: the figure with it is cost.supplied_power.energy_per_qps.reduction, "
               "reported apart because a stated power is not a measurement";
      }
      s.params["not_measured"]["cost.energy_per_qps.reduction"] = why;
    }
  }
  return s;
}

}  // namespace cb::harness
