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
  std::vector<int32_t> tokens;  // with the prefix cache: every token so far (committed each step)
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
  trace_require(!o.prefix_cache || (o.shared_prefixes >= 1 && o.shared_prefix_tokens >= 1),
                "shared_prefixes and shared_prefix_tokens must be >= 1 with the prefix cache");

  const auto blocks = [&](int64_t tokens) { return int((tokens + o.block_size - 1) / o.block_size); };
  const int short_blocks_max = blocks(int64_t(o.short_prompt_max) + o.short_output_max);
  // Sized for the load admitted beside the long sequences, short requests at their longest.
  const int64_t pool = int64_t(o.long_sequences) * blocks(o.long_context) + int64_t(o.short_concurrency) * short_blocks_max;
  trace_require(pool <= (int64_t(1) << 30), "the pool those options need is too large");
  BlockManager bm(int(pool), o.block_size, o.prefix_cache, o.placement);

  std::mt19937 rng(o.seed);
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  auto token = [&]() { return int32_t(uniform(3, 31999)); };
  std::vector<std::vector<int32_t>> prefixes(size_t(o.prefix_cache ? o.shared_prefixes : 0));
  for (auto& p : prefixes)
    for (int i = 0; i < o.shared_prefix_tokens; ++i) p.push_back(token());
  std::map<SeqId, TraceSeq> seqs;
  SeqId next_id = 0;
  PlacementTrace out;
  out.pool_blocks = int(pool);

  // Without the prefix cache the tokens are never read (all 0); with it, a short prompt is a shared
  // prefix (cut to the prompt) and its own tokens, a long one all its own.
  auto admit = [&](int prompt, int end, bool is_long) {
    std::vector<int32_t> tokens;
    if (o.prefix_cache) {
      if (!is_long) {
        const auto& p = prefixes[size_t(uniform(0, o.shared_prefixes - 1))];
        tokens.assign(p.begin(), p.begin() + std::min<ptrdiff_t>(ptrdiff_t(p.size()), prompt - 1));
      }
      while (int(tokens.size()) < prompt) tokens.push_back(token());
    } else {
      tokens.assign(size_t(prompt), 0);
    }
    if (!bm.allocate(next_id, tokens)) return false;
    if (o.prefix_cache) bm.commit_tokens(next_id, tokens);
    seqs[next_id++] = {prompt, end, is_long, o.prefix_cache ? std::move(tokens) : std::vector<int32_t>()};
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
      if (bm.append_slot(it->first, s.length).ok) {  // else waits for a free block
        ++s.length;
        if (o.prefix_cache) {
          s.tokens.push_back(token());
          bm.commit_tokens(it->first, s.tokens);
        }
      }
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
  const BlockStats st = bm.stats();
  out.prefix_hits = st.prefix_hits;
  out.prefix_queries = st.prefix_queries;
  out.evictions = st.evictions;
  bm.check_consistency();
  return out;
}

}  // namespace cb::engine
