// libfccp's error type copies the file name with strncpy into a fixed buffer; GCC's truncation
// warning fires inside the (system) header once inlined at -O3. The header is fine as it is.
#pragma GCC diagnostic push
#if defined(__GNUC__) && !defined(__clang__)  // clang (the fuzz build) has no such warning group
#pragma GCC diagnostic ignored "-Wstringop-truncation"
#endif
#include <libfccp/csv.h>
#pragma GCC diagnostic pop

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "cb/harness/load/workload.h"

namespace cb::harness::load {
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// Portable draws (the same numbers with any standard library): 53-bit uniforms from mt19937_64.
double uniform01(std::mt19937_64& rng) { return double(rng() >> 11) * 0x1.0p-53; }
double exponential(std::mt19937_64& rng) { return -std::log1p(-uniform01(rng)); }
double normal(std::mt19937_64& rng) {  // Box-Muller, one of the pair
  const double u1 = 1.0 - uniform01(rng), u2 = uniform01(rng);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}
// Gamma(shape k, scale 1): Marsaglia-Tsang for k >= 1; for k < 1, Gamma(k+1) * U^(1/k).
double gamma1(std::mt19937_64& rng, double k) {
  if (k < 1) return gamma1(rng, k + 1) * std::pow(1.0 - uniform01(rng), 1.0 / k);
  const double d = k - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
  for (;;) {
    double x, v;
    do {
      x = normal(rng);
      v = 1.0 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const double u = 1.0 - uniform01(rng);
    if (std::log(u) < 0.5 * x * x + d - d * v + d * std::log(v)) return d * v;
  }
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}
uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

std::string num_text(double v) {  // 8 -> "8", 0.5 -> "0.5"
  char b[32];
  std::snprintf(b, sizeof b, "%.10g", v);
  return b;
}

// Field readers that name the file and the field.
struct Fields {
  const json& j;
  std::string where;  // "file: field"
  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw WorkloadError(where + (where.back() == ':' ? " " : ".") + key + ": " + what);
  }
  bool has(const std::string& k) const { return j.contains(k); }
  double num(const std::string& k, double lo, double hi) const {
    if (!j.contains(k)) fail(k, "missing");
    if (!j[k].is_number()) fail(k, "expected a number, got " + j[k].dump());
    const double v = j[k].get<double>();
    if (!(v >= lo && v <= hi)) fail(k, "value " + j[k].dump() + " outside [" + num_text(lo) + ", " + num_text(hi) + "]");
    return v;
  }
  double num_or(const std::string& k, double def, double lo, double hi) const { return has(k) ? num(k, lo, hi) : def; }
  int integer(const std::string& k, int lo, int hi) const {
    const double v = num(k, lo, hi);
    if (v != std::floor(v)) fail(k, "expected an integer, got " + j[k].dump());
    return int(v);
  }
  std::string str(const std::string& k) const {
    if (!j.contains(k)) fail(k, "missing");
    if (!j[k].is_string()) fail(k, "expected a string, got " + j[k].dump());
    return j[k].get<std::string>();
  }
  void only(std::initializer_list<const char*> keys) const {
    for (const auto& [k, v] : j.items()) {
      if (!k.empty() && k[0] == '$') continue;  // comments
      bool known = false;
      for (const char* x : keys) known = known || k == x;
      if (!known) {
        std::string list;
        for (const char* x : keys) list += std::string(list.empty() ? "" : ", ") + x;
        fail(k, "unknown key (expected one of " + list + ")");
      }
    }
  }
};

LengthDist parse_length(const json& j, const std::string& where) {
  if (!j.is_object()) throw WorkloadError(where + ": expected an object");
  Fields f{j, where};
  LengthDist d;
  d.dist = f.str("dist");
  const int big = 1 << 20;
  if (d.dist == "fixed") {
    f.only({"dist", "value"});
    d.value = d.min = d.max = f.integer("value", 1, big);
  } else if (d.dist == "uniform") {
    f.only({"dist", "min", "max"});
    d.min = f.integer("min", 1, big);
    d.max = f.integer("max", d.min, big);
  } else if (d.dist == "lognormal") {
    f.only({"dist", "median", "sigma", "min", "max"});
    d.median = f.num("median", 1, big);
    d.sigma = f.num("sigma", 0, 10);
    d.min = f.integer("min", 1, big);
    d.max = f.integer("max", d.min, big);
  } else {
    f.fail("dist", "unknown '" + d.dist + "' (expected fixed, uniform, lognormal)");
  }
  return d;
}

}  // namespace

