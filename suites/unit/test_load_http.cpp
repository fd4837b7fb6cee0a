// The HTTP SUT: SSE parsing, chunk parsing, /metrics gauges, URLs, and requests against a stub
// OpenAI-style server on loopback (streamed tokens, token-id chunks, 429 / 4xx / 5xx, malformed
// and truncated streams, connection refused), plus one load run end to end.
#include <gtest/gtest.h>

#include <cmath>
#include <httplib.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "cb/engine/server/listen_backlog.h"
#include "cb/harness/load/http_sut.h"
#include "cb/harness/load/runner.h"
#include "test_support.h"

using namespace cb::harness::load;
using nlohmann::json;

TEST(LoadSse, SplitsEventsAcrossFragmentsAndLineEndings) {
  std::vector<std::string> got;
  SseParser p([&](const std::string& d) { got.push_back(d); });
  p.feed("data: {\"a\"");
  p.feed(":1}\r\n\r\n: keep-alive comment\n\nevent: x\nid: 7\ndata: one\ndata: two\n\n");
  p.feed("data:[DONE]\n");
  EXPECT_EQ(got, (std::vector<std::string>{"{\"a\":1}", "one\ntwo"}));
  p.finish();  // the last event had no blank line after it
  EXPECT_EQ(got.back(), "[DONE]");
  EXPECT_EQ(got.size(), 3u);
}

TEST(LoadSse, ParsesCompletionChunks) {
  // The fuzzers' number-overflow finding: nlohmann's out_of_range (1e400) is a bad chunk too.
  EXPECT_THROW(parse_completion_chunk(R"({"choices":[{"text":"a","finish_reason":null}],"created":1e400})"),
               std::invalid_argument);
  CompletionChunk c = parse_completion_chunk(R"({"choices":[{"index":0,"text":"hi","finish_reason":null}]})");
  EXPECT_EQ(c.tokens, 1);
  EXPECT_TRUE(c.has_text);
  EXPECT_EQ(c.finish_reason, "");
  c = parse_completion_chunk(R"({"choices":[{"text":"","finish_reason":"length"}]})");
  EXPECT_EQ(c.tokens, 0) << "a closing chunk without text carries no token";
  EXPECT_EQ(c.finish_reason, "length");
  c = parse_completion_chunk(R"({"choices":[{"text":"","finish_reason":null}]})");
  EXPECT_EQ(c.tokens, 1) << "a token whose text is empty (a held-back UTF-8 byte) is a token";
  c = parse_completion_chunk(R"({"choices":[{"text":"ab","token_ids":[5,6,7]}]})");
  EXPECT_EQ(c.tokens, 3);
  c = parse_completion_chunk(R"({"choices":[{"text":"x","logprobs":{"tokens":["a","b"]}}]})");
  EXPECT_EQ(c.tokens, 2);
  c = parse_completion_chunk(R"({"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":9}})");
  EXPECT_EQ(c.usage_completion_tokens, 9);
  c = parse_completion_chunk(R"({"error":{"message":"overloaded"}})");
  EXPECT_EQ(c.error, "\"overloaded\"");
  EXPECT_THROW(parse_completion_chunk("{not json"), std::invalid_argument);
  EXPECT_THROW(parse_completion_chunk(R"({"id":"x"})"), std::invalid_argument);
  EXPECT_THROW(parse_completion_chunk(R"({"choices":[]})"), std::invalid_argument);
}

TEST(LoadHttp, UrlsAndGauges) {
  EXPECT_EQ(parse_http_url("http://127.0.0.1:8080"), (std::pair<std::string, int>{"127.0.0.1", 8080}));
  EXPECT_EQ(parse_http_url("http://localhost:9/"), (std::pair<std::string, int>{"localhost", 9}));
  EXPECT_EQ(parse_http_url("http://example"), (std::pair<std::string, int>{"example", 80}));
  EXPECT_THROW(parse_http_url("https://x:1"), std::invalid_argument);
  EXPECT_THROW(parse_http_url("http://x:port"), std::invalid_argument);
  EXPECT_THROW(parse_http_url("http://x:1/v1"), std::invalid_argument);
  const std::string m = "# HELP refengine_busy_fraction busy\n# TYPE refengine_busy_fraction gauge\n"
                        "refengine_busy_fraction_total 3\nrefengine_busy_fraction{engine=\"0\"} 0.87\nother 1\n";
  EXPECT_EQ(prometheus_gauge(m, "refengine_busy_fraction"), 0.87);
  EXPECT_EQ(prometheus_gauge(m, "other"), 1.0);
  EXPECT_FALSE(prometheus_gauge(m, "missing").has_value());
}

