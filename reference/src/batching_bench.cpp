#include "cb/engine/batching_bench.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <random>

#include "cb/engine/serving_engine.h"

namespace cb::engine {
using nlohmann::json;

namespace {

double now_s() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

double percentile(std::vector<double> v, double p) {  // nearest rank
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const size_t rank = size_t(std::ceil(p / 100.0 * v.size()));
  return v[std::min(v.size(), std::max<size_t>(rank, 1)) - 1];
}

struct MixRequest {
  std::vector<int32_t> prompt;
  int max_tokens;
};

std::vector<MixRequest> make_mix(uint64_t seed, int n, int pmin, int pmax, int omin, int omax, int bos) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> plen(pmin, pmax), olen(omin, omax), byte(0, 255);
  std::vector<MixRequest> mix;
  for (int i = 0; i < n; ++i) {
    MixRequest r;
    r.prompt.push_back(bos);
    const int len = plen(rng);
    for (int t = 1; t < len; ++t) r.prompt.push_back(byte(rng));
    r.max_tokens = olen(rng);
    mix.push_back(std::move(r));
  }
  return mix;
}

struct MixResult {
  json summary;
  std::vector<std::vector<int32_t>> outputs;
  EngineStats stats;
};

// Submits the whole mix at t=0 (offline) and runs the engine dry.
MixResult run_mix(LoadedModel& m, const std::vector<MixRequest>& mix, EngineOptions opt, const std::string& label,
                  const BatchingBenchOptions& bo) {
  ServingEngine eng(m, std::move(opt));
  const size_t n = mix.size();
  std::vector<double> first(n, -1), done(n, -1);
  MixResult res;
  res.outputs.resize(n);
  const double t0 = now_s();
  for (size_t i = 0; i < n; ++i) {
    RequestParams p;
    p.prompt = mix[i].prompt;
    p.max_tokens = mix[i].max_tokens;
    p.stop_at_eos = false;  // fixed output lengths: every policy does the same work
    eng.add_request(p, [&, i](const TokenEvent& e) {
      const double t = now_s() - t0;
      if (e.finished) {
        done[i] = t;
      } else {
        if (first[i] < 0) first[i] = t;
        res.outputs[i].push_back(e.token);
      }
    });
  }
  eng.run_until_idle();
  const double wall = now_s() - t0;
  const EngineStats st = eng.stats();
  std::vector<double> ttft, e2e, tpot;
  int64_t out_tokens = 0, errors = 0;
  for (size_t i = 0; i < n; ++i) {
    out_tokens += int64_t(res.outputs[i].size());
    if (int(res.outputs[i].size()) != mix[i].max_tokens) ++errors;
    ttft.push_back(first[i] * 1e3);
    e2e.push_back(done[i] * 1e3);
    if (res.outputs[i].size() > 1) tpot.push_back((done[i] - first[i]) * 1e3 / double(res.outputs[i].size() - 1));
  }
  const ModelConfig& cfg = m.config();
  const double flops = double(cfg.matmul_flops_per_token()) * double(st.prefill_tokens + st.decode_tokens);
  const double bytes = double(m.weight_bytes()) * double(st.steps) + double(st.kv_tokens_read) * 2.0 * cfg.num_hidden_layers * cfg.kv_dim() * 4.0;
  double mean_batch = 0;
  for (int b : st.step_batch) mean_batch += b;
  mean_batch = st.step_batch.empty() ? 0 : mean_batch / double(st.step_batch.size());
  res.summary = {{"policy", label},
                 {"requests", n},
                 {"errors", errors},
                 {"wall_s", wall},
                 {"output_tokens", out_tokens},
                 {"output_tokens_per_s", out_tokens / wall},
                 {"requests_per_s", double(n) / wall},
                 {"ttft_ms_p50", percentile(ttft, 50)},
                 {"ttft_ms_p99", percentile(ttft, 99)},
                 {"e2e_ms_p50", percentile(e2e, 50)},
                 {"e2e_ms_p99", percentile(e2e, 99)},
                 {"tpot_ms_p50", percentile(tpot, 50)},
                 {"steps", st.steps},
                 {"mean_batch", mean_batch},
                 {"max_batch", st.step_batch.empty() ? 0 : *std::max_element(st.step_batch.begin(), st.step_batch.end())},
                 {"preemptions", st.preemptions},
                 {"busy_fraction", st.busy_seconds / wall},
                 {"kv_bytes_reserved_peak", st.kv_bytes_reserved_peak},
                 {"kv_bytes_used_peak", st.kv_bytes_used_peak}};
  // MFU counts matmul FLOPs only (attention is small at these lengths); MBU counts weights once
  // per step plus the KV cache each sequence attends over.
  if (bo.peak_gflops > 0) res.summary["mfu"] = flops / wall / (bo.peak_gflops * 1e9);
  if (bo.peak_gbs > 0) res.summary["mbu"] = bytes / wall / (bo.peak_gbs * 1e9);
  res.stats = st;
  return res;
}

int pool_blocks_for(const std::vector<MixRequest>& mix, int bs, int reserve_each) {
  int64_t blocks = 0;
  for (const auto& r : mix)
    blocks += reserve_each > 0 ? (reserve_each + bs - 1) / bs : (int64_t(r.prompt.size()) + r.max_tokens + bs - 1) / bs;
  return int(std::max<int64_t>(blocks + 4, 16));
}

}  // namespace

