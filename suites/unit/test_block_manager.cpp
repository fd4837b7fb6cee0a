// BlockManager: block ids, all-or-nothing allocation, copy-on-write, n > 1 sharing, prefix cache
// hits and LRU eviction, counters, and a seeded randomized run that checks invariants every step.
// The tests that spell out block ids use the LIFO placement (ids easy to follow by hand); the
// default run placement has its own tests in test_free_blocks.cpp, and the randomized run covers
// both.
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "cb/engine/serving/block_manager.h"

using cb::engine::BlockManager;
using cb::engine::BlockPlacement;
using cb::engine::BlockStats;
using cb::engine::SeqId;
using Ids = std::vector<int32_t>;

namespace {

constexpr BlockPlacement kLifo = BlockPlacement::Lifo;

Ids range(int32_t from, int32_t to) {  // [from, to)
  Ids v(to - from);
  std::iota(v.begin(), v.end(), from);
  return v;
}

Ids cat(Ids a, const Ids& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Allocates and commits the whole prompt (as the engine does after prefill); returns the cached count.
int admit(BlockManager& bm, SeqId s, const Ids& tokens) {
  auto cached = bm.allocate(s, tokens);
  if (!cached) throw std::runtime_error("admit: out of blocks");
  bm.commit_tokens(s, tokens);
  return *cached;
}

}  // namespace

TEST(BlockManager, HandsOutLowestIdsFirstAndReusesFreedLifo) {
  BlockManager bm(8, 4, false, kLifo);
  EXPECT_EQ(bm.block_size(), 4);
  EXPECT_EQ(bm.blocks_for(0), 0);
  EXPECT_EQ(bm.blocks_for(4), 1);
  EXPECT_EQ(bm.blocks_for(5), 2);
  EXPECT_EQ(bm.available_blocks(), 8);

  EXPECT_EQ(bm.allocate(1, range(0, 10)), 0);
  EXPECT_EQ(bm.block_table(1), (Ids{0, 1, 2}));
  EXPECT_EQ(bm.allocate(2, range(0, 4)), 0);
  EXPECT_EQ(bm.block_table(2), (Ids{3}));
  EXPECT_EQ(bm.ref_count(0), 1);
  EXPECT_EQ(bm.ref_count(4), 0);
  EXPECT_EQ(bm.available_blocks(), 4);

  // A sequence's blocks are released tail first, so its first block is the most recently freed.
  bm.free(1);
  EXPECT_FALSE(bm.has(1));
  EXPECT_EQ(bm.ref_count(0), 0);
  EXPECT_EQ(bm.allocate(3, range(0, 5)), 0);
  EXPECT_EQ(bm.block_table(3), (Ids{0, 1}));
  bm.free(2);
  EXPECT_EQ(bm.allocate(4, range(0, 1)), 0);
  EXPECT_EQ(bm.block_table(4), (Ids{3}));  // most recently freed first
  EXPECT_EQ(bm.allocate(5, range(0, 8)), 0);
  EXPECT_EQ(bm.block_table(5), (Ids{2, 4}));  // then the older free block, then never-used ids

  const BlockStats st = bm.stats();
  EXPECT_EQ(st.num_blocks, 8);
  EXPECT_EQ(st.used_blocks, 5);
  EXPECT_EQ(st.free_blocks, 3);
  EXPECT_EQ(st.cached_blocks, 0);
  EXPECT_EQ(st.peak_used_blocks, 5);
  EXPECT_NO_THROW(bm.check_consistency());
}

TEST(BlockManager, AllocateIsAllOrNothing) {
  BlockManager bm(4, 4, false, kLifo);
  EXPECT_EQ(bm.allocate(1, range(0, 8)), 0);
  EXPECT_EQ(bm.allocate(2, range(0, 12)), std::nullopt);  // needs 3, 2 left
  EXPECT_FALSE(bm.has(2));
  EXPECT_EQ(bm.stats().used_blocks, 2);
  EXPECT_EQ(bm.stats().free_blocks, 2);
  EXPECT_EQ(bm.allocate(2, range(0, 8)), 0);
  EXPECT_EQ(bm.block_table(2), (Ids{2, 3}));
  EXPECT_EQ(bm.allocate(3, range(0, 1)), std::nullopt);
  EXPECT_EQ(bm.allocate(3, Ids{}), 0);  // an empty sequence needs no block
  EXPECT_TRUE(bm.block_table(3).empty());
  EXPECT_NO_THROW(bm.check_consistency());
}

TEST(BlockManager, AllocateIsAllOrNothingWithPrefixHits) {
  BlockManager bm(3, 4, /*prefix cache*/ true, kLifo);
  EXPECT_EQ(admit(bm, 1, range(0, 8)), 0);
  bm.free(1);  // blocks 0, 1 cached and evictable; block 2 free
  ASSERT_EQ(bm.stats().cached_blocks, 2);
  ASSERT_EQ(bm.available_blocks(), 3);
  const BlockStats before = bm.stats();

  // 16 tokens: blocks 0, 1 would be shared, but 2 more are needed and only block 2 is left once
  // the shared ones leave the evictable list. Nothing may change, counters included.
  EXPECT_EQ(bm.allocate(2, range(0, 16)), std::nullopt);
  EXPECT_FALSE(bm.has(2));
  const BlockStats after = bm.stats();
  EXPECT_EQ(after.cached_blocks, 2);
  EXPECT_EQ(after.free_blocks, 1);
  EXPECT_EQ(after.prefix_hits, before.prefix_hits);
  EXPECT_EQ(after.prefix_queries, before.prefix_queries);
  EXPECT_EQ(after.evictions, 0);
  EXPECT_EQ(bm.ref_count(0), 0);

  EXPECT_EQ(bm.allocate(2, range(0, 12)), 8);
  EXPECT_EQ(bm.block_table(2), (Ids{0, 1, 2}));
  EXPECT_EQ(bm.stats().evictions, 0);
  EXPECT_NO_THROW(bm.check_consistency());
}

TEST(BlockManager, AppendSlotCrossesBlockBoundaries) {
  BlockManager bm(3, 4, false, kLifo);
  Ids toks = range(0, 3);
  EXPECT_EQ(admit(bm, 1, toks), 0);
  EXPECT_EQ(bm.block_table(1), (Ids{0}));
  for (int pos = 3; pos < 12; ++pos) {
    auto r = bm.append_slot(1, pos);
    EXPECT_TRUE(r.ok) << pos;
    EXPECT_FALSE(r.copy.has_value()) << pos;
    toks.push_back(pos);
    bm.commit_tokens(1, toks);
    // A new block exactly when pos starts one (4, 8): {0} up to pos 3, {0, 1} to 7, {0, 1, 2} to 11.
    EXPECT_EQ(bm.block_table(1), range(0, pos / 4 + 1)) << pos;
  }
  EXPECT_EQ(bm.stats().tokens_stored, 12);
  auto r = bm.append_slot(1, 12);  // pool exhausted
  EXPECT_FALSE(r.ok);
  EXPECT_FALSE(r.copy.has_value());
  EXPECT_EQ(bm.block_table(1), (Ids{0, 1, 2}));
  EXPECT_THROW(bm.append_slot(1, 14), std::invalid_argument);  // beyond the next slot
  EXPECT_THROW(bm.append_slot(1, -1), std::invalid_argument);
  EXPECT_THROW(bm.commit_tokens(1, range(0, 13)), std::invalid_argument);  // no slot for token 12
  EXPECT_NO_THROW(bm.check_consistency());
}

TEST(BlockManager, AppendSlotsTakesAWholeChunkOrNothing) {
  BlockManager bm(4, 4, false, kLifo);
  Ids toks = range(0, 3);
  admit(bm, 1, toks);
  auto r = bm.append_slots(1, 3, 6);  // positions 3..8: blocks 1 and 2 are new
  ASSERT_TRUE(r.ok);
  EXPECT_TRUE(r.copies.empty());
  EXPECT_EQ(bm.block_table(1), (Ids{0, 1, 2}));
  admit(bm, 2, range(0, 2));  // the last block
  r = bm.append_slots(1, 9, 4);  // positions 9..12 need block 3, which is gone: nothing changes
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(bm.block_table(1), (Ids{0, 1, 2}));
  EXPECT_EQ(bm.stats().free_blocks, 0);
  r = bm.append_slots(1, 9, 3);  // positions 9..11 fit in block 2
  EXPECT_TRUE(r.ok);
  EXPECT_THROW(bm.append_slots(1, 13, 1), std::invalid_argument);  // past the next slot
  EXPECT_THROW(bm.append_slots(1, 4, 0), std::invalid_argument);
  EXPECT_NO_THROW(bm.check_consistency());
}

TEST(BlockManager, AppendSlotsCopiesEverySharedBlockTheChunkWrites) {
  BlockManager bm(8, 4, false, kLifo);
  ASSERT_EQ(bm.reserve(1, 12), 0);  // three empty blocks, as a contiguous reservation
  EXPECT_EQ(bm.block_table(1), (Ids{0, 1, 2}));
  EXPECT_EQ(bm.stats().tokens_stored, 0);
  bm.fork(1, 2);
  auto r = bm.append_slots(2, 2, 7);  // positions 2..8 touch shared blocks 0, 1 and 2
  ASSERT_TRUE(r.ok);
  ASSERT_EQ(r.copies.size(), 3u);
  EXPECT_EQ(r.copies[0].src, 0);
  EXPECT_EQ(r.copies[2].src, 2);
  EXPECT_EQ(bm.block_table(2), (Ids{3, 4, 5}));
  EXPECT_EQ(bm.block_table(1), (Ids{0, 1, 2}));
  EXPECT_EQ(bm.stats().cow_copies, 3);
  EXPECT_FALSE(bm.reserve(3, 12).has_value());  // 2 blocks left: nothing allocated
  EXPECT_EQ(bm.stats().free_blocks, 2);
  EXPECT_THROW(bm.reserve(1, 4), std::invalid_argument);  // exists already
  EXPECT_NO_THROW(bm.check_consistency());
}

TEST(BlockManager, ForkSharesBlocksAndChildWriteCopiesOnce) {
  BlockManager bm(8, 4, false, kLifo);
  Ids toks = range(0, 6);
  admit(bm, 1, toks);
  bm.fork(1, 2);
  EXPECT_EQ(bm.block_table(2), (Ids{0, 1}));
  EXPECT_EQ(bm.ref_count(0), 2);
  EXPECT_EQ(bm.ref_count(1), 2);
  EXPECT_EQ(bm.stats().used_blocks, 2);
  EXPECT_EQ(bm.stats().tokens_stored, 12);  // counted once per owner

  auto r = bm.append_slot(2, 6);  // child writes into the shared partial block
  ASSERT_TRUE(r.ok);
  ASSERT_TRUE(r.copy.has_value());
  EXPECT_EQ(r.copy->src, 1);
  EXPECT_EQ(r.copy->dst, 2);
  EXPECT_EQ(bm.block_table(2), (Ids{0, 2}));
  EXPECT_EQ(bm.block_table(1), (Ids{0, 1}));  // parent unchanged
  EXPECT_EQ(bm.ref_count(0), 2);
  EXPECT_EQ(bm.ref_count(1), 1);
  EXPECT_EQ(bm.ref_count(2), 1);
  bm.commit_tokens(2, cat(toks, {100}));

  r = bm.append_slot(1, 6);  // the parent's block is its own now: no second copy
  EXPECT_TRUE(r.ok);
  EXPECT_FALSE(r.copy.has_value());
  r = bm.append_slot(2, 7);
  EXPECT_TRUE(r.ok);
  EXPECT_FALSE(r.copy.has_value());
  EXPECT_EQ(bm.stats().cow_copies, 1);
  EXPECT_EQ(bm.block_table(1), (Ids{0, 1}));
  EXPECT_EQ(bm.block_table(2), (Ids{0, 2}));

  // Both free: the shared block 0 survives the first free.
  bm.free(2);
  EXPECT_EQ(bm.ref_count(0), 1);
  EXPECT_EQ(bm.ref_count(2), 0);
  bm.free(1);
  EXPECT_EQ(bm.stats().free_blocks, 8);
  EXPECT_EQ(bm.stats().peak_used_blocks, 3);
  EXPECT_NO_THROW(bm.check_consistency());
}

TEST(BlockManager, ForkParentWriteCopiesAndLeavesChildTable) {
  BlockManager bm(8, 4, false, kLifo);
  admit(bm, 1, range(0, 5));
  bm.fork(1, 2);
  auto r = bm.append_slot(1, 5);
  ASSERT_TRUE(r.ok && r.copy.has_value());
  EXPECT_EQ(r.copy->src, 1);
  EXPECT_EQ(r.copy->dst, 2);
  EXPECT_EQ(bm.block_table(1), (Ids{0, 2}));
  EXPECT_EQ(bm.block_table(2), (Ids{0, 1}));
  EXPECT_EQ(bm.stats().cow_copies, 1);

  // A write at a block boundary after a fork needs a new block, never a copy.
  BlockManager full(8, 4, false, kLifo);
  admit(full, 1, range(0, 8));
  full.fork(1, 2);
  r = full.append_slot(2, 8);
  EXPECT_TRUE(r.ok);
  EXPECT_FALSE(r.copy.has_value());
  EXPECT_EQ(full.block_table(2), (Ids{0, 1, 2}));
  EXPECT_EQ(full.block_table(1), (Ids{0, 1}));
  EXPECT_EQ(full.stats().cow_copies, 0);

  // Copy-on-write with the pool exhausted says no and changes nothing.
  BlockManager tight(2, 4, false, kLifo);
  admit(tight, 1, range(0, 5));
  tight.fork(1, 2);
  r = tight.append_slot(2, 5);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(tight.block_table(2), (Ids{0, 1}));
  EXPECT_EQ(tight.ref_count(1), 2);
  EXPECT_EQ(tight.stats().cow_copies, 0);
  EXPECT_NO_THROW(tight.check_consistency());
}

TEST(BlockManager, ThreeSamplesShareThePromptBlocks) {
  BlockManager bm(32, 4, false, kLifo);
  const Ids prompt = range(0, 10);  // blocks 0, 1 full, block 2 holds 2 tokens
  admit(bm, 100, prompt);
  for (SeqId s : {1, 2, 3}) bm.fork(100, s);
  bm.free(100);
  for (int b : {0, 1, 2}) EXPECT_EQ(bm.ref_count(b), 3);
  EXPECT_EQ(bm.stats().used_blocks, 3);

  std::map<SeqId, Ids> toks{{1, prompt}, {2, prompt}, {3, prompt}};
  std::vector<int64_t> copies;
  for (int pos = 10; pos < 17; ++pos)  // 7 generated tokens each, round robin as the scheduler does
    for (SeqId s : {1, 2, 3}) {
      auto r = bm.append_slot(s, pos);
      ASSERT_TRUE(r.ok);
      if (r.copy) copies.push_back(r.copy->src * 100 + r.copy->dst);
      toks[s].push_back(int32_t(1000 * s + pos));
      bm.commit_tokens(s, toks[s]);
    }
  // Samples 1 and 2 copy the shared partial block; sample 3 is then its only owner.
  EXPECT_EQ(copies, (std::vector<int64_t>{2 * 100 + 3, 2 * 100 + 4}));
  EXPECT_EQ(bm.block_table(1), (Ids{0, 1, 3, 5, 8}));
  EXPECT_EQ(bm.block_table(2), (Ids{0, 1, 4, 6, 9}));
  EXPECT_EQ(bm.block_table(3), (Ids{0, 1, 2, 7, 10}));
  const BlockStats st = bm.stats();
  EXPECT_EQ(st.used_blocks, 2 + 3 * 3);  // shared full prompt blocks + each sample's tail blocks
  EXPECT_LT(st.used_blocks, 3 * bm.blocks_for(17));
  EXPECT_EQ(st.peak_used_blocks, 11);
  EXPECT_EQ(st.cow_copies, 2);
  EXPECT_EQ(st.tokens_stored, 3 * 17);
  EXPECT_NO_THROW(bm.check_consistency());
}

TEST(BlockManager, PrefixCacheSharesLeadingFullBlocks) {
  BlockManager bm(16, 4, true, kLifo);
  EXPECT_EQ(admit(bm, 1, range(0, 10)), 0);  // registers blocks 0 and 1
  EXPECT_EQ(bm.block_table(1), (Ids{0, 1, 2}));
  const Ids b_prompt = cat(range(0, 8), {50, 51, 52});
  EXPECT_EQ(bm.allocate(2, b_prompt), 8);
  EXPECT_EQ(bm.block_table(2), (Ids{0, 1, 3}));
  EXPECT_EQ(bm.ref_count(0), 2);
  EXPECT_EQ(bm.ref_count(1), 2);
  EXPECT_EQ(bm.ref_count(3), 1);
  BlockStats st = bm.stats();
  EXPECT_EQ(st.prefix_queries, 1 + 2);  // the first sequence's lookup stops at its first miss
  EXPECT_EQ(st.prefix_hits, 2);
  EXPECT_EQ(st.tokens_stored, 10 + 8);  // cached tokens count as written
  EXPECT_EQ(st.used_blocks, 4);
  bm.commit_tokens(2, b_prompt);
  EXPECT_EQ(bm.stats().tokens_stored, 10 + 11);

  // Without the prefix cache the same calls share nothing and free blocks go straight back.
  BlockManager off(16, 4, false, kLifo);
  admit(off, 1, range(0, 10));
  EXPECT_EQ(off.allocate(2, b_prompt), 0);
  EXPECT_EQ(off.block_table(2), (Ids{3, 4, 5}));
  off.free(1);
  EXPECT_EQ(off.stats().cached_blocks, 0);
  EXPECT_EQ(off.stats().prefix_queries, 0);
  EXPECT_NO_THROW(bm.check_consistency());
  EXPECT_NO_THROW(off.check_consistency());
}

TEST(BlockManager, FullyCachedPromptStillComputesItsLastToken) {
  BlockManager bm(16, 4, true, kLifo);
  admit(bm, 1, range(0, 8));  // two full blocks, both registered
  // Same 8 tokens: only block 0 is shared; block 1 is recomputed so the last token gets logits.
  EXPECT_EQ(bm.allocate(2, range(0, 8)), 4);
  EXPECT_EQ(bm.block_table(2), (Ids{0, 2}));
  bm.commit_tokens(2, range(0, 8));  // block 2 repeats block 1's hash: stays unregistered
  EXPECT_EQ(bm.allocate(3, range(0, 9)), 8);  // one token past the cached blocks
  EXPECT_EQ(bm.block_table(3), (Ids{0, 1, 3}));
  EXPECT_EQ(bm.allocate(4, range(0, 4)), 0);  // a single full block is never reported cached
  EXPECT_EQ(bm.block_table(4), (Ids{4}));
  const BlockStats st = bm.stats();
  EXPECT_EQ(st.prefix_queries, 1 + 1 + 2 + 0);
  EXPECT_EQ(st.prefix_hits, 0 + 1 + 2 + 0);

  bm.free(2);  // block 2 had no hash of its own: free list, not the cached list
  EXPECT_EQ(bm.stats().cached_blocks, 0);
  EXPECT_EQ(bm.ref_count(0), 2);  // sequences 1 and 3
  EXPECT_EQ(bm.allocate(5, Ids{70}), 0);
  EXPECT_EQ(bm.block_table(5), (Ids{2}));
  EXPECT_NO_THROW(bm.check_consistency());
}

TEST(BlockManager, PrefixHashIsChainedOverEarlierBlocks) {
  BlockManager bm(16, 4, true, kLifo);
  admit(bm, 1, range(0, 9));
  // Block 1 (tokens 4..7) matches, but block 0 differs: no hit for either.
  const Ids other = cat(cat(Ids{100, 101, 102, 103}, range(4, 8)), {8});
  EXPECT_EQ(bm.allocate(2, other), 0);
  EXPECT_EQ(bm.block_table(2), (Ids{3, 4, 5}));
  const BlockStats st = bm.stats();
  EXPECT_EQ(st.prefix_hits, 0);
  EXPECT_EQ(st.prefix_queries, 1 + 1);
  // A difference inside block 1 keeps block 0's hit and stops there.
  EXPECT_EQ(bm.allocate(3, cat(range(0, 4), {4, 5, 6, 99, 8})), 4);
  EXPECT_EQ(bm.block_table(3), (Ids{0, 6, 7}));
  EXPECT_NO_THROW(bm.check_consistency());
}

TEST(BlockManager, EvictsLeastRecentlyUsedCachedBlocksFirst) {
  BlockManager bm(6, 4, true, kLifo);
  const Ids a = range(0, 8), b = range(10, 18), c = range(20, 28);
  admit(bm, 1, a);  // blocks 0, 1
  admit(bm, 2, b);  // blocks 2, 3
  admit(bm, 3, c);  // blocks 4, 5
  bm.free(1);
  bm.free(2);
  bm.free(3);
  BlockStats st = bm.stats();
  EXPECT_EQ(st.cached_blocks, 6);
  EXPECT_EQ(st.free_blocks, 0);
  EXPECT_EQ(st.used_blocks, 0);
  EXPECT_EQ(bm.available_blocks(), 6);

  // Pressure evicts A (freed first), its tail block first.
  EXPECT_EQ(admit(bm, 10, range(100, 104)), 0);
  EXPECT_EQ(bm.block_table(10), (Ids{1}));
  EXPECT_EQ(admit(bm, 11, range(200, 204)), 0);
  EXPECT_EQ(bm.block_table(11), (Ids{0}));
  EXPECT_EQ(bm.stats().evictions, 2);

  // B is still cached: shared, and the extra block evicts C's tail next (LRU after B's removal).
  EXPECT_EQ(bm.allocate(12, cat(b, {18})), 8);
  EXPECT_EQ(bm.block_table(12), (Ids{2, 3, 5}));
  EXPECT_EQ(bm.stats().evictions, 3);
  // A is gone: a miss, and only C's head is left to evict.
  EXPECT_EQ(bm.allocate(13, cat(a, {8})), std::nullopt);
  EXPECT_EQ(bm.allocate(13, cat(c, {28})), std::nullopt);  // C's block 1 was evicted: needs 2
  EXPECT_EQ(bm.allocate(13, cat(range(20, 24), {24})), std::nullopt);  // C's head hits, no room left
  // Sequence 10's (registered) block goes to the back of the cached list, behind C's head (block
  // 4). A hit on block 4 takes it off the list, so the new block evicts block 1 although 4 was first.
  bm.free(10);
  EXPECT_EQ(bm.allocate(13, cat(range(20, 24), {24})), 4);
  EXPECT_EQ(bm.block_table(13), (Ids{4, 1}));
  EXPECT_EQ(bm.stats().evictions, 4);
  st = bm.stats();
  EXPECT_EQ(st.cached_blocks, 0);
  EXPECT_EQ(st.used_blocks, 6);
  EXPECT_NO_THROW(bm.check_consistency());
}

TEST(BlockManager, HitBlockLeavesLruAndIsNotEvictedWhileReferenced) {
  BlockManager bm(4, 4, true, kLifo);
  const Ids a = range(0, 8);
  admit(bm, 1, a);
  bm.free(1);
  ASSERT_EQ(bm.stats().cached_blocks, 2);
  EXPECT_EQ(bm.allocate(2, cat(a, {8})), 8);  // hits both cached blocks
  EXPECT_EQ(bm.block_table(2), (Ids{0, 1, 2}));
  BlockStats st = bm.stats();
  EXPECT_EQ(st.cached_blocks, 0);
  EXPECT_EQ(st.used_blocks, 3);
  EXPECT_EQ(bm.available_blocks(), 1);

  EXPECT_EQ(bm.allocate(3, range(50, 54)), 0);
  EXPECT_EQ(bm.block_table(3), (Ids{3}));
  EXPECT_EQ(bm.allocate(4, range(60, 64)), std::nullopt);  // referenced cached blocks are not evictable
  EXPECT_EQ(bm.stats().evictions, 0);
  EXPECT_EQ(bm.ref_count(0), 1);

  bm.free(2);  // block 2 (partial, unregistered) to the free list; 1 then 0 to the cached list
  st = bm.stats();
  EXPECT_EQ(st.cached_blocks, 2);
  EXPECT_EQ(st.free_blocks, 1);
  EXPECT_EQ(bm.allocate(4, range(60, 64)), 0);
  EXPECT_EQ(bm.block_table(4), (Ids{2}));
  EXPECT_EQ(bm.allocate(5, range(70, 74)), 0);
  EXPECT_EQ(bm.block_table(5), (Ids{1}));
  EXPECT_EQ(bm.stats().evictions, 1);
  EXPECT_NO_THROW(bm.check_consistency());
}

TEST(BlockManager, StatsCounters) {
  BlockManager bm(8, 4, true, kLifo);
  const Ids p = range(0, 10);
  admit(bm, 1, p);
  EXPECT_EQ(bm.allocate(2, p), 8);
  bm.commit_tokens(2, p);
  bm.fork(2, 3);
  auto r = bm.append_slot(3, 10);  // block 3 shared by 2 and 3
  ASSERT_TRUE(r.ok && r.copy);
  bm.free(1);  // block 2 was never registered (partial): free
  bm.free(2);
  bm.free(3);
  BlockStats st = bm.stats();
  EXPECT_EQ(st.num_blocks, 8);
  EXPECT_EQ(st.prefix_queries, 1 + 2);
  EXPECT_EQ(st.prefix_hits, 2);
  EXPECT_EQ(st.cow_copies, 1);
  EXPECT_EQ(st.evictions, 0);
  EXPECT_EQ(st.peak_used_blocks, 5);  // 0, 1, 2, 3 and the copy 4
  EXPECT_EQ(st.used_blocks, 0);
  EXPECT_EQ(st.cached_blocks, 2);
  EXPECT_EQ(st.free_blocks, 6);
  EXPECT_EQ(st.tokens_stored, 0);
  // Fill the pool with new content: all six free blocks, then both cached ones by eviction.
  EXPECT_EQ(bm.allocate(4, range(100, 132)), 0);
  st = bm.stats();
  EXPECT_EQ(st.evictions, 2);
  EXPECT_EQ(st.peak_used_blocks, 8);
  EXPECT_EQ(st.prefix_queries, 3 + 1);
  EXPECT_NO_THROW(bm.check_consistency());
}

TEST(BlockManager, ErrorsNameTheSequence) {
  EXPECT_THROW((void)BlockManager(0, 4), std::invalid_argument);
  EXPECT_THROW((void)BlockManager(4, 0), std::invalid_argument);
  BlockManager bm(4, 4, false, kLifo);
  auto message = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const std::out_of_range& e) {
      return e.what();
    }
    return "";
  };
  for (const std::string& m : {message([&] { bm.block_table(42); }), message([&] { bm.free(42); }),
                                message([&] { bm.append_slot(42, 0); }),
                                message([&] { bm.commit_tokens(42, Ids{}); }),
                                message([&] { bm.fork(42, 43); })})
    EXPECT_NE(m.find("42"), std::string::npos) << "message: " << m;
  ASSERT_EQ(bm.allocate(1, range(0, 3)), 0);
  EXPECT_THROW(bm.allocate(1, range(0, 3)), std::invalid_argument);
  EXPECT_THROW(bm.fork(1, 1), std::invalid_argument);
  EXPECT_THROW(bm.ref_count(4), std::out_of_range);
  EXPECT_EQ(bm.block_table(1), (Ids{0}));  // failed calls changed nothing
  EXPECT_EQ(bm.ref_count(0), 1);
  EXPECT_NO_THROW(bm.check_consistency());
}

