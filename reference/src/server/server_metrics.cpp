#include "cb/engine/server/server_metrics.h"

#include <charconv>
#include <cmath>

namespace cb::engine {

namespace {

// Shortest round-trip decimal; Prometheus spells the infinities +Inf / -Inf and NaN as NaN.
std::string num(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, res.ptr);
}

void header(std::string& out, const std::string& name, const std::string& type, const std::string& help) {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

void sample(std::string& out, const std::string& name, double v, const std::string& labels = "") {
  out += name + (labels.empty() ? "" : "{" + labels + "}") + " " + num(v) + "\n";
}

void gauge(std::string& out, const std::string& name, const std::string& help, double v) {
  header(out, name, "gauge", help);
  sample(out, name, v);
}

void counter(std::string& out, const std::string& name, const std::string& help, double v) {
  header(out, name, "counter", help);
  sample(out, name, v);
}

// Label values: escape backslash, double quote and newline as the format requires.
std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '\\') o += "\\\\";
    else if (c == '"') o += "\\\"";
    else if (c == '\n') o += "\\n";
    else o += c;
  }
  return o;
}

// Latency buckets (seconds): 1 ms .. 60 s, dense where the tiny CPU model lands.
std::vector<double> latency_buckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10, 20, 60};
}
std::vector<double> token_buckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5};
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += v;
  ++count_;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& help) const {
  header(out, name, "histogram", help);
  int64_t cum = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cum += counts_[i];
    const std::string le = i < bounds_.size() ? num(bounds_[i]) : "+Inf";
    sample(out, name + "_bucket", double(cum), "le=\"" + le + "\"");
  }
  sample(out, name + "_sum", sum_);
  sample(out, name + "_count", double(count_));
}

ServerMetrics::ServerMetrics() : ttft_(latency_buckets()), tpot_(token_buckets()), e2e_(latency_buckets()) {}

void ServerMetrics::count_response(const std::string& path, int status) {
  static const char* known[] = {"/v1/completions", "/v1/models", "/health", "/metrics"};
  std::string p = "other";
  for (const char* k : known)
    if (path == k) p = k;
  std::lock_guard lk(m_);
  ++responses_[{p, status}];
}

int64_t ServerMetrics::responses(const std::string& path, int status) const {
  std::lock_guard lk(m_);
  auto it = responses_.find({path, status});
  return it == responses_.end() ? 0 : it->second;
}

void ServerMetrics::observe_completion(double ttft, double tpot, double e2e, int prompt_tokens, int completion_tokens,
                                       const std::vector<std::string>& finish_reasons) {
  std::lock_guard lk(m_);
  if (ttft >= 0) ttft_.observe(ttft);
  if (tpot >= 0) tpot_.observe(tpot);
  e2e_.observe(e2e);
  prompt_tokens_ += prompt_tokens;
  completion_tokens_ += completion_tokens;
  ++completions_;
  for (const auto& r : finish_reasons) ++finish_[r.rfind("error", 0) == 0 ? "error" : r];
}

