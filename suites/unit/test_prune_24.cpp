// 2:4 pruning: the mask is exactly 2 of every 4 along K, the compressed-tensors bitmask and the
// kernels' metadata encode it, compressed -> dense is the identity, and a sparse-24-bitmask
// export loads as Sparse24 weights computing what the dense-with-zeros model computes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cb/engine/compress/calibrate.h"
#include "cb/engine/compress/export.h"
#include "cb/engine/compress/prune.h"
#include "cb/engine/compress/quantize.h"
#include "cb/engine/model/sparse24.h"
#include "cb/engine/model/engine.h"
#include "cb/engine/model/errors.h"
#include "cb/engine/model/model_init.h"
#include "cb/engine/model/weights.h"
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

const std::vector<int32_t> k24Tokens = {256, 84, 119, 111, 32, 111, 102, 32, 102, 111, 117, 114, 46};

std::vector<std::string> pruned_modules(const ModelConfig& cfg) {
  std::vector<std::string> m = cb::engine::linear_module_names(cfg);
  m.pop_back();  // lm_head
  return m;
}

class Prune24Test : public ::testing::Test {
 protected:
  void SetUp() override { cb::engine::write_random_model(cfg_, 21, src_); }
  cp::Prune24Report prune(const fs::path& out, bool compressed, cp::ScoreMethod s = cp::ScoreMethod::Magnitude) {
    cp::Prune24Options o;
    o.compressed = compressed;
    o.scores = s;
    o.eval_backend = "";
    o.calib.tokens = 96;
    o.calib.seq_len = 48;
    return cp::prune_24_model(src_, out, o);
  }
  const cb::test::TempDir tmp_{"cb-prune24"};
  const ModelConfig cfg_ = cb::engine::preset_config("tiny");
  const fs::path src_ = tmp_.path() / "src";
};

}  // namespace

TEST(Mask24, KeepsTheTwoHighestScoresOfEveryGroup) {
  const int64_t N = 9, K = 32;
  std::mt19937_64 gen(3);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<float> s(size_t(N * K));
  for (float& v : s) v = u(gen);
  // Ties go to the lower column.
  const float ties[][4] = {{1, 1, 1, 1}, {0, 2, 2, 1}, {3, 0, 0, 3}, {0, 0, 0, 0}};
  for (int t = 0; t < 4; ++t) std::copy(ties[t], ties[t] + 4, s.begin() + 4 * t);
  const std::vector<uint8_t> m = cp::mask_24(s.data(), N, K);
  const uint8_t want[][4] = {{1, 1, 0, 0}, {0, 1, 1, 0}, {1, 0, 0, 1}, {1, 1, 0, 0}};
  for (int t = 0; t < 4; ++t)
    for (int j = 0; j < 4; ++j) EXPECT_EQ(m[size_t(4 * t + j)], want[t][j]) << "tie case " << t;
  for (int64_t g = 0; g < N * K / 4; ++g) {
    int kept = 0;
    float min_kept = 2, max_pruned = -1;
    for (int j = 0; j < 4; ++j) {
      const size_t i = size_t(4 * g + j);
      kept += m[i];
      if (m[i]) min_kept = std::min(min_kept, s[i]);
      else max_pruned = std::max(max_pruned, s[i]);
    }
    EXPECT_EQ(kept, 2) << "group " << g;
    EXPECT_GE(min_kept, max_pruned) << "group " << g;
  }
  EXPECT_THROW(cp::mask_24(s.data(), 1, 6), cb::engine::ModelError);
}

