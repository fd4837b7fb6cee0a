#include "cb/engine/bench/engine_bench.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <random>

#include "cb/engine/model/engine.h"
#include "cb/engine/model/thread_scope.h"
#include "cb/engine/serving/serving_engine.h"
#include "cb/peaks/machine_peaks.h"

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

double decode_flops_per_token(const ModelConfig& c, int ctx) {
  return double(c.matmul_flops_per_token()) + c.num_hidden_layers * 2.0 * 2.0 * c.hidden_size * double(ctx);
}

json samples_summary(const std::vector<double>& v, bool higher_is_better) {
  std::vector<double> s = v;
  std::sort(s.begin(), s.end());
  const double med = s.empty() ? 0 : (s.size() % 2 ? s[s.size() / 2] : 0.5 * (s[s.size() / 2 - 1] + s[s.size() / 2]));
  const double lo = s.empty() ? 0 : s.front(), hi = s.empty() ? 0 : s.back();
  return {{"samples", v}, {"median", med}, {"best", higher_is_better ? hi : lo}, {"worst", higher_is_better ? lo : hi}};
}

double paired_step_fraction(const std::vector<double>& step_seconds, const std::vector<double>& pass_gbs, double bytes_per_token) {
  if (step_seconds.size() != pass_gbs.size()) return NAN;
  std::vector<double> r;
  for (size_t i = 0; i < step_seconds.size(); ++i)
    if (pass_gbs[i] > 0 && step_seconds[i] > 0) r.push_back(bytes_per_token / step_seconds[i] / (pass_gbs[i] * 1e9));
  if (r.empty()) return NAN;
  return samples_summary(r)["median"].get<double>();
}

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

double median_of(const std::vector<double>& v) { return samples_summary(v)["median"].get<double>(); }

std::vector<int32_t> seeded_prompt(const ModelConfig& cfg, uint64_t seed, int T) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> tok(0, std::min(cfg.vocab_size, 256) - 1);
  std::vector<int32_t> p(static_cast<size_t>(T), 0);
  for (auto& t : p) t = tok(rng);
  return p;
}

// The machine's limits measured at the same moments as the decode steps they divide: before
// every step (outside its timing), one STREAM triad pass over 1 GiB and, when asked, one FP32 FMA
// window of about 10 ms. One instance serves the whole bench (its 1 GiB held once). Each pass's
// rate is kept in order, so batch-1 decode pairs every step with the pass right before it (the
// target's figure, see run_engine_bench). A repetition's limit is its best window, the estimator of the peaks
// measured alone (a neighbour's load can only make a window slower than the machine); the mean
// (sum over sum) is kept beside it. Measured so, the limit spans the steps' own minutes instead
// of a window before them: this shared host's bandwidth moves by tens of percent within minutes
// (a 0.15 s window before the repetition, as before 2026-12-06, left per-repetition fractions of
// 0.73-1.00 in one run). The mean moves with a neighbour's load as the steps do, so a decode
// fraction of it can pass 1.0: triad counts 12 bytes per element (16 move, with write-allocate)
// and decode is a read-only stream.
class StepLimits {
 public:
  StepLimits() : triad_(0, 0) {
    // Rounds for ~10 ms from one short calibration (the rate, not the peak, is wanted here).
    double s = 0;
    const double f = bench::fp32_fma_work(0, 4096, bench::Isa::Auto, nullptr, nullptr, &s);
    fma_rounds_ = s > 0 && f > 0 ? std::max<int64_t>(4096, int64_t(4096 * 0.01 / s)) : 0;
  }
  // Starts a repetition: its windows alone count; with_fma: an FMA window before every step too.
  void reset(bool with_fma) {
    bytes_ = flops_ = Sum{};
    with_fma_ = with_fma;
    passes_.clear();
  }
  void before_step() {
    double s = 0;
    const double b = triad_.triad_pass(bench::Isa::Auto, &s);
    passes_.push_back(s > 0 ? b / s / 1e9 : NAN);
    if (s > 0) add(bytes_, b, s);
    if (with_fma_ && fma_rounds_ > 0) {
      s = 0;
      const double f = bench::fp32_fma_work(0, fma_rounds_, bench::Isa::Auto, nullptr, nullptr, &s);
      if (s > 0) add(flops_, f, s);
    }
  }
  // GB/s and GFLOP/s of this repetition (NaN where nothing was measured), and their best windows.
  double triad_gbs() const { return bytes_.rate(); }
  double triad_best_gbs() const { return bytes_.best; }
  double fma_gflops() const { return flops_.rate(); }
  double fma_best_gflops() const { return flops_.best; }
  // GB/s of each triad pass of this repetition, in order: pass i ran right before step i.
  const std::vector<double>& triad_passes_gbs() const { return passes_; }

