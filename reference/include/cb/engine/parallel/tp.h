// Tensor parallelism, Megatron style: which slice of every weight a rank holds.
//
//   q/k/v, gate/up  column-parallel: a rank computes its own heads / FFN columns, no communication
//   o, down         row-parallel: a rank multiplies its slice of the inputs; the partial outputs
//                   are summed by an all-reduce before the residual add (2 all-reduces per layer)
//   lm_head         vocabulary-parallel: a rank computes ceil(V / ranks) logits, all-gathered
//   embedding, norms replicated
// Query heads split evenly; KV heads split when there are at least as many as ranks, otherwise
// each KV head is replicated on ranks / n_kv_heads ranks (the ones whose query heads use it).
// FFN columns may split unevenly (the first F % ranks ranks get one more).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "cb/comm/communicator.h"
#include "cb/engine/model/config.h"
#include "cb/engine/model/weights.h"

namespace cb::engine {

struct TpShard {
  int rank = 0, ranks = 1;
  int head0 = 0, heads = 0;         // query heads [head0, head0 + heads)
  int kv_head0 = 0, kv_heads = 0;   // KV heads [kv_head0, kv_head0 + kv_heads) this rank stores
  bool kv_replicated = false;       // n_kv_heads < ranks: this KV head is also on other ranks
  int64_t ffn0 = 0, ffn = 0;        // FFN columns [ffn0, ffn0 + ffn)
  int64_t vocab0 = 0, vocab = 0;    // logits [vocab0, vocab0 + vocab) (vocab may be 0 on the last ranks)
  int64_t vocab_pad = 0;            // logits per rank in the all-gather: ceil(V / ranks)
  bool sharded() const { return ranks > 1; }
};

// Throws std::invalid_argument naming the config key when the model cannot be split in `ranks`
// (query heads not divisible, KV heads neither a multiple nor a divisor of ranks, F < ranks).
TpShard plan_shard(const ModelConfig& cfg, int rank, int ranks);

// The config a KV cache for this rank is built from: num_key_value_heads = the rank's KV heads
// (head_dim unchanged). Equal to cfg when not sharded.
ModelConfig kv_config_for(const ModelConfig& cfg, const TpShard& s);

// Buffers that own sliced weights (the mapped checkpoint is left untouched).
class ShardStorage {
 public:
  void* make(size_t bytes);  // zeroed, 64-byte aligned, lives as long as this object
  size_t bytes() const { return bytes_; }

 private:
  struct Free {
    void operator()(void* p) const;
  };
  std::vector<std::unique_ptr<void, Free>> bufs_;
  size_t bytes_ = 0;
};

// The rank's weights: q/k/v/gate/up/lm_head rows and o/down columns copied into `store`;
// embedding and norms are the full (shared) tensors. bytes = bytes this rank holds for matmuls
// plus the replicated tensors. Throws ModelError for a weight layout other than dense.
ModelWeights shard_weights(const ModelWeights& full, const ModelConfig& cfg, const TpShard& s, ShardStorage& store);

// What the forward pass needs to run one shard: the group and this rank's slice.
struct TpContext {
  comm::Communicator* comm = nullptr;  // not owned; null = not tensor parallel
  TpShard shard;
  bool active() const { return comm != nullptr && comm->size() > 1; }
  bool leader() const { return !active() || comm->rank() == 0; }
};

}  // namespace cb::engine
