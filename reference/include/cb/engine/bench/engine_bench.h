// Single-sequence speed of the forward pass against the machine's measured limits, in one run:
// batch-1 decode vs (memory read bandwidth / bytes touched per token), and prefill vs the peak
// FP32 FMA rate. Used by `refengine bench` and by claimbench's kernels suite.
#pragma once

#include <filesystem>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "cb/engine/model/config.h"

namespace cb::engine {

struct EngineBenchOptions {
  std::filesystem::path model_dir;
  std::string backend = "cpu";
  int prefill_tokens = 128;
  int decode_tokens = 16;   // decode steps per repetition
  int repetitions = 3;
  uint64_t seed = 1;        // prompt token ids
  double peak_seconds = 0.3;  // time spent on each machine-peak measurement
};

// FLOPs of one prefill of T tokens (matmuls for every token, lm_head for the last one only,
// attention scores and weighted sums over the causal triangle).
double prefill_flops(const ModelConfig& cfg, int T);
// Bytes read by one decode step at context length ctx: every weight except the embedding table
// (only one row of it is read), plus the K and V cache.
double decode_bytes_per_token(const ModelConfig& cfg, size_t weight_bytes, size_t embed_bytes, int ctx);

// Returns {"model", "backend", "params", "peaks", "prefill", "decode", "ratios"}; see README.
nlohmann::json run_engine_bench(const EngineBenchOptions& opt,
                                const std::function<void(const std::string&)>& progress = {});

}  // namespace cb::engine
