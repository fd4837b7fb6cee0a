// The model's weights bound to Hugging Face LLaMA tensor names, validated against the config.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cb/engine/model/config.h"
#include "cb/engine/model/safetensors.h"
#include "cb/kernels/tensor.h"

namespace cb::engine {

// Linear weights are dense, or stored as config.json "quantization_config" says (config.h):
// INT8 modules become Int8PerChannel weights (`.weight` i8 [N, K], `.weight_scale` f32 [N, 1] viewed
// as [N]), sparse-24-bitmask modules become Sparse24 weights (`.compressed` [N, K/2] used in place,
// the 2-bit metadata derived from `.bitmask` at load and owned by ModelWeights).
// Q = num_attention_heads * head_dim (= D unless heads were pruned).
struct LayerWeights {
  kernels::Tensor attn_norm;  // model.layers.{i}.input_layernorm.weight            [D]
  kernels::Weight wq;         // model.layers.{i}.self_attn.q_proj.weight           [Q, D]
  kernels::Weight wk;         // model.layers.{i}.self_attn.k_proj.weight           [KV, D]
  kernels::Weight wv;         // model.layers.{i}.self_attn.v_proj.weight           [KV, D]
  kernels::Weight wo;         // model.layers.{i}.self_attn.o_proj.weight           [D, Q]
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
  // Buffers derived at load time (2:4 metadata), kept alive with the views that point into them.
  std::vector<std::shared_ptr<std::vector<uint8_t>>> owned;
};

// Binds every tensor the config implies; throws ModelError naming the tensor for a missing
// tensor, a shape that disagrees with the config (expected vs found), or an unsupported dtype.
ModelWeights bind_weights(const WeightStore& store, const ModelConfig& cfg);

// Tensor names the config implies, in a stable order (used by the writer and the checker).
std::vector<std::string> expected_tensor_names(const ModelConfig& cfg);
std::vector<int64_t> expected_tensor_shape(const ModelConfig& cfg, const std::string& name);

// The linear modules (names without ".weight") in checkpoint order: per layer q, k, v, o, gate, up,
// down, then "lm_head" when it is not tied to the embedding.
std::vector<std::string> linear_module_names(const ModelConfig& cfg);

}  // namespace cb::engine
