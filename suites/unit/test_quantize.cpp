// INT8 PTQ: per-channel quantization bounds, the compressed-tensors export, and loading it back
// into the engine as Int8PerChannel weights that compute what the dequantized model computes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cb/engine/compress/export.h"
#include "cb/engine/compress/quantize.h"
#include "cb/engine/model/engine.h"
#include "cb/engine/model/errors.h"
#include "cb/engine/model/model_init.h"
#include "cb/engine/model/weights.h"
#include "cb/kernels/int8_scheme.h"
#include "engine_test_util.h"
#include "test_support.h"

namespace fs = std::filesystem;
namespace cp = cb::engine::compress;
using cb::engine::ModelConfig;
using cb::kernels::DType;
using cb::kernels::WeightLayout;
using nlohmann::json;

namespace {

using cb::test::logits_of;

const std::vector<int32_t> kQuantTokens = {256, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100, 33};

class QuantizeTest : public ::testing::Test {
 protected:
  void SetUp() override { cb::engine::write_random_model(cfg_, 11, src_); }
  cp::QuantizeReport quantize(cp::Int8Scheme s, const fs::path& out) {
    cp::QuantizeOptions o;
    o.scheme = s;
    o.eval_backend = "";  // the logits comparisons below are the tests' own
    return cp::quantize_model(src_, out, o);
  }
  const cb::test::TempDir tmp_{"cb-quantize"};
  const ModelConfig cfg_ = cb::engine::preset_config("tiny");
  const fs::path src_ = tmp_.path() / "src";
};

}  // namespace

TEST(QuantizePerChannel, RoundTripWithinHalfAScale) {
  const int64_t N = 6, K = 37;
  std::mt19937_64 gen(5);
  std::normal_distribution<float> nd(0.f, 0.05f);
  std::vector<float> w(size_t(N * K));
  for (float& v : w) v = nd(gen);
  std::fill(w.begin() + 2 * K, w.begin() + 3 * K, 0.f);  // an all-zero row
  w[size_t(4 * K + 9)] = -3.5f;                           // an outlier sets its row's scale
  const cp::QuantizedMatrix q = cp::quantize_per_channel(w.data(), N, K);
  const std::vector<float> back = cp::dequantize(q);
  for (int64_t r = 0; r < N; ++r) {
    EXPECT_EQ(q.scales[size_t(r)], cb::kernels::int8::row_scale(w.data() + r * K, K)) << "row " << r;
    float amax = 0;
    for (int64_t c = 0; c < K; ++c) amax = std::max(amax, std::fabs(w[size_t(r * K + c)]));
    for (int64_t c = 0; c < K; ++c) {
      const size_t i = size_t(r * K + c);
      EXPECT_GE(q.q[i], -127);
      EXPECT_LE(q.q[i], 127);
      // Rounding to the nearest step: at most half a step off (plus the f32 rounding of v / scale).
      EXPECT_LE(std::fabs(w[i] - back[i]), 0.5f * q.scales[size_t(r)] * (1 + 1e-6f)) << "row " << r << " col " << c;
      if (amax > 0 && std::fabs(w[i]) == amax) {
        EXPECT_EQ(std::abs(int(q.q[i])), 127);
      }
    }
  }
  EXPECT_EQ(q.scales[2], 1.f);  // all-zero row: scale 1, values 0
  for (int64_t c = 0; c < K; ++c) EXPECT_EQ(q.q[size_t(2 * K + c)], 0);
  EXPECT_EQ(q.q[size_t(4 * K + 9)], -127);
}