int LengthDist::sample(std::mt19937_64& rng) const {
  if (dist == "fixed") return value;
  if (dist == "uniform") return min + int(uniform01(rng) * double(max - min + 1));
  const double x = std::exp(std::log(median) + sigma * normal(rng));
  return std::clamp(int(std::lround(x)), min, max);
}

json LengthDist::to_json() const {
  if (dist == "fixed") return {{"dist", dist}, {"value", value}};
  if (dist == "uniform") return {{"dist", dist}, {"min", min}, {"max", max}};
  return {{"dist", dist}, {"median", median}, {"sigma", sigma}, {"min", min}, {"max", max}};
}

json ArrivalSpec::to_json() const {
  json j = {{"process", process}};
  if (process == "poisson" || process == "gamma") j["rate_rps"] = rate_rps;
  if (process == "gamma") j["burstiness"] = burstiness;
  if (process == "trace") {
    j["trace"] = trace.string();
    j["time_scale"] = time_scale;
  }
  if (process == "closed") j["concurrency"] = concurrency;
  return j;
}

std::vector<TraceRow> read_trace_csv(const fs::path& file, int max_context) {
  const std::string name = file.string();
  if (!fs::exists(file)) throw WorkloadError(name + ": trace file does not exist");
  std::vector<TraceRow> rows;
  int line = 0;
  try {
    io::CSVReader<3, io::trim_chars<' ', '\t'>, io::no_quote_escape<','>, io::throw_on_overflow, io::single_line_comment<'#'>>
        in(name);
    in.read_header(io::ignore_no_column, "arrival_s", "prompt_tokens", "output_tokens");
    TraceRow r;
    double prev = 0;
    while (in.read_row(r.arrival_s, r.prompt_tokens, r.output_tokens)) {
      line = int(in.get_file_line());
      const std::string at = name + ":" + std::to_string(line) + ": ";
      if (!(r.arrival_s >= 0) || !std::isfinite(r.arrival_s))
        throw WorkloadError(at + "arrival_s " + std::to_string(r.arrival_s) + " must be >= 0");
      if (r.arrival_s < prev)
        throw WorkloadError(at + "arrival_s " + std::to_string(r.arrival_s) + " is before the previous row's " + std::to_string(prev) +
                            " (rows must be in arrival order)");
      if (r.prompt_tokens < 1) throw WorkloadError(at + "prompt_tokens " + std::to_string(r.prompt_tokens) + " must be >= 1");
      if (r.output_tokens < 1) throw WorkloadError(at + "output_tokens " + std::to_string(r.output_tokens) + " must be >= 1");
      if (max_context > 0 && r.prompt_tokens + r.output_tokens > max_context)
        throw WorkloadError(at + "prompt_tokens + output_tokens = " + std::to_string(r.prompt_tokens + r.output_tokens) +
                            " exceeds the model context of " + std::to_string(max_context));
      prev = r.arrival_s;
      rows.push_back(r);
    }
  } catch (const io::error::base& e) {
    // libfccp's message names the column and line too; lead with FILE:LINE like our own errors.
    const auto* at = dynamic_cast<const io::error::with_file_line*>(&e);
    throw WorkloadError(name + (at && at->file_line > 0 ? ":" + std::to_string(at->file_line) : std::string()) + ": " + e.what());
  }
  if (rows.empty()) throw WorkloadError(name + ": trace has no rows");
  return rows;
}

fs::path workloads_dir() { return fs::path(CB_SOURCE_DIR) / "workloads"; }

