// Structured pruning: whole KV groups of attention heads and MLP channels removed, the same count
// in every layer, giving a smaller dense model; and the FLOPs/token count it is judged by.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <stdexcept>

#include "cb/engine/compress/export.h"
#include "cb/engine/compress/prune.h"
#include "cb/engine/model/errors.h"
#include "cb/engine/model/weights.h"

namespace cb::engine::compress {
namespace fs = std::filesystem;
using kernels::DType;
using nlohmann::json;

FlopCount flops_per_token(const ModelConfig& cfg, int context) {
  if (context < 0) throw std::invalid_argument("flops_per_token: context " + std::to_string(context) + " is negative");
  FlopCount f;
  f.context = context;
  f.matmul = cfg.matmul_flops_per_token();  // 2 N K per linear layer incl. lm_head
  f.attention = int64_t(cfg.num_hidden_layers) * 4 * int64_t(cfg.q_dim()) * context;
  return f;
}

ModelConfig pruned_config(const ModelConfig& cfg, int kv_groups, int mlp_channels) {
  ModelConfig c = cfg;
  const int per_group = cfg.num_attention_heads / cfg.num_key_value_heads;
  const int hd = cfg.head_dim();
  c.num_key_value_heads = kv_groups;
  c.num_attention_heads = kv_groups * per_group;
  c.intermediate_size = mlp_channels;
  c.head_dim_key = c.num_attention_heads * hd == c.hidden_size ? 0 : hd;
  c.compression = CompressionConfig{};
  c.validate("pruned config");
  return c;
}

namespace {

double sq(double v) { return v * v; }

// Squared norms of the rows of W[N, K] and of its columns.
void row_col_squares(const std::vector<float>& w, int64_t n, int64_t k, std::vector<double>* rows, std::vector<double>* cols) {
  if (rows) rows->assign(size_t(n), 0.0);
  if (cols) cols->assign(size_t(k), 0.0);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c) {
      const double v = sq(w[size_t(r * k + c)]);
      if (rows) (*rows)[size_t(r)] += v;
      if (cols) (*cols)[size_t(c)] += v;
    }
}

// Indices of the `keep` largest values, ascending (ties: the lower index).
std::vector<int> top_indices(const std::vector<double>& v, int keep) {
  std::vector<int> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return v[size_t(a)] > v[size_t(b)]; });
  idx.resize(size_t(keep));
  std::sort(idx.begin(), idx.end());
  return idx;
}

double sum_at(const std::vector<double>& v, const std::vector<int>& idx) {
  double s = 0;
  for (int i : idx) s += v[size_t(i)];
  return s;
}

std::string layer_prefix(int l) { return "model.layers." + std::to_string(l) + "."; }

// A number as a user typed it (0.6, not 0.600000).
std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

}  // namespace

Importance structured_importance(const SourceModel& src, ScoreMethod m, const InputSquares* squares) {
  const ModelConfig& cfg = src.cfg;
  const int H = cfg.num_attention_heads, G = cfg.num_key_value_heads, r = H / G, hd = cfg.head_dim();
  const int64_t D = cfg.hidden_size, F = cfg.intermediate_size, Q = cfg.q_dim();
  if (m == ScoreMethod::Wanda && !squares) throw ModelError("structured_importance: wanda needs calibration norms");
  Importance imp;
  for (int l = 0; l < cfg.num_hidden_layers; ++l) {
    const std::string p = layer_prefix(l);
    std::vector<double> groups(size_t(G), 0.0), chans(size_t(F), 0.0);
    std::vector<double> o_cols;
    const std::vector<float> wo = src.read_f32(p + "self_attn.o_proj.weight");
    row_col_squares(wo, D, Q, nullptr, &o_cols);
    std::vector<double> down_cols;
    const std::vector<float> wdown = src.read_f32(p + "mlp.down_proj.weight");
    row_col_squares(wdown, D, F, nullptr, &down_cols);
    if (m == ScoreMethod::Magnitude) {
      std::vector<double> q_rows, k_rows, v_rows, gate_rows, up_rows;
      row_col_squares(src.read_f32(p + "self_attn.q_proj.weight"), Q, D, &q_rows, nullptr);
      row_col_squares(src.read_f32(p + "self_attn.k_proj.weight"), int64_t(G) * hd, D, &k_rows, nullptr);
      row_col_squares(src.read_f32(p + "self_attn.v_proj.weight"), int64_t(G) * hd, D, &v_rows, nullptr);
      row_col_squares(src.read_f32(p + "mlp.gate_proj.weight"), F, D, &gate_rows, nullptr);
      row_col_squares(src.read_f32(p + "mlp.up_proj.weight"), F, D, &up_rows, nullptr);
      for (int g = 0; g < G; ++g) {
        for (int i = g * hd; i < (g + 1) * hd; ++i) groups[size_t(g)] += k_rows[size_t(i)] + v_rows[size_t(i)];
        for (int i = g * r * hd; i < (g + 1) * r * hd; ++i) groups[size_t(g)] += q_rows[size_t(i)] + o_cols[size_t(i)];
      }
      for (int64_t j = 0; j < F; ++j) chans[size_t(j)] = gate_rows[size_t(j)] + up_rows[size_t(j)] + down_cols[size_t(j)];
    } else {
      const std::vector<double>& xo = squares->at(p + "self_attn.o_proj");
      const std::vector<double>& xd = squares->at(p + "mlp.down_proj");
      for (int g = 0; g < G; ++g)
        for (int i = g * r * hd; i < (g + 1) * r * hd; ++i)
          groups[size_t(g)] += std::sqrt(xo[size_t(i)]) * std::sqrt(o_cols[size_t(i)]);
      for (int64_t j = 0; j < F; ++j) chans[size_t(j)] = std::sqrt(xd[size_t(j)]) * std::sqrt(down_cols[size_t(j)]);
    }
    imp.kv_groups.push_back(std::move(groups));
    imp.mlp_channels.push_back(std::move(chans));
  }
  return imp;
}

