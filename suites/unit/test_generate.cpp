// Generation, sampling and tokenizer: exact behaviour and the errors users see.
#include <gtest/gtest.h>

#include <random>

#include <numeric>

#include <map>

#include <cmath>

#include "cb/engine/model/engine.h"
#include "test_support.h"

using namespace cb::engine;

namespace {

std::unique_ptr<LoadedModel> default_model(const std::string& backend = "cpu") {
  return LoadedModel::open(default_model_dir(), backend);
}

using cb::test::error_of;

TEST(Tokenizer, ByteRoundTripWithBos) {
  ByteTokenizer tok(259, 256, 257, 258);
  const std::string text = "héllo\n\x01";
  auto ids = tok.encode(text);
  ASSERT_EQ(ids.front(), 256);
  EXPECT_EQ(ids.size(), text.size() + 1);
  EXPECT_EQ(tok.decode(ids), text);
  EXPECT_EQ(tok.decode_one(257), "");
  EXPECT_EQ(tok.decode_one(300), "<300>");
}

TEST(Tokenizer, ParseTokenIdsNamesTheBadItem) {
  EXPECT_EQ(parse_token_ids("1, 2,3", 259), (std::vector<int32_t>{1, 2, 3}));
  EXPECT_NE(error_of([] { parse_token_ids("1,x,3", 259); }).find("token id #1 ('x'): not an integer"), std::string::npos);
  EXPECT_NE(error_of([] { parse_token_ids("1,,3", 259); }).find("token id #1 (''): empty item"), std::string::npos);
  EXPECT_NE(error_of([] { parse_token_ids("5,259", 259); }).find("token id #1 ('259'): outside the vocabulary [0, 259)"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_token_ids("-1", 259); }).find("outside the vocabulary"), std::string::npos);
  EXPECT_NE(error_of([] { parse_token_ids("7abc", 259); }).find("not an integer"), std::string::npos);
}

TEST(Sampler, GreedyIsArgmaxAndTopK1IsGreedy) {
  const std::vector<float> logits = {0.1f, 2.5f, -1.f, 2.4f};
  Sampler greedy({0.f, 0, 1.f, 0});
  EXPECT_EQ(greedy.sample(logits), 1);
  Sampler topk1({5.f, 1, 1.f, 123});
  for (int i = 0; i < 20; ++i) EXPECT_EQ(topk1.sample(logits), 1);
}

// The vectorized exp behind the sampler's softmax, against libm over the range a row's logits span
// (x from -100 to 0 after the max is taken off): within 4 float ulp where e^x is a normal float,
// exactly 0 below e^-87, and the returned sum is the sum of the weights.
TEST(Sampler, ExpWeightsMatchLibmWithinFourUlp) {
  std::vector<float> logits;
  for (int i = 0; i <= 200000; ++i) logits.push_back(-100.f + 100.f * float(i) / 200000.f);
  logits.push_back(0.f);
  std::vector<float> w(logits.size());
  const double total = exp_weights(logits, 0.f, 1.f, w);
  double sum = 0, worst_ulp = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    sum += w[i];
    const double want = std::exp(double(logits[i]));
    if (logits[i] < -87.f) {
      EXPECT_EQ(w[i], 0.f) << "x = " << logits[i];
      continue;
    }
    const double ulp = std::nextafter(float(want), INFINITY) - float(want);
    worst_ulp = std::max(worst_ulp, std::abs(double(w[i]) - want) / ulp);
  }
  EXPECT_LE(worst_ulp, 4.0);
  EXPECT_EQ(w.back(), 1.f);
  EXPECT_NEAR(total, sum, 1e-9 * sum);
  // The max and the temperature are applied: e^((x - mx) / T).
  const std::vector<float> row = {3.f, 1.f, 2.f};
  std::vector<float> w2(3);
  exp_weights(row, 3.f, 0.5f, w2);
  EXPECT_FLOAT_EQ(w2[0], 1.f);
  EXPECT_NEAR(w2[1], std::exp(-1.0), 4e-7);
  EXPECT_NEAR(w2[2], std::exp(-0.5), 4e-7);
  EXPECT_THROW(exp_weights(row, 3.f, 1.f, std::span<float>(w2.data(), 2)), std::invalid_argument);
}