namespace {

// A stub OpenAI-style server. prompt[0] picks the behaviour: 1 = stream max_tokens text chunks,
// finish_reason, usage, [DONE]; 2 = HTTP 429; 3 = 500; 4 = 400; 5 = a malformed chunk; 6 = one
// chunk then the stream just ends; 7 = chunks of two token ids each; 8 = one chunk per token with
// empty text (held-back UTF-8 bytes, special tokens), the finish_reason on the last token's chunk
// (as vLLM streams it).
class StubServer {
 public:
  StubServer() {
    // Each client connection is kept alive and holds a server thread: leave room for many.
    srv_.new_task_queue = [] { return new httplib::ThreadPool(64); };
    srv_.Get("/v1/models", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"object":"list","data":[{"id":"stub-model"}]})", "application/json");
    });
    srv_.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      std::lock_guard lk(m_);
      res.set_content("refengine_busy_fraction 0.5\nrefengine_engine_busy_seconds_total 12.5\nrefengine_engine_steps_total 300\n"
                      "refengine_engine_prefill_tokens_total 4000\nrefengine_engine_decode_tokens_total 900\n" + extra_metrics_,
                      "text/plain");
    });
    srv_.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      const json body = json::parse(req.body);
      {
        std::lock_guard lk(m_);
        last_body_ = body;
        last_auth_ = req.get_header_value("Authorization");
      }
      const int mode = body["prompt"][0].get<int>();
      const int n = body["max_tokens"].get<int>();
      if (mode == 2 || mode == 3 || mode == 4) {
        res.status = mode == 2 ? 429 : mode == 3 ? 500 : 400;
        res.set_content(R"({"error":{"message":"stub says no"}})", "application/json");
        return;
      }
      res.set_chunked_content_provider("text/event-stream", [mode, n](size_t, httplib::DataSink& sink) {
        auto send = [&](const std::string& s) { sink.write(s.data(), s.size()); };
        if (mode == 5) {
          send("data: {not json\n\n");
        } else if (mode == 8) {
          for (int i = 0; i < n; ++i)
            send(std::string("data: {\"choices\":[{\"text\":\"\",\"finish_reason\":") + (i + 1 == n ? "\"length\"" : "null") + "}]}\n\n");
          send("data: {\"choices\":[],\"usage\":{\"completion_tokens\":" + std::to_string(n) + "}}\n\n");
          send("data: [DONE]\n\n");
        } else if (mode == 6) {
          send("data: {\"choices\":[{\"text\":\"a\",\"finish_reason\":null}]}\n\n");
        } else {
          const int step = mode == 7 ? 2 : 1;
          for (int i = 0; i < n; i += step) {
            const json c = mode == 7 ? json{{"choices", {{{"text", "ab"}, {"token_ids", {1, 2}}, {"finish_reason", nullptr}}}}}
                                     : json{{"choices", {{{"text", "a"}, {"finish_reason", nullptr}}}}};
            send("data: " + c.dump() + "\n\n");
          }
          send("data: {\"choices\":[{\"text\":\"\",\"finish_reason\":\"length\"}]}\n\n");
          send("data: {\"choices\":[],\"usage\":{\"completion_tokens\":" + std::to_string(n) + "}}\n\n");
          send("data: [DONE]\n\n");
        }
        sink.done();
        return true;
      });
    });
    port_ = srv_.bind_to_any_port("127.0.0.1");
    backlog_.widen();  // as the real servers do: no dropped SYNs when a run opens its connections
    thread_ = std::thread([this] { srv_.listen_after_bind(); });
    while (!srv_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~StubServer() {
    srv_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  json last_body() {
    std::lock_guard lk(m_);
    return last_body_;
  }
  std::string last_auth() {
    std::lock_guard lk(m_);
    return last_auth_;
  }
  // More exposition lines for /metrics (a server on a device backend adds its device counter).
  void add_metrics(const std::string& lines) {
    std::lock_guard lk(m_);
    extra_metrics_ += lines;
  }

 private:
  httplib::Server srv_;
  cb::net::ListenBacklog backlog_{srv_};
  int port_ = 0;
  std::thread thread_;
  std::mutex m_;
  json last_body_;
  std::string last_auth_;
  std::string extra_metrics_;
};

// Collects one request's callbacks and waits for its end.
struct Outcome {
  std::mutex m;
  std::condition_variable cv;
  std::vector<int> chunks;
  int reported = -2;
  ErrorKind error = ErrorKind::None;
  std::string message;
  bool done = false;
  SutCallbacks callbacks() {
    SutCallbacks cb;
    cb.on_tokens = [this](int n) {
      std::lock_guard lk(m);
      chunks.push_back(n);
    };
    cb.on_complete = [this](int r) {
      std::lock_guard lk(m);
      reported = r;
      done = true;
      cv.notify_all();
    };
    cb.on_error = [this](ErrorKind k, const std::string& msg) {
      std::lock_guard lk(m);
      error = k;
      message = msg;
      done = true;
      cv.notify_all();
    };
    return cb;
  }
  bool wait() {
    std::unique_lock lk(m);
    return cv.wait_for(lk, std::chrono::seconds(10), [&] { return done; });
  }
};

Outcome& ask(HttpSut& sut, int mode, int max_tokens, Outcome& o) {
  LoadRequest r;
  r.prompt = {mode, 65, 66};
  r.max_tokens = max_tokens;
  sut.issue(r, o.callbacks());
  EXPECT_TRUE(o.wait());
  return o;
}

}  // namespace

