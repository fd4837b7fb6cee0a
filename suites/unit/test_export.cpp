// config.json "quantization_config" (compressed-tensors) as the engine reads it, explicit
// head_dim, and loader errors for exports with missing or malformed compressed tensors.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cb/engine/compress/export.h"
#include "cb/engine/compress/prune.h"
#include "cb/engine/compress/quantize.h"
#include "cb/engine/model/config.h"
#include "cb/engine/model/engine.h"
#include "cb/engine/model/errors.h"
#include "cb/engine/model/model_init.h"
#include "cb/engine/model/safetensors.h"
#include "test_support.h"

namespace fs = std::filesystem;
namespace cp = cb::engine::compress;
using cb::engine::CompressionConfig;
using cb::engine::ModelConfig;
using nlohmann::json;

namespace {

json tiny_json() { return cb::engine::preset_config("tiny").to_json(); }

std::string parse_error(const json& j) {
  return cb::test::model_error([&] { ModelConfig::from_json(j, "config.json"); });
}

// Rewrites dir/model.safetensors keeping every tensor except `drop`, optionally editing one.
void rewrite_without(const fs::path& dir, const std::string& drop) {
  const cb::engine::WeightStore st = cb::engine::WeightStore::open_dir(dir);
  std::vector<cb::engine::TensorSpec> specs;
  for (const std::string& n : st.names())
    if (n != drop) specs.push_back({n, st.info(n).dtype, st.info(n).shape});
  const fs::path tmp = dir / "rewritten.safetensors";
  cb::engine::write_safetensors_streamed(tmp, specs, [&](size_t i, void* dst, size_t n) {
    std::memcpy(dst, st.view(specs[i].name).data, n);
  });
  fs::rename(tmp, dir / "model.safetensors");
}

}  // namespace

TEST(CompressionConfig, ReadsTheInt8AndSparsityBlocks) {
  json j = tiny_json();
  j["quantization_config"] = cp::int8_quantization_config(true);
  ModelConfig c = ModelConfig::from_json(j, "config.json");
  EXPECT_TRUE(c.compression.int8_weights);
  EXPECT_TRUE(c.compression.int8_dynamic_activations);
  EXPECT_TRUE(c.compression.quantizes("model.layers.0.mlp.up_proj"));
  EXPECT_FALSE(c.compression.quantizes("lm_head"));
  EXPECT_FALSE(c.compression.sparse_compressed("model.layers.0.mlp.up_proj"));
  EXPECT_EQ(c.to_json().at("quantization_config"), j["quantization_config"]);  // written back as read

  j["quantization_config"] = cp::int8_quantization_config(false);
  EXPECT_FALSE(ModelConfig::from_json(j, "config.json").compression.int8_dynamic_activations);

  j["quantization_config"] = cp::sparsity_only_quantization_config(cp::sparsity_config_json("sparse-24-bitmask", 0.25));
  c = ModelConfig::from_json(j, "config.json");
  EXPECT_FALSE(c.compression.int8_weights);
  EXPECT_TRUE(c.compression.sparse_compressed("model.layers.1.self_attn.o_proj"));
  EXPECT_FALSE(c.compression.sparse_compressed("lm_head"));
  EXPECT_DOUBLE_EQ(c.compression.global_sparsity, 0.25);

  // Targets by exact name and by "re:" regex, and ignore entries.
  j["quantization_config"] = cp::int8_quantization_config(true);
  j["quantization_config"]["config_groups"]["group_0"]["targets"] = {"re:.*mlp\\..*_proj", "model.layers.0.self_attn.q_proj"};
  j["quantization_config"]["ignore"] = {"lm_head", "model.layers.1.mlp.down_proj"};
  c = ModelConfig::from_json(j, "config.json");
  EXPECT_TRUE(c.compression.quantizes("model.layers.0.mlp.gate_proj"));
  EXPECT_TRUE(c.compression.quantizes("model.layers.0.self_attn.q_proj"));
  EXPECT_FALSE(c.compression.quantizes("model.layers.1.self_attn.q_proj"));
  EXPECT_FALSE(c.compression.quantizes("model.layers.1.mlp.down_proj"));

  // No quantization_config: nothing compressed, nothing written back.
  c = ModelConfig::from_json(tiny_json(), "config.json");
  EXPECT_FALSE(c.compression.present());
  EXPECT_FALSE(c.to_json().contains("quantization_config"));
}

