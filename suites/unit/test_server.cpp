// The OpenAI-compatible server in-process: completions (JSON and SSE), models, health, stop
// strings. Outputs are checked against one-at-a-time generation with the same model.
#include <gtest/gtest.h>

#include "cb/engine/model/engine.h"
#include "cb/engine/server/openai_protocol.h"
#include "test_server_util.h"

using namespace cb::engine;
using namespace cb::engine::testing;

namespace {

// What the server should answer for a greedy completion: generate() alone, decoded the same way.
std::string expected_text(LoadedModel& m, const std::vector<int32_t>& prompt, int max_tokens) {
  GenerateOptions g;
  g.max_tokens = max_tokens;
  g.stop_at_eos = false;
  Utf8Assembler a;
  tok::StreamingDecoder d(m.tokenizer());
  std::string text;
  for (int32_t t : generate(m, prompt, g).tokens) text += a.feed(d.push(t));
  return text + a.feed(d.finish()) + a.flush();
}

class ServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = LoadedModel::open(default_model_dir(), "cpu").release();
    run_ = new Running();
  }
  static void TearDownTestSuite() {
    delete run_;
    delete model_;
  }
  static LoadedModel* model_;
  static Running* run_;
};
LoadedModel* ServerTest::model_ = nullptr;
Running* ServerTest::run_ = nullptr;

TEST_F(ServerTest, GreedyCompletionMatchesGenerate) {
  auto [status, j] = run_->complete(R"({"model":"default","prompt":"Hello","max_tokens":8,"temperature":0,"ignore_eos":true})");
  ASSERT_EQ(status, 200) << j.dump();
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["model"], "default");
  EXPECT_EQ(j["id"].get<std::string>().rfind("cmpl-", 0), 0u);
  EXPECT_TRUE(j["created"].is_number_integer());
  ASSERT_EQ(j["choices"].size(), 1u);
  const auto& c = j["choices"][0];
  EXPECT_EQ(c["index"], 0);
  EXPECT_EQ(c["finish_reason"], "length");
  EXPECT_TRUE(c["logprobs"].is_null());
  const auto prompt = model_->tokenizer().encode("Hello", true);
  EXPECT_EQ(c["text"].get<std::string>(), expected_text(*model_, prompt, 8));
  EXPECT_EQ(j["usage"]["prompt_tokens"], 6) << "5 bytes + BOS";
  EXPECT_EQ(j["usage"]["completion_tokens"], 8);
  EXPECT_EQ(j["usage"]["total_tokens"], 14);
}

TEST_F(ServerTest, TokenIdPromptEqualsTextPrompt) {
  auto [s1, a] = run_->complete(R"({"prompt":"Hi","max_tokens":5,"temperature":0,"ignore_eos":true})");
  auto [s2, b] = run_->complete(R"({"prompt":[256,72,105],"max_tokens":5,"temperature":0,"ignore_eos":true})");
  ASSERT_EQ(s1, 200);
  ASSERT_EQ(s2, 200);
  EXPECT_EQ(a["choices"][0]["text"], b["choices"][0]["text"]);
  EXPECT_EQ(b["usage"]["prompt_tokens"], 3);
}

TEST_F(ServerTest, SeededSamplesAreReproducibleAndDistinctPerIndex) {
  // The hottest allowed temperature, no truncation: the trained default model is confident, and the samples must differ.
  const std::string body = R"({"prompt":"Once","max_tokens":12,"temperature":2.0,"n":3,"seed":7,"ignore_eos":true})";
  auto [s1, a] = run_->complete(body);
  auto [s2, b] = run_->complete(body);
  ASSERT_EQ(s1, 200) << a.dump();
  ASSERT_EQ(s2, 200);
  ASSERT_EQ(a["choices"].size(), 3u);
  EXPECT_EQ(a["choices"], b["choices"]) << "same seed, same samples";
  for (int i = 0; i < 3; ++i) EXPECT_EQ(a["choices"][i]["index"], i);
  EXPECT_EQ(a["usage"]["completion_tokens"], 36);
  EXPECT_FALSE(a["choices"][0]["text"] == a["choices"][1]["text"] && a["choices"][1]["text"] == a["choices"][2]["text"])
      << "samples use seed + index";
}