 private:
  struct Sum {
    double units = 0, seconds = 0, best = NAN;
    double rate() const { return seconds > 0 ? units / seconds / 1e9 : NAN; }
  };
  static void add(Sum& s, double units, double seconds) {
    s.units += units;
    s.seconds += seconds;
    const double r = units / seconds / 1e9;
    s.best = std::isnan(s.best) ? r : std::max(s.best, r);
  }
  bench::TriadBuffers triad_;
  int64_t fma_rounds_ = 0;
  bool with_fma_ = false;
  Sum bytes_, flops_;
  std::vector<double> passes_;
};

// One prefill of the prompt and `steps` greedy decode steps on a fresh cache: {prefill seconds,
// decode seconds (the steps alone)}. before_step, when set, runs before every decode step,
// outside the timing (StepLimits' windows); step_seconds, when set, gets each step's time.
std::pair<double, double> prefill_then_decode(LoadedModel& lm, const std::vector<int32_t>& prompt, int steps,
                                              const std::function<void()>& before_step = {},
                                              std::vector<double>* step_seconds = nullptr) {
  const int T = int(prompt.size());
  KvCache kv(lm.backend(), lm.kv_config(), (T + steps + 15) / 16, 16);
  const std::vector<int32_t> table = KvCache::sequential_table(kv.blocks_for(T + steps));
  auto t0 = Clock::now();
  auto logits = lm.model().forward({SeqStep{prompt, 0, table, false}}, kv);
  const double pre = since(t0);
  int32_t next = argmax(logits);
  double dec = 0;
  for (int s = 0; s < steps; ++s) {
    if (before_step) before_step();
    const auto t1 = Clock::now();
    logits = lm.model().forward({SeqStep{std::span<const int32_t>(&next, 1), T + s, table, false}}, kv);
    next = argmax(logits);
    const double t = since(t1);
    dec += t;
    if (step_seconds) step_seconds->push_back(t);
  }
  return {pre, dec};
}

// Batched decode: B sequences at context T (one prefill, its KV blocks copied to the others, so
// each sequence reads its own memory), then `steps` steps of B one-token rows. Seconds per step.
// With a profiler, only the timed steps are recorded.
double batched_decode_step_seconds(LoadedModel& lm, const std::vector<int32_t>& prompt, int B, int steps,
                                   kernels::ProfilingBackend* profiler = nullptr, StepLimits* limits = nullptr) {
  const int T = int(prompt.size()), bs = 16;
  const int per_seq = (T + steps + bs - 1) / bs;
  KvCache kv(lm.backend(), lm.kv_config(), per_seq * B, bs);
  std::vector<std::vector<int32_t>> tables(static_cast<size_t>(B));
  for (int b = 0; b < B; ++b)
    for (int i = 0; i < per_seq; ++i) tables[size_t(b)].push_back(b * per_seq + i);
  auto logits = lm.model().forward({SeqStep{prompt, 0, tables[0], false}}, kv);
  std::vector<std::pair<int32_t, int32_t>> copies;
  for (int b = 1; b < B; ++b)
    for (int i = 0; i < per_seq; ++i) copies.push_back({i, b * per_seq + i});
  if (!copies.empty()) lm.model().copy_kv_blocks(kv, copies);
  std::vector<int32_t> next(static_cast<size_t>(B), argmax(logits));
  const int V = lm.config().vocab_size;
  if (profiler) profiler->set_enabled(true);
  double total = 0;
  for (int s = 0; s < steps; ++s) {
    if (limits) limits->before_step();  // untimed, and not recorded by the profiler (its ops are the model's)
    const auto t0 = Clock::now();
    std::vector<SeqStep> batch;
    for (int b = 0; b < B; ++b) batch.push_back(SeqStep{std::span<const int32_t>(&next[size_t(b)], 1), T + s, tables[size_t(b)], false});
    logits = lm.model().forward(batch, kv);
    for (int b = 0; b < B; ++b)
      next[size_t(b)] = argmax(std::span<const float>(logits.data() + size_t(b) * size_t(V), size_t(V)));
    total += since(t0);
  }
  const double per_step = total / steps;
  if (profiler) profiler->set_enabled(false);
  return per_step;
}