TEST(CompressionConfig, RefusesWhatTheEngineDoesNotImplementByKey) {
  struct Case {
    std::function<void(json&)> edit;
    std::string expect;
  };
  const std::string g = "quantization_config.config_groups.group_0";
  const std::vector<Case> cases = {
      {[](json& q) { q["quant_method"] = "gptq"; }, "config.json: key 'quantization_config.quant_method': 'gptq' is unsupported"},
      {[](json& q) { q.erase("quant_method"); }, "config.json: key 'quantization_config.quant_method': missing"},
      {[](json& q) { q["format"] = "pack-quantized"; }, "config.json: key 'quantization_config.format': 'pack-quantized' is unsupported"},
      {[](json& q) { q["config_groups"]["group_0"]["weights"]["strategy"] = "group"; },
       "config.json: key '" + g + ".weights.strategy': \"group\" is unsupported (expected \"channel\")"},
      {[](json& q) { q["config_groups"]["group_0"]["weights"]["num_bits"] = 4; },
       "config.json: key '" + g + ".weights.num_bits': 4 is unsupported (expected 8)"},
      {[](json& q) { q["config_groups"]["group_0"]["weights"]["symmetric"] = false; },
       "config.json: key '" + g + ".weights.symmetric': false is unsupported"},
      {[](json& q) { q["config_groups"]["group_0"]["weights"]["group_size"] = 128; },
       "config.json: key '" + g + ".weights.group_size': 128 is unsupported"},
      {[](json& q) { q["config_groups"]["group_0"]["input_activations"]["dynamic"] = false; },
       "config.json: key '" + g + ".input_activations.dynamic': false is unsupported (expected true)"},
      {[](json& q) { q["config_groups"]["group_0"]["input_activations"]["strategy"] = "tensor"; },
       "config.json: key '" + g + ".input_activations.strategy': \"tensor\" is unsupported (expected \"token\")"},
      {[](json& q) { q["config_groups"]["group_0"]["output_activations"] = {{"num_bits", 8}}; },
       "config.json: key '" + g + ".output_activations'"},
      {[](json& q) { q["config_groups"]["group_0"]["targets"] = json::array(); }, "config.json: key '" + g + ".targets': is empty"},
      {[](json& q) { q["config_groups"]["group_0"]["targets"] = {"re:("}; }, "is not a valid regular expression"},
      {[](json& q) { q["kv_cache_scheme"] = {{"num_bits", 8}}; }, "config.json: key 'quantization_config.kv_cache_scheme'"},
      {[](json& q) { q["sparsity_config"] = cp::sparsity_config_json("sparse-24-bitmask", 0.3); },
       "INT8 weights stored as sparse-24-bitmask are unsupported"},
      {[](json& q) {
         q = cp::sparsity_only_quantization_config(cp::sparsity_config_json("sparse-bitmask", 0.3));
       },
       "config.json: key 'quantization_config.sparsity_config.format': 'sparse-bitmask' is unsupported"},
      {[](json& q) {
         q = cp::sparsity_only_quantization_config(cp::sparsity_config_json("sparse-24-bitmask", 0.3));
         q["sparsity_config"]["sparsity_structure"] = "unstructured";
       },
       "config.json: key 'quantization_config.sparsity_config.sparsity_structure': 'unstructured' is unsupported"},
  };
  for (const Case& c : cases) {
    json j = tiny_json();
    j["quantization_config"] = cp::int8_quantization_config(true);
    c.edit(j["quantization_config"]);
    const std::string msg = parse_error(j);
    EXPECT_NE(msg.find(c.expect), std::string::npos) << "expected: " << c.expect << "\ngot: " << msg;
  }
}

// "re:" targets follow compressed-tensors and vLLM (Python's re.match: anchored at the start of
// the module name, not at its end), and patterns that would overflow libstdc++'s recursive
// regex or backtrack exponentially are refused by key before anything is compiled.
TEST(CompressionConfig, ModulePatternsMatchLikeReMatchAndAreBounded) {
  json j = tiny_json();
  j["quantization_config"] = cp::int8_quantization_config(true);
  json& targets = j["quantization_config"]["config_groups"]["group_0"]["targets"];
  targets = {"re:model\\.layers\\.0\\.", "re:mlp"};
  j["quantization_config"].erase("ignore");
  ModelConfig c = ModelConfig::from_json(j, "config.json");
  EXPECT_TRUE(c.compression.quantizes("model.layers.0.self_attn.q_proj"));  // a prefix is enough
  EXPECT_FALSE(c.compression.quantizes("model.layers.10.self_attn.q_proj"));
  EXPECT_FALSE(c.compression.quantizes("model.layers.1.mlp.up_proj"));  // "mlp" is not at the start

  // Exponential for a backtracking matcher; here it must simply answer.
  targets = {"re:(.|.)*(.|.)*(.|.)*x"};
  c = ModelConfig::from_json(j, "config.json");
  EXPECT_FALSE(c.compression.quantizes(std::string(200, 'm')));

  const std::string key = "config.json: key 'quantization_config.config_groups.group_0.targets': ";
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"re:((a?){99}){99}", "is too complex for a module pattern: more than 2000 states"},
      {"re:" + std::string(40, '(') + "a" + std::string(40, ')'), "is too complex for a module pattern: groups nested deeper than 32"},
      {"re:" + std::string(600, 'a'), "is too complex for a module pattern: 600 bytes (the limit is 512)"},
      {"re:((a{10}){10})?{30}", "more than 2000 states"},
      {"re:(a)\\1", "back-references (\\1...) are unsupported"},  // exponential to match in general
      // Found by fuzz_compressed_tensors: libstdc++ parsed this back-reference's number into a
      // long and overflowed (UBSan) before any bound of ours was checked.
      {"re:edlom\\.laeyrs\\.1\\44444544444444444444.", "back-references (\\4...) are unsupported"},
      {"re:[\\9]", "back-references (\\9...) are unsupported"},
      {"re:a{4444454444444444444}", "a repetition count longer than 6 digits"},
      {"re:a{1,99999999999999999999", "a repetition count longer than 6 digits"},
  };
  for (const auto& [pattern, expect] : refused) {
    targets = {pattern};
    const std::string msg = parse_error(j);
    EXPECT_EQ(msg.rfind(key, 0), 0u) << msg;
    EXPECT_NE(msg.find(expect), std::string::npos) << "pattern " << pattern.substr(0, 40) << "\ngot: " << msg;
  }
  // Within the bounds, counted repetitions still work.
  targets = {"re:model\\.layers\\.[0-9]{1,3}\\.mlp\\.(gate|up)_proj$"};
  c = ModelConfig::from_json(j, "config.json");
  EXPECT_TRUE(c.compression.quantizes("model.layers.12.mlp.up_proj"));
  EXPECT_FALSE(c.compression.quantizes("model.layers.12.mlp.down_proj"));
}

