// The instrument must not add what it measures: Nagle off on the HTTP SUT's connections,
// connections opened before the timed window, latency taken from the scheduled arrival (no
// coordinated omission), and the null server the generator's ceiling is measured against.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "cb/harness/load/http_sut.h"
#include "cb/harness/load/null_http_server.h"
#include "cb/harness/load/runner.h"
#include "cb/harness/suites/suites.h"

using namespace cb::harness;
using namespace cb::harness::load;
using nlohmann::json;

namespace {

Plan closed_plan(int concurrency, int n, int max_tokens) {
  Plan p;
  p.closed_loop = true;
  p.concurrency = concurrency;
  p.min_requests = size_t(n);
  for (int i = 0; i < n; ++i) p.requests.push_back({0, {i, {1, 2, 3}, max_tokens, {}}});
  return p;
}

double median_roundtrip_ms(const std::string& url, bool nodelay) {
  HttpSutOptions o;
  o.base_url = url;
  o.tcp_nodelay = nodelay;
  HttpSut sut(o);
  const RunResult r = run_load(sut, closed_plan(1, 15, 1), Slo{}, ValidityRules{});
  EXPECT_EQ(r.summary.completed, 15u);
  return r.summary.e2e_ms.median;
}

}  // namespace

TEST(NullHttpServer, AnswersStreamedAndPlainCompletions) {
  NullHttpServer srv(8);
  srv.start();
  {
    HttpSutOptions o;
    o.base_url = srv.url();
    HttpSut sut(o);
    EXPECT_EQ(sut.model(), "null");
    const RunResult r = run_load(sut, closed_plan(2, 6, 5), Slo{}, ValidityRules{});
    EXPECT_EQ(r.summary.completed, 6u) << r.summary.to_json().dump();
    EXPECT_EQ(r.summary.output_tokens, 30);
    EXPECT_EQ(srv.completions(), 6);
  }  // the client's connections close first: an idle keep-alive connection holds stop() up to 5 s
  const auto t0 = std::chrono::steady_clock::now();
  srv.stop();
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 2.0);
}

// Nagle + delayed ACK costs ~40 ms per request on Linux loopback: the request leaves as header and
// body writes, and the body waits for the ACK of the header. With TCP_NODELAY a 1-token round trip
// to a server that answers at once takes about a millisecond. 15 ms splits the two by an order of
// magnitude either way; the planted defect (Nagle left on) shows the test can fail.
TEST(LoadTransport, NagleOffKeepsARoundTripWithinAFewMilliseconds) {
  NullHttpServer srv(8);
  srv.start();
  const double with = median_roundtrip_ms(srv.url(), true);
  EXPECT_LT(with, 15.0) << "median 1-token round trip with TCP_NODELAY";
  const double without = median_roundtrip_ms(srv.url(), false);
  EXPECT_GT(without, 30.0) << "planted defect: with Nagle on, the delayed ACK should show (median " << without << " ms)";
}

TEST(LoadTransport, ConnectionsAreOpenedBeforeTheTimedWindow) {
  NullHttpServer srv(16);
  srv.start();
  HttpSutOptions o;
  o.base_url = srv.url();
  HttpSut sut(o);
  const RunResult r = run_load(sut, closed_plan(4, 40, 2), Slo{}, ValidityRules{});
  EXPECT_EQ(r.summary.completed, 40u);
  const json d = sut.describe();
  EXPECT_EQ(d["connections_prepared"], 4) << d.dump();
  EXPECT_EQ(d["connections_opened_after_prepare"], 0) << d.dump();
  EXPECT_EQ(d["tcp_nodelay"], true);
}

namespace {
// A SUT whose issue() blocks (a client that cannot keep up), then answers at once: the requests
// scheduled meanwhile wait in the generator. Sent time = issue time, as for an in-process SUT.
class SlowIssueSut : public Sut {
 public:
  std::string name() const override { return "slow-issue"; }
  json describe() const override { return {{"sut", "slow-issue"}}; }
  void issue(const LoadRequest& req, SutCallbacks cb) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (cb.on_sent) cb.on_sent();
    for (int i = 0; i < req.max_tokens; ++i) cb.on_tokens(1);
    cb.on_complete(-1);
  }
};
}  // namespace

// Open loop, 10 arrivals 1 ms apart, each issue taking 20 ms: the tenth request is sent ~180 ms
// after its scheduled arrival. Latency from the schedule shows that wait; latency from the send
// (reported beside) does not. A generator that measured from its own send would hide it.
TEST(LoadRunner, LatencyIsTakenFromTheScheduledArrival) {
  Plan p;
  p.closed_loop = false;
  p.min_requests = 10;
  for (int i = 0; i < 10; ++i) p.requests.push_back({0.001 * i, {i, {1, 2}, 2, {}}});
  SlowIssueSut sut;
  ValidityRules v;
  v.max_issue_lag_p99_ms = 1e9;
  const RunResult r = run_load(sut, p, Slo{}, v);
  ASSERT_EQ(r.summary.completed, 10u);
  EXPECT_GT(r.summary.e2e_ms.max, 150.0) << "the wait behind the slow issue is part of the latency";
  EXPECT_LT(r.summary.e2e_from_send_ms.max, 15.0) << "from the send, the SUT answered at once";
  EXPECT_GT(r.summary.ttft_ms.p99, r.summary.ttft_from_send_ms.p99 + 100.0);
  EXPECT_GT(r.summary.send_lag_ms.max, 150.0);
  for (const auto& rec : r.records) {
    EXPECT_GE(rec.sent_s, rec.scheduled_s);
    EXPECT_NEAR(rec.e2e_s() - rec.e2e_from_send_s(), rec.send_lag_s(), 1e-12);
  }
}

TEST(LoadTransport, ParsesWrkOutput) {
  const std::string out = R"(Running 2s test @ http://127.0.0.1:40123/v1/completions
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.30ms    1.01ms  24.10ms   93.27%
    Req/Sec    24.77k     2.10k   27.41k    80.00%
  Latency Distribution
     50%  547.00us
     75%    1.20ms
     90%    2.01ms
     99%    4.48s
  50314 requests in 2.00s, 24.71MB read
  Non-2xx or 3xx responses: 3
Requests/sec:  25157.37
Transfer/sec:     12.35MB
)";
  const json j = parse_wrk_output(out);
  EXPECT_DOUBLE_EQ(j["requests_per_s"].get<double>(), 25157.37);
  EXPECT_DOUBLE_EQ(j["latency_ms_p50"].get<double>(), 0.547);
  EXPECT_DOUBLE_EQ(j["latency_ms_p99"].get<double>(), 4480.0);
  EXPECT_EQ(j["non_2xx"], 3);
  EXPECT_EQ(j["socket_errors"], 0);
  EXPECT_FALSE(parse_wrk_output("unable to connect to 127.0.0.1:1 Connection refused").contains("requests_per_s"));
}
