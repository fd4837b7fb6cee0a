// FreeBlocks (where the next KV block comes from) and the placement trace: runs grow in place,
// new runs split the largest free extent, placement never refuses a free block, extents merge on
// put; a seeded random walk against a std::set model; the BlockManager keeps interleaved decoding
// sequences in their own runs; the churn trace gives long runs under the run placement and
// scattered blocks under LIFO, the same tables for the same seed.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "cb/engine/serving/block_manager.h"
#include "cb/engine/serving/free_blocks.h"
#include "cb/engine/serving/placement_trace.h"

using cb::engine::BlockManager;
using cb::engine::BlockPlacement;
using cb::engine::FreeBlocks;
using Ids = std::vector<int32_t>;

namespace {

std::string logic_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::logic_error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(FreeBlocks, RunsGrowInPlaceAndNewRunsSplitTheLargestExtent) {
  FreeBlocks f(16, BlockPlacement::Runs);
  EXPECT_EQ(f.size(), 16);
  EXPECT_EQ(f.take(-1, 2), 0);  // nothing before block 0: the run starts there
  EXPECT_EQ(f.take(0), 1);
  // A second sequence: the largest extent is [2, 16); it starts mid-way, leaving the first
  // sequence (14 - 1) / 2 = 6 blocks to grow into.
  EXPECT_EQ(f.take(-1, 1), 8);
  EXPECT_EQ(f.take(1), 2);
  EXPECT_EQ(f.take(8), 9);
  // A run of 4 about to be taken: centred in the largest extent [10, 16) -> 10 + (6 - 4) / 2.
  EXPECT_EQ(f.take(-1, 4), 11);
  EXPECT_EQ(f.size(), 10);
  EXPECT_EQ(f.list(), (std::vector<int>{3, 4, 5, 6, 7, 10, 12, 13, 14, 15}));
  EXPECT_NO_THROW(f.check());
  // Neighbour taken (block 9 is used, so after 8 the next free is not 9): a new run, in the
  // largest extent [3, 8).
  EXPECT_EQ(f.take(8), 3 + (5 - 1) / 2);
  EXPECT_NO_THROW(f.check());
}

TEST(FreeBlocks, NeverRefusesAFreeBlockAndMergesOnPut) {
  FreeBlocks f(8, BlockPlacement::Runs);
  for (int i = 0; i < 8; ++i) f.take(i - 1);
  EXPECT_TRUE(f.empty());
  f.put(6);
  f.put(3);
  // Only single free blocks: the lowest id of the largest (all length 1), whatever the hint.
  EXPECT_EQ(f.take(0, 4), 3);
  EXPECT_EQ(f.take(-1), 6);
  for (int b : {2, 4, 3, 7, 5}) f.put(b);  // merges into [2, 6) and then [2, 8)
  EXPECT_EQ(f.list(), (std::vector<int>{2, 3, 4, 5, 7}));
  f.put(6);
  EXPECT_EQ(f.list(), (std::vector<int>{2, 3, 4, 5, 6, 7}));
  EXPECT_NO_THROW(f.check());
  EXPECT_NE(logic_error_of([&] { f.put(4); }).find("free block 4"), std::string::npos);
  EXPECT_NE(logic_error_of([&] { f.put(8); }).find("block 8 outside"), std::string::npos);
  FreeBlocks none(1, BlockPlacement::Runs);
  none.take(-1);
  EXPECT_NE(logic_error_of([&] { none.take(-1); }).find("empty"), std::string::npos);
}

TEST(FreeBlocks, LifoHandsOutTheMostRecentlyFreedFirst) {
  FreeBlocks f(4, BlockPlacement::Lifo);
  EXPECT_EQ(f.take(-1), 0);
  EXPECT_EQ(f.take(0), 1);
  EXPECT_EQ(f.take(1), 2);
  f.put(0);
  f.put(1);
  EXPECT_EQ(f.take(2), 1);  // the hint is ignored
  EXPECT_EQ(f.list(), (std::vector<int>{0, 3}));
  EXPECT_NO_THROW(f.check());
}

TEST(FreeBlocks, PlacementNamesParseAndBadOnesAreNamed) {
  EXPECT_EQ(cb::engine::parse_block_placement("runs"), BlockPlacement::Runs);
  EXPECT_EQ(cb::engine::parse_block_placement("lifo"), BlockPlacement::Lifo);
  EXPECT_EQ(cb::engine::block_placement_name(BlockPlacement::Runs), "runs");
  try {
    cb::engine::parse_block_placement("random");
    FAIL() << "no throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'random'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(FreeBlocks(0, BlockPlacement::Runs), std::invalid_argument);
}

// Random takes (with random hints) and puts against a std::set of the free ids.
TEST(FreeBlocks, RandomWalkMatchesASetModel) {
  for (BlockPlacement p : {BlockPlacement::Runs, BlockPlacement::Lifo}) {
    constexpr int kBlocks = 97;
    FreeBlocks f(kBlocks, p);
    std::set<int> model;
    for (int b = 0; b < kBlocks; ++b) model.insert(b);
    std::mt19937 rng(20261207);
    std::vector<int> used;
    for (int step = 0; step < 5000; ++step) {
      const bool take = !model.empty() && (used.empty() || rng() % 100 < 55);
      if (take) {
        const int after = used.empty() || rng() % 4 == 0 ? -1 : used[rng() % used.size()];
        const bool neighbour_free = after >= 0 && model.count(after + 1) != 0;
        const int b = f.take(after, 1 + int(rng() % 8));
        ASSERT_EQ(model.erase(b), 1u) << "took block " << b << " that was not free, step " << step;
        if (p == BlockPlacement::Runs && neighbour_free) {
          ASSERT_EQ(b, after + 1) << "step " << step;
        }
        used.push_back(b);
      } else {
        const size_t i = rng() % used.size();
        f.put(used[i]);
        model.insert(used[i]);
        used.erase(used.begin() + long(i));
      }
      ASSERT_EQ(f.size(), int(model.size())) << "step " << step;
      ASSERT_NO_THROW(f.check()) << "step " << step;
      if (step % 50 == 0) {
        ASSERT_EQ(f.list(), std::vector<int>(model.begin(), model.end())) << "step " << step;
      }
    }
  }
}

TEST(BlockManagerPlacement, InterleavedDecodesKeepTheirOwnRuns) {
  BlockManager bm(64, 4);  // the default placement
  EXPECT_EQ(bm.placement(), BlockPlacement::Runs);
  ASSERT_TRUE(bm.allocate(1, Ids(8, 0)));
  ASSERT_TRUE(bm.allocate(2, Ids(8, 0)));
  EXPECT_EQ(bm.block_table(1), (Ids{0, 1}));
  EXPECT_EQ(bm.block_table(2), (Ids{32, 33}));  // 2 + (62 - 2) / 2: mid-way in [2, 64)
  for (int pos = 8; pos < 40; ++pos)  // one token each per step, as a decode batch runs
    for (cb::engine::SeqId s : {1, 2}) ASSERT_TRUE(bm.append_slot(s, pos).ok);
  Ids a, b;
  for (int i = 0; i < 10; ++i) a.push_back(i), b.push_back(32 + i);
  EXPECT_EQ(bm.block_table(1), a);
  EXPECT_EQ(bm.block_table(2), b);
  // The same steps on a LIFO free list interleave the two sequences block by block.
  BlockManager lifo(64, 4, false, BlockPlacement::Lifo);
  ASSERT_TRUE(lifo.allocate(1, Ids(8, 0)));
  ASSERT_TRUE(lifo.allocate(2, Ids(8, 0)));
  for (int pos = 8; pos < 40; ++pos)
    for (cb::engine::SeqId s : {1, 2}) ASSERT_TRUE(lifo.append_slot(s, pos).ok);
  EXPECT_EQ(lifo.block_table(1), (Ids{0, 1, 4, 6, 8, 10, 12, 14, 16, 18}));
  EXPECT_NO_THROW(bm.check_consistency());
  EXPECT_NO_THROW(lifo.check_consistency());
}

TEST(PlacementTrace, RunsKeepLongSequencesInLongRunsWhereLifoScattersThem) {
  cb::engine::PlacementTraceOptions o;  // 8 sequences to 4K beside 8 short requests, 16-token blocks
  const auto runs = cb::engine::run_placement_trace(o);
  o.placement = BlockPlacement::Lifo;
  const auto lifo = cb::engine::run_placement_trace(o);
  ASSERT_EQ(runs.tables.size(), 8u);
  for (const auto& t : runs.tables) EXPECT_EQ(t.size(), 256u);
  EXPECT_GT(runs.short_requests, 100);  // churn happened
  EXPECT_EQ(runs.pool_blocks, 8 * 256 + 8 * 96);
  // Measured at this change: runs 128 blocks (one jump a sequence), LIFO 1.0.
  EXPECT_GE(runs.mean_run_blocks, 32.0);
  EXPECT_LT(lifo.mean_run_blocks, 2.0);
  EXPECT_EQ(cb::engine::run_placement_trace({}).tables, runs.tables);  // seeded: the same tables
  o.seed = 2;
  EXPECT_NE(cb::engine::run_placement_trace(o).tables, lifo.tables);
  cb::engine::PlacementTraceOptions bad;
  bad.long_prompt = 5000;
  try {
    cb::engine::run_placement_trace(bad);
    FAIL() << "no throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("long_prompt"), std::string::npos) << e.what();
  }
}

// Under Runs with the prefix cache, cached blocks are placed like free ones: a prefix hit takes its
// block back, and a sequence that needs room evicts cached blocks where its run goes.
TEST(BlockManagerPlacement, CachedBlocksArePlacedWithTheFreeOnesAndEvictedWhereARunNeedsThem) {
  BlockManager bm(8, 2, true, BlockPlacement::Runs);
  const Ids a{1, 2, 3, 4};
  ASSERT_TRUE(bm.allocate(1, a));
  bm.commit_tokens(1, a);
  EXPECT_EQ(bm.block_table(1), (Ids{0, 1}));
  bm.free(1);
  auto st = bm.stats();
  EXPECT_EQ(st.free_blocks, 6);
  EXPECT_EQ(st.cached_blocks, 2);
  EXPECT_EQ(bm.available_blocks(), 8);
  // The same prompt and one token more: both cached blocks hit, the third grows their run.
  EXPECT_EQ(bm.allocate(2, Ids{1, 2, 3, 4, 5}), 4);
  EXPECT_EQ(bm.block_table(2), (Ids{0, 1, 2}));
  EXPECT_EQ(bm.stats().cached_blocks, 0);
  EXPECT_EQ(bm.available_blocks(), 5);
  bm.check_consistency();
  bm.free(2);  // blocks 0 and 1 cached again, 2 (never committed) free
  // A new 8-block sequence: one run over the whole pool, evicting the two cached blocks in it.
  Ids fresh;
  for (int i = 0; i < 16; ++i) fresh.push_back(100 + i);
  EXPECT_EQ(bm.allocate(3, fresh), 0);
  EXPECT_EQ(bm.block_table(3), (Ids{0, 1, 2, 3, 4, 5, 6, 7}));
  st = bm.stats();
  EXPECT_EQ(st.evictions, 2);
  EXPECT_EQ(st.cached_blocks, 0);
  EXPECT_EQ(st.free_blocks, 0);
  bm.check_consistency();
  // The prefix of sequence 1 is gone with them.
  bm.free(3);
  EXPECT_EQ(bm.allocate(4, Ids{1, 2, 3, 4, 5}), 0);
}

// The prefix-cache trace: the pool fills with cached blocks and new ones come by eviction. Under
// Runs placement the cached blocks are placed like free ones (evicted where a run needs them), so
// the long sequences keep their runs; in LRU order (what Lifo placement keeps) they scatter. The
// shared system prompts are reused about as often either way.
TEST(PlacementTrace, WithThePrefixCacheRunsSurviveEvictionAndThePrefixesStillHit) {
  cb::engine::PlacementTraceOptions o;
  o.prefix_cache = true;
  const auto runs = cb::engine::run_placement_trace(o);
  o.placement = BlockPlacement::Lifo;
  const auto lru = cb::engine::run_placement_trace(o);
  for (const auto* t : {&runs, &lru}) {
    ASSERT_EQ(t->tables.size(), 8u);
    for (const auto& tab : t->tables) EXPECT_EQ(tab.size(), 256u);
    EXPECT_GT(t->evictions, 1000);  // the pool ran on evicted blocks (9507 / 9380 at this change)
    EXPECT_GT(t->prefix_hits, 1000);
    EXPECT_GT(t->prefix_queries, t->prefix_hits);
  }
  // Measured at this change: runs of 97.5 blocks against 1.05 in LRU order (what Runs placement
  // gave before cached blocks were placed), prefix hits 4078 / 4312 against 4144 / 4377.
  EXPECT_GE(runs.mean_run_blocks, 32.0);
  EXPECT_LT(lru.mean_run_blocks, 2.0);
  const double hit_rate = double(runs.prefix_hits) / double(runs.prefix_queries);
  const double lru_hit_rate = double(lru.prefix_hits) / double(lru.prefix_queries);
  EXPECT_GT(hit_rate, lru_hit_rate - 0.02);
  cb::engine::PlacementTraceOptions seeded;
  seeded.prefix_cache = true;
  EXPECT_EQ(cb::engine::run_placement_trace(seeded).tables, runs.tables);
  const auto off = cb::engine::run_placement_trace({});
  EXPECT_EQ(off.prefix_hits, 0);
  EXPECT_EQ(off.evictions, 0);
  seeded.shared_prefixes = 0;
  EXPECT_THROW(cb::engine::run_placement_trace(seeded), std::invalid_argument);
}
