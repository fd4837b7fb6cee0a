// 2:4 semi-structured pruning: the model-level pass that writes a dense-with-zeros or a
// sparse-24-bitmask checkpoint. The mask / bitmask / metadata codecs it uses are in
// model/sparse24.cpp (cb/engine/model/sparse24.h): the loader decodes the same format.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "cb/engine/compress/export.h"
#include "cb/engine/compress/prune.h"
#include "cb/engine/model/sparse24.h"
#include "cb/engine/model/errors.h"
#include "cb/engine/model/weights.h"

namespace cb::engine::compress {
namespace fs = std::filesystem;
using kernels::DType;
using nlohmann::json;

// ---- scores and the model pass --------------------------------------------------------------

ScoreMethod parse_score_method(const std::string& s) {
  if (s == "magnitude") return ScoreMethod::Magnitude;
  if (s == "wanda") return ScoreMethod::Wanda;
  throw std::invalid_argument("--scores '" + s + "' is unknown (expected magnitude or wanda)");
}

const char* score_method_name(ScoreMethod m) { return m == ScoreMethod::Magnitude ? "magnitude" : "wanda"; }

std::vector<float> scores_24(const float* w, int64_t n, int64_t k, ScoreMethod m, const std::vector<double>* sq) {
  std::vector<float> s(size_t(n * k));
  if (m == ScoreMethod::Wanda && (!sq || int64_t(sq->size()) != k))
    throw ModelError("scores_24: wanda needs the input column norms of this layer (" + std::to_string(k) + " columns)");
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c) {
      const double a = std::fabs(double(w[r * k + c]));
      s[size_t(r * k + c)] = float(m == ScoreMethod::Wanda ? a * std::sqrt((*sq)[size_t(c)]) : a);
    }
  return s;
}

json Prune24Report::to_json() const {
  return {{"scores", score_method_name(scores)},
          {"format", compressed ? "sparse-24-bitmask" : "dense"},
          {"pruned_matrices", pruned_matrices},
          {"pruned_matrix_params", pruned_params},
          {"total_params", total_params},
          {"global_sparsity", global_sparsity},
          {"source_model_file_bytes", source_bytes},
          {"output_model_file_bytes", output_bytes},
          {"size_ratio_vs_source", output_bytes ? double(source_bytes) / double(output_bytes) : 0.0},
          {"logits_vs_source", logits_vs_source}};
}

namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
std::string strip(const std::string& s, const std::string& suffix) { return s.substr(0, s.size() - suffix.size()); }
}  // namespace

