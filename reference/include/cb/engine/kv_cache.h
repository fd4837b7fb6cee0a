// KV cache storage: per layer, one K and one V pool of fixed-size blocks
// ([num_blocks, block_size, n_kv_heads, head_dim] f32, allocated through the backend), and a
// block allocator that hands out block ids. A sequence's block table maps its logical blocks to
// physical ones. Allocation policy (who gets blocks, who is preempted) lives in the scheduler.
#pragma once

#include <cstdint>
#include <vector>

#include "cb/engine/config.h"
#include "cb/kernels/backend.h"

namespace cb::engine {

class KvCache {
 public:
  KvCache(kernels::Backend& backend, const ModelConfig& cfg, int num_blocks, int block_size = 16);
  ~KvCache();
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  int num_blocks() const { return num_blocks_; }
  int block_size() const { return block_size_; }
  int free_blocks() const { return static_cast<int>(free_list_.size()); }
  int used_blocks() const { return num_blocks_ - free_blocks(); }
  // Bytes of K+V storage per block across all layers, and for the whole pool.
  size_t bytes_per_block() const;
  size_t pool_bytes() const { return bytes_per_block() * num_blocks_; }

  // Returns a free block id, or -1 when none is left (the caller decides what to do).
  int allocate_block();
  void free_block(int id);
  // Blocks needed to hold n_tokens tokens.
  int blocks_for(int n_tokens) const { return (n_tokens + block_size_ - 1) / block_size_; }

  // Copies block src to block dst in every layer (copy-on-write of a shared block).
  void copy_block(int src, int dst);
  size_t bytes_per_token() const { return bytes_per_block() / block_size_; }

  // The op-table view of one layer for a sequence whose block table is `table` (backend memory).
  kernels::KvView view(int layer, const kernels::Tensor& table) const;

 private:
  kernels::Backend& backend_;
  int num_blocks_, block_size_, n_kv_heads_, head_dim_;
  std::vector<kernels::Tensor> k_pools_, v_pools_;
  std::vector<int> free_list_;  // LIFO: most recently freed first (warm in cache)
};

}  // namespace cb::engine
