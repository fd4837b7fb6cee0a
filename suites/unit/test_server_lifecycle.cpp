// The server's lifecycle and observability: drain finishes in-flight streams while refusing new
// work, a client hanging up aborts its request in the engine, and /metrics is valid Prometheus
// text (checked by promtool when it is installed).
#include <atomic>
#include <climits>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <set>
#include <sstream>
#include <cstring>
#include <thread>

#include <unistd.h>

#include <gtest/gtest.h>

#include "cb/engine/serving/batch_policy.h"
#include "test_server_util.h"

using namespace cb::engine;
using namespace cb::engine::testing;

namespace {

bool wait_for(const std::function<bool()>& cond, int ms = 10000) {
  for (int i = 0; i < ms; ++i) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return cond();
}

std::string metrics_text(const Running& r) {
  auto res = r.client()->Get("/metrics");
  return res && res->status == 200 ? res->body : "";
}

// Every sample line belongs to a metric with HELP and TYPE, named refengine_*; promtool, when
// installed, finds nothing to say. Returns false (after the hand checks) when promtool is missing.
bool expect_valid_prometheus_text(const std::string& m) {
  std::istringstream in(m);
  std::string line;
  std::set<std::string> typed;
  while (std::getline(in, line)) {
    if (line.rfind("# TYPE ", 0) == 0) typed.insert(line.substr(7, line.find(' ', 7) - 7));
    if (line.empty() || line[0] == '#') continue;
    std::string name = line.substr(0, line.find_first_of("{ "));
    for (const char* suffix : {"_bucket", "_sum", "_count"})
      if (!typed.count(name) && name.size() > strlen(suffix) && name.ends_with(suffix)) name.resize(name.size() - strlen(suffix));
    EXPECT_TRUE(typed.count(name)) << "no # TYPE before: " << line;
    EXPECT_EQ(name.rfind("refengine_", 0), 0u) << line;
  }
  const char* promtool = "/usr/bin/promtool";
  if (!std::filesystem::exists(promtool)) return false;
  const auto path = std::filesystem::temp_directory_path() / ("refengine-metrics-" + std::to_string(getpid()) + ".txt");
  std::ofstream(path) << m;
  const std::string cmd = std::string(promtool) + " check metrics < " + path.string() + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr);
  if (p == nullptr) return true;
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof buf, p)) out += buf;
  const int rc = pclose(p);
  std::filesystem::remove(path);
  EXPECT_EQ(rc, 0) << "promtool check metrics:\n" << out;
  EXPECT_EQ(out, "") << "promtool lint findings";
  return true;
}

// An engine slowed to >= 5 ms per step, so a request is still in flight while the test acts.
ServerOptions slowed() {
  ServerOptions o = small_options();
  o.step_delay_s = 0.005;
  return o;
}

TEST(ServerLifecycle, DrainFinishesInFlightStreamsAndRefusesNewWork) {
  Running r(slowed());
  std::atomic<int> reads{0};
  auto streamed = std::async(std::launch::async, [&] {
    return stream_completion(r, R"({"prompt":"long","max_tokens":100,"ignore_eos":true,"stream":true})", [&](const Stream&) {
      ++reads;
      return true;
    });
  });
  ASSERT_TRUE(wait_for([&] { return reads.load() > 0; })) << "the stream started";
  auto drained = std::async(std::launch::async, [&] { r.server->drain(); });
  ASSERT_TRUE(wait_for([&] { return r.server->draining(); }));
  // While the stream runs, the server answers but takes nothing new.
  auto c = r.client();
  auto health = c->Get("/health");
  ASSERT_TRUE(health) << "still listening while draining";
  EXPECT_EQ(health->status, 503);
  auto refused = c->Post("/v1/completions", R"({"prompt":"x","max_tokens":2})", "application/json");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 503);
  EXPECT_EQ(json::parse(refused->body)["error"]["code"], "draining");
  EXPECT_GT(r.server->engine().outstanding(), 0) << "the stream was still running when new work was refused";

  drained.get();
  const Stream s = streamed.get();
  EXPECT_EQ(s.status, 200);
  ASSERT_GE(s.events.size(), 2u);
  EXPECT_EQ(s.events.back(), "[DONE]") << "the stream completed";
  const json usage = json::parse(s.events[s.events.size() - 2]);
  EXPECT_EQ(usage["usage"]["completion_tokens"], 100) << "all tokens were generated and sent";
  EXPECT_FALSE(r.server->running()) << "drain stops the listener at the end";
  r.server->wait();
}

