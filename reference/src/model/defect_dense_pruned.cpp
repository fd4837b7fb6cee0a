// Planted defect dense-pruned (planted_defects.h): a structurally pruned model loaded back at its
// dense shape, with zero rows and columns where heads and channels were removed. The outputs do
// not change (a zero query head attends uniformly over zero values; a zero channel's SiLU(0) * 0
// is 0), but every matmul and attention call runs at the dense size: the bug a pruning that only
// masks would have, which a FLOP count taken from the plan cannot see.
#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "cb/engine/model/errors.h"
#include "cb/engine/model/planted_defects.h"

namespace cb::engine {
namespace {

// Copies W[n, k] into a zeroed [n2, k2] buffer (top-left), owned by `w`.
kernels::Weight pad(const kernels::Weight& x, int64_t n2, int64_t k2, ModelWeights& w, const std::string& what) {
  if (x.layout != kernels::WeightLayout::Dense)
    throw ModelError("planted defect dense-pruned: " + what + " is not a dense float weight");
  const size_t es = kernels::dtype_size(x.values.dtype);
  auto buf = std::make_shared<std::vector<uint8_t>>(size_t(n2 * k2) * es, 0);
  const auto* src = static_cast<const uint8_t*>(x.values.data);
  for (int64_t r = 0; r < x.n; ++r) std::memcpy(buf->data() + size_t(r * k2) * es, src + size_t(r * x.k) * es, size_t(x.k) * es);
  w.owned.push_back(buf);
  w.bytes += buf->size() - size_t(x.n * x.k) * es;
  return kernels::Weight::dense(kernels::Tensor(buf->data(), x.values.dtype, {n2, k2}));
}

}  // namespace

void pad_pruned_to_dense(const std::filesystem::path& dir, ModelConfig& cfg, ModelWeights& w) {
  const std::filesystem::path rec_path = dir / "compression.json";
  if (!std::filesystem::exists(rec_path)) return;
  std::ifstream in(rec_path);
  const nlohmann::json rec = nlohmann::json::parse(in, nullptr, false);
  if (rec.is_discarded() || rec.value("method", "") != "structured" || !rec.contains("result") ||
      !rec["result"].contains("dense"))
    return;
  const nlohmann::json& d = rec["result"]["dense"];
  ModelConfig dense = cfg;
  dense.num_attention_heads = d.at("num_attention_heads").get<int>();
  dense.num_key_value_heads = d.at("num_key_value_heads").get<int>();
  dense.intermediate_size = d.at("intermediate_size").get<int>();
  const int hd = cfg.head_dim();
  dense.head_dim_key = dense.num_attention_heads * hd == dense.hidden_size ? 0 : hd;
  dense.validate((rec_path.string() + ": result.dense").c_str());
  if (dense.num_attention_heads < cfg.num_attention_heads || dense.num_key_value_heads < cfg.num_key_value_heads ||
      dense.intermediate_size < cfg.intermediate_size || dense.head_dim() != hd ||
      dense.num_attention_heads / dense.num_key_value_heads != cfg.num_attention_heads / cfg.num_key_value_heads)
    throw ModelError(rec_path.string() + ": result.dense is not a superset of the pruned config");
  const int64_t D = cfg.hidden_size, Q = dense.q_dim(), KV = dense.kv_dim(), F = dense.intermediate_size;
  for (size_t l = 0; l < w.layers.size(); ++l) {
    LayerWeights& L = w.layers[l];
    const std::string at = "layer " + std::to_string(l) + " ";
    // Kept heads stay first, so padded query heads map to padded KV heads (grouped-query layout).
    L.wq = pad(L.wq, Q, D, w, at + "q_proj");
    L.wk = pad(L.wk, KV, D, w, at + "k_proj");
    L.wv = pad(L.wv, KV, D, w, at + "v_proj");
    L.wo = pad(L.wo, D, Q, w, at + "o_proj");
    L.w_gate = pad(L.w_gate, F, D, w, at + "gate_proj");
    L.w_up = pad(L.w_up, F, D, w, at + "up_proj");
    L.w_down = pad(L.w_down, D, F, w, at + "down_proj");
  }
  cfg = dense;
}

}  // namespace cb::engine