// Where the time of `steps` units of work (decode steps, or one prefill) of `step` seconds each
// went, from what prof recorded over them: per (op, shape) row, time per unit and its share, and
// for matmuls the weight bytes and FLOPs over that time against the read bandwidth and compute
// peak the caller measured right before (`peak_key` names the peak's fraction).
// "outside_ops" is the unit's time in none of the ops (the model's own host work, argmax).
json op_profile_json(const kernels::ProfilingBackend& prof, int steps, double step, double read_gbs, double peak_gflops,
                     const std::string& peak_key) {
  json ops = json::array();
  double in_ops = 0, matmul_s = 0, matmul_bytes = 0, matmul_flops = 0;
  for (const kernels::OpTiming& t : prof.timings()) {
    const double s = t.seconds / steps;
    in_ops += s;
    json r = {{"op", t.op}, {"shape", t.shape}, {"calls_per_step", double(t.calls) / steps}, {"ms_per_step", s * 1e3},
              {"step_fraction", s / step}};
    if (t.bytes > 0) r["gbs"] = t.bytes / t.seconds / 1e9;
    if (t.flops > 0) r["gflops"] = t.flops / t.seconds / 1e9;
    if (t.op.rfind("matmul", 0) == 0) {
      matmul_s += s;
      matmul_bytes += t.bytes / steps;
      matmul_flops += t.flops / steps;
      if (read_gbs > 0) r["read_bandwidth_fraction"] = t.bytes / t.seconds / 1e9 / read_gbs;
      if (peak_gflops > 0) r[peak_key] = t.flops / t.seconds / 1e9 / peak_gflops;
    }
    ops.push_back(std::move(r));
  }
  json row = {{"steps", steps}, {"step_ms", step * 1e3}, {"ops_ms", in_ops * 1e3},
              {"outside_ops_ms", (step - in_ops) * 1e3}, {"outside_ops_fraction", (step - in_ops) / step},
              {"matmul_ms", matmul_s * 1e3}, {"matmul_fraction", matmul_s / step}, {"ops", ops}};
  if (matmul_s > 0) row["matmul_gbs"] = matmul_bytes / matmul_s / 1e9;
  if (matmul_s > 0) row["matmul_gflops"] = matmul_flops / matmul_s / 1e9;
  if (matmul_s > 0 && read_gbs > 0) row["matmul_read_bandwidth_fraction"] = matmul_bytes / matmul_s / 1e9 / read_gbs;
  if (matmul_s > 0 && peak_gflops > 0) row["matmul_" + peak_key] = matmul_flops / matmul_s / 1e9 / peak_gflops;
  return row;
}

// The read bandwidth a profiled section is divided by, measured right before and right after it
// (measure_read null: off the host, no limit). The faster of the two is the limit: this host's
// memory phase moves within a profile, and one 36 GB/s window before a row once gave its matmuls
// 1.095 of "the" read bandwidth.
struct ReadBracket {
  double before = 0, after = 0;
  double limit() const { return std::max(before, after); }
  void record(json& row) const {
    row["read_gbs"] = limit();
    row["read_gbs_before"] = before;
    row["read_gbs_after"] = after;
  }
};
template <class Section>
std::pair<double, ReadBracket> bracketed(const std::function<double()>& measure_read, Section&& section) {
  ReadBracket b;
  if (measure_read) b.before = measure_read();
  const double seconds = section();
  if (measure_read) b.after = measure_read();
  return {seconds, b};
}

// A decode step at batch B, against the FMA peak.
json op_profile_row(LoadedModel& lm, const std::vector<int32_t>& prompt, int B, int steps,
                    const std::function<double()>& measure_read, double fma_gflops) {
  kernels::ProfilingBackend& prof = *lm.op_profiler();
  prof.reset();
  const auto [step, read] = bracketed(measure_read, [&] { return batched_decode_step_seconds(lm, prompt, B, steps, &prof); });
  json row = op_profile_json(prof, steps, step, read.limit(), fma_gflops, "fma_peak_fraction");
  row["batch"] = B;
  if (measure_read) read.record(row);
  return row;
}

