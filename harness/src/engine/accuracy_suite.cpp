// The accuracy suite: model quality per technique. For the dense, PTQ-INT8, QAT-INT8, 2:4 and
// structured-60% variants of the default model: held-out task accuracy, answer perplexity, model
// bytes, decode tokens/s and FLOPs/token, compared against committed golden baselines; the claims
// int8-size, int8-err, sparse-flops, sparse-acc and sparse-latency read the ratios. Bring your own
// model: --model DIR with --ppl-text / --qa-jsonl.
#include <cstdio>

#include "cb/engine/compress/prune.h"
#include "cb/engine/compress/quantize.h"
#include "cb/harness/engine/accuracy.h"
#include "cb/harness/engine/suites.h"

namespace cb::harness {
namespace fs = std::filesystem;
using nlohmann::json;
namespace acc = accuracy;

namespace {

const acc::VariantMeasure* find_variant(const std::vector<acc::VariantMeasure>& v, const std::string& name) {
  for (const auto& m : v)
    if (m.variant.name == name) return &m;
  return nullptr;
}

void add_variant_metrics(SuiteResult& r, const acc::VariantMeasure& m, const acc::EvalSettings& s) {
  const std::string k = "accuracy." + metric_key_segments(m.variant.name);
  const json p = {{"model_dir", m.variant.dir.string()}, {"provenance", m.variant.provenance},
                  {"examples_per_task", s.examples_per_task}};
  r.add({k + ".mean_acc", m.mean_accuracy, "fraction", Direction::HigherIsBetter, NoiseClass::Exact, {}, p,
         "unweighted mean of held-out exact-match accuracy over the synthetic tasks (greedy)"});
  for (const auto& [task, t] : m.tasks.items())
    r.add({k + "." + task + ".acc", t["accuracy"], "fraction", Direction::HigherIsBetter, NoiseClass::Exact, {}, p,
           "chance: " + std::to_string(t.value("chance", 0.0))});
  r.add({k + ".answer_perplexity", m.answer_perplexity, "ppl", Direction::LowerIsBetter, NoiseClass::Exact, {}, p,
         "perplexity of the answer tokens (bytes + EOS) of the held-out examples"});
  r.add({k + ".model_bytes", double(m.model_bytes), "bytes", Direction::LowerIsBetter, NoiseClass::Exact, {}, p,
         "config.json + safetensors files"});
  json dp = p;
  dp["prompt_tokens"] = s.decode_prompt_tokens;
  dp["decode_tokens"] = s.decode_tokens;
  dp["batch"] = 1;
  dp["backend"] = "cpu";
  r.add({k + ".decode_tokens_per_s", m.decode_tps_median, "tokens/s", Direction::HigherIsBetter, NoiseClass::Timing, m.decode_tps,
         dp, "batch-1 greedy decode, median of repetitions"});
  r.add({k + ".flops_per_token", double(m.flops_per_token), "FLOP", Direction::LowerIsBetter, NoiseClass::Exact, {},
         {{"context", s.flops_context}}, "matmul (2 N K per linear, lm_head included) + attention at the stated context"});
}

// Decode speed-up of a variant over dense: one ratio per repetition (repetition i of both), the
// median as the value, so the claim gets an interval over the repetitions.
Metric speedup_metric(const std::string& key, const acc::VariantMeasure& v, const acc::VariantMeasure& dense, const json& scope,
                      const std::string& note) {
  std::vector<double> ratios;
  for (size_t i = 0; i < std::min(v.decode_tps.size(), dense.decode_tps.size()); ++i)
    if (dense.decode_tps[i] > 0) ratios.push_back(v.decode_tps[i] / dense.decode_tps[i]);
  return {key, ratios.empty() ? 0.0 : median(ratios), "x", Direction::HigherIsBetter, NoiseClass::Ratio, ratios, scope,
          note + " [median of " + std::to_string(ratios.size()) + " per-repetition ratios]"};
}

// Ratios of a variant against dense for the claims.
void add_claim_metrics(SuiteResult& r, const std::vector<acc::VariantMeasure>& ms, const json& missing, json& not_measured) {
  auto why_missing = [&](const std::string& name) {
    return "variant " + name + " not measured: " + missing.value(name, std::string("not part of this run"));
  };
  const auto* dense = find_variant(ms, "dense");
  if (!dense) return;
  const json scope = {{"model", dense->variant.dir.string()},
                      {"scope", "the embedded default model on this CPU, not the article's 70B-175B models on A100s"}};
  auto per_task_drop = [&](const acc::VariantMeasure& v) {
    double worst = 0;
    json drops = json::object();
    for (const auto& [task, t] : dense->tasks.items()) {
      if (!v.tasks.contains(task)) continue;
      const double d = t["accuracy"].get<double>() - v.tasks[task]["accuracy"].get<double>();
      drops[task] = d;
      worst = std::max(worst, d);
    }
    return std::pair{worst, drops};
  };
  for (const std::string name : {"ptq-int8", "qat-int8"}) {
    const auto* v = find_variant(ms, name);
    const std::string k = name == "ptq-int8" ? "accuracy.int8_ptq" : "accuracy.int8_qat";
    if (!v) {
      for (const char* m : {".acc_delta", ".max_task_drop", ".decode_speedup"}) not_measured[k + m] = why_missing(name);
      continue;
    }
    auto [worst, drops] = per_task_drop(*v);
    json p = scope;
    p["per_task_drop"] = drops;
    r.add({k + ".acc_delta", dense->mean_accuracy - v->mean_accuracy, "fraction", Direction::LowerIsBetter, NoiseClass::Exact, {}, p,
           "mean task accuracy FP32 - " + name + " (positive = INT8 is worse)"});
    r.add({k + ".max_task_drop", worst, "fraction", Direction::LowerIsBetter, NoiseClass::Exact, {}, p,
           "largest per-task accuracy drop vs FP32 (issue #6 asks for <= 0.01 with QAT)"});
    r.add(speedup_metric(k + ".decode_speedup", *v, *dense, scope, "batch-1 decode tokens/s vs FP32"));
  }
  // int8-size: vs FP32 bytes. The dense model's bytes are FP32 only when it is stored in F32.
  const auto* q = find_variant(ms, "qat-int8") ? find_variant(ms, "qat-int8") : find_variant(ms, "ptq-int8");
  if (!q) not_measured["accuracy.int8.size_ratio"] = why_missing("qat-int8");
  if (q) {
    const std::string dtype = dense->config.value("torch_dtype", std::string("float32"));
    if (dtype == "float32")
      r.add({"accuracy.int8.size_ratio", double(dense->model_bytes) / double(q->model_bytes), "x", Direction::HigherIsBetter,
             NoiseClass::Exact, {}, {{"int8_variant", q->variant.name}, {"fp32_bytes", dense->model_bytes}, {"int8_bytes", q->model_bytes}},
             "FP32 model files / INT8 export files (embeddings and norms stay float, so below 4x on a small-vocabulary model "
             "only when they are a large share)"});
    else
      not_measured["accuracy.int8.size_ratio"] = "the dense model is stored as " + dtype + ", not FP32";
  }
  for (const std::string name : {"structured60", "sparse24"}) {
    const auto* v = find_variant(ms, name);
    const std::string k = name == "structured60" ? "accuracy.structured" : "accuracy.sparse24";
    if (!v) {
      for (const char* m : {".acc_retained", ".decode_speedup", ".flops_reduction"}) not_measured[k + m] = why_missing(name);
      continue;
    }
    r.add({k + ".acc_retained", dense->mean_accuracy > 0 ? v->mean_accuracy / dense->mean_accuracy : 0, "fraction",
           Direction::HigherIsBetter, NoiseClass::Exact, {}, scope, "mean task accuracy of the pruned model / dense"});
    r.add(speedup_metric(k + ".decode_speedup", *v, *dense, scope,
                         "batch-1 decode tokens/s pruned / dense (= per-token latency dense / pruned)"));
    if (name == "structured60") {
      // The claim reads what the backend executed; the plan's figure (config.json arithmetic) stays beside it.
      json fp = scope;
      fp["executed_flops_per_token"] = {{"dense", dense->executed_flops_per_token}, {"pruned", v->executed_flops_per_token}};
      if (dense->executed_flops_per_token > 0)
        r.add({k + ".flops_reduction", 1.0 - v->executed_flops_per_token / dense->executed_flops_per_token, "fraction",
               Direction::HigherIsBetter, NoiseClass::Exact, {}, fp,
               "1 - FLOPs/token executed by the pruned model / by the dense model, counted from the shapes every matmul and "
               "attention call ran on during the same decode (prompt + generated tokens)"});
      r.add({k + ".planned_flops_reduction", 1.0 - double(v->flops_per_token) / double(dense->flops_per_token), "fraction",
             Direction::HigherIsBetter, NoiseClass::Exact, {}, scope,
             "1 - FLOPs/token from the configs (arithmetic on the plan, not a measurement)"});
    }
  }
}

// Accuracy against executed FLOP reduction at several structured-pruning levels of the dense
// model (magnitude scores, no fine-tune, built at run time), beside the committed fine-tuned
// structured60; and the largest executed reduction that keeps >= 98% of dense accuracy.
void prune_sweep(SuiteResult& r, const SuiteContext& ctx, const std::vector<acc::VariantMeasure>& measured, const acc::EvalSettings& s,
                 json& not_measured) {
  const auto* dense = find_variant(measured, "dense");
  if (!dense || !(dense->executed_flops_per_token > 0) || !(dense->mean_accuracy > 0)) {
    not_measured["accuracy.structured.sweep.max_reduction_at_98"] = "the dense variant was not measured";
    return;
  }
  json rows = json::array();
  double best = 0;
  std::string best_at = "none";
  auto add_row = [&](const std::string& label, double target, const acc::VariantMeasure& m, bool fine_tuned) {
    const double red = 1.0 - m.executed_flops_per_token / dense->executed_flops_per_token;
    const double kept = m.mean_accuracy / dense->mean_accuracy;
    rows.push_back({{"variant", label}, {"target", target}, {"fine_tuned", fine_tuned}, {"executed_flop_reduction", red},
                    {"acc_retained", kept}, {"mean_acc", m.mean_accuracy}});
    if (kept >= 0.98 && red > best) {
      best = red;
      best_at = label;
    }
  };
  for (double target : {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7}) {
    char label[32];
    std::snprintf(label, sizeof label, "prune%02d", int(std::lround(target * 100)));
    const fs::path dir = ctx.run_dir / "models" / label;
    if (ctx.progress) ctx.progress(std::string("accuracy: prune sweep, ") + label + " (no fine-tune)");
    try {
      engine::compress::StructuredOptions o;
      o.target_flop_reduction = target;
      o.overwrite = true;
      o.eval_backend = "";
      engine::compress::prune_structured_model(dense->variant.dir, dir, o);
      add_row(label, target, acc::measure_variant({label, dir, "structured pruning at run time, no fine-tune", false}, s), false);
    } catch (const std::exception& e) {
      rows.push_back({{"variant", label}, {"target", target}, {"error", e.what()}});
    }
  }
  if (const auto* ft = find_variant(measured, "structured60")) add_row("structured60", 0.6, *ft, true);
  r.tables["prune_sweep"] = rows;
  r.add({"accuracy.structured.sweep.max_reduction_at_98", best, "fraction", Direction::HigherIsBetter, NoiseClass::Exact, {},
         {{"at", best_at}, {"points", rows.size()}},
         "largest executed FLOP reduction among the sweep points (and the fine-tuned structured60) whose mean task accuracy is "
         ">= 98% of dense; 0 when none is"});
}

}  // namespace

SuiteResult run_accuracy_suite(const SuiteContext& ctx) {
  SuiteResult r;
  r.suite = "accuracy";
  // Bring your own model data: first, so a bad input file is an error at once, not after the variants.
  if (!ctx.ppl_text.empty()) {
    const auto b = acc::byo_perplexity(ctx.model_dir, ctx.ppl_text, 1024, ctx.backend);
    r.add({"accuracy.byo.perplexity", b.perplexity, "ppl", Direction::LowerIsBetter, NoiseClass::Exact, {},
           {{"text", ctx.ppl_text.string()}, {"tokens", b.tokens}, {"windows", b.windows}, {"model_dir", ctx.model_dir.string()}},
           "byte-level tokens, windows of up to 1024 tokens each starting with BOS"});
  }
  if (!ctx.qa_jsonl.empty()) {
    const auto q = acc::byo_exact_match(ctx.model_dir, ctx.qa_jsonl, ctx.backend);
    r.add({"accuracy.byo.exact_match", q.accuracy(), "fraction", Direction::HigherIsBetter, NoiseClass::Exact, {},
           {{"file", ctx.qa_jsonl.string()}, {"correct", q.correct}, {"total", q.total}, {"model_dir", ctx.model_dir.string()}},
           "greedy answer equals the expected answer exactly"});
    r.tables["byo_failures"] = q.failures;
  }

  acc::EvalSettings s;
  s.backend = ctx.backend;
  if (ctx.quick) {
    s.decode_tokens = 32;
    s.decode_reps = 3;
  }
  const fs::path work = ctx.run_dir / "models";
  fs::create_directories(work);
  const bool is_default = acc::is_default_model(ctx.model_dir);
  std::vector<acc::Variant> variants;
  if (is_default) {
    variants = acc::default_variants(ctx.model_dir, work);
  } else {
    variants = {{"dense", ctx.model_dir, "the model given with --model", false},
                {"ptq-int8", work / "ptq-int8", "refengine quantize --scheme w8a8 at run time", false}};
  }
  json missing = json::object(), not_measured = json::object();
  std::vector<acc::VariantMeasure> measured;
  for (const auto& v : variants) {
    if (v.name == "ptq-int8") {
      if (ctx.progress) ctx.progress("accuracy: quantizing the dense model (PTQ W8A8)");
      engine::compress::QuantizeOptions qo;
      qo.overwrite = true;
      qo.eval_backend = "";
      try {
        engine::compress::quantize_model(ctx.model_dir, v.dir, qo);
      } catch (const std::exception& e) {
        missing[v.name] = std::string("PTQ failed: ") + e.what();
        continue;
      }
    }
    if (!fs::exists(v.dir / "config.json")) {
      missing[v.name] = v.dir.string() + " does not exist: build it with ci/build-model-variants.sh";
      continue;
    }
    if (ctx.progress) ctx.progress("accuracy: measuring " + v.name + " (" + v.dir.string() + ")");
    measured.push_back(acc::measure_variant(v, s));
    const auto& m = measured.back();
    std::printf("%-13s mean acc %5.1f%%  answer ppl %6.3f  %9llu bytes  %8.1f tok/s  %lld FLOP/token\n", v.name.c_str(),
                100 * m.mean_accuracy, m.answer_perplexity, static_cast<unsigned long long>(m.model_bytes), m.decode_tps_median,
                static_cast<long long>(m.flops_per_token));
    std::fflush(stdout);
  }

  json rows = json::array();
  for (const auto& m : measured) {
    add_variant_metrics(r, m, s);
    json row = {{"variant", m.variant.name}, {"mean_acc", m.mean_accuracy}, {"answer_perplexity", m.answer_perplexity},
                {"model_bytes", m.model_bytes}, {"decode_tokens_per_s", m.decode_tps_median}, {"flops_per_token", m.flops_per_token}};
    for (const auto& [task, t] : m.tasks.items()) row[task] = t["accuracy"];
    rows.push_back(row);
  }
  r.tables["variants"] = rows;
  add_claim_metrics(r, measured, missing, not_measured);
  prune_sweep(r, ctx, measured, s, not_measured);

  // Golden baselines (the default model's committed variants only).
  if (is_default && fs::exists(acc::default_baselines_file())) {
    const auto check = acc::check_baselines(measured, acc::default_baselines_file(), s.examples_per_task);
    json crow = json::array();
    int regressions = 0;
    for (const auto& c : check) {
      regressions += c.regressed;
      crow.push_back({{"variant", c.variant}, {"task", c.task}, {"baseline", c.baseline}, {"measured", c.measured},
                      {"drop_points", c.drop_points}, {"threshold_points", c.threshold_points},
                      {"verdict", c.regressed ? "REGRESSED" : "ok"}});
    }
    r.tables["baseline_check"] = crow;
    r.add({"accuracy.baseline.regressions", double(regressions), "count", Direction::LowerIsBetter, NoiseClass::Exact, {},
           {{"file", acc::default_baselines_file().string()}, {"checked", check.size()}},
           "(variant, task) pairs whose accuracy dropped past the baseline threshold"});
    if (regressions) std::printf("accuracy: %d (variant, task) pairs regressed past the baseline threshold\n", regressions);
  } else {
    not_measured["accuracy.baseline.regressions"] = is_default ? "no baseline file suites/accuracy/baselines.json"
                                                               : "baselines exist for the embedded default model only";
  }

  r.params = {{"model_dir", ctx.model_dir.string()}, {"examples_per_task", s.examples_per_task},
              {"decode_prompt_tokens", s.decode_prompt_tokens}, {"decode_tokens", s.decode_tokens}, {"decode_reps", s.decode_reps},
              {"flops_context", s.flops_context}, {"variants_missing", missing}, {"not_measured", not_measured}};
  return r;
}

}  // namespace cb::harness
