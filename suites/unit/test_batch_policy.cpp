// Batch-size policies: the queue-table conformance script (the `batch-policy` claim), static
// batching's start rule, and the slo policy's online step-time model.
#include <gtest/gtest.h>

#include <climits>
#include <cmath>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "cb/engine/serving/batch_policy.h"

using cb::engine::BatchPolicy;
using cb::engine::QueueTableRow;
using cb::engine::SchedulerView;
using cb::engine::batch_policy_names;
using cb::engine::default_queue_table;
using cb::engine::make_policy;
using cb::engine::make_queue_table_policy;
using cb::engine::make_slo_policy;
using cb::engine::make_static_policy;

namespace {

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "message: " << (haystack)

// The std::invalid_argument message f throws, or "" (and a test failure) when it throws none.
template <class F>
std::string invalid_argument(F&& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected std::invalid_argument";
  return "";
}

SchedulerView queue(int queued, int running = 0, double oldest_wait_s = 0) {
  SchedulerView v;
  v.queued = queued;
  v.running = running;
  v.oldest_wait_s = oldest_wait_s;
  return v;
}

// A decode step (tokens = batch) under the linear model a + b * batch.
double step_s(double a, double b, int batch) { return a + b * batch; }

// Runs `steps` decode steps at whatever batch the policy picks, timed by a + b * batch.
void run_closed_loop(BatchPolicy& p, double a, double b, int steps) {
  for (int i = 0; i < steps; ++i) {
    const int batch = p.max_batch(queue(1000));
    p.observe_step(batch, batch, step_s(a, b, batch));
  }
}

// ---------------------------------------------------------------------------------------------
// queue-table

// The `batch-policy` claim's script: the article says queue < 10 -> batch 4 and queue > 50 -> 32;
// the default table adds 16 for 10..50. The queue length is SchedulerView::queued.
TEST(BatchPolicy, QueueTableFollowsTheArticleTable) {
  const auto p = make_queue_table_policy();
  const std::vector<std::pair<int, int>> script = {{0, 4},   {1, 4},   {5, 4},   {9, 4},
                                                   {10, 16}, {11, 16}, {30, 16}, {50, 16},
                                                   {51, 32}, {60, 32}, {200, 32}};
  for (const auto& [queued, batch] : script) EXPECT_EQ(p->max_batch(queue(queued)), batch) << "queued=" << queued;
  EXPECT_EQ(p->name(), "queue-table");
  EXPECT_TRUE(p->admits_while_running());
  EXPECT_TRUE(p->ready_to_start(queue(1)));
}

TEST(BatchPolicy, QueueTableDefaultRows) {
  const auto t = default_queue_table();
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0].queue_below, 10);
  EXPECT_EQ(t[0].batch, 4);
  EXPECT_EQ(t[1].queue_below, 51);
  EXPECT_EQ(t[1].batch, 16);
  EXPECT_EQ(t[2].queue_below, INT_MAX);
  EXPECT_EQ(t[2].batch, 32);
}

TEST(BatchPolicy, QueueTableCountsQueuedNotRunning) {
  const auto p = make_queue_table_policy();
  EXPECT_EQ(p->max_batch(queue(5, 100)), 4);
  EXPECT_EQ(p->max_batch(queue(60, 0)), 32);
  EXPECT_EQ(p->max_batch(queue(INT_MAX - 1)), 32);
}

TEST(BatchPolicy, QueueTableCustomTables) {
  const auto p = make_queue_table_policy({{1, 1}, {4, 2}, {100, 64}, {INT_MAX, 128}});
  EXPECT_EQ(p->max_batch(queue(0)), 1);
  EXPECT_EQ(p->max_batch(queue(1)), 2);
  EXPECT_EQ(p->max_batch(queue(3)), 2);
  EXPECT_EQ(p->max_batch(queue(4)), 64);
  EXPECT_EQ(p->max_batch(queue(99)), 64);
  EXPECT_EQ(p->max_batch(queue(100)), 128);

  const auto single = make_queue_table_policy({{INT_MAX, 7}});
  EXPECT_EQ(single->max_batch(queue(0)), 7);
  EXPECT_EQ(single->max_batch(queue(1000000)), 7);

  // Batches need not increase with the queue.
  const auto down = make_queue_table_policy({{10, 32}, {INT_MAX, 2}});
  EXPECT_EQ(down->max_batch(queue(9)), 32);
  EXPECT_EQ(down->max_batch(queue(10)), 2);
}