StructuredPlan plan_with_counts(const ModelConfig& cfg, const Importance& imp, int kv_groups, int mlp_channels) {
  if (kv_groups < 1 || kv_groups > cfg.num_key_value_heads)
    throw ModelError("structured plan: " + std::to_string(kv_groups) + " KV groups is outside [1, " +
                     std::to_string(cfg.num_key_value_heads) + "]");
  if (mlp_channels < 1 || mlp_channels > cfg.intermediate_size)
    throw ModelError("structured plan: " + std::to_string(mlp_channels) + " MLP channels is outside [1, " +
                     std::to_string(cfg.intermediate_size) + "]");
  StructuredPlan p;
  for (int l = 0; l < cfg.num_hidden_layers; ++l) {
    p.kv_groups.push_back(top_indices(imp.kv_groups[size_t(l)], kv_groups));
    p.mlp_channels.push_back(top_indices(imp.mlp_channels[size_t(l)], mlp_channels));
  }
  return p;
}

StructuredPlan plan_structured(const ModelConfig& cfg, const Importance& imp, double target, int context, int mlp_multiple,
                               int kv_groups) {
  if (!(target > 0.0 && target < 1.0))
    throw ModelError("--target-flop-reduction " + num(target) + " is outside (0, 1)");
  const int G = cfg.num_key_value_heads, F = cfg.intermediate_size;
  if (kv_groups < 0 || kv_groups > G)
    throw ModelError("--keep-kv-groups " + std::to_string(kv_groups) + " is outside [1, " + std::to_string(G) +
                     "] (num_key_value_heads)");
  const int mult = std::max(1, std::min(mlp_multiple, F));
  const int64_t dense = flops_per_token(cfg, context).total();
  const auto budget = static_cast<int64_t>(std::floor((1.0 - target) * double(dense)));
  // Dense FLOPs of each block per layer, to weigh the two importance shares.
  const double D = cfg.hidden_size, Q = cfg.q_dim(), KV = cfg.kv_dim();
  const double mlp_flops = 2.0 * 3.0 * D * F;
  const double attn_flops = 2.0 * (2.0 * Q * D + 2.0 * KV * D) + 4.0 * Q * context;
  const double w_attn = attn_flops / (attn_flops + mlp_flops), w_mlp = 1.0 - w_attn;
  double total_attn = 0, total_mlp = 0;
  for (int l = 0; l < cfg.num_hidden_layers; ++l) {
    for (double v : imp.kv_groups[size_t(l)]) total_attn += v;
    for (double v : imp.mlp_channels[size_t(l)]) total_mlp += v;
  }
  int best_g = 0, best_f = 0;
  double best_share = -1;
  int64_t smallest = -1;
  for (int g = G; g >= 1; --g) {
    if (kv_groups > 0 && g != kv_groups) continue;
    // FLOPs are affine in the channel count: base + slope * f.
    const int64_t f1 = flops_per_token(pruned_config(cfg, g, 1), context).total();
    const int64_t slope = F > 1 ? flops_per_token(pruned_config(cfg, g, 2), context).total() - f1 : 0;
    const int64_t base = f1 - slope;
    if (smallest < 0 || base + slope * mult < smallest) smallest = base + slope * mult;
    if (base + slope * mult > budget) continue;
    int f = slope > 0 ? int(std::min<int64_t>(F, (budget - base) / slope)) : F;
    f -= f % mult;
    const StructuredPlan p = plan_with_counts(cfg, imp, g, f);
    double kept_attn = 0, kept_mlp = 0;
    for (int l = 0; l < cfg.num_hidden_layers; ++l) {
      kept_attn += sum_at(imp.kv_groups[size_t(l)], p.kv_groups[size_t(l)]);
      kept_mlp += sum_at(imp.mlp_channels[size_t(l)], p.mlp_channels[size_t(l)]);
    }
    const double share = w_attn * (total_attn > 0 ? kept_attn / total_attn : double(g) / G) +
                         w_mlp * (total_mlp > 0 ? kept_mlp / total_mlp : double(f) / F);
    if (share > best_share) {
      best_share = share;
      best_g = g;
      best_f = f;
    }
  }
  if (best_g == 0)
    throw ModelError("--target-flop-reduction " + num(target) + " is unreachable at context " +
                     std::to_string(context) + ": keeping " + std::to_string(kv_groups > 0 ? kv_groups : 1) + " KV group(s) and " +
                     std::to_string(mult) + " MLP channels per layer still costs " +
                     std::to_string(smallest) + " FLOPs/token of " + std::to_string(dense) + " (reduction " +
                     num(1.0 - double(smallest) / double(dense)) + "; lm_head and embeddings are not pruned)");
  return plan_with_counts(cfg, imp, best_g, best_f);
}

