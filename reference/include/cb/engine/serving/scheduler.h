// The serving engine's scheduler, without a model (the split vLLM v1 makes):
//   schedule()            who runs this step and how many tokens each: admission FCFS under the
//                         batch-size policy and the free KV blocks, decodes before prefill chunks
//                         under the token budget, and when blocks run out the most recently
//                         arrived other request is preempted (its KV freed, recomputed later);
//   (the engine runs the model on the plan)
//   update_from_output()  the step's logits: samples, forks the other samples of a finished prompt
//                         (copy-on-write), applies the stop conditions, retires finished requests.
// KV block copies (copy-on-write, contiguous forks) go through the CopyBlock callback, so tests can
// drive the scheduler with fabricated logits and a recorder, and no model.
#pragma once

#include <algorithm>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "cb/engine/serving/batch_policy.h"
#include "cb/engine/serving/block_manager.h"
#include "cb/engine/model/sampler.h"

namespace cb::engine {

// Seconds on the steady clock: the serving side's one time base (arrivals, deadlines, step
// timings), so that times taken in the server, the loop and the scheduler compare.
inline double steady_seconds() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

using RequestId = int64_t;

struct RequestParams {
  std::vector<int32_t> prompt;
  int max_tokens = 16;
  SamplingParams sampling;  // sample i of n uses seed + i
  int n = 1;                // samples sharing the prompt's KV blocks (copy-on-write)
  bool stop_at_eos = true;
  // Contiguous KV mode: tokens to reserve per sequence of this request (0 = the engine's
  // contiguous_reserve). Lets a baseline reserve what it knows at admission (prompt + max_tokens)
  // or a rounding of it, as the allocators compared in the vLLM paper do.
  int kv_reserve_tokens = 0;
};

struct TokenEvent {
  RequestId request = 0;
  int sample = 0;              // 0 .. n-1
  int32_t token = -1;          // the sampled token; -1 in the finish event that ends each sample
  bool finished = false;       // this sample is done
  std::string finish_reason;   // "length", "eos", "context", "abort", or "error: ..."
};
using TokenCallback = std::function<void(const TokenEvent&)>;

enum class KvMode {
  Paged,       // blocks allocated as tokens arrive
  Contiguous,  // a max-context reservation per sequence at admission (systems without paging)
};

// What the scheduler needs to know of the model.
struct ModelLimits {
  int vocab_size = 0;
  int max_context = 0;  // positions
  int eos_token = -1;
  std::vector<int> extra_eos_tokens;  // further ids that end a sequence (ModelConfig::extra_eos_token_ids)
  bool is_eos(int t) const {
    return t == eos_token || std::find(extra_eos_tokens.begin(), extra_eos_tokens.end(), t) != extra_eos_tokens.end();
  }
};

struct SchedulerOptions {
  int num_blocks = 1024;
  int block_size = 16;
  bool prefix_cache = false;
  KvMode kv_mode = KvMode::Paged;
  BlockPlacement kv_placement = BlockPlacement::Runs;  // which free block a sequence gets (free_blocks.h)
  int contiguous_reserve = 0;  // tokens per sequence in Contiguous mode (0 = the model's context)
  int token_budget = 512;      // tokens per step (decodes + prefill chunks)
};

// One sequence's share of a step: tokens [pos0, pos0 + tokens.size()) of sample `sample`.
// The spans point into the scheduler and stay valid until update_from_output.
struct ScheduledChunk {
  RequestId request = 0;
  int sample = 0;
  SeqId seq = 0;
  int pos0 = 0;
  std::span<const int32_t> tokens;
  std::span<const int32_t> block_table;
};

struct StepPlan {
  std::vector<ScheduledChunk> chunks;  // decodes first, then prefill chunks; one logits row each
  SchedulerView view;                  // what the policy saw when the step was planned
  int running_before = 0;              // sequences running before admission
  int tokens() const;
  // With no chunks: whether there is still work (false = the engine is idle or waiting).
  bool keep_going = true;
};

// Counters the scheduler keeps (EngineStats copies them).
struct SchedulerCounters {
  int64_t prefill_tokens = 0, decode_tokens = 0;
  int64_t kv_tokens_read = 0;  // sum over planned sequences of context attended
  int64_t preemptions = 0;
  int64_t finished_requests = 0;
};

class Scheduler {
 public:
  // Receives the KV block copies of one allocation or fork together, so the storage does them
  // in one batched call.
  using CopyBlock = std::function<void(std::span<const BlockCopy> copies)>;
  using Clock = std::function<double()>;  // seconds, monotonic
  // `policy` must not be null. `copy` performs KV block copies (copy-on-write, contiguous forks)
  // before the next forward pass. `clock` defaults to the steady clock.
  Scheduler(SchedulerOptions opt, ModelLimits limits, std::unique_ptr<BatchPolicy> policy, CopyBlock copy, Clock clock = {});
  ~Scheduler();

  // Throws std::invalid_argument naming the field (see ServingEngine::add_request).
  void validate(const RequestParams& params) const;
  RequestId add(RequestParams params, TokenCallback on_token);
  void abort(RequestId id);

  StepPlan schedule();
  // Row b of `logits` ([plan.chunks.size(), vocab]) belongs to chunk b; rows of prefill chunks
  // that do not end their prompt are ignored. `forward_seconds` goes to the policy.
  void update_from_output(const StepPlan& plan, std::span<const float> logits, double forward_seconds);

  bool idle() const { return queue_.empty() && running_.empty(); }
  bool stalled() const;
  int queued() const { return int(queue_.size()); }
  int running_requests() const { return int(running_.size()); }
  int running_sequences() const;
  double first_arrival() const { return t0_; }
  const SchedulerCounters& counters() const { return counters_; }
  const BlockManager& blocks() const { return *blocks_; }
  const BatchPolicy& policy() const { return *policy_; }
  const SchedulerOptions& options() const { return opt_; }

  // Planted defect answer-cache (planted_defects.h): answers queued requests seen before from a
  // cache, with no forward pass. True when it answered any.
  bool serve_cached_answers();

 private:
  struct Sequence;
  struct Request;

  bool admit(Request& r);
  void preempt(Request& r);
  void finish_sequence(Request& r, Sequence& s, const std::string& reason);
  void fail_request(Request& r, const std::string& reason);
  bool ensure_slots(Sequence& s, int pos, int count);
  Request* newest_running_except(const Request* keep);
  int reserve_tokens(const Request& r) const;
  SchedulerView view_at(double now) const;
  static std::vector<int32_t> answer_key(const RequestParams& p);

  SchedulerOptions opt_;
  ModelLimits lim_;
  std::unique_ptr<BatchPolicy> policy_;
  CopyBlock copy_;
  Clock clock_;
  std::unique_ptr<BlockManager> blocks_;
  std::map<RequestId, std::unique_ptr<Request>> requests_;
  std::deque<RequestId> queue_;     // waiting (new or preempted), FCFS by arrival
  std::vector<RequestId> running_;  // admitted, in arrival order
  RequestId next_id_ = 1;
  SeqId next_seq_ = 1;
  SchedulerCounters counters_;
  double t0_ = -1;
  std::map<std::vector<int32_t>, std::vector<int32_t>> answer_cache_;  // planted defect answer-cache only
};

}  // namespace cb::engine