json run_batching_bench(const BatchingBenchOptions& bo, const std::function<void(const std::string&)>& progress) {
  auto say = [&](const std::string& s) { if (progress) progress(s); };
  auto m = LoadedModel::open(bo.model_dir, bo.backend);
  const ModelConfig& cfg = m->config();
  const int bs = 16;
  json out;
  out["model"] = bo.model_dir.filename().string();
  out["params"] = {{"seed", bo.seed}, {"requests", bo.requests}, {"long_requests", bo.long_requests},
                   {"long_max_tokens", bo.long_max_tokens}, {"quick", bo.quick}, {"block_size", bs}};

  // 1. Policies on one chat mix, all requests at t=0 (offline throughput and latency).
  const int n = bo.quick ? std::min(bo.requests, 24) : bo.requests;
  const auto chat = make_mix(bo.seed, n, 8, bo.quick ? 64 : 192, 4, bo.quick ? 24 : 64, cfg.bos_token_id);
  json policies = json::array();
  std::vector<std::vector<int32_t>> reference;
  bool identical = true;
  for (const std::string pol : {"static", "continuous", "queue-table", "slo"}) {
    say("batching: policy " + pol + " on " + std::to_string(n) + " requests");
    EngineOptions o;
    o.num_blocks = pool_blocks_for(chat, bs, 0);
    o.block_size = bs;
    o.token_budget = 512;
    if (pol == "continuous") o.custom_policy = make_queue_table_policy({{INT_MAX, 256}});  // no cap below the budget
    else o.policy = pol;
    auto r = run_mix(*m, chat, std::move(o), pol, bo);
    if (reference.empty()) reference = r.outputs;
    identical = identical && r.outputs == reference;
    policies.push_back(r.summary);
  }
  out["policies"] = policies;
  out["policies_outputs_identical"] = identical;  // greedy: batching must not change a token

  // 2. KV reservation: paged vs contiguous max-context reservation on a long-context mix.
  const int long_max = std::min(bo.quick ? 4096 : bo.long_max_tokens, cfg.max_position_embeddings);
  const int nl = bo.quick ? std::min(bo.long_requests, 4) : bo.long_requests;
  const auto longmix = make_mix(bo.seed + 1, nl, 64, long_max / 2, 16, std::min(256, long_max / 4), cfg.bos_token_id);
  say("kv: paged vs contiguous on " + std::to_string(nl) + " long-context requests (up to " + std::to_string(long_max) + " tokens)");
  EngineOptions paged;
  paged.num_blocks = pool_blocks_for(longmix, bs, long_max);  // same pool for both: contiguous must fit
  paged.block_size = bs;
  paged.custom_policy = make_queue_table_policy({{INT_MAX, 256}});
  const int pool_blocks = paged.num_blocks;
  EngineOptions contig;
  contig.num_blocks = pool_blocks;
  contig.block_size = bs;
  contig.kv_mode = KvMode::Contiguous;
  contig.contiguous_reserve = long_max;
  contig.custom_policy = make_queue_table_policy({{INT_MAX, 256}});
  auto rp = run_mix(*m, longmix, std::move(paged), "paged", bo);
  auto rc = run_mix(*m, longmix, std::move(contig), "contiguous", bo);
  const double bytes_per_token = 2.0 * cfg.num_hidden_layers * cfg.kv_dim() * sizeof(float);
  out["kv"] = {{"requests", nl},
               {"max_tokens_per_request", long_max},
               {"bytes_per_token", bytes_per_token},
               {"pool_bytes_allocated", double(pool_blocks) * bs * bytes_per_token},  // the KvCache's real allocation
               {"paged_reserved_peak", rp.stats.kv_bytes_reserved_peak},
               {"paged_used_peak", rp.stats.kv_bytes_used_peak},
               {"contiguous_reserved_peak", rc.stats.kv_bytes_reserved_peak},
               {"contiguous_used_peak", rc.stats.kv_bytes_used_peak},
               {"reduction", 1.0 - double(rp.stats.kv_bytes_reserved_peak) / double(rc.stats.kv_bytes_reserved_peak)},
               {"paged_waste_fraction", 1.0 - double(rp.stats.kv_bytes_used_peak) / double(rp.stats.kv_bytes_reserved_peak)},
               {"contiguous_waste_fraction", 1.0 - double(rc.stats.kv_bytes_used_peak) / double(rc.stats.kv_bytes_reserved_peak)},
               {"outputs_identical", rp.outputs == rc.outputs},
               {"paged", rp.summary},
               {"contiguous", rc.summary}};

  // 3. Batch-size policy on a scripted queue (the article: queue < 10 -> 4, queue > 50 -> 32).
  auto qt = make_queue_table_policy();
  json script = json::array();
  int checked = 0, matched = 0;
  for (int q : {0, 1, 5, 9, 10, 11, 30, 50, 51, 60, 200}) {
    SchedulerView v;
    v.queued = q;
    const int got = qt->max_batch(v);
    const int article = q < 10 ? 4 : q > 50 ? 32 : 0;  // the article says nothing in between
    if (article) {
      ++checked;
      matched += got == article;
    }
    script.push_back({{"queue", q}, {"batch", got}, {"article", article ? json(article) : json()}});
  }
  out["batch_policy"] = {{"script", script}, {"checked", checked}, {"matched", matched},
                         {"conformance", double(matched) / checked}};

  // 4. A 16K-token request through the paged engine, against one-step generation.
  const int ctx16 = 16384;
  if (cfg.max_position_embeddings < ctx16) {
    out["ctx16k"] = {{"ok", nullptr}, {"reason", "model context is " + std::to_string(cfg.max_position_embeddings) + " tokens"}};
  } else {
    say("ctx16k: one request of " + std::to_string(ctx16) + " tokens");
    std::vector<MixRequest> one = make_mix(bo.seed + 2, 1, ctx16 - 8, ctx16 - 8, 8, 8, cfg.bos_token_id);
    EngineOptions o;
    o.num_blocks = ctx16 / bs + 4;
    o.block_size = bs;
    o.token_budget = 1024;  // chunked prefill over the paged cache
    auto r = run_mix(*m, one, std::move(o), "ctx16k", bo);
    GenerateOptions g;
    g.max_tokens = 8;
    g.stop_at_eos = false;
    const auto direct = generate(*m, one[0].prompt, g).tokens;
    const bool ok = r.outputs[0].size() == 8 && r.outputs[0] == direct;
    out["ctx16k"] = {{"ok", ok ? 1 : 0}, {"tokens", ctx16}, {"wall_s", r.summary["wall_s"]},
                     {"matches_unchunked_contiguous", r.outputs[0] == direct}};
  }
  return out;
}

}  // namespace cb::engine
