// Pruning: 2:4 semi-structured (every group of 4 weights along K keeps 2) and structured
// (whole KV groups of attention heads and MLP channels removed, giving a smaller dense model).
// Scores: "magnitude" (weights alone) or "wanda" (activation-aware, from a calibration forward
// pass, compress/calibrate.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cb/engine/compress/calibrate.h"
#include "cb/engine/model/config.h"

namespace cb::engine::compress {

enum class ScoreMethod { Magnitude, Wanda };
ScoreMethod parse_score_method(const std::string& s);  // "magnitude" | "wanda"
const char* score_method_name(ScoreMethod m);

// ---- 2:4 -----------------------------------------------------------------------------------
// Scores of W[N, K]: |w| (magnitude), or |w[n, k]| * sqrt(input_squares[k]) (Wanda).
std::vector<float> scores_24(const float* w, int64_t n, int64_t k, ScoreMethod m, const std::vector<double>* input_squares);

struct Prune24Options {
  ScoreMethod scores = ScoreMethod::Magnitude;
  bool compressed = false;  // sparse-24-bitmask tensors; else dense with zeros (fine-tuning keeps them)
  CalibrationOptions calib;  // used by wanda
  bool overwrite = false;
  std::string eval_backend = "cpu";  // compares logits with the source's on it ("" = skip)
};

struct Prune24Report {
  ScoreMethod scores = ScoreMethod::Magnitude;
  bool compressed = false;
  int pruned_matrices = 0;
  int64_t pruned_params = 0;  // weights in the pruned matrices (half of them are now zero)
  int64_t total_params = 0;
  double global_sparsity = 0;  // zeros among all parameters after pruning
  uint64_t source_bytes = 0, output_bytes = 0;
  nlohmann::json logits_vs_source;  // compare_logits (export.h) on 64 calibration tokens
  nlohmann::json to_json() const;
};

// Prunes every decoder linear layer (q, k, v, o, gate, up, down; not lm_head) to 2:4 along K.
// Throws ModelError when a layer's K is not divisible by 4 (naming it), or the source is not a
// dense float model.
Prune24Report prune_24_model(const std::filesystem::path& source, const std::filesystem::path& out, const Prune24Options& opt);

// ---- FLOPs -----------------------------------------------------------------------------------
// FLOPs to process one token: matmuls 2 * N * K for every linear layer incl. lm_head (embedding
// lookups and norms not counted), plus attention for a token that attends to `context` keys:
// 2 * heads * head_dim * context for q.k and the same for the weighted sum of v, per layer.
struct FlopCount {
  int64_t matmul = 0;
  int64_t attention = 0;
  int context = 0;
  int64_t total() const { return matmul + attention; }
};
FlopCount flops_per_token(const ModelConfig& cfg, int context);

// ---- structured ------------------------------------------------------------------------------
// What a structured pruning keeps: per layer the same number of KV groups (a KV head with its
// heads / kv_heads query heads, so grouped-query attention stays valid) and of MLP channels, so the
// Hugging Face config stays uniform. Indices are ascending.
struct StructuredPlan {
  std::vector<std::vector<int>> kv_groups;     // [layer] -> kept KV groups
  std::vector<std::vector<int>> mlp_channels;  // [layer] -> kept intermediate channels
};

// Importance per layer of each KV group and MLP channel (higher = keep).
//   magnitude: group = sum of squared weights it owns (q rows, k/v rows, o columns of its heads);
//              channel = ||gate row||^2 + ||up row||^2 + ||down column||^2.
//   wanda:     group = sum over its o_proj input columns c of ||X_o[:, c]|| * ||W_o[:, c]||;
//              channel = ||X_down[:, j]|| * ||W_down[:, j]|| (its expected share of the output).
struct Importance {
  std::vector<std::vector<double>> kv_groups;
  std::vector<std::vector<double>> mlp_channels;
};
Importance structured_importance(const SourceModel& src, ScoreMethod m, const InputSquares* squares);

// The config after keeping `kv_groups` groups and `mlp_channels` channels per layer.
ModelConfig pruned_config(const ModelConfig& cfg, int kv_groups, int mlp_channels);

// Chooses the counts: for each number of KV groups g (all .. 1), the most MLP channels (a multiple
// of `mlp_multiple`) whose FLOPs/token at `context` are <= (1 - target) x dense; among those, the
// pair that keeps the largest importance share (attention and MLP shares weighted by their dense
// FLOPs). Then per layer the most important groups / channels. kv_groups > 0 fixes the number of
// KV groups kept (only the channel count is chosen). Throws ModelError naming the target when no
// pair reaches it.
StructuredPlan plan_structured(const ModelConfig& cfg, const Importance& imp, double target, int context, int mlp_multiple,
                               int kv_groups = 0);

// A plan that keeps these counts, choosing per layer by importance.
StructuredPlan plan_with_counts(const ModelConfig& cfg, const Importance& imp, int kv_groups, int mlp_channels);

// Writes the smaller dense model (same dtype) for `plan`.
void write_structured(const SourceModel& src, const StructuredPlan& plan, const std::filesystem::path& out, bool overwrite);

struct StructuredOptions {
  ScoreMethod scores = ScoreMethod::Magnitude;
  double target_flop_reduction = 0.6;
  int context = 128;
  int mlp_multiple = 4;
  int kv_groups = 0;  // KV groups kept per layer; 0 = chosen with the channel count
  CalibrationOptions calib;
  bool overwrite = false;
  std::string eval_backend = "cpu";  // compares logits with the source's on it ("" = skip)
};

struct StructuredReport {
  ModelConfig dense, pruned;
  FlopCount dense_flops, pruned_flops;
  double target = 0;
  uint64_t source_bytes = 0, output_bytes = 0;
  nlohmann::json logits_vs_source;
  double flop_reduction() const { return 1.0 - double(pruned_flops.total()) / double(dense_flops.total()); }
  double matmul_flop_reduction() const { return 1.0 - double(pruned_flops.matmul) / double(dense_flops.matmul); }
  nlohmann::json to_json() const;
};

StructuredReport prune_structured_model(const std::filesystem::path& source, const std::filesystem::path& out,
                                        const StructuredOptions& opt);

}  // namespace cb::engine::compress
