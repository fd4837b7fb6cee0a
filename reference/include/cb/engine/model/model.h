// The LLaMA forward pass over the op table. One call runs one engine step over a batch of
// sequences (continuous batching): all tokens of the batch go through the matmuls together, and
// kv_store and attention run once per layer for the whole batch (per-sequence offsets, block
// tables and a slot mapping built and checked on the host by plan_kv_batch).
//
// Tensor parallel (tp.h): each rank holds a shard of the weights and of the KV heads; the forward
// pass all-reduces the row-parallel o_proj / down_proj outputs and all-gathers the vocabulary-
// parallel logits. Rank 0 (the leader) alone is driven by a caller (generate, ServingEngine); its
// forward() first sends the step plan to the other ranks (tp_step.h), which mirror it in
// run_tp_follower (engine.h).
#pragma once

#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "cb/engine/model/config.h"
#include "cb/engine/model/kv_cache.h"
#include "cb/engine/parallel/tp.h"
#include "cb/engine/model/weights.h"
#include "cb/kernels/backend.h"
#include "cb/kernels/kv_batch.h"

namespace cb::engine {

struct SeqStep {
  std::span<const int32_t> tokens;       // tokens to process this step (prefill chunk or 1 decode token)
  int pos0 = 0;                          // position of tokens[0]; the cache holds positions < pos0
  std::span<const int32_t> block_table;  // physical blocks covering positions < pos0 + tokens.size()
  bool all_logits = false;               // logits for every token (perplexity), else the last only
};

class Model {
 public:
  // Weights must already be usable by the backend (host views for ref/cpu). With tp.active(),
  // weights are this rank's shard (shard_weights) and the KV cache holds tp.shard.kv_heads heads.
  Model(const ModelConfig& cfg, ModelWeights weights, kernels::Backend& backend, TpContext tp = {});
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  // Runs the step and returns logits [rows, vocab] on the host, rows = sum over sequences of
  // (all_logits ? tokens : 1), in batch order. Throws std::runtime_error naming the op on failure.
  // On a TP leader, sends the step to the followers first (after the batch passed its checks).
  std::vector<float> forward(const std::vector<SeqStep>& batch, KvCache& kv);

  // Copies KV blocks (src, dst) in one backend call (copy-on-write); a TP leader also has the
  // followers copy them, before its next step. Schedulers call this instead of KvCache::copy_blocks.
  void copy_kv_blocks(KvCache& kv, std::span<const std::pair<int32_t, int32_t>> copies);
  // TP leader: ends the followers' loop. True while a step was sent but forward() has not
  // finished it (a failure then must abort the group: the followers wait inside a collective).
  void stop_followers();
  bool step_in_progress() const { return in_step_; }
  // FLOPs this model has executed so far (this rank's share when tensor parallel), counted from
  // the shapes each matmul and attention call ran on: what a pruned model really saves.
  struct ExecutedFlops {
    int64_t matmul = 0, attention = 0;
    int64_t total() const { return matmul + attention; }
  };
  ExecutedFlops executed_flops() const { return flops_; }
  // Logit rows forward() has returned so far: every sampled token needs one (the first tokens of
  // n > 1 samples share their prompt's), so a server that delivers more tokens than this answered
  // without computing.
  int64_t logit_rows_computed() const { return logit_rows_computed_; }
  const TpContext& tp() const { return tp_; }

  // Decode steps replayed from recordings (Backend::capture_*: CUDA graphs on the cuda backend),
  // off by default. A step qualifies when every sequence brings one token and wants one logit
  // row (decode), the model is not tensor parallel (its all-reduces are not recorded) and the
  // backend can record. Its shape: rows, block tables widened to a multiple of kGraphTableCols
  // columns (so contexts grow 16 blocks between recordings), and every buffer the recording bakes
  // in. The first step of a shape runs as usual (it also warms the backend: GEMM algorithm
  // choice, temporaries), the second is recorded and replayed, later ones replay. A recording that
  // fails runs the step as usual, keeps the reason, and that shape is not recorded again.
  static constexpr int kGraphTableCols = 16;
  struct StepGraphStats {
    bool enabled = false;
    std::string unavailable;  // why no step is recorded here ("" when steps can be)
    int64_t eager_steps = 0;  // qualifying steps that ran as usual (first of their shape)
    int64_t captures = 0, replays = 0, failed_captures = 0;
    int64_t evictions = 0;  // recordings dropped, least recently replayed first, to stay under the cap
    std::string last_failure;
  };
  // At most max_recorded recordings are kept (shapes pile up as contexts grow and batch sizes
  // change); past it the least recently replayed one is dropped.
  static constexpr size_t kDefaultMaxRecorded = 64;
  void set_step_graphs(bool on, size_t max_recorded = kDefaultMaxRecorded);
  const StepGraphStats& step_graph_stats() const { return graph_stats_; }

  const ModelConfig& config() const { return cfg_; }
  const ModelWeights& weights() const { return w_; }
  kernels::Backend& backend() { return backend_; }

 private:
  void ensure_capacity(int64_t tokens, int64_t logit_rows);
  void release_buffers();
  void check(const kernels::Status& s, const char* what, int layer = -1) const;
  std::vector<float> run(const std::vector<SeqStep>& batch, KvCache& kv, const std::vector<int32_t>& ids,
                         int64_t logit_rows, bool graph_step);
  bool graph_eligible(const std::vector<SeqStep>& batch) const;
  // Runs enqueue() (the step's ops) as usual, or recorded and replayed, for the step of this key.
  template <class Enqueue>
  void run_graph_step(const std::vector<int64_t>& key, int64_t replay_attention_flops, const Enqueue& enqueue);
  void all_reduce(kernels::Tensor& t);  // sums a host tensor over the TP group, in place

  ModelConfig cfg_;
  ModelWeights w_;
  kernels::Backend& backend_;
  int64_t cap_tokens_ = 0, cap_logit_rows_ = 0;
  // Activation buffers (backend memory), sized for cap_tokens_ rows.
  kernels::Tensor ids_, x_, h_, q_, k_, v_, att_, o_, gate_, up_, ffn_buf_, last_, logits_;
  // The step's KV index arrays: built and checked on the host (plan_), then uploaded once.
  kernels::KvBatchPlan plan_;
  kernels::KvBatchTensors kv_batch_;
  // Tensor parallel: the group, this rank's slice, local sizes, and the leader's pending state.
  TpContext tp_;
  int heads_ = 0, kv_heads_ = 0;  // query / KV heads this rank computes
  int64_t ffn_ = 0, vocab_cols_ = 0;  // FFN columns, logits columns of the local lm_head
  std::vector<float> gathered_;  // all-gathered logits [ranks, rows, vocab_pad]
  std::vector<std::pair<int32_t, int32_t>> pending_copies_;
  int32_t step_no_ = 0;
  bool in_step_ = false;
  ExecutedFlops flops_;
  int64_t logit_rows_computed_ = 0;
  // Recorded decode steps by shape (set_step_graphs), with the matmul FLOPs each replay executes.
  struct Recorded {
    std::unique_ptr<kernels::CapturedWork> work;
    int64_t matmul_flops = 0;
    uint64_t last_used = 0;  // graph_clock_ at its latest replay
  };
  std::map<std::vector<int64_t>, Recorded> graphs_;
  std::set<std::vector<int64_t>> graph_seen_, graph_failed_;
  size_t graph_cap_ = kDefaultMaxRecorded;
  uint64_t graph_clock_ = 0;
  StepGraphStats graph_stats_;
};

}  // namespace cb::engine
