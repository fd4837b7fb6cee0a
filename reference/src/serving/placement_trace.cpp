// run_placement_trace: the seeded churn trace of placement_trace.h through a BlockManager.
#include "cb/engine/serving/placement_trace.h"

#include <algorithm>
#include <map>
#include <random>
#include <stdexcept>
#include <string>

#include "cb/engine/serving/block_manager.h"

namespace cb::engine {

namespace {

void trace_require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument("placement trace: " + what);
}

struct TraceSeq {
  int length = 0, end = 0;
  bool is_long = false;
};

}  // namespace

PlacementTrace run_placement_trace(const PlacementTraceOptions& o) {
  trace_require(o.block_size >= 1, "block_size must be >= 1");
  trace_require(o.long_sequences >= 1, "long_sequences must be >= 1");
  trace_require(o.long_prompt >= 1 && o.long_prompt <= o.long_context, "long_prompt must be in [1, long_context]");
  trace_require(o.short_concurrency >= 0, "short_concurrency must be >= 0");
  trace_require(o.short_prompt_min >= 1 && o.short_prompt_min <= o.short_prompt_max, "short prompt range is empty");
  trace_require(o.short_output_min >= 1 && o.short_output_min <= o.short_output_max, "short output range is empty");
  trace_require(o.warm_steps >= 0, "warm_steps must be >= 0");

  const auto blocks = [&](int64_t tokens) { return int((tokens + o.block_size - 1) / o.block_size); };
  const int short_blocks_max = blocks(int64_t(o.short_prompt_max) + o.short_output_max);
  // Sized for the load admitted beside the long sequences, short requests at their longest.
  const int64_t pool = int64_t(o.long_sequences) * blocks(o.long_context) + int64_t(o.short_concurrency) * short_blocks_max;
  trace_require(pool <= (int64_t(1) << 30), "the pool those options need is too large");
  BlockManager bm(int(pool), o.block_size, false, o.placement);

  std::mt19937 rng(o.seed);
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  std::map<SeqId, TraceSeq> seqs;
  SeqId next_id = 0;
  PlacementTrace out;
  out.pool_blocks = int(pool);

  auto admit = [&](int prompt, int end, bool is_long) {
    const std::vector<int32_t> tokens(size_t(prompt), 0);
    if (!bm.allocate(next_id, tokens)) return false;
    seqs[next_id++] = {prompt, end, is_long};
    return true;
  };
  auto admit_shorts = [&](int running_target) {
    int running = 0;
    for (const auto& [id, s] : seqs) running += !s.is_long;
    for (; running < running_target; ++running) {
      const int prompt = uniform(o.short_prompt_min, o.short_prompt_max);
      const int output = uniform(o.short_output_min, o.short_output_max);
      if (!admit(prompt, prompt + output, false)) return;
      ++out.short_requests;
    }
  };
  // One decode token for every sequence short of its end; finished short requests leave.
  auto step = [&]() {
    for (auto it = seqs.begin(); it != seqs.end();) {
      TraceSeq& s = it->second;
      if (s.length >= s.end) {
        if (s.is_long) {
          ++it;
          continue;
        }
        bm.free(it->first);
        it = seqs.erase(it);
        continue;
      }
      if (bm.append_slot(it->first, s.length).ok) ++s.length;  // else waits for a free block
      ++it;
    }
    ++out.steps;
  };

  for (int i = 0; i < o.warm_steps; ++i) {
    admit_shorts(o.short_concurrency + o.long_sequences);
    step();
  }
  std::vector<SeqId> longs;
  const int64_t step_limit = out.steps + 64 * (int64_t(o.long_context) + o.short_output_max + o.warm_steps + 1);
  while (true) {
    while (int(longs.size()) < o.long_sequences && admit(o.long_prompt, o.long_context, true))
      longs.push_back(next_id - 1);
    bool done = int(longs.size()) == o.long_sequences;
    for (SeqId id : longs) done = done && seqs[id].length >= o.long_context;
    if (done) break;
    if (out.steps > step_limit) throw std::logic_error("placement trace: the long sequences never reached their context");
    admit_shorts(o.short_concurrency);
    step();
  }

  int64_t runs = 0, total = 0;
  for (SeqId id : longs) {
    const std::vector<int32_t>& t = bm.block_table(id);
    out.tables.push_back(t);
    total += int64_t(t.size());
    runs += t.empty() ? 0 : 1;
    for (size_t i = 1; i < t.size(); ++i) runs += t[i] != t[i - 1] + 1;
  }
  out.mean_run_blocks = runs > 0 ? double(total) / double(runs) : 0;
  out.jumps_per_sequence = double(runs - int64_t(longs.size())) / double(longs.size());
  bm.check_consistency();
  return out;
}

}  // namespace cb::engine
