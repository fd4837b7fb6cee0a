#include "cb/kernels/kv_batch.h"

#include <algorithm>
#include <string>

namespace cb::kernels {

Status plan_kv_batch(std::span<const KvSeq> seqs, int64_t num_blocks, int block_size, KvBatchPlan& out) {
  out = KvBatchPlan{};
  if (block_size <= 0) return Status::invalid("kv batch: block_size must be positive, got " + std::to_string(block_size));
  out.query_start.reserve(seqs.size() + 1);
  out.query_start.push_back(0);
  int64_t rows = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    const KvSeq& q = seqs[s];
    const std::string who = "kv batch: sequence " + std::to_string(s);
    if (q.rows <= 0) return Status::invalid(who + " has no query rows");
    if (q.pos0 < 0) return Status::invalid(who + " starts at negative position " + std::to_string(q.pos0));
    const int64_t ctx = int64_t(q.pos0) + q.rows;
    const int64_t needed = (ctx + block_size - 1) / block_size;
    if (int64_t(q.block_table.size()) < needed)
      return Status::invalid(who + ": " + std::to_string(ctx) + " positions need " + std::to_string(needed) +
                             " blocks but its block table has " + std::to_string(q.block_table.size()));
    for (int64_t b = 0; b < needed; ++b)
      if (q.block_table[size_t(b)] < 0 || q.block_table[size_t(b)] >= num_blocks)
        return Status::invalid(who + ": block table entry " + std::to_string(b) + " = " +
                               std::to_string(q.block_table[size_t(b)]) + " is outside the pool of " +
                               std::to_string(num_blocks) + " blocks");
    rows += q.rows;
    if (rows > INT32_MAX || ctx > INT32_MAX) return Status::invalid(who + ": more rows or positions than i32 holds");
    out.query_start.push_back(int32_t(rows));
    out.context_len.push_back(int32_t(ctx));
    out.max_blocks_per_seq = std::max<int>(out.max_blocks_per_seq, int(needed));
    out.max_query_len = std::max(out.max_query_len, q.rows);
    out.max_context_len = std::max<int>(out.max_context_len, int(ctx));
  }
  const int stride = out.max_blocks_per_seq;
  out.block_tables.assign(seqs.size() * size_t(stride), 0);
  out.slot_mapping.reserve(size_t(rows));
  out.positions.reserve(size_t(rows));
  for (size_t s = 0; s < seqs.size(); ++s) {
    const KvSeq& q = seqs[s];
    const int needed = (q.pos0 + q.rows + block_size - 1) / block_size;
    std::copy_n(q.block_table.begin(), needed, out.block_tables.begin() + int64_t(s) * stride);
    for (int i = 0; i < q.rows; ++i) {
      const int t = q.pos0 + i;
      out.positions.push_back(t);
      out.slot_mapping.push_back(q.block_table[size_t(t / block_size)] * block_size + t % block_size);
    }
  }
  return Status::Ok();
}

void round_up_kv_batch(KvBatchPlan& plan, int table_cols, int block_size) {
  if (table_cols <= 0 || plan.num_seqs() == 0) return;
  const int old = plan.max_blocks_per_seq, wide = std::max(1, (old + table_cols - 1) / table_cols) * table_cols;
  if (wide != old) {
    std::vector<int32_t> t(size_t(plan.num_seqs()) * size_t(wide), 0);
    for (int s = 0; s < plan.num_seqs(); ++s)
      std::copy_n(plan.block_tables.begin() + int64_t(s) * old, old, t.begin() + int64_t(s) * wide);
    plan.block_tables.swap(t);
    plan.max_blocks_per_seq = wide;
  }
  plan.max_context_len = std::max(plan.max_context_len, wide * block_size);
}

Status check_token_ids(std::span<const int32_t> ids, int64_t vocab) {
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= vocab)
      return Status::invalid("token id " + std::to_string(ids[i]) + " at index " + std::to_string(i) +
                             " is outside the vocabulary of " + std::to_string(vocab));
  return Status::Ok();
}

KvBatchTensors::~KvBatchTensors() {
  for (Tensor* t : {&qs_buf_, &ctx_buf_, &tab_buf_, &slot_buf_, &pos_buf_})
    if (!t->empty()) be_.release(*t);
}

Status KvBatchTensors::fill(Tensor& buf, int64_t& cap, const std::vector<int32_t>& host, Tensor& view) {
  const int64_t n = int64_t(host.size());
  if (n > cap) {
    const int64_t want = std::max<int64_t>(n, 2 * cap);
    if (!buf.empty()) be_.release(buf);
    ++generation_;
    cap = 0;
    if (Status s = be_.allocate(DType::I32, {std::max<int64_t>(want, 1)}, buf); !s.ok()) return s;
    cap = std::max<int64_t>(want, 1);
  }
  view = buf;
  view.ndim = 1;
  view.shape = {n, 0, 0, 0};
  return n > 0 ? be_.copy_from_host(view, host.data()) : Status::Ok();
}

Status KvBatchTensors::upload(const KvBatchPlan& plan) {
  if (Status s = fill(qs_buf_, qs_cap_, plan.query_start, batch_.query_start); !s.ok()) return s;
  if (Status s = fill(ctx_buf_, ctx_cap_, plan.context_len, batch_.context_len); !s.ok()) return s;
  if (Status s = fill(tab_buf_, tab_cap_, plan.block_tables, batch_.block_tables); !s.ok()) return s;
  if (Status s = fill(slot_buf_, slot_cap_, plan.slot_mapping, slots_); !s.ok()) return s;
  if (Status s = fill(pos_buf_, pos_cap_, plan.positions, positions_); !s.ok()) return s;
  batch_.block_tables.ndim = 2;
  batch_.block_tables.shape = {plan.num_seqs(), plan.max_blocks_per_seq, 0, 0};
  batch_.num_seqs = plan.num_seqs();
  batch_.max_blocks_per_seq = plan.max_blocks_per_seq;
  batch_.max_query_len = plan.max_query_len;
  batch_.max_context_len = plan.max_context_len;
  return Status::Ok();
}

}  // namespace cb::kernels
