// The LLaMA forward pass over the op table. One call runs one engine step over a batch of
// sequences (continuous batching): all tokens of the batch go through the matmuls together,
// attention runs per sequence over its own block table.
#pragma once

#include <span>
#include <vector>

#include "cb/engine/config.h"
#include "cb/engine/kv_cache.h"
#include "cb/engine/weights.h"
#include "cb/kernels/backend.h"

namespace cb::engine {

struct SeqStep {
  std::span<const int32_t> tokens;       // tokens to process this step (prefill chunk or 1 decode token)
  int pos0 = 0;                          // position of tokens[0]; the cache holds positions < pos0
  std::span<const int32_t> block_table;  // physical blocks covering positions < pos0 + tokens.size()
  bool all_logits = false;               // logits for every token (perplexity), else the last only
};

class Model {
 public:
  // Weights must already be usable by the backend (host views for ref/cpu).
  Model(const ModelConfig& cfg, ModelWeights weights, kernels::Backend& backend);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  // Runs the step and returns logits [rows, vocab] on the host, rows = sum over sequences of
  // (all_logits ? tokens : 1), in batch order. Throws std::runtime_error naming the op on failure.
  std::vector<float> forward(const std::vector<SeqStep>& batch, KvCache& kv);

  const ModelConfig& config() const { return cfg_; }
  const ModelWeights& weights() const { return w_; }
  kernels::Backend& backend() { return backend_; }

 private:
  void ensure_capacity(int64_t tokens, int64_t logit_rows);
  void release_buffers();
  void check(const kernels::Status& s, const char* what, int layer = -1) const;

  ModelConfig cfg_;
  ModelWeights w_;
  kernels::Backend& backend_;
  int64_t cap_tokens_ = 0, cap_logit_rows_ = 0;
  // Activation buffers (backend memory), sized for cap_tokens_ rows.
  kernels::Tensor ids_, pos_, x_, h_, q_, k_, v_, att_, o_, gate_, up_, ffn_, last_, logits_;
  kernels::Tensor tables_;  // block tables of the batch, concatenated
  int64_t tables_cap_ = 0;
};

}  // namespace cb::engine