WorkloadSpec parse_workload(const json& j_in, const fs::path& file, bool quick) {
  const std::string fname = file.string();
  if (!j_in.is_object()) throw WorkloadError(fname + ": expected a JSON object");
  // Read by hand, not with json::value(): a "schema" that is an object threw nlohmann's type_error
  // past the WorkloadError contract (found by fuzz_workload; regression in test_load_workload.cpp).
  auto top_string = [&](const char* key) -> std::string {
    const auto it = j_in.find(key);
    return it != j_in.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  if (top_string("schema") != "claimbench.workload")
    throw WorkloadError(fname + ": schema: expected \"claimbench.workload\"");
  if (top_string("schema_version").rfind("1.", 0) != 0)
    throw WorkloadError(fname + ": schema_version: expected \"1.x\"");
  json j = j_in;
  if (quick && j.contains("quick")) {
    if (!j["quick"].is_object()) throw WorkloadError(fname + ": quick: expected an object of overrides");
    j.merge_patch(j["quick"]);
  }
  j.erase("quick");
  WorkloadSpec w;
  w.file = file;
  w.quick = quick;
  w.effective = j;
  Fields f{j, fname + ":"};
  f.only({"schema", "schema_version", "name", "description", "seed", "arrival", "prompt_tokens", "output_tokens", "slo",
          "duration_s", "min_requests", "max_requests", "validity", "sweep", "slo_search", "engine"});
  w.name = f.str("name");
  w.description = f.has("description") ? f.str("description") : "";
  w.seed = uint64_t(f.num("seed", 0, 9007199254740992.0));

  if (!j.contains("arrival") || !j["arrival"].is_object()) f.fail("arrival", "missing or not an object");
  Fields a{j["arrival"], fname + ": arrival"};
  w.arrival.process = a.str("process");
  const std::string& p = w.arrival.process;
  if (p == "poisson") {
    a.only({"process", "rate_rps"});
    w.arrival.rate_rps = a.num("rate_rps", 1e-6, 1e7);
  } else if (p == "gamma") {
    a.only({"process", "rate_rps", "burstiness"});
    w.arrival.rate_rps = a.num("rate_rps", 1e-6, 1e7);
    w.arrival.burstiness = a.num("burstiness", 1e-3, 1e3);
  } else if (p == "trace") {
    a.only({"process", "trace", "time_scale"});
    w.arrival.trace = a.str("trace");
    if (w.arrival.trace.is_relative()) w.arrival.trace = file.parent_path() / w.arrival.trace;
    w.arrival.time_scale = a.num_or("time_scale", 1, 1e-6, 1e6);
  } else if (p == "closed") {
    a.only({"process", "concurrency"});
    w.arrival.concurrency = a.integer("concurrency", 1, 100000);
  } else {
    a.fail("process", "unknown '" + p + "' (expected poisson, gamma, trace, closed)");
  }
  if (p != "trace") {
    if (!j.contains("prompt_tokens")) f.fail("prompt_tokens", "missing (needed unless the arrival process is a trace)");
    if (!j.contains("output_tokens")) f.fail("output_tokens", "missing (needed unless the arrival process is a trace)");
  }
  if (j.contains("prompt_tokens")) w.prompt_tokens = parse_length(j["prompt_tokens"], fname + ": prompt_tokens");
  if (j.contains("output_tokens")) w.output_tokens = parse_length(j["output_tokens"], fname + ": output_tokens");
  if (j.contains("slo")) {
    try {
      w.slo = slo_from_json(j["slo"], fname + ": slo");
    } catch (const std::invalid_argument& e) {
      throw WorkloadError(e.what());
    }
  }
  w.duration_s = f.num("duration_s", 0, 86400);
  w.min_requests = size_t(f.integer("min_requests", 1, 10000000));
  w.max_requests = size_t(f.has("max_requests") ? f.integer("max_requests", int(w.min_requests), 10000000) : 1000000);
  w.validity.min_duration_s = w.duration_s;
  w.validity.min_completed = w.min_requests;
  if (j.contains("validity")) {
    Fields v{j["validity"], fname + ": validity"};
    v.only({"min_duration_s", "min_completed", "max_error_fraction", "max_issue_lag_p99_ms"});
    w.validity.min_duration_s = v.num_or("min_duration_s", w.validity.min_duration_s, 0, 86400);
    if (v.has("min_completed")) w.validity.min_completed = size_t(v.integer("min_completed", 0, 10000000));
    w.validity.max_error_fraction = v.num_or("max_error_fraction", w.validity.max_error_fraction, 0, 1);
    w.validity.max_issue_lag_p99_ms = v.num_or("max_issue_lag_p99_ms", w.validity.max_issue_lag_p99_ms, 0, 1e6);
  }
  if (j.contains("sweep")) {
    if (!j["sweep"].is_array()) f.fail("sweep", "expected an array of rates (req/s)");
    for (const auto& r : j["sweep"])
      if (!r.is_number() || r.get<double>() <= 0) f.fail("sweep", "every rate must be a positive number, got " + r.dump());
    w.sweep = j["sweep"];
  }
  if (j.contains("slo_search")) {
    Fields s{j["slo_search"], fname + ": slo_search"};
    s.only({"start_rps", "min_rps", "max_rps", "max_trials", "rel_tolerance"});
    s.num("start_rps", 1e-6, 1e7);
    s.num_or("min_rps", 0, 0, 1e7);
    s.num_or("max_rps", 0, 0, 1e8);
    if (s.has("max_trials")) s.integer("max_trials", 1, 100);
    s.num_or("rel_tolerance", 0.1, 1e-3, 1);
    w.slo_search = j["slo_search"];
  }
  if (j.contains("engine")) {
    if (!j["engine"].is_object()) f.fail("engine", "expected an object");
    Fields e{j["engine"], fname + ": engine"};
    e.only({"config", "baseline", "saturation_concurrency", "kv_compare_pool_tokens"});
    w.engine = j["engine"];
  }
  if (p == "trace") {
    const auto rows = read_trace_csv(w.arrival.trace);
    if (rows.size() < w.min_requests)
      throw WorkloadError(fname + ": min_requests " + std::to_string(w.min_requests) + " exceeds the " + std::to_string(rows.size()) +
                          " rows of " + w.arrival.trace.string());
  }
  return w;
}

WorkloadSpec load_workload(const std::string& name_or_path, bool quick) {
  fs::path file = name_or_path;
  if (file.extension() != ".json") file = workloads_dir() / (name_or_path + ".json");
  std::ifstream in(file);
  if (!in) throw WorkloadError(file.string() + ": cannot open (known workloads are workloads/*.json)");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e400
    throw WorkloadError(file.string() + ": not valid JSON: " + e.what());
  }
  return parse_workload(j, file, quick);
}

