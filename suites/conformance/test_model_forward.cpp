// Model-level conformance: full-forward logits of every backend against `ref`, `ref` against a
// committed golden file, and batching / chunking invariants of the forward pass.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cb/engine/model/engine.h"
#include "cb/engine/model/model_init.h"

namespace fs = std::filesystem;
using namespace cb::engine;

namespace {

const fs::path kGolden = fs::path(CB_SOURCE_DIR) / "suites/conformance/golden/default_model_ref_logits.json";
const std::vector<int32_t> kGoldenPrompt = {256, 84, 104, 101, 32, 113, 117, 105, 99, 107, 32, 98, 114, 111, 119, 110};

struct Diff {
  double max_abs = 0, nmse = 0;
};

Diff diff(const std::vector<float>& a, const std::vector<float>& b) {
  Diff d;
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    d.max_abs = std::max(d.max_abs, double(std::fabs(a[i] - b[i])));
    num += double(a[i] - b[i]) * (a[i] - b[i]);
    den += double(b[i]) * b[i];
  }
  d.nmse = den > 0 ? num / den : num;
  return d;
}

bool all_finite(const std::vector<float>& v) {
  for (float x : v)
    if (!std::isfinite(x)) return false;
  return true;
}

// Logits for every position of `prompt`, in one step (or chunks of `chunk` tokens).
std::vector<float> all_logits(LoadedModel& m, const std::vector<int32_t>& prompt, int chunk = 0) {
  KvCache kv(m.backend(), m.config(), int(prompt.size() + 15) / 16, 16);
  const std::vector<int32_t> table = KvCache::sequential_table(kv.blocks_for(int(prompt.size())));
  std::vector<float> out;
  const int step = chunk > 0 ? chunk : int(prompt.size());
  for (int p = 0; p < int(prompt.size()); p += step) {
    const int n = std::min(step, int(prompt.size()) - p);
    auto l = m.model().forward({SeqStep{std::span<const int32_t>(prompt.data() + p, n), p, table, true}}, kv);
    out.insert(out.end(), l.begin(), l.end());
  }
  return out;
}

class ModelForward : public ::testing::TestWithParam<std::string> {};
class ModelForwardVsRef : public ::testing::TestWithParam<std::string> {};

// Every backend built here except the oracle itself.
std::vector<std::string> optimized_backends() {
  std::vector<std::string> out;
  for (const auto& b : cb::kernels::available_backends())
    if (b != "ref") out.push_back(b);
  return out;
}

// Every non-ref backend against ref on the default model. Limit: NMSE 1e-8 — f32 accumulation in a
// different order vs the double-accumulating oracle over ~10 ops deep; values are O(1), so float
// rounding (1e-7 relative) compounds to ~1e-12..1e-10 NMSE; 1e-8 leaves margin without hiding bugs
// (a wrong RoPE pair or mask gives NMSE > 1e-2).
TEST_P(ModelForwardVsRef, LogitsMatchRef) {
  auto ref = LoadedModel::open(default_model_dir(), "ref");
  auto other = LoadedModel::open(default_model_dir(), GetParam());
  const auto a = all_logits(*other, kGoldenPrompt), b = all_logits(*ref, kGoldenPrompt);
  ASSERT_EQ(a.size(), b.size());
  ASSERT_TRUE(all_finite(a));
  const Diff d = diff(a, b);
  std::printf("[%s vs ref] max abs diff %.3g, NMSE %.3g\n", GetParam().c_str(), d.max_abs, d.nmse);
  EXPECT_LT(d.nmse, 1e-8) << "max abs diff " << d.max_abs;
}

// Chunked prefill (chunks of 5 and 1 tokens, crossing block boundaries) gives the same logits as
// one step: the cache read path and the causal offset are right.
TEST_P(ModelForward, ChunkedPrefillMatchesOneStep) {
  auto m = LoadedModel::open(default_model_dir(), GetParam());
  const auto whole = all_logits(*m, kGoldenPrompt);
  for (int chunk : {1, 5}) {
    const Diff d = diff(all_logits(*m, kGoldenPrompt, chunk), whole);
    EXPECT_LT(d.nmse, 1e-10) << "chunk " << chunk << ", max abs diff " << d.max_abs;
  }
}