TEST(BatchPolicy, QueueTableRejectsInvalidTables) {
  EXPECT_CONTAINS(invalid_argument([] { make_queue_table_policy({}); }), "empty");

  auto msg = invalid_argument([] { make_queue_table_policy({{10, 4}, {10, 16}, {INT_MAX, 32}}); });
  EXPECT_CONTAINS(msg, "row 1 {queue_below=10, batch=16}");
  EXPECT_CONTAINS(msg, "greater than the previous row's (10)");

  msg = invalid_argument([] { make_queue_table_policy({{10, 4}, {51, 16}, {20, 8}, {INT_MAX, 32}}); });
  EXPECT_CONTAINS(msg, "row 2 {queue_below=20, batch=8}");

  msg = invalid_argument([] { make_queue_table_policy({{10, 4}, {51, 0}, {INT_MAX, 32}}); });
  EXPECT_CONTAINS(msg, "row 1 {queue_below=51, batch=0}");
  EXPECT_CONTAINS(msg, "batch must be >= 1");

  msg = invalid_argument([] { make_queue_table_policy({{10, -4}, {INT_MAX, 32}}); });
  EXPECT_CONTAINS(msg, "row 0");

  msg = invalid_argument([] { make_queue_table_policy({{10, 4}, {51, 16}}); });
  EXPECT_CONTAINS(msg, "row 1 {queue_below=51, batch=16}");
  EXPECT_CONTAINS(msg, "INT_MAX");

  msg = invalid_argument([] { make_queue_table_policy({{0, 4}, {INT_MAX, 32}}); });
  EXPECT_CONTAINS(msg, "row 0 {queue_below=0, batch=4}");
}

// ---------------------------------------------------------------------------------------------
// static

TEST(BatchPolicy, StaticWaitsForAFullBatchOrTheTimeout) {
  const auto p = make_static_policy(8, 0.05);
  EXPECT_EQ(p->name(), "static");
  EXPECT_FALSE(p->admits_while_running());
  EXPECT_EQ(p->max_batch(queue(1)), 8);
  EXPECT_EQ(p->max_batch(queue(100)), 8);

  EXPECT_FALSE(p->ready_to_start(queue(7, 0, 0.01)));  // B - 1 queued, before the timeout
  EXPECT_TRUE(p->ready_to_start(queue(8, 0, 0.0)));    // B queued
  EXPECT_TRUE(p->ready_to_start(queue(9, 0, 0.0)));
  EXPECT_FALSE(p->ready_to_start(queue(1, 0, 0.0499)));
  EXPECT_TRUE(p->ready_to_start(queue(1, 0, 0.05)));   // timeout reached: a partial batch
  EXPECT_TRUE(p->ready_to_start(queue(7, 0, 0.2)));
  EXPECT_FALSE(p->ready_to_start(queue(0, 0, 10.0)));  // nothing to start
  EXPECT_FALSE(p->ready_to_start(queue(0, 0, 0.0)));

  const auto one = make_static_policy(1, 0.0);
  EXPECT_TRUE(one->ready_to_start(queue(1)));
  EXPECT_FALSE(one->ready_to_start(queue(0)));
}

TEST(BatchPolicy, StaticRejectsInvalidParameters) {
  EXPECT_CONTAINS(invalid_argument([] { make_static_policy(0, 0.05); }), "batch must be >= 1");
  EXPECT_CONTAINS(invalid_argument([] { make_static_policy(8, -1.0); }), "timeout_s");
  EXPECT_CONTAINS(invalid_argument([] { make_static_policy(8, std::nan("")); }), "timeout_s");
}

// ---------------------------------------------------------------------------------------------
// slo

// Steps cost 2 ms + 1 ms per sequence; target 20 ms. Warm-up starts at 4 and doubles while under
// target (4: 6 ms, 8: 10 ms, 16: 18 ms); with three batch sizes seen the model takes over and
// picks the largest batch with 2 + B * 1 <= 20, B = 18 (exactly on target; 19 would be 21 ms).
TEST(BatchPolicy, SloWarmsUpThenPicksTheLargestBatchUnderTarget) {
  const auto p = make_slo_policy(0.020, 256);
  EXPECT_EQ(p->name(), "slo");
  EXPECT_TRUE(p->admits_while_running());
  const double a = 0.002, b = 0.001;
  EXPECT_EQ(p->max_batch(queue(100)), 4);
  p->observe_step(4, 4, step_s(a, b, 4));
  EXPECT_EQ(p->max_batch(queue(100)), 8);
  p->observe_step(8, 8, step_s(a, b, 8));
  EXPECT_EQ(p->max_batch(queue(100)), 16);
  p->observe_step(16, 16, step_s(a, b, 16));
  EXPECT_EQ(p->max_batch(queue(100)), 18);
  run_closed_loop(*p, a, b, 50);
  EXPECT_EQ(p->max_batch(queue(100)), 18);
  EXPECT_EQ(p->max_batch(queue(0)), 18);  // the slo policy does not look at the queue
}