TEST(LoadHttp, StreamsTokensAndDiscoversTheModel) {
  StubServer srv;
  HttpSutOptions opt;
  opt.base_url = srv.url();
  HttpSut sut(opt);
  EXPECT_EQ(sut.model(), "stub-model");
  Outcome o;
  ask(sut, 1, 5, o);
  EXPECT_EQ(o.error, ErrorKind::None) << o.message;
  EXPECT_EQ(o.chunks, (std::vector<int>{1, 1, 1, 1, 1}));
  EXPECT_EQ(o.reported, 5);  // from the usage chunk
  const json body = srv.last_body();
  EXPECT_EQ(body["prompt"], json({1, 65, 66}));  // token ids, not text
  EXPECT_EQ(body["stream"], true);
  EXPECT_EQ(body["ignore_eos"], true);
  EXPECT_EQ(body["model"], "stub-model");
  Outcome ids;
  ask(sut, 7, 6, ids);
  EXPECT_EQ(ids.chunks, (std::vector<int>{2, 2, 2}));
  EXPECT_EQ(sut.scrape_gauge("refengine_busy_fraction"), 0.5);
  // refengine's engine counters, read the way the in-process SUT reads them.
  const auto c = sut.counters();
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->busy_seconds, 12.5);
  EXPECT_EQ(c->steps, 300);
  EXPECT_EQ(c->prefill_tokens, 4000);
  EXPECT_EQ(c->decode_tokens, 900);
  EXPECT_TRUE(std::isnan(c->device_busy_seconds)) << "a host-backend server has no device clock";
  // On a device backend refengine serve also counts the device's own busy time.
  srv.add_metrics("refengine_device_busy_seconds_total 3.25\n");
  const auto d = sut.counters();
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->device_busy_seconds, 3.25);
}

// A token whose text is empty is still a token: counted, timed, and the request is not "short".
TEST(LoadHttp, EmptyTextTokenChunksAreCountedAndTimed) {
  StubServer srv;
  HttpSutOptions opt;
  opt.base_url = srv.url();
  HttpSut sut(opt);
  Outcome o;
  ask(sut, 8, 5, o);
  EXPECT_EQ(o.error, ErrorKind::None) << o.message;
  EXPECT_EQ(o.chunks, (std::vector<int>{1, 1, 1, 1})) << "the closing chunk with no text carries no token";
  EXPECT_EQ(o.reported, 5);
  // In a run: every request completes with its first token seen (no short or protocol errors).
  Plan plan;
  plan.closed_loop = true;
  plan.concurrency = 2;
  plan.min_requests = 10;
  for (int i = 0; i < 10; ++i) plan.requests.push_back({0, {i, {8, 1, 2}, 6, {}}});
  const RunResult r = run_load(sut, plan, Slo{}, ValidityRules{});
  EXPECT_EQ(r.summary.completed, 10u) << r.summary.to_json().dump();
  EXPECT_EQ(r.summary.output_tokens, 60);
  for (const auto& rec : r.records) EXPECT_GE(rec.first_token_s, 0);
}

TEST(LoadHttp, SendsTheApiKeyAsABearerTokenWithoutRecordingIt) {
  StubServer srv;
  HttpSutOptions opt;
  opt.base_url = srv.url();
  opt.api_key = "s3cret";
  HttpSut sut(opt);
  Outcome o;
  ask(sut, 1, 2, o);
  EXPECT_EQ(o.error, ErrorKind::None) << o.message;
  EXPECT_EQ(srv.last_auth(), "Bearer s3cret");
  EXPECT_EQ(sut.describe().dump().find("s3cret"), std::string::npos) << "the key must not reach results";
}

