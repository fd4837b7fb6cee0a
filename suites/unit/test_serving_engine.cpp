// The serving engine (continuous batching over the paged KV cache) against one-at-a-time
// generation: batching, chunked prefill, preemption, forking and the prefix cache must not change
// a single token.
#include <map>

#include <gtest/gtest.h>

#include "cb/engine/serving/serving_engine.h"

using namespace cb::engine;

namespace {

struct Collected {
  std::map<std::pair<RequestId, int>, std::vector<int32_t>> tokens;
  std::map<std::pair<RequestId, int>, std::string> finish;
  std::vector<int32_t> of(RequestId r, int sample) { return tokens[{r, sample}]; }
  std::string reason(RequestId r, int sample) { return finish[{r, sample}]; }
  TokenCallback callback() {
    return [this](const TokenEvent& e) {
      if (e.finished) {
        EXPECT_EQ(finish.count({e.request, e.sample}), 0u) << "sample finished twice";
        finish[{e.request, e.sample}] = e.finish_reason;
      } else {
        EXPECT_EQ(finish.count({e.request, e.sample}), 0u) << "token after finish";
        tokens[{e.request, e.sample}].push_back(e.token);
      }
    };
  }
};

std::vector<int32_t> prompt_of(int len, int salt) {
  std::vector<int32_t> p = {256};
  for (int i = 1; i < len; ++i) p.push_back((i * 37 + salt * 11) % 256);
  return p;
}

SamplingParams sp(float t, int k, float p, uint64_t seed) { return SamplingParams{t, k, p, seed}; }

std::vector<int32_t> alone(LoadedModel& m, const std::vector<int32_t>& prompt, int max_tokens, SamplingParams sp = {}) {
  GenerateOptions o;
  o.max_tokens = max_tokens;
  o.sampling = sp;
  o.stop_at_eos = false;
  return generate(m, prompt, o).tokens;
}

class ServingEngineTest : public ::testing::Test {
 protected:
  void SetUp() override { model = LoadedModel::open(default_model_dir(), "cpu"); }
  std::unique_ptr<LoadedModel> model;
};

TEST_F(ServingEngineTest, BatchedGreedyMatchesOneAtATime) {
  EngineOptions o;
  o.num_blocks = 64;
  o.block_size = 4;
  o.token_budget = 7;  // forces chunked prefill and mixes decodes with prefill chunks
  ServingEngine eng(*model, std::move(o));
  Collected c;
  std::vector<std::pair<RequestId, std::vector<int32_t>>> reqs;
  for (int i = 0; i < 6; ++i) {
    RequestParams p;
    p.prompt = prompt_of(3 + 5 * i, i);
    p.max_tokens = 4 + i;
    p.stop_at_eos = false;
    reqs.push_back({eng.add_request(p, c.callback()), p.prompt});
  }
  eng.run_until_idle();
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(c.of(reqs[i].first, 0), alone(*model, reqs[i].second, 4 + int(i))) << "request " << i;
    EXPECT_EQ(c.reason(reqs[i].first, 0), "length");
  }
  const auto st = eng.stats();
  EXPECT_EQ(st.finished_requests, 6);
  EXPECT_EQ(st.blocks.used_blocks, 0) << "every block is returned";
  EXPECT_GT(*std::max_element(st.step_batch.begin(), st.step_batch.end()), 1) << "requests actually shared steps";
  for (int t : st.step_tokens) EXPECT_LE(t, 7) << "token budget respected";
}

