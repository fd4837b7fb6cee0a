// The server under bad input and overload: each bad request gets a 4xx with an OpenAI error object
// naming the field, and the server keeps serving; auth; admission control (429); body limit (413).
#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "test_server_util.h"

using namespace cb::engine;
using namespace cb::engine::testing;

namespace {

const char* kGood = R"({"prompt":"ok","max_tokens":2})";

struct BadCase {
  std::string body;
  int status;
  std::string param;    // "" = null
  std::string message;  // a substring the message must contain
};

std::string many_ids(int n) {
  std::string s = "[256";
  for (int i = 1; i < n; ++i) s += ",65";
  return s + "]";
}

TEST(ServerErrors, EachBadRequestNamesItsFieldAndServingGoesOn) {
  Running r;
  const std::vector<BadCase> cases = {
      {R"({"prompt": "hi",, "max_tokens": 4})", 400, "", "malformed JSON at byte 17"},
      {R"({"prompt": "hi", "max_tokens": 4)", 400, "", "malformed JSON at byte"},
      {"", 400, "", "malformed JSON at byte"},
      {R"({"prompt": "hi", "max_tokens": 1e400})", 400, "", "malformed JSON: number overflow"},  // the fuzzers' number-overflow finding
      {"[1,2]", 400, "", "must be a JSON object"},
      {R"({"prompt": 5})", 400, "prompt", "must be a string or an array of token ids"},
      {R"({"max_tokens": 4})", 400, "prompt", "is required"},
      {R"({"prompt": []})", 400, "prompt", "empty"},
      {R"({"prompt": [1, 999]})", 400, "prompt", "prompt[1] = 999 is outside the vocabulary"},
      {R"({"prompt": [1, "a"]})", 400, "prompt", "not supported"},
      {R"({"prompt": [1, 2.5]})", 400, "prompt", "prompt[1] must be an integer"},
      {"{\"prompt\": \"ab\xff\", \"max_tokens\": 2}", 400, "prompt", "invalid UTF-8"},
      {R"({"prompt": "\ud800x"})", 400, "prompt", "invalid UTF-8"},
      {R"({"prompt": "hi", "max_tokens": "4"})", 400, "max_tokens", "must be an integer (got string)"},
      {R"({"prompt": "hi", "max_tokens": 0})", 400, "max_tokens", ">= 1"},
      {R"({"prompt": "hi", "max_tokens": -3})", 400, "max_tokens", ">= 1"},
      {R"({"prompt": "hi", "max_tokens": 16383})", 400, "max_tokens", "exceeds the model's context of 16384"},
      {R"({"prompt": )" + many_ids(16384) + "}", 400, "prompt", "the model's context is 16384"},
      {R"({"prompt": "hi", "bogus": 1})", 400, "bogus", "unknown field 'bogus'"},
      {R"({"prompt": "hi", "n": 0})", 400, "n", "[1, 128]"},
      {R"({"prompt": "hi", "n": "2"})", 400, "n", "must be an integer"},
      {R"({"prompt": "hi", "temperature": -0.5})", 400, "temperature", "[0, 2]"},
      {R"({"prompt": "hi", "temperature": "hot"})", 400, "temperature", "must be a number"},
      {R"({"prompt": "hi", "top_p": 0})", 400, "top_p", "(0, 1]"},
      {R"({"prompt": "hi", "top_p": 1.5})", 400, "top_p", "(0, 1]"},
      {R"({"prompt": "hi", "top_k": -2})", 400, "top_k", ">= -1"},
      {R"({"prompt": "hi", "stop": 5})", 400, "stop", "string or an array of strings"},
      {R"({"prompt": "hi", "stop": ["a", 3]})", 400, "stop", "stop[1] must be a string"},
      {R"({"prompt": "hi", "stop": [""]})", 400, "stop", "must not be empty"},
      {R"({"prompt": "hi", "stop": ["a","b","c","d","e"]})", 400, "stop", "at most 4"},
      {R"({"prompt": "hi", "seed": 1.5})", 400, "seed", "must be an integer"},
      {R"({"prompt": "hi", "stream": "yes"})", 400, "stream", "must be a boolean"},
      {R"({"prompt": "hi", "stream_options": {"x": 1}})", 400, "stream_options.x", "unknown field"},
      {R"({"prompt": "hi", "echo": true, "stream": true})", 400, "echo", "not supported with stream"},
      {R"({"prompt": "hi", "logprobs": 1, "stream": true})", 400, "logprobs", "not supported with stream"},
      {R"({"prompt": "hi", "logprobs": 21})", 400, "logprobs", "[0, 20]"},
      {R"({"prompt": "hi", "logprobs": -1})", 400, "logprobs", "[0, 20]"},
      {R"({"prompt": "hi", "logprobs": true})", 400, "logprobs", "must be an integer"},
      {R"({"prompt": "hi", "echo": 1})", 400, "echo", "must be a boolean"},
      {R"({"prompt": "hi", "echo": false, "max_tokens": 0})", 400, "max_tokens", "only with echo"},
      {R"({"prompt": )" + many_ids(16385) + R"(, "echo": true, "max_tokens": 0})", 400, "prompt", "the model's context is 16384"},
      {R"({"prompt": "hi", "presence_penalty": 0.5})", 400, "presence_penalty", "not supported"},
      {R"({"prompt": "hi", "model": "gpt-4"})", 404, "model", "does not exist"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.body.substr(0, 80));
    auto [status, j] = r.complete(c.body);
    EXPECT_EQ(status, c.status);
    ASSERT_TRUE(j.is_object() && j.contains("error")) << j.dump();
    const auto& e = j["error"];
    EXPECT_EQ(e["type"], "invalid_request_error");
    if (c.param.empty()) EXPECT_TRUE(e["param"].is_null()) << e.dump();
    else EXPECT_EQ(e["param"], c.param) << e.dump();
    EXPECT_NE(e["message"].get<std::string>().find(c.message), std::string::npos) << e["message"];
    EXPECT_FALSE(e["code"].is_null());
    auto [ok, good] = r.complete(kGood);
    EXPECT_EQ(ok, 200) << "the server keeps serving after a bad request: " << good.dump();
  }
  // Accepted with their neutral values, and the ignored field.
  auto [s, j] = r.complete(R"({"prompt":"hi","max_tokens":2,"echo":false,"logprobs":null,"best_of":1,"presence_penalty":0,
                               "frequency_penalty":0,"logit_bias":{},"suffix":"","user":"u1","top_k":-1,"stop":null})");
  EXPECT_EQ(s, 200) << j.dump();
}

