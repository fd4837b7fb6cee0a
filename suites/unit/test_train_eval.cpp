// Evaluation through the engine: batched greedy decoding agrees with cb::engine::generate, the
// committed default model beats chance on every task, perplexity agrees with the training graph.
#include <gtest/gtest.h>

#include <cmath>

#include "cb/engine/model/engine.h"
#include "cb/engine/model/model_init.h"
#include "cb/engine/model/safetensors.h"
#include "cb/engine/train/graph.h"
#include "cb/engine/train/trainer.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace cb::engine;
using namespace cb::engine::train;

// Exact-match counts from batched decoding (any batch size) equal those of generate() run on
// each example alone.
TEST(TrainEval, BatchedGreedyAgreesWithGenerate) {
  auto lm = LoadedModel::open(default_model_dir(), "cpu");
  EvalOptions eo;
  eo.examples_per_task = 12;
  eo.batch = 5;
  const TaskAccuracy batched = evaluate_tasks(*lm, eo);
  eo.batch = 64;
  const TaskAccuracy one_batch = evaluate_tasks(*lm, eo);
  ASSERT_EQ(batched.per_task.size(), task_names().size());
  int total_correct = 0;
  for (size_t t = 0; t < task_names().size(); ++t) {
    const std::string& task = task_names()[t];
    int correct = 0;
    for (const auto& e : held_out_set(task, 12)) {
      GenerateOptions g;
      g.max_tokens = int(e.answer.size());
      correct += generate(*lm, e.prompt, g).tokens == e.answer;
    }
    EXPECT_EQ(batched.per_task[t].task, task);
    EXPECT_EQ(batched.per_task[t].correct, correct) << task;
    EXPECT_EQ(one_batch.per_task[t].correct, correct) << task;
    total_correct += correct;
  }
  EXPECT_GT(total_correct, 0);  // the comparison saw right answers, not only wrong ones
}

// The committed default model learned every task: held-out exact match well above chance.
TEST(TrainEval, DefaultModelBeatsChanceOnEveryTask) {
  auto lm = LoadedModel::open(default_model_dir(), "cpu");
  EvalOptions eo;
  eo.examples_per_task = 60;
  const TaskAccuracy acc = evaluate_tasks(*lm, eo);
  for (const auto& s : acc.per_task) {
    std::printf("[default model] %-9s %5.1f%% (chance %.1f%%)\n", s.task.c_str(), 100 * s.accuracy(), 100 * s.chance);
    EXPECT_GT(s.accuracy(), std::max(0.3, s.chance + 0.2)) << s.task;
  }
}

// A model whose lm_head is all zero predicts uniformly: perplexity is exactly the vocabulary size.
TEST(TrainEval, UniformModelHasPerplexityOfTheVocabulary) {
  const cb::test::TempDir tmp("cb-train-eval");
  const ModelConfig c = preset_config("tiny");
  write_random_model(c, 2, tmp.path());
  {
    const auto st = WeightStore::open_dir(tmp.path());
    std::vector<std::vector<float>> keep;
    std::vector<NamedTensor> ts;
    for (const auto& name : expected_tensor_names(c)) {
      const auto v = st.view(name);
      keep.emplace_back(v.as<const float>(), v.as<const float>() + v.numel());
      if (name == "lm_head.weight") std::fill(keep.back().begin(), keep.back().end(), 0.f);
      cb::kernels::Tensor t = v;
      t.data = keep.back().data();
      ts.push_back({name, t});
    }
    write_safetensors(tmp.path() / "model.safetensors", ts);
  }
  auto lm = LoadedModel::open(tmp.path(), "cpu");
  const auto toks = held_out_tokens(3);
  EXPECT_NEAR(perplexity(*lm, toks), 259.0, 1e-6);
  EvalOptions eo;
  eo.examples_per_task = 4;
  EXPECT_NEAR(answer_perplexity(*lm, eo), 259.0, 1e-6);
  EXPECT_THROW(perplexity(*lm, {256}), std::invalid_argument);
  EXPECT_THROW(perplexity(*lm, {256, 999}), std::invalid_argument);
}

// Perplexity through the engine (chunks of 512 through the KV cache) equals exp of the training
// graph's mean loss on the same sequence. Limit 1e-4 relative: f32 logits from two code paths.
TEST(TrainEval, PerplexityAgreesWithTheTrainingGraph) {
  const cb::test::TempDir tmp("cb-train-eval");
  write_random_model(preset_config("tiny"), 4, tmp.path());
  auto lm = LoadedModel::open(tmp.path(), "cpu");
  std::vector<int32_t> toks = held_out_tokens(12);
  toks.resize(700);  // crosses a chunk boundary
  const double ppl = perplexity(*lm, toks);
  const ParamLayout L(lm->config());
  const auto st = WeightStore::open_dir(tmp.path());
  std::vector<float> p(L.total);
  for (const auto& t : L.tensors) std::copy_n(st.view(t.name).as<const float>(), t.numel, p.data() + t.offset);
  Gemm gemm;
  TrainGraph<float> g(L, gemm);
  const double loss = g.forward_backward(make_lm_batch({toks}), p.data(), nullptr);
  EXPECT_NEAR(ppl / std::exp(loss), 1.0, 1e-4) << "engine " << ppl << ", graph " << std::exp(loss);
}
