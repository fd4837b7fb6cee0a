// KV cache storage: per layer, one K and one V pool of fixed-size blocks
// ([num_blocks, block_size, n_kv_heads, head_dim] f32, allocated through the backend). A
// sequence's block table maps its logical blocks to physical ones. Which blocks a sequence owns is
// BlockManager's business (block_manager.h); who runs, waits or is preempted is the scheduler's.
#pragma once

#include <cstdint>
#include <vector>

#include "cb/engine/model/config.h"
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
  // Bytes of K+V storage per block across all layers, and for the whole pool.
  size_t bytes_per_block() const;
  size_t pool_bytes() const { return bytes_per_block() * num_blocks_; }

  // Blocks 0 .. n-1 in order: the table of a single sequence that owns the whole pool
  // (single-request generation and benchmarks).
  static std::vector<int32_t> sequential_table(int n_blocks);
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
};

}  // namespace cb::engine
