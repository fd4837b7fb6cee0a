// The load suite (`claimbench run --suite load [--quick] [--sut inprocess|null|http://HOST:PORT]`):
// the named workloads of workloads/ replayed by the native load generator against the SUT.
//
//   overhead      the generator against the null SUT (always): issue lag, per-request cost
//   saturation    chat, closed loop at a saturating concurrency: throughput (the cost suite reads
//                 it), steady-window busy fraction, MFU, MBU; the same with the static baseline
//   batch gain    chat SLO search, adaptive policy vs static batching: ratio of max rates
//   rt-service    SLO search for the highest rate with p99 E2E under 80 ms
//   representative runs of chat, burst, rt-service at their spec rates (the "requests" table)
//   long-context  engine config vs baseline config output tokens/s; paged vs contiguous KV peak
// Comparisons of engine configurations need control of the engine: in-process only; against an
// HTTP endpoint they are listed in params.not_measured with the reason.
#include <omp.h>

#include <cmath>
#include <condition_variable>
#include <mutex>
#include <cstdio>
#include <fstream>
#include <set>
#include <thread>

#include "cb/peaks/machine_peaks.h"
#include "cb/harness/core/engine_access.h"
#include "cb/harness/load/experiments.h"
#include "cb/harness/load/http_sut.h"
#include "cb/harness/load/locust.h"
#include "cb/harness/load/metrics_sampler.h"
#include "cb/harness/load/power_meter.h"
#include "cb/harness/load/server_profile.h"
#include "cb/harness/suites/suites.h"

