// refengine bench's figures are computed from what it timed and the limits it measured beside
// them (issue #16): consistency checks on the default model, not speed targets.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "cb/engine/bench/engine_bench.h"
#include "cb/engine/model/engine.h"
#include "cb/engine/model/errors.h"
#include "cb/harness/core/engine_access.h"

namespace {
using cb::engine::EngineBenchOptions;

TEST(EngineBench, SamplesSummaryBestIsTheLargestRateAndTheSmallestTime) {
  const nlohmann::json rate = cb::engine::samples_summary({2.0, 5.0, 3.0});
  EXPECT_EQ(rate["samples"], nlohmann::json({2.0, 5.0, 3.0}));  // in the order measured
  EXPECT_DOUBLE_EQ(rate["median"].get<double>(), 3.0);
  EXPECT_DOUBLE_EQ(rate["best"].get<double>(), 5.0);
  EXPECT_DOUBLE_EQ(rate["worst"].get<double>(), 2.0);
  const nlohmann::json time = cb::engine::samples_summary({0.2, 0.5, 0.3, 0.4}, /*higher_is_better=*/false);
  EXPECT_DOUBLE_EQ(time["median"].get<double>(), 0.35);
  EXPECT_DOUBLE_EQ(time["best"].get<double>(), 0.2);
  EXPECT_DOUBLE_EQ(time["worst"].get<double>(), 0.5);
}

TEST(EngineBench, PairedStepFractionDividesEachStepByThePassBeforeIt) {
  // 1 GB per token: steps of 0.1 s (10 GB/s) and 0.05 s (20 GB/s) against passes of 20 and 10 GB/s.
  const std::vector<double> steps{0.1, 0.05, 0.1}, passes{20.0, 10.0, 12.5};
  // Per step 0.5, 2.0, 0.8: their median.
  EXPECT_DOUBLE_EQ(cb::engine::paired_step_fraction(steps, passes, 1e9), 0.8);
  // A step is judged by its own pass: the same steps against swapped passes give another figure.
  EXPECT_DOUBLE_EQ(cb::engine::paired_step_fraction(steps, {10.0, 20.0, 12.5}, 1e9), 1.0);
  // A pass that measured nothing leaves its step out; mismatched or empty inputs give NaN.
  EXPECT_DOUBLE_EQ(cb::engine::paired_step_fraction(steps, {20.0, std::nan(""), 0.0}, 1e9), 0.5);
  EXPECT_TRUE(std::isnan(cb::engine::paired_step_fraction(steps, {20.0}, 1e9)));
  EXPECT_TRUE(std::isnan(cb::engine::paired_step_fraction({}, {}, 1e9)));
}

TEST(EngineBench, EveryFigureFollowsFromItsTimingsAndLimits) {
  EngineBenchOptions o;
  o.model_dir = cb::engine::default_model_dir();
  o.prefill_tokens = 16;
  o.decode_tokens = 4;
  o.repetitions = 1;
  o.peak_seconds = 0.05;
  o.batch_sizes = {1, 4};
  o.batch_steps = 2;
  o.thread_scaling = true;
  o.overhead_batches = {1, 8};
  const nlohmann::json r = cb::engine::run_engine_bench(o);

  // Decode fractions: tokens/s x bytes per token / the triad bandwidth of the passes run between
  // the repetition's steps (and of its best pass), or the read bandwidth measured before it.
  const auto& d = r["decode"];
  const double tps = d["tokens_per_s"]["samples"][0].get<double>(), bytes = d["bytes_per_token"].get<double>();
  EXPECT_NEAR(d["triad_fraction"]["samples"][0].get<double>(), tps * bytes / (d["triad_gbs_per_repetition"][0].get<double>() * 1e9), 1e-9);
  const double best = d["triad_gbs_per_repetition"][0].get<double>(), mean = d["triad_mean_gbs_per_repetition"][0].get<double>();
  EXPECT_GT(mean, 0);
  EXPECT_GE(best, mean);  // the limit is the best of the passes whose bytes over seconds make the mean
  EXPECT_NEAR(d["triad_mean_fraction"]["samples"][0].get<double>(), tps * bytes / (mean * 1e9), 1e-9);
  EXPECT_NE(d["triad_limit"].get<std::string>().find("before every decode step"), std::string::npos);
  EXPECT_NEAR(d["bw_fraction"]["samples"][0].get<double>(), tps * bytes / (d["bandwidth_gbs_per_repetition"][0].get<double>() * 1e9), 1e-9);
  EXPECT_DOUBLE_EQ(r["ratios"]["decode_triad_fraction"].get<double>(), d["triad_fraction"]["median"].get<double>());
  // Paired: each step against the pass run right before it (one pass per step).
  ASSERT_EQ(d["step_seconds_per_repetition"][0].size(), 4u);
  ASSERT_EQ(d["triad_pass_gbs_per_repetition"][0].size(), 4u);
  const double paired = cb::engine::paired_step_fraction(d["step_seconds_per_repetition"][0].get<std::vector<double>>(),
                                                         d["triad_pass_gbs_per_repetition"][0].get<std::vector<double>>(), bytes);
  EXPECT_GT(paired, 0);
  EXPECT_DOUBLE_EQ(d["triad_paired_fraction"]["samples"][0].get<double>(), paired);
  EXPECT_DOUBLE_EQ(r["ratios"]["decode_triad_paired_fraction"].get<double>(), paired);
  // Prefill: GFLOP/s over the peak measured before the same repetition.
  const auto& p = r["prefill"];
  EXPECT_NEAR(r["ratios"]["prefill_peak_fraction"].get<double>(),
              p["gflops"]["samples"][0].get<double>() / p["peak_gflops_per_repetition"][0].get<double>(), 1e-9);
  EXPECT_EQ(p["peak"], "fp32_fma");

  // Roofline: with one repetition the fraction of the bound is exactly max(MFU, MBU).
  const auto& rows = r["batched_decode"]["rows"];
  ASSERT_EQ(rows.size(), 2u);
  for (const auto& row : rows) {
    SCOPED_TRACE("batch " + std::to_string(row["batch"].get<int>()));
    const double mfu = row["mfu"].get<double>(), mbu = row["mbu"].get<double>();
    EXPECT_GT(mfu, 0);
    EXPECT_GT(mbu, 0);
    EXPECT_NEAR(row["roofline_fraction"].get<double>(), std::max(mfu, mbu), 1e-9);
    // Limits measured between the steps: the best windows; against their means the bound is looser.
    EXPECT_GT(row["fma_gflops_per_repetition"][0].get<double>(), 0);
    EXPECT_GT(row["triad_gbs_per_repetition"][0].get<double>(), 0);
    EXPECT_GE(row["mean_window_roofline_fraction_samples"][0].get<double>(), row["roofline_fraction"].get<double>() * (1 - 1e-12));
    EXPECT_EQ(row["bound"], mfu >= mbu ? "compute" : "memory");
    EXPECT_NEAR(row["tokens_per_s"]["median"].get<double>() * row["step_seconds"]["median"].get<double>(), row["batch"].get<double>(), 1e-6);
    EXPECT_NEAR(row["tokens_per_s"]["best"].get<double>() * row["step_seconds"]["best"].get<double>(), row["batch"].get<double>(), 1e-6);
  }
  // Four times the rows per step: more FLOPs, the weights read once either way.
  EXPECT_NEAR(rows[1]["flops_per_step"].get<double>(), 4 * rows[0]["flops_per_step"].get<double>(), 1e-6 * rows[1]["flops_per_step"].get<double>());
  EXPECT_LT(rows[1]["bytes_per_step"].get<double>(), 2 * rows[0]["bytes_per_step"].get<double>());

  const auto& ts = r["thread_scaling"];
  EXPECT_EQ(ts["rows"][0]["threads"], 1);
  EXPECT_GT(ts["prefill_speedup"].get<double>(), 0);

  // Serving overhead: the timed steps are the pure decode steps at the batch (48 tokens each:
  // the first comes from the prefill step), and the fraction is (step - forward) / step.
  for (const auto& row : r["serving_overhead"]["rows"]) {
    SCOPED_TRACE("overhead batch " + std::to_string(row["batch"].get<int>()));
    EXPECT_EQ(row["steps"], 47);
    const double step = row["step_ms_mean"].get<double>(), fwd = row["forward_ms_mean"].get<double>();
    EXPECT_GT(step, fwd);
    EXPECT_NEAR(row["overhead_fraction"].get<double>(), (step - fwd) / step, 1e-9);
  }
}

// The op profile: every decode step's ops, each in one row, adding up to the step with what is
// left "outside the ops"; the matmul rows count every projection of every layer once per step.
TEST(EngineBench, OpProfileAccountsForTheDecodeStep) {
  EngineBenchOptions o;
  o.model_dir = cb::engine::default_model_dir();
  o.prefill_tokens = 16;
  o.decode_tokens = 3;
  o.repetitions = 1;
  o.peak_seconds = 0.05;
  o.batch_sizes = {2};
  o.op_profile = true;
  const nlohmann::json r = cb::engine::run_engine_bench(o);
  ASSERT_TRUE(r.contains("op_profile"));
  EXPECT_EQ(r["backend"], "cpu") << "the profiler names the backend it measures";
  const auto& rows = r["op_profile"]["rows"];
  ASSERT_EQ(rows.size(), 2u);
  const auto cfg = cb::engine::ModelConfig::load(o.model_dir / "config.json");
  const double L = cfg.num_hidden_layers;
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& row = rows[i];
    SCOPED_TRACE("batch " + std::to_string(row["batch"].get<int>()));
    EXPECT_EQ(row["batch"], i == 0 ? 1 : 2);
    double ops_ms = 0, matmul_ms = 0, multi_calls = 0, single_calls = 0, attention_calls = 0;
    for (const auto& op : row["ops"]) {
      ops_ms += op["ms_per_step"].get<double>();
      const std::string name = op["op"];
      EXPECT_NEAR(op["step_fraction"].get<double>(), op["ms_per_step"].get<double>() / row["step_ms"].get<double>(), 1e-9);
      if (name == "matmul_multi") multi_calls += op["calls_per_step"].get<double>();
      if (name == "matmul") single_calls += op["calls_per_step"].get<double>();
      if (name == "attention") attention_calls += op["calls_per_step"].get<double>();
      if (name.rfind("matmul", 0) == 0) {
        matmul_ms += op["ms_per_step"].get<double>();
        EXPECT_GT(op["gbs"].get<double>(), 0);
        EXPECT_GT(op["read_bandwidth_fraction"].get<double>(), 0);
        EXPECT_NE(op["shape"].get<std::string>().find(" M=" + std::to_string(row["batch"].get<int>())), std::string::npos);
      }
    }
    EXPECT_NEAR(ops_ms, row["ops_ms"].get<double>(), 1e-9);
    EXPECT_NEAR(matmul_ms, row["matmul_ms"].get<double>(), 1e-9);
    EXPECT_NEAR(row["ops_ms"].get<double>() + row["outside_ops_ms"].get<double>(), row["step_ms"].get<double>(), 1e-9);
    EXPECT_GT(row["outside_ops_ms"].get<double>(), 0) << "argmax and the model's host work are outside the ops";
    EXPECT_NEAR(row["matmul_fma_peak_fraction"].get<double>() * row["fma_gflops"].get<double>(), row["matmul_gflops"].get<double>(),
                1e-6 * row["matmul_gflops"].get<double>());
    EXPECT_NEAR(row["matmul_read_bandwidth_fraction"].get<double>() * row["read_gbs"].get<double>(), row["matmul_gbs"].get<double>(),
                1e-6 * row["matmul_gbs"].get<double>());
    // The read limit brackets the row: the faster of the windows right before and right after it.
    EXPECT_GT(row["read_gbs_before"].get<double>(), 0);
    EXPECT_GT(row["read_gbs_after"].get<double>(), 0);
    EXPECT_DOUBLE_EQ(row["read_gbs"].get<double>(), std::max(row["read_gbs_before"].get<double>(), row["read_gbs_after"].get<double>()));
    EXPECT_EQ(multi_calls, 2 * L) << "q/k/v and gate/up once per layer";
    EXPECT_EQ(single_calls, 2 * L + 1) << "o, down per layer and lm_head";
    EXPECT_EQ(attention_calls, L);
  }
  // The prefill: one pass over the prompt, the same accounting; the layers' matmuls take every
  // prompt row, lm_head only the last; matmul rates against the peak prefill is divided by.
  const auto& pre = r["op_profile"]["prefill"];
  EXPECT_EQ(pre["tokens"], o.prefill_tokens);
  EXPECT_EQ(pre["steps"], 1);
  EXPECT_EQ(pre["peak"], "fp32_fma");
  double ops_ms = 0, multi_calls = 0, prompt_rows = 0, last_row = 0, attention_calls = 0;
  for (const auto& op : pre["ops"]) {
    ops_ms += op["ms_per_step"].get<double>();
    const std::string name = op["op"], shape = op["shape"];
    if (name == "matmul_multi") multi_calls += op["calls_per_step"].get<double>();
    if (name == "matmul" && shape.find(" M=16") != std::string::npos) prompt_rows += op["calls_per_step"].get<double>();
    if (name == "matmul" && shape.find(" M=1") != std::string::npos && shape.find(" M=16") == std::string::npos)
      last_row += op["calls_per_step"].get<double>();
    if (name == "attention") attention_calls += op["calls_per_step"].get<double>();
  }
  EXPECT_NEAR(ops_ms + pre["outside_ops_ms"].get<double>(), pre["step_ms"].get<double>(), 1e-9);
  EXPECT_EQ(multi_calls, 2 * L);
  EXPECT_EQ(prompt_rows, 2 * L) << "o and down over the prompt";
  EXPECT_EQ(last_row, 1) << "lm_head on the last row only";
  EXPECT_EQ(attention_calls, L);
  EXPECT_NEAR(pre["matmul_peak_fraction"].get<double>() * pre["peak_gflops"].get<double>(), pre["matmul_gflops"].get<double>(),
              1e-6 * pre["matmul_gflops"].get<double>());
  EXPECT_DOUBLE_EQ(pre["read_gbs"].get<double>(), std::max(pre["read_gbs_before"].get<double>(), pre["read_gbs_after"].get<double>()));
  // Without the flag the model runs on the backend itself.
  auto lm = cb::engine::LoadedModel::open(o.model_dir, "cpu");
  EXPECT_EQ(lm->op_profiler(), nullptr);
}

