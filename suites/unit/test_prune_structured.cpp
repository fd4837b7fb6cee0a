// Structured pruning: FLOPs/token from the config, the plan meets the FLOP target with uniform
// per-layer counts, the smaller model's shapes and config, and its logits: identical to the
// source for a keep-everything plan, identical to the dense model with the removed units zeroed.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cb/engine/compress/export.h"
#include "cb/engine/compress/prune.h"
#include "cb/engine/model/engine.h"
#include "cb/engine/model/errors.h"
#include "cb/engine/model/model_init.h"
#include "cb/engine/model/planted_defects.h"
#include "cb/engine/model/weights.h"
#include "engine_test_util.h"
#include "test_support.h"

namespace fs = std::filesystem;
namespace cp = cb::engine::compress;
using cb::engine::ModelConfig;
using cb::kernels::DType;
using nlohmann::json;

namespace {

using cb::test::logits_of;

const std::vector<int32_t> kStructuredTokens = {256, 83, 116, 114, 117, 99, 116, 117, 114, 101, 100, 33, 10, 65, 66, 67, 68, 69};

class StructuredTest : public ::testing::Test {
 protected:
  void SetUp() override { cb::engine::write_random_model(cfg_, 31, src_); }
  const cb::test::TempDir tmp_{"cb-structured"};
  const ModelConfig cfg_ = cb::engine::preset_config("tiny");  // D 64, F 176, 2 layers, 4 heads, 2 KV heads
  const fs::path src_ = tmp_.path() / "src";
};

}  // namespace

TEST(Flops, PerTokenFromTheConfig) {
  const ModelConfig c = cb::engine::preset_config("tiny");
  // Per layer, N x K of q 64x64, k 32x64, v 32x64, o 64x64, gate/up 176x64, down 64x176 = 46080
  // multiply-adds; 2 layers + lm_head 259x64 = 108736; x 2 FLOPs.
  EXPECT_EQ(cp::flops_per_token(c, 0).matmul, 217472);
  EXPECT_EQ(cp::flops_per_token(c, 0).attention, 0);
  // Attention at context 128: q.k and p.v, 2 * 64 * 128 each, per layer.
  EXPECT_EQ(cp::flops_per_token(c, 128).attention, 2 * 4 * 64 * 128);
  EXPECT_EQ(cp::flops_per_token(c, 128).total(), 217472 + 65536);
  // A pruned shape: 1 KV group (2 heads of 16) and 28 channels.
  const ModelConfig p = cp::pruned_config(c, 1, 28);
  EXPECT_EQ(p.num_attention_heads, 2);
  EXPECT_EQ(p.num_key_value_heads, 1);
  EXPECT_EQ(p.head_dim(), 16);
  EXPECT_EQ(p.q_dim(), 32);
  EXPECT_EQ(p.head_dim_key, 16);
  EXPECT_EQ(cp::flops_per_token(p, 128).total(), 2 * (16576 + 2 * (32 * 64 * 2 + 16 * 64 * 2 + 3 * 28 * 64)) + 2 * 4 * 32 * 128);
  EXPECT_THROW(cp::flops_per_token(c, -1), std::invalid_argument);
}

