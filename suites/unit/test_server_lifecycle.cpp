// The server's lifecycle and observability: drain finishes in-flight streams while refusing new
// work, a client hanging up aborts its request in the engine, and /metrics is valid Prometheus
// text (checked by promtool when it is installed).
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <set>
#include <sstream>
#include <cstring>
#include <thread>

#include <gtest/gtest.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

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

TEST(ServerLifecycle, MetricsAreValidPrometheusTextAfterTraffic) {
  Running r;
  for (int i = 0; i < 3; ++i) ASSERT_EQ(r.complete(R"({"prompt":"abc","max_tokens":5,"ignore_eos":true})").first, 200);
  stream_completion(r, R"({"prompt":"abc","max_tokens":5,"stream":true})");
  ASSERT_EQ(r.complete(R"({"prompt":"abc","max_tokens":0})").first, 400);
  // The HTTP counter is bumped after a response is written: wait until the last one shows. The
  // latency histograms need no wait: the server records a completion before it wakes the client
  // (server.cpp), so the streamed request is counted once its stream has ended.
  std::string m;
  wait_for([&] {
    m = metrics_text(r);
    return m.find("code=\"400\"} 1") != std::string::npos;
  }, 2000);
  ASSERT_FALSE(m.empty());
  for (const char* want : {
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
       })
    EXPECT_NE(m.find(want), std::string::npos) << "missing: " << want << "\n" << m;
  // Every sample line belongs to a metric with HELP and TYPE.
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
  if (!std::filesystem::exists(promtool)) GTEST_SKIP() << "promtool not installed (Debian package 'prometheus'): format checked above only";
  const auto path = std::filesystem::temp_directory_path() / ("refengine-metrics-" + std::to_string(r.port) + ".txt");
  std::ofstream(path) << m;
  const std::string cmd = std::string(promtool) + " check metrics < " + path.string() + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof buf, p)) out += buf;
  const int rc = pclose(p);
  std::filesystem::remove(path);
  EXPECT_EQ(rc, 0) << "promtool check metrics:\n" << out;
  EXPECT_EQ(out, "") << "promtool lint findings";
}

// The accept backlog of the TCP listener on `port` as the kernel reports it (what `ss -ltn` shows
// as Send-Q), through NETLINK_SOCK_DIAG; -1 if not found.
int listen_backlog(int port) {
  const int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) return -1;
  struct {
    nlmsghdr nlh;
    inet_diag_req_v2 req;
  } msg{};
  msg.nlh.nlmsg_len = sizeof msg;
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  msg.req.sdiag_family = AF_INET;
  msg.req.sdiag_protocol = IPPROTO_TCP;
  msg.req.idiag_states = 1u << TCP_LISTEN;
  int backlog = -1;
  if (send(fd, &msg, sizeof msg, 0) == ssize_t(sizeof msg)) {
    alignas(nlmsghdr) char buf[16384];
    for (bool done = false; !done;) {
      const ssize_t got = recv(fd, buf, sizeof buf, 0);
      if (got <= 0) break;
      unsigned len = unsigned(got);  // NLMSG_NEXT counts it down
      for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
        if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) {
          done = true;
          break;
        }
        const auto* d = static_cast<const inet_diag_msg*>(NLMSG_DATA(h));
        if (ntohs(d->id.idiag_sport) == port) backlog = int(d->idiag_wqueue);  // a listener's max backlog
      }
    }
  }
  close(fd);
  return backlog;
}

TEST(ServerLifecycle, ListenBacklogCoversABurstOfConnections) {
  // cpp-httplib's own backlog is 5: under a burst the kernel dropped connections that then never
  // got an answer (server.cpp, kListenBacklog). The server raises it to 4096, capped by somaxconn.
  Running r;
  int somaxconn = 4096;
  std::ifstream("/proc/sys/net/core/somaxconn") >> somaxconn;
  const int backlog = listen_backlog(r.port);
  ASSERT_NE(backlog, -1) << "no TCP listener on port " << r.port << " in the kernel's socket table";
  EXPECT_EQ(backlog, std::min(4096, somaxconn));
  EXPECT_GT(backlog, 5) << "still cpp-httplib's backlog";
}

}  // namespace
