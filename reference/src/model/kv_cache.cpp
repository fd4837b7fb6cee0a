#include "cb/engine/model/kv_cache.h"

#include <stdexcept>
#include <string>

namespace cb::engine {

KvCache::KvCache(kernels::Backend& backend, const ModelConfig& cfg, int num_blocks, int block_size)
    : backend_(backend), num_blocks_(num_blocks), block_size_(block_size),
      n_kv_heads_(cfg.num_key_value_heads), head_dim_(cfg.head_dim()) {
  if (num_blocks <= 0 || block_size <= 0)
    throw std::invalid_argument("KvCache: num_blocks and block_size must be positive (got " +
                                std::to_string(num_blocks) + ", " + std::to_string(block_size) + ")");
  for (int l = 0; l < cfg.num_hidden_layers; ++l) {
    k_pools_.push_back(backend_.alloc(kernels::DType::F32, {num_blocks, block_size, n_kv_heads_, head_dim_}));
    v_pools_.push_back(backend_.alloc(kernels::DType::F32, {num_blocks, block_size, n_kv_heads_, head_dim_}));
  }
}

KvCache::~KvCache() {
  for (auto& t : k_pools_) backend_.release(t);
  for (auto& t : v_pools_) backend_.release(t);
}

size_t KvCache::bytes_per_block() const {
  return 2 * k_pools_.size() * size_t(block_size_) * n_kv_heads_ * head_dim_ * sizeof(float);
}

std::vector<int32_t> KvCache::sequential_table(int n_blocks) {
  std::vector<int32_t> t(n_blocks);
  for (int i = 0; i < n_blocks; ++i) t[i] = i;
  return t;
}

void KvCache::copy_block(int src, int dst) {
  if (src < 0 || src >= num_blocks_ || dst < 0 || dst >= num_blocks_)
    throw std::out_of_range("KvCache::copy_block: bad block ids " + std::to_string(src) + " -> " + std::to_string(dst));
  const int64_t per_block = int64_t(block_size_) * n_kv_heads_ * head_dim_;
  for (auto* pools : {&k_pools_, &v_pools_})
    for (auto& pool : *pools) {
      kernels::Tensor s(static_cast<float*>(pool.data) + src * per_block, kernels::DType::F32, {per_block}, pool.mem);
      kernels::Tensor d(static_cast<float*>(pool.data) + dst * per_block, kernels::DType::F32, {per_block}, pool.mem);
      backend_.copy(d, s);
    }
}

kernels::KvView KvCache::view(int layer, const kernels::Tensor& table) const {
  kernels::KvView v;
  v.k_pool = k_pools_.at(layer);
  v.v_pool = v_pools_.at(layer);
  v.block_table = table;
  v.block_size = block_size_;
  v.n_kv_heads = n_kv_heads_;
  v.head_dim = head_dim_;
  return v;
}

}  // namespace cb::engine