namespace cb::harness {
using nlohmann::json;
using namespace load;

namespace {

constexpr auto T = NoiseClass::Timing;
constexpr auto R = NoiseClass::Ratio;
constexpr auto Hi = Direction::HigherIsBetter;
constexpr auto Lo = Direction::LowerIsBetter;

std::string g(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.4g", v);
  return b;
}


// Metric from a run: params carry the run label and its validity; an INVALID run is flagged.
Metric run_metric(const std::string& key, double v, const std::string& unit, Direction d, NoiseClass n, const Measured& m,
                  std::string note, json extra = json::object()) {
  json p = {{"run", m.label}, {"valid", m.result.validity.valid}};
  for (auto& [k, x] : extra.items()) p[k] = x;
  if (!m.result.validity.valid) {
    p["validity"] = m.result.validity.line();
    std::string why;
    for (const auto& x : m.result.validity.reasons()) why += (why.empty() ? "" : "; ") + x;
    note = "INVALID run (" + why + "): " + note;
  }
  return Metric{key, v, unit, d, n, {}, p, note};
}

// A metric from two runs: invalid when the other run is (run_metric only looks at its own).
Metric also_valid(Metric m, const Measured& other) {
  if (other.result.validity.valid) return m;
  const std::string why = other.label + ": " + other.result.validity.line();
  m.params["valid"] = false;
  m.params["validity"] = m.params.contains("validity") ? m.params["validity"].get<std::string>() + "; " + why : why;
  m.note = "INVALID run (" + why + "): " + m.note;
  return m;
}

// Repeated trials: every figure a claim reads comes from kTrials runs (each on its own seed), so
// `claimbench check` can put a 95% interval on it (claim_stats.h).
constexpr int kTrials = 3;

// A metric from repeated trials: the median as the value, every trial's value as a sample; valid
// only when every run behind every trial is (params.valid, with the failed runs' validity lines).
Metric trials_metric(const std::string& key, const std::vector<double>& values, const std::string& unit, Direction d, NoiseClass n,
                     const std::vector<const Measured*>& runs, std::string note, json extra = json::object()) {
  json labels = json::array();
  bool valid = true;
  std::string why;
  for (const Measured* m : runs) {
    labels.push_back(m->label);
    if (m->result.validity.valid) continue;
    valid = false;
    why += (why.empty() ? "" : "; ") + m->label + ": " + m->result.validity.line();
  }
  json p = {{"runs", labels}, {"valid", valid}, {"trials", values.size()}};
  for (auto& [k, x] : extra.items()) p[k] = x;
  if (!valid) {
    p["validity"] = why;
    note = "INVALID run(s) behind it (" + why + "): " + note;
  }
  note += " [median of " + std::to_string(values.size()) + " trials, each on its own seed]";
  return Metric{key, median(values), unit, d, n, values, p, note};
}

// Completed requests, prompt tokens of requests whose first token came, and output tokens, per
// second of the steady window (after warm-up, before the drain), from the run's own records.
struct SteadyRates {
  double requests_per_s = 0, input_tokens_per_s = 0, output_tokens_per_s = 0;
};
SteadyRates steady_rates(const RunResult& res) {
  SteadyRates s;
  const double a = res.steady_begin_s, b = res.steady_end_s;
  if (!(b > a)) return s;
  double req = 0, in = 0, out = 0;
  for (const auto& r : res.records) {
    if (r.completed() && r.done_s >= a && r.done_s < b) req += 1;
    if (r.first_token_s >= a && r.first_token_s < b) in += r.prompt_tokens;
    for (double t : r.token_s) out += t >= a && t < b;
  }
  s.requests_per_s = req / (b - a);
  s.input_tokens_per_s = in / (b - a);
  s.output_tokens_per_s = out / (b - a);
  return s;
}

const json& engine_section(const WorkloadSpec& w, const char* key) {
  static const json empty = json::object();
  return w.engine.contains(key) ? w.engine[key] : empty;
}

InProcessConfig config_of(const WorkloadSpec& w, const char* key, const std::string& label) {
  InProcessConfig c;
  c.label = label;
  return inprocess_config_from_json(engine_section(w, key), c, w.file.string() + ": engine." + key);
}

int engine_int(const WorkloadSpec& w, const char* key, int def) {
  if (!w.engine.contains(key)) return def;
  if (!w.engine[key].is_number_integer() || w.engine[key].get<int>() < 1)
    throw WorkloadError(w.file.string() + ": engine." + key + ": expected a positive integer");
  return w.engine[key].get<int>();
}

// The generator's own cost, against the null SUT.
void measure_overhead(LoadContext& lc, const WorkloadSpec& chat, SuiteResult& r, bool quick) {
  // Open loop: the issue lag is what is measured here, so it is no validity condition.
  WorkloadSpec w = chat;
  w.name = "overhead";
  w.duration_s = quick ? 1.0 : 5.0;
  w.min_requests = quick ? 2000 : 10000;
  w.max_requests = 1000000;
  w.validity.min_duration_s = w.duration_s;
  w.validity.min_completed = w.min_requests;
  w.validity.max_issue_lag_p99_ms = 1e9;
  MeasureOptions open;
  open.rate_rps = quick ? 2000 : 5000;
  open.sweep_row = false;
  LoadContext nlc = lc;
  nlc.make_sut = [](const InProcessConfig&) { return std::make_unique<NullSut>(); };
  nlc.runs = json::object();
  nlc.make_sampler = nullptr;  // the null SUT: no server to sample
  const Measured o = measure(nlc, w, InProcessConfig{}, "overhead.open@" + g(open.rate_rps), open);
  // Closed loop at concurrency 1: a fixed count of back-to-back requests (a few hundred ms).
  w.duration_s = 0;
  w.min_requests = w.max_requests = quick ? 50000 : 200000;
  w.validity.min_duration_s = 0;
  w.validity.min_completed = w.min_requests;
  MeasureOptions closed;
  closed.concurrency = 1;
  closed.sweep_row = false;
  const Measured c = measure(nlc, w, InProcessConfig{}, "overhead.closed@1", closed);
  for (auto& [k, v] : nlc.runs.items()) lc.runs[k] = v;
  const RunSummary& os = o.result.summary;
  const RunSummary& cs = c.result.summary;
  const json rate = {{"offered_rps", open.rate_rps}};
  r.add(run_metric("load.overhead.issue_lag_us_p99", os.issue_lag_ms.p99 * 1e3, "us", Lo, T, o,
                   "null SUT, open-loop Poisson: p99 of (actual - scheduled) issue time; the generator's timing error", rate));
  r.add(run_metric("load.overhead.issue_lag_us_p50", os.issue_lag_ms.median * 1e3, "us", Lo, T, o, "as above, median", rate));
  r.add(run_metric("load.overhead.per_request_us", cs.e2e_ms.mean * 1e3, "us", Lo, T, c,
                   "null SUT answering inline: mean time to record one request of the chat mix (issue, " + g(double(cs.output_tokens) / std::max<size_t>(cs.completed, 1)) +
                       " token callbacks, completion)"));
  r.add(run_metric("load.overhead.max_rate_rps", cs.requests_per_s, "req/s", Hi, T, c,
                   "null SUT, closed loop at concurrency 1: the most requests/s this generator can issue and record on one thread"));
}

// Steady-window utilization of a saturating run: busy fraction, MFU, MBU, and the larger of the
// two (the work achieved against the machine limit that binds: a busy engine doing little work
// scores low here, whatever its busy time says).
struct Utilization {
  double busy = NAN, mfu = NAN, mbu = NAN;
  double achieved() const { return std::isfinite(mfu) || std::isfinite(mbu) ? std::fmax(mfu, mbu) : NAN; }
};
Utilization utilization(const Measured& m, const ModelFacts& model, double peak_gflops, double peak_gbs) {
  Utilization u;
  const RunResult& res = m.result;
  u.busy = res.busy_fraction();
  if (!res.steady_begin || !res.steady_end) return u;
  const double window = res.steady_end_s - res.steady_begin_s;
  const SutCounters& a = *res.steady_begin;
  const SutCounters& b = *res.steady_end;
  const double tokens = double((b.prefill_tokens - a.prefill_tokens) + (b.decode_tokens - a.decode_tokens));
  const double flops = model.matmul_flops_per_token * tokens;
  const double bytes = model.weight_bytes * double(b.steps - a.steps) + double(b.kv_tokens_read - a.kv_tokens_read) * model.kv_bytes_per_token;
  if (peak_gflops > 0 && window > 0) u.mfu = flops / window / (peak_gflops * 1e9);
  if (peak_gbs > 0 && window > 0) u.mbu = bytes / window / (peak_gbs * 1e9);
  return u;
}

// What the peaks are: this host's CPU (FP32 FMA, memory read) or, on the cuda backend, the GPU's.
struct PeakSource {
  std::string compute = "measured peak FP32 FMA";
  std::string memory = "measured memory read bandwidth";
  json detail = json::object();
};

void not_measured(SuiteResult& r, const std::vector<std::string>& keys, const std::string& why);

// On a GPU the device times its own work (CUDA events around each forward pass's ops): the busy
// fraction the GPU saw, beside the host-side one (which also counts launch and host time). In
// process from the engine's stats; over HTTP from refengine serve's /metrics (`source`).
void add_device_busy(SuiteResult& r, const std::vector<Measured>& runs, const std::string& window, const std::string& source,
                     const std::string& why_not) {
  std::vector<double> device_busy;
  std::vector<const Measured*> behind;
  for (const Measured& m : runs) {
    device_busy.push_back(m.result.device_busy_fraction());
    behind.push_back(&m);
  }
  if (!runs.empty() && std::all_of(device_busy.begin(), device_busy.end(), [](double b) { return std::isfinite(b); }))
    r.add(trials_metric("load.util.device_busy_fraction", device_busy, "fraction", Hi, R, behind,
                        "device time of the forward passes' work (CUDA events on the backend's stream, first op to last) / wall "
                        "time, " + window + (source.empty() ? "" : "; " + source)));
  else
    not_measured(r, {"load.util.device_busy_fraction"}, why_not);
}

void add_utilization(SuiteResult& r, const std::vector<Measured>& runs, const ModelFacts& model, double peak_gflops,
                     double peak_gbs, const PeakSource& src) {
  std::vector<double> busy, mfu, mbu, achieved;
  std::vector<const Measured*> behind;
  for (const Measured& m : runs) {
    const Utilization u = utilization(m, model, peak_gflops, peak_gbs);
    busy.push_back(u.busy);
    mfu.push_back(u.mfu);
    mbu.push_back(u.mbu);
    achieved.push_back(u.achieved());
    behind.push_back(&m);
  }
  const std::string window = "steady-state window (after the first 20% of the issue window, until issuing stops) of a closed-loop "
                             "saturating chat run, adaptive (queue-table) policy";
  r.add(trials_metric("load.util.busy_fraction", busy, "fraction", Hi, R, behind,
                      "time inside the model's forward pass / wall time, " + window + "; reported beside load.util.achieved_fraction, "
                      "not a verdict on its own (a saturated engine is busy whatever its batching does)"));
  json pk = {{"peak_fp32_gflops", peak_gflops}, {"peak_mem_read_gbs", peak_gbs}};
  if (!src.detail.empty()) pk["peaks"] = src.detail;
  r.add(trials_metric("load.util.mfu", mfu, "fraction", Hi, R, behind,
                      "matmul FLOP/s in the " + window + " / " + src.compute + " (" + g(peak_gflops) + " GFLOP/s)", pk));
  r.add(trials_metric("load.util.mbu", mbu, "fraction", Hi, R, behind,
                      "(weights once per step + KV attended) bytes/s in the " + window + " / " + src.memory + " (" + g(peak_gbs) +
                          " GB/s)",
                      pk));
  r.add(trials_metric("load.util.achieved_fraction", achieved, "fraction", Hi, R, behind,
                      "max(MFU, MBU) per trial: the work the batches actually run achieve against the machine limit that binds "
                      "them (compute or memory), measured peaks of this run",
                      pk));
  add_device_busy(r, runs, window, "", "the backend has no device clock (host backend: its busy time is load.util.busy_fraction)");
}

void add_workload_metrics(SuiteResult& r, const Measured& m, const std::string& wname) {
  const RunSummary& s = m.result.summary;
  const std::string k = "load." + metric_key_segments(wname) + ".";
  const std::string from = "nearest rank; from the scheduled arrival (no coordinated omission)";
  const std::string send = "nearest rank; from the moment the SUT sent the request (beside the scheduled-arrival figure)";
  r.add(run_metric(k + "ttft_ms_p50", s.ttft_ms.median, "ms", Lo, T, m, from));
  r.add(run_metric(k + "ttft_ms_p99", s.ttft_ms.p99, "ms", Lo, T, m, from));
  r.add(run_metric(k + "tpot_ms_p99", s.tpot_ms.p99, "ms", Lo, T, m, "(E2E - TTFT) / (output tokens - 1)"));
  r.add(run_metric(k + "e2e_ms_p99", s.e2e_ms.p99, "ms", Lo, T, m, from));
  r.add(run_metric(k + "ttft_from_send_ms_p50", s.ttft_from_send_ms.median, "ms", Lo, T, m, send));
  r.add(run_metric(k + "ttft_from_send_ms_p99", s.ttft_from_send_ms.p99, "ms", Lo, T, m, send));
  r.add(run_metric(k + "e2e_from_send_ms_p99", s.e2e_from_send_ms.p99, "ms", Lo, T, m, send));
  r.add(run_metric(k + "goodput_rps", s.goodput_rps, "req/s", Hi, T, m, "completed requests meeting every SLO limit / duration"));
  r.add(run_metric(k + "requests_per_s", s.requests_per_s, "req/s", Hi, T, m, "completed / duration"));
  r.add(run_metric(k + "error_fraction", s.issued ? double(s.failed) / double(s.issued) : 0.0, "fraction", Lo, T, m, ""));
}

double host_load_1m() {  // first field of /proc/loadavg; -1 when unreadable
  std::ifstream f("/proc/loadavg");
  double v = -1;
  f >> v;
  return f ? v : -1;
}

SuiteResult finish(SuiteResult r, LoadContext& lc) {
  if (r.params.contains("host")) r.params["host"]["load_avg_1m_end"] = host_load_1m();
  r.tables["sweep"] = lc.sweep_rows;
  r.tables["requests"] = lc.request_rows;
  r.params["runs"] = lc.runs;
  // The runs whose figures are metrics decide the suite's line; SLO-search trials that are invalid
  // (stopped early once the SLO was out of reach, or lagging) only count as failing trials.
  std::set<std::string> behind;
  for (const auto& m : r.metrics)
    if (m.params.contains("run")) behind.insert(m.params["run"].get<std::string>());
  json lines = json::object();
  json invalid = json::array(), invalid_behind = json::array();
  size_t invalid_trials = 0;
  for (auto& [label, e] : lc.runs.items()) {
    lines[label] = e["validity"]["line"];
    if (e["validity"]["valid"].get<bool>()) continue;
    invalid.push_back(label);
    if (behind.count(label)) invalid_behind.push_back(label);
    else if (label.find(".trial") != std::string::npos) ++invalid_trials;
  }
  r.params["validity"] = lines;
  r.params["invalid_runs"] = invalid;
  if (lc.request_rows_dropped) r.params["requests_table_rows_dropped"] = lc.request_rows_dropped;
  std::string line = invalid_behind.empty()
                         ? "load: VALID (every run behind a metric; " + std::to_string(lc.runs.size()) + " runs in all)"
                         : "load: INVALID runs behind metrics: " + invalid_behind.dump() + " (their metrics carry valid=false; see params.validity)";
  if (invalid_trials)
    line += "; " + std::to_string(invalid_trials) + " SLO-search trial(s) invalid (stopped early or lagging), counted as failing";
  r.params["validity_summary"] = line;
  if (lc.say) lc.say(line);
  return r;
}

void not_measured(SuiteResult& r, const std::vector<std::string>& keys, const std::string& why) {
  for (const auto& k : keys) r.params["not_measured"][k] = why;
}

// One request under the chosen profile, outside every timed window: a profile that does not fit
// the server (token ids sent to a text-only server, fixed-length fields it ignores) fails here,
// loudly, instead of as a run of errors or short requests. Returns what the probe saw.
json probe_server(const HttpSutOptions& ho) {
  HttpSut sut(ho);
  LoadRequest rq;
  for (int i = 0; i < 16; ++i) rq.prompt.push_back(97 + i % 26);  // "abcdefghijklmnop" as byte-level ids
  rq.max_tokens = 64;
  std::mutex m;
  std::condition_variable cv;
  bool done = false;
  int tokens = 0, reported = -1;
  std::string error;
  ErrorKind kind = ErrorKind::None;
  SutCallbacks cb;
  cb.on_tokens = [&](int n) {
    std::lock_guard lk(m);
    tokens += n;
  };
  cb.on_complete = [&](int r) {
    std::lock_guard lk(m);
    reported = r;
    done = true;
    cv.notify_all();
  };
  cb.on_error = [&](ErrorKind k, const std::string& msg) {
    std::lock_guard lk(m);
    kind = k;
    error = msg;
    done = true;
    cv.notify_all();
  };
  sut.issue(rq, cb);
  {
    std::unique_lock lk(m);
    if (!cv.wait_for(lk, std::chrono::seconds(60), [&] { return done; }))
      throw std::runtime_error("server profile '" + ho.profile.name + "': the probe request to " + ho.base_url +
                               " did not finish within 60 s");
  }
  const std::string p = "server profile '" + ho.profile.name + "' (" + (ho.profile.file.empty() ? "built in" : ho.profile.file.string()) + ")";
  if (kind != ErrorKind::None)
    throw std::runtime_error(p + " does not fit the server at " + ho.base_url + ": the probe request failed (" + to_string(kind) +
                             "): " + error + ". Pick the server's profile with --server-profile NAME (workloads/servers/), or omit it to detect.");
  const int got = reported >= 0 ? reported : tokens;
  json out = {{"max_tokens", rq.max_tokens}, {"tokens", got}, {"streamed_tokens", tokens}, {"usage_completion_tokens", reported}};
  if (got < rq.max_tokens) {
    if (!ho.profile.fixed_length_fields.empty())
      throw std::runtime_error(p + " does not fit the server at " + ho.base_url + ": the probe request stopped after " +
                               std::to_string(got) + " of " + std::to_string(rq.max_tokens) + " tokens although it sent " +
                               ho.profile.fixed_length_fields.dump() +
                               " to fix the output length: the server ignores those fields. Pick the server's profile with --server-profile NAME.");
    out["note"] = "the server cannot fix the output length (profile has no fixed_length_fields): requests that stop early count as short";
  }
  return out;
}

// Summaries of the sampled /metrics series over the saturation trials' steady windows.
void add_server_metrics(SuiteResult& r, const std::vector<Measured>& runs, const ServerProfile& prof,
                        const std::vector<const Measured*>& behind) {
  struct Key {
    const char* key;
    double MetricsSummary::*field;
    const char* unit;
    std::string series, what;
  };
  const ProfileMetrics& pm = prof.metrics;
  const std::string kv = pm.kv_usage + (pm.kv_usage_capacity.empty() ? "" : " / " + pm.kv_usage_capacity);
  const std::vector<Key> keys = {
      {"load.server.kv_usage_mean", &MetricsSummary::kv_usage_mean, "fraction", pm.kv_usage, "mean KV-cache usage (" + kv + ")"},
      {"load.server.kv_usage_peak", &MetricsSummary::kv_usage_peak, "fraction", pm.kv_usage, "peak KV-cache usage (" + kv + ")"},
      {"load.server.queue_depth_mean", &MetricsSummary::waiting_mean, "requests", pm.waiting, "mean queue depth (" + pm.waiting + ")"},
      {"load.server.running_mean", &MetricsSummary::running_mean, "requests", pm.running, "mean running requests (" + pm.running + ")"}};
  for (const auto& k : keys) {
    if (k.series.empty()) {
      not_measured(r, {k.key}, "server profile '" + prof.name + "' names no such series on " + pm.path);
      continue;
    }
    std::vector<double> v;
    for (const auto& m : runs)
      if (m.server_metrics && std::isfinite((*m.server_metrics).*k.field)) v.push_back((*m.server_metrics).*k.field);
    if (v.size() != runs.size()) {
      not_measured(r, {k.key},
                   "the server's " + pm.path + " did not answer with " + k.series + " during every saturation trial" +
                       (pm.needs.empty() ? std::string() : " (the server must be started with " + pm.needs + ")"));
      continue;
    }
    r.add(trials_metric(k.key, v, k.unit, Direction::Neutral, R, behind,
                        k.what + " sampled from the server's " + pm.path + " in the steady window of the saturating chat runs; "
                        "time series in params.runs.<run>.server_metrics",
                        json{{"series", k.series}, {"profile", prof.name}}));
  }
}

}  // namespace

SuiteResult run_load_suite(const SuiteContext& ctx) {
  if (ctx.driver == "locust") return run_locust_load(ctx);
  SuiteResult r;
  r.suite = "load";
  auto say = [&](const std::string& s) {
    if (ctx.progress) ctx.progress(s);
  };
  const bool http = ctx.sut.rfind("http://", 0) == 0;
  const bool inprocess = ctx.sut == "inprocess";
  if (!http && !inprocess && ctx.sut != "null") throw std::invalid_argument("--sut '" + ctx.sut + "': expected inprocess, null or http://HOST:PORT");
  r.params["sut"] = ctx.sut;
  r.params["driver"] = "native";
  r.params["quick"] = ctx.quick;
  r.params["seed"] = ctx.seed;
  r.params["workloads_dir"] = workloads_dir().string();
  r.params["omp_max_threads"] = omp_get_max_threads();
  // Latency on a shared machine is only as good as its quietness: record how busy the host was.
  const double load0 = host_load_1m();
  const unsigned cores = std::thread::hardware_concurrency();
  r.params["host"] = {{"cores", cores}, {"load_avg_1m_start", load0}};
  if (cores > 0 && load0 > double(cores))
    say("note: host load average " + g(load0) + " on " + std::to_string(cores) +
        " cores: other processes compete for the CPU; latency figures and issue lag will show it");

  const WorkloadSpec chat = load_workload("chat", ctx.quick);
  const WorkloadSpec burst = load_workload("burst", ctx.quick);
  const WorkloadSpec rt = load_workload("rt-service", ctx.quick);
  const WorkloadSpec lctx = load_workload("long-context", ctx.quick);
  r.params["workloads"] = {{"chat", chat.effective}, {"burst", burst.effective}, {"rt-service", rt.effective}, {"long-context", lctx.effective}};

  LoadContext lc;
  lc.inprocess = inprocess;
  lc.say = say;
  lc.plan.run_seed = ctx.seed;
  lc.run.drain_timeout_s = ctx.quick ? 15 : 120;

  std::unique_ptr<InProcessEngine> model;
  if (inprocess) {
    const EngineAccess* access = engine_access();
    if (!access) throw std::invalid_argument("--sut inprocess: " + no_engine_reason() + "; use --sut http://HOST:PORT");
    model = access->open(ctx.model_dir, ctx.backend);
    const ModelFacts& facts = model->facts();
    lc.plan.bos_token = facts.bos_token_id;
    lc.plan.max_context = facts.max_context;
    lc.plan.vocab_limit = std::min(256, facts.vocab_size);
    r.params["model"] = ctx.model_dir.filename().string();
    r.params["model_context"] = facts.max_context;
    lc.make_sut = [&](const InProcessConfig& c) { return model->make_sut(c); };
  }
  HttpSutOptions ho;
  ServerProfile profile;
  if (http) {
    ho.base_url = ctx.sut;
    // Which server this is: --server-profile when given (detection still runs, and is recorded
    // beside it), else detected. Outside every timed window.
    const std::vector<ServerProfile> builtin = builtin_server_profiles();
    auto [detected, identity] = detect_server_profile(ctx.sut, builtin);
    if (!ctx.server_profile.empty()) {
      profile = find_server_profile(ctx.server_profile);
      identity.chosen_by = "--server-profile " + ctx.server_profile + " (detection said " + detected.name + ": " + identity.chosen_by + ")";
      identity.profile = profile.name;
    } else {
      profile = detected;
    }
    ho.profile = profile;
    json prompt_text = "token ids sent as is";
    if (!profile.token_id_prompts) {
      const TextPrompts tp = make_text_prompts(ctx);
      ho.prompt_text = [f = tp.to_text](const std::vector<int32_t>& ids) { return valid_utf8(f(ids)); };
      lc.plan.to_text = tp.to_text;
      lc.plan.encode = tp.encode;
      lc.plan.vocab_limit = tp.vocab_size;  // draw from the whole vocabulary: text in the tokenizer's own pieces
      prompt_text = {{"mode", "text: seeded ids decoded by the tokenizer, prompt tokens counted by re-encoding the text"},
                     {"tokenizer", tp.describe}};
    }
    say("server: profile " + profile.name + ", " + identity.chosen_by);
    json server = identity.to_json();
    server["base_url"] = ctx.sut;
    server["profile_detail"] = profile_to_json(profile);
    server["prompt_text"] = prompt_text;
    server["probe"] = probe_server(ho);
    r.params["server"] = server;
    lc.make_sut = [ho](const InProcessConfig&) { return std::make_unique<HttpSut>(ho); };
    if (profile_has_series(profile.metrics)) {
      const double every = ctx.quick ? 0.25 : 0.5;
      const std::string url = ctx.sut;
      const ProfileMetrics pm = profile.metrics;
      lc.make_sampler = [url, pm, every] { return std::make_unique<MetricsSampler>(url, pm, every); };
      r.params["server"]["metrics_sampling"] = {{"interval_s", every}, {"path", pm.path}, {"needs", pm.needs}};
    } else {
      r.params["server"]["metrics_sampling"] = "none: the profile names no /metrics series";
    }
  }

  say("overhead: the load generator against the null SUT");
  measure_overhead(lc, chat, r, ctx.quick);
  const std::vector<std::string> claim_keys = {"load.util.busy_fraction",         "load.util.mfu",
                                               "load.util.mbu",                   "load.batch_gain.throughput_ratio",
                                               "load.rt_service.max_rate_rps",    "load.long_context.throughput_ratio",
                                               "load.kv.paged_vs_contiguous.reduction", "load.throughput.requests_per_s",
                                               "load.throughput.input_tokens_per_s", "load.throughput.output_tokens_per_s"};
  if (!inprocess && !http) {
    not_measured(r, claim_keys, "--sut null measures the load generator's own overhead only (load.overhead.*)");
    return finish(std::move(r), lc);
  }

  // Saturation: throughput and utilization (chat, closed loop).
  const int sat_conc = engine_int(chat, "saturation_concurrency", 64);
  const InProcessConfig adaptive = config_of(chat, "config", "adaptive");
  const InProcessConfig stat = config_of(chat, "baseline", "static");
  double peak_gflops = 0, peak_gbs = 0;
  PeakSource peak_src;
  std::string no_peaks;  // why MFU / MBU cannot be measured (no device peaks)
  if (inprocess && ctx.backend == "cuda") {
    // The engine runs on the GPU: its limits are the GPU's, measured on it now (never the host's).
    say("measuring the GPU's peaks for MFU / MBU (cb_cuda_bench --peaks-only)");
    std::filesystem::create_directories(ctx.run_dir / "raw");
    if (const auto dp = measure_cuda_peaks(ctx.run_dir / "raw" / "load_gpu_peaks.json", no_peaks)) {
      peak_gflops = dp->fp32_gflops;
      peak_gbs = dp->copy_gbs;
      peak_src.compute = "the GPU's FP32 GEMM rate measured in this run (the op table's f32 matmuls run FP32 cuBLASLt GEMMs)";
      peak_src.memory = "the GPU's device-to-device copy bandwidth (read + written) measured in this run";
      peak_src.detail = {{"source", dp->source}, {"gpu_fp32_gemm_gflops", dp->fp32_gflops}, {"gpu_bf16_gemm_gflops", dp->bf16_gflops},
                         {"gpu_copy_gbs", dp->copy_gbs}};
      r.params["gpu_peaks"] = peak_src.detail;
    }
  } else if (inprocess) {
    say("measuring machine peaks for MFU / MBU");
    peak_gflops = bench::measure_peak_fp32_fma(0, 0.2).value;
    peak_gbs = bench::measure_memory_read_bandwidth(0, 0, 0.2).value;
  }
  if (inprocess) {
    r.params["peak_fp32_gflops"] = peak_gflops;
    r.params["peak_mem_read_gbs"] = peak_gbs;
  }
  MeasureOptions sat;
  sat.concurrency = sat_conc;
  say("saturation: chat, closed loop at concurrency " + std::to_string(sat_conc) + ", " + std::to_string(kTrials) + " trials" +
      (inprocess ? " per policy, interleaved" : ""));
  std::vector<Measured> sat_a, sat_b;  // adaptive, static; trial k of both on seed + k
  // Power over each saturation run, where a sensor on this machine sees the SUT (energy-qps).
  // In-process the engine runs on the CPU backend: only CPU package power is its power. A server on
  // loopback may run on GPUs or CPUs: GPU board power first, else RAPL.
  PowerMeterOptions pmo;
  pmo.devices = inprocess && ctx.backend == "cpu" ? "cpu" : "any";
  LoadPower power(pmo, inprocess || (http && is_loopback_url(ctx.sut)), ctx.power_watts);
  std::vector<std::optional<double>> watts_a, watts_b;
  for (int t = 0; t < kTrials; ++t) {
    lc.plan.run_seed = ctx.seed + uint64_t(t);
    sat.table_workload = "chat saturation [" + adaptive.label + "]";
    power.begin();
    sat_a.push_back(measure(lc, chat, adaptive, "chat.saturation." + adaptive.label + ".t" + std::to_string(t), sat));
    watts_a.push_back(power.end());
    if (inprocess) {
      sat.table_workload = "chat saturation [" + stat.label + "]";
      power.begin();
      sat_b.push_back(measure(lc, chat, stat, "chat.saturation." + stat.label + ".t" + std::to_string(t), sat));
      watts_b.push_back(power.end());
    }
  }
  r.params["power"] = power.params();
  lc.plan.run_seed = ctx.seed;
  const json satp = {{"concurrency", sat_conc}, {"config", inprocess ? adaptive.to_json() : json("endpoint")}, {"window", "steady"}};
  const std::string satn = "steady window (warm-up and drain excluded) of the chat workload, closed loop at concurrency " +
                           std::to_string(sat_conc) + " (saturating); " +
                           (inprocess ? "adaptive (" + adaptive.policy + ") policy" : std::string("the endpoint's own configuration"));
  auto rates = [](const std::vector<Measured>& runs, double SteadyRates::*f) {
    std::vector<double> v;
    for (const auto& m : runs) v.push_back(steady_rates(m.result).*f);
    return v;
  };
  auto ptrs = [](const std::vector<Measured>& runs) {
    std::vector<const Measured*> v;
    for (const auto& m : runs) v.push_back(&m);
    return v;
  };
  r.add(trials_metric("load.throughput.requests_per_s", rates(sat_a, &SteadyRates::requests_per_s), "req/s", Hi, T, ptrs(sat_a), satn, satp));
  r.add(trials_metric("load.throughput.input_tokens_per_s", rates(sat_a, &SteadyRates::input_tokens_per_s), "tokens/s", Hi, T, ptrs(sat_a), satn, satp));
  r.add(trials_metric("load.throughput.output_tokens_per_s", rates(sat_a, &SteadyRates::output_tokens_per_s), "tokens/s", Hi, T, ptrs(sat_a), satn, satp));
  // Power: a metric only when every window of that configuration was measured.
  auto add_power = [&](const std::string& key, const std::vector<std::optional<double>>& w, const std::vector<Measured>& runs) {
    std::vector<double> v;
    for (const auto& x : w)
      if (x) v.push_back(*x);
    if (v.empty() || v.size() != runs.size()) return not_measured(r, {key}, "no power measured: " + power.params().value("why", std::string()));
    r.add(trials_metric(key, v, "W", Lo, T, ptrs(runs),
                        "average power over each saturation run (" + power.params().value("sensor", std::string()) + ")", satp));
  };
  add_power("load.power.avg_watts", watts_a, sat_a);
  if (inprocess) add_power("load.baseline.power.avg_watts", watts_b, sat_b);
  if (inprocess) {
    if (no_peaks.empty()) {
      add_utilization(r, sat_a, model->facts(), peak_gflops, peak_gbs, peak_src);
    } else {
      std::vector<double> busy;
      for (const auto& m : sat_a) busy.push_back(m.result.busy_fraction());
      r.add(trials_metric("load.util.busy_fraction", busy, "fraction", Hi, R, ptrs(sat_a),
                          "time inside the model's forward pass / wall time, steady-state window of the saturating chat run"));
      not_measured(r, {"load.util.mfu", "load.util.mbu", "load.util.achieved_fraction"}, "--backend cuda: " + no_peaks);
    }
    const json bp = {{"concurrency", sat_conc}, {"config", stat.to_json()}, {"window", "steady"}};
    r.add(trials_metric("load.baseline.requests_per_s", rates(sat_b, &SteadyRates::requests_per_s), "req/s", Hi, T, ptrs(sat_b),
                        "as load.throughput.requests_per_s with static batching (the baseline the cost suite compares with)", bp));
    r.add(trials_metric("load.baseline.output_tokens_per_s", rates(sat_b, &SteadyRates::output_tokens_per_s), "tokens/s", Hi, T,
                        ptrs(sat_b), "as load.throughput.output_tokens_per_s with static batching", bp));
  } else {
    // refengine serve publishes its engine counters on /metrics: the steady-window busy fraction
    // then has the in-process definition (the server's lifetime gauge refengine_busy_fraction is
    // another quantity, and is not stored under this key).
    std::vector<double> busy;
    for (const auto& m : sat_a) busy.push_back(m.result.busy_fraction());
    if (std::all_of(busy.begin(), busy.end(), [](double b) { return std::isfinite(b); })) {
      const json w = {{"source", "refengine_engine_busy_seconds_total from GET /metrics at the window's edges"}};
      r.add(trials_metric("load.util.busy_fraction", busy, "fraction", Hi, R, ptrs(sat_a),
                          "time inside the model's forward pass / wall time, steady-state window (after the first 20% of the issue "
                          "window, until issuing stops) of a closed-loop saturating chat run; engine counters scraped from the "
                          "server's /metrics at the window's edges",
                          w));
    } else {
      not_measured(r, {"load.util.busy_fraction"},
                   "the endpoint's /metrics has no engine busy-time counter (refengine_engine_busy_seconds_total)");
    }
    add_device_busy(r, sat_a, "steady-state window of a closed-loop saturating chat run",
                    "refengine_device_busy_seconds_total from GET /metrics at the window's edges",
                    "the endpoint's /metrics has no device busy-time counter (refengine_device_busy_seconds_total: refengine "
                    "serve on a device backend)");
    not_measured(r, {"load.util.mfu", "load.util.mbu", "load.util.achieved_fraction"},
                 "needs the engine's step counters: in-process SUT only");
    if (lc.make_sampler) add_server_metrics(r, sat_a, profile, ptrs(sat_a));
    else not_measured(r, {"load.server.kv_usage_mean", "load.server.kv_usage_peak", "load.server.queue_depth_mean", "load.server.running_mean"},
                      "server profile '" + profile.name + "' names no /metrics series");
  }

  // Batch gain: SLO search on chat, adaptive vs static.
  const SloSearchOptions chat_so = slo_search_options_from_json(chat.slo_search);
  if (inprocess) {
    say("batch gain: chat SLO search, " + adaptive.label + " vs " + stat.label + ", " + std::to_string(kTrials) + " trials");
    std::vector<double> ratios, ra, rb;
    json searches = json::array();
    std::string no_rate;
    for (int t = 0; t < kTrials; ++t) {
      lc.plan.run_seed = ctx.seed + uint64_t(t);
      const std::string tl = ".t" + std::to_string(t);
      const SloSearchResult sa = search_max_rate(lc, chat, adaptive, "chat.slo." + adaptive.label + tl, chat_so, "chat [" + adaptive.label + "]");
      const SloSearchResult sb = search_max_rate(lc, chat, stat, "chat.slo." + stat.label + tl, chat_so, "chat [" + stat.label + "]");
      searches.push_back({{adaptive.label, sa.to_json()}, {stat.label, sb.to_json()}, {"seed", lc.plan.run_seed}});
      ra.push_back(sa.max_rate_rps);
      rb.push_back(sb.max_rate_rps);
      if (sa.max_rate_rps > 0 && sb.max_rate_rps > 0) ratios.push_back(sa.max_rate_rps / sb.max_rate_rps);
      else if (no_rate.empty())
        no_rate = std::string("trial ") + std::to_string(t) + ": no passing rate for " + (sa.max_rate_rps > 0 ? stat.label : adaptive.label) +
                  " (" + (sa.max_rate_rps > 0 ? sb.stop_reason : sa.stop_reason) + ")";
    }
    lc.plan.run_seed = ctx.seed;
    r.params["batch_gain"] = {{"method", "ratio of the max offered rates meeting the chat SLO (SLO search per policy), per trial"},
                              {"slo", chat.slo.to_json()},
                              {"search", chat_so.to_json()},
                              {"trials", searches}};
    const json p = {{"slo", chat.slo.to_json()}, {"adaptive_max_rate_rps", ra}, {"static_max_rate_rps", rb},
                    {"adaptive", adaptive.to_json()}, {"static", stat.to_json()}, {"trials", ratios.size()}};
    if (no_rate.empty()) {
      r.add(Metric{"load.batch_gain.throughput_ratio", median(ratios), "x", Hi, R, ratios, p,
                   "max offered rate meeting the chat SLO (" + chat.slo.to_json().dump() + "), " + adaptive.policy +
                       " continuous batching / static batching, per trial (adaptive " + json(ra).dump() + " vs static " +
                       json(rb).dump() + " req/s); SLO search resolution " + g(chat_so.rel_tolerance * 100) +
                       "% [median of " + std::to_string(ratios.size()) + " trials, each on its own seed]"});
    } else {
      not_measured(r, {"load.batch_gain.throughput_ratio"}, no_rate);
    }
  } else {
    not_measured(r, {"load.batch_gain.throughput_ratio", "load.baseline.requests_per_s"},
                 "compares batching policies of one engine: needs control of the engine, in-process SUT only");
  }

  // rt-service: highest rate with p99 E2E within its SLO.
  const InProcessConfig rt_cfg = config_of(rt, "config", "adaptive");
  say("rt-service: SLO search (" + rt.slo.to_json().dump() + "), " + std::to_string(kTrials) + " trials");
  std::vector<double> rt_rates;
  json rt_searches = json::array();
  std::string rt_none;
  for (int t = 0; t < kTrials; ++t) {
    lc.plan.run_seed = ctx.seed + uint64_t(t);
    const SloSearchResult rs =
        search_max_rate(lc, rt, rt_cfg, "rt-service.slo.t" + std::to_string(t), slo_search_options_from_json(rt.slo_search), "rt-service");
    rt_searches.push_back(rs.to_json());
    if (rs.max_rate_rps > 0) rt_rates.push_back(rs.max_rate_rps);
    else if (rt_none.empty()) rt_none = "trial " + std::to_string(t) + ": no trial met the SLO: " + rs.stop_reason;
  }
  lc.plan.run_seed = ctx.seed;
  r.params["rt_service_search"] = rt_searches;
  if (rt_none.empty()) {
    const json p = {{"slo", rt.slo.to_json()}, {"trials", rt_rates.size()}, {"config", inprocess ? rt_cfg.to_json() : json("endpoint")}};
    r.add(Metric{"load.rt_service.max_rate_rps", median(rt_rates), "req/s", Hi, T, rt_rates, p,
                 "SLO search: highest offered Poisson rate whose p99 E2E stays under " + g(rt.slo.e2e_ms) +
                     " ms (valid runs only; searches in params.rt_service_search) [median of " + std::to_string(rt_rates.size()) +
                     " searches, each on its own seed]"});
  } else {
    not_measured(r, {"load.rt_service.max_rate_rps"}, rt_none);
  }

  // Representative runs at the spec rates (the "requests" table).
  for (const WorkloadSpec* w : {&chat, &burst, &rt}) {
    MeasureOptions mo;
    mo.requests_table = true;
    const InProcessConfig c = config_of(*w, "config", "adaptive");
    say(w->name + ": " + w->arrival.to_json().dump());
    const Measured m = measure(lc, *w, c, w->name + ".spec_rate", mo);
    add_workload_metrics(r, m, w->name);
    // The workload's rate sweep (full variants), into the same curve as its SLO-search trials.
    for (const auto& rate : w->sweep) {
      MeasureOptions so;
      so.rate_rps = rate.get<double>();
      so.table_workload = w->name + " [" + c.label + "]";
      measure(lc, *w, c, w->name + ".sweep@" + g(so.rate_rps), so);
    }
  }

  // Long context: engine config vs baseline config on the trace, replayed saturating.
  const int lc_conc = engine_int(lctx, "saturation_concurrency", 16);
  const InProcessConfig le = config_of(lctx, "config", "engine");
  const InProcessConfig lb = config_of(lctx, "baseline", "baseline");
  MeasureOptions lmo;
  lmo.concurrency = lc_conc;
  lmo.requests_table = true;
  lmo.table_workload = "long-context [" + le.label + "]";
  say("long-context: " + le.label + " config, closed loop at concurrency " + std::to_string(lc_conc));
  const Measured me = measure(lc, lctx, le, "long-context." + le.label, lmo);
  add_workload_metrics(r, me, "long-context");
  r.add(run_metric("load.long_context.output_tokens_per_s", me.result.summary.output_tokens_per_s, "tokens/s", Hi, T, me,
                   "long-context trace, closed loop at concurrency " + std::to_string(lc_conc) + "; " +
                       (inprocess ? le.label + " config " + le.to_json().dump() : std::string("the endpoint's configuration"))));
  if (inprocess) {
    lmo.requests_table = false;
    say("long-context: " + le.label + " vs " + lb.label + " config, " + std::to_string(kTrials) + " trials, interleaved");
    // Trial 0 reuses the run above; each further trial runs both configurations on its own seed.
    std::vector<Measured> eng, base;
    std::vector<double> ratios, base_tps;
    for (int t = 0; t < kTrials; ++t) {
      lc.plan.run_seed = ctx.seed + uint64_t(t);
      lmo.table_workload = "long-context [" + le.label + "]";
      if (t == 0) eng.push_back(me);
      else eng.push_back(measure(lc, lctx, le, "long-context." + le.label + ".t" + std::to_string(t), lmo));
      lmo.table_workload = "long-context [" + lb.label + "]";
      base.push_back(measure(lc, lctx, lb, "long-context." + lb.label + ".t" + std::to_string(t), lmo));
      const double eb = base.back().result.summary.output_tokens_per_s;
      base_tps.push_back(eb);
      ratios.push_back(eb > 0 ? eng.back().result.summary.output_tokens_per_s / eb : NAN);
    }
    lc.plan.run_seed = ctx.seed;
    std::vector<const Measured*> behind;
    for (int t = 0; t < kTrials; ++t) {
      behind.push_back(&eng[size_t(t)]);
      behind.push_back(&base[size_t(t)]);
    }
    const json p = {{"engine_config", le.to_json()}, {"baseline_config", lb.to_json()}, {"concurrency", lc_conc}};
    if (std::all_of(ratios.begin(), ratios.end(), [](double x) { return std::isfinite(x); }))
      r.add(trials_metric("load.long_context.throughput_ratio", ratios, "x", Hi, R, behind,
                          "output tokens/s on the long-context trace (closed loop, concurrency " + std::to_string(lc_conc) + "), engine (" +
                              le.label + ": " + (le.kv_mode == KvMode::Paged ? "paged KV" : "contiguous KV") + ", token budget " +
                              std::to_string(le.token_budget) + ", " + le.policy + ") / baseline (" + lb.label + ": " +
                              (lb.kv_mode == KvMode::Paged ? "paged KV" : "contiguous max-length KV reservation") +
                              ", token budget " + std::to_string(lb.token_budget) + ", " + lb.policy + " batching); same KV pool of " +
                              std::to_string(le.kv_pool_tokens) + " vs " + std::to_string(lb.kv_pool_tokens) + " tokens",
                          p));
    std::vector<const Measured*> bb;
    for (const auto& m : base) bb.push_back(&m);
    r.add(trials_metric("load.long_context.baseline_output_tokens_per_s", base_tps, "tokens/s", Hi, T, bb,
                        "baseline config " + lb.to_json().dump()));

    // KV reservation: the same adaptive engine, paged vs contiguous, on a pool that fits every
    // request's max-length reservation, so both admit the same requests and only reservation differs.
    InProcessConfig kp = le, kc = le;
    kp.label = "kv-paged";
    kc.label = "kv-contiguous";
    kc.kv_mode = KvMode::Contiguous;
    kc.contiguous_reserve = 0;  // the model's context
    const int pool = engine_int(lctx, "kv_compare_pool_tokens", lc_conc * lc.plan.max_context);
    kp.kv_pool_tokens = kc.kv_pool_tokens = pool;
    lmo.table_workload = "long-context [kv-paged]";
    const Measured kvp = measure(lc, lctx, kp, "long-context.kv-paged", lmo);
    lmo.table_workload = "long-context [kv-contiguous]";
    const Measured kvc = measure(lc, lctx, kc, "long-context.kv-contiguous", lmo);
    const auto pk = kvp.result.at_end->kv_bytes_reserved_peak, ck = kvc.result.at_end->kv_bytes_reserved_peak;
    const json kvpar = {{"pool_tokens", pool}, {"paged", kp.to_json()}, {"contiguous", kc.to_json()},
                        {"paged_reserved_peak_bytes", pk}, {"contiguous_reserved_peak_bytes", ck},
                        {"paged_used_peak_bytes", kvp.result.at_end->kv_bytes_used_peak},
                        {"contiguous_used_peak_bytes", kvc.result.at_end->kv_bytes_used_peak}};
    if (ck > 0)
      r.add(also_valid(run_metric("load.kv.paged_vs_contiguous.reduction", 1.0 - double(pk) / double(ck), "fraction", Hi, R, kvp,
                       "1 - peak KV bytes reserved (paged, " + std::to_string(kp.block_size) + "-token blocks) / (contiguous reservation of the "
                       "model context per sequence), long-context trace at concurrency " + std::to_string(lc_conc) +
                           ", same adaptive policy, pool large enough for both (EngineStats)",
                       kvpar),
                       kvc));
    r.add(run_metric("load.kv.paged.reserved_peak_bytes", double(pk), "bytes", Lo, R, kvp, "EngineStats peak", kvpar));
    r.add(run_metric("load.kv.contiguous.reserved_peak_bytes", double(ck), "bytes", Lo, R, kvc, "EngineStats peak", kvpar));
  } else {
    not_measured(r, {"load.long_context.throughput_ratio", "load.kv.paged_vs_contiguous.reduction"},
                 "compares engine configurations (KV layout, batching): needs control of the engine, in-process SUT only");
  }
  return finish(std::move(r), lc);
}

}  // namespace cb::harness