TEST(Mask24, BitmaskIsCompressedTensorsLittleEndianBits) {
  // One row of K = 12: kept columns 0, 2 | 5, 7 | 8, 11. Column c is bit c % 8 of byte c / 8.
  const uint8_t mask[12] = {1, 0, 1, 0, 0, 1, 0, 1, 1, 0, 0, 1};
  const std::vector<uint8_t> bits = cp::pack_bitmask(mask, 1, 12);
  ASSERT_EQ(bits.size(), 2u);
  EXPECT_EQ(bits[0], 0xa5);  // 1 + 4 + 32 + 128
  EXPECT_EQ(bits[1], 0x09);  // columns 8 and 11
  EXPECT_EQ(cp::unpack_bitmask(bits.data(), 1, 12), std::vector<uint8_t>(mask, mask + 12));
  // Kernel metadata: i0 | i1 << 2 per group.
  const std::vector<uint8_t> meta = cp::meta_from_mask(mask, 1, 12, "t: ");
  EXPECT_EQ(meta, (std::vector<uint8_t>{0 | 2 << 2, 1 | 3 << 2, 0 | 3 << 2}));
  EXPECT_EQ(cp::mask_from_meta(meta.data(), 1, 12), std::vector<uint8_t>(mask, mask + 12));
  const uint8_t three[8] = {1, 1, 0, 0, 1, 1, 1, 0};
  EXPECT_EQ(cb::test::model_error([&] { cp::meta_from_mask(three, 1, 8, "w.bitmask: "); }),
            "w.bitmask: row 0, columns 4..7: 3 kept, 2:4 needs exactly 2");
}

TEST(Mask24, CompressedToDenseRoundTripIsExact) {
  const int64_t N = 5, K = 16;
  std::mt19937_64 gen(9);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> w(size_t(N * K));
  for (float& v : w) v = nd(gen);
  const std::vector<float> s = cp::scores_24(w.data(), N, K, cp::ScoreMethod::Magnitude, nullptr);
  const std::vector<uint8_t> m = cp::mask_24(s.data(), N, K);
  const std::vector<uint8_t> kept = cp::gather_kept(w.data(), m.data(), N, K, 4);
  ASSERT_EQ(kept.size(), size_t(N * K / 2) * 4);
  const std::vector<uint8_t> dense = cp::scatter_kept(kept.data(), m.data(), N, K, 4);
  for (int64_t i = 0; i < N * K; ++i) {
    float v;
    std::memcpy(&v, dense.data() + 4 * i, 4);
    EXPECT_EQ(v, m[size_t(i)] ? w[size_t(i)] : 0.f) << i;
  }
  // dense-with-zeros -> compressed -> dense gives the same bytes.
  EXPECT_EQ(cp::scatter_kept(cp::gather_kept(dense.data(), m.data(), N, K, 4).data(), m.data(), N, K, 4), dense);
}

TEST(Mask24, WandaScoresWeighColumnsByInputNorm) {
  const float w[4] = {1.0f, 0.9f, 0.5f, 0.4f};
  const std::vector<double> sq = {0.0, 0.0, 100.0, 100.0};
  const auto mag = cp::mask_24(cp::scores_24(w, 1, 4, cp::ScoreMethod::Magnitude, nullptr).data(), 1, 4);
  const auto wan = cp::mask_24(cp::scores_24(w, 1, 4, cp::ScoreMethod::Wanda, &sq).data(), 1, 4);
  EXPECT_EQ(mag, (std::vector<uint8_t>{1, 1, 0, 0}));
  EXPECT_EQ(wan, (std::vector<uint8_t>{0, 0, 1, 1}));
}

