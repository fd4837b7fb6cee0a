// The server's Prometheus metrics (text exposition format 0.0.4): request counters by endpoint and
// status code, latency histograms (TTFT, time per output token, end-to-end), token counters, and
// engine gauges read from an EngineStats snapshot at scrape time. Every name starts `refengine_`.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "cb/engine/serving/serving_engine.h"

namespace cb::engine {

// A cumulative histogram with fixed upper bounds (seconds); +Inf is implicit.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  // Appends # HELP, # TYPE and the _bucket / _sum / _count lines.
  void render(std::string& out, const std::string& name, const std::string& help) const;
  int64_t count() const { return count_; }

 private:
  std::vector<double> bounds_;
  std::vector<int64_t> counts_;  // per bucket (not cumulative); the last one is +Inf
  double sum_ = 0;
  int64_t count_ = 0;
};

// What the server knows at scrape time besides the engine's snapshot.
struct ServerGauges {
  int waiting = 0;     // EngineLoop::waiting()
  int max_queue = 0;
  int in_flight = 0;   // completions being served (HTTP side)
  bool draining = false;
  std::string model, policy;
};

class ServerMetrics {
 public:
  ServerMetrics();
  // Every HTTP response; paths outside the API are counted as "other" (bounded label set).
  void count_response(const std::string& path, int status);
  // One finished completion. tpot < 0 when it produced fewer than two tokens (not observed).
  void observe_completion(double ttft, double tpot, double e2e, int prompt_tokens, int completion_tokens,
                          const std::vector<std::string>& finish_reasons);
  std::string render(const EngineStats& s, const ServerGauges& g) const;

  int64_t responses(const std::string& path, int status) const;  // for tests

 private:
  mutable std::mutex m_;
  std::map<std::pair<std::string, int>, int64_t> responses_;
  std::map<std::string, int64_t> finish_;
  Histogram ttft_, tpot_, e2e_;
  int64_t prompt_tokens_ = 0, completion_tokens_ = 0, completions_ = 0;
};

}  // namespace cb::engine
