// Binding Hugging Face LLaMA tensor names to the engine's weight structs, checked against the config.
#include "cb/engine/model/weights.h"

#include <cmath>
#include <string>

#include "cb/engine/model/sparse24.h"
#include "cb/engine/model/errors.h"

namespace cb::engine {
namespace {

using kernels::DType;

std::string layer_prefix(int i) { return "model.layers." + std::to_string(i) + "."; }

// Per-layer tensor suffixes, in the order HF checkpoints list them.
const char* const kLayerSuffixes[] = {
    "input_layernorm.weight",      "self_attn.q_proj.weight", "self_attn.k_proj.weight",
    "self_attn.v_proj.weight",     "self_attn.o_proj.weight", "post_attention_layernorm.weight",
    "mlp.gate_proj.weight",        "mlp.up_proj.weight",      "mlp.down_proj.weight",
};

class Binder {
 public:
  Binder(const WeightStore& store, const ModelConfig& cfg, ModelWeights& out) : store_(store), cfg_(cfg), out_(out) {}

  kernels::Tensor tensor(const std::string& name) {
    const std::string where = store_.path_of(name).string() + ": tensor '" + name + "': ";
    if (!store_.has(name)) throw ModelError(where + "missing");
    const TensorInfo& ti = store_.info(name);
    const std::vector<int64_t> want = expected_tensor_shape(cfg_, name);
    if (ti.shape != want)
      throw ModelError(where + "shape " + shape_str(ti.shape) + " but config implies " + shape_str(want));
    if (ti.dtype != DType::F32 && ti.dtype != DType::F16 && ti.dtype != DType::BF16)
      throw ModelError(where + "dtype " + safetensors_dtype_name(ti.dtype) +
                       " is unsupported for dense weights (expected F32, F16 or BF16)");
    bytes_ += ti.end - ti.begin;
    return store_.view(name);
  }
  kernels::Weight weight(const std::string& name) { return kernels::Weight::dense(tensor(name)); }
  size_t bytes() const { return bytes_; }

  // Linear module `m` (name without ".weight") as config.json's quantization_config stores it.
  kernels::Weight linear(const std::string& m) {
    if (cfg_.compression.quantizes(m)) return int8(m);
    if (cfg_.compression.sparse_compressed(m)) return sparse24(m);
    return weight(m + ".weight");
  }

 private:
  std::string where(const std::string& name) const { return store_.path_of(name).string() + ": tensor '" + name + "': "; }

  // A tensor the quantization_config implies: present, of this dtype and one of these shapes.
  const TensorInfo& stored(const std::string& name, const std::string& why, std::initializer_list<DType> dtypes,
                           const std::vector<std::vector<int64_t>>& shapes) {
    if (!store_.has(name)) throw ModelError(where(name) + "missing (" + why + ")");
    const TensorInfo& ti = store_.info(name);
    bool dtype_ok = false;
    std::string want_dtypes;
    for (DType d : dtypes) {
      dtype_ok = dtype_ok || ti.dtype == d;
      want_dtypes += std::string(want_dtypes.empty() ? "" : " or ") + safetensors_dtype_name(d);
    }
    if (!dtype_ok)
      throw ModelError(where(name) + "dtype " + safetensors_dtype_name(ti.dtype) + " but " + why + " needs " + want_dtypes);
    bool shape_ok = false;
    for (const auto& sh : shapes) shape_ok = shape_ok || ti.shape == sh;
    if (!shape_ok) throw ModelError(where(name) + "shape " + shape_str(ti.shape) + " but " + why + " implies " + shape_str(shapes.front()));
    bytes_ += ti.end - ti.begin;
    return ti;
  }