Prune24Report prune_24_model(const fs::path& source, const fs::path& out, const Prune24Options& opt) {
  const SourceModel src = SourceModel::open(source);
  src.require_float_linears("prune --method 2:4");
  // Decoder linear layers only: lm_head stays dense (as compressed-tensors' ignore says).
  std::vector<std::string> modules = linear_module_names(src.cfg);
  modules.erase(std::remove(modules.begin(), modules.end(), std::string("lm_head")), modules.end());
  for (const std::string& m : modules) {
    const int64_t K = src.store.info(m + ".weight").shape[1];
    if (K % 4 != 0)
      throw ModelError(src.store.path_of(m + ".weight").string() + ": tensor '" + m + ".weight': K = " + std::to_string(K) +
                       " is not divisible by 4 (2:4 keeps 2 of every 4 weights along the input dimension)");
  }
  InputSquares squares;
  if (opt.scores == ScoreMethod::Wanda) squares = calibrate_input_squares(src, opt.calib);
  prepare_output_dir(out, source, opt.overwrite);

  Prune24Report rep;
  rep.scores = opt.scores;
  rep.compressed = opt.compressed;
  rep.total_params = src.cfg.parameter_count();
  std::vector<TensorSpec> specs;
  for (const std::string& name : expected_tensor_names(src.cfg)) {
    const std::vector<int64_t>& shape = src.store.info(name).shape;
    const DType dt = src.dtype(name);
    const std::string m = strip(name, ".weight");
    const bool pruned = std::find(modules.begin(), modules.end(), m) != modules.end();
    if (pruned) {
      ++rep.pruned_matrices;
      rep.pruned_params += shape[0] * shape[1];
    }
    if (pruned && opt.compressed) {
      specs.push_back({m + ".compressed", dt, {shape[0], shape[1] / 2}});
      // As compressed-tensors writes them: packed bits U8, the dense shape as I64 [2, 1].
      specs.push_back({m + ".bitmask", DType::U8, {shape[0], (shape[1] + 7) / 8}});
      specs.push_back({m + ".shape", DType::I64, {2, 1}});
    } else {
      specs.push_back({name, dt, shape});
    }
  }
  rep.global_sparsity = double(rep.pruned_params / 2) / double(rep.total_params);

  ModelConfig cfg = src.cfg;
  const json sparsity = sparsity_config_json(opt.compressed ? "sparse-24-bitmask" : "dense", rep.global_sparsity);
  cfg.compression = CompressionConfig::from_json(sparsity_only_quantization_config(sparsity), "prune");

  auto mask_of = [&](const std::string& m) {
    const std::vector<float> w = src.read_f32(m + ".weight");
    const std::vector<int64_t>& shape = src.store.info(m + ".weight").shape;
    const std::vector<double>* sq = opt.scores == ScoreMethod::Wanda ? &squares.at(m) : nullptr;
    const std::vector<float> s = scores_24(w.data(), shape[0], shape[1], opt.scores, sq);
    return mask_24(s.data(), shape[0], shape[1]);
  };
  write_model_dir(
      out, cfg.to_json(), specs,
      [&](const TensorSpec& spec, void* dst, size_t nbytes) {
        const std::string& n = spec.name;
        const std::string base = ends_with(n, ".compressed") ? strip(n, ".compressed")
                                 : ends_with(n, ".bitmask")  ? strip(n, ".bitmask")
                                 : ends_with(n, ".shape")    ? strip(n, ".shape")
                                                             : strip(n, ".weight");
        const bool pruned = std::find(modules.begin(), modules.end(), base) != modules.end();
        if (!pruned) {
          std::memcpy(dst, src.store.view(n).data, nbytes);
          return;
        }
        const std::vector<int64_t>& shape = src.store.info(base + ".weight").shape;
        const int64_t N = shape[0], K = shape[1];
        if (ends_with(n, ".shape")) {
          const int64_t dims[2] = {N, K};
          std::memcpy(dst, dims, sizeof dims);
          return;
        }
        const std::vector<uint8_t> mask = mask_of(base);
        const void* dense = src.store.view(base + ".weight").data;
        const size_t es = kernels::dtype_size(src.dtype(base + ".weight"));
        std::vector<uint8_t> bytes = ends_with(n, ".bitmask")      ? pack_bitmask(mask.data(), N, K)
                                     : ends_with(n, ".compressed") ? gather_kept(dense, mask.data(), N, K, es)
                                                                   : scatter_kept(gather_kept(dense, mask.data(), N, K, es).data(),
                                                                                  mask.data(), N, K, es);
        std::memcpy(dst, bytes.data(), nbytes);
      },
      {{"format", "pt"}, {"generator", "claimbench refengine prune 2:4"}});
  rep.source_bytes = model_file_bytes(source);
  rep.output_bytes = model_file_bytes(out);
  rep.logits_vs_source = compare_logits_default(source, out, src.cfg, opt.eval_backend);

  json rec = {{"method", "2:4"},
              {"tool", "refengine prune"},
              {"scheme",
               {{"pattern", "2 of every 4 consecutive weights along K (input dimension) kept, per row"},
                {"targets", "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj of every layer"},
                {"kept_dense", "embeddings, norms, lm_head"},
                {"scores", opt.scores == ScoreMethod::Wanda ? "wanda: |W[n,k]| * ||X[:,k]||_2 over calibration tokens"
                                                            : "magnitude: |W[n,k]|"},
                {"ties", "the lower column is kept"},
                {"format", opt.compressed ? "compressed-tensors sparse-24-bitmask" : "dense (pruned weights stored as zeros)"}}},
              {"source", provenance(src)},
              {"result", rep.to_json()}};
  if (opt.scores == ScoreMethod::Wanda) rec["calibration"] = opt.calib.to_json();
  write_compression_json(out, rec);
  return rep;
}

}  // namespace cb::engine::compress