TEST_F(ServerTest, StreamDeliversChunksUsageAndDone) {
  const int kTokens = 24;
  auto [st, plain] = run_->complete(R"({"prompt":"Stream me","max_tokens":24,"temperature":0,"ignore_eos":true})");
  ASSERT_EQ(st, 200);
  const Stream s = stream_completion(*run_, R"({"prompt":"Stream me","max_tokens":24,"temperature":0,"ignore_eos":true,"stream":true})");
  ASSERT_EQ(s.status, 200);
  ASSERT_GE(s.events.size(), 3u);
  EXPECT_EQ(s.events.back(), "[DONE]");
  std::string text;
  int text_chunks = 0, token_chunks = 0;
  std::string finish;
  json usage;
  for (size_t i = 0; i + 1 < s.events.size(); ++i) {
    const json j = json::parse(s.events[i]);
    EXPECT_EQ(j["object"], "text_completion");
    if (j.contains("usage")) {
      EXPECT_TRUE(j["choices"].empty());
      usage = j["usage"];
      EXPECT_EQ(i + 2, s.events.size()) << "usage is the last chunk before [DONE]";
      continue;
    }
    ASSERT_EQ(j["choices"].size(), 1u);
    const auto& c = j["choices"][0];
    EXPECT_TRUE(finish.empty()) << "no chunk after the finish chunk";
    text += c["text"].get<std::string>();
    text_chunks += !c["text"].get<std::string>().empty();
    if (c["finish_reason"].is_null()) {
      ++token_chunks;
    } else {
      finish = c["finish_reason"];
      EXPECT_EQ(c["text"], "") << "the closing event carries the finish reason, no token";
    }
  }
  EXPECT_GE(text_chunks, 2) << "tokens arrive as they are generated, not in one piece";
  EXPECT_EQ(token_chunks, kTokens) << "one event per token, also for a token whose text is empty, then a closing event";
  EXPECT_EQ(text, plain["choices"][0]["text"].get<std::string>());
  EXPECT_EQ(finish, "length");
  ASSERT_TRUE(usage.is_object()) << "usage chunk present by default";
  EXPECT_EQ(usage["completion_tokens"], kTokens);
  EXPECT_EQ(usage["prompt_tokens"], 10);

  const Stream no_usage = stream_completion(
      *run_, R"({"prompt":"x","max_tokens":3,"stream":true,"stream_options":{"include_usage":false}})");
  ASSERT_EQ(no_usage.status, 200);
  for (const auto& e : no_usage.events) EXPECT_EQ(e.find("\"usage\""), std::string::npos) << e;
  EXPECT_EQ(no_usage.events.back(), "[DONE]");
}

TEST_F(ServerTest, StopStringCutsTextInBothModes) {
  auto [st, full] = run_->complete(R"({"prompt":"Stop here","max_tokens":40,"temperature":0,"ignore_eos":true})");
  ASSERT_EQ(st, 200);
  const std::string t = full["choices"][0]["text"];
  // A stop string made of whole characters from the middle of the text.
  std::vector<size_t> starts;
  for (size_t i = 0; i < t.size(); ++i)
    if ((static_cast<unsigned char>(t[i]) & 0xC0) != 0x80) starts.push_back(i);
  ASSERT_GE(starts.size(), 8u) << "the greedy text is long enough";
  const std::string stop = t.substr(starts[4], starts[6] - starts[4]);
  const std::string want = t.substr(0, t.find(stop));
  json req = {{"prompt", "Stop here"}, {"max_tokens", 40}, {"temperature", 0}, {"ignore_eos", true}, {"stop", {stop, "never-seen-42"}}};
  auto [s2, cut] = run_->complete(req.dump());
  ASSERT_EQ(s2, 200) << cut.dump();
  EXPECT_EQ(cut["choices"][0]["text"].get<std::string>(), want);
  EXPECT_EQ(cut["choices"][0]["finish_reason"], "stop");
  EXPECT_LT(cut["usage"]["completion_tokens"].get<int>(), 40) << "generation ended at the stop string";

  req["stream"] = true;
  const Stream s = stream_completion(*run_, req.dump());
  std::string streamed, finish;
  for (const auto& e : s.events) {
    if (e == "[DONE]") break;
    const json j = json::parse(e);
    if (j["choices"].empty()) continue;
    streamed += j["choices"][0]["text"].get<std::string>();
    if (!j["choices"][0]["finish_reason"].is_null()) finish = j["choices"][0]["finish_reason"];
  }
  EXPECT_EQ(streamed, want) << "the stop string never leaks into the stream";
  EXPECT_EQ(finish, "stop");
}

TEST_F(ServerTest, ModelsHealthAndUnknownRoute) {
  auto c = run_->client();
  auto m = c->Get("/v1/models");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->status, 200);
  const json j = json::parse(m->body);
  EXPECT_EQ(j["object"], "list");
  ASSERT_EQ(j["data"].size(), 1u);
  EXPECT_EQ(j["data"][0]["id"], run_->server->model_name());
  EXPECT_EQ(j["data"][0]["object"], "model");
  EXPECT_EQ(j["data"][0]["max_model_len"], 16384);
  auto h = c->Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  EXPECT_EQ(h->body, "ok");
  auto nf = c->Get("/v1/nothing");
  ASSERT_TRUE(nf);
  EXPECT_EQ(nf->status, 404);
  EXPECT_EQ(json::parse(nf->body)["error"]["code"], "not_found");
}

}  // namespace