// One prefill of the prompt (a fresh cache), against the compute peak prefill is divided by.
json op_profile_prefill(LoadedModel& lm, const std::vector<int32_t>& prompt, const std::function<double()>& measure_read,
                        double peak_gflops) {
  kernels::ProfilingBackend& prof = *lm.op_profiler();
  prof.reset();
  const auto [pre, read] = bracketed(measure_read, [&] {
    prof.set_enabled(true);
    const double seconds = prefill_then_decode(lm, prompt, 0).first;
    prof.set_enabled(false);
    return seconds;
  });
  json row = op_profile_json(prof, 1, pre, read.limit(), peak_gflops, "peak_fraction");
  row["tokens"] = prompt.size();
  if (measure_read) read.record(row);
  return row;
}

// The serving engine at a steady decode batch of B: B requests submitted at once, timed over the
// steps where all B decode (prefill steps excluded). Overhead = step time outside the forward
// pass (scheduling, sampling, bookkeeping, callbacks) / step time.
json serving_overhead(LoadedModel& lm, int B, uint64_t seed) {
  EngineOptions o;
  o.token_budget = std::max(512, B * 32);
  o.num_blocks = B * 8 + 16;
  o.custom_policy = make_static_policy(B, 0.0);  // exactly B at once; the adaptive policies pick their own
  ServingEngine eng(lm, std::move(o));
  const int prompt_len = 16, out_len = 48;
  for (int b = 0; b < B; ++b) {
    RequestParams p;
    p.prompt = seeded_prompt(lm.config(), seed + uint64_t(b), prompt_len);
    p.max_tokens = out_len;
    p.stop_at_eos = false;
    p.sampling.temperature = 0.8f;  // sampling is part of the per-step work being measured
    p.sampling.seed = seed + uint64_t(b);
    eng.add_request(p, [](const TokenEvent&) {});
  }
  eng.run_until_idle();
  const EngineStats st = eng.stats();
  double step = 0, fwd = 0;
  int counted = 0;
  std::vector<double> per_step;  // a step where the thread lost its core is one outlier here, not in the median
  for (size_t i = 0; i < st.step_seconds.size(); ++i) {
    if (st.step_batch[i] != B || st.step_tokens[i] != B) continue;  // pure decode steps at batch B
    step += st.step_seconds[i];
    fwd += st.step_forward_seconds[i];
    per_step.push_back((st.step_seconds[i] - st.step_forward_seconds[i]) / st.step_seconds[i]);
    ++counted;
  }
  json j = {{"batch", B}, {"steps", counted}, {"prompt_tokens", prompt_len}, {"output_tokens", out_len}};
  if (counted > 0) {
    j["step_ms_mean"] = step / counted * 1e3;
    j["forward_ms_mean"] = fwd / counted * 1e3;
    j["overhead_fraction"] = (step - fwd) / step;
    j["overhead_fraction_median"] = median_of(per_step);
  }
  return j;
}

}  // namespace

json step_graphs_json(const Model::StepGraphStats& s) {
  json j = {{"enabled", s.enabled}, {"eager_steps", s.eager_steps}, {"captures", s.captures}, {"replays", s.replays},
            {"failed_captures", s.failed_captures}, {"evictions", s.evictions}};
  if (!s.unavailable.empty()) j["unavailable"] = s.unavailable;
  if (!s.last_failure.empty()) j["last_failure"] = s.last_failure;
  return j;
}