TEST(BatchPolicy, SloWarmUpDoesNotGrowOnUnderfilledStepsAndHalvesOnAMiss) {
  const auto p = make_slo_policy(0.020, 256);
  p->observe_step(2, 2, 0.004);  // under target, but smaller than the current size of 4: no proof
  EXPECT_EQ(p->max_batch(queue(100)), 4);
  p->observe_step(4, 4, 0.030);  // over target: halve
  EXPECT_EQ(p->max_batch(queue(100)), 2);

  const auto q = make_slo_policy(0.001, 256);
  q->observe_step(4, 4, 0.005);
  EXPECT_EQ(q->max_batch(queue(100)), 2);
  q->observe_step(2, 2, 0.003);
  EXPECT_EQ(q->max_batch(queue(100)), 1);
  q->observe_step(2, 2, 0.003);  // still only two distinct sizes; never below 1
  EXPECT_EQ(q->max_batch(queue(100)), 1);
}

// Mixed steps (decode plus prefill chunks): step = 2 ms + 0.6 ms per sequence + 0.4 ms per token.
// A decode step has tokens = batch, so it costs 2 + 1.0 * B ms: again B = 18 for 20 ms.
TEST(BatchPolicy, SloSeparatesPerSequenceAndPerTokenCosts) {
  const auto p = make_slo_policy(0.020, 256);
  const int batches[] = {1, 3, 6, 10, 2, 8, 5, 12};
  const int extra_tokens[] = {0, 64, 16, 0, 128, 32, 0, 8};
  for (int round = 0; round < 4; ++round)
    for (int i = 0; i < 8; ++i) {
      const int tokens = batches[i] + extra_tokens[i];
      p->observe_step(batches[i], tokens, 0.002 + 0.0006 * batches[i] + 0.0004 * tokens);
    }
  EXPECT_EQ(p->max_batch(queue(100)), 18);
}

TEST(BatchPolicy, SloAdaptsWhenTheStepTimeDrifts) {
  // Slower: 2 ms + 2 ms per sequence -> B = 9 (2 + 18 = 20 ms).
  const auto slower = make_slo_policy(0.020, 256);
  run_closed_loop(*slower, 0.002, 0.001, 20);
  ASSERT_EQ(slower->max_batch(queue(100)), 18);
  run_closed_loop(*slower, 0.002, 0.002, 60);
  EXPECT_EQ(slower->max_batch(queue(100)), 9);

  // Faster: 2 ms + 0.5 ms per sequence -> B = 36 (2 + 18 = 20 ms).
  const auto faster = make_slo_policy(0.020, 256);
  run_closed_loop(*faster, 0.002, 0.001, 20);
  ASSERT_EQ(faster->max_batch(queue(100)), 18);
  run_closed_loop(*faster, 0.002, 0.0005, 60);
  EXPECT_EQ(faster->max_batch(queue(100)), 36);

  // Drift observed on batches the scheduler chose for other reasons (short queues) counts too.
  const auto open = make_slo_policy(0.020, 256);
  run_closed_loop(*open, 0.002, 0.001, 20);
  for (int i = 0; i < 100; ++i) {
    const int batch = 1 + i % 32;
    open->observe_step(batch, batch, step_s(0.002, 0.002, batch));
  }
  EXPECT_EQ(open->max_batch(queue(100)), 9);
}

TEST(BatchPolicy, SloStaysWithinOneAndMaxBatch) {
  const auto capped = make_slo_policy(0.020, 10);
  run_closed_loop(*capped, 0.002, 0.001, 20);
  EXPECT_EQ(capped->max_batch(queue(100)), 10);

  const auto tiny = make_slo_policy(0.020, 2);
  EXPECT_EQ(tiny->max_batch(queue(100)), 2);  // the start of 4 is capped too

  // Even one sequence misses the target: run one at a time rather than none.
  const auto hopeless = make_slo_policy(0.001, 256);
  for (int b : {1, 2, 4, 8, 1, 2, 4}) hopeless->observe_step(b, b, step_s(0.002, 0.001, b));
  EXPECT_EQ(hopeless->max_batch(queue(100)), 1);
}

