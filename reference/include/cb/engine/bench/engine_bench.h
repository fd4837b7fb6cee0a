// Speed of the forward pass against the machine's limits measured in the same run: batch-1 decode
// vs (triad and read-only memory bandwidth / bytes read per token), prefill vs the peak FMA rate
// (the BF16 dot-product peak for bf16-activation models); optionally batched decode on the
// roofline (MFU, MBU, fraction of the bound), 1 -> N thread scaling and the serving engine's own
// per-step overhead. Used by `refengine bench` and by claimbench's kernels suite.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cb/engine/model/config.h"
#include "cb/engine/model/model.h"

namespace cb::engine {

struct EngineBenchOptions {
  std::filesystem::path model_dir;
  std::string backend = "cpu";
  int prefill_tokens = 128;
  int decode_tokens = 16;   // decode steps per repetition
  int repetitions = 3;
  uint64_t seed = 1;        // prompt token ids
  double peak_seconds = 0.3;  // time spent on each machine-peak measurement
  bool bf16_activations = false;  // open the model with bf16 x bf16 matmuls (LoadOptions)
  std::vector<int> batch_sizes;   // batched decode at these batch sizes (empty: not measured)
  int batch_steps = 6;            // decode steps timed per batch size and repetition
  bool thread_scaling = false;    // prefill and decode at 1 thread and at all threads
  std::vector<int> overhead_batches;  // serving-engine per-step overhead at these batch sizes
  // Per-op time of decode steps at batch 1 and each of batch_sizes (kernels::ProfilingBackend):
  // the model then runs on the profiler for the whole bench (disabled outside the profile steps).
  bool op_profile = false;
  // Decode steps replayed from recordings (LoadOptions::step_graphs; CUDA graphs on cuda).
  bool step_graphs = false;
};

// What Model::step_graph_stats() says, as JSON (bench results, generate --stats-json).
nlohmann::json step_graphs_json(const Model::StepGraphStats& s);

// FLOPs of one prefill of T tokens (matmuls for every token, lm_head for the last one only,
// attention scores and weighted sums over the causal triangle).
double prefill_flops(const ModelConfig& cfg, int T);
// Bytes read by one decode step at context length ctx: every weight except the embedding table
// (only one row of it is read), plus the K and V cache.
double decode_bytes_per_token(const ModelConfig& cfg, size_t weight_bytes, size_t embed_bytes, int ctx);
// FLOPs of one decode token at context length ctx: every matmul once (lm_head included) and
// attention over ctx keys.
double decode_flops_per_token(const ModelConfig& cfg, int ctx);

// {"samples", "median", "best", "worst"} of repeated samples; best is the largest for rates
// (higher_is_better) and the smallest for times.
nlohmann::json samples_summary(const std::vector<double>& v, bool higher_is_better = true);
// A decode repetition's figure paired step by step: step i's rate (bytes_per_token / its seconds)
// over the triad pass run right before it, the median over the steps. Steps whose pass gave no
// rate (NaN or <= 0) are left out; NaN when none is left or the lengths differ.
double paired_step_fraction(const std::vector<double>& step_seconds, const std::vector<double>& pass_gbs, double bytes_per_token);

// Returns {"model", "backend", "params", "peaks", "prefill", "decode", "ratios"} and the optional
// sections ("batched_decode", "thread_scaling", "serving_overhead", "op_profile"); see README.
nlohmann::json run_engine_bench(const EngineBenchOptions& opt,
                                const std::function<void(const std::string&)>& progress = {});

}  // namespace cb::engine