TEST(ServerLifecycle, ClientHangupAbortsTheRequestInTheEngine) {
  Running r(slowed());
  const Stream s = stream_completion(r, R"({"prompt":"bye","max_tokens":2000,"ignore_eos":true,"stream":true})",
                                     [](const Stream& st) { return st.events.size() < 3; });
  EXPECT_GE(s.events.size(), 3u);
  EXPECT_TRUE(wait_for([&] { return r.server->engine().outstanding() == 0; }, 10000))
      << "the engine stopped generating for the departed client";
  EXPECT_LT(r.server->engine().stats().decode_tokens, 1000) << "stopped long before max_tokens (2000 steps >= 10 s)";
  EXPECT_NE(metrics_text(r).find("refengine_completion_finish_total{reason=\"abort\"} 1"), std::string::npos);
  auto [ok, j] = r.complete(R"({"prompt":"still here","max_tokens":2})");
  EXPECT_EQ(ok, 200) << j.dump();
}

// A stream queued behind a running request, whose client hangs up while it waits. httplib shows a
// handler that its client left only when a write fails, and a queued stream had nothing to write
// until its first token: it stayed queued, then was computed, until the request ahead finished.
// The keep-alive comment is such a write. Shown both ways: with it the request leaves the queue
// while the one ahead is still running; without it (0) it is still queued seconds later.
bool queued_stream_left_while_the_one_ahead_runs(double keepalive_s) {
  ServerOptions o = slowed();
  o.engine.custom_policy = make_queue_table_policy({{INT_MAX, 1}});  // one sequence at a time
  o.sse_keepalive_s = keepalive_s;
  Running r(std::move(o));
  std::atomic<int> ahead_reads{0};
  std::atomic<bool> ahead_leave{false};
  auto ahead = std::async(std::launch::async, [&] {
    return stream_completion(r, R"({"prompt":"ahead","max_tokens":2000,"ignore_eos":true,"stream":true})", [&](const Stream&) {
      ++ahead_reads;
      return !ahead_leave.load();
    });
  });
  EXPECT_TRUE(wait_for([&] { return ahead_reads.load() > 0; })) << "the request ahead is running";
  std::atomic<bool> queued_leave{false};
  auto queued = std::async(std::launch::async, [&] {
    return stream_completion(r, R"({"prompt":"behind","max_tokens":5,"ignore_eos":true,"stream":true})",
                             [&](const Stream&) { return !queued_leave.load(); });
  });
  EXPECT_TRUE(wait_for([&] { return r.server->engine().waiting() == 1; })) << "the second request is queued";
  queued_leave = true;
  // The client of the queued request leaves at its first read (the first keep-alive comment, or
  // never without one): its connection is closed from this side now.
  bool left = false;
  if (keepalive_s > 0) {
    const Stream s = queued.get();
    EXPECT_TRUE(s.events.empty()) << "no token was sent to the queued request";
    EXPECT_GE(s.comments, 1);
    left = wait_for([&] { return r.server->engine().waiting() == 0; }, 5000);
    EXPECT_NE(metrics_text(r).find("refengine_completion_finish_total{reason=\"abort\"} 1"), std::string::npos);
  } else {
    std::this_thread::sleep_for(std::chrono::seconds(2));
    left = r.server->engine().waiting() == 0;
  }
  EXPECT_LT(r.server->engine().stats().decode_tokens, 1000) << "the request ahead was still running (2000 steps >= 10 s)";
  ahead_leave = true;
  ahead.get();
  EXPECT_TRUE(wait_for([&] { return r.server->engine().outstanding() == 0; }, 20000));
  if (keepalive_s == 0) queued.get();  // its client is woken by its first token, then leaves
  return left;
}

TEST(ServerLifecycle, QueuedStreamWhoseClientLeftLeavesTheQueue) {
  EXPECT_TRUE(queued_stream_left_while_the_one_ahead_runs(0.2));
  EXPECT_FALSE(queued_stream_left_while_the_one_ahead_runs(0)) << "without keep-alive comments the hang-up is not seen while queued";
}

