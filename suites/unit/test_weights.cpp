// bind_weights: Hugging Face LLaMA names to ModelWeights, checked against the config.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cb/engine/model/config.h"
#include "cb/engine/model/errors.h"
#include "cb/engine/model/safetensors.h"
#include "cb/engine/model/weights.h"
#include "cb/kernels/backend.h"
#include "test_support.h"

namespace fs = std::filesystem;
using cb::engine::ModelConfig;
using cb::engine::ModelError;
using cb::engine::TensorSpec;
using cb::engine::WeightStore;
using cb::kernels::DType;
using cb::test::model_error;

namespace {

class WeightsTest : public ::testing::Test {
 protected:
  // Writes model.safetensors with every tensor cfg implies (bytes = tensor index), then `edit`
  // may drop, reshape or retype entries first.
  void write_model(const ModelConfig& cfg, DType dtype,
                   const std::function<void(std::vector<TensorSpec>&)>& edit = nullptr) {
    std::vector<TensorSpec> specs;
    for (const std::string& n : cb::engine::expected_tensor_names(cfg))
      specs.push_back({n, dtype, cb::engine::expected_tensor_shape(cfg, n)});
    if (edit) edit(specs);
    cb::engine::write_safetensors_streamed(dir_ / "model.safetensors", specs,
                                           [](size_t i, void* dst, size_t n) { std::memset(dst, static_cast<int>(i), n); });
  }
  static TensorSpec& find(std::vector<TensorSpec>& specs, const std::string& name) {
    for (TensorSpec& s : specs)
      if (s.name == name) return s;
    throw std::logic_error("no spec " + name);
  }
  std::string model_file() const { return (dir_ / "model.safetensors").string(); }