TEST_F(QuantizeTest, ExportLoadsAsTheSameInt8Weights) {
  const fs::path out = tmp_.path() / "w8a8";
  const cp::QuantizeReport rep = quantize(cp::Int8Scheme::W8A8, out);
  EXPECT_EQ(rep.quantized_matrices, 14);
  EXPECT_EQ(rep.quantized_params + rep.float_params, cfg_.parameter_count());

  const cp::SourceModel src = cp::SourceModel::open(src_);
  auto lm = cb::engine::LoadedModel::open(out, "ref");
  const cb::engine::ModelWeights& w = lm->model().weights();
  const char* names[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                         "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
  for (int l = 0; l < cfg_.num_hidden_layers; ++l) {
    const cb::engine::LayerWeights& L = w.layers[size_t(l)];
    const cb::kernels::Weight* ws[] = {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down};
    for (int i = 0; i < 7; ++i) {
      const std::string m = "model.layers." + std::to_string(l) + "." + names[i];
      SCOPED_TRACE(m);
      const std::vector<float> f = src.read_f32(m + ".weight");
      const cp::QuantizedMatrix q = cp::quantize_per_channel(f.data(), ws[i]->n, ws[i]->k);
      ASSERT_EQ(ws[i]->layout, WeightLayout::Int8PerChannel);
      ASSERT_EQ(ws[i]->values.dtype, DType::I8);
      EXPECT_EQ(ws[i]->act_quant, cb::kernels::ActQuant::PerTokenInt8);
      ASSERT_EQ(ws[i]->scales.numel(), ws[i]->n);
      EXPECT_EQ(std::memcmp(ws[i]->values.data, q.q.data(), q.q.size()), 0);
      EXPECT_EQ(std::memcmp(ws[i]->scales.data, q.scales.data(), q.scales.size() * 4), 0);
    }
  }
  // Embeddings, norms and lm_head stay float, byte for byte.
  EXPECT_EQ(w.lm_head.layout, WeightLayout::Dense);
  EXPECT_EQ(w.lm_head.values.dtype, DType::F32);
  EXPECT_EQ(std::memcmp(w.lm_head.values.data, src.store.view("lm_head.weight").data, w.lm_head.values.nbytes()), 0);
  EXPECT_EQ(std::memcmp(w.embed.data, src.store.view("model.embed_tokens.weight").data, w.embed.nbytes()), 0);
  EXPECT_EQ(w.final_norm.dtype, DType::F32);
}

TEST_F(QuantizeTest, W8A16LogitsEqualTheDequantizedModel) {
  const fs::path out = tmp_.path() / "w8a16", deq = tmp_.path() / "deq";
  quantize(cp::Int8Scheme::W8A16, out);
  // The dequantized model: the same config without quantization_config, f32 weights q * scale.
  const cp::SourceModel q = cp::SourceModel::open(out);
  ModelConfig cfg = q.cfg;
  cfg.compression = {};
  std::vector<cb::engine::TensorSpec> specs;
  for (const std::string& n : cb::engine::expected_tensor_names(cfg))
    specs.push_back({n, DType::F32, cb::engine::expected_tensor_shape(cfg, n)});
  cp::prepare_output_dir(deq, out, false);
  cp::write_model_dir(deq, cfg.to_json(), specs, [&](const cb::engine::TensorSpec& s, void* dst, size_t nbytes) {
    if (q.store.info(s.name).dtype != DType::I8) {
      std::memcpy(dst, q.store.view(s.name).data, nbytes);
      return;
    }
    const std::string m = s.name.substr(0, s.name.size() - 7);
    const auto* v = q.store.view(s.name).as<const int8_t>();
    const auto* sc = q.store.view(m + ".weight_scale").as<const float>();
    for (int64_t r = 0; r < s.shape[0]; ++r)
      for (int64_t c = 0; c < s.shape[1]; ++c)
        static_cast<float*>(dst)[r * s.shape[1] + c] = float(v[r * s.shape[1] + c]) * sc[r];
  }, {});
  const std::vector<float> a = logits_of(out, "ref", kQuantTokens), b = logits_of(deq, "ref", kQuantTokens);
  ASSERT_EQ(a.size(), b.size());
  float amax = 0, dmax = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    amax = std::max(amax, std::fabs(b[i]));
    dmax = std::max(dmax, std::fabs(a[i] - b[i]));
  }
  // ref multiplies q and scale in double, the dequantized file holds q * scale rounded to f32
  // once (relative 2^-24 per weight): the logits agree to ~1e-7 relative; 1e-5 leaves margin.
  EXPECT_LE(dmax, 1e-5f * amax) << "max |logit| " << amax;
  EXPECT_GT(amax, 0.f);
}