TEST(ServerLifecycle, MetricsAreValidPrometheusTextAfterTraffic) {
  Running r;
  for (int i = 0; i < 3; ++i) ASSERT_EQ(r.complete(R"({"prompt":"abc","max_tokens":5,"ignore_eos":true})").first, 200);
  stream_completion(r, R"({"prompt":"abc","max_tokens":5,"stream":true})");
  ASSERT_EQ(r.complete(R"({"prompt":"abc","max_tokens":0})").first, 400);
  // Counters and gauges settle after the client is answered: the HTTP counter is bumped after a
  // response is written (the streamed one's handler can finish after the 400 sent behind it: a
  // CI run saw 200 at 3 with 400 at 1), and the scheduler frees the last sequence's KV blocks
  // and batch slot after its final token is sent (under load the gauges lagged). So wait until
  // every expected line shows, then report any that never did.
  const std::vector<std::string> wants = {
      "# TYPE refengine_time_to_first_token_seconds histogram",
      "refengine_time_to_first_token_seconds_bucket{le=\"+Inf\"} 4",
      "refengine_time_to_first_token_seconds_count 4",
      "# TYPE refengine_time_per_output_token_seconds histogram",
      "# TYPE refengine_e2e_request_latency_seconds histogram",
      "refengine_e2e_request_latency_seconds_count 4",
      "refengine_http_requests_total{endpoint=\"/v1/completions\",code=\"200\"} 4",
      "refengine_http_requests_total{endpoint=\"/v1/completions\",code=\"400\"} 1",
      "refengine_generation_tokens_total 20",
      "refengine_prompt_tokens_total 16",
      "# TYPE refengine_queue_length gauge",
      "refengine_running_batch_size 0",
      "refengine_kv_blocks_used 0",
      "refengine_kv_blocks_free 256",
      "refengine_kv_blocks_capacity 256",
      "# TYPE refengine_busy_fraction gauge",
  };
  std::string m;
  wait_for([&] {
    m = metrics_text(r);
    for (const auto& want : wants)
      if (m.find(want) == std::string::npos) return false;
    return true;
  }, 5000);
  ASSERT_FALSE(m.empty());
  for (const auto& want : wants)
    EXPECT_NE(m.find(want), std::string::npos) << "missing: " << want << "\n" << m;
  // The device busy counter is a GPU's own clock: a cpu engine publishes none (not a copy of the
  // host-side busy time).
  EXPECT_EQ(m.find("refengine_device_busy_seconds_total"), std::string::npos) << m;
  if (!expect_valid_prometheus_text(m))
    GTEST_SKIP() << "promtool not installed (Debian package 'prometheus'): format checked above only";
}

// serve --step-graphs on a host backend: /metrics says the steps cannot be recorded and why, and
// counts none (the cpu backend runs each op when called).
TEST(ServerLifecycle, StepGraphMetricsSayWhyNothingIsRecordedOnCpu) {
  ServerOptions o = small_options();
  o.step_graphs = true;
  Running r(std::move(o));
  ASSERT_EQ(r.complete(R"({"prompt":"abc","max_tokens":4,"ignore_eos":true})").first, 200);
  const std::string m = metrics_text(r);
  EXPECT_NE(m.find("\nrefengine_step_graphs_recordable{reason=\"backend cpu runs each op when it is called (there is "
                   "no queue of work to record)\"} 0\n"),
            std::string::npos)
      << m;
  for (const char* want : {"refengine_step_graph_recordings_total 0", "refengine_step_graph_replays_total 0",
                           "refengine_step_graph_steps_as_usual_total 0", "refengine_step_graph_failed_recordings_total 0",
                           "refengine_step_graph_evictions_total 0"})
    EXPECT_NE(m.find(want), std::string::npos) << "missing: " << want << "\n" << m;
  expect_valid_prometheus_text(m);
  // Without the flag there is no step-graph series at all.
  Running plain;
  EXPECT_EQ(metrics_text(plain).find("refengine_step_graph"), std::string::npos);
}

// The step-graph series as a GPU engine would publish them: counts from the model's statistics,
// the failure reason escaped as a label value, and valid text.
TEST(ServerLifecycle, StepGraphMetricsCarryTheModelsCounts) {
  EngineStats s;
  Model::StepGraphStats g;
  g.enabled = true;
  g.captures = 3;
  g.replays = 58;
  g.eager_steps = 4;
  g.failed_captures = 1;
  g.evictions = 2;
  g.last_failure = "capture invalidated: \"cudaMalloc\" while capturing\nat step 9";
  s.step_graphs = g;
  const std::string m = ServerMetrics().render(s, ServerGauges{});
  for (const char* want : {"refengine_step_graphs_recordable 1\n", "refengine_step_graph_recordings_total 3\n",
                           "refengine_step_graph_replays_total 58\n", "refengine_step_graph_steps_as_usual_total 4\n",
                           "refengine_step_graph_failed_recordings_total 1\n", "refengine_step_graph_evictions_total 2\n",
                           "refengine_step_graph_last_failure{reason=\"capture invalidated: \\\"cudaMalloc\\\" while "
                           "capturing\\nat step 9\"} 1\n"})
    EXPECT_NE(m.find(want), std::string::npos) << "missing: " << want << "\n" << m;
  expect_valid_prometheus_text(m);
}

}  // namespace