TEST_F(Prune24Test, DenseExportKeepsExactlyTwoOfFourAndTheRestUntouched) {
  const fs::path out = tmp_.path() / "dense";
  const cp::Prune24Report rep = prune(out, false);
  EXPECT_EQ(rep.pruned_matrices, 14);
  const cp::SourceModel a = cp::SourceModel::open(src_), b = cp::SourceModel::open(out);
  for (const std::string& m : pruned_modules(cfg_)) {
    SCOPED_TRACE(m);
    const std::vector<float> w = a.read_f32(m + ".weight"), p = b.read_f32(m + ".weight");
    const int64_t K = a.store.info(m + ".weight").shape[1];
    ASSERT_EQ(w.size(), p.size());
    for (size_t g = 0; g < w.size() / 4; ++g) {
      int nonzero = 0;
      float min_kept = 1e30f, max_pruned = -1;
      for (size_t j = 4 * g; j < 4 * g + 4; ++j) {
        if (p[j] != 0.f) {
          ++nonzero;
          EXPECT_EQ(p[j], w[j]);  // kept weights are the source's, bit for bit
          min_kept = std::min(min_kept, std::fabs(w[j]));
        } else {
          max_pruned = std::max(max_pruned, std::fabs(w[j]));
        }
      }
      ASSERT_EQ(nonzero, 2) << "row " << 4 * g / size_t(K) << " group " << g % size_t(K / 4);
      EXPECT_GE(min_kept, max_pruned);
    }
  }
  for (const char* n : {"lm_head.weight", "model.embed_tokens.weight", "model.norm.weight"})
    EXPECT_EQ(a.read_f32(n), b.read_f32(n)) << n;
  const json q = b.cfg.compression.raw;
  EXPECT_EQ(q.at("quant_method"), "compressed-tensors");
  EXPECT_FALSE(q.contains("config_groups"));
  EXPECT_EQ(q.at("sparsity_config").at("format"), "dense");
  EXPECT_EQ(q.at("sparsity_config").at("sparsity_structure"), "2:4");
  EXPECT_EQ(q.at("sparsity_config").at("targets"), json::array({"Linear"}));
  EXPECT_EQ(q.at("sparsity_config").at("ignore"), json::array({"lm_head"}));
  EXPECT_DOUBLE_EQ(q.at("sparsity_config").at("global_sparsity").get<double>(), 46080.0 / double(cfg_.parameter_count()));
  // Dense with zeros loads as plain dense weights (fine-tuning keeps the zeros with keep_zeros).
  auto lm = cb::engine::LoadedModel::open(out, "ref");
  EXPECT_EQ(lm->model().weights().layers[0].wq.layout, WeightLayout::Dense);
}

