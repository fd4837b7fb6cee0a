// The server's legacy completions log-probabilities: logprobs (top-N) and echo, as OpenAI and vLLM
// answer them, checked against the model's log-softmax computed here independently (one forward
// per prefix, the last row's logits only, the log-softmax in this file), not through the server's
// teacher-forced all-positions pass.
#include <cmath>

#include <gtest/gtest.h>

#include "cb/engine/model/engine.h"
#include "cb/engine/server/openai_protocol.h"
#include "cb/engine/train/trainer.h"
#include "test_server_util.h"

using namespace cb::engine;
using namespace cb::engine::testing;

namespace {

// log P(next | prefix) for every next token: a forward over the prefix alone, last row.
std::vector<double> next_logprobs(LoadedModel& m, const std::vector<int32_t>& prefix) {
  const int V = m.config().vocab_size;
  KvCache kv(m.backend(), m.kv_config(), int(prefix.size() + 15) / 16, 16);
  const auto table = KvCache::sequential_table(kv.blocks_for(int(prefix.size())));
  const auto logits = m.model().forward({SeqStep{std::span<const int32_t>(prefix), 0, table, false}}, kv);
  EXPECT_EQ(logits.size(), size_t(V));
  double mx = -INFINITY, sum = 0;
  for (int c = 0; c < V; ++c) mx = std::max(mx, double(logits[size_t(c)]));
  for (int c = 0; c < V; ++c) sum += std::exp(double(logits[size_t(c)]) - mx);
  std::vector<double> lp(static_cast<size_t>(V));
  for (int c = 0; c < V; ++c) lp[size_t(c)] = double(logits[size_t(c)]) - mx - std::log(sum);
  return lp;
}

// Float rounding differs between a last-row forward and the all-positions pass (other matmul
// shapes): 1e-4 nats is far below any difference that would change a perplexity's leading digits.
constexpr double kTol = 1e-4;

class ServerLogprobs : public ::testing::Test {
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
LoadedModel* ServerLogprobs::model_ = nullptr;
Running* ServerLogprobs::run_ = nullptr;

TEST_F(ServerLogprobs, EchoWithMaxTokensZeroGivesThePromptsLogSoftmax) {
  const std::string prompt = "add:12+34=46";
  auto [status, j] = run_->complete(R"({"prompt":")" + prompt + R"(","max_tokens":0,"echo":true,"logprobs":3})");
  ASSERT_EQ(status, 200) << j.dump();
  ASSERT_EQ(j["choices"].size(), 1u);
  const auto& c = j["choices"][0];
  EXPECT_EQ(c["text"], prompt) << "echo: the prompt's text (BOS has none)";
  EXPECT_EQ(c["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["prompt_tokens"], int(prompt.size()) + 1);
  EXPECT_EQ(j["usage"]["completion_tokens"], 0);
  const auto& lp = c["logprobs"];
  ASSERT_TRUE(lp.is_object()) << c.dump();
  const auto ids = model_->tokenizer().encode(prompt, true);
  ASSERT_EQ(lp["tokens"].size(), ids.size());
  ASSERT_EQ(lp["token_logprobs"].size(), ids.size());
  ASSERT_EQ(lp["top_logprobs"].size(), ids.size());
  ASSERT_EQ(lp["text_offset"].size(), ids.size());
  EXPECT_EQ(lp["tokens"][0], "") << "BOS";
  EXPECT_TRUE(lp["token_logprobs"][0].is_null()) << "nothing predicts the first prompt token";
  EXPECT_TRUE(lp["top_logprobs"][0].is_null());
  double max_diff = 0, nll = 0;
  for (size_t i = 1; i < ids.size(); ++i) {
    SCOPED_TRACE("position " + std::to_string(i));
    EXPECT_EQ(lp["tokens"][i], std::string(1, prompt[i - 1]));
    EXPECT_EQ(lp["text_offset"][i], int(i - 1));
    const std::vector<int32_t> prefix(ids.begin(), ids.begin() + long(i));
    const auto want = next_logprobs(*model_, prefix);
    const double got = lp["token_logprobs"][i].get<double>();
    max_diff = std::max(max_diff, std::fabs(got - want[size_t(ids[i])]));
    nll -= got;
    // top_logprobs: the 3 most likely tokens (and the chosen one), each with its log-probability.
    const auto& top = lp["top_logprobs"][i];
    ASSERT_TRUE(top.is_object());
    EXPECT_GE(top.size(), 3u);
    EXPECT_LE(top.size(), 4u);
    EXPECT_TRUE(top.contains(std::string(1, prompt[i - 1])));
    std::vector<double> sorted = want;
    std::sort(sorted.rbegin(), sorted.rend());
    double best = -INFINITY;
    for (const auto& [k, v] : top.items()) best = std::max(best, v.get<double>());
    EXPECT_NEAR(best, sorted[0], kTol);
  }
  std::printf("echo logprobs vs independent log-softmax: max |diff| = %.3g nats over %zu positions\n", max_diff, ids.size() - 1);
  EXPECT_LT(max_diff, kTol);
  // The perplexity a client computes from them equals the engine's own.
  EXPECT_NEAR(std::exp(nll / double(ids.size() - 1)), train::perplexity(*model_, ids), 1e-6 * train::perplexity(*model_, ids));
}

TEST_F(ServerLogprobs, GeneratedTokensGreedyAreTheTopChoice) {
  auto [status, j] =
      run_->complete(R"({"prompt":"copy:abcde|","max_tokens":5,"temperature":0,"ignore_eos":true,"logprobs":2})");
  ASSERT_EQ(status, 200) << j.dump();
  const auto& c = j["choices"][0];
  const auto& lp = c["logprobs"];
  ASSERT_TRUE(lp.is_object()) << c.dump();
  ASSERT_EQ(lp["tokens"].size(), 5u) << "no echo: the generated tokens only";
  std::string joined;
  auto ids = model_->tokenizer().encode("copy:abcde|", true);
  for (size_t i = 0; i < 5; ++i) {
    joined += lp["tokens"][i].get<std::string>();
    EXPECT_EQ(lp["text_offset"][i], int(joined.size() - lp["tokens"][i].get<std::string>().size()));
    const double got = lp["token_logprobs"][i].get<double>();
    const auto want = next_logprobs(*model_, ids);
    const int32_t tok = model_->tokenizer().encode(lp["tokens"][i].get<std::string>(), false).at(0);
    EXPECT_NEAR(got, want[size_t(tok)], kTol);
    EXPECT_NEAR(got, *std::max_element(want.begin(), want.end()), kTol) << "greedy picks the most likely token";
    ids.push_back(tok);
  }
  EXPECT_EQ(joined, c["text"].get<std::string>());
}

TEST_F(ServerLogprobs, EchoWithoutLogprobsAndSeveralChoices) {
  auto [s1, j1] = run_->complete(R"({"prompt":"rev:abc|","max_tokens":3,"temperature":0,"ignore_eos":true,"echo":true})");
  ASSERT_EQ(s1, 200) << j1.dump();
  const std::string text = j1["choices"][0]["text"];
  EXPECT_EQ(text.rfind("rev:abc|", 0), 0u) << text;
  EXPECT_EQ(text.size(), std::string("rev:abc|").size() + 3);
  EXPECT_TRUE(j1["choices"][0]["logprobs"].is_null());
  auto [s2, j2] = run_->complete(R"({"prompt":"hi","max_tokens":0,"echo":true,"logprobs":0,"n":2})");
  ASSERT_EQ(s2, 200) << j2.dump();
  ASSERT_EQ(j2["choices"].size(), 2u);
  EXPECT_EQ(j2["choices"][0]["logprobs"], j2["choices"][1]["logprobs"]);
  EXPECT_EQ(j2["choices"][1]["index"], 1);
  EXPECT_EQ(j2["choices"][0]["logprobs"]["top_logprobs"][1].size(), 1u) << "logprobs 0: the chosen token only";
}

TEST(ServerLogprobsJson, ShapeOfTheLogprobsObject) {
  std::vector<TokenLogprob> t(3);
  t[0].token = 'a';
  t[1].token = 'b';
  t[1].logprob = -0.5;
  t[1].top = {{'c', -0.25}, {'b', -0.5}};
  t[2].token = 'x';
  t[2].logprob = -2;
  t[2].top = {{'y', -0.1}};
  const auto j = logprobs_json(t, [](int32_t id) { return std::string(1, char(id)) + "."; }, 10);
  EXPECT_EQ(j["tokens"], nlohmann::json({"a.", "b.", "x."}));
  EXPECT_EQ(j["token_logprobs"], nlohmann::json({nullptr, -0.5, -2.0}));
  EXPECT_EQ(j["top_logprobs"][1], nlohmann::json({{"c.", -0.25}, {"b.", -0.5}}));
  EXPECT_EQ(j["top_logprobs"][2], nlohmann::json({{"y.", -0.1}, {"x.", -2.0}})) << "the chosen token is added";
  EXPECT_EQ(j["text_offset"], nlohmann::json({10, 12, 14}));
}

}  // namespace