void write_structured(const SourceModel& src, const StructuredPlan& plan, const fs::path& out, bool overwrite) {
  const ModelConfig& cfg = src.cfg;
  const int r = cfg.num_attention_heads / cfg.num_key_value_heads, hd = cfg.head_dim();
  const int g = int(plan.kv_groups.at(0).size()), f = int(plan.mlp_channels.at(0).size());
  for (int l = 0; l < cfg.num_hidden_layers; ++l)
    if (int(plan.kv_groups.at(size_t(l)).size()) != g || int(plan.mlp_channels.at(size_t(l)).size()) != f)
      throw ModelError("write_structured: layer " + std::to_string(l) + " keeps a different count than layer 0");
  const ModelConfig pc = pruned_config(cfg, g, f);
  prepare_output_dir(out, src.dir, overwrite);

  // Rows (of W[N, K]) each pruned tensor keeps, or columns for o_proj / down_proj.
  auto head_rows = [&](int l) {
    std::vector<int64_t> rows;
    for (int grp : plan.kv_groups[size_t(l)])
      for (int h = grp * r; h < (grp + 1) * r; ++h)
        for (int i = 0; i < hd; ++i) rows.push_back(int64_t(h) * hd + i);
    return rows;
  };
  auto kv_rows = [&](int l) {
    std::vector<int64_t> rows;
    for (int grp : plan.kv_groups[size_t(l)])
      for (int i = 0; i < hd; ++i) rows.push_back(int64_t(grp) * hd + i);
    return rows;
  };
  auto channels = [&](int l) {
    return std::vector<int64_t>(plan.mlp_channels[size_t(l)].begin(), plan.mlp_channels[size_t(l)].end());
  };

  std::vector<TensorSpec> specs;
  for (const std::string& n : expected_tensor_names(pc)) specs.push_back({n, src.dtype(n), expected_tensor_shape(pc, n)});
  write_model_dir(
      out, pc.to_json(), specs,
      [&](const TensorSpec& spec, void* dst, size_t nbytes) {
        const std::string& n = spec.name;
        const auto* s = static_cast<const uint8_t*>(src.store.view(n).data);
        auto* d = static_cast<uint8_t*>(dst);
        const size_t es = kernels::dtype_size(spec.dtype);
        const std::vector<int64_t>& in_shape = src.store.info(n).shape;
        std::vector<int64_t> keep_rows, keep_cols;
        if (n.rfind("model.layers.", 0) == 0) {
          const int l = std::stoi(n.substr(13));
          if (n.find("q_proj") != std::string::npos) keep_rows = head_rows(l);
          if (n.find("k_proj") != std::string::npos || n.find("v_proj") != std::string::npos) keep_rows = kv_rows(l);
          if (n.find("o_proj") != std::string::npos) keep_cols = head_rows(l);
          if (n.find("gate_proj") != std::string::npos || n.find("up_proj") != std::string::npos) keep_rows = channels(l);
          if (n.find("down_proj") != std::string::npos) keep_cols = channels(l);
        }
        if (!keep_rows.empty()) {
          const size_t row = size_t(in_shape[1]) * es;
          for (size_t i = 0; i < keep_rows.size(); ++i) std::memcpy(d + i * row, s + size_t(keep_rows[i]) * row, row);
        } else if (!keep_cols.empty()) {
          const int64_t K = in_shape[1];
          size_t o = 0;
          for (int64_t rr = 0; rr < in_shape[0]; ++rr)
            for (int64_t c : keep_cols) {
              std::memcpy(d + o, s + size_t(rr * K + c) * es, es);
              o += es;
            }
        } else {
          std::memcpy(d, s, nbytes);
        }
      },
      {{"format", "pt"}, {"generator", "claimbench refengine prune structured"}});
}