  const cb::test::TempDir tmp_{"cb-weights"};
  const fs::path dir_ = tmp_.path();
  ModelConfig cfg_ = cb::engine::preset_config("tiny");
};

TEST_F(WeightsTest, ExpectedNamesAndShapes) {
  const auto names = cb::engine::expected_tensor_names(cfg_);
  ASSERT_EQ(names.size(), 1u + 2u * 9u + 1u + 1u);
  EXPECT_EQ(names.front(), "model.embed_tokens.weight");
  EXPECT_EQ(names[1], "model.layers.0.input_layernorm.weight");
  EXPECT_EQ(names[2], "model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(names[9], "model.layers.0.mlp.down_proj.weight");
  EXPECT_EQ(names[10], "model.layers.1.input_layernorm.weight");
  EXPECT_EQ(names[19], "model.norm.weight");
  EXPECT_EQ(names[20], "lm_head.weight");

  using S = std::vector<int64_t>;
  auto shape = [&](const std::string& n) { return cb::engine::expected_tensor_shape(cfg_, n); };
  EXPECT_EQ(shape("model.embed_tokens.weight"), (S{259, 64}));
  EXPECT_EQ(shape("lm_head.weight"), (S{259, 64}));
  EXPECT_EQ(shape("model.norm.weight"), (S{64}));
  EXPECT_EQ(shape("model.layers.1.input_layernorm.weight"), (S{64}));
  EXPECT_EQ(shape("model.layers.1.post_attention_layernorm.weight"), (S{64}));
  EXPECT_EQ(shape("model.layers.0.self_attn.q_proj.weight"), (S{64, 64}));
  EXPECT_EQ(shape("model.layers.0.self_attn.k_proj.weight"), (S{32, 64}));
  EXPECT_EQ(shape("model.layers.0.self_attn.v_proj.weight"), (S{32, 64}));
  EXPECT_EQ(shape("model.layers.0.self_attn.o_proj.weight"), (S{64, 64}));
  EXPECT_EQ(shape("model.layers.0.mlp.gate_proj.weight"), (S{176, 64}));
  EXPECT_EQ(shape("model.layers.0.mlp.up_proj.weight"), (S{176, 64}));
  EXPECT_EQ(shape("model.layers.0.mlp.down_proj.weight"), (S{64, 176}));
  EXPECT_THROW(shape("model.layers.2.mlp.up_proj.weight"), ModelError);  // only 2 layers
  EXPECT_THROW(shape("model.layers.01.mlp.up_proj.weight"), ModelError);
  EXPECT_THROW(shape("model.layers.0.mlp.fc1.weight"), ModelError);
  EXPECT_THROW(shape("transformer.wte.weight"), ModelError);

  cfg_.tie_word_embeddings = true;
  const auto tied = cb::engine::expected_tensor_names(cfg_);
  EXPECT_EQ(tied.size(), 20u);
  EXPECT_EQ(tied.back(), "model.norm.weight");
}

TEST_F(WeightsTest, BindsEveryTensor) {
  write_model(cfg_, DType::F32);
  const WeightStore store = WeightStore::open_dir(dir_);
  const cb::engine::ModelWeights w = cb::engine::bind_weights(store, cfg_);
  EXPECT_EQ(w.embed.data, store.view("model.embed_tokens.weight").data);
  EXPECT_EQ(w.embed.describe(), "f32[259, 64]");
  ASSERT_EQ(w.layers.size(), 2u);
  const cb::engine::LayerWeights& l1 = w.layers[1];
  EXPECT_EQ(l1.attn_norm.data, store.view("model.layers.1.input_layernorm.weight").data);
  EXPECT_EQ(l1.ffn_norm.data, store.view("model.layers.1.post_attention_layernorm.weight").data);
  EXPECT_EQ(l1.wq.values.data, store.view("model.layers.1.self_attn.q_proj.weight").data);
  EXPECT_EQ(l1.wk.values.data, store.view("model.layers.1.self_attn.k_proj.weight").data);
  EXPECT_EQ(l1.wv.values.data, store.view("model.layers.1.self_attn.v_proj.weight").data);
  EXPECT_EQ(l1.wo.values.data, store.view("model.layers.1.self_attn.o_proj.weight").data);
  EXPECT_EQ(l1.w_gate.values.data, store.view("model.layers.1.mlp.gate_proj.weight").data);
  EXPECT_EQ(l1.w_up.values.data, store.view("model.layers.1.mlp.up_proj.weight").data);
  EXPECT_EQ(l1.w_down.values.data, store.view("model.layers.1.mlp.down_proj.weight").data);
  EXPECT_EQ(l1.wk.layout, cb::kernels::WeightLayout::Dense);
  EXPECT_EQ(l1.wk.n, 32);
  EXPECT_EQ(l1.wk.k, 64);
  EXPECT_EQ(l1.w_down.n, 64);
  EXPECT_EQ(l1.w_down.k, 176);
  EXPECT_EQ(w.final_norm.data, store.view("model.norm.weight").data);
  EXPECT_EQ(w.lm_head.values.data, store.view("lm_head.weight").data);
  EXPECT_NE(w.lm_head.values.data, w.embed.data);
  EXPECT_EQ(w.lm_head.n, 259);
  EXPECT_EQ(w.bytes, static_cast<size_t>(cfg_.parameter_count()) * 4);
  EXPECT_EQ(w.bytes, store.total_bytes());
  // Contents come through untouched: layer 1's q_proj is tensor #11, filled with byte 11.
  EXPECT_EQ(static_cast<const unsigned char*>(l1.wq.values.data)[100], 11);
}

TEST_F(WeightsTest, HalfPrecisionAndMixedNormDtypes) {
  write_model(cfg_, DType::BF16, [](std::vector<TensorSpec>& specs) {
    for (TensorSpec& s : specs)
      if (s.name.find("norm") != std::string::npos) s.dtype = DType::F32;
    find(specs, "model.layers.0.mlp.up_proj.weight").dtype = DType::F16;
  });
  const WeightStore store = WeightStore::open_dir(dir_);
  const auto w = cb::engine::bind_weights(store, cfg_);
  EXPECT_EQ(w.layers[0].wq.dtype(), DType::BF16);
  EXPECT_EQ(w.layers[0].w_up.dtype(), DType::F16);
  EXPECT_EQ(w.layers[0].attn_norm.dtype, DType::F32);
  EXPECT_EQ(w.final_norm.dtype, DType::F32);
  EXPECT_EQ(w.bytes, store.total_bytes());
}

TEST_F(WeightsTest, MissingTensorIsNamed) {
  write_model(cfg_, DType::F32, [](std::vector<TensorSpec>& specs) {
    specs.erase(specs.begin() + 14);  // model.layers.1.self_attn.o_proj.weight
  });
  const WeightStore store = WeightStore::open_dir(dir_);
  EXPECT_EQ(model_error([&] { cb::engine::bind_weights(store, cfg_); }),
            model_file() + ": tensor 'model.layers.1.self_attn.o_proj.weight': missing");
}

TEST_F(WeightsTest, ShapeMismatchStatesBothShapes) {
  write_model(cfg_, DType::F32, [](std::vector<TensorSpec>& specs) {
    find(specs, "model.layers.0.self_attn.k_proj.weight").shape = {64, 64};
  });
  const WeightStore store = WeightStore::open_dir(dir_);
  EXPECT_EQ(model_error([&] { cb::engine::bind_weights(store, cfg_); }),
            model_file() + ": tensor 'model.layers.0.self_attn.k_proj.weight': shape [64, 64] but config implies [32, 64]");

  // A transposed matrix is a mismatch too, even with the same element count.
  write_model(cfg_, DType::F32, [](std::vector<TensorSpec>& specs) {
    find(specs, "model.layers.1.mlp.down_proj.weight").shape = {176, 64};
  });
  const WeightStore store2 = WeightStore::open_dir(dir_);
  EXPECT_EQ(model_error([&] { cb::engine::bind_weights(store2, cfg_); }),
            model_file() + ": tensor 'model.layers.1.mlp.down_proj.weight': shape [176, 64] but config implies [64, 176]");
}

TEST_F(WeightsTest, IntegerDtypeRejected) {
  write_model(cfg_, DType::F32, [](std::vector<TensorSpec>& specs) {
    find(specs, "model.layers.0.mlp.gate_proj.weight").dtype = DType::I8;
  });
  const WeightStore store = WeightStore::open_dir(dir_);
  EXPECT_EQ(model_error([&] { cb::engine::bind_weights(store, cfg_); }),
            model_file() + ": tensor 'model.layers.0.mlp.gate_proj.weight': dtype I8 is unsupported for dense weights "
                           "(expected F32, F16 or BF16)");
}

TEST_F(WeightsTest, TiedEmbeddingsShareTheEmbedding) {
  cfg_.tie_word_embeddings = true;
  write_model(cfg_, DType::F32);  // no lm_head.weight in the file
  const WeightStore store = WeightStore::open_dir(dir_);
  ASSERT_FALSE(store.has("lm_head.weight"));
  const auto w = cb::engine::bind_weights(store, cfg_);
  EXPECT_EQ(w.lm_head.values.data, w.embed.data);
  EXPECT_EQ(w.lm_head.n, 259);
  EXPECT_EQ(w.lm_head.k, 64);
  EXPECT_EQ(w.bytes, static_cast<size_t>(cfg_.parameter_count()) * 4);  // embedding counted once
}

TEST_F(WeightsTest, UntiedNeedsLmHead) {
  ModelConfig tied = cfg_;
  tied.tie_word_embeddings = true;
  write_model(tied, DType::F32);
  const WeightStore store = WeightStore::open_dir(dir_);
  EXPECT_EQ(model_error([&] { cb::engine::bind_weights(store, cfg_); }),
            model_file() + ": tensor 'lm_head.weight': missing");
}

TEST_F(WeightsTest, ShardedModelNamesTheShard) {
  // Layers in shard 2, everything else in shard 1; a bad shape is reported against shard 2.
  std::vector<TensorSpec> s1, s2;
  nlohmann::json map;
  for (const std::string& n : cb::engine::expected_tensor_names(cfg_)) {
    TensorSpec spec{n, DType::F32, cb::engine::expected_tensor_shape(cfg_, n)};
    if (n == "model.layers.1.mlp.gate_proj.weight") spec.shape = {176, 65};
    const bool layer = n.rfind("model.layers.", 0) == 0;
    (layer ? s2 : s1).push_back(spec);
    map[n] = layer ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors";
  }
  auto zero = [](size_t, void* dst, size_t n) { std::memset(dst, 0, n); };
  cb::engine::write_safetensors_streamed(dir_ / "model-00001-of-00002.safetensors", s1, zero);
  cb::engine::write_safetensors_streamed(dir_ / "model-00002-of-00002.safetensors", s2, zero);
  cb::test::write_file(dir_ / "model.safetensors.index.json", nlohmann::json{{"weight_map", map}}.dump());
  const WeightStore store = WeightStore::open_dir(dir_);
  EXPECT_EQ(model_error([&] { cb::engine::bind_weights(store, cfg_); }),
            (dir_ / "model-00002-of-00002.safetensors").string() +
                ": tensor 'model.layers.1.mlp.gate_proj.weight': shape [176, 65] but config implies [176, 64]");
}

}  // namespace