TEST(Config, ExplicitHeadDim) {
  json j = tiny_json();
  j["num_attention_heads"] = 2;
  j["num_key_value_heads"] = 1;
  j["head_dim"] = 16;  // heads pruned: 2 x 16 < hidden_size 64
  const ModelConfig c = ModelConfig::from_json(j, "config.json");
  EXPECT_EQ(c.head_dim(), 16);
  EXPECT_EQ(c.q_dim(), 32);
  EXPECT_EQ(c.kv_dim(), 16);
  EXPECT_EQ(c.to_json().at("head_dim"), 16);
  EXPECT_EQ(cb::engine::expected_tensor_shape(c, "model.layers.0.self_attn.q_proj.weight"), (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(cb::engine::expected_tensor_shape(c, "model.layers.0.self_attn.o_proj.weight"), (std::vector<int64_t>{64, 32}));
  // head_dim equal to hidden_size / heads is the default: accepted, not written back.
  json same = tiny_json();
  same["head_dim"] = 16;
  EXPECT_FALSE(ModelConfig::from_json(same, "config.json").to_json().contains("head_dim"));
  j["head_dim"] = 48;  // 2 x 48 > hidden_size 64
  EXPECT_EQ(parse_error(j).rfind("config.json: key 'head_dim': 48 is unsupported (num_attention_heads x head_dim = 96 exceeds "
                                 "hidden_size 64)", 0), 0u);
  j["head_dim"] = 15;
  EXPECT_EQ(parse_error(j).rfind("config.json: key 'head_dim': 15 must be even for RoPE", 0), 0u);
  j["head_dim"] = 0;
  EXPECT_EQ(parse_error(j).rfind("config.json: key 'head_dim': 0 must be positive", 0), 0u);
}

TEST(Loader, MissingOrMalformedCompressedTensorsAreNamed) {
  const cb::test::TempDir tmp("cb-export");
  const ModelConfig cfg = cb::engine::preset_config("tiny");
  const fs::path src = tmp.path() / "src", q = tmp.path() / "q", s = tmp.path() / "s";
  cb::engine::write_random_model(cfg, 4, src);
  cp::QuantizeOptions qo;
  qo.eval_backend = "";
  cp::quantize_model(src, q, qo);
  cp::Prune24Options po;
  po.compressed = true;
  po.eval_backend = "";
  cp::prune_24_model(src, s, po);

  rewrite_without(q, "model.layers.1.mlp.up_proj.weight_scale");
  EXPECT_CONTAINS(cb::test::model_error([&] { cb::engine::LoadedModel::open(q, "ref"); }),
                  "tensor 'model.layers.1.mlp.up_proj.weight_scale': missing (quantization_config makes "
                  "'model.layers.1.mlp.up_proj' INT8 per-channel)");
  rewrite_without(s, "model.layers.0.self_attn.k_proj.bitmask");
  EXPECT_CONTAINS(cb::test::model_error([&] { cb::engine::LoadedModel::open(s, "ref"); }),
                  "tensor 'model.layers.0.self_attn.k_proj.bitmask': missing (sparsity_config makes");

  // A source with float weights but a config claiming INT8: the dtype is named.
  fs::copy_file(q / "config.json", src / "config.json", fs::copy_options::overwrite_existing);
  EXPECT_CONTAINS(cb::test::model_error([&] { cb::engine::LoadedModel::open(src, "ref"); }),
                  "tensor 'model.layers.0.self_attn.q_proj.weight': dtype F32 but quantization_config makes "
                  "'model.layers.0.self_attn.q_proj' INT8 per-channel needs I8");
}