json StructuredReport::to_json() const {
  auto shape = [](const ModelConfig& c) {
    return json{{"num_attention_heads", c.num_attention_heads}, {"num_key_value_heads", c.num_key_value_heads},
                {"head_dim", c.head_dim()},   {"intermediate_size", c.intermediate_size},
                {"parameters", c.parameter_count()}};
  };
  auto flops = [](const FlopCount& f) {
    return json{{"matmul", f.matmul}, {"attention", f.attention}, {"total", f.total()}, {"context", f.context}};
  };
  return {{"dense", shape(dense)},
          {"pruned", shape(pruned)},
          {"flops_per_token_dense", flops(dense_flops)},
          {"flops_per_token_pruned", flops(pruned_flops)},
          {"flop_reduction", flop_reduction()},
          {"matmul_flop_reduction", matmul_flop_reduction()},
          {"target_flop_reduction", target},
          {"parameter_reduction", 1.0 - double(pruned.parameter_count()) / double(dense.parameter_count())},
          {"source_model_file_bytes", source_bytes},
          {"output_model_file_bytes", output_bytes},
          {"logits_vs_source", logits_vs_source}};
}

StructuredReport prune_structured_model(const fs::path& source, const fs::path& out, const StructuredOptions& opt) {
  if (!(opt.target_flop_reduction > 0.0 && opt.target_flop_reduction < 1.0))
    throw ModelError("--target-flop-reduction " + num(opt.target_flop_reduction) + " is outside (0, 1)");
  if (opt.context < 0) throw ModelError("--context " + std::to_string(opt.context) + " is negative");
  const SourceModel src = SourceModel::open(source);
  src.require_float_linears("prune --method structured");
  if (src.cfg.compression.present())
    throw ModelError((source / "config.json").string() + ": key 'quantization_config': structured pruning needs a plain "
                     "dense model (removing channels would break a 2:4 pattern)");
  InputSquares squares;
  if (opt.scores == ScoreMethod::Wanda) squares = calibrate_input_squares(src, opt.calib);
  const Importance imp = structured_importance(src, opt.scores, opt.scores == ScoreMethod::Wanda ? &squares : nullptr);
  const StructuredPlan plan =
      plan_structured(src.cfg, imp, opt.target_flop_reduction, opt.context, opt.mlp_multiple, opt.kv_groups);
  write_structured(src, plan, out, opt.overwrite);

  StructuredReport rep;
  rep.dense = src.cfg;
  rep.pruned = pruned_config(src.cfg, int(plan.kv_groups[0].size()), int(plan.mlp_channels[0].size()));
  rep.dense_flops = flops_per_token(rep.dense, opt.context);
  rep.pruned_flops = flops_per_token(rep.pruned, opt.context);
  rep.target = opt.target_flop_reduction;
  rep.source_bytes = model_file_bytes(source);
  rep.output_bytes = model_file_bytes(out);
  rep.logits_vs_source = compare_logits_default(source, out, src.cfg, opt.eval_backend);
  json rec = {{"method", "structured"},
              {"tool", "refengine prune"},
              {"scheme",
               {{"units", "whole KV groups (a KV head and its query heads) and MLP intermediate channels; same count per layer"},
                {"scores", opt.scores == ScoreMethod::Wanda
                               ? "wanda: group = sum over its o_proj input columns of ||X_col||*||W_col||; channel = "
                                 "||X_down col||*||W_down col|| (calibration forward)"
                               : "magnitude: squared weights a group / channel owns"},
                {"flops", "matmuls 2*N*K per token incl. lm_head + attention 4*heads*head_dim*context per layer"},
                {"mlp_multiple", opt.mlp_multiple},
                {"kv_groups", opt.kv_groups > 0 ? "fixed by --keep-kv-groups" : "chosen with the channel count"}}},
              {"kept", {{"kv_groups", plan.kv_groups}, {"mlp_channels", plan.mlp_channels}}},
              {"source", provenance(src)},
              {"result", rep.to_json()}};
  if (opt.scores == ScoreMethod::Wanda) rec["calibration"] = opt.calib.to_json();
  write_compression_json(out, rec);
  return rep;
}

}  // namespace cb::engine::compress
