// Binding Hugging Face LLaMA tensor names to the engine's weight structs, checked against the config.
#include "cb/engine/weights.h"

#include <string>

#include "cb/engine/errors.h"

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

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

class Binder {
 public:
  Binder(const WeightStore& store, const ModelConfig& cfg) : store_(store), cfg_(cfg) {}

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

 private:
  const WeightStore& store_;
  const ModelConfig& cfg_;
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
  const int64_t V = cfg.vocab_size, D = cfg.hidden_size, F = cfg.intermediate_size, KV = cfg.kv_dim();
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
      if (suffix == "self_attn.q_proj.weight" || suffix == "self_attn.o_proj.weight") return {D, D};
      if (suffix == "self_attn.k_proj.weight" || suffix == "self_attn.v_proj.weight") return {KV, D};
      if (suffix == "mlp.gate_proj.weight" || suffix == "mlp.up_proj.weight") return {F, D};
      if (suffix == "mlp.down_proj.weight") return {D, F};
    }
  }
  throw ModelError("tensor '" + name + "': not a weight of this LLaMA config (" +
                   std::to_string(cfg.num_hidden_layers) + " layers)");
}

ModelWeights bind_weights(const WeightStore& store, const ModelConfig& cfg) {
  cfg.validate("bind_weights: config");
  Binder b(store, cfg);
  ModelWeights w;
  w.embed = b.tensor("model.embed_tokens.weight");
  w.layers.resize(static_cast<size_t>(cfg.num_hidden_layers));
  for (int i = 0; i < cfg.num_hidden_layers; ++i) {
    const std::string p = layer_prefix(i);
    LayerWeights& l = w.layers[static_cast<size_t>(i)];
    l.attn_norm = b.tensor(p + "input_layernorm.weight");
    l.wq = b.weight(p + "self_attn.q_proj.weight");
    l.wk = b.weight(p + "self_attn.k_proj.weight");
    l.wv = b.weight(p + "self_attn.v_proj.weight");
    l.wo = b.weight(p + "self_attn.o_proj.weight");
    l.ffn_norm = b.tensor(p + "post_attention_layernorm.weight");
    l.w_gate = b.weight(p + "mlp.gate_proj.weight");
    l.w_up = b.weight(p + "mlp.up_proj.weight");
    l.w_down = b.weight(p + "mlp.down_proj.weight");
  }
  w.final_norm = b.tensor("model.norm.weight");
  // Tied: the embedding doubles as the lm_head (HF ignores a stored lm_head.weight then, too).
  w.lm_head = cfg.tie_word_embeddings ? kernels::Weight::dense(w.embed) : b.weight("lm_head.weight");
  w.bytes = b.bytes();
  return w;
}

}  // namespace cb::engine
