// The scheduler without a model: exact plans (who runs, which positions, how many tokens) for
// FCFS admission under the batch cap, decodes before prefill chunks under the token budget,
// preemption of the newest request, copy-on-write for n > 1, contiguous reservations, static
// batching on a fake clock, stop conditions and aborts. Logits are fabricated one-hot rows.
#include <gtest/gtest.h>

#include <climits>
#include <map>
#include <stdexcept>
#include <utility>
#include <vector>

#include "cb/engine/serving/scheduler.h"

using namespace cb::engine;

namespace {

constexpr int kVocab = 16, kEos = 15;

struct Harness {
  double now = 0;
  std::vector<std::pair<int, int>> copies;
  int copy_calls = 0;  // batched: one call per allocation or fork
  std::map<RequestId, std::vector<int32_t>> tokens;      // sample 0's tokens per request
  std::map<RequestId, std::vector<std::string>> finish;  // finish reasons per request, all samples
  std::unique_ptr<Scheduler> s;

  Harness(SchedulerOptions o, std::unique_ptr<BatchPolicy> policy, int context = 64, std::vector<int> extra_eos = {}) {
    s = std::make_unique<Scheduler>(o, ModelLimits{kVocab, context, kEos, extra_eos}, std::move(policy),
                                    [this](std::span<const BlockCopy> cs) {
                                      ++copy_calls;
                                      for (const BlockCopy& c : cs) copies.emplace_back(c.src, c.dst);
                                    }, [this] { return now; });
  }
  RequestId add(int prompt_len, int max_tokens, int n = 1, bool stop_at_eos = true) {
    RequestParams p;
    for (int i = 0; i < prompt_len; ++i) p.prompt.push_back(int32_t(i % 10));
    p.max_tokens = max_tokens;
    p.n = n;
    p.stop_at_eos = stop_at_eos;
    return s->add(p, [this](const TokenEvent& e) {
      if (e.finished) finish[e.request].push_back(e.finish_reason);
      else if (e.sample == 0) tokens[e.request].push_back(e.token);
    });
  }
  // Runs the plan's rows as if the model predicted `next` for every sequence.
  void output(const StepPlan& plan, int32_t next) {
    std::vector<float> logits(plan.chunks.size() * kVocab, 0.f);
    for (size_t b = 0; b < plan.chunks.size(); ++b) logits[b * kVocab + size_t(next)] = 1.f;
    s->update_from_output(plan, logits, 0.01);
  }
};

std::unique_ptr<BatchPolicy> cap(int batch) { return make_queue_table_policy({{INT_MAX, batch}}); }

SchedulerOptions opts(int blocks = 64, int block_size = 4, int budget = 512) {
  SchedulerOptions o;
  o.num_blocks = blocks;
  o.block_size = block_size;
  o.token_budget = budget;
  return o;
}

std::vector<std::pair<RequestId, int>> who(const StepPlan& p) {  // (request, tokens) per chunk
  std::vector<std::pair<RequestId, int>> v;
  for (const auto& c : p.chunks) v.emplace_back(c.request, int(c.tokens.size()));
  return v;
}

}  // namespace

TEST(Scheduler, AdmitsFcfsUpToTheBatchCapThenDecodes) {
  Harness h(opts(), cap(2));
  const RequestId a = h.add(5, 2), b = h.add(3, 2), c = h.add(4, 2);
  StepPlan p = h.s->schedule();
  EXPECT_EQ(p.view.queued, 3);
  EXPECT_EQ(p.running_before, 0);
  EXPECT_EQ(who(p), (std::vector<std::pair<RequestId, int>>{{a, 5}, {b, 3}}));
  EXPECT_EQ(p.chunks[0].pos0, 0);
  EXPECT_EQ(p.chunks[0].block_table.size(), 2u);  // 5 tokens in blocks of 4
  EXPECT_EQ(h.s->queued(), 1);
  h.output(p, 7);
  EXPECT_EQ(h.tokens[a], (std::vector<int32_t>{7}));

  p = h.s->schedule();  // two decodes; c waits for a free batch slot
  EXPECT_EQ(who(p), (std::vector<std::pair<RequestId, int>>{{a, 1}, {b, 1}}));
  EXPECT_EQ(p.chunks[0].pos0, 5);
  EXPECT_EQ(p.chunks[1].pos0, 3);
  EXPECT_EQ(p.running_before, 2);
  h.output(p, 8);
  EXPECT_EQ(h.finish[a], (std::vector<std::string>{"length"}));
  EXPECT_EQ(h.s->counters().finished_requests, 2);

  p = h.s->schedule();
  EXPECT_EQ(who(p), (std::vector<std::pair<RequestId, int>>{{c, 4}}));
  h.output(p, 1);
  h.output(h.s->schedule(), 2);
  EXPECT_TRUE(h.s->idle());
  EXPECT_EQ(h.s->counters().prefill_tokens, 5 + 3 + 4);
  EXPECT_EQ(h.s->counters().decode_tokens, 3);
  EXPECT_FALSE(h.s->schedule().keep_going);
}

