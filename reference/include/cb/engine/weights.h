// The model's weights bound to Hugging Face LLaMA tensor names, validated against the config.
#pragma once

#include <vector>

#include "cb/engine/config.h"
#include "cb/engine/safetensors.h"
#include "cb/kernels/tensor.h"

namespace cb::engine {

struct LayerWeights {
  kernels::Tensor attn_norm;  // model.layers.{i}.input_layernorm.weight            [D]
  kernels::Weight wq;         // model.layers.{i}.self_attn.q_proj.weight           [D, D]
  kernels::Weight wk;         // model.layers.{i}.self_attn.k_proj.weight           [KV, D]
  kernels::Weight wv;         // model.layers.{i}.self_attn.v_proj.weight           [KV, D]
  kernels::Weight wo;         // model.layers.{i}.self_attn.o_proj.weight           [D, D]
  kernels::Tensor ffn_norm;   // model.layers.{i}.post_attention_layernorm.weight   [D]
  kernels::Weight w_gate;     // model.layers.{i}.mlp.gate_proj.weight              [F, D]
  kernels::Weight w_up;       // model.layers.{i}.mlp.up_proj.weight                [F, D]
  kernels::Weight w_down;     // model.layers.{i}.mlp.down_proj.weight              [D, F]
};

struct ModelWeights {
  kernels::Tensor embed;       // model.embed_tokens.weight  [V, D]
  std::vector<LayerWeights> layers;
  kernels::Tensor final_norm;  // model.norm.weight          [D]
  kernels::Weight lm_head;     // lm_head.weight [V, D], or the embedding when tied
  size_t bytes = 0;            // weight bytes as stored
};

// Binds every tensor the config implies; throws ModelError naming the tensor for a missing
// tensor, a shape that disagrees with the config (expected vs found), or an unsupported dtype.
ModelWeights bind_weights(const WeightStore& store, const ModelConfig& cfg);

// Tensor names the config implies, in a stable order (used by the writer and the checker).
std::vector<std::string> expected_tensor_names(const ModelConfig& cfg);
std::vector<int64_t> expected_tensor_shape(const ModelConfig& cfg, const std::string& name);

}  // namespace cb::engine