// A batch of sequences with different lengths and non-contiguous, interleaved block tables gives
// each sequence the logits it gets alone.
TEST_P(ModelForward, BatchOfSequencesMatchesEachAlone) {
  auto m = LoadedModel::open(default_model_dir(), GetParam());
  const std::vector<std::vector<int32_t>> prompts = {
      {256, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19},
      {256, 200, 100},
      kGoldenPrompt,
  };
  // 4-token blocks, physical ids shuffled and interleaved between the two sequences; a third
  // sequence gets its own cache.
  KvCache kv(m->backend(), m->config(), 8, 4), kv2(m->backend(), m->config(), 8, 4);
  std::vector<std::vector<int32_t>> tables = {{7, 0, 5, 2, 4, 3}, {6}, {5, 1, 7, 3}};
  std::vector<SeqStep> batch0 = {SeqStep{prompts[0], 0, tables[0], true}, SeqStep{prompts[1], 0, tables[1], true}};
  auto batched = m->model().forward(batch0, kv);
  const int V = m->config().vocab_size;
  const auto a0 = all_logits(*m, prompts[0]), a1 = all_logits(*m, prompts[1]);
  std::vector<float> expect(a0);
  expect.insert(expect.end(), a1.begin(), a1.end());
  ASSERT_EQ(batched.size(), expect.size());
  EXPECT_LT(diff(batched, expect).nmse, 1e-10);
  // Then a decode step for both plus a fresh prefill of a third sequence in the same batch.
  const int32_t t0 = 42, t1 = 43;
  std::vector<SeqStep> batch1 = {SeqStep{std::span<const int32_t>(&t0, 1), int(prompts[0].size()), tables[0], false},
                                 SeqStep{std::span<const int32_t>(&t1, 1), int(prompts[1].size()), tables[1], false}};
  auto step = m->model().forward(batch1, kv);
  ASSERT_EQ(step.size(), size_t(2 * V));
  auto p0 = prompts[0];
  p0.push_back(t0);
  auto p1 = prompts[1];
  p1.push_back(t1);
  const auto alone0 = all_logits(*m, p0), alone1 = all_logits(*m, p1);
  EXPECT_LT(diff(std::vector<float>(step.begin(), step.begin() + V), std::vector<float>(alone0.end() - V, alone0.end())).nmse, 1e-10);
  EXPECT_LT(diff(std::vector<float>(step.begin() + V, step.end()), std::vector<float>(alone1.end() - V, alone1.end())).nmse, 1e-10);
  auto third = m->model().forward({SeqStep{prompts[2], 0, tables[2], true}}, kv2);
  EXPECT_LT(diff(third, all_logits(*m, prompts[2])).nmse, 1e-10);
}

INSTANTIATE_TEST_SUITE_P(Backends, ModelForward, ::testing::ValuesIn(cb::kernels::available_backends()));
INSTANTIATE_TEST_SUITE_P(Backends, ModelForwardVsRef, ::testing::ValuesIn(optimized_backends()));

// `ref` against the committed golden logits. Limit: max abs 1e-5 — the oracle accumulates in
// double, so only libm (exp/sin/cos) differences across machines remain, ~1e-7 on O(1) logits.
TEST(ModelGolden, RefMatchesCommittedLogits) {
  auto m = LoadedModel::open(default_model_dir(), "ref");
  const auto logits = all_logits(*m, kGoldenPrompt);
  if (std::getenv("CB_UPDATE_GOLDEN")) {
    nlohmann::json j = {{"model", "reference/models/default"}, {"backend", "ref"}, {"prompt_ids", kGoldenPrompt},
                        {"vocab_size", m->config().vocab_size}, {"logits", logits}};
    std::ofstream(kGolden) << j.dump() << "\n";
    GTEST_SKIP() << "golden file rewritten: " << kGolden;
  }
  std::ifstream in(kGolden);
  ASSERT_TRUE(in) << "missing golden file " << kGolden << " (regenerate with CB_UPDATE_GOLDEN=1)";
  const auto j = nlohmann::json::parse(in);
  ASSERT_EQ(j["prompt_ids"].get<std::vector<int32_t>>(), kGoldenPrompt);
  const auto golden = j["logits"].get<std::vector<float>>();
  ASSERT_EQ(golden.size(), logits.size());
  const Diff d = diff(logits, golden);
  std::printf("[ref vs golden] max abs diff %.3g\n", d.max_abs);
  EXPECT_LT(d.max_abs, 1e-5);
}

// Tied embeddings and F16 / BF16 weights run through the same path (cpu vs ref).
TEST(ModelVariants, TiedAndHalfPrecisionWeightsMatchRef) {
  const fs::path base = fs::temp_directory_path() / ("cb_model_variants_" + std::to_string(::getpid()));
  fs::remove_all(base);
  for (auto [name, dtype, tied] : {std::tuple{"tied_f32", cb::kernels::DType::F32, true},
                                   std::tuple{"f16", cb::kernels::DType::F16, false},
                                   std::tuple{"bf16", cb::kernels::DType::BF16, false}}) {
    ModelConfig cfg = preset_config("tiny");
    cfg.tie_word_embeddings = tied;
    write_random_model(cfg, 3, base / name, dtype);
    auto ref = LoadedModel::open(base / name, "ref");
    auto cpu = LoadedModel::open(base / name, "cpu");
    const auto a = all_logits(*cpu, kGoldenPrompt), b = all_logits(*ref, kGoldenPrompt);
    ASSERT_TRUE(all_finite(a)) << name;
    EXPECT_LT(diff(a, b).nmse, 1e-8) << name;
  }
  fs::remove_all(base);
}

}  // namespace
