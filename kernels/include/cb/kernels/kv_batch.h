// The host side of a batched attention step: the caller builds and validates the index arrays
// (query offsets, context lengths, block tables, slot mapping) on the host, once per step, and
// uploads them; the ops trust them (backend.h). This is the one place block tables and token
// ids are checked, so a device backend never copies an index tensor back to validate it.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "cb/kernels/backend.h"

namespace cb::kernels {

// One sequence of a step: `rows` new tokens at positions pos0 .. pos0 + rows - 1, attending over
// positions 0 .. pos0 + rows - 1 through `block_table` (which may list more blocks than needed).
struct KvSeq {
  int pos0 = 0;
  int rows = 0;
  std::span<const int32_t> block_table;
};

// Host copies of a step's index tensors (see AttentionBatch and Backend::kv_store).
struct KvBatchPlan {
  std::vector<int32_t> query_start;   // [num_seqs + 1]
  std::vector<int32_t> context_len;   // [num_seqs]
  std::vector<int32_t> block_tables;  // [num_seqs, max_blocks_per_seq]; unused entries 0
  std::vector<int32_t> slot_mapping;  // [rows]
  std::vector<int32_t> positions;     // [rows], for rope
  int max_blocks_per_seq = 0;
  int max_query_len = 0;
  int max_context_len = 0;
  int num_seqs() const { return int(context_len.size()); }
  int64_t rows() const { return query_start.empty() ? 0 : query_start.back(); }
};

// Builds the plan and checks it against a pool of num_blocks blocks of block_size slots: every
// sequence has rows > 0 and pos0 >= 0, its table covers pos0 + rows positions, and every block it
// uses is inside the pool. The error names the sequence and the table entry.
Status plan_kv_batch(std::span<const KvSeq> seqs, int64_t num_blocks, int block_size, KvBatchPlan& out);

// Widens the plan's block tables to a multiple of `table_cols` columns (zeros past each table)
// and raises max_context_len to the widened tables' capacity: still bounds, but the same for
// every step until the longest sequence outgrows them, so a recorded step (Backend::capture_*)
// that baked them in can be replayed. table_cols <= 0 leaves the plan as it is.
void round_up_kv_batch(KvBatchPlan& plan, int table_cols, int block_size);

// Every id in [0, vocab): the check the embedding op leaves to its caller. Names the first bad
// id and its index.
Status check_token_ids(std::span<const int32_t> ids, int64_t vocab);

// Backend copies of a plan's index tensors, grown as needed and released with this object.
class KvBatchTensors {
 public:
  explicit KvBatchTensors(Backend& be) : be_(be) {}
  ~KvBatchTensors();
  KvBatchTensors(const KvBatchTensors&) = delete;
  KvBatchTensors& operator=(const KvBatchTensors&) = delete;

  // Copies the plan's arrays to the backend; attention() and slot_mapping() then describe it.
  Status upload(const KvBatchPlan& plan);
  const AttentionBatch& attention() const { return batch_; }
  const Tensor& slot_mapping() const { return slots_; }
  const Tensor& positions() const { return positions_; }
  // Bumped whenever a buffer is replaced (grown): what a recorded step baked in is then gone.
  int64_t generation() const { return generation_; }

 private:
  // An i32 buffer of at least n elements in buf (regrown by doubling), viewed as `view` [dims].
  Status fill(Tensor& buf, int64_t& cap, const std::vector<int32_t>& host, Tensor& view);
  Backend& be_;
  Tensor qs_buf_, ctx_buf_, tab_buf_, slot_buf_, pos_buf_;
  int64_t qs_cap_ = 0, ctx_cap_ = 0, tab_cap_ = 0, slot_cap_ = 0, pos_cap_ = 0;
  int64_t generation_ = 0;
  AttentionBatch batch_;
  Tensor slots_, positions_;
};

}  // namespace cb::kernels