json run_engine_bench(const EngineBenchOptions& opt, const std::function<void(const std::string&)>& progress) {
  auto say = [&](const std::string& m) { if (progress) progress(m); };
  LoadOptions load;
  load.bf16_activations = opt.bf16_activations;
  load.profile_ops = opt.op_profile;
  load.step_graphs = opt.step_graphs;
  auto lm = LoadedModel::open(opt.model_dir, opt.backend, nullptr, load);
  const ModelConfig& cfg = lm->config();
  const int T = opt.prefill_tokens, steps = opt.decode_tokens;
  if (T <= 0 || steps <= 0 || opt.repetitions <= 0) throw std::invalid_argument("engine bench: token counts and repetitions must be > 0");
  if (T + std::max(steps, opt.batch_steps) > cfg.max_position_embeddings)
    throw std::invalid_argument("engine bench: prefill + decode tokens exceed the context of " + std::to_string(cfg.max_position_embeddings));
  for (int b : opt.batch_sizes)
    if (b <= 0) throw std::invalid_argument("engine bench: batch sizes must be > 0 (got " + std::to_string(b) + ")");

  // The peaks are this host's CPU's. A backend on another device (cuda) is not bounded by them: its
  // fractions would be meaningless (thousands of percent), so the host's limits are not measured
  // and the fractions are left out with the reason; its tokens/s stand, and cb_cuda_bench
  // measures that device's own limits.
  const std::string be_name = lm->backend().name();
  const bool host_limits = be_name == "cpu" || be_name == "ref";
  const std::string off_host = "backend " + be_name + " does not run on this host's CPU, so its peaks were not measured and the "
                               "fractions are left out (the device's own limits: cb_cuda_bench, or claimbench run --backend " +
                               be_name + " --suite kernels)";
  bench::PeakResult fma, bw, triad, bf16;
  if (host_limits) {
    say("measuring machine peaks (fp32 FMA, triad and read bandwidth" + std::string(opt.bf16_activations ? ", bf16 dot)" : ")"));
    fma = bench::measure_peak_fp32_fma(0, opt.peak_seconds);
    bw = bench::measure_memory_read_bandwidth(0, 0, opt.peak_seconds);
    triad = bench::measure_triad_bandwidth(0, 0, opt.peak_seconds);
    if (opt.bf16_activations) bf16 = bench::measure_bf16_dot_peak(0, opt.peak_seconds);
  }
  // What prefill is divided by: the peak of the instructions its matmuls use.
  const bool bf16_peak = opt.bf16_activations && bf16.value > 0;
  const double compute_peak = bf16_peak ? bf16.value : fma.value;

  const std::vector<int32_t> prompt = seeded_prompt(cfg, opt.seed, T);

  // This host's memory bandwidth drifts by tens of percent from minute to minute (shared
  // machine), so each decode repetition's triad limit is measured between its steps (StepLimits:
  // a pass before every step). Three figures come of it: paired, each step against the pass right
  // before it (the median over the steps; the target's figure), the best pass (the machine's
  // envelope: the mean of 16 steps against the fastest of 16 shorter passes, which the host's
  // jitter alone pulls down), and the passes' mean. The read-only bandwidth is measured right
  // before the repetition.
  // Prefill is paired with the compute peak measured right before it: a neighbour's load on the
  // shared host lowers both (peaks of 384-463 GFLOP/s within minutes here).
  std::unique_ptr<StepLimits> probe;
  if (host_limits) probe = std::make_unique<StepLimits>();
  std::vector<double> prefill_s, decode_tps, rep_bw, rep_triad, rep_triad_mean, rep_peak;
  std::vector<std::vector<double>> rep_step_s, rep_pass_gbs;
  for (int rep = 0; rep < opt.repetitions; ++rep) {
    say("repetition " + std::to_string(rep + 1) + "/" + std::to_string(opt.repetitions) + ": prefill " + std::to_string(T) +
        " tokens, decode " + std::to_string(steps) + " steps");
    const double short_s = std::min(0.15, opt.peak_seconds);
    rep_bw.push_back(host_limits ? bench::measure_memory_read_bandwidth(0, 0, short_s).value : NAN);
    rep_peak.push_back(!host_limits ? NAN
                       : bf16_peak  ? bench::measure_bf16_dot_peak(0, short_s).value
                                    : bench::measure_peak_fp32_fma(0, short_s).value);
    if (probe) probe->reset(/*with_fma=*/false);
    std::vector<double> step_s;
    const auto [pre, dec] =
        prefill_then_decode(*lm, prompt, steps, probe ? std::function<void()>([&] { probe->before_step(); }) : nullptr, &step_s);
    rep_step_s.push_back(step_s);
    rep_pass_gbs.push_back(probe ? probe->triad_passes_gbs() : std::vector<double>{});
    prefill_s.push_back(pre);
    decode_tps.push_back(steps / dec);
    rep_triad.push_back(probe ? probe->triad_best_gbs() : NAN);
    rep_triad_mean.push_back(probe ? probe->triad_gbs() : NAN);
  }

  const size_t embed_bytes = size_t(cfg.vocab_size) * cfg.hidden_size * kernels::dtype_size(lm->model().weights().embed.dtype);
  const double bytes_tok = decode_bytes_per_token(cfg, lm->weight_bytes(), embed_bytes, T + steps / 2);
  const double flops = prefill_flops(cfg, T);
  std::vector<double> prefill_gflops, prefill_fraction, bw_fraction, triad_fraction, triad_mean_fraction, triad_paired_fraction;
  for (size_t i = 0; i < prefill_s.size(); ++i) {
    prefill_gflops.push_back(flops / prefill_s[i] / 1e9);
    prefill_fraction.push_back(prefill_gflops.back() / rep_peak[i]);
  }
  for (size_t i = 0; i < decode_tps.size(); ++i) {
    bw_fraction.push_back(decode_tps[i] * bytes_tok / (rep_bw[i] * 1e9));
    triad_fraction.push_back(decode_tps[i] * bytes_tok / (rep_triad[i] * 1e9));
    triad_mean_fraction.push_back(decode_tps[i] * bytes_tok / (rep_triad_mean[i] * 1e9));
    triad_paired_fraction.push_back(paired_step_fraction(rep_step_s[i], rep_pass_gbs[i], bytes_tok));
  }
  const json dec = samples_summary(decode_tps), pre = samples_summary(prefill_gflops);

  json out;
  out["model"] = {{"dir", opt.model_dir.string()}, {"config", cfg.to_json()}, {"weight_bytes", lm->weight_bytes()},
                  {"weight_dtype", kernels::dtype_name(lm->model().weights().embed.dtype)}, {"parameters", cfg.parameter_count()},
                  {"activations", opt.bf16_activations ? "bf16" : "f32"}};
  out["backend"] = lm->backend().name();
  out["threads"] = omp_get_max_threads();
  out["params"] = {{"prefill_tokens", T}, {"decode_tokens", steps}, {"repetitions", opt.repetitions}, {"seed", opt.seed},
                   {"peak_seconds", opt.peak_seconds}, {"bf16_activations", opt.bf16_activations},
                   {"batch_sizes", opt.batch_sizes}, {"batch_steps", opt.batch_steps}, {"thread_scaling", opt.thread_scaling},
                   {"overhead_batches", opt.overhead_batches}, {"op_profile", opt.op_profile},
                   {"step_graphs", opt.step_graphs}};
  out["peaks"] = {{"fp32_fma", bench::to_json(fma)}, {"mem_read", bench::to_json(bw)}, {"triad", bench::to_json(triad)}};
  if (opt.bf16_activations) out["peaks"]["bf16_dot"] = bench::to_json(bf16);
  if (!host_limits) out["peaks"] = nullptr;
  out["prefill"] = {{"flops", flops}, {"seconds", prefill_s}, {"gflops", pre},
                    {"peak", bf16_peak ? "bf16_dot" : "fp32_fma"}, {"peak_gflops", compute_peak},
                    {"peak_gflops_per_repetition", rep_peak}, {"peak_fraction", samples_summary(prefill_fraction)}};
  out["decode"] = {{"bytes_per_token", bytes_tok}, {"tokens_per_s", dec},
                   {"bandwidth_limit_tokens_per_s", bw.value * 1e9 / bytes_tok},
                   {"triad_limit_tokens_per_s", triad.value * 1e9 / bytes_tok},
                   {"bandwidth_gbs_per_repetition", rep_bw}, {"triad_gbs_per_repetition", rep_triad},
                   {"triad_mean_gbs_per_repetition", rep_triad_mean},
                   {"triad_limit", "per repetition: the best of the 1 GiB triad passes run before every decode step "
                                   "(untimed for the decode); triad_mean: those passes' bytes over their seconds; "
                                   "triad_paired: each step's rate over the pass right before it, the median over the steps"},
                   {"step_seconds_per_repetition", rep_step_s}, {"triad_pass_gbs_per_repetition", rep_pass_gbs},
                   {"bw_fraction", samples_summary(bw_fraction)}, {"triad_fraction", samples_summary(triad_fraction)},
                   {"triad_mean_fraction", samples_summary(triad_mean_fraction)},
                   {"triad_paired_fraction", samples_summary(triad_paired_fraction)}};
  if (!host_limits) out["limits_not_applicable"] = off_host;
  // Fractions use the median repetition (a typical run), not the best one.
  out["ratios"] = {
      {"decode_bw_fraction", median_of(bw_fraction)},
      {"decode_triad_fraction", median_of(triad_fraction)},
      {"decode_triad_paired_fraction", median_of(triad_paired_fraction)},
      {"prefill_peak_fraction", median_of(prefill_fraction)},
      {"targets", {{"decode_triad_paired_fraction", 0.8}, {"prefill_peak_fraction", 0.5}}},
  };
  if (!host_limits) {
    for (const char* k : {"decode_bw_fraction", "decode_triad_fraction", "decode_triad_paired_fraction", "prefill_peak_fraction"})
      out["ratios"][k] = nullptr;
    for (const char* k : {"peak", "peak_gflops", "peak_gflops_per_repetition", "peak_fraction"}) out["prefill"][k] = nullptr;
    for (const char* k : {"bandwidth_limit_tokens_per_s", "triad_limit_tokens_per_s", "bandwidth_gbs_per_repetition",
                          "triad_gbs_per_repetition", "triad_mean_gbs_per_repetition", "triad_limit", "bw_fraction",
                          "triad_fraction", "triad_mean_fraction", "triad_paired_fraction", "triad_pass_gbs_per_repetition"})
      out["decode"][k] = nullptr;
  }

  // Batched decode on the roofline: a step's bound is max(FLOPs / FMA peak, bytes / triad
  // bandwidth); MFU and MBU are the achieved rates over those limits (medians of per-repetition
  // pairs, as above).
  if (!opt.batch_sizes.empty()) {
    const int ctx = T + opt.batch_steps / 2;
    const double kv_tok = 2.0 * cfg.num_hidden_layers * double(ctx) * cfg.kv_dim() * sizeof(float);
    const double weights_once = decode_bytes_per_token(cfg, lm->weight_bytes(), embed_bytes, 0);
    json rows = json::array();
    for (int B : opt.batch_sizes) {
      const double step_flops = B * decode_flops_per_token(cfg, ctx), step_bytes = weights_once + B * kv_tok;
      // Each repetition against the best FMA window and triad pass run between its steps
      // (StepLimits); the windows' mean rates kept beside them.
      std::vector<double> step_s, tps, mfu, mbu, frac, bound_tps, rep_peak_b, rep_bw_b, frac_mean;
      std::string bound_kind;
      for (int rep = 0; rep < opt.repetitions; ++rep) {
        say("batched decode: batch " + std::to_string(B) + ", repetition " + std::to_string(rep + 1));
        if (probe) probe->reset(/*with_fma=*/true);
        const double t = batched_decode_step_seconds(*lm, prompt, B, opt.batch_steps, nullptr, probe.get());
        // The bound from the best windows (peaks, as measured alone); from their means beside it.
        const double peak = probe ? probe->fma_best_gflops() * 1e9 : NAN, bwr = probe ? probe->triad_best_gbs() * 1e9 : NAN;
        const double mean_bound = probe ? std::max(step_flops / (probe->fma_gflops() * 1e9), step_bytes / (probe->triad_gbs() * 1e9)) : NAN;
        rep_peak_b.push_back(peak / 1e9);
        rep_bw_b.push_back(bwr / 1e9);
        frac_mean.push_back(mean_bound / t);
        const double t_compute = step_flops / peak, t_memory = step_bytes / bwr, bound = std::max(t_compute, t_memory);
        bound_kind = t_compute >= t_memory ? "compute" : "memory";
        step_s.push_back(t);
        tps.push_back(B / t);
        mfu.push_back(step_flops / t / peak);
        mbu.push_back(step_bytes / t / bwr);
        frac.push_back(bound / t);
        bound_tps.push_back(B / bound);
      }
      rows.push_back({{"batch", B}, {"context", ctx}, {"step_seconds", samples_summary(step_s, false)}, {"tokens_per_s", samples_summary(tps)},
                      {"flops_per_step", step_flops}, {"bytes_per_step", step_bytes},
                      {"mfu", median_of(mfu)}, {"mbu", median_of(mbu)}, {"bound", bound_kind},
                      {"bound_tokens_per_s", median_of(bound_tps)}, {"roofline_fraction", median_of(frac)},
                      {"roofline_fraction_samples", frac}, {"fma_gflops_per_repetition", rep_peak_b},
                      {"triad_gbs_per_repetition", rep_bw_b}, {"mean_window_roofline_fraction_samples", frac_mean}});
      if (!host_limits)
        for (const char* k : {"mfu", "mbu", "bound", "bound_tokens_per_s", "roofline_fraction", "roofline_fraction_samples",
                              "fma_gflops_per_repetition", "triad_gbs_per_repetition", "mean_window_roofline_fraction_samples"})
          rows.back()[k] = nullptr;
    }
    out["batched_decode"] = {{"rows", rows},
                             {"limits", "per repetition, measured between its steps (untimed for them): compute, the best ~10 ms "
                                        "FP32 FMA window; memory, the best 1 GiB triad pass; mean_window: their sums over their "
                                        "seconds"},
                             {"target", {{"batch", 16}, {"roofline_fraction", 0.6}}}};
  }

  // 1 -> all threads: the same prefill and decode at one thread, then at the run's thread count.
  if (opt.thread_scaling) {
    const int all = omp_get_max_threads();
    json rows = json::array();
    for (int th : {1, all}) {
      say("thread scaling: " + std::to_string(th) + " thread(s)");
      ThreadScope scope(th);
      std::vector<double> p, d;
      for (int rep = 0; rep < opt.repetitions; ++rep) {
        const auto [pre_s, dec_s] = prefill_then_decode(*lm, prompt, steps);
        p.push_back(T / pre_s);
        d.push_back(steps / dec_s);
      }
      rows.push_back({{"threads", th}, {"prefill_tokens_per_s", samples_summary(p)}, {"decode_tokens_per_s", samples_summary(d)},
                      {"fp32_fma_gflops", bench::measure_peak_fp32_fma(th, std::min(0.15, opt.peak_seconds)).value},
                      {"read_gbs", bench::measure_memory_read_bandwidth(th, 0, std::min(0.15, opt.peak_seconds)).value}});
      if (th == all) break;  // a one-thread machine has one row
    }
    json& r = rows.back();
    const json& r1 = rows.front();
    out["thread_scaling"] = {
        {"rows", rows},
        {"prefill_speedup", r["prefill_tokens_per_s"]["median"].get<double>() / r1["prefill_tokens_per_s"]["median"].get<double>()},
        {"decode_speedup", r["decode_tokens_per_s"]["median"].get<double>() / r1["decode_tokens_per_s"]["median"].get<double>()},
        {"fma_peak_speedup", r["fp32_fma_gflops"].get<double>() / r1["fp32_fma_gflops"].get<double>()},
        {"read_bandwidth_speedup", r["read_gbs"].get<double>() / r1["read_gbs"].get<double>()}};
  }

  if (!opt.overhead_batches.empty()) {
    json rows = json::array();
    for (int B : opt.overhead_batches) {
      say("serving-engine per-step overhead at batch " + std::to_string(B));
      rows.push_back(serving_overhead(*lm, B, opt.seed));
    }
    out["serving_overhead"] = {{"rows", rows}, {"target", {{"overhead_fraction_max", 0.1}}}};
  }

  if (opt.op_profile) {
    std::vector<int> batches{1};
    for (int b : opt.batch_sizes)
      if (std::find(batches.begin(), batches.end(), b) == batches.end()) batches.push_back(b);
    json rows = json::array();
    // Limits measured beside each row, as for the repetitions above (this host drifts): the
    // compute peak right before, the read bandwidth before and after (ReadBracket).
    std::function<double()> measure_read;
    if (host_limits) measure_read = [] { return bench::measure_memory_read_bandwidth(0, 0, 0.1).value; };
    for (int B : batches) {
      say("op profile: decode batch " + std::to_string(B));
      const double fma_gflops = host_limits ? bench::measure_peak_fp32_fma(0, 0.1).value : 0;
      rows.push_back(op_profile_row(*lm, prompt, B, steps, measure_read, fma_gflops));
      if (host_limits) rows.back()["fma_gflops"] = fma_gflops;
    }
    say("op profile: prefill " + std::to_string(T) + " tokens");
    const double peak = !host_limits ? 0 : bf16_peak ? bench::measure_bf16_dot_peak(0, 0.1).value : bench::measure_peak_fp32_fma(0, 0.1).value;
    json prefill = op_profile_prefill(*lm, prompt, measure_read, peak);
    if (host_limits) prefill["peak_gflops"] = peak;
    prefill["peak"] = bf16_peak ? "bf16_dot" : "fp32_fma";
    out["op_profile"] = {{"rows", rows},
                         {"prefill", prefill},
                         {"limits", host_limits ? json("fp32 FMA peak measured right before each row (fma_gflops); read bandwidth right before and "
                                                         "right after it (read_gbs_before, read_gbs_after), the faster of the two the row's "
                                                         "limit (read_gbs)")
                                                  : json(off_host)},
                         {"synchronized_per_op", lm->op_profiler()->synchronizes()},
                         {"note", lm->op_profiler()->synchronizes()
                                      ? "each op is followed by a device synchronize, so ops do not overlap and the step is slower than unprofiled"
                                      : "host backend: ops run one after another anyway; timing adds two clock reads per op"}};
  }
  out["step_graphs"] = step_graphs_json(lm->model().step_graph_stats());
  return out;
}

}  // namespace cb::engine