TEST(EngineBench, Bf16ActivationsOnF32WeightsNameTheTensor) {
  cb::engine::LoadOptions lo;
  lo.bf16_activations = true;
  try {
    cb::engine::LoadedModel::open(cb::engine::default_model_dir(), "cpu", nullptr, lo);
    FAIL() << "an f32 model opened with bf16 activations";
  } catch (const cb::engine::ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.0.self_attn.q_proj.weight': bf16 activations need dense bf16 weights, this one is f32"),
              std::string::npos)
        << e.what();
  }
}

// The kernels suite reads refengine bench's figures through the adapter: each metric's value is the
// median of the samples it records beside it (the prefill samples once divided by the peak measured
// before the repetitions while the value used each repetition's own peak).
TEST(EngineBench, KernelsSuiteFiguresAreTheMediansOfTheirOwnSamples) {
  const cb::harness::EngineAccess* access = cb::harness::engine_access();
  ASSERT_NE(access, nullptr);
  cb::harness::EngineBenchRequest q;
  q.model_dir = cb::engine::default_model_dir();
  q.prefill_tokens = 16;
  q.decode_tokens = 4;
  q.repetitions = 3;
  const cb::harness::EngineBenchFigures f = access->bench(q, nullptr);
  const auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];  // 3 samples
  };
  for (const auto* v : {&f.decode_tokens_per_s, &f.decode_bw_fraction, &f.decode_triad_paired_fraction, &f.prefill_gflops,
                        &f.prefill_peak_fraction_samples}) {
    ASSERT_EQ(v->size(), 3u);
    for (double x : *v) EXPECT_TRUE(std::isfinite(x) && x > 0) << x;
  }
  EXPECT_DOUBLE_EQ(f.decode_tokens_per_s_median, median(f.decode_tokens_per_s));
  EXPECT_DOUBLE_EQ(f.decode_bw_fraction_median, median(f.decode_bw_fraction));
  EXPECT_DOUBLE_EQ(f.decode_triad_paired_fraction_median, median(f.decode_triad_paired_fraction));
  EXPECT_DOUBLE_EQ(f.prefill_gflops_median, median(f.prefill_gflops));
  EXPECT_DOUBLE_EQ(f.prefill_peak_fraction, median(f.prefill_peak_fraction_samples));
}

}  // namespace