  // compressed-tensors int-quantized: `.weight` i8 [N, K], `.weight_scale` f32 [N, 1] (or [N]).
  kernels::Weight int8(const std::string& m) {
    const std::vector<int64_t> shape = expected_tensor_shape(cfg_, m + ".weight");
    const int64_t N = shape[0], K = shape[1];
    const std::string why = "quantization_config makes '" + m + "' INT8 per-channel";
    stored(m + ".weight", why, {DType::I8}, {shape});
    stored(m + ".weight_scale", why, {DType::F32}, {{N, 1}, {N}});
    kernels::Weight w;
    w.layout = kernels::WeightLayout::Int8PerChannel;
    w.values = store_.view(m + ".weight");
    w.scales = store_.view(m + ".weight_scale");
    w.scales.ndim = 1;
    w.scales.shape = {N, 0, 0, 0};
    for (int64_t r = 0; r < N; ++r) {
      const float sc = w.scales.as<const float>()[r];
      if (!std::isfinite(sc) || !(sc > 0.f))
        throw ModelError(where(m + ".weight_scale") + "row " + std::to_string(r) + ": scale " + std::to_string(sc) +
                         " is not a positive finite number");
    }
    w.n = N;
    w.k = K;
    // W8A8: the kernels quantize each row of x per token at call time (int8_scheme.h).
    if (cfg_.compression.int8_dynamic_activations) w.act_quant = kernels::ActQuant::PerTokenInt8;
    return w;
  }

  // compressed-tensors sparse-24-bitmask: `.compressed` [N, K/2] (float), `.bitmask` [N, ceil(K/8)]
  // U8 (packed bits, little bit order), `.shape` = [N, K] as I64 [2, 1]. Exports written before U8 /
  // I64 support used I8 / I32: the same bits and values, still read.
  kernels::Weight sparse24(const std::string& m) {
    const std::vector<int64_t> shape = expected_tensor_shape(cfg_, m + ".weight");
    const int64_t N = shape[0], K = shape[1];
    const std::string why = "sparsity_config makes '" + m + "' sparse-24-bitmask";
    if (K % 4 != 0)
      throw ModelError(store_.source().string() + ": module '" + m + "': K = " + std::to_string(K) +
                       " is not divisible by 4, so it cannot be 2:4 sparse");
    stored(m + ".compressed", why, {DType::F32, DType::F16, DType::BF16}, {{N, K / 2}});
    stored(m + ".bitmask", why, {DType::U8, DType::I8}, {{N, (K + 7) / 8}});
    stored(m + ".shape", why, {DType::I64, DType::I32}, {{2, 1}, {2}});
    const kernels::Tensor sv = store_.view(m + ".shape");
    const int64_t dims[2] = {sv.dtype == DType::I64 ? sv.as<const int64_t>()[0] : sv.as<const int32_t>()[0],
                             sv.dtype == DType::I64 ? sv.as<const int64_t>()[1] : sv.as<const int32_t>()[1]};
    if (dims[0] != N || dims[1] != K)
      throw ModelError(where(m + ".shape") + "holds [" + std::to_string(dims[0]) + ", " + std::to_string(dims[1]) +
                       "] but the config implies " + shape_str(shape));
    const auto* bits = store_.view(m + ".bitmask").as<const uint8_t>();
    const std::vector<uint8_t> mask = compress::unpack_bitmask(bits, N, K);
    auto meta = std::make_shared<std::vector<uint8_t>>(compress::meta_from_mask(mask.data(), N, K, where(m + ".bitmask")));
    out_.owned.push_back(meta);
    kernels::Weight w;
    w.layout = kernels::WeightLayout::Sparse24;
    w.values = store_.view(m + ".compressed");
    w.meta = kernels::Tensor(meta->data(), DType::I8, {N, K / 4});
    w.n = N;
    w.k = K;
    return w;
  }

