// write_random_model: seeded, HF-layout random models: determinism, layout, statistics, refusal
// to overwrite.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#if __has_include(<omp.h>)
#include <omp.h>
#define CB_TEST_HAVE_OMP 1
#endif

#include "cb/engine/model/config.h"
#include "cb/engine/model/model_init.h"
#include "cb/engine/model/safetensors.h"
#include "cb/engine/model/weights.h"
#include "test_support.h"

namespace fs = std::filesystem;
using cb::engine::ModelConfig;
using cb::engine::SafetensorsFile;
using cb::engine::WeightStore;
using cb::kernels::DType;
using cb::test::model_error;
using cb::test::read_file;

namespace {

struct Stats {
  double mean = 0, std = 0, max_abs = 0;
  size_t n = 0;
};
Stats stats_of(const cb::kernels::Tensor& t) {
  Stats s;
  s.n = static_cast<size_t>(t.numel());
  double sum = 0, sum2 = 0;
  for (size_t i = 0; i < s.n; ++i) {
    const double v = t.as<float>()[i];
    sum += v;
    sum2 += v * v;
    s.max_abs = std::max(s.max_abs, std::fabs(v));
  }
  s.mean = sum / static_cast<double>(s.n);
  s.std = std::sqrt(sum2 / static_cast<double>(s.n) - s.mean * s.mean);
  return s;
}

class ModelInitTest : public ::testing::Test {
 protected:
  const cb::test::TempDir tmp_{"cb-model-init"};
  const fs::path dir_ = tmp_.path();
  ModelConfig cfg_ = cb::engine::preset_config("tiny");
};

TEST_F(ModelInitTest, TinyModelLayoutAndSize) {
  const fs::path out = dir_ / "tiny";  // created by the call
  cb::engine::write_random_model(cfg_, 1234, out);

  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(out)) files.push_back(e.path().filename().string());
  std::sort(files.begin(), files.end());
  EXPECT_EQ(files, (std::vector<std::string>{"config.json", "model.safetensors"}));  // no temp files left
  EXPECT_LT(fs::file_size(out / "model.safetensors"), 2u * 1024 * 1024);

  const ModelConfig loaded = ModelConfig::load(out / "config.json");
  EXPECT_EQ(loaded.hidden_size, 64);
  EXPECT_EQ(loaded.num_key_value_heads, 2);
  EXPECT_EQ(loaded.vocab_size, 259);
  EXPECT_EQ(loaded.torch_dtype, "float32");

  auto f = SafetensorsFile::open(out / "model.safetensors");
  EXPECT_EQ(f->metadata(), (std::map<std::string, std::string>{
                               {"format", "pt"}, {"generator", "claimbench refengine init"}, {"seed", "1234"}}));
  // Tensors lie in expected_tensor_names order, back to back.
  size_t offset = 0;
  for (const std::string& n : cb::engine::expected_tensor_names(cfg_)) {
    const auto& ti = f->tensors().at(n);
    EXPECT_EQ(ti.begin, offset) << n;
    EXPECT_EQ(ti.dtype, DType::F32);
    offset = ti.end;
  }
  const WeightStore store = WeightStore::open_dir(out);
  const auto w = cb::engine::bind_weights(store, loaded);
  EXPECT_EQ(w.bytes, static_cast<size_t>(cfg_.parameter_count()) * 4);
}

