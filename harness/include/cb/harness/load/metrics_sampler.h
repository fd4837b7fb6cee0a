// Samples a server's Prometheus series (the ones its ServerProfile names) during a measured load
// run: its own thread and its own keep-alive connection, outside the SUT's worker pool, so the
// scrapes take no connection or thread from the requests; each scrape's time and size is
// recorded so its cost is visible beside the figures it sits next to.
#pragma once

#include <atomic>
#include <chrono>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cb/harness/load/server_profile.h"

namespace cb::harness::load {

struct MetricsSample {
  double t_s = 0;  // seconds from the run's start (mark_run_start(); else the sampler's): < 0 before it
  double running = NAN, waiting = NAN, kv_usage = NAN;  // kv_usage as a 0..1 fraction
  double busy_seconds = NAN, prompt_tokens = NAN, generation_tokens = NAN;  // counters
  double scrape_ms = 0;  // how long the GET took
  size_t bytes = 0;      // its body size
  bool ok = false;       // answered 200
};

// One sample from a Prometheus text exposition (t_s, scrape_ms, bytes left 0).
MetricsSample parse_metrics_sample(const std::string& text, const ProfileMetrics& m);
// True when the profile names any series to sample.
bool profile_has_series(const ProfileMetrics& m);

struct MetricsSummary {
  size_t samples = 0;  // in the window
  double kv_usage_mean = NAN, kv_usage_peak = NAN, waiting_mean = NAN, waiting_peak = NAN, running_mean = NAN;
  nlohmann::json to_json() const;
};

class MetricsSampler {
 public:
  MetricsSampler(std::string base_url, ProfileMetrics m, double interval_s);
  ~MetricsSampler();
  void start();
  void stop();  // joins the thread; idempotent; puts the samples on the run's time base
  void mark_run_start();  // the run's time zero (RunOptions::on_start)
  const std::vector<MetricsSample>& samples() const { return samples_; }  // after stop()
  // Samples with a <= t_s < b (b <= a: all).
  MetricsSummary summary(double a, double b) const;
  // {"interval_s", "series" (the names), "columns", "rows" [[t, running, waiting, kv, busy,
  //  prompt, generation], ...], "scrape_cost": {...}, "failed_scrapes"}.
  nlohmann::json to_json() const;

 private:
  void loop();
  std::string url_;
  ProfileMetrics m_;
  double interval_s_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::vector<MetricsSample> samples_;
  std::chrono::steady_clock::time_point t0_{}, run_t0_{};
  std::atomic<bool> run_marked_{false};
  bool shifted_ = false;
  int failed_ = 0;
};

}  // namespace cb::harness::load