TEST(LoadHttp, ErrorKinds) {
  StubServer srv;
  HttpSutOptions opt;
  opt.base_url = srv.url();
  opt.model = "given";
  HttpSut sut(opt);
  EXPECT_EQ(sut.model(), "given");
  const std::vector<std::pair<int, ErrorKind>> cases = {
      {2, ErrorKind::Http429}, {3, ErrorKind::Http5xx}, {4, ErrorKind::Http4xx}, {5, ErrorKind::Protocol}, {6, ErrorKind::Protocol}};
  for (const auto& [mode, kind] : cases) {
    Outcome o;
    ask(sut, mode, 3, o);
    EXPECT_EQ(o.error, kind) << "mode " << mode << ": " << o.message;
  }
  Outcome o;
  ask(sut, 2, 3, o);
  EXPECT_CONTAINS(o.message, "HTTP 429: ");
  EXPECT_CONTAINS(o.message, "stub says no");
  Outcome trunc;
  ask(sut, 6, 3, trunc);
  EXPECT_CONTAINS(trunc.message, "stream ended without a finish_reason or data: [DONE] after 1 tokens");
}

TEST(LoadHttp, ConnectionRefusedIsAConnectionError) {
  // A free port with nothing listening: bind a socket to port 0 without listen(), read the port.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  const int port = ntohs(a.sin_port);
  HttpSutOptions opt;
  opt.base_url = "http://127.0.0.1:" + std::to_string(port);
  opt.connect_timeout_s = 2;
  HttpSut sut(opt);
  EXPECT_EQ(sut.model(), "default");
  Outcome o;
  ask(sut, 1, 3, o);
  EXPECT_EQ(o.error, ErrorKind::Connection) << o.message;
  EXPECT_FALSE(sut.scrape_gauge("refengine_busy_fraction").has_value());
  EXPECT_FALSE(sut.counters().has_value());
  ::close(fd);
}

TEST(LoadHttp, LoadRunAgainstTheStub) {
  StubServer srv;
  HttpSutOptions opt;
  opt.base_url = srv.url();
  HttpSut sut(opt);
  const json j = {{"schema", "claimbench.workload"}, {"schema_version", "1.0"}, {"name", "stub"}, {"seed", 1},
                  {"arrival", {{"process", "poisson"}, {"rate_rps", 200}}},
                  {"prompt_tokens", {{"dist", "uniform"}, {"min", 2}, {"max", 20}}},
                  {"output_tokens", {{"dist", "uniform"}, {"min", 2}, {"max", 8}}},
                  {"slo", {{"e2e_ms", 1000}}}, {"duration_s", 0.2}, {"min_requests", 30},
                  {"validity", {{"max_issue_lag_p99_ms", 50}}}};
  const WorkloadSpec w = parse_workload(j, "stub.json", false);
  PlanOptions po;
  po.bos_token = 1;  // the stub's "stream normally" mode
  const Plan plan = make_plan(w, po);
  const RunResult r = run_load(sut, plan, w.slo, w.validity);
  EXPECT_EQ(r.summary.completed, plan.requests.size()) << r.summary.to_json().dump();
  int64_t want = 0;
  for (const auto& p : plan.requests) want += p.req.max_tokens;
  EXPECT_EQ(r.summary.output_tokens, want);
  EXPECT_TRUE(r.validity.valid) << r.validity.line();
  for (const auto& rec : r.records) ASSERT_GE(rec.first_token_s, rec.issued_s);
}

// A callback that throws must not take its worker down. Before the fix, an on_error that threw
// while the worker reported a thrown on_tokens left the worker thread (std::terminate), its
// connection unregistered without the lock on the way out.
TEST(LoadHttp, ThrowingCallbacksAreReportedAndTheWorkerGoesOn) {
  StubServer srv;
  HttpSutOptions opt;
  opt.base_url = srv.url();
  opt.max_connections = 1;  // the next request must be served by the same worker
  HttpSut sut(opt);
  std::mutex m;
  std::condition_variable cv;
  std::string reported;
  SutCallbacks cb;
  cb.on_tokens = [](int) { throw std::runtime_error("on_tokens broke"); };
  cb.on_complete = [](int) { ADD_FAILURE() << "a request whose on_tokens threw must not complete"; };
  cb.on_error = [&](ErrorKind k, const std::string& msg) {
    EXPECT_EQ(k, ErrorKind::Protocol);
    {
      std::lock_guard lk(m);
      reported = msg;
    }
    cv.notify_all();
    throw std::runtime_error("on_error broke too");
  };
  LoadRequest r;
  r.prompt = {1, 65};
  r.max_tokens = 3;
  sut.issue(r, cb);
  {
    std::unique_lock lk(m);
    ASSERT_TRUE(cv.wait_for(lk, std::chrono::seconds(10), [&] { return !reported.empty(); }));
    EXPECT_CONTAINS(reported, "request failed: on_tokens broke");
  }
  Outcome o;
  ask(sut, 1, 4, o);
  EXPECT_EQ(o.error, ErrorKind::None) << o.message;
  EXPECT_EQ(o.reported, 4);
}
