// ModelConfig: config.json parsing, validation messages, presets, parameter and FLOP counts.
#include <gtest/gtest.h>

#include <filesystem>
#include <stdexcept>
#include <string>

#include "cb/engine/model/config.h"
#include "test_support.h"

namespace fs = std::filesystem;
using cb::engine::ModelConfig;
using cb::test::model_error;
using nlohmann::json;

namespace {

class ConfigTest : public ::testing::Test {
 protected:
  fs::path write(const std::string& text) {
    const fs::path p = dir_ / "config.json";
    cb::test::write_file(p, text);
    return p;
  }
  // from_json on the tiny preset's JSON after `edit`.
  template <class Edit>
  static ModelConfig parse_edited(Edit edit) {
    json j = cb::engine::preset_config("tiny").to_json();
    edit(j);
    return ModelConfig::from_json(j, "config.json");
  }
  const cb::test::TempDir tmp_{"cb-config"};
  const fs::path dir_ = tmp_.path();
};

TEST_F(ConfigTest, TinyPreset) {
  const ModelConfig c = cb::engine::preset_config("tiny");
  EXPECT_EQ(c.vocab_size, 259);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.intermediate_size, 176);
  EXPECT_EQ(c.num_hidden_layers, 2);
  EXPECT_EQ(c.num_attention_heads, 4);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_EQ(c.max_position_embeddings, 16384);
  EXPECT_EQ(c.rope_theta, 10000.f);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.head_dim(), 16);
  EXPECT_EQ(c.kv_dim(), 32);
  // 259*64*2 (embed, lm_head) + 2 * (2*64 + 2*64*64 + 2*32*64 + 3*176*64) + 64
  EXPECT_EQ(c.parameter_count(), 125632);
  EXPECT_LT(c.parameter_count() * 4, 2 * 1024 * 1024);
  EXPECT_NO_THROW(c.validate("tiny"));
}

TEST_F(ConfigTest, Llama1bPresetCounts) {
  const ModelConfig c = cb::engine::preset_config("llama-1b");
  EXPECT_EQ(c.vocab_size, 32000);
  EXPECT_EQ(c.hidden_size, 2048);
  EXPECT_EQ(c.intermediate_size, 5632);
  EXPECT_EQ(c.num_hidden_layers, 22);
  EXPECT_EQ(c.num_attention_heads, 32);
  EXPECT_EQ(c.num_key_value_heads, 4);
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_EQ(c.rms_norm_eps, 1e-5f);
  EXPECT_EQ(c.rope_theta, 10000.f);
  EXPECT_FALSE(c.tie_word_embeddings);
  // TinyLlama-1.1B's published parameter count.
  EXPECT_EQ(c.parameter_count(), 1100048384);
  // 2 * (22 * (2*2048*2048 + 2*256*2048 + 3*5632*2048) + 32000*2048)
  EXPECT_EQ(c.matmul_flops_per_token(), 2068840448);
}

TEST_F(ConfigTest, TiedEmbeddingsCountOnceButStillMultiply) {
  ModelConfig c = cb::engine::preset_config("tiny");
  const int64_t untied = c.parameter_count(), flops = c.matmul_flops_per_token();
  c.tie_word_embeddings = true;
  EXPECT_EQ(c.parameter_count(), untied - 259 * 64);
  EXPECT_EQ(c.matmul_flops_per_token(), flops);
}

TEST_F(ConfigTest, UnknownPresetListsKnownNames) {
  try {
    cb::engine::preset_config("llama-70b");
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    EXPECT_CONTAINS(msg, "llama-70b");
    EXPECT_CONTAINS(msg, "tiny");
    EXPECT_CONTAINS(msg, "llama-1b");
  }
  EXPECT_EQ(cb::engine::preset_names(), (std::vector<std::string>{"tiny", "llama-1b"}));
}

