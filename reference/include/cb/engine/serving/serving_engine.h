// The serving engine: iteration-level continuous batching over the paged KV cache. The decisions
// live in the Scheduler (scheduler.h, testable without a model); the engine runs the model on
// each step's plan and keeps the timing.
//
// Each step runs a mix of decode tokens (one per running sequence) and prefill chunks under a
// token budget (chunked prefill), so a long prompt does not stall running decodes. A batch-size
// policy decides how many sequences run; the block manager allocates or says no; when blocks run
// out the most recently arrived running request is preempted (its KV freed) and recomputed later,
// so no request is lost or duplicated. Tokens reach the caller through a callback as produced.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cb/engine/serving/batch_policy.h"
#include "cb/engine/serving/block_manager.h"
#include "cb/engine/model/engine.h"
#include "cb/engine/model/kv_cache.h"
#include "cb/engine/model/sampler.h"
#include "cb/engine/serving/scheduler.h"

namespace cb::engine {

struct EngineOptions {
  int num_blocks = 1024;
  int block_size = 16;
  bool prefix_cache = false;
  KvMode kv_mode = KvMode::Paged;
  BlockPlacement kv_placement = BlockPlacement::Runs;
  int contiguous_reserve = 0;    // tokens reserved per sequence in Contiguous mode (0 = model context)
  int token_budget = 512;        // tokens per step (decodes + prefill chunks)
  std::string policy = "queue-table";
  std::unique_ptr<BatchPolicy> custom_policy;  // overrides `policy` when set
  // Keep per-step samples (EngineStats::step_*). A long-running server turns this off so its
  // memory does not grow with uptime.
  bool record_steps = true;
};

struct EngineStats {
  int64_t steps = 0;
  double busy_seconds = 0;       // inside the model's forward pass
  // The device's own busy time in those forward passes (Backend::device_busy_seconds: CUDA events
  // on a GPU) since this engine started; nullopt on host backends.
  std::optional<double> device_busy_seconds;
  double wall_seconds = 0;       // since the first request arrived
  int64_t prefill_tokens = 0, decode_tokens = 0;
  int64_t kv_tokens_read = 0;    // sum over planned sequences of context length attended (for MBU)
  int64_t preemptions = 0;
  int64_t finished_requests = 0;
  int queued = 0, running = 0;   // requests now
  int running_seqs = 0;          // sequences of the running requests now (the running batch)
  std::vector<double> step_seconds;
  std::vector<double> step_forward_seconds;  // the part of each step inside the forward pass
  std::vector<int> step_batch;   // sequences per step
  std::vector<int> step_tokens;  // tokens per step
  std::vector<int> step_queue;   // queue length when the step was planned
  std::vector<int> step_running; // sequences already running when the step was planned (before admission)
  // KV accounting: bytes of blocks held by sequences, and of tokens actually stored.
  size_t kv_bytes_reserved = 0, kv_bytes_used = 0;
  size_t kv_bytes_reserved_peak = 0, kv_bytes_used_peak = 0;
  BlockStats blocks;
  // Decode steps replayed from recordings (LoadOptions::step_graphs); nullopt when off.
  std::optional<Model::StepGraphStats> step_graphs;
};

class ServingEngine {
 public:
  ServingEngine(LoadedModel& model, EngineOptions opt);
  ~ServingEngine();

  // Queues a request (FCFS). Throws std::invalid_argument naming the field for an empty prompt,
  // ids outside the vocabulary, max_tokens <= 0, n < 1, prompt + max_tokens past the context, or a
  // request that could never fit in the KV pool.
  // Every sample of an accepted request gets exactly one finish event (also on abort or error).
  RequestId add_request(RequestParams params, TokenCallback on_token);
  // The checks add_request makes, without queueing. Reads only state fixed at construction, so
  // other threads may call it while step() runs.
  void validate(const RequestParams& params) const;
  void abort(RequestId id);

  // Runs one engine step; false when there was nothing to do.
  bool step();
  void run_until_idle();
  bool idle() const;
  // True when requests are queued, none runs, and the policy waits for more (static batching
  // filling a batch): step() would do nothing until a request arrives or time passes, so a
  // driver should sleep instead of spinning.
  bool stalled() const;

  EngineStats stats() const;
  // As stats(), but the step_* vectors hold only steps [first_step, steps): lets a poller copy
  // only what is new instead of the whole history.
  EngineStats stats_since(size_t first_step) const;
  const BatchPolicy& policy() const { return sched_->policy(); }
  const EngineOptions& options() const { return opt_; }

 private:
  void account_kv();

  LoadedModel& model_;
  EngineOptions opt_;
  double device_busy_base_ = 0;  // the backend's device busy counter when this engine started
  std::unique_ptr<KvCache> kv_;
  std::unique_ptr<Scheduler> sched_;
  EngineStats stats_;  // the engine's own scalars; the scheduler's counters are added in stats_since
  std::vector<double> step_seconds_, step_forward_seconds_;
  std::vector<int> step_batch_, step_tokens_, step_queue_, step_running_;
};

}  // namespace cb::engine