TEST_F(ModelInitTest, WeightStatistics) {
  cb::engine::write_random_model(cfg_, 7, dir_);
  const WeightStore store = WeightStore::open_dir(dir_);
  const auto w = cb::engine::bind_weights(store, cfg_);

  for (const auto* norm : {&w.layers[0].attn_norm, &w.layers[1].ffn_norm, &w.final_norm})
    for (int64_t i = 0; i < norm->numel(); ++i) ASSERT_EQ(norm->as<float>()[i], 1.f);

  // Sample std of n normals has relative standard error ~1/sqrt(2n): <= 1.1% for the smallest
  // matrix here (k_proj, 2048 values), so 6% is > 5 standard errors; the mean's standard error is
  // std/sqrt(n), bounded at 5 of them. Seeded, so these are exact pass/fail, not flaky.
  const double out_std = 0.02 / std::sqrt(2.0 * cfg_.num_hidden_layers);  // o_proj, down_proj: 0.01
  struct Expect {
    const char* name;
    cb::kernels::Tensor t;
    double std;
  };
  const Expect cases[] = {
      {"embed", w.embed, 0.02},          {"q_proj", w.layers[0].wq.values, 0.02},
      {"k_proj", w.layers[0].wk.values, 0.02}, {"v_proj", w.layers[1].wv.values, 0.02},
      {"o_proj", w.layers[0].wo.values, out_std}, {"gate", w.layers[1].w_gate.values, 0.02},
      {"up", w.layers[0].w_up.values, 0.02}, {"down", w.layers[1].w_down.values, out_std},
      {"lm_head", w.lm_head.values, 0.02},
  };
  for (const Expect& c : cases) {
    const Stats s = stats_of(c.t);
    EXPECT_NEAR(s.std, c.std, 0.06 * c.std) << c.name;
    EXPECT_LT(std::fabs(s.mean), 5 * c.std / std::sqrt(static_cast<double>(s.n))) << c.name;
    EXPECT_LT(s.max_abs, 6.7 * c.std) << c.name;  // Box-Muller with 32-bit uniforms: |z| <= 6.66
  }
  // Independent streams per tensor: q_proj of layer 0 and layer 1 differ.
  EXPECT_NE(std::memcmp(w.layers[0].wq.values.data, w.layers[1].wq.values.data, w.layers[0].wq.values.nbytes()), 0);
}

TEST_F(ModelInitTest, SameSeedSameBytesDifferentSeedDifferentBytes) {
  cb::engine::write_random_model(cfg_, 42, dir_ / "a");
  cb::engine::write_random_model(cfg_, 42, dir_ / "b");
  cb::engine::write_random_model(cfg_, 43, dir_ / "c");
  const std::string a = read_file(dir_ / "a" / "model.safetensors");
  EXPECT_EQ(a, read_file(dir_ / "b" / "model.safetensors"));
  EXPECT_EQ(read_file(dir_ / "a" / "config.json"), read_file(dir_ / "b" / "config.json"));
  const std::string c = read_file(dir_ / "c" / "model.safetensors");
  ASSERT_EQ(a.size(), c.size());
  EXPECT_NE(a, c);

  // Every matrix differs between seeds (not just the metadata).
  auto fa = SafetensorsFile::open(dir_ / "a" / "model.safetensors");
  auto fc = SafetensorsFile::open(dir_ / "c" / "model.safetensors");
  for (const std::string& n : cb::engine::expected_tensor_names(cfg_)) {
    if (n.find("norm") != std::string::npos) continue;
    const auto ta = fa->view(n), tc = fc->view(n);
    EXPECT_NE(std::memcmp(ta.data, tc.data, ta.nbytes()), 0) << n;
  }
}

TEST_F(ModelInitTest, PinnedValuesAreMachineIndependent) {
  // The generator uses only IEEE basic operations, so these bytes are the same on every machine
  // and compiler; a change here invalidates golden files built from seeded models.
  cb::engine::write_random_model(cfg_, 1, dir_);
  auto f = SafetensorsFile::open(dir_ / "model.safetensors");
  const float* q = f->view("model.layers.0.self_attn.q_proj.weight").as<float>();
  const float* o = f->view("model.layers.1.self_attn.o_proj.weight").as<float>();
  uint32_t bits[4];
  std::memcpy(bits, q, 8);
  std::memcpy(bits + 2, o, 8);
  // Cross-checked against an independent Python model (mt19937_64, splitmix64 seeding, libm
  // Box-Muller, rounded to f32): all four agree to the last bit.
  EXPECT_EQ(bits[0], 0xbba32d93u) << std::hex << bits[0];
  EXPECT_EQ(bits[1], 0x3c596d1eu) << std::hex << bits[1];
  EXPECT_EQ(bits[2], 0x3bd4116cu) << std::hex << bits[2];
  EXPECT_EQ(bits[3], 0xbc0b5c59u) << std::hex << bits[3];
}