TEST_F(ConfigTest, ToJsonWritesHfKeysAndRoundTrips) {
  ModelConfig c = cb::engine::preset_config("llama-1b");
  c.torch_dtype = "bfloat16";
  c.tie_word_embeddings = true;
  const json j = c.to_json();
  EXPECT_EQ(j.at("architectures"), json::array({"LlamaForCausalLM"}));
  EXPECT_EQ(j.at("model_type"), "llama");
  EXPECT_EQ(j.at("hidden_act"), "silu");
  EXPECT_EQ(j.at("torch_dtype"), "bfloat16");
  EXPECT_EQ(j.at("num_key_value_heads"), 4);
  EXPECT_EQ(j.at("rms_norm_eps").get<double>(), 1e-05);  // shortest form, not 9.99999974e-06
  EXPECT_EQ(j.at("rope_theta").get<double>(), 10000.0);
  EXPECT_TRUE(j.at("tie_word_embeddings").get<bool>());

  const ModelConfig r = ModelConfig::from_json(j, "config.json");
  EXPECT_EQ(r.vocab_size, c.vocab_size);
  EXPECT_EQ(r.hidden_size, c.hidden_size);
  EXPECT_EQ(r.intermediate_size, c.intermediate_size);
  EXPECT_EQ(r.num_hidden_layers, c.num_hidden_layers);
  EXPECT_EQ(r.num_attention_heads, c.num_attention_heads);
  EXPECT_EQ(r.num_key_value_heads, c.num_key_value_heads);
  EXPECT_EQ(r.max_position_embeddings, c.max_position_embeddings);
  EXPECT_EQ(r.rms_norm_eps, c.rms_norm_eps);
  EXPECT_EQ(r.rope_theta, c.rope_theta);
  EXPECT_EQ(r.tie_word_embeddings, c.tie_word_embeddings);
  EXPECT_EQ(r.bos_token_id, c.bos_token_id);
  EXPECT_EQ(r.eos_token_id, c.eos_token_id);
  EXPECT_EQ(r.pad_token_id, c.pad_token_id);
  EXPECT_EQ(r.torch_dtype, c.torch_dtype);
}

TEST_F(ConfigTest, LoadFromFile) {
  const fs::path p = write(cb::engine::preset_config("tiny").to_json().dump(2));
  const ModelConfig c = ModelConfig::load(p);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.num_key_value_heads, 2);
}

TEST_F(ConfigTest, OptionalKeysTakeHfDefaults) {
  const ModelConfig c = parse_edited([](json& j) {
    for (const char* k : {"num_key_value_heads", "rope_theta", "tie_word_embeddings", "bos_token_id",
                          "eos_token_id", "pad_token_id", "torch_dtype"})
      j.erase(k);
  });
  EXPECT_EQ(c.num_key_value_heads, c.num_attention_heads);  // as HF: no GQA unless stated
  EXPECT_EQ(c.rope_theta, 10000.f);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 256);
  EXPECT_EQ(c.eos_token_id, 257);
  EXPECT_EQ(c.pad_token_id, 258);
  EXPECT_EQ(c.torch_dtype, "float32");
  // null means "not set" in HF configs.
  EXPECT_EQ(parse_edited([](json& j) { j["pad_token_id"] = nullptr; }).pad_token_id, 258);
  EXPECT_NO_THROW(parse_edited([](json& j) { j["rope_scaling"] = nullptr; }));
  // Newer transformers write "dtype"; Llama 3 writes a list of eos ids (the first is taken).
  EXPECT_EQ(parse_edited([](json& j) { j.erase("torch_dtype"); j["dtype"] = "float16"; }).torch_dtype, "float16");
  EXPECT_EQ(parse_edited([](json& j) { j["eos_token_id"] = {2, 7}; }).eos_token_id, 2);
  // ... and the rest of the list still ends generation.
  const ModelConfig l3 = parse_edited([](json& j) { j["eos_token_id"] = {2, 7, 9}; });
  EXPECT_EQ(l3.extra_eos_token_ids, (std::vector<int>{7, 9}));
  EXPECT_TRUE(l3.is_eos(2) && l3.is_eos(7) && l3.is_eos(9));
  EXPECT_FALSE(l3.is_eos(8));
}

TEST_F(ConfigTest, MissingRequiredKeyNamesFileAndKey) {
  for (const char* key : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                          "num_attention_heads", "max_position_embeddings", "rms_norm_eps"}) {
    json j = cb::engine::preset_config("tiny").to_json();
    j.erase(key);
    const fs::path p = write(j.dump());
    EXPECT_EQ(model_error([&] { ModelConfig::load(p); }), p.string() + ": key '" + key + "': missing");
  }
  EXPECT_EQ(model_error([] { parse_edited([](json& j) { j.erase("hidden_size"); }); }),
            "config.json: key 'hidden_size': missing");
}