// Random allocate / append / fork / free over a small pool with a model of what each block holds
// (as KvCache would): no write ever lands in a shared block, prefix hits and forks always see the
// right tokens, failed calls change nothing, and the invariants hold after every step.
class BlockManagerRandom : public ::testing::TestWithParam<std::tuple<bool, BlockPlacement>> {};

TEST_P(BlockManagerRandom, InvariantsHoldOverRandomOps) {
  constexpr int kBlocks = 24, kBs = 4, kMaxLen = 40;
  const auto [prefix, placement] = GetParam();
  BlockManager bm(kBlocks, kBs, prefix, placement);
  std::mt19937 rng(20240611);
  auto uni = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  std::vector<Ids> bases(3);
  for (auto& b : bases)
    for (int i = 0; i < kMaxLen; ++i) b.push_back(uni(0, 99));
  std::vector<Ids> content(kBlocks, Ids(kBs, -1));  // token held at each slot
  std::map<SeqId, Ids> toks;
  SeqId next_id = 0;
  int failed_allocs = 0, failed_appends = 0;

  auto write = [&](SeqId s, int pos, int32_t t) {
    const int b = bm.block_table(s)[pos / kBs];
    ASSERT_EQ(bm.ref_count(b), 1) << "write into shared block " << b;
    content[b][pos % kBs] = t;
  };
  auto pick = [&]() {
    auto it = toks.begin();
    std::advance(it, uni(0, int(toks.size()) - 1));
    return it->first;
  };

  for (int step = 0; step < 2000; ++step) {
    const int op = uni(0, 99);
    if (op < 30 || toks.empty()) {  // allocate a prompt that often shares a prefix with others
      Ids p;
      const Ids& base = bases[uni(0, 2)];
      p.assign(base.begin(), base.begin() + uni(1, 16));
      if (uni(0, 3) == 0) p[uni(0, int(p.size()) - 1)] = uni(100, 120);
      const SeqId s = next_id++;
      const int avail = bm.available_blocks();
      const BlockStats before = bm.stats();
      auto cached = bm.allocate(s, p);
      if (!cached) {
        ++failed_allocs;
        ASSERT_GT(bm.blocks_for(int(p.size())), avail);
        ASSERT_FALSE(bm.has(s));
        const BlockStats after = bm.stats();
        ASSERT_EQ(after.prefix_queries, before.prefix_queries);
        ASSERT_EQ(after.prefix_hits, before.prefix_hits);
        ASSERT_EQ(after.evictions, before.evictions);
        ASSERT_EQ(after.cached_blocks, before.cached_blocks);
        ASSERT_EQ(bm.available_blocks(), avail);
      } else {
        const int c = *cached;
        ASSERT_EQ(c % kBs, 0);
        ASSERT_LE(c, (int(p.size()) - 1) / kBs * kBs);
        if (!prefix) {
          ASSERT_EQ(c, 0);
        }
        ASSERT_EQ(int(bm.block_table(s).size()), bm.blocks_for(int(p.size())));
        for (int i = 0; i < c; ++i)
          ASSERT_EQ(content[bm.block_table(s)[i / kBs]][i % kBs], p[i]) << "bad prefix hit at " << i;
        for (int i = c; i < int(p.size()); ++i) write(s, i, p[i]);
        bm.commit_tokens(s, p);
        toks[s] = p;
      }
    } else if (op < 60) {  // decode one token
      const SeqId s = pick();
      Ids& t = toks[s];
      const int pos = int(t.size());
      if (pos >= kMaxLen) continue;
      const Ids table = bm.block_table(s);
      const bool needs = pos == int(table.size()) * kBs || bm.ref_count(table[pos / kBs]) > 1;
      const int avail = bm.available_blocks();
      auto r = bm.append_slot(s, pos);
      ASSERT_EQ(r.ok, !needs || avail > 0);
      if (!r.ok) {
        ++failed_appends;
        ASSERT_EQ(bm.block_table(s), table);
        continue;
      }
      if (r.copy) {
        ASSERT_EQ(r.copy->src, table[pos / kBs]);
        ASSERT_EQ(r.copy->dst, bm.block_table(s)[pos / kBs]);
        content[r.copy->dst] = content[r.copy->src];
      }
      t.push_back(uni(0, 120));
      write(s, pos, t.back());
      bm.commit_tokens(s, t);
    } else if (op < 72) {  // fork
      const SeqId parent = pick(), child = next_id++;
      bm.fork(parent, child);
      ASSERT_EQ(bm.block_table(child), bm.block_table(parent));
      toks[child] = toks[parent];
    } else {
      const SeqId s = pick();
      bm.free(s);
      toks.erase(s);
    }

    ASSERT_FALSE(HasFatalFailure()) << "step " << step;
    ASSERT_NO_THROW(bm.check_consistency()) << "step " << step;
    int64_t refs = 0, entries = 0, tokens = 0;
    int used = 0;
    for (int b = 0; b < kBlocks; ++b) refs += bm.ref_count(b), used += bm.ref_count(b) > 0;
    for (const auto& [s, t] : toks) {
      const Ids& table = bm.block_table(s);
      entries += int64_t(table.size());
      tokens += int64_t(t.size());
      ASSERT_EQ(int(table.size()), bm.blocks_for(int(t.size())));
      for (int i = 0; i < int(t.size()); ++i)
        ASSERT_EQ(content[table[i / kBs]][i % kBs], t[i]) << "step " << step << " seq " << s << " pos " << i;
    }
    const BlockStats st = bm.stats();
    ASSERT_EQ(refs, entries) << "step " << step;
    ASSERT_EQ(st.used_blocks, used);
    ASSERT_EQ(st.used_blocks + st.free_blocks + st.cached_blocks, kBlocks);
    ASSERT_EQ(bm.available_blocks(), st.free_blocks + st.cached_blocks);
    ASSERT_EQ(st.tokens_stored, tokens);
    if (!prefix) {
      ASSERT_EQ(st.cached_blocks, 0);
    }
  }
  // The run must have exercised the interesting paths.
  const BlockStats st = bm.stats();
  EXPECT_GT(st.cow_copies, 0);
  EXPECT_GT(failed_allocs, 0);
  EXPECT_GT(failed_appends, 0);
  if (prefix) {
    EXPECT_GT(st.prefix_hits, 0);
    EXPECT_GT(st.evictions, 0);
  }
  std::printf("prefix=%d hits=%lld queries=%lld cow=%lld evictions=%lld failed allocs=%d appends=%d "
              "peak=%d\n",
              int(prefix), (long long)st.prefix_hits, (long long)st.prefix_queries, (long long)st.cow_copies,
              (long long)st.evictions, failed_allocs, failed_appends, st.peak_used_blocks);
}

INSTANTIATE_TEST_SUITE_P(BlockManager, BlockManagerRandom,
                         ::testing::Combine(::testing::Bool(), ::testing::Values(BlockPlacement::Runs, BlockPlacement::Lifo)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param) ? "PrefixCacheOn" : "PrefixCacheOff") +
                                  (std::get<1>(info.param) == BlockPlacement::Runs ? "Runs" : "Lifo");
                         });