TEST_F(QuantizeTest, W8A8QuantizesActivationsToo) {
  const fs::path a8 = tmp_.path() / "w8a8", a16 = tmp_.path() / "w8a16";
  quantize(cp::Int8Scheme::W8A8, a8);
  quantize(cp::Int8Scheme::W8A16, a16);
  const std::vector<float> x = logits_of(a8, "ref", kQuantTokens), y = logits_of(a16, "ref", kQuantTokens);
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    num += double(x[i] - y[i]) * (x[i] - y[i]);
    den += double(y[i]) * y[i];
  }
  const double rel = std::sqrt(num / den);
  // The activation scheme reaches the kernels (the logits move), and per-token INT8 rounding of
  // activations (at most 1/254 of each row's max per element) moves them by well under 5%.
  EXPECT_GT(rel, 0.0);
  EXPECT_LT(rel, 0.05);
}

TEST_F(QuantizeTest, ConfigJsonFollowsCompressedTensors) {
  const fs::path out = tmp_.path() / "w8a8", out16 = tmp_.path() / "w8a16";
  quantize(cp::Int8Scheme::W8A8, out);
  quantize(cp::Int8Scheme::W8A16, out16);
  std::ifstream in(out / "config.json");
  const json cfg = json::parse(in);
  const json& q = cfg.at("quantization_config");
  EXPECT_EQ(q.at("quant_method"), "compressed-tensors");
  EXPECT_EQ(q.at("format"), "int-quantized");
  EXPECT_EQ(q.at("ignore"), json::array({"lm_head"}));
  const json& g = q.at("config_groups").at("group_0");
  EXPECT_EQ(g.at("targets"), json::array({"Linear"}));
  const json want_w = {{"num_bits", 8}, {"type", "int"}, {"symmetric", true}, {"strategy", "channel"}, {"dynamic", false}};
  const json want_a = {{"num_bits", 8}, {"type", "int"}, {"symmetric", true}, {"strategy", "token"}, {"dynamic", true}};
  for (const auto& [k, v] : want_w.items()) EXPECT_EQ(g.at("weights").at(k), v) << k;
  for (const auto& [k, v] : want_a.items()) EXPECT_EQ(g.at("input_activations").at(k), v) << k;
  EXPECT_EQ(cfg.at("torch_dtype"), "float32");  // the dtype of what stayed float

  std::ifstream in16(out16 / "config.json");
  EXPECT_TRUE(json::parse(in16).at("quantization_config").at("config_groups").at("group_0").at("input_activations").is_null());

  // Tensor names and dtypes vLLM loads: int8 weight, f32 weight_scale [N, 1]; lm_head float.
  const cb::engine::WeightStore st = cb::engine::WeightStore::open_dir(out);
  EXPECT_EQ(st.info("model.layers.1.mlp.down_proj.weight").dtype, DType::I8);
  EXPECT_EQ(st.info("model.layers.1.mlp.down_proj.weight_scale").dtype, DType::F32);
  EXPECT_EQ(st.info("model.layers.1.mlp.down_proj.weight_scale").shape, (std::vector<int64_t>{64, 1}));
  EXPECT_EQ(st.info("lm_head.weight").dtype, DType::F32);
  EXPECT_FALSE(st.has("lm_head.weight_scale"));
  EXPECT_FALSE(st.has("model.embed_tokens.weight_scale"));
}