#ifdef CB_TEST_HAVE_OMP
TEST_F(ModelInitTest, ThreadCountDoesNotChangeBytes) {
  // A tensor large enough for many chunks: 4096 x 64 embedding = 4 chunks of 65536.
  ModelConfig big = cfg_;
  big.vocab_size = 4096;
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  cb::engine::write_random_model(big, 5, dir_ / "one");
  omp_set_num_threads(3);
  cb::engine::write_random_model(big, 5, dir_ / "three");
  omp_set_num_threads(saved);
  EXPECT_EQ(read_file(dir_ / "one" / "model.safetensors"), read_file(dir_ / "three" / "model.safetensors"));
}
#endif

TEST_F(ModelInitTest, HalfPrecisionIsTheRoundedF32Model) {
  cb::engine::write_random_model(cfg_, 9, dir_ / "f32", DType::F32);
  cb::engine::write_random_model(cfg_, 9, dir_ / "bf16", DType::BF16);
  cb::engine::write_random_model(cfg_, 9, dir_ / "f16", DType::F16);
  EXPECT_EQ(ModelConfig::load(dir_ / "bf16" / "config.json").torch_dtype, "bfloat16");
  EXPECT_EQ(ModelConfig::load(dir_ / "f16" / "config.json").torch_dtype, "float16");
  auto f32 = SafetensorsFile::open(dir_ / "f32" / "model.safetensors");
  auto bf16 = SafetensorsFile::open(dir_ / "bf16" / "model.safetensors");
  auto f16 = SafetensorsFile::open(dir_ / "f16" / "model.safetensors");
  size_t mismatches = 0;
  for (const std::string& n : cb::engine::expected_tensor_names(cfg_)) {
    const auto a = f32->view(n), b = bf16->view(n), h = f16->view(n);
    ASSERT_EQ(b.dtype, DType::BF16);
    ASSERT_EQ(h.dtype, DType::F16);
    for (int64_t i = 0; i < a.numel(); ++i) {
      const float v = a.as<float>()[i];
      mismatches += b.as<uint16_t>()[i] != cb::kernels::f32_to_bf16(v);
      mismatches += h.as<uint16_t>()[i] != cb::kernels::f32_to_f16(v);
    }
  }
  EXPECT_EQ(mismatches, 0u);
  const WeightStore store = WeightStore::open_dir(dir_ / "bf16");
  EXPECT_EQ(cb::engine::bind_weights(store, cfg_).bytes, static_cast<size_t>(cfg_.parameter_count()) * 2);
}

TEST_F(ModelInitTest, RefusesToOverwriteUnlessAsked) {
  cb::engine::write_random_model(cfg_, 1, dir_);
  const std::string before = read_file(dir_ / "model.safetensors");
  EXPECT_EQ(model_error([&] { cb::engine::write_random_model(cfg_, 2, dir_); }),
            dir_.string() + ": holds a model already (config.json); refusing to overwrite it");
  EXPECT_EQ(read_file(dir_ / "model.safetensors"), before);

  cb::engine::write_random_model(cfg_, 2, dir_, DType::F32, /*overwrite=*/true);
  EXPECT_NE(read_file(dir_ / "model.safetensors"), before);
  EXPECT_EQ(SafetensorsFile::open(dir_ / "model.safetensors")->metadata().at("seed"), "2");

  // A lone model.safetensors counts as a model too.
  fs::remove(dir_ / "config.json");
  EXPECT_CONTAINS(model_error([&] { cb::engine::write_random_model(cfg_, 3, dir_); }), "(model.safetensors)");
}

TEST_F(ModelInitTest, RejectsBadArguments) {
  EXPECT_CONTAINS(model_error([&] { cb::engine::write_random_model(cfg_, 1, dir_ / "i8", DType::I8); }),
                  "dtype i8 is unsupported (F32, F16 or BF16)");
  ModelConfig bad = cfg_;
  bad.num_key_value_heads = 3;
  EXPECT_CONTAINS(model_error([&] { cb::engine::write_random_model(bad, 1, dir_ / "bad"); }),
                  "key 'num_key_value_heads': 3 does not divide num_attention_heads 4");
  EXPECT_FALSE(fs::exists(dir_ / "i8"));
  EXPECT_FALSE(fs::exists(dir_ / "bad"));
  std::ofstream(dir_ / "file") << "x";
  EXPECT_CONTAINS(model_error([&] { cb::engine::write_random_model(cfg_, 1, dir_ / "file"); }),
                  "exists and is not a directory");
}

}  // namespace
