// kv_store and the attention driver over the paged KV cache (see KvView in backend.h).
//
// attention: out[M, n_heads * head_dim] = causal softmax(q k^T * scale) v. Work items are
// (query row, kv head, chunk of query heads sharing it); each item runs the flash-style kernel
// of cpu_algos.h over keys 0 .. q_pos0 + row. Items are handed out dynamically because their
// cost grows with the row (causal mask).
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "cpu_ops.h"

namespace cb::kernels::cpu {
namespace {

// Checks the cache geometry shared by kv_store and attention, and that every block a call
// touches (logical tokens [0, n_tokens)) is in the table and names a block of the pool.
Status check_cache(const char* op, const KvView& kv, int64_t n_tokens) {
  if (kv.k_pool.dtype != DType::F32 || kv.v_pool.dtype != DType::F32)
    return Status::unsupported(std::string(op) + ": cache pools must be f32, got " + kv.k_pool.describe() + ", " +
                               kv.v_pool.describe());
  if (kv.block_table.dtype != DType::I32)
    return Status::invalid(std::string(op) + ": block table must be i32, got " + kv.block_table.describe());
  if (kv.block_size <= 0 || kv.n_kv_heads <= 0 || kv.head_dim <= 0)
    return Status::invalid(std::string(op) + ": block_size, n_kv_heads and head_dim must be positive");
  const int64_t block_floats = int64_t(kv.block_size) * kv.n_kv_heads * kv.head_dim;
  if (kv.k_pool.numel() != kv.v_pool.numel() || kv.k_pool.numel() % block_floats != 0)
    return Status::invalid(std::string(op) + ": pools " + kv.k_pool.describe() + ", " + kv.v_pool.describe() +
                           " are not whole blocks of " + std::to_string(block_floats) + " floats");
  const int64_t num_blocks = kv.k_pool.numel() / block_floats;
  const int64_t used = (n_tokens + kv.block_size - 1) / kv.block_size;
  if (used > kv.block_table.numel())
    return Status::invalid(std::string(op) + ": " + std::to_string(n_tokens) + " tokens need " + std::to_string(used) +
                           " blocks but the block table has " + std::to_string(kv.block_table.numel()));
  if (used > 0 && (kv.block_table.data == nullptr || kv.k_pool.data == nullptr || kv.v_pool.data == nullptr))
    return Status::invalid(std::string(op) + ": missing cache data pointer");
  const int32_t* bt = kv.block_table.as<const int32_t>();
  for (int64_t b = 0; b < used; ++b)
    if (bt[b] < 0 || bt[b] >= num_blocks)
      return Status::invalid(std::string(op) + ": block table entry " + std::to_string(b) + " = " +
                             std::to_string(bt[b]) + " outside the pool of " + std::to_string(num_blocks) + " blocks");
  return Status::Ok();
}

// Largest divisor of `group` that is at most kAttnMaxHeads and still leaves `min_items` work
// items (so every thread gets some), or 1.
int pick_heads_per_item(int group, int64_t items_per_chunk, int64_t min_items) {
  for (int g = std::min(group, kAttnMaxHeads); g > 1; --g)
    if (group % g == 0 && items_per_chunk * (group / g) >= min_items) return g;
  return 1;
}

}  // namespace

Status kv_store(const Tensor& key, const Tensor& value, KvView& kv, int pos0) {
  const int64_t row = int64_t(kv.n_kv_heads) * kv.head_dim;
  if (key.cols() != row || value.cols() != row || key.rows() != value.rows())
    return Status::invalid("kv_store: k " + key.describe() + ", v " + value.describe() + ", cache row " +
                           std::to_string(row));
  if (key.dtype != DType::F32 || value.dtype != DType::F32)
    return Status::unsupported("kv_store: k and v must be f32, got " + key.describe() + ", " + value.describe());
  if (pos0 < 0) return Status::invalid("kv_store: negative position " + std::to_string(pos0));
  const int64_t M = key.rows();
  if (M == 0) return Status::Ok();
  if (auto s = check_cache("kv_store", kv, pos0 + M); !s.ok()) return s;
  if (key.data == nullptr || value.data == nullptr) return Status::invalid("kv_store: missing data pointer");
  const int32_t* bt = kv.block_table.as<const int32_t>();
  const float* kp = key.as<const float>();
  const float* vp = value.as<const float>();
  float* kc = kv.k_pool.as<float>();
  float* vc = kv.v_pool.as<float>();
  parallel_ranges(M, std::max<int64_t>(1, 4096 / row), 1, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      const int64_t t = pos0 + m;
      const int64_t off = (int64_t(bt[t / kv.block_size]) * kv.block_size + t % kv.block_size) * row;
      std::memcpy(kc + off, kp + m * row, sizeof(float) * static_cast<size_t>(row));
      std::memcpy(vc + off, vp + m * row, sizeof(float) * static_cast<size_t>(row));
    }
  });
  return Status::Ok();
}