TEST(BatchPolicy, SloDegenerateDataFallsBackWithoutReturningZero) {
  // Flat: every step takes 5 ms whatever the batch. No per-sequence cost to extrapolate from, so
  // the largest batch seen under target (16, from warm-up) is kept.
  const auto flat = make_slo_policy(0.020, 256);
  run_closed_loop(*flat, 0.005, 0.0, 30);
  EXPECT_EQ(flat->max_batch(queue(100)), 16);

  // Inverted: bigger batches are faster (nonsense timings); all over target -> 1.
  const auto inverted = make_slo_policy(0.020, 256);
  for (int b : {1, 2, 4, 8, 16}) inverted->observe_step(b, b, 0.060 - 0.001 * b);
  EXPECT_EQ(inverted->max_batch(queue(100)), 1);

  // Inverted but all under target (19 ms at 1 down to 4 ms at 16): the largest batch seen, 16.
  const auto inverted2 = make_slo_policy(0.020, 256);
  for (int b : {1, 2, 4, 8, 16}) inverted2->observe_step(b, b, 0.020 - 0.001 * b);
  EXPECT_EQ(inverted2->max_batch(queue(100)), 16);

  // Garbage observations are ignored, not fitted.
  const auto garbage = make_slo_policy(0.020, 256);
  garbage->observe_step(0, 0, 0.001);
  garbage->observe_step(-3, 4, 0.001);
  garbage->observe_step(8, -1, 0.001);
  garbage->observe_step(8, 8, std::numeric_limits<double>::quiet_NaN());
  garbage->observe_step(8, 8, std::numeric_limits<double>::infinity());
  garbage->observe_step(8, 8, -0.5);
  EXPECT_EQ(garbage->max_batch(queue(100)), 4);
  run_closed_loop(*garbage, 0.002, 0.001, 10);
  EXPECT_EQ(garbage->max_batch(queue(100)), 18);

  // A single batch size repeated forever never leaves warm-up and never returns 0.
  const auto same = make_slo_policy(0.020, 256);
  for (int i = 0; i < 100; ++i) same->observe_step(3, 3, 0.0);
  EXPECT_GE(same->max_batch(queue(100)), 1);
}

TEST(BatchPolicy, SloRejectsInvalidParameters) {
  EXPECT_CONTAINS(invalid_argument([] { make_slo_policy(0.0); }), "tpot_target_s");
  EXPECT_CONTAINS(invalid_argument([] { make_slo_policy(-0.02); }), "tpot_target_s");
  EXPECT_CONTAINS(invalid_argument([] { make_slo_policy(std::nan("")); }), "tpot_target_s");
  EXPECT_CONTAINS(invalid_argument([] { make_slo_policy(0.02, 0); }), "max_batch must be >= 1");
}

// ---------------------------------------------------------------------------------------------
// make_policy

TEST(BatchPolicy, MakePolicyByName) {
  const std::vector<std::string> names = batch_policy_names();
  ASSERT_EQ(names, (std::vector<std::string>{"static", "queue-table", "slo"}));
  for (const auto& n : names) EXPECT_EQ(make_policy(n)->name(), n);

  const auto st = make_policy("static");  // defaults: B = 8, timeout 0.05 s
  EXPECT_EQ(st->max_batch(queue(0)), 8);
  EXPECT_FALSE(st->ready_to_start(queue(7, 0, 0.049)));
  EXPECT_TRUE(st->ready_to_start(queue(7, 0, 0.05)));
  EXPECT_EQ(make_policy("queue-table")->max_batch(queue(51)), 32);

  const auto slo = make_policy("slo");  // default target 50 ms: 2 + B * 1 <= 50 -> B = 48
  run_closed_loop(*slo, 0.002, 0.001, 20);
  EXPECT_EQ(slo->max_batch(queue(100)), 48);

  const auto msg = invalid_argument([] { make_policy("fifo"); });
  EXPECT_CONTAINS(msg, "'fifo'");
  EXPECT_CONTAINS(msg, "static, queue-table, slo");
  invalid_argument([] { make_policy(""); });
  invalid_argument([] { make_policy("Static"); });
}

}  // namespace