// The placement option reaches the block manager: with runs two decoding requests keep their
// own adjacent blocks, with lifo they take turns.
TEST(Scheduler, KvPlacementOptionReachesTheBlockManager) {
  for (BlockPlacement placement : {BlockPlacement::Runs, BlockPlacement::Lifo}) {
    SchedulerOptions o = opts(64, 4);
    o.kv_placement = placement;
    Harness h(o, cap(2));
    EXPECT_EQ(h.s->blocks().placement(), placement);
    const RequestId a = h.add(4, 12), b = h.add(4, 12);
    StepPlan p = h.s->schedule();
    std::vector<int32_t> table_a;
    for (int step = 0; step < 10; ++step) {
      for (const auto& c : p.chunks)
        if (c.request == a) table_a.assign(c.block_table.begin(), c.block_table.end());
      h.output(p, 7);
      p = h.s->schedule();
    }
    ASSERT_GE(table_a.size(), 3u);
    bool adjacent = true;
    for (size_t i = 1; i < table_a.size(); ++i) adjacent = adjacent && table_a[i] == table_a[i - 1] + 1;
    EXPECT_EQ(adjacent, placement == BlockPlacement::Runs) << block_placement_name(placement);
    (void)b;
  }
}

TEST(Scheduler, DecodesComeFirstAndPrefillIsChunkedUnderTheBudget) {
  Harness h(opts(64, 4, 6), cap(8));
  const RequestId a = h.add(3, 4);
  h.output(h.s->schedule(), 7);
  const RequestId b = h.add(11, 2);
  StepPlan p = h.s->schedule();
  // a's decode (1 token) first, then 5 of b's 11 prompt tokens: the budget of 6 is full.
  EXPECT_EQ(who(p), (std::vector<std::pair<RequestId, int>>{{a, 1}, {b, 5}}));
  h.output(p, 7);
  EXPECT_TRUE(h.tokens[b].empty());  // its prompt is not done: the row is not sampled
  p = h.s->schedule();
  EXPECT_EQ(who(p), (std::vector<std::pair<RequestId, int>>{{a, 1}, {b, 5}}));
  EXPECT_EQ(p.chunks[1].pos0, 5);
  h.output(p, 7);
  p = h.s->schedule();
  EXPECT_EQ(who(p), (std::vector<std::pair<RequestId, int>>{{a, 1}, {b, 1}}));
  h.output(p, 9);
  EXPECT_EQ(h.tokens[b], (std::vector<int32_t>{9}));
  EXPECT_EQ(h.finish[a], (std::vector<std::string>{"length"}));
}

TEST(Scheduler, PreemptsTheNewestWhenBlocksRunOutAndRecomputesItLater) {
  Harness h(opts(4, 4), cap(8));  // 16 positions in all
  const RequestId a = h.add(8, 3), b = h.add(8, 3);
  StepPlan p = h.s->schedule();
  EXPECT_EQ(who(p), (std::vector<std::pair<RequestId, int>>{{a, 8}, {b, 8}}));
  h.output(p, 7);
  // a's decode at position 8 needs a fifth block: b, the newest, is preempted.
  p = h.s->schedule();
  EXPECT_EQ(who(p), (std::vector<std::pair<RequestId, int>>{{a, 1}}));
  EXPECT_EQ(h.s->counters().preemptions, 1);
  EXPECT_EQ(h.s->queued(), 1);
  h.output(p, 7);
  h.output(h.s->schedule(), 7);
  EXPECT_EQ(h.finish[a], (std::vector<std::string>{"length"}));
  // b comes back with its prompt and the token it had: 9 positions recomputed.
  p = h.s->schedule();
  EXPECT_EQ(who(p), (std::vector<std::pair<RequestId, int>>{{b, 9}}));
  h.output(p, 7);
  h.output(h.s->schedule(), 7);
  EXPECT_EQ(h.tokens[b].size(), 3u);
  EXPECT_EQ(h.finish[b], (std::vector<std::string>{"length"}));
  EXPECT_EQ(h.s->blocks().stats().used_blocks, 0);
}

TEST(Scheduler, ForksSamplesAfterThePromptAndCopiesSharedBlocksOnWrite) {
  Harness h(opts(), cap(8));
  const RequestId a = h.add(5, 2, /*n=*/3);
  StepPlan p = h.s->schedule();
  EXPECT_EQ(p.chunks.size(), 1u);  // only sample 0 prefills the prompt
  h.output(p, 7);
  EXPECT_EQ(h.s->running_sequences(), 3);
  p = h.s->schedule();
  ASSERT_EQ(p.chunks.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(p.chunks[size_t(i)].sample, i);
    EXPECT_EQ(p.chunks[size_t(i)].pos0, 5);
  }
  // Position 5 lies in the second block, shared by three samples: the first two writers copy it,
  // the last one owns it alone by then.
  EXPECT_EQ(h.copies.size(), 2u);
  h.output(p, 8);
  EXPECT_EQ(h.finish[a], (std::vector<std::string>{"length", "length", "length"}));
}

