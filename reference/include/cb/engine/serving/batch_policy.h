// Batch-size policies: how many sequences may run in the next engine step, given the queue.
// One interface, three policies (the `batch-policy` claim checks `queue-table`).
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace cb::engine {

struct SchedulerView {
  int queued = 0;         // requests waiting to start
  int running = 0;        // sequences with KV in the cache
  double now_s = 0;       // engine clock
  double oldest_wait_s = 0;  // how long the oldest queued request has waited
};

class BatchPolicy {
 public:
  virtual ~BatchPolicy() = default;
  virtual std::string name() const = 0;
  // Maximum number of sequences to run in the next step (>= 1 when anything can run).
  virtual int max_batch(const SchedulerView& v) const = 0;
  // Static batching: whether new sequences may join while others run (false = run a batch to completion).
  virtual bool admits_while_running() const { return true; }
  // Static batching: whether to start a batch now or keep waiting for more requests.
  virtual bool ready_to_start(const SchedulerView& v) const { return true; }
  // Called after each step with its measured duration (for adaptive policies).
  virtual void observe_step(int batch, int tokens, double seconds) {}
};

// Wait for B requests (or `timeout_s` since the oldest arrived), then run them to completion.
std::unique_ptr<BatchPolicy> make_static_policy(int batch, double timeout_s);

// Batch from the queue length: rows {queue_below, batch}; the default table is
// queue < 10 -> 4, 10..50 -> 16, > 50 -> 32 (the article's figures with a middle step).
struct QueueTableRow {
  int queue_below;  // applies when queued < queue_below; the last row should be INT_MAX
  int batch;
};
std::vector<QueueTableRow> default_queue_table();
std::unique_ptr<BatchPolicy> make_queue_table_policy(std::vector<QueueTableRow> table = default_queue_table());

// Largest batch whose predicted step time keeps time-per-output-token under `tpot_target_s`,
// from an online least-squares model of step time = a + b * batch + c * tokens.
std::unique_ptr<BatchPolicy> make_slo_policy(double tpot_target_s, int max_batch = 256);

// By name: "static", "queue-table", "slo" with defaults (static: B=8, timeout 0.05 s; slo: 50 ms).
// An unknown name throws std::invalid_argument listing the known ones.
std::unique_ptr<BatchPolicy> make_policy(const std::string& name);

// The names make_policy accepts, in that order ("static", "queue-table", "slo").
std::vector<std::string> batch_policy_names();

}  // namespace cb::engine
