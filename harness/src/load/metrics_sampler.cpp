#include "cb/harness/load/metrics_sampler.h"

#include <httplib.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>

#include "cb/harness/load/http_sut.h"

namespace cb::harness::load {
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {
double value_of(const std::string& text, const std::string& name) {
  if (name.empty()) return NAN;
  const auto v = prometheus_gauge(text, name);
  return v ? *v : NAN;
}
json num(double v) { return std::isfinite(v) ? json(v) : json(); }
}  // namespace

bool profile_has_series(const ProfileMetrics& m) {
  return !(m.running.empty() && m.waiting.empty() && m.kv_usage.empty() && m.busy_seconds.empty() && m.prompt_tokens.empty() &&
           m.generation_tokens.empty());
}

MetricsSample parse_metrics_sample(const std::string& text, const ProfileMetrics& m) {
  MetricsSample s;
  s.ok = true;
  s.running = value_of(text, m.running);
  s.waiting = value_of(text, m.waiting);
  s.kv_usage = value_of(text, m.kv_usage) * m.kv_usage_scale;
  if (!m.kv_usage_capacity.empty()) {
    const double cap = value_of(text, m.kv_usage_capacity);
    s.kv_usage = cap > 0 ? s.kv_usage / cap : NAN;
  }
  s.busy_seconds = value_of(text, m.busy_seconds);
  s.prompt_tokens = value_of(text, m.prompt_tokens);
  s.generation_tokens = value_of(text, m.generation_tokens);
  return s;
}

json MetricsSummary::to_json() const {
  return {{"samples", samples},           {"kv_usage_mean", num(kv_usage_mean)}, {"kv_usage_peak", num(kv_usage_peak)},
          {"waiting_mean", num(waiting_mean)}, {"waiting_peak", num(waiting_peak)}, {"running_mean", num(running_mean)}};
}

MetricsSampler::MetricsSampler(std::string base_url, ProfileMetrics m, double interval_s)
    : url_(std::move(base_url)), m_(std::move(m)), interval_s_(interval_s) {
  parse_http_url(url_);  // throws for a URL it cannot use
}

MetricsSampler::~MetricsSampler() { stop(); }

void MetricsSampler::start() {
  if (thread_.joinable()) return;
  stop_ = false;
  t0_ = Clock::now();
  thread_ = std::thread([this] { loop(); });
}

void MetricsSampler::mark_run_start() {
  run_t0_ = Clock::now();
  run_marked_ = true;
}

void MetricsSampler::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (run_marked_ && !shifted_) {
    shifted_ = true;
    const double offset = std::chrono::duration<double>(run_t0_ - t0_).count();
    for (auto& s : samples_) s.t_s -= offset;
  }
}

void MetricsSampler::loop() {
  const auto [host, port] = parse_http_url(url_);
  httplib::Client c(host, port);  // its own connection: none of the SUT's workers
  c.set_keep_alive(true);
  c.set_tcp_nodelay(true);
  c.set_connection_timeout(2, 0);
  c.set_read_timeout(2, 0);
  const auto t0 = t0_;
  auto next = t0;
  const auto step = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(interval_s_));
  while (!stop_) {
    const auto a = Clock::now();
    auto r = c.Get(m_.path);
    const auto b = Clock::now();
    MetricsSample s;
    if (r && r->status == 200) {
      s = parse_metrics_sample(r->body, m_);
      s.bytes = r->body.size();
    } else {
      ++failed_;
    }
    s.t_s = std::chrono::duration<double>(a - t0).count();
    s.scrape_ms = std::chrono::duration<double, std::milli>(b - a).count();
    samples_.push_back(s);
    next += step;
    // Sleep in short slices so stop() returns promptly.
    while (!stop_ && Clock::now() < next) std::this_thread::sleep_for(std::min<Clock::duration>(next - Clock::now(), std::chrono::milliseconds(20)));
  }
}

MetricsSummary MetricsSampler::summary(double a, double b) const {
  MetricsSummary out;
  double kv = 0, w = 0, r = 0;
  size_t nkv = 0, nw = 0, nr = 0;
  for (const auto& s : samples_) {
    if (!s.ok || (b > a && (s.t_s < a || s.t_s >= b))) continue;
    ++out.samples;
    if (std::isfinite(s.kv_usage)) {
      kv += s.kv_usage;
      ++nkv;
      out.kv_usage_peak = std::isfinite(out.kv_usage_peak) ? std::max(out.kv_usage_peak, s.kv_usage) : s.kv_usage;
    }
    if (std::isfinite(s.waiting)) {
      w += s.waiting;
      ++nw;
      out.waiting_peak = std::isfinite(out.waiting_peak) ? std::max(out.waiting_peak, s.waiting) : s.waiting;
    }
    if (std::isfinite(s.running)) {
      r += s.running;
      ++nr;
    }
  }
  if (nkv) out.kv_usage_mean = kv / double(nkv);
  if (nw) out.waiting_mean = w / double(nw);
  if (nr) out.running_mean = r / double(nr);
  return out;
}

json MetricsSampler::to_json() const {
  json rows = json::array();
  std::vector<double> ms;
  size_t bytes = 0;
  for (const auto& s : samples_) {
    ms.push_back(s.scrape_ms);
    bytes += s.bytes;
    rows.push_back({s.t_s, num(s.running), num(s.waiting), num(s.kv_usage), num(s.busy_seconds), num(s.prompt_tokens),
                    num(s.generation_tokens)});
  }
  std::sort(ms.begin(), ms.end());
  double total = 0;
  for (double x : ms) total += x;
  json series = {{"path", m_.path}};
  for (const auto& [k, v] : {std::pair{"running", m_.running}, std::pair{"waiting", m_.waiting}, std::pair{"kv_usage", m_.kv_usage},
                             std::pair{"kv_usage_capacity", m_.kv_usage_capacity}, std::pair{"busy_seconds", m_.busy_seconds},
                             std::pair{"prompt_tokens", m_.prompt_tokens}, std::pair{"generation_tokens", m_.generation_tokens}})
    if (!v.empty()) series[k] = v;
  return {{"interval_s", interval_s_},
          {"series", series},
          {"columns", {"t_s", "running", "waiting", "kv_usage_fraction", "busy_seconds_total", "prompt_tokens_total", "generation_tokens_total"}},
          {"rows", rows},
          {"failed_scrapes", failed_},
          {"scrape_cost",
           {{"how", "one GET per sample on the sampler's own keep-alive connection and thread, outside the SUT's worker pool"},
            {"scrapes", ms.size()},
            {"ms_total", total},
            {"ms_median", ms.empty() ? json() : json(ms[ms.size() / 2])},
            {"ms_max", ms.empty() ? json() : json(ms.back())},
            {"bytes_total", bytes}}}};
}

}  // namespace cb::harness::load
