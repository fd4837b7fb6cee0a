// Training and evaluation API: train a model on the synthetic tasks (from scratch, or from an
// existing model directory, optionally with INT8 quantization-aware training and frozen zeros),
// and measure a model's held-out task accuracy and perplexity through the inference engine.
//
// The math is the engine's (model.cpp over the op table): RMSNorm, HF rotate_half RoPE, causal
// grouped-query attention, SiLU-gated MLP, tied or untied lm_head; a trained model loads with
// LoadedModel::open and gives the logits training saw (up to float rounding).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cb/engine/model/config.h"
#include "cb/engine/model/engine.h"
#include "cb/engine/train/tasks.h"
#include "cb/kernels/tensor.h"

namespace cb::engine::train {

struct TrainOptions {
  // Model: a fresh seeded model of `preset` (see train_preset_config), or, when init_from is set,
  // the model in that directory (any config, e.g. a structurally pruned one; preset is ignored).
  std::string preset = "default";
  std::filesystem::path init_from;
  std::filesystem::path out_dir;   // config.json, model.safetensors, train_log.jsonl
  bool overwrite = false;          // replace a model already in out_dir
  kernels::DType out_dtype = kernels::DType::F32;  // F32 or BF16

  uint64_t seed = 1;               // weight init (fresh models) and data order
  int steps = 1000;
  int batch = 32;                  // examples per step
  std::vector<std::string> tasks;  // empty = all (task_names()); a task listed twice is drawn twice as often
  TaskShape shape;

  // AdamW (decoupled weight decay; none on norm weights), linear warmup then cosine decay from
  // lr to lr * min_lr_ratio, gradient clipped to a global L2 norm of grad_clip (0 = off).
  float lr = 3e-3f;
  float min_lr_ratio = 0.1f;
  int warmup_steps = -1;           // -1 = steps / 20
  float weight_decay = 0.1f;
  float beta1 = 0.9f, beta2 = 0.95f, adam_eps = 1e-8f;
  float grad_clip = 1.0f;

  // (a) Fake INT8 quantization in the forward pass of every linear layer (q, k, v, o, gate, up,
  // down; lm_head too when qat_lm_head), with the scheme of cb/kernels/int8_scheme.h: weights per
  // output channel, activations per token; straight-through estimator in backward.
  bool qat = false;
  bool qat_lm_head = true;
  // (b) Weights exactly zero in the initial model stay zero (gradient and update masked), so a
  // 2:4- or structurally pruned model keeps its sparsity while fine-tuned.
  bool keep_zeros = false;

  int threads = 0;                 // OpenMP threads (0 = the runtime's default)
  std::string gemm_backend = "cpu";  // op-table backend whose matmul the training GEMMs use
  int log_every = 10;              // train_log.jsonl and progress every this many steps (and the last)
  int eval_examples = 200;         // held-out examples per task evaluated at the end (0 = skip)
  int eval_every = 0;              // also evaluate the live weights every this many steps (0 = never)
  int eval_every_examples = 50;    // held-out examples per task for those evaluations
};

// One line of train_log.jsonl.
struct TrainLogRecord {
  int step = 0;             // 1-based
  double loss = 0;          // mean cross-entropy over answer tokens of this step's batch
  double lr = 0;
  double grad_norm = 0;     // global L2 norm before clipping
  double seconds = 0;       // wall time since training started
  int64_t tokens = 0;       // tokens processed so far
  nlohmann::json eval;      // {"tasks": ..., "mean": ...} on steps with an evaluation, else null
  nlohmann::json to_json() const;
};

struct TaskScore {
  std::string task;
  int correct = 0, total = 0;
  double chance = 0;        // chance_accuracy(task)
  double accuracy() const { return total > 0 ? double(correct) / total : 0.0; }
};

struct TaskAccuracy {
  std::vector<TaskScore> per_task;   // in task_names() order
  double mean() const;               // unweighted mean of per-task accuracy
  const TaskScore* find(const std::string& task) const;  // nullptr when absent
  nlohmann::json to_json() const;    // {"tasks": {name: {correct, total, accuracy, chance}}, "mean": ...}
};

struct TrainResult {
  std::filesystem::path out_dir;
  ModelConfig config;
  int64_t parameters = 0;
  int steps = 0;
  double final_loss = 0;      // mean loss over the last max(1, steps / 10) steps
  double wall_seconds = 0;    // training loop only (not the final evaluation)
  double cpu_seconds = 0;     // process CPU time over the same span (all threads)
  double eval_seconds = 0;
  TaskAccuracy eval;          // held-out accuracy of the written model (empty when eval_examples == 0)
  std::vector<TrainLogRecord> log;
};

using ProgressFn = std::function<void(const TrainLogRecord&)>;

// Trains and writes out_dir/{config.json, model.safetensors, train_log.jsonl}; the log's last line
// is {"summary": {steps, final_loss, wall_seconds, cpu_seconds, tokens, threads, eval}}. Throws
// std::invalid_argument naming the option for bad options, ModelError for an unusable init_from
// model or an existing model in out_dir without overwrite. The written weights are dense float
// (out_dtype); a quantization_config of init_from is dropped (its INT8 / 2:4-compressed tensors
// are read dequantized / expanded), a "dense"-format 2:4 sparsity_config kept with keep_zeros.
TrainResult train_model(const TrainOptions& opt, const ProgressFn& progress = {});

// Model shapes for training: "default" (the embedded default model: dim 128, 4 layers, 4 query /
// 2 KV heads, FFN 384, vocab 259, context 16384), else preset_config(name).
ModelConfig train_preset_config(const std::string& name);
std::vector<std::string> train_preset_names();

struct EvalOptions {
  std::vector<std::string> tasks;   // empty = all
  int examples_per_task = 200;      // held-out examples per task (held_out_set(task, n, seed))
  uint64_t seed = 0;
  TaskShape shape;
  int batch = 64;                   // sequences decoded together in one engine step
};

// Exact-match greedy accuracy per task on the held-out sets, decoded through the inference
// engine (Model::forward over a paged KV cache, argmax per step, at most as many tokens as the
// answer, EOS included, stopping at EOS).
TaskAccuracy evaluate_tasks(LoadedModel& m, const EvalOptions& opt = {});
TaskAccuracy evaluate_tasks(Model& model, const EvalOptions& opt = {});

// exp(mean negative log-likelihood) of tokens[1..] given their prefixes (Model::forward with
// all_logits, in chunks through the KV cache). Throws std::invalid_argument for fewer than 2
// tokens, ids outside the vocabulary, or more tokens than the context.
double perplexity(LoadedModel& m, const std::vector<int32_t>& tokens);
// Perplexity of the answer tokens only (answer bytes + EOS) over the held-out examples of
// opt: the quantity training minimizes, so small regressions show before exact match moves.
double answer_perplexity(LoadedModel& m, const EvalOptions& opt = {});
// Held-out text as one token stream (BOS + prompt + answer + EOS per example, tasks interleaved)
// for perplexity(): n examples per task.
std::vector<int32_t> held_out_tokens(int n_per_task, uint64_t seed = 0, const TaskShape& shape = {});

}  // namespace cb::engine::train