  const WeightStore& store_;
  const ModelConfig& cfg_;
  ModelWeights& out_;
  size_t bytes_ = 0;
};

}  // namespace

std::vector<std::string> expected_tensor_names(const ModelConfig& cfg) {
  std::vector<std::string> names;
  names.reserve(3 + static_cast<size_t>(cfg.num_hidden_layers) * std::size(kLayerSuffixes));
  names.push_back("model.embed_tokens.weight");
  for (int i = 0; i < cfg.num_hidden_layers; ++i)
    for (const char* s : kLayerSuffixes) names.push_back(layer_prefix(i) + s);
  names.push_back("model.norm.weight");
  if (!cfg.tie_word_embeddings) names.push_back("lm_head.weight");
  return names;
}

std::vector<int64_t> expected_tensor_shape(const ModelConfig& cfg, const std::string& name) {
  const int64_t V = cfg.vocab_size, D = cfg.hidden_size, F = cfg.intermediate_size, KV = cfg.kv_dim(), Q = cfg.q_dim();
  if (name == "model.embed_tokens.weight" || name == "lm_head.weight") return {V, D};
  if (name == "model.norm.weight") return {D};
  const std::string prefix = "model.layers.";
  if (name.compare(0, prefix.size(), prefix) == 0) {
    size_t pos = prefix.size(), end = pos;
    while (end < name.size() && name[end] >= '0' && name[end] <= '9') ++end;
    const bool index_ok = end > pos && end - pos <= 9 && end < name.size() && name[end] == '.' &&
                          (end - pos == 1 || name[pos] != '0');
    if (index_ok && std::stoi(name.substr(pos, end - pos)) < cfg.num_hidden_layers) {
      const std::string suffix = name.substr(end + 1);
      if (suffix == "input_layernorm.weight" || suffix == "post_attention_layernorm.weight") return {D};
      if (suffix == "self_attn.q_proj.weight") return {Q, D};
      if (suffix == "self_attn.o_proj.weight") return {D, Q};
      if (suffix == "self_attn.k_proj.weight" || suffix == "self_attn.v_proj.weight") return {KV, D};
      if (suffix == "mlp.gate_proj.weight" || suffix == "mlp.up_proj.weight") return {F, D};
      if (suffix == "mlp.down_proj.weight") return {D, F};
    }
  }
  throw ModelError("tensor '" + name + "': not a weight of this LLaMA config (" +
                   std::to_string(cfg.num_hidden_layers) + " layers)");
}

std::vector<std::string> linear_module_names(const ModelConfig& cfg) {
  std::vector<std::string> names;
  for (int i = 0; i < cfg.num_hidden_layers; ++i)
    for (const char* s : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
                          "mlp.up_proj", "mlp.down_proj"})
      names.push_back(layer_prefix(i) + s);
  if (!cfg.tie_word_embeddings) names.push_back("lm_head");
  return names;
}

ModelWeights bind_weights(const WeightStore& store, const ModelConfig& cfg) {
  cfg.validate("bind_weights: config");
  ModelWeights w;
  Binder b(store, cfg, w);
  w.embed = b.tensor("model.embed_tokens.weight");
  w.layers.resize(static_cast<size_t>(cfg.num_hidden_layers));
  for (int i = 0; i < cfg.num_hidden_layers; ++i) {
    const std::string p = layer_prefix(i);
    LayerWeights& l = w.layers[static_cast<size_t>(i)];
    l.attn_norm = b.tensor(p + "input_layernorm.weight");
    l.wq = b.linear(p + "self_attn.q_proj");
    l.wk = b.linear(p + "self_attn.k_proj");
    l.wv = b.linear(p + "self_attn.v_proj");
    l.wo = b.linear(p + "self_attn.o_proj");
    l.ffn_norm = b.tensor(p + "post_attention_layernorm.weight");
    l.w_gate = b.linear(p + "mlp.gate_proj");
    l.w_up = b.linear(p + "mlp.up_proj");
    l.w_down = b.linear(p + "mlp.down_proj");
  }
  w.final_norm = b.tensor("model.norm.weight");
  // Tied: the embedding doubles as the lm_head (HF ignores a stored lm_head.weight then, too).
  if (cfg.tie_word_embeddings && (cfg.compression.quantizes("lm_head") || cfg.compression.sparse_compressed("lm_head")))
    throw ModelError(store.source().string() + ": quantization_config compresses 'lm_head', but it is tied to the "
                     "embedding, which stays float (add \"lm_head\" to \"ignore\")");
  w.lm_head = cfg.tie_word_embeddings ? kernels::Weight::dense(w.embed) : b.linear("lm_head");
  w.bytes = b.bytes();
  return w;
}

}  // namespace cb::engine