TEST_F(ServingEngineTest, PreemptionAndResumeGiveTheSameTokens) {
  EngineOptions o;
  o.num_blocks = 10;  // too small for all four to grow at once
  o.block_size = 4;
  ServingEngine eng(*model, std::move(o));
  Collected c;
  std::vector<std::pair<RequestId, std::vector<int32_t>>> reqs;
  for (int i = 0; i < 4; ++i) {
    RequestParams p;
    p.prompt = prompt_of(6, 10 + i);
    p.max_tokens = 14;
    p.stop_at_eos = false;
    p.sampling = {0.8f, 20, 0.9f, uint64_t(100 + i)};  // sampled: the sampler's state must survive preemption
    reqs.push_back({eng.add_request(p, c.callback()), p.prompt});
  }
  eng.run_until_idle();
  EXPECT_GT(eng.stats().preemptions, 0) << "the pool was meant to force preemption";
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(c.of(reqs[i].first, 0), alone(*model, reqs[i].second, 14, sp(0.8f, 20, 0.9f, uint64_t(100 + i))))
        << "request " << i;
  EXPECT_EQ(eng.stats().finished_requests, 4);
}

TEST_F(ServingEngineTest, SamplesShareThePromptAndCopyOnWrite) {
  EngineOptions o;
  o.num_blocks = 32;
  o.block_size = 4;
  ServingEngine eng(*model, std::move(o));
  Collected c;
  RequestParams p;
  p.prompt = prompt_of(10, 3);  // 10 tokens: the third block is partly filled and shared
  p.max_tokens = 6;
  p.n = 3;
  p.stop_at_eos = false;
  p.sampling = {1.0f, 0, 1.f, 42};
  const RequestId id = eng.add_request(p, c.callback());
  eng.step();  // prefill, fork, first tokens
  const auto mid = eng.stats().blocks;
  EXPECT_EQ(mid.used_blocks, 3) << "three samples share the prompt's three blocks";
  eng.run_until_idle();
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(c.of(id, i), alone(*model, p.prompt, 6, sp(1.0f, 0, 1.f, uint64_t(42 + i)))) << "sample " << i;
  const auto st = eng.stats();
  EXPECT_EQ(st.blocks.cow_copies, 2) << "two of the three samples copy the shared partial block";
  EXPECT_EQ(st.blocks.used_blocks, 0);
}

TEST_F(ServingEngineTest, PrefixCacheReusesBlocksWithoutChangingTokens) {
  EngineOptions o;
  o.num_blocks = 64;
  o.block_size = 4;
  o.prefix_cache = true;
  ServingEngine eng(*model, std::move(o));
  Collected c;
  RequestParams p;
  p.prompt = prompt_of(18, 5);
  p.max_tokens = 5;
  p.stop_at_eos = false;
  const RequestId a = eng.add_request(p, c.callback());
  eng.run_until_idle();
  const RequestId b = eng.add_request(p, c.callback());
  eng.run_until_idle();
  EXPECT_EQ(c.of(a, 0), c.of(b, 0));
  EXPECT_EQ(c.of(a, 0), alone(*model, p.prompt, 5));
  EXPECT_EQ(eng.stats().blocks.prefix_hits, 4) << "18 prompt tokens = 4 full blocks of 4";
  EXPECT_LT(eng.stats().prefill_tokens, 2 * 18) << "the second prompt was mostly not recomputed";
}

TEST_F(ServingEngineTest, OutOfBlocksWithNothingToPreemptFailsOnlyThatRequest) {
  EngineOptions o;
  o.num_blocks = 6;
  o.block_size = 4;
  ServingEngine eng(*model, std::move(o));
  Collected c;
  RequestParams big;
  big.prompt = prompt_of(8, 1);
  big.max_tokens = 8;
  big.n = 4;  // 2 shared prompt blocks + 4 x 2 tail blocks > 6
  big.stop_at_eos = false;
  const RequestId a = eng.add_request(big, c.callback());
  RequestParams small;
  small.prompt = prompt_of(3, 2);
  small.max_tokens = 5;
  small.stop_at_eos = false;
  const RequestId b = eng.add_request(small, c.callback());
  eng.run_until_idle();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(c.reason(a, i).rfind("error: out of KV blocks", 0), 0u) << c.reason(a, i);
  EXPECT_EQ(c.reason(b, 0), "length");
  EXPECT_EQ(c.of(b, 0), alone(*model, small.prompt, 5));
  EXPECT_EQ(eng.stats().blocks.used_blocks, 0);
}