TEST_F(StructuredTest, MeetsTheFlopTargetWithASmallerConsistentModel) {
  cp::StructuredOptions o;
  o.target_flop_reduction = 0.6;
  o.eval_backend = "";
  const fs::path out = tmp_.path() / "s";
  const cp::StructuredReport r = cp::prune_structured_model(src_, out, o);
  // Budget floor(0.4 * 283008) = 113203. Both KV groups cost 147840 + 768 f > budget for any f, so
  // one group: 90496 + 768 f <= 113203 gives f <= 29, rounded down to a multiple of 4: 28.
  EXPECT_EQ(r.pruned.num_key_value_heads, 1);
  EXPECT_EQ(r.pruned.num_attention_heads, 2);
  EXPECT_EQ(r.pruned.intermediate_size, 28);
  EXPECT_EQ(r.pruned_flops.total(), 112000);
  EXPECT_LE(r.pruned_flops.total(), int64_t(0.4 * double(r.dense_flops.total())));
  EXPECT_GE(r.flop_reduction(), 0.6);

  const ModelConfig pc = ModelConfig::load(out / "config.json");
  EXPECT_EQ(pc.hidden_size, 64);
  EXPECT_EQ(pc.head_dim(), 16);
  EXPECT_EQ(pc.num_attention_heads, 2);
  EXPECT_EQ(pc.intermediate_size, 28);
  std::ifstream in(out / "config.json");
  EXPECT_EQ(json::parse(in).at("head_dim"), 16);  // hidden_size / heads would be 32
  const cb::engine::WeightStore st = cb::engine::WeightStore::open_dir(out);
  for (const std::string& n : cb::engine::expected_tensor_names(pc)) EXPECT_EQ(st.info(n).shape, cb::engine::expected_tensor_shape(pc, n)) << n;
  EXPECT_EQ(st.info("model.layers.0.self_attn.q_proj.weight").shape, (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(st.info("model.layers.0.self_attn.o_proj.weight").shape, (std::vector<int64_t>{64, 32}));
  EXPECT_EQ(st.info("model.layers.1.mlp.down_proj.weight").shape, (std::vector<int64_t>{64, 28}));
  EXPECT_EQ(logits_of(out, "ref", kStructuredTokens).size(), kStructuredTokens.size() * 259);  // it runs

  std::ifstream rec_in(out / "compression.json");
  const json rec = json::parse(rec_in);
  EXPECT_EQ(rec.at("method"), "structured");
  EXPECT_EQ(rec.at("kept").at("kv_groups").size(), 2u);
  EXPECT_EQ(rec.at("kept").at("mlp_channels").at(1).size(), 28u);
  EXPECT_EQ(rec.at("result").at("flops_per_token_pruned").at("total"), 112000);
}

TEST_F(StructuredTest, KeepEverythingPlanGivesIdenticalLogits) {
  const cp::SourceModel src = cp::SourceModel::open(src_);
  const cp::Importance imp = cp::structured_importance(src, cp::ScoreMethod::Magnitude, nullptr);
  const cp::StructuredPlan all = cp::plan_with_counts(src.cfg, imp, 2, 176);
  const fs::path out = tmp_.path() / "same";
  cp::write_structured(src, all, out, false);
  EXPECT_EQ(logits_of(out, "ref", kStructuredTokens), logits_of(src_, "ref", kStructuredTokens));
  const ModelConfig pc = ModelConfig::load(out / "config.json");
  EXPECT_EQ(pc.head_dim_key, 0);  // nothing pruned: no explicit head_dim
  EXPECT_EQ(pc.to_json(), src.cfg.to_json());
}

TEST_F(StructuredTest, PrunedModelEqualsTheDenseModelWithRemovedUnitsZeroed) {
  const cp::SourceModel src = cp::SourceModel::open(src_);
  const cp::Importance imp = cp::structured_importance(src, cp::ScoreMethod::Magnitude, nullptr);
  const cp::StructuredPlan plan = cp::plan_with_counts(src.cfg, imp, 1, 100);
  const fs::path pruned = tmp_.path() / "pruned", zeroed = tmp_.path() / "zeroed";
  cp::write_structured(src, plan, pruned, false);

  // The dense model with o_proj columns of removed heads and down_proj columns of removed channels
  // zeroed: those units then add nothing to the residual stream.
  std::vector<cb::engine::TensorSpec> specs;
  for (const std::string& n : cb::engine::expected_tensor_names(src.cfg))
    specs.push_back({n, DType::F32, cb::engine::expected_tensor_shape(src.cfg, n)});
  cp::prepare_output_dir(zeroed, src_, false);
  cp::write_model_dir(zeroed, src.cfg.to_json(), specs, [&](const cb::engine::TensorSpec& s, void* dst, size_t nbytes) {
    std::vector<float> w = src.read_f32(s.name);
    const bool o = s.name.find("o_proj") != std::string::npos, d = s.name.find("down_proj") != std::string::npos;
    if (o || d) {
      const int l = std::stoi(s.name.substr(13));
      const int64_t K = s.shape[1];
      std::vector<bool> keep(size_t(K), false);
      if (o)
        for (int g : plan.kv_groups[size_t(l)])
          for (int64_t c = g * 2 * 16; c < (g + 1) * 2 * 16; ++c) keep[size_t(c)] = true;  // 2 heads of 16 per group
      if (d)
        for (int c : plan.mlp_channels[size_t(l)]) keep[size_t(c)] = true;
      for (int64_t r = 0; r < s.shape[0]; ++r)
        for (int64_t c = 0; c < K; ++c)
          if (!keep[size_t(c)]) w[size_t(r * K + c)] = 0.f;
    }
    std::memcpy(dst, w.data(), nbytes);
  }, {});
  // ref sums in double in column order; the zeroed model only adds exact zeros in between, and
  // every kept head attends exactly as before: the logits are the same floats.
  EXPECT_EQ(logits_of(pruned, "ref", kStructuredTokens), logits_of(zeroed, "ref", kStructuredTokens));
}

TEST(StructuredPlan, KeepsTheMostImportantUnitsPerLayer) {
  const ModelConfig c = cb::engine::preset_config("tiny");
  cp::Importance imp;
  imp.kv_groups = {{1.0, 5.0}, {7.0, 7.0}};  // layer 1: a tie keeps the lower group
  std::vector<double> ch0(176, 1.0), ch1(176, 1.0);
  ch0[3] = ch0[170] = ch0[50] = ch0[9] = 9.0;
  ch1[0] = ch1[1] = ch1[2] = ch1[175] = 9.0;
  imp.mlp_channels = {ch0, ch1};
  const cp::StructuredPlan p = cp::plan_with_counts(c, imp, 1, 4);
  EXPECT_EQ(p.kv_groups, (std::vector<std::vector<int>>{{1}, {0}}));
  EXPECT_EQ(p.mlp_channels, (std::vector<std::vector<int>>{{3, 9, 50, 170}, {0, 1, 2, 175}}));
  // Fixed KV groups: 2 groups at 40% reduction, context 0: 2 * (16576 + 2 * (12288 + 192 f)) =
  // 82304 + 768 f <= floor(0.6 * 217472) = 130483 gives f <= 62, a multiple of 4: 60.
  const cp::StructuredPlan fixed = cp::plan_structured(c, imp, 0.4, 0, 4, 2);
  EXPECT_EQ(fixed.kv_groups[0].size(), 2u);
  EXPECT_EQ(fixed.mlp_channels[0].size(), 60u);
  EXPECT_CONTAINS(cb::test::model_error([&] { cp::plan_structured(c, imp, 0.4, 0, 4, 3); }),
                  "--keep-kv-groups 3 is outside [1, 2]");
  EXPECT_THROW(cp::plan_with_counts(c, imp, 3, 4), cb::engine::ModelError);
  EXPECT_THROW(cp::plan_with_counts(c, imp, 1, 0), cb::engine::ModelError);
}

TEST_F(StructuredTest, WandaScoresAndErrors) {
  cp::StructuredOptions o;
  o.scores = cp::ScoreMethod::Wanda;
  o.target_flop_reduction = 0.3;
  o.eval_backend = "";
  o.calib.tokens = 64;
  o.calib.seq_len = 32;
  const cp::StructuredReport r = cp::prune_structured_model(src_, tmp_.path() / "w", o);
  EXPECT_LE(r.pruned_flops.total(), int64_t(0.7 * double(r.dense_flops.total())));
  EXPECT_EQ(r.pruned.intermediate_size % 4, 0);

  for (double bad : {0.0, 1.0, 1.5, -0.2}) {
    o.target_flop_reduction = bad;
    EXPECT_CONTAINS(cb::test::model_error([&] { cp::prune_structured_model(src_, tmp_.path() / "x", o); }), "is outside (0, 1)");
  }
  o.scores = cp::ScoreMethod::Magnitude;
  o.target_flop_reduction = 0.95;  // lm_head alone is 12% of the FLOPs
  EXPECT_CONTAINS(cb::test::model_error([&] { cp::prune_structured_model(src_, tmp_.path() / "y", o); }),
                  "--target-flop-reduction 0.95 is unreachable at context 128");
  EXPECT_FALSE(fs::exists(tmp_.path() / "y" / "config.json"));
}

// The planted defect dense-pruned (planted_defects.h): the pruned model padded back to its dense
// shape gives the same logits while every matmul runs at the dense size, which is what the
// executed-FLOP count behind `sparse-flops` must see.
TEST_F(StructuredTest, DensePrunedDefectKeepsLogitsAndRunsDenseFlops) {
  cp::StructuredOptions o;
  o.target_flop_reduction = 0.6;
  o.eval_backend = "";
  const fs::path out = tmp_.path() / "s";
  cp::prune_structured_model(src_, out, o);

  auto run = [&](bool pad, int64_t* matmul_flops) {
    ModelConfig cfg = ModelConfig::load(out / "config.json");
    const cb::engine::WeightStore st = cb::engine::WeightStore::open_dir(out);
    cb::engine::ModelWeights w = cb::engine::bind_weights(st, cfg);
    if (pad) cb::engine::pad_pruned_to_dense(out, cfg, w);
    auto be = cb::kernels::make_backend("ref");
    cb::engine::Model m(cfg, std::move(w), *be);
    cb::engine::KvCache kv(*be, cfg, int((kStructuredTokens.size() + 15) / 16), 16);
    const auto table = cb::engine::KvCache::sequential_table(kv.num_blocks());
    auto logits = m.forward({cb::engine::SeqStep{kStructuredTokens, 0, table, true}}, kv);
    *matmul_flops = m.executed_flops().matmul;
    if (pad) {
      EXPECT_EQ(cfg.num_attention_heads, cfg_.num_attention_heads);
      EXPECT_EQ(cfg.intermediate_size, cfg_.intermediate_size);
    }
    return logits;
  };
  int64_t pruned_flops = 0, padded_flops = 0;
  const auto pruned = run(false, &pruned_flops), padded = run(true, &padded_flops);
  // Zero heads attend uniformly over zero values and zero channels give SiLU(0) * 0: exact zeros.
  EXPECT_EQ(pruned, padded);
  const int64_t T = int64_t(kStructuredTokens.size());
  EXPECT_EQ(padded_flops, T * cp::flops_per_token(cfg_, 0).matmul);
  EXPECT_LT(pruned_flops, padded_flops / 2);

  // A model without a structured record is left alone.
  ModelConfig cfg = cfg_;
  const cb::engine::WeightStore st = cb::engine::WeightStore::open_dir(src_);
  cb::engine::ModelWeights w = cb::engine::bind_weights(st, cfg);
  const size_t bytes = w.bytes;
  cb::engine::pad_pruned_to_dense(src_, cfg, w);
  EXPECT_EQ(w.bytes, bytes);
  EXPECT_TRUE(w.owned.empty());
}