TEST(Scheduler, ContiguousModeReservesUpFront) {
  SchedulerOptions o = opts(16, 4);
  o.kv_mode = KvMode::Contiguous;
  o.contiguous_reserve = 16;
  Harness h(o, cap(8));
  h.add(3, 2);
  h.add(3, 2);
  StepPlan p = h.s->schedule();
  EXPECT_EQ(p.chunks.size(), 2u);
  EXPECT_EQ(h.s->blocks().stats().used_blocks, 8);  // 16 positions each, not 3
  EXPECT_EQ(p.chunks[0].block_table.size(), 4u);
  h.add(3, 2);
  h.add(3, 2);
  h.add(3, 2);
  h.output(p, 7);
  p = h.s->schedule();  // two decodes, two more admitted, the fifth does not fit
  EXPECT_EQ(p.chunks.size(), 4u);
  EXPECT_EQ(h.s->queued(), 1);
  // A reservation smaller than prompt + max_tokens is refused at the door.
  RequestParams big;
  big.prompt.assign(10, 1);
  big.max_tokens = 10;
  EXPECT_THROW(h.s->validate(big), std::invalid_argument);
}

TEST(Scheduler, StaticBatchingWaitsForItsTimeoutOnTheClock) {
  Harness h(opts(), make_static_policy(4, 1.0));
  h.add(3, 1);
  h.add(3, 1);
  StepPlan p = h.s->schedule();
  EXPECT_TRUE(p.chunks.empty());
  EXPECT_TRUE(p.keep_going);
  EXPECT_TRUE(h.s->stalled());
  h.now = 1.5;
  p = h.s->schedule();
  EXPECT_EQ(p.chunks.size(), 2u);
  EXPECT_FALSE(h.s->stalled());
}

TEST(Scheduler, StopsAtEosOnlyWhenAskedAndAbortEndsEverySample) {
  Harness h(opts(), cap(8), /*context=*/8);
  const RequestId a = h.add(3, 4), b = h.add(3, 4, 1, /*stop_at_eos=*/false), c = h.add(2, 6, 1, false);
  h.output(h.s->schedule(), kEos);
  EXPECT_EQ(h.finish[a], (std::vector<std::string>{"eos"}));
  EXPECT_TRUE(h.finish[b].empty());
  EXPECT_TRUE(h.finish[c].empty());
  for (int i = 0; i < 5; ++i) h.output(h.s->schedule(), 3);
  EXPECT_EQ(h.finish[b], (std::vector<std::string>{"length"}));
  EXPECT_EQ(h.finish[c], (std::vector<std::string>{"length"}));
  EXPECT_EQ(h.tokens[c].size(), 6u);
  EXPECT_TRUE(h.s->idle());

  const RequestId e = h.add(4, 4, /*n=*/2);  // queued, not forked yet: both samples end
  h.s->abort(e);
  EXPECT_EQ(h.finish[e], (std::vector<std::string>{"abort", "abort"}));
  EXPECT_TRUE(h.s->idle());
}

TEST(Scheduler, RejectsBadRequestsAndShortLogits) {
  Harness h(opts(2, 4), cap(8));
  RequestParams p;
  EXPECT_THROW(h.s->validate(p), std::invalid_argument);  // empty prompt
  p.prompt = {1, 99};
  EXPECT_THROW(h.s->validate(p), std::invalid_argument);  // outside the vocabulary
  p.prompt = {1, 2};
  p.max_tokens = 20;
  EXPECT_THROW(h.s->validate(p), std::invalid_argument);  // needs 6 blocks, the pool has 2
  h.add(3, 1);
  const StepPlan plan = h.s->schedule();
  std::vector<float> short_logits(kVocab - 1, 0.f);
  EXPECT_THROW(h.s->update_from_output(plan, short_logits, 0), std::invalid_argument);
}

TEST(Scheduler, EveryEosIdEndsASequence) {
  // Llama 3.1 lists three EOS ids: each ends a sequence; other ids do not.
  Harness h(opts(), cap(8), /*context=*/16, /*extra_eos=*/{12, 13});
  const RequestId a = h.add(3, 6), b = h.add(3, 6);
  h.output(h.s->schedule(), 11);
  EXPECT_TRUE(h.finish[a].empty());
  h.output(h.s->schedule(), 13);
  EXPECT_EQ(h.finish[a], (std::vector<std::string>{"eos"}));
  EXPECT_EQ(h.finish[b], (std::vector<std::string>{"eos"}));
  const RequestId c = h.add(3, 6);
  h.output(h.s->schedule(), 12);
  EXPECT_EQ(h.finish[c], (std::vector<std::string>{"eos"}));
}