TEST_F(QuantizeTest, SizesAreFileBytes) {
  const fs::path out = tmp_.path() / "w8a8";
  const cp::QuantizeReport rep = quantize(cp::Int8Scheme::W8A8, out);
  EXPECT_EQ(rep.output_bytes, fs::file_size(out / "config.json") + fs::file_size(out / "model.safetensors"));
  EXPECT_EQ(rep.source_bytes, fs::file_size(src_ / "config.json") + fs::file_size(src_ / "model.safetensors"));
  EXPECT_EQ(rep.fp32_bytes, rep.source_bytes);
  EXPECT_DOUBLE_EQ(rep.size_ratio_vs_fp32(), double(rep.source_bytes) / double(rep.output_bytes));
  // 92160 linear weights at 1 byte + their scales, 33472 float params at 4 bytes, plus headers.
  EXPECT_GT(rep.size_ratio_vs_fp32(), 2.0);
  EXPECT_LT(rep.size_ratio_vs_fp32(), 4.0);
  std::ifstream in(out / "compression.json");
  const json rec = json::parse(in);
  EXPECT_EQ(rec.at("schema"), "claimbench.compression");
  EXPECT_EQ(rec.at("method"), "int8-ptq");
  EXPECT_EQ(rec.at("result").at("output_model_file_bytes"), rep.output_bytes);
  EXPECT_EQ(rec.at("source").at("model_file_bytes"), rep.source_bytes);
  EXPECT_EQ(rec.at("source").at("safetensors_fnv1a64").get<std::string>().size(), 16u);
}

TEST_F(QuantizeTest, Bf16SourceSaysRatioVsFp32IsNotMeasured) {
  const fs::path bf = tmp_.path() / "bf16", out = tmp_.path() / "q";
  cb::engine::write_random_model(cfg_, 11, bf, DType::BF16);
  cp::QuantizeOptions o;
  o.eval_backend = "";
  const cp::QuantizeReport rep = cp::quantize_model(bf, out, o);
  EXPECT_EQ(rep.fp32_bytes, 0u);
  EXPECT_EQ(rep.to_json().at("not_measured").at("size_ratio_vs_fp32"), "the source is bfloat16, not float32");
  auto lm = cb::engine::LoadedModel::open(out, "ref");
  EXPECT_EQ(lm->model().weights().lm_head.values.dtype, DType::BF16);
  EXPECT_EQ(lm->model().weights().layers[0].wq.layout, WeightLayout::Int8PerChannel);
}

TEST_F(QuantizeTest, LmHeadOption) {
  const fs::path out = tmp_.path() / "all";
  cp::QuantizeOptions o;
  o.quantize_lm_head = true;
  o.eval_backend = "";
  cp::quantize_model(src_, out, o);
  auto lm = cb::engine::LoadedModel::open(out, "ref");
  EXPECT_EQ(lm->model().weights().lm_head.layout, WeightLayout::Int8PerChannel);
  EXPECT_EQ(lm->config().compression.quant_ignore.size(), 0u);
}

TEST_F(QuantizeTest, ErrorsNameTheProblem) {
  const fs::path out = tmp_.path() / "q";
  quantize(cp::Int8Scheme::W8A8, out);
  EXPECT_CONTAINS(cb::test::model_error([&] { quantize(cp::Int8Scheme::W8A8, out); }),
                  "holds a model already (config.json); refusing to overwrite it");
  EXPECT_CONTAINS(cb::test::model_error([&] { cp::quantize_model(out, tmp_.path() / "q2", {}); }),
                  "config.json: key 'quantization_config': the model is INT8 already");
  EXPECT_CONTAINS(cb::test::model_error([&] { cp::quantize_model(tmp_.path() / "nope", tmp_.path() / "q3", {}); }),
                  "nope: model directory does not exist");
  EXPECT_CONTAINS(cb::test::model_error([&] { cp::quantize_model(src_, src_, {}); }), "is the source model directory");
  EXPECT_THROW(cp::parse_int8_scheme("w4a16"), std::invalid_argument);
}
