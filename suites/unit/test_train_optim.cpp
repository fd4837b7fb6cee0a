// AdamW (decoupled decay, none on norms, frozen elements), the warmup + cosine schedule, and
// global-norm clipping, against values worked out by hand.
#include <gtest/gtest.h>

#include <cmath>

#include "cb/engine/train/optim.h"

using namespace cb::engine;
using namespace cb::engine::train;

namespace {
ModelConfig cfg() {
  ModelConfig c = preset_config("tiny");
  c.hidden_size = 8;
  c.intermediate_size = 8;
  c.num_hidden_layers = 1;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.vocab_size = 4;
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  c.pad_token_id = 3;
  return c;
}
}  // namespace

TEST(TrainOptim, AdamWFirstStepsMatchHandComputation) {
  const ParamLayout L(cfg());
  const AdamWConfig ac{0.9f, 0.95f, 1e-8f, 0.1f};
  AdamW opt(L, ac);
  std::vector<float> p(L.total, 0.5f), g(L.total, 0.2f);
  opt.step(p.data(), g.data(), 0.01);
  // Step 1: m_hat = g, v_hat = g^2, so the Adam term is g / |g| = 1 (eps aside).
  const size_t lin = L.find("model.layers.0.self_attn.q_proj.weight").offset;
  const size_t norm = L.find("model.layers.0.input_layernorm.weight").offset;
  const double adam1 = 0.2 / (0.2 + 1e-8);
  EXPECT_NEAR(p[lin], 0.5 - 0.01 * (adam1 + 0.1 * 0.5), 1e-7);
  EXPECT_NEAR(p[norm], 0.5 - 0.01 * adam1, 1e-7);  // no decay on norms
  // Step 2 with gradient -0.2: m = 0.9*0.02 - 0.02 = -0.002, v = 0.95*0.002*... worked out below.
  const double p_lin1 = p[lin];
  std::fill(g.begin(), g.end(), -0.2f);
  opt.step(p.data(), g.data(), 0.01);
  const double m = 0.9 * (0.1 * 0.2) + 0.1 * -0.2, v = 0.95 * (0.05 * 0.04) + 0.05 * 0.04;
  const double mh = m / (1 - 0.81), vh = v / (1 - 0.9025);
  EXPECT_NEAR(p[lin], p_lin1 - 0.01 * (mh / (std::sqrt(vh) + 1e-8) + 0.1 * p_lin1), 1e-6);
  EXPECT_EQ(opt.steps(), 2);
}

TEST(TrainOptim, FrozenElementsNeverMove) {
  const ParamLayout L(cfg());
  std::vector<uint8_t> frozen(L.total, 0);
  frozen[3] = frozen[L.total - 1] = 1;
  AdamW opt(L, {}, frozen);
  std::vector<float> p(L.total, 0.f), g(L.total, 1.f);
  p[3] = 0.f;
  p[L.total - 1] = 0.f;
  for (int i = 0; i < 3; ++i) opt.step(p.data(), g.data(), 0.1);
  EXPECT_EQ(p[3], 0.f);
  EXPECT_EQ(p[L.total - 1], 0.f);
  EXPECT_LT(p[4], -0.1f);
  EXPECT_THROW(AdamW(L, {}, std::vector<uint8_t>(3, 0)), std::invalid_argument);
}

TEST(TrainOptim, WarmupThenCosineSchedule) {
  EXPECT_DOUBLE_EQ(lr_at(1, 100, 10, 1.0, 0.1), 0.1);
  EXPECT_DOUBLE_EQ(lr_at(5, 100, 10, 1.0, 0.1), 0.5);
  EXPECT_DOUBLE_EQ(lr_at(10, 100, 10, 1.0, 0.1), 1.0);
  EXPECT_NEAR(lr_at(55, 100, 10, 1.0, 0.1), 0.1 + 0.9 * 0.5, 1e-12);  // halfway through the decay
  EXPECT_NEAR(lr_at(100, 100, 10, 1.0, 0.1), 0.1, 1e-12);
  double prev = 2;
  for (int s = 10; s <= 100; ++s) {
    const double lr = lr_at(s, 100, 10, 1.0, 0.1);
    EXPECT_LE(lr, prev);
    prev = lr;
  }
  EXPECT_DOUBLE_EQ(lr_at(1, 100, 0, 1.0, 0.0), 1.0 * 0.5 * (1 + std::cos(M_PI * 0.01)));
}

TEST(TrainOptim, ClipScalesToTheGlobalNormAndZeroesFrozen) {
  std::vector<float> g = {3.f, 4.f, 100.f};
  const std::vector<uint8_t> frozen = {0, 0, 1};
  EXPECT_DOUBLE_EQ(clip_grad_norm(g.data(), g.size(), 1.0, frozen), 5.0);
  EXPECT_FLOAT_EQ(g[0], 0.6f);
  EXPECT_FLOAT_EQ(g[1], 0.8f);
  EXPECT_EQ(g[2], 0.f);
  std::vector<float> small = {0.3f, 0.4f};
  EXPECT_NEAR(clip_grad_norm(small.data(), 2, 1.0), 0.5, 1e-7);
  EXPECT_FLOAT_EQ(small[0], 0.3f);  // under the limit: untouched
  std::vector<float> off = {30.f, 40.f};
  clip_grad_norm(off.data(), 2, 0.0);
  EXPECT_FLOAT_EQ(off[1], 40.f);
}
