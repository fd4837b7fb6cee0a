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

// The prefix-cache trace: the pool fills with cached blocks and runs on evictions (LRU order),
// and the shared system prompts are reused; where the long sequences' blocks land is what the
// kernels suite records (kernels.attention.engine_placement.prefix_cache.mean_run_blocks).
TEST(PlacementTrace, WithThePrefixCacheThePoolRunsOnEvictionsAndSharesThePrefixes) {
  cb::engine::PlacementTraceOptions o;
  o.prefix_cache = true;
  const auto t = cb::engine::run_placement_trace(o);
  ASSERT_EQ(t.tables.size(), 8u);
  for (const auto& tab : t.tables) EXPECT_EQ(tab.size(), 256u);
  EXPECT_GT(t.evictions, 1000);  // measured at this change: 9380
  // Every short prompt looks up its full blocks; the 16 blocks of its shared prefix hit.
  EXPECT_GT(t.prefix_hits, 1000);
  EXPECT_GT(t.prefix_queries, t.prefix_hits);
  EXPECT_EQ(cb::engine::run_placement_trace(o).tables, t.tables);  // seeded
  const auto off = cb::engine::run_placement_trace({});
  EXPECT_EQ(off.prefix_hits, 0);
  EXPECT_EQ(off.evictions, 0);
  o.shared_prefixes = 0;
  EXPECT_THROW(cb::engine::run_placement_trace(o), std::invalid_argument);
}