TEST_F(ConfigTest, WrongTypesNameKeyAndType) {
  struct Case {
    const char* key;
    json value;
    const char* expect;
  };
  const Case cases[] = {
      {"hidden_size", "64", "config.json: key 'hidden_size': expected an integer, got string \"64\""},
      {"hidden_size", 64.5, "config.json: key 'hidden_size': expected an integer, got number 64.5"},
      {"num_hidden_layers", true, "config.json: key 'num_hidden_layers': expected an integer, got boolean"},
      {"vocab_size", json::array({259}), "config.json: key 'vocab_size': expected an integer, got array"},
      {"rms_norm_eps", "1e-5", "config.json: key 'rms_norm_eps': expected a number, got string"},
      {"rope_theta", json::object(), "config.json: key 'rope_theta': expected a number, got object"},
      {"tie_word_embeddings", "yes", "config.json: key 'tie_word_embeddings': expected a boolean, got string"},
      {"torch_dtype", 32, "config.json: key 'torch_dtype': expected a string, got integer"},
      {"eos_token_id", "2", "config.json: key 'eos_token_id': expected an integer, got string"},
      {"hidden_size", 4294967296LL, "config.json: key 'hidden_size': value 4294967296 is out of range"},
  };
  for (const Case& c : cases) {
    const std::string msg = model_error([&] { parse_edited([&](json& j) { j[c.key] = c.value; }); });
    EXPECT_EQ(msg.rfind(c.expect, 0), 0u) << "key " << c.key << ": " << msg;
  }
}

TEST_F(ConfigTest, InconsistentValuesNameTheKey) {
  struct Case {
    json edit;
    const char* expect;
  };
  const Case cases[] = {
      {{{"hidden_size", 0}}, "config.json: key 'hidden_size': 0 must be positive"},
      {{{"vocab_size", -5}}, "config.json: key 'vocab_size': -5 must be positive"},
      {{{"intermediate_size", 0}}, "config.json: key 'intermediate_size': 0 must be positive"},
      {{{"num_hidden_layers", 0}}, "config.json: key 'num_hidden_layers': 0 must be positive"},
      {{{"num_attention_heads", 0}}, "config.json: key 'num_attention_heads': 0 must be positive"},
      {{{"num_key_value_heads", 0}}, "config.json: key 'num_key_value_heads': 0 must be positive"},
      {{{"max_position_embeddings", -1}}, "config.json: key 'max_position_embeddings': -1 must be positive"},
      {{{"hidden_size", 66}}, "config.json: key 'hidden_size': 66 is not divisible by num_attention_heads 4"},
      {{{"num_key_value_heads", 3}}, "config.json: key 'num_key_value_heads': 3 does not divide num_attention_heads 4"},
      {{{"hidden_size", 12}}, "config.json: key 'hidden_size': head_dim 3 (hidden_size / num_attention_heads) must be even"},
      {{{"rms_norm_eps", 0}}, "config.json: key 'rms_norm_eps': must be positive"},
      {{{"rope_theta", -1.0}}, "config.json: key 'rope_theta': must be positive"},
      {{{"rope_scaling", {{"type", "linear"}, {"factor", 2.0}}}}, "config.json: key 'rope_scaling': unsupported"},
      {{{"eos_token_id", 259}}, "config.json: key 'eos_token_id': 259 is outside the vocabulary [0, 259)"},
      {{{"torch_dtype", "int8"}}, "config.json: key 'torch_dtype': 'int8' is not one of"},
      {{{"model_type", "gpt2"}}, "config.json: key 'model_type': 'gpt2' is not supported"},
      {{{"hidden_act", "gelu"}}, "config.json: key 'hidden_act': 'gelu' is not supported"},
      {{{"attention_bias", true}}, "config.json: key 'attention_bias': true is unsupported"},
      {{{"head_dim", 32}}, "config.json: key 'head_dim': 32 is unsupported"},
  };
  for (const Case& c : cases) {
    const std::string msg = model_error([&] { parse_edited([&](json& j) { j.update(c.edit); }); });
    EXPECT_EQ(msg.rfind(c.expect, 0), 0u) << c.edit.dump() << ": " << msg;
  }
}

TEST_F(ConfigTest, UnparseableJsonNamesFileAndParseError) {
  const fs::path p = write("{\"hidden_size\": 64,,}");
  const std::string msg = model_error([&] { ModelConfig::load(p); });
  EXPECT_EQ(msg.rfind(p.string() + ": JSON does not parse: ", 0), 0u) << msg;
  EXPECT_CONTAINS(msg, "parse error");

  // Found by fuzzing: a number no double holds is nlohmann's out_of_range, not a parse_error.
  const fs::path big = write("{\"rope_theta\": 1e400}");
  const std::string big_msg = model_error([&] { ModelConfig::load(big); });
  EXPECT_EQ(big_msg.rfind(big.string() + ": JSON does not parse: ", 0), 0u) << big_msg;
  EXPECT_CONTAINS(big_msg, "number overflow");

  const fs::path q = write("[1, 2]");
  EXPECT_EQ(model_error([&] { ModelConfig::load(q); }),
            q.string() + ": expected a JSON object at the top level, got array");
}

TEST_F(ConfigTest, MissingFileNamesIt) {
  const fs::path p = dir_ / "nope" / "config.json";
  EXPECT_EQ(model_error([&] { ModelConfig::load(p); }), p.string() + ": cannot open for reading");
}

}  // namespace
