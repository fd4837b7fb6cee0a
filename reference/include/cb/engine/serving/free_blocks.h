// The free KV blocks of the paged cache and where the next one is taken from.
//
// Block ids are positions in the cache's pools (KvCache: block b's rows start at b * block bytes),
// so a sequence whose blocks have adjacent ids is read as one stream. That matters for attention
// speed: on a CPU the hardware prefetchers follow a sequential walk but not a jump to an unrelated
// block, and the jump stalls the walk (at 4K context, 16-token blocks in shuffled order run at
// 0.79-0.82 of the contiguous speed on a Zen 5 host, the same blocks in order at 0.98-0.99).
//
// - Runs (default): free blocks as extents of adjacent ids. A sequence's next block is the one
//   after its last when that is free; otherwise (a new sequence, or its neighbour taken) a new run
//   starts in the largest free extent, in its middle when another block precedes it so the
//   sequence before keeps room to grow (binary splitting, as extent file systems place files).
//   Any free block is still taken when no better one is left: placement never refuses.
// - Lifo: the most recently freed block first (a plain free list; a serving trace with churn then
//   scatters every sequence over the pool). Kept as the comparison placement.
#pragma once

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace cb::engine {

enum class BlockPlacement { Runs, Lifo };

// "runs" / "lifo"; parse_block_placement throws std::invalid_argument naming the bad value.
std::string block_placement_name(BlockPlacement p);
BlockPlacement parse_block_placement(const std::string& name);

class FreeBlocks {
 public:
  // All of blocks 0 .. num_blocks - 1 free.
  FreeBlocks(int num_blocks, BlockPlacement placement);

  BlockPlacement placement() const { return placement_; }
  int size() const { return count_; }
  bool empty() const { return count_ == 0; }

  // Takes a free block for a block table whose last entry is `after` (-1: an empty table), with
  // `run` blocks (>= 1) about to be taken for it in a row. Requires !empty().
  int take(int after, int run = 1);
  // Returns a block (not free) to the set.
  void put(int block);
  // Takes that block out of the set (it must be in it; Runs placement only).
  void remove(int block);
  bool contains(int block) const;
  // The free ids, ascending.
  std::vector<int> list() const;

  // Verifies the internal invariants (extents disjoint, non-adjacent and inside the pool; counts
  // agree). Throws std::logic_error naming the first violation.
  void check() const;

 private:
  void erase_extent(std::map<int, int>::iterator it);
  void insert_extent(int start, int length);
  void take_exact(int block);

  int num_blocks_;
  BlockPlacement placement_;
  int count_ = 0;
  // Runs: free extents start -> length, and (length, start) ordered largest first, lowest start
  // first among equals.
  std::map<int, int> extents_;
  std::set<std::pair<int, int>> by_length_;  // (-length, start)
  // Lifo: the stack, back handed out next.
  std::vector<int> stack_;
};

}  // namespace cb::engine
