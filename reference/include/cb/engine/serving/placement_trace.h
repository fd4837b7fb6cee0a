// A seeded serving trace run through the engine's BlockManager alone (no model): where the blocks
// of long sequences land in the pool after churn. Paged attention's speed on a CPU depends on it
// (free_blocks.h), so the paired paged-vs-contiguous benchmark reads the tables this produces as
// well as fully shuffled ones.
//
// The trace: a pool sized for the load it admits (the long sequences at full context plus the
// short requests at their longest), first `warm_steps` steps of short requests only (as many as
// there will be long and short sequences together) to fragment it, then the long sequences arrive
// with `long_prompt`-token prompts and decode one token a step to `long_context` while short
// requests keep arriving and finishing beside them. Every sequence decodes one token per step.
// With `prefix_cache`, the allocator caches full blocks as the serving engine does (tokens
// committed every step; finished requests' blocks stay cached until evicted) and each short prompt
// starts with one of `shared_prefixes` seeded system prompts, so the pool fills with cached blocks
// and new blocks come by eviction (under Runs, placed with the free ones; under Lifo, LRU order).
#pragma once

#include <cstdint>
#include <vector>

#include "cb/engine/serving/free_blocks.h"

namespace cb::engine {

struct PlacementTraceOptions {
  int block_size = 16;
  int long_sequences = 8;
  int long_prompt = 512;
  int long_context = 4096;  // tokens each long sequence holds at the end
  int short_concurrency = 8;
  int short_prompt_min = 64, short_prompt_max = 1024;
  int short_output_min = 16, short_output_max = 512;
  int warm_steps = 3000;
  uint32_t seed = 1;
  BlockPlacement placement = BlockPlacement::Runs;
  bool prefix_cache = false;
  int shared_prefixes = 4, shared_prefix_tokens = 256;
};

struct PlacementTrace {
  int pool_blocks = 0;
  std::vector<std::vector<int32_t>> tables;  // the long sequences' block tables at the end
  // Runs of adjacent ids in those tables: mean length in blocks, and breaks (a jump to a block
  // that is not the next id) per sequence.
  double mean_run_blocks = 0;
  double jumps_per_sequence = 0;
  int64_t steps = 0;
  int64_t short_requests = 0;  // admitted over the whole trace
  // The allocator's counters at the end (prefix cache: blocks reused, looked up, evicted).
  int64_t prefix_hits = 0, prefix_queries = 0, evictions = 0;
};

// Throws std::invalid_argument naming the option out of range.
PlacementTrace run_placement_trace(const PlacementTraceOptions& opt);

}  // namespace cb::engine