TEST_F(ServingEngineTest, QueueTablePolicyPicksTheBatchFromTheQueue) {
  EngineOptions o;
  o.num_blocks = 512;
  o.block_size = 16;
  o.token_budget = 4096;
  ServingEngine eng(*model, std::move(o));
  Collected c;
  for (int i = 0; i < 60; ++i) {
    RequestParams p;
    p.prompt = prompt_of(4, i);
    p.max_tokens = 3;
    p.stop_at_eos = false;
    eng.add_request(p, c.callback());
  }
  eng.step();
  EXPECT_EQ(eng.stats().step_queue[0], 60);
  EXPECT_EQ(eng.stats().step_batch[0], 32) << "queue > 50 -> batch 32";
  eng.run_until_idle();
  ServingEngine small(*model, EngineOptions{});
  Collected c2;  // request ids restart in a new engine
  for (int i = 0; i < 5; ++i) {
    RequestParams p;
    p.prompt = prompt_of(4, i);
    p.max_tokens = 2;
    small.add_request(p, c2.callback());
  }
  small.step();
  EXPECT_EQ(small.stats().step_batch[0], 4) << "queue < 10 -> batch 4";
}

TEST_F(ServingEngineTest, ContiguousModeReservesTheFullContextPerSequence) {
  EngineOptions o;
  o.num_blocks = 64;
  o.block_size = 4;
  o.kv_mode = KvMode::Contiguous;
  o.contiguous_reserve = 32;
  ServingEngine eng(*model, std::move(o));
  Collected c;
  RequestParams p;
  p.prompt = prompt_of(5, 1);
  p.max_tokens = 3;
  p.n = 2;
  p.stop_at_eos = false;
  p.sampling = {1.0f, 0, 1.f, 9};
  const RequestId id = eng.add_request(p, c.callback());
  eng.step();
  EXPECT_EQ(eng.stats().blocks.used_blocks, 2 * 8) << "two samples x 32 reserved tokens / 4 per block";
  eng.run_until_idle();
  for (int i = 0; i < 2; ++i) EXPECT_EQ(c.of(id, i), alone(*model, p.prompt, 3, sp(1.0f, 0, 1.f, uint64_t(9 + i))));
  const auto& cfg = model->config();
  const size_t bytes_per_token = size_t(2) * cfg.num_hidden_layers * cfg.kv_dim() * sizeof(float);  // K and V, F32 cache
  EXPECT_EQ(eng.stats().kv_bytes_reserved_peak, size_t(16) * 4 * bytes_per_token) << "16 blocks x 4 tokens x bytes/token";
}

TEST_F(ServingEngineTest, AbortAndBadRequests) {
  ServingEngine eng(*model, EngineOptions{});
  Collected c;
  RequestParams p;
  p.prompt = prompt_of(4, 1);
  p.max_tokens = 50;
  const RequestId id = eng.add_request(p, c.callback());
  eng.step();
  eng.abort(id);
  EXPECT_EQ(c.reason(id, 0), "abort");
  EXPECT_TRUE(eng.idle());
  RequestParams bad = p;
  bad.prompt = {};
  EXPECT_THROW(eng.add_request(bad, c.callback()), std::invalid_argument);
  bad = p;
  bad.max_tokens = 0;
  EXPECT_THROW(eng.add_request(bad, c.callback()), std::invalid_argument);
  bad = p;
  bad.prompt = {1, 5000};
  EXPECT_THROW(eng.add_request(bad, c.callback()), std::invalid_argument);
  bad = p;
  bad.n = 0;
  EXPECT_THROW(eng.add_request(bad, c.callback()), std::invalid_argument);
}

}  // namespace
