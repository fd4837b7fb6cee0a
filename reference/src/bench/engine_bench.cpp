#include "cb/engine/bench/engine_bench.h"

#include <algorithm>
#include <chrono>
#include <random>

#include "cb/peaks/machine_peaks.h"
#include "cb/engine/model/engine.h"

namespace cb::engine {
using nlohmann::json;

double prefill_flops(const ModelConfig& c, int T) {
  const double D = c.hidden_size, KV = c.kv_dim(), F = c.intermediate_size, V = c.vocab_size, L = c.num_hidden_layers;
  const double per_token_layer = 2.0 * (D * D + 2 * D * KV + D * D + 3 * D * F);  // q,k,v,o + gate,up,down
  const double causal_pairs = double(T) * (T + 1) / 2;                               // (query, key) pairs
  const double attention = L * 2.0 * 2.0 * D * causal_pairs;                         // q.k and p.v per head dim
  return L * per_token_layer * T + 2.0 * D * V + attention;
}

double decode_bytes_per_token(const ModelConfig& c, size_t weight_bytes, size_t embed_bytes, int ctx) {
  const double embed_row = double(embed_bytes) / c.vocab_size;
  const double kv = 2.0 * c.num_hidden_layers * double(ctx) * c.kv_dim() * sizeof(float);
  // A tied lm_head reads the whole embedding table anyway.
  const double skipped = c.tie_word_embeddings ? 0.0 : double(embed_bytes) - embed_row;
  return double(weight_bytes) - skipped + kv;
}

namespace {
json samples_summary(const std::vector<double>& v) {
  std::vector<double> s = v;
  std::sort(s.begin(), s.end());
  const double med = s.empty() ? 0 : (s.size() % 2 ? s[s.size() / 2] : 0.5 * (s[s.size() / 2 - 1] + s[s.size() / 2]));
  return {{"samples", v}, {"median", med}, {"best", s.empty() ? 0 : s.back()}};
}
}  // namespace

json run_engine_bench(const EngineBenchOptions& opt, const std::function<void(const std::string&)>& progress) {
  auto say = [&](const std::string& m) { if (progress) progress(m); };
  using clock = std::chrono::steady_clock;
  auto lm = LoadedModel::open(opt.model_dir, opt.backend);
  const ModelConfig& cfg = lm->config();
  const int T = opt.prefill_tokens, steps = opt.decode_tokens;
  if (T <= 0 || steps <= 0 || opt.repetitions <= 0) throw std::invalid_argument("engine bench: token counts and repetitions must be > 0");
  if (T + steps > cfg.max_position_embeddings)
    throw std::invalid_argument("engine bench: prefill + decode tokens exceed the context of " + std::to_string(cfg.max_position_embeddings));

  say("measuring machine peaks (fp32 FMA, memory read bandwidth)");
  const auto fma = bench::measure_peak_fp32_fma(0, opt.peak_seconds);
  const auto bw = bench::measure_memory_read_bandwidth(0, 0, opt.peak_seconds);

  std::mt19937_64 rng(opt.seed);
  std::uniform_int_distribution<int32_t> tok(0, std::min(cfg.vocab_size, 256) - 1);
  std::vector<int32_t> prompt(T);
  for (auto& t : prompt) t = tok(rng);

  KvCache kv(lm->backend(), cfg, (T + steps + 15) / 16, 16);
  const std::vector<int32_t> table = KvCache::sequential_table(kv.blocks_for(T + steps));

  // This host's memory bandwidth drifts by tens of percent from minute to minute (shared
  // machine), so each decode repetition is paired with a bandwidth measurement taken right
  // before it, and the fraction is computed per pair.
  std::vector<double> prefill_s, decode_tps, rep_bw;
  for (int rep = 0; rep < opt.repetitions; ++rep) {
    say("repetition " + std::to_string(rep + 1) + "/" + std::to_string(opt.repetitions) + ": prefill " + std::to_string(T) + " tokens");
    auto t0 = clock::now();
    auto logits = lm->model().forward({SeqStep{prompt, 0, table, false}}, kv);
    prefill_s.push_back(std::chrono::duration<double>(clock::now() - t0).count());
    say("repetition " + std::to_string(rep + 1) + "/" + std::to_string(opt.repetitions) + ": decode " + std::to_string(steps) + " steps");
    int32_t next = argmax(logits);
    rep_bw.push_back(bench::measure_memory_read_bandwidth(0, 0, std::min(0.15, opt.peak_seconds)).value);
    auto t1 = clock::now();
    for (int s = 0; s < steps; ++s) {
      logits = lm->model().forward({SeqStep{std::span<const int32_t>(&next, 1), T + s, table, false}}, kv);
      next = argmax(logits);
    }
    decode_tps.push_back(steps / std::chrono::duration<double>(clock::now() - t1).count());
  }

  const size_t embed_bytes = size_t(cfg.vocab_size) * cfg.hidden_size * kernels::dtype_size(lm->model().weights().embed.dtype);
  const double bytes_tok = decode_bytes_per_token(cfg, lm->weight_bytes(), embed_bytes, T + steps / 2);
  const double flops = prefill_flops(cfg, T);
  std::vector<double> prefill_gflops;
  for (double s : prefill_s) prefill_gflops.push_back(flops / s / 1e9);
  std::vector<double> bw_fraction;
  for (size_t i = 0; i < decode_tps.size(); ++i) bw_fraction.push_back(decode_tps[i] * bytes_tok / (rep_bw[i] * 1e9));
  const json dec = samples_summary(decode_tps), pre = samples_summary(prefill_gflops), frac = samples_summary(bw_fraction);
  const double bw_limit_tps = bw.value * 1e9 / bytes_tok;

  json out;
  out["model"] = {{"dir", opt.model_dir.string()}, {"config", cfg.to_json()}, {"weight_bytes", lm->weight_bytes()},
                  {"weight_dtype", kernels::dtype_name(lm->model().weights().embed.dtype)}, {"parameters", cfg.parameter_count()}};
  out["backend"] = lm->backend().name();
  out["params"] = {{"prefill_tokens", T}, {"decode_tokens", steps}, {"repetitions", opt.repetitions}, {"seed", opt.seed},
                   {"peak_seconds", opt.peak_seconds}};
  out["peaks"] = {{"fp32_fma", bench::to_json(fma)}, {"mem_read", bench::to_json(bw)}};
  out["prefill"] = {{"flops", flops}, {"seconds", prefill_s}, {"gflops", pre}};
  out["decode"] = {{"bytes_per_token", bytes_tok}, {"tokens_per_s", dec}, {"bandwidth_limit_tokens_per_s", bw_limit_tps},
                   {"bandwidth_gbs_per_repetition", rep_bw}, {"bw_fraction", frac}};
  // Fractions use the median repetition (a typical run), not the best one.
  out["ratios"] = {
      {"decode_bw_fraction", frac["median"].get<double>()},
      {"prefill_peak_fraction", pre["median"].get<double>() / fma.value},
      {"targets", {{"decode_bw_fraction", 0.8}, {"prefill_peak_fraction", 0.5}}},
  };
  return out;
}

}  // namespace cb::engine
