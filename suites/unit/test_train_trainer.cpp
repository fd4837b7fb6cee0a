// train_model end to end on small configs: the loss falls, the output is a loadable model with its
// log, runs repeat bit for bit, frozen zeros stay zero, init_from takes any config, bad options
// are named.
#include <gtest/gtest.h>

#include <fstream>

#include "cb/engine/model/engine.h"
#include "cb/engine/model/model_init.h"
#include "cb/engine/model/safetensors.h"
#include "cb/engine/train/trainer.h"
#include "cb/engine/model/weights.h"
#include "cb/kernels/int8_scheme.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace cb::engine;
using namespace cb::engine::train;

namespace {

TrainOptions small(const fs::path& out) {
  TrainOptions o;
  o.preset = "tiny";
  o.out_dir = out;
  o.steps = 3;
  o.batch = 4;
  o.eval_examples = 0;
  o.tasks = {"copy"};
  o.shape.copy_min = 2;
  o.shape.copy_max = 4;
  o.threads = 1;
  return o;
}

std::vector<nlohmann::json> read_jsonl(const fs::path& p) {
  std::ifstream in(p);
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

std::vector<float> tensor(const fs::path& dir, const std::string& name) {
  const auto st = WeightStore::open_dir(dir);
  const auto v = st.view(name);
  return std::vector<float>(v.as<const float>(), v.as<const float>() + v.numel());
}

}  // namespace

TEST(Trainer, LossFallsAndTheModelLoads) {
  const cb::test::TempDir tmp("cb-train");
  TrainOptions o = small(tmp.path() / "m");
  o.steps = 40;
  o.batch = 8;
  o.lr = 1e-2f;
  o.eval_examples = 8;
  o.log_every = 1;
  int calls = 0;
  const TrainResult r = train_model(o, [&](const TrainLogRecord&) { ++calls; });
  EXPECT_EQ(calls, 40);
  ASSERT_EQ(r.log.size(), 40u);
  // The first steps predict from ~ln(259) = 5.6 nats; 40 steps learn that answers are lowercase
  // letters or EOS (ln(27) = 3.3 nats for a uniform guess among them).
  EXPECT_GT(r.log.front().loss, 4.5);
  EXPECT_LT(r.final_loss, 3.5) << "first logged loss " << r.log.front().loss;
  EXPECT_GT(r.wall_seconds, 0);
  EXPECT_GT(r.cpu_seconds, 0);
  auto lm = LoadedModel::open(o.out_dir, "cpu");
  EXPECT_EQ(lm->config().hidden_size, preset_config("tiny").hidden_size);
  const auto log = read_jsonl(o.out_dir / "train_log.jsonl");
  ASSERT_EQ(log.size(), 1 + 40 + 1u);  // header, 40 records, summary
  EXPECT_TRUE(log.front().contains("config"));
  for (const char* k : {"step", "loss", "lr", "grad_norm", "seconds", "tokens"}) EXPECT_TRUE(log[1].contains(k)) << k;
  EXPECT_EQ(log[40]["step"], 40);
  EXPECT_TRUE(log.back()["summary"]["eval"]["tasks"].contains("copy"));
  ASSERT_EQ(r.eval.per_task.size(), 1u);
  EXPECT_EQ(r.eval.per_task[0].total, 8);
}

TEST(Trainer, SameSeedSameBytes) {
  const cb::test::TempDir tmp("cb-train");
  TrainOptions a = small(tmp.path() / "a"), b = small(tmp.path() / "b"), c = small(tmp.path() / "c");
  c.seed = 2;
  train_model(a);
  train_model(b);
  train_model(c);
  EXPECT_EQ(cb::test::read_file(a.out_dir / "model.safetensors"), cb::test::read_file(b.out_dir / "model.safetensors"));
  EXPECT_NE(cb::test::read_file(a.out_dir / "model.safetensors"), cb::test::read_file(c.out_dir / "model.safetensors"));
  // Two threads: still the same bytes run to run (no reduction depends on thread timing).
  TrainOptions d = small(tmp.path() / "d"), e = small(tmp.path() / "e");
  d.threads = e.threads = 2;
  train_model(d);
  train_model(e);
  EXPECT_EQ(cb::test::read_file(d.out_dir / "model.safetensors"), cb::test::read_file(e.out_dir / "model.safetensors"));
}

// A 2:4-pruned start (two of every four weights zero in every linear layer) keeps its zeros with
// keep_zeros, loses them without.
TEST(Trainer, KeepZerosKeepsPrunedWeightsZero) {
  const cb::test::TempDir tmp("cb-train");
  const fs::path init = tmp.path() / "init";
  write_random_model(preset_config("tiny"), 5, init);
  {
    std::vector<NamedTensor> ts;
    std::vector<std::vector<float>> keep;
    const auto st = WeightStore::open_dir(init);
    for (const auto& name : expected_tensor_names(preset_config("tiny"))) {
      auto v = tensor(init, name);
      if (name.find("_proj") != std::string::npos)
        for (size_t i = 0; i < v.size(); i += 4) v[i] = v[i + 2] = 0.f;
      keep.push_back(std::move(v));
      const auto& info = st.info(name);
      cb::kernels::Tensor t(keep.back().data(), cb::kernels::DType::F32, {info.shape[0], info.shape.size() > 1 ? info.shape[1] : 1});
      if (info.shape.size() == 1) t = cb::kernels::Tensor(keep.back().data(), cb::kernels::DType::F32, {info.shape[0]});
      ts.push_back({name, t});
    }
    write_safetensors(init / "model.safetensors", ts);
  }
  const std::string q = "model.layers.0.self_attn.q_proj.weight";
  for (bool keep : {true, false}) {
    TrainOptions o = small(tmp.path() / (keep ? "keep" : "free"));
    o.preset.clear();
    o.init_from = init;
    o.keep_zeros = keep;
    train_model(o);
    const auto before = tensor(init, q), after = tensor(o.out_dir, q);
    size_t zeros = 0, moved = 0;
    for (size_t i = 0; i < after.size(); ++i) {
      zeros += before[i] == 0.f && after[i] == 0.f;
      moved += before[i] != 0.f && after[i] != before[i];
    }
    EXPECT_GT(moved, after.size() / 4) << (keep ? "keep" : "free");
    if (keep) EXPECT_EQ(zeros, after.size() / 2);
    else EXPECT_LT(zeros, after.size() / 20);
  }
}

// init_from takes a model of another shape (as structured pruning leaves one: smaller FFN).
TEST(Trainer, InitFromASmallerModelKeepsItsShape) {
  const cb::test::TempDir tmp("cb-train");
  ModelConfig c = preset_config("tiny");
  c.intermediate_size = 88;
  c.tie_word_embeddings = true;
  write_random_model(c, 6, tmp.path() / "pruned");
  TrainOptions o = small(tmp.path() / "out");
  o.init_from = tmp.path() / "pruned";
  o.qat = true;
  const auto r = train_model(o);
  EXPECT_EQ(r.config.intermediate_size, 88);
  auto lm = LoadedModel::open(o.out_dir, "cpu");
  EXPECT_EQ(lm->config().intermediate_size, 88);
  EXPECT_TRUE(lm->config().tie_word_embeddings);
  EXPECT_NE(tensor(o.out_dir, "model.layers.1.mlp.up_proj.weight"), tensor(o.init_from, "model.layers.1.mlp.up_proj.weight"));
  // Attention heads pruned (3 of 4 kept, head size kept): q_proj [48, 64], config "head_dim" 16.
  ModelConfig h = preset_config("tiny");
  h.num_attention_heads = 3;
  h.num_key_value_heads = 1;
  h.head_dim_key = 16;
  write_random_model(h, 7, tmp.path() / "heads");
  TrainOptions oh = small(tmp.path() / "out-heads");
  oh.init_from = tmp.path() / "heads";
  train_model(oh);
  auto lh = LoadedModel::open(oh.out_dir, "cpu");
  EXPECT_EQ(lh->config().q_dim(), 48);
  EXPECT_EQ(lh->config().head_dim(), 16);
}

// An INT8 (compressed-tensors "int-quantized") model as the start: training begins from its
// dequantized weights (q * scale) and writes a dense float model without the quantization_config.
TEST(Trainer, InitFromAnInt8ModelStartsFromItsDequantizedWeights) {
  const cb::test::TempDir tmp("cb-train");
  const fs::path src = tmp.path() / "f32", q8 = tmp.path() / "int8";
  const ModelConfig c = preset_config("tiny");
  write_random_model(c, 8, src);
  fs::create_directories(q8);
  std::vector<std::vector<float>> fkeep;
  std::vector<std::vector<int8_t>> qkeep;
  std::vector<NamedTensor> ts;
  fkeep.reserve(64);
  qkeep.reserve(64);
  std::map<std::string, std::vector<float>> dequant;
  for (const auto& name : expected_tensor_names(c)) {
    const auto shape = expected_tensor_shape(c, name);
    fkeep.push_back(tensor(src, name));
    if (name.find("_proj") == std::string::npos) {
      ts.push_back({name, shape.size() == 1 ? cb::kernels::Tensor(fkeep.back().data(), cb::kernels::DType::F32, {shape[0]})
                                            : cb::kernels::Tensor(fkeep.back().data(), cb::kernels::DType::F32, {shape[0], shape[1]})});
      continue;
    }
    const int64_t N = shape[0], K = shape[1];
    qkeep.emplace_back(size_t(N * K));
    std::vector<float> scales(static_cast<size_t>(N)), dq(static_cast<size_t>(N * K));
    for (int64_t r = 0; r < N; ++r) {
      scales[size_t(r)] = cb::kernels::int8::quantize_row(fkeep.back().data() + r * K, K, qkeep.back().data() + r * K);
      for (int64_t k = 0; k < K; ++k) dq[size_t(r * K + k)] = float(qkeep.back()[size_t(r * K + k)]) * scales[size_t(r)];
    }
    dequant[name] = dq;
    fkeep.push_back(scales);
    ts.push_back({name, cb::kernels::Tensor(qkeep.back().data(), cb::kernels::DType::I8, {N, K})});
    ts.push_back({name.substr(0, name.size() - 7) + ".weight_scale", cb::kernels::Tensor(fkeep.back().data(), cb::kernels::DType::F32, {N, 1})});
  }
  write_safetensors(q8 / "model.safetensors", ts);
  nlohmann::json cj = c.to_json();
  cj["quantization_config"] = {
      {"quant_method", "compressed-tensors"},
      {"format", "int-quantized"},
      {"config_groups",
       {{"group_0",
         {{"targets", {"Linear"}},
          {"weights", {{"num_bits", 8}, {"type", "int"}, {"symmetric", true}, {"strategy", "channel"}, {"dynamic", false}}},
          {"input_activations", nullptr}}}}},
      {"ignore", {"lm_head"}}};
  std::ofstream(q8 / "config.json") << cj.dump(2);
  ASSERT_NO_THROW(LoadedModel::open(q8, "cpu"));  // the engine reads it as INT8
  TrainOptions o = small(tmp.path() / "out");
  o.init_from = q8;
  o.steps = 1;
  o.lr = 1e-9f;  // one step that moves nothing measurable: the output shows the start
  o.weight_decay = 0;
  train_model(o);
  const std::string name = "model.layers.1.mlp.down_proj.weight";
  const auto out = tensor(o.out_dir, name);
  ASSERT_EQ(out.size(), dequant[name].size());
  for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], dequant[name][i], 1e-6) << i;
  const auto written = nlohmann::json::parse(cb::test::read_file(o.out_dir / "config.json"));
  EXPECT_FALSE(written.contains("quantization_config")) << written.dump();
}

TEST(Trainer, BadOptionsAndExistingModelsAreNamed) {
  const cb::test::TempDir tmp("cb-train");
  TrainOptions o = small(tmp.path() / "m");
  o.steps = 0;
  try {
    train_model(o);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_CONTAINS(e.what(), "train option steps");
  }
  o = small(tmp.path() / "m");
  o.tasks = {"sort"};
  EXPECT_THROW(train_model(o), std::invalid_argument);
  o = small(tmp.path() / "m");
  o.steps = 1;
  train_model(o);
  EXPECT_CONTAINS(cb::test::model_error([&] { train_model(o); }), "refusing to overwrite");
  o.overwrite = true;
  EXPECT_NO_THROW(train_model(o));
  o.init_from = tmp.path() / "nope";
  EXPECT_CONTAINS(cb::test::model_error([&] { train_model(o); }), "nope");
}
