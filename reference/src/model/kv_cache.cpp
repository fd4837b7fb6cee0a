#include "cb/engine/model/kv_cache.h"

#include <stdexcept>
#include <string>

namespace cb::engine {

KvCache::KvCache(kernels::Backend& backend, const ModelConfig& cfg, int num_blocks, int block_size) : backend_(backend) {
  if (num_blocks <= 0 || block_size <= 0)
    throw std::invalid_argument("KvCache: num_blocks and block_size must be positive (got " +
                                std::to_string(num_blocks) + ", " + std::to_string(block_size) + ")");
  kernels::KvCacheSpec spec;
  spec.num_layers = cfg.num_hidden_layers;
  spec.num_blocks = num_blocks;
  spec.block_size = block_size;
  spec.n_kv_heads = cfg.num_key_value_heads;
  spec.head_dim = cfg.head_dim();
  if (kernels::Status s = backend_.alloc_kv_cache(spec, storage_); !s.ok())
    throw kernels::BackendError({s.code, "KvCache: " + s.message});
}

KvCache::~KvCache() { backend_.release_kv_cache(storage_); }

std::vector<int32_t> KvCache::sequential_table(int n_blocks) {
  std::vector<int32_t> t(n_blocks);
  for (int i = 0; i < n_blocks; ++i) t[i] = i;
  return t;
}

void KvCache::copy_blocks(std::span<const std::pair<int32_t, int32_t>> copies) {
  const kernels::Status s = backend_.copy_kv_blocks(storage_, copies);
  if (s.code == kernels::StatusCode::InvalidArgument) throw std::out_of_range("KvCache::copy_blocks: " + s.message);
  if (!s.ok()) throw kernels::BackendError({s.code, "KvCache::copy_blocks: " + s.message});
}

}  // namespace cb::engine