Status attention(const KernelTable& k, const Tensor& q, const KvView& kv, const AttentionParams& p, Tensor& out) {
  if (p.n_kv_heads <= 0 || p.n_heads % p.n_kv_heads || q.cols() != int64_t(p.n_heads) * p.head_dim ||
      kv.head_dim != p.head_dim || kv.n_kv_heads != p.n_kv_heads || p.q_pos0 + q.rows() > p.n_ctx)
    return Status::invalid("attention: q " + q.describe() + " with heads " + std::to_string(p.n_heads) + "/" +
                           std::to_string(p.n_kv_heads) + ", n_ctx " + std::to_string(p.n_ctx));
  if (p.n_heads <= 0 || p.head_dim <= 0 || p.q_pos0 < 0)
    return Status::invalid("attention: n_heads and head_dim must be positive and q_pos0 non-negative");
  if (q.dtype != DType::F32 || out.dtype != DType::F32)
    return Status::unsupported("attention: q and out must be f32, got " + q.describe() + ", " + out.describe());
  if (auto s = check_same_shape("attention", q, out); !s.ok()) return s;
  const int64_t M = q.rows();
  if (M == 0) return Status::Ok();
  if (auto s = check_cache("attention", kv, p.q_pos0 + M); !s.ok()) return s;
  if (q.data == nullptr || out.data == nullptr) return Status::invalid("attention: missing data pointer");

  AttnArgs a;
  a.q = q.as<const float>();
  a.out = out.as<float>();
  a.k_pool = kv.k_pool.as<const float>();
  a.v_pool = kv.v_pool.as<const float>();
  a.block_table = kv.block_table.as<const int32_t>();
  a.M = M;
  a.block_size = kv.block_size;
  a.n_heads = p.n_heads;
  a.n_kv_heads = p.n_kv_heads;
  a.head_dim = p.head_dim;
  a.q_pos0 = p.q_pos0;
  a.scale = p.scale;
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  // Sharing K/V rows among the heads of a group saves loads; splitting the group keeps every
  // thread busy when there are few rows (decode) and few kv heads.
  a.heads_per_item = pick_heads_per_item(p.n_heads / p.n_kv_heads, M * p.n_kv_heads, 2 * int64_t(threads));
  const int64_t items = a.items();
  // Below ~32K keys x head_dim of work in total, one thread is quicker than waking the pool.
  const int64_t work = (int64_t(p.q_pos0) + M) * M * p.n_heads * p.head_dim;
  const int nt = (work < (int64_t(1) << 15) || items < 2) ? 1 : static_cast<int>(std::min<int64_t>(threads, items));
#pragma omp parallel num_threads(nt)
  {
    std::vector<float> scratch(static_cast<size_t>(a.scratch_floats()));
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < items; ++i) k.attention(a, i, i + 1, scratch.data());
  }
  return Status::Ok();
}

}  // namespace cb::kernels::cpu