namespace {
// Arrival times at `rate`: gaps drawn at unit rate, divided by the rate, so the same seed at
// another rate gives the same sequence compressed or stretched (common random numbers across the
// trials of a sweep). burstiness 0 = Poisson. Stops after n arrivals, or (n == 0) at the first
// arrival at or past `until_s` once `min_n` arrivals exist, never past `max_n`.
std::vector<double> arrivals(double rate, double burstiness, size_t n, double until_s, size_t min_n, size_t max_n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<double> t;
  double now = 0;
  for (;;) {
    t.push_back(now);
    if (n ? t.size() >= n : (t.size() >= max_n || (now >= until_s && t.size() >= min_n))) break;
    // Gamma(k, scale 1/(rate k)) has mean 1/rate: vLLM's burstiness convention.
    const double unit_gap = burstiness > 0 ? gamma1(rng, burstiness) / burstiness : exponential(rng);
    now += unit_gap / rate;
  }
  return t;
}
}  // namespace

std::vector<double> poisson_arrivals(double rate, size_t n, uint64_t seed) {
  if (!(rate > 0)) throw std::invalid_argument("poisson_arrivals: rate must be > 0");
  if (n == 0) return {};
  return arrivals(rate, 0, n, 0, 0, n, seed);
}

std::vector<double> gamma_arrivals(double rate, double burstiness, size_t n, uint64_t seed) {
  if (!(rate > 0) || !(burstiness > 0)) throw std::invalid_argument("gamma_arrivals: rate and burstiness must be > 0");
  if (n == 0) return {};
  return arrivals(rate, burstiness, n, 0, 0, n, seed);
}

json Seeds::to_json() const {
  return {{"arrivals", arrivals}, {"prompt_lengths", prompt_lengths}, {"output_lengths", output_lengths}, {"prompt_ids", prompt_ids}};
}

Seeds derive_seeds(uint64_t workload_seed, uint64_t run_seed) {
  const uint64_t base = splitmix64(workload_seed ^ splitmix64(run_seed + 0x5eed));
  Seeds s;
  s.arrivals = splitmix64(base ^ fnv1a("arrivals"));
  s.prompt_lengths = splitmix64(base ^ fnv1a("prompt_lengths"));
  s.output_lengths = splitmix64(base ^ fnv1a("output_lengths"));
  s.prompt_ids = splitmix64(base ^ fnv1a("prompt_ids"));
  return s;
}

