// KV block accounting for the paged cache (vLLM style): which physical blocks each sequence owns,
// reference counts so that `n > 1` samples of one prompt share the prompt's blocks, copy-on-write
// when a shared block is about to be written, and an optional prefix cache keyed by the hash of
// all tokens up to the end of a full block, whose unreferenced blocks are evicted LRU (under Runs
// placement, where the placement puts a run: cached blocks are placed with the free ones).
//
// It only allocates or says no; whom to run, queue or preempt is the scheduler's decision.
// The storage itself lives in KvCache; this class hands out block ids of that pool, placed by
// FreeBlocks (default: each sequence's blocks in runs of adjacent ids, see free_blocks.h).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cb/engine/serving/free_blocks.h"

namespace cb::engine {

using SeqId = int64_t;

struct BlockStats {
  int num_blocks = 0;
  int free_blocks = 0;       // never used or evicted: immediately allocatable
  int cached_blocks = 0;     // unreferenced but holding a cached prefix (allocatable by eviction)
  int used_blocks = 0;       // referenced by at least one sequence
  int64_t tokens_stored = 0; // sum over sequences of tokens written (shared blocks counted once per owner)
  int peak_used_blocks = 0;
  int64_t prefix_hits = 0;   // blocks reused from the prefix cache
  int64_t prefix_queries = 0;
  int64_t cow_copies = 0;
  int64_t evictions = 0;
};

// A block copy the caller must perform in the KV storage before writing (copy-on-write).
struct BlockCopy {
  int src = -1;
  int dst = -1;
};

class BlockManager {
 public:
  BlockManager(int num_blocks, int block_size, bool enable_prefix_cache = false,
               BlockPlacement placement = BlockPlacement::Runs);

  int block_size() const { return block_size_; }
  BlockPlacement placement() const { return free_.placement(); }
  int blocks_for(int tokens) const { return (tokens + block_size_ - 1) / block_size_; }
  // Blocks allocatable right now (free + evictable cached ones).
  int available_blocks() const;

  // Admits a sequence whose first `tokens.size()` tokens will be written. With the prefix cache,
  // leading full blocks whose prefix hash is cached are shared instead of allocated. Returns the
  // number of leading tokens whose KV is already present (a multiple of block_size, and always
  // < tokens.size() so at least one token is computed), or nullopt — with nothing allocated —
  // when there are not enough blocks.
  std::optional<int> allocate(SeqId seq, std::span<const int32_t> tokens);
  // Admits a sequence with room for `tokens` positions reserved up front, nothing shared (what a
  // contiguous allocator does at admission). Returns 0 (no KV present), or nullopt with nothing
  // allocated when there are not enough blocks.
  std::optional<int> reserve(SeqId seq, int tokens);

  // Makes room to write token position `pos` (== current length) of `seq`: allocates a new block
  // when pos starts one; when the block holding pos is shared, copies it (copy-on-write) and
  // returns the copy to perform. nullopt when no block is available (nothing changed).
  // `ok` is false only in the nullopt case.
  struct AppendResult {
    bool ok = false;
    std::optional<BlockCopy> copy;
  };
  AppendResult append_slot(SeqId seq, int pos);
  // The same for a chunk: room for positions [pos, pos + count), pos <= current capacity, all or
  // nothing (nullopt-like ok = false with nothing changed). Every shared block the chunk writes
  // into is copied (copy-on-write), and the copies are returned in block order.
  struct ChunkAppendResult {
    bool ok = false;
    std::vector<BlockCopy> copies;
  };
  ChunkAppendResult append_slots(SeqId seq, int pos, int count);

  // Records that tokens [0, n) of seq are written (for accounting and for registering full blocks
  // in the prefix cache; `tokens` are all of the sequence's tokens so far).
  void commit_tokens(SeqId seq, std::span<const int32_t> tokens);

  // child shares every block of parent (reference counts +1); child must be new.
  void fork(SeqId parent, SeqId child);

  // Releases the sequence's blocks; unreferenced blocks go back to the free list, or to the
  // evictable cached list when they hold a registered prefix.
  void free(SeqId seq);

  bool has(SeqId seq) const { return seqs_.count(seq) != 0; }
  const std::vector<int32_t>& block_table(SeqId seq) const;
  int ref_count(int block) const { return ref_.at(block); }
  BlockStats stats() const;

  // Verifies the internal invariants (every block in exactly one of free list / evictable cached
  // list / referenced; reference counts equal block-table entries; the hash index is a bijection;
  // counters agree). Throws std::logic_error naming the first violation. O(blocks + table entries).
  void check_consistency() const;

 private:
  struct Seq {
    std::vector<int32_t> blocks;
    int64_t tokens = 0;
    // Prefix-hash chain state: the first `hashed_blocks` full blocks have been hashed (and
    // registered where possible); `chain` is the hash of the last of them (0 before the first).
    int hashed_blocks = 0;
    uint64_t chain = 0;
  };
  Seq& seq_at(SeqId seq);
  const Seq& seq_at(SeqId seq) const;
  // Free blocks first (placed after `after`, the table's previous entry, -1 none, with `run`
  // blocks to come in a row), then evict LRU cached; -1 when none. Returns it with ref 1.
  int take_block(int after, int run = 1);
  void release_block(int block);  // ref - 1; at 0 to the LRU cached list or the free list
  void acquire(int block);        // ref + 1 (taking it out of the LRU list when it was there)
  void lru_push_back(int block);
  void lru_remove(int block);

  int num_blocks_, block_size_;
  bool prefix_cache_;
  std::vector<int> ref_;
  FreeBlocks free_;
  // Prefix cache under Runs placement: ref-0 cached blocks are on free_ too, so placement picks
  // among free and cached blocks together (take_block).
  bool cached_placed_;
  std::vector<uint64_t> block_hash_;           // 0 = not registered
  std::unordered_map<uint64_t, int> hash_to_block_;
  // Unreferenced cached blocks as an intrusive doubly linked list, least recently used at the head
  // (O(1) removal on a prefix hit). -1 terminates; lru_in_ says whether a block is on the list.
  std::vector<int> lru_prev_, lru_next_;
  std::vector<char> lru_in_;
  int lru_head_ = -1, lru_tail_ = -1, lru_size_ = 0;
  std::unordered_map<SeqId, Seq> seqs_;
  int used_ = 0;  // blocks with ref > 0
  BlockStats stats_;  // counters only (hits, queries, copies, evictions, peak); the rest is computed
};

}  // namespace cb::engine
