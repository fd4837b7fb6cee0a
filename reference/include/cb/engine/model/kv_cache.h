// KV cache storage: per layer one K and one V pool of fixed-size blocks, allocated by the backend
// (Backend::alloc_kv_cache), which picks their dtype and layout. A sequence's block table maps its
// logical blocks to physical ones. Which blocks a sequence owns is BlockManager's business
// (block_manager.h); who runs, waits or is preempted is the scheduler's.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "cb/engine/model/config.h"
#include "cb/kernels/backend.h"

namespace cb::engine {

class KvCache {
 public:
  // Throws std::invalid_argument for a bad shape and kernels::BackendError when the backend cannot
  // allocate the pools (OutOfMemory).
  KvCache(kernels::Backend& backend, const ModelConfig& cfg, int num_blocks, int block_size = 16);
  ~KvCache();
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  int num_blocks() const { return storage_.spec.num_blocks; }
  int block_size() const { return storage_.spec.block_size; }
  int n_kv_heads() const { return storage_.spec.n_kv_heads; }
  // Bytes of K+V storage per block across all layers, as the backend allocated them, and for the
  // whole pool.
  size_t bytes_per_block() const { return storage_.bytes_per_block; }
  size_t pool_bytes() const { return bytes_per_block() * size_t(num_blocks()); }
  size_t bytes_per_token() const { return bytes_per_block() / size_t(block_size()); }

  // Blocks 0 .. n-1 in order: the table of a single sequence that owns the whole pool
  // (single-request generation and benchmarks).
  static std::vector<int32_t> sequential_table(int n_blocks);
  // Blocks needed to hold n_tokens tokens.
  int blocks_for(int n_tokens) const { return (n_tokens + block_size() - 1) / block_size(); }

  // Copies blocks (src, dst) in every layer, in one backend call (copy-on-write of shared blocks).
  // Throws std::out_of_range naming a block id outside the pool.
  void copy_blocks(std::span<const std::pair<int32_t, int32_t>> copies);

  // The op-table view of one layer's pools.
  kernels::KvLayer& layer(int l) { return storage_.layers.at(size_t(l)); }

 private:
  kernels::Backend& backend_;
  kernels::KvCacheStorage storage_;
};

}  // namespace cb::engine