Plan make_plan(const WorkloadSpec& w, const PlanOptions& o) {
  Plan plan;
  plan.workload = w.name;
  plan.seeds = derive_seeds(w.seed, o.run_seed);
  plan.duration_s = w.duration_s;
  plan.min_requests = w.min_requests;
  const std::string& proc = w.arrival.process;
  plan.closed_loop = o.concurrency > 0 || proc == "closed";
  plan.concurrency = o.concurrency > 0 ? o.concurrency : w.arrival.concurrency;

  // Lengths: from the trace, or drawn from the distributions.
  std::vector<TraceRow> rows;
  std::vector<double> arrival_times;
  if (proc == "trace") {
    rows = read_trace_csv(w.arrival.trace, o.max_context);
    if (rows.size() > w.max_requests) rows.resize(w.max_requests);
    const double first = rows.front().arrival_s, span = rows.back().arrival_s - first;
    const double trace_rate = span > 0 ? double(rows.size() - 1) / span : 0;
    double scale = w.arrival.time_scale;
    if (o.rate_rps > 0) {
      if (trace_rate <= 0) throw WorkloadError(w.arrival.trace.string() + ": every row arrives at once; a rate cannot rescale it");
      scale = o.rate_rps / trace_rate;
    }
    plan.rate_rps = trace_rate * scale;
    for (const auto& r : rows) arrival_times.push_back((r.arrival_s - first) / scale);
    plan.requested = {{"process", "trace"}, {"trace", w.arrival.trace.filename().string()}, {"trace_rows", rows.size()},
                      {"trace_rate_rps", trace_rate}, {"time_scale", scale}, {"rate_rps", plan.rate_rps}};
  } else {
    size_t n = w.max_requests;
    if (!plan.closed_loop) {
      // As MLPerf LoadGen: enough requests that the arrivals span the minimum duration AND reach
      // the minimum count.
      plan.rate_rps = o.rate_rps > 0 ? o.rate_rps : w.arrival.rate_rps;
      arrival_times = arrivals(plan.rate_rps, proc == "gamma" ? w.arrival.burstiness : 0.0, 0, w.duration_s, w.min_requests,
                               w.max_requests, plan.seeds.arrivals);
      n = arrival_times.size();
      plan.requested = {{"process", proc == "closed" ? "poisson" : proc}, {"rate_rps", plan.rate_rps}};
      if (proc == "gamma") plan.requested["burstiness"] = w.arrival.burstiness;
    }
    std::mt19937_64 plen(plan.seeds.prompt_lengths), olen(plan.seeds.output_lengths);
    rows.resize(n);
    for (auto& r : rows) {
      r.prompt_tokens = w.prompt_tokens.sample(plen);
      r.output_tokens = w.output_tokens.sample(olen);
      if (o.max_context > 0 && r.prompt_tokens + r.output_tokens > o.max_context)
        r.prompt_tokens = std::max(1, o.max_context - r.output_tokens);  // clip the prompt to fit
    }
  }
  if (plan.closed_loop) {
    plan.requested = {{"process", "closed"}, {"concurrency", plan.concurrency}, {"pool", rows.size()}};
    arrival_times.assign(rows.size(), 0.0);
  }
  plan.requested["duration_s"] = w.duration_s;
  plan.requested["min_requests"] = w.min_requests;
  plan.requested["requests_planned"] = rows.size();

  // Prompt ids: BOS then seeded bytes. Built here, outside the timed run.
  std::mt19937_64 ids(plan.seeds.prompt_ids);
  plan.requests.resize(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    auto& pr = plan.requests[i];
    pr.arrival_s = arrival_times[i];
    pr.req.index = int64_t(i);
    pr.req.max_tokens = rows[i].output_tokens;
    pr.req.prompt.resize(size_t(rows[i].prompt_tokens));
    for (auto& t : pr.req.prompt) t = int32_t(ids() % uint64_t(o.vocab_limit));
    if (o.bos_token >= 0) pr.req.prompt[0] = o.bos_token;
    if (o.to_text && o.encode) {
      const size_t want = pr.req.prompt.size();
      std::string text = valid_utf8(o.to_text(pr.req.prompt));
      std::vector<int32_t> enc = o.encode(text);
      // Re-encoding can give more tokens than drawn (pieces split differently, U+FFFD for broken
      // UTF-8, BOS): cut back until the text's encoding fits the planned length.
      size_t keep = want;
      for (int round = 0; enc.size() > want && keep > 1 && round < 16; ++round) {
        keep = std::max<size_t>(1, std::min(keep - 1, keep * want / enc.size()));
        enc.resize(keep);
        text = valid_utf8(o.to_text(enc));
        enc = o.encode(text);
      }
      pr.req.text = std::move(text);
      pr.req.prompt = std::move(enc);
    }
  }
  return plan;
}

std::string valid_utf8(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = len > 0 && i + size_t(len) <= n;
    for (int k = 1; ok && k < len; ++k) ok = (p[i + k] & 0xC0) == 0x80;
    if (ok && len > 1) {  // overlong forms, surrogates and code points past U+10FFFF are invalid too
      uint32_t cp = c & (0x7F >> len);
      for (int k = 1; k < len; ++k) cp = (cp << 6) | (p[i + k] & 0x3F);
      ok = !(len == 2 && cp < 0x80) && !(len == 3 && cp < 0x800) && !(len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) &&
           !(cp >= 0xD800 && cp <= 0xDFFF);
    }
    if (!ok) {
      out += "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    out.append(s, i, size_t(len));
    i += size_t(len);
  }
  return out;
}

}  // namespace cb::harness::load