TEST_F(Prune24Test, CompressedExportLoadsAsSparse24WithTheDenseLogits) {
  const fs::path dense = tmp_.path() / "dense", comp = tmp_.path() / "comp";
  prune(dense, false);
  const cp::Prune24Report rep = prune(comp, true);
  EXPECT_EQ(rep.output_bytes, fs::file_size(comp / "config.json") + fs::file_size(comp / "model.safetensors"));
  EXPECT_LT(rep.output_bytes, rep.source_bytes);

  const cb::engine::WeightStore st = cb::engine::WeightStore::open_dir(comp);
  const std::string m = "model.layers.1.mlp.down_proj";
  EXPECT_FALSE(st.has(m + ".weight"));
  EXPECT_EQ(st.info(m + ".compressed").shape, (std::vector<int64_t>{64, 88}));
  EXPECT_EQ(st.info(m + ".bitmask").shape, (std::vector<int64_t>{64, 22}));
  // The dtypes compressed-tensors writes: packed bits as U8, the dense shape as I64 [2, 1].
  EXPECT_EQ(st.info(m + ".bitmask").dtype, cb::kernels::DType::U8);
  EXPECT_EQ(st.info(m + ".shape").dtype, cb::kernels::DType::I64);
  EXPECT_EQ(st.info(m + ".shape").shape, (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(st.view(m + ".shape").as<const int64_t>()[1], 176);

  auto lm = cb::engine::LoadedModel::open(comp, "ref");
  const cp::SourceModel d = cp::SourceModel::open(dense);
  const cb::engine::LayerWeights& L = lm->model().weights().layers[1];
  ASSERT_EQ(L.w_down.layout, WeightLayout::Sparse24);
  // Metadata + values expand to the dense-with-zeros tensor exactly.
  const std::vector<uint8_t> mask = cp::mask_from_meta(L.w_down.meta.as<const uint8_t>(), 64, 176);
  const std::vector<uint8_t> back = cp::scatter_kept(L.w_down.values.data, mask.data(), 64, 176, 4);
  const std::vector<float> want = d.read_f32(m + ".weight");
  EXPECT_EQ(std::memcmp(back.data(), want.data(), back.size()), 0);
  EXPECT_EQ(lm->model().weights().lm_head.layout, WeightLayout::Dense);

  const std::vector<float> a = logits_of(comp, "ref", k24Tokens), b = logits_of(dense, "ref", k24Tokens);
  ASSERT_EQ(a.size(), b.size());
  float dmax = 0, amax = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    dmax = std::max(dmax, std::fabs(a[i] - b[i]));
    amax = std::max(amax, std::fabs(b[i]));
  }
  // ref accumulates in double; the dense model adds the same products plus exact zeros, so the
  // two agree to double rounding of the sum, far below f32's 6e-8 relative.
  EXPECT_LE(dmax, 1e-6f * amax);
}

TEST_F(Prune24Test, WandaCalibrationRecordsEveryLayerInput) {
  const cp::SourceModel src = cp::SourceModel::open(src_);
  cp::CalibrationOptions c;
  c.tokens = 80;
  c.seq_len = 40;
  c.backend = "ref";
  const cp::InputSquares sq = cp::calibrate_input_squares(src, c);
  ASSERT_EQ(sq.size(), 14u);
  for (int l = 0; l < 2; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    // q, k and v read the same normed input, gate and up too.
    EXPECT_EQ(sq.at(p + "self_attn.q_proj"), sq.at(p + "self_attn.k_proj"));
    EXPECT_EQ(sq.at(p + "self_attn.q_proj"), sq.at(p + "self_attn.v_proj"));
    EXPECT_EQ(sq.at(p + "mlp.gate_proj"), sq.at(p + "mlp.up_proj"));
    EXPECT_EQ(sq.at(p + "mlp.down_proj").size(), 176u);
    for (double v : sq.at(p + "self_attn.o_proj")) EXPECT_GT(v, 0.0);
  }
  // Layer 0's q_proj reads rmsnorm(embedding row) with norm weights 1: per token the squares sum
  // to D * ms / (ms + eps), ms = mean square of the row. Recomputed here from the same tokens.
  const std::vector<float> emb = src.read_f32("model.embed_tokens.weight");
  double want = 0;
  for (const auto& seq : cp::calibration_sequences(src.cfg, c))
    for (int32_t t : seq) {
      double ms = 0;
      for (int d = 0; d < 64; ++d) ms += double(emb[size_t(t) * 64 + d]) * emb[size_t(t) * 64 + d];
      ms /= 64;
      want += 64 * ms / (ms + double(src.cfg.rms_norm_eps));
    }
  double total = 0;
  for (double v : sq.at("model.layers.0.self_attn.q_proj")) total += v;
  EXPECT_NEAR(total, want, 1e-5 * want);  // ref rounds the normed values to f32
  EXPECT_EQ(cp::calibrate_input_squares(src, c), sq);  // seeded: the same windows every time

  const fs::path out = tmp_.path() / "wanda";
  const cp::Prune24Report rep = prune(out, false, cp::ScoreMethod::Wanda);
  EXPECT_EQ(rep.scores, cp::ScoreMethod::Wanda);
  std::ifstream in(out / "compression.json");
  EXPECT_EQ(json::parse(in).at("calibration").at("tokens"), 96);
}

TEST_F(Prune24Test, RejectsKNotDivisibleBy4) {
  ModelConfig odd = cfg_;
  odd.intermediate_size = 170;
  const fs::path src = tmp_.path() / "odd";
  cb::engine::write_random_model(odd, 1, src);
  cp::Prune24Options o;
  o.eval_backend = "";
  EXPECT_CONTAINS(cb::test::model_error([&] { cp::prune_24_model(src, tmp_.path() / "o", o); }),
                  "tensor 'model.layers.0.mlp.down_proj.weight': K = 170 is not divisible by 4");
  EXPECT_FALSE(fs::exists(tmp_.path() / "o" / "config.json"));
}

TEST_F(Prune24Test, SparseCompressedIsNotQuantizedOrPrunedAgain) {
  const fs::path comp = tmp_.path() / "comp";
  prune(comp, true);
  EXPECT_CONTAINS(cb::test::model_error([&] { cp::quantize_model(comp, tmp_.path() / "q", {}); }),
                  "stored as sparse-24-bitmask; quantize needs dense float weights");
  // Dense-with-zeros quantizes, and the INT8 export keeps the 2:4 sparsity_config.
  const fs::path dense = tmp_.path() / "dense", q = tmp_.path() / "q8";
  prune(dense, false);
  cp::QuantizeOptions qo;
  qo.eval_backend = "";
  cp::quantize_model(dense, q, qo);
  const ModelConfig qc = ModelConfig::load(q / "config.json");
  EXPECT_TRUE(qc.compression.int8_weights);
  EXPECT_EQ(qc.compression.sparsity_format, "dense");
  EXPECT_EQ(qc.compression.sparsity_structure, "2:4");
}
