// Model hyper-parameters, read from and written to a Hugging Face `config.json`
// (LlamaForCausalLM keys).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace cb::engine {

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
  int pad_token_id = 258;
  std::string torch_dtype = "float32";

  int head_dim() const { return hidden_size / num_attention_heads; }
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