TEST(Sampler, SameSeedSameDraws) {
  std::vector<float> logits(50);
  for (int i = 0; i < 50; ++i) logits[i] = float(i % 7) * 0.3f;
  Sampler a({1.f, 0, 1.f, 99}), b({1.f, 0, 1.f, 99}), c({1.f, 0, 1.f, 100});
  std::vector<int32_t> da, db, dc;
  for (int i = 0; i < 64; ++i) {
    da.push_back(a.sample(logits));
    db.push_back(b.sample(logits));
    dc.push_back(c.sample(logits));
  }
  EXPECT_EQ(da, db);
  EXPECT_NE(da, dc);
}

TEST(Sampler, TopPKeepsOnlyTheNucleus) {
  // Probabilities ~ [0.86, 0.12, 0.02, ...]: top_p 0.5 keeps only the first token.
  const std::vector<float> logits = {4.f, 2.f, 0.f, -2.f};
  Sampler s({1.f, 0, 0.5f, 7});
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.sample(logits), 0);
}

// The sampler's draws follow the softmax at the temperature, with and without top-k / top-p,
// over a vocabulary large enough that the shortcuts (no sort, partial sort, nucleus pre-filter)
// matter. Frequencies of 100K draws against the exact probabilities of the kept set.
TEST(Sampler, DrawFrequenciesMatchTheTruncatedSoftmax) {
  std::mt19937 gen(5);
  std::normal_distribution<float> nd(0.f, 2.f);
  std::vector<float> logits(1000);
  for (auto& l : logits) l = nd(gen);
  logits[17] = 7.f, logits[400] = 6.5f, logits[999] = 6.f;  // a few clear leaders
  struct Case { float temp; int top_k; float top_p; };
  for (const Case c : {Case{1.f, 0, 1.f}, Case{0.7f, 0, 1.f}, Case{1.f, 5, 1.f}, Case{1.f, 0, 0.6f}, Case{0.8f, 20, 0.9f}}) {
    SCOPED_TRACE("temperature " + std::to_string(c.temp) + " top_k " + std::to_string(c.top_k) + " top_p " + std::to_string(c.top_p));
    // Exact distribution: sort by logit (ties by id), keep top k, then the nucleus.
    std::vector<int> idx(logits.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return logits[a] > logits[b]; });
    if (c.top_k > 0) idx.resize(size_t(c.top_k));
    std::vector<double> p;
    double sum = 0;
    for (int i : idx) sum += p.emplace_back(std::exp((logits[i] - logits[idx[0]]) / c.temp));
    size_t keep = p.size();
    if (c.top_p < 1.f) {
      double cum = 0;
      for (keep = 0; keep < p.size();) {
        cum += p[keep++] / sum;
        if (cum >= c.top_p) break;
      }
    }
    const double kept = std::accumulate(p.begin(), p.begin() + std::ptrdiff_t(keep), 0.0);
    std::map<int, double> want;
    for (size_t i = 0; i < keep; ++i) want[idx[i]] = p[i] / kept;

    Sampler s({c.temp, c.top_k, c.top_p, 42});
    const int draws = 100000;
    std::map<int, int> got;
    for (int d = 0; d < draws; ++d) ++got[s.sample(logits)];
    for (const auto& [tok, n] : got) EXPECT_TRUE(want.count(tok)) << "token " << tok << " is outside the kept set";
    for (const auto& [tok, q] : want) {
      const double f = double(got[tok]) / draws, sd = std::sqrt(q * (1 - q) / draws);
      EXPECT_NEAR(f, q, 5 * sd + 1e-4) << "token " << tok;
    }
  }
}

TEST(Sampler, RejectsBadParameters) {
  EXPECT_NE(error_of([] { Sampler({-1.f, 0, 1.f, 0}); }).find("temperature"), std::string::npos);
  EXPECT_NE(error_of([] { Sampler({1.f, -3, 1.f, 0}); }).find("top_k"), std::string::npos);
  EXPECT_NE(error_of([] { Sampler({1.f, 0, 0.f, 0}); }).find("top_p"), std::string::npos);
  EXPECT_NE(error_of([] { Sampler({1.f, 0, 1.5f, 0}); }).find("top_p"), std::string::npos);
}