TEST(ServerErrors, OversizedBodyIs413NamingTheLimit) {
  ServerOptions o = small_options();
  o.max_body_bytes = 4096;
  Running r(std::move(o));
  const std::string body = R"({"prompt":")" + std::string(8000, 'a') + R"(","max_tokens":2})";
  auto [status, j] = r.complete(body);
  EXPECT_EQ(status, 413);
  ASSERT_TRUE(j.contains("error")) << j.dump();
  const std::string msg = j["error"]["message"];
  EXPECT_NE(msg.find("exceeds the limit of 4096 bytes"), std::string::npos) << msg;
  EXPECT_NE(msg.find(std::to_string(body.size())), std::string::npos) << "names the body's size: " << msg;
  auto [ok, good] = r.complete(kGood);
  EXPECT_EQ(ok, 200) << good.dump();
}

TEST(ServerErrors, ApiKeyGuardsTheApiButNotProbes) {
  ServerOptions o = small_options();
  o.api_key = "s3cret";
  Running r(std::move(o));
  auto [none, j1] = r.complete(kGood);
  EXPECT_EQ(none, 401);
  EXPECT_EQ(j1["error"]["code"], "invalid_api_key");
  EXPECT_NE(j1["error"]["message"].get<std::string>().find("missing API key"), std::string::npos);
  auto [wrong, j2] = r.complete(kGood, {{"Authorization", "Bearer s3cre"}});
  EXPECT_EQ(wrong, 401);
  auto [right, j3] = r.complete(kGood, {{"Authorization", "Bearer s3cret"}});
  EXPECT_EQ(right, 200) << j3.dump();
  auto c = r.client();
  auto models = c->Get("/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(models->status, 401);
  auto health = c->Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200) << "probes need no key";
  auto metrics = c->Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200) << "scrapers need no key";
}

TEST(ServerErrors, FullQueueGets429WithRetryAfter) {
  ServerOptions o = small_options();
  o.max_queue = 2;
  // A static batch of 100 with a 60 s timeout: accepted requests wait, deterministically.
  o.engine.custom_policy = make_static_policy(100, 60.0);
  Running r(std::move(o));
  std::vector<std::future<std::pair<int, json>>> waiting;
  for (int i = 0; i < 2; ++i) waiting.push_back(std::async(std::launch::async, [&r] { return r.complete(kGood); }));
  for (int i = 0; i < 5000 && r.server->engine().waiting() < 2; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_EQ(r.server->engine().waiting(), 2);

  auto c = r.client();
  auto res = c->Post("/v1/completions", kGood, "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 429);
  EXPECT_EQ(res->get_header_value("Retry-After"), "1");
  const json j = json::parse(res->body);
  EXPECT_EQ(j["error"]["code"], "queue_full");
  EXPECT_NE(j["error"]["message"].get<std::string>().find("max_queue 2"), std::string::npos);
  // Counted once the response is written (the logger runs after the client may have read it).
  for (int i = 0; i < 2000 && r.server->metrics().responses("/v1/completions", 429) == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(r.server->metrics().responses("/v1/completions", 429), 1);

  // Stopping aborts the two that waited: they get 503, not a hang.
  r.server->stop();
  for (auto& f : waiting) {
    auto [status, body] = f.get();
    EXPECT_EQ(status, 503) << body.dump();
    EXPECT_EQ(body["error"]["code"], "aborted");
  }
}

}  // namespace