std::string ServerMetrics::render(const EngineStats& s, const ServerGauges& g) const {
  std::string out;
  out.reserve(8192);
  {
    std::lock_guard lk(m_);
    header(out, "refengine_http_requests_total", "counter", "HTTP responses sent, by endpoint and status code.");
    for (const auto& [k, v] : responses_)
      sample(out, "refengine_http_requests_total", double(v), "endpoint=\"" + esc(k.first) + "\",code=\"" + std::to_string(k.second) + "\"");
    header(out, "refengine_completion_finish_total", "counter", "Completion samples finished, by finish reason.");
    for (const auto& [k, v] : finish_) sample(out, "refengine_completion_finish_total", double(v), "reason=\"" + esc(k) + "\"");
    counter(out, "refengine_completions_total", "Completion requests finished (any outcome).", double(completions_));
    counter(out, "refengine_prompt_tokens_total", "Prompt tokens of finished completion requests.", double(prompt_tokens_));
    counter(out, "refengine_generation_tokens_total", "Tokens generated for finished completion requests.", double(completion_tokens_));
    ttft_.render(out, "refengine_time_to_first_token_seconds", "Time from request receipt to its first generated token.");
    tpot_.render(out, "refengine_time_per_output_token_seconds",
                 "Per request: (end-to-end - TTFT) / (generated tokens - 1); requests with fewer than 2 tokens are not observed.");
    e2e_.render(out, "refengine_e2e_request_latency_seconds", "Time from request receipt to its last token.");
  }
  gauge(out, "refengine_queue_length", "Requests accepted and waiting to start (server queue + engine queue).", g.waiting);
  gauge(out, "refengine_queue_capacity", "Admission limit on waiting requests (--max-queue); past it requests get 429.", g.max_queue);
  gauge(out, "refengine_requests_in_flight", "Completion requests being served by the HTTP side.", g.in_flight);
  gauge(out, "refengine_running_requests", "Requests with KV in the cache, being stepped.", s.running);
  gauge(out, "refengine_running_batch_size", "Sequences (samples) of the running requests.", s.running_seqs);
  gauge(out, "refengine_kv_blocks_used", "KV cache blocks referenced by sequences.", s.blocks.used_blocks);
  gauge(out, "refengine_kv_blocks_free", "KV cache blocks allocatable now (free + evictable cached prefixes).",
        s.blocks.free_blocks + s.blocks.cached_blocks);
  gauge(out, "refengine_kv_blocks_capacity", "KV cache blocks in the pool.", s.blocks.num_blocks);
  gauge(out, "refengine_busy_fraction", "Fraction of wall time since the first request spent in the forward pass.",
        s.wall_seconds > 0 ? s.busy_seconds / s.wall_seconds : 0);
  counter(out, "refengine_engine_busy_seconds_total", "Seconds spent in the model's forward pass.", s.busy_seconds);
  if (s.device_busy_seconds)  // device backends only: the GPU's own time in those passes (CUDA events)
    counter(out, "refengine_device_busy_seconds_total", "Seconds the device spent on the forward passes' work, timed on the device.",
            *s.device_busy_seconds);
  counter(out, "refengine_engine_steps_total", "Engine steps run.", double(s.steps));
  counter(out, "refengine_engine_prefill_tokens_total", "Prompt tokens computed by the engine (recomputation included).",
          double(s.prefill_tokens));
  counter(out, "refengine_engine_decode_tokens_total", "Decode tokens computed by the engine.", double(s.decode_tokens));
  counter(out, "refengine_engine_preemptions_total", "Requests preempted (KV freed, recomputed later).", double(s.preemptions));
  counter(out, "refengine_prefix_cache_hits_total", "KV blocks reused from the prefix cache.", double(s.blocks.prefix_hits));
  if (s.step_graphs) {  // serve --step-graphs
    const Model::StepGraphStats& g = *s.step_graphs;
    header(out, "refengine_step_graphs_recordable", "gauge",
           "1 when decode steps can be recorded and replayed (CUDA graphs), else 0 with the reason.");
    sample(out, "refengine_step_graphs_recordable", g.unavailable.empty() ? 1 : 0,
           g.unavailable.empty() ? "" : "reason=\"" + esc(g.unavailable) + "\"");
    counter(out, "refengine_step_graph_recordings_total", "Decode step shapes recorded.", double(g.captures));
    counter(out, "refengine_step_graph_replays_total", "Decode steps replayed from a recording.", double(g.replays));
    counter(out, "refengine_step_graph_steps_as_usual_total",
            "Qualifying decode steps run op by op (the first of their shape, or one whose recording failed).",
            double(g.eager_steps));
    counter(out, "refengine_step_graph_failed_recordings_total", "Recordings that failed (the step ran as usual).",
            double(g.failed_captures));
    counter(out, "refengine_step_graph_evictions_total",
            "Recordings dropped, least recently replayed first, to stay under the cap on recordings kept.",
            double(g.evictions));
    if (!g.last_failure.empty()) {
      header(out, "refengine_step_graph_last_failure", "gauge", "Why the latest recording failed (value always 1).");
      sample(out, "refengine_step_graph_last_failure", 1, "reason=\"" + esc(g.last_failure) + "\"");
    }
  }
  gauge(out, "refengine_draining", "1 while the server drains (no new requests), else 0.", g.draining ? 1 : 0);
  header(out, "refengine_info", "gauge", "The served model and batch policy (value always 1).");
  sample(out, "refengine_info", 1, "model=\"" + esc(g.model) + "\",policy=\"" + esc(g.policy) + "\"");
  return out;
}

}  // namespace cb::engine