TEST(Generate, GreedyIsDeterministicAndBackendsAgree) {
  auto cpu = default_model("cpu"), ref = default_model("ref");
  const auto prompt = cpu->tokenizer().encode("The quick brown fox", true);
  GenerateOptions o;
  o.max_tokens = 12;
  o.stop_at_eos = false;
  const auto a = generate(*cpu, prompt, o), b = generate(*cpu, prompt, o), c = generate(*ref, prompt, o);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.tokens, c.tokens);
  EXPECT_EQ(a.tokens.size(), 12u);
  EXPECT_EQ(a.decode_steps, 11);
  EXPECT_EQ(a.prompt_tokens, int(prompt.size()));
  EXPECT_EQ(a.stop_reason, "length");
  // Chunked prefill yields the same continuation.
  o.prefill_chunk = 3;
  EXPECT_EQ(generate(*cpu, prompt, o).tokens, a.tokens);
}

TEST(Generate, SampledIsReproducibleFromTheSeed) {
  auto m = default_model();
  const auto prompt = m->tokenizer().encode("abc", true);
  GenerateOptions o;
  o.max_tokens = 16;
  o.stop_at_eos = false;
  o.sampling = {0.9f, 40, 0.95f, 1234};
  const auto a = generate(*m, prompt, o), b = generate(*m, prompt, o);
  EXPECT_EQ(a.tokens, b.tokens);
  o.sampling.seed = 1235;
  EXPECT_NE(generate(*m, prompt, o).tokens, a.tokens);
}

TEST(Generate, OnTokenCallbackSeesEveryToken) {
  auto m = default_model();
  std::vector<int32_t> seen;
  GenerateOptions o;
  o.max_tokens = 5;
  o.stop_at_eos = false;
  const auto r = generate(*m, m->tokenizer().encode("x", true), o, [&](int32_t t) { seen.push_back(t); });
  EXPECT_EQ(seen, r.tokens);
}

TEST(Generate, PromptLongerThanContextIsAClearError) {
  auto m = default_model();
  const int ctx = m->config().max_position_embeddings;
  std::vector<int32_t> prompt(ctx + 1, 65);
  GenerateOptions o;
  o.max_tokens = 1;
  const std::string e = error_of([&] { generate(*m, prompt, o); });
  EXPECT_NE(e.find("prompt has " + std::to_string(ctx + 1) + " tokens, longer than the model's context of " + std::to_string(ctx)),
            std::string::npos)
      << e;
  std::vector<int32_t> fits(ctx - 2, 65);
  o.max_tokens = 5;
  EXPECT_NE(error_of([&] { generate(*m, fits, o); }).find("exceeds the model's context"), std::string::npos);
}

TEST(Generate, BadPromptsAndOptionsAreClearErrors) {
  auto m = default_model();
  GenerateOptions o;
  EXPECT_NE(error_of([&] { generate(*m, {}, o); }).find("prompt is empty"), std::string::npos);
  EXPECT_NE(error_of([&] { generate(*m, {1, 999}, o); }).find("prompt token #1 = 999 is outside the vocabulary"), std::string::npos);
  o.max_tokens = 0;
  EXPECT_NE(error_of([&] { generate(*m, {1}, o); }).find("max_tokens must be > 0"), std::string::npos);
}

TEST(LoadedModel, MissingDirectoryAndUnknownBackendAreClearErrors) {
  EXPECT_NE(error_of([] { LoadedModel::open("/nonexistent/model"); }).find("/nonexistent/model: model directory does not exist"),
            std::string::npos);
  const std::string e = error_of([] { LoadedModel::open(default_model_dir(), "tpu"); });
  EXPECT_NE(e.find("unknown backend 'tpu'"), std::string::npos) << e;
  EXPECT_NE(e.find("cpu"), std::string::npos) << e;
}

}  // namespace
