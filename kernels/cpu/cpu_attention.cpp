// kv_store and the attention driver over the paged KV cache (see KvLayer and AttentionBatch in
// backend.h). The arguments were checked by Backend's public ops; the index tensors by the
// caller's plan_kv_batch (kv_batch.h).
//
// attention: for every sequence of the batch, out rows = causal softmax(q k^T * scale) v over its
// context. Work items are (sequence, query row, kv head, chunk of query heads sharing it), over
// the whole batch at once, so a decode batch of many one-row sequences keeps every thread busy;
// each item runs the flash-style kernel of cpu_algos.h over the row's keys. Items are handed out
// dynamically because their cost grows with the row's position (causal mask).
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "cpu_ops.h"

namespace cb::kernels::cpu {
namespace {

// Largest divisor of `group` that is at most kAttnMaxHeads and still leaves `min_items` work
// items (so every thread gets some), or 1.
int pick_heads_per_item(int group, int64_t items_per_chunk, int64_t min_items) {
  for (int g = std::min(group, kAttnMaxHeads); g > 1; --g)
    if (group % g == 0 && items_per_chunk * (group / g) >= min_items) return g;
  return 1;
}

}  // namespace

Status kv_store(const Tensor& key, const Tensor& value, const Tensor& slot_mapping, KvLayer& kv) {
  const int64_t row = int64_t(kv.n_kv_heads) * kv.head_dim, M = key.rows();
  const int32_t* slots = slot_mapping.as<const int32_t>();
  const float* kp = key.as<const float>();
  const float* vp = value.as<const float>();
  float* kc = kv.k_pool.as<float>();
  float* vc = kv.v_pool.as<float>();
  parallel_ranges(M, std::max<int64_t>(1, 4096 / row), 1, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      if (slots[m] < 0) continue;  // padding
      const int64_t off = int64_t(slots[m]) * row;
      std::memcpy(kc + off, kp + m * row, sizeof(float) * static_cast<size_t>(row));
      std::memcpy(vc + off, vp + m * row, sizeof(float) * static_cast<size_t>(row));
    }
  });
  return Status::Ok();
}

Status attention(const KernelTable& k, const Tensor& q, const KvLayer& kv, const AttentionBatch& b,
                 const AttentionParams& p, Tensor& out) {
  const int32_t* qs = b.query_start.as<const int32_t>();
  const int32_t* ctx = b.context_len.as<const int32_t>();
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const int64_t rows = q.rows();
  // Sharing K/V rows among the heads of a group saves loads; splitting the group keeps every
  // thread busy when there are few rows (decode) and few kv heads.
  const int heads_per_item = pick_heads_per_item(p.n_heads / p.n_kv_heads, rows * p.n_kv_heads, 2 * int64_t(threads));
  // One AttnArgs per sequence, and the first work item of each (prefix sums).
  std::vector<AttnArgs> seq(static_cast<size_t>(b.num_seqs));
  std::vector<int64_t> first(static_cast<size_t>(b.num_seqs) + 1, 0);
  int64_t work = 0;
  for (int s = 0; s < b.num_seqs; ++s) {
    AttnArgs& a = seq[size_t(s)];
    const int64_t M = qs[s + 1] - qs[s];
    a.q = q.as<const float>() + int64_t(qs[s]) * q.cols();
    a.out = out.as<float>() + int64_t(qs[s]) * out.cols();
    a.k_pool = kv.k_pool.as<const float>();
    a.v_pool = kv.v_pool.as<const float>();
    a.block_table = b.block_tables.as<const int32_t>() + int64_t(s) * b.max_blocks_per_seq;
    a.M = M;
    a.block_size = kv.block_size;
    a.n_heads = p.n_heads;
    a.n_kv_heads = p.n_kv_heads;
    a.head_dim = p.head_dim;
    a.q_pos0 = ctx[s] - int(M);
    a.scale = p.scale;
    a.heads_per_item = heads_per_item;
    first[size_t(s) + 1] = first[size_t(s)] + a.items();
    work += int64_t(ctx[s]) * M * p.n_heads * p.head_dim;
  }
  const int64_t items = first.back();
  // Below ~32K keys x head_dim of work in total, one thread is quicker than waking the pool.
  const int nt = (work < (int64_t(1) << 15) || items < 2) ? 1 : static_cast<int>(std::min<int64_t>(threads, items));
  const int64_t scratch_floats = 2 * int64_t(heads_per_item) * p.head_dim;
  // A query row's items (its kv heads and head chunks, consecutive) go to one thread together
  // where there are rows enough to share: the kv heads' rows of a key lie side by side in the
  // pool, so one core then reads the row's blocks whole instead of two cores each taking slices
  // of them. llama-1b decode, 16 sequences at 144 keys, KV cold (cb_attention_study, 2 threads,
  // Zen 5, alternating processes): 216-223 us a call against 268-271 one item at a time (warm
  // 138-143 against 156-161).
  const int64_t row_items = int64_t(p.n_kv_heads) * ((p.n_heads / p.n_kv_heads) / heads_per_item);
  const int64_t chunk = rows >= 2 * int64_t(nt) ? row_items : 1;
#pragma omp parallel num_threads(nt)
  {
    std::vector<float> scratch(static_cast<size_t>(scratch_floats));
    size_t s = 0;  // items are handed out in increasing order per thread: the sequence only moves forward
#pragma omp for schedule(dynamic, chunk)
    for (int64_t i = 0; i < items; ++i) {
      if (i < first[s]) s = 0;
      while (first[s + 1] <= i) ++s;
      k.attention(seq[s], i - first[s], i - first[s] + 1, scratch.data());
    }
  }
  return Status::Ok();
}

}  // namespace cb::kernels::cpu
