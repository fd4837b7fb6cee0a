// Model hyper-parameters, read from and written to a Hugging Face `config.json`
// (LlamaForCausalLM keys).
#pragma once

#include <filesystem>
#include <algorithm>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace cb::engine {

// How the linear layers are stored, as config.json "quantization_config" describes it in the
// compressed-tensors convention vLLM reads (quant_method "compressed-tensors"). The engine reads
// the subset it implements and refuses the rest by key: INT8 symmetric per-channel weights
// (format "int-quantized": `<module>.weight` i8 [N, K] + `<module>.weight_scale` f32 [N, 1]),
// optionally with INT8 symmetric per-token dynamic activations (W8A8; without them W8A16), and
// 2:4 sparsity (sparsity_config format "dense": zeros kept in dense tensors, or
// "sparse-24-bitmask": `<module>.compressed` [N, K/2] + `<module>.bitmask` [N, ceil(K/8)] +
// `<module>.shape`).
struct CompressionConfig {
  bool int8_weights = false;
  bool int8_dynamic_activations = false;  // W8A8 when set, W8A16 otherwise
  std::vector<std::string> quant_targets, quant_ignore;  // "Linear", module names or "re:<regex>"
  std::string sparsity_format;     // "" (no sparsity_config), "dense" or "sparse-24-bitmask"
  std::string sparsity_structure;  // "2:4" when sparsity_format is set
  double global_sparsity = 0;
  std::vector<std::string> sparse_targets, sparse_ignore;
  nlohmann::json raw;  // the "quantization_config" object as read (null when absent), written back

  bool present() const { return !raw.is_null(); }
  // Whether a linear module ("model.layers.0.mlp.down_proj", "lm_head") is stored as INT8, or as
  // 2:4 sparse-24-bitmask tensors. Callers pass linear modules only: the target "Linear" matches
  // any name.
  bool quantizes(const std::string& module) const;
  bool sparse_compressed(const std::string& module) const;
  // Parses and checks a "quantization_config" object; errors name `source` and the key path.
  static CompressionConfig from_json(const nlohmann::json& q, const std::string& source);
};

struct ModelConfig {
  int vocab_size = 0;
  int hidden_size = 0;           // model dim D
  int intermediate_size = 0;     // FFN dim F
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  int num_key_value_heads = 0;   // grouped-query attention when < num_attention_heads
  int max_position_embeddings = 0;
  float rms_norm_eps = 1e-5f;
  float rope_theta = 10000.f;
  bool tie_word_embeddings = false;
  int bos_token_id = 256;
  int eos_token_id = 257;
  // Further ids that end generation: the rest of a list eos_token_id (Llama 3.1 writes
  // [128001, 128008, 128009]) and the EOS ids of generation_config.json / the tokenizer.
  std::vector<int> extra_eos_token_ids;
  bool is_eos(int id) const {
    return id == eos_token_id || std::find(extra_eos_token_ids.begin(), extra_eos_token_ids.end(), id) != extra_eos_token_ids.end();
  }
  int pad_token_id = 258;
  std::string torch_dtype = "float32";
  // config.json "head_dim" when it differs from hidden_size / num_attention_heads (a model whose
  // attention heads were pruned keeps its head size), else 0.
  int head_dim_key = 0;
  CompressionConfig compression;  // config.json "quantization_config"

  int head_dim() const { return head_dim_key > 0 ? head_dim_key : hidden_size / num_attention_heads; }
  int q_dim() const { return head_dim() * num_attention_heads; }  // rows of q_proj, columns of o_proj
  int kv_dim() const { return head_dim() * num_key_value_heads; }
  // Parameters and matmul FLOPs per token (2 * weights touched), ignoring attention over context.
  int64_t parameter_count() const;
  int64_t matmul_flops_per_token() const;

  // Throws ModelError naming the file and key for a missing key, a wrong type, or an
  // inconsistent value (e.g. hidden_size not divisible by num_attention_heads).
  static ModelConfig from_json(const nlohmann::json& j, const std::string& source_name);
  static ModelConfig load(const std::filesystem::path& config_json);
  nlohmann::json to_json() const;
  void validate(const std::string& source_name) const;
};

// Named shapes for seeded random-weight models: "tiny" (tests, < 2 MB) and "llama-1b".
ModelConfig preset_config(const std::string& name);
std::vector<std::string> preset_names();

}  // namespace cb::engine
