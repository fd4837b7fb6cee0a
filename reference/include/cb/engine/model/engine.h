// A loaded model ready to run: config, memory-mapped weights, a backend, the forward pass, and
// single-sequence generation with timings. (The multi-request scheduler builds on Model.)
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cb/engine/model/config.h"
#include "cb/engine/model/kv_cache.h"
#include "cb/engine/model/model.h"
#include "cb/engine/model/safetensors.h"
#include "cb/kernels/op_profile.h"
#include "cb/engine/model/sampler.h"
#include "cb/engine/model/tokenizer.h"
#include "cb/engine/tokenizer/tokenizer.h"

namespace cb::engine {

// How to run the weights as loaded. bf16_activations: every linear layer (bf16 weights only)
// multiplies bf16-rounded activations in bf16 dot-product instructions (kernels::ActQuant::Bf16)
// instead of widening the weights to f32: faster prefill, different numbers.
struct LoadOptions {
  bool bf16_activations = false;
  // Run the model on a kernels::ProfilingBackend over the backend (off until enabled): per-op
  // time of the forward pass (refengine bench --op-profile).
  bool profile_ops = false;
  // Replay decode steps from recordings (CUDA graphs on the cuda backend; Model::set_step_graphs).
  // The profiler records nothing (it times each op as it runs), so with profile_ops steps run as usual.
  bool step_graphs = false;
};

class LoadedModel {
 public:
  // Throws ModelError naming the file / key / tensor when the directory is not a usable model.
  // With a communicator of more than one rank, opens this rank's tensor-parallel shard (tp.h);
  // the communicator is not owned and must outlive the model.
  static std::unique_ptr<LoadedModel> open(const std::filesystem::path& dir, const std::string& backend = "cpu",
                                           comm::Communicator* tp = nullptr, const LoadOptions& load = {});

  // The model's config as config.json states it (the same on every rank).
  const ModelConfig& config() const { return cfg_; }
  // The config a KV cache for this rank is built from: config() with num_key_value_heads = the
  // KV heads this rank stores (equal to config() without tensor parallelism).
  const ModelConfig& kv_config() const { return kv_cfg_; }
  const TpShard& shard() const { return shard_; }
  comm::Communicator* tp_comm() const { return model_->tp().active() ? model_->tp().comm : nullptr; }
  Model& model() { return *model_; }
  kernels::Backend& backend() { return *backend_; }
  // The per-op profiler the model runs on (LoadOptions::profile_ops), else nullptr.
  kernels::ProfilingBackend* op_profiler() { return profiler_; }
  // The checkpoint's tokenizer (tok::load_tokenizer(dir): tokenizer.json, tokenizer.model, else
  // the byte tokenizer over config.json); its vocabulary fits config().vocab_size.
  const tok::Tokenizer& tokenizer() const { return *tok_; }
  const std::filesystem::path& dir() const { return dir_; }
  size_t weight_bytes() const { return model_->weights().bytes; }  // this rank's, when sharded

 private:
  std::filesystem::path dir_;
  ModelConfig cfg_, kv_cfg_;
  TpShard shard_;
  WeightStore store_;  // keeps the mappings alive
  ShardStorage shard_store_;  // this rank's sliced weights
  std::unique_ptr<kernels::Backend> inner_backend_;  // under the profiler, when there is one
  std::unique_ptr<kernels::Backend> backend_;
  kernels::ProfilingBackend* profiler_ = nullptr;     // backend_, when it is the profiler
  std::unique_ptr<Model> model_;
  std::unique_ptr<tok::Tokenizer> tok_;
};

struct GenerateOptions {
  int max_tokens = 32;
  SamplingParams sampling;
  bool stop_at_eos = true;
  int prefill_chunk = 0;  // 0 = whole prompt in one step
  // Called with the logits each sampled token came from ([vocab]), before sampling.
  std::function<void(const std::vector<float>&)> on_logits;
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated ids (without the prompt)
  int prompt_tokens = 0;
  double prefill_seconds = 0;   // prompt -> first token
  double decode_seconds = 0;    // remaining tokens, one step each
  int decode_steps = 0;
  std::string stop_reason;      // "length" or "eos"
  double prefill_tokens_per_s() const { return prefill_seconds > 0 ? prompt_tokens / prefill_seconds : 0; }
  double decode_tokens_per_s() const { return decode_seconds > 0 ? decode_steps / decode_seconds : 0; }
};

// Generates from one prompt with its own KV cache. Throws std::invalid_argument when the prompt
// is empty, uses ids outside the vocabulary, or prompt + max_tokens exceeds the context.
GenerateResult generate(LoadedModel& m, const std::vector<int32_t>& prompt, const GenerateOptions& opt,
                        const std::function<void(int32_t)>& on_token = {});

// Tensor parallelism, rank 0 drives: it runs generate() or a ServingEngine as usual and its
// forward steps reach the other ranks, which sit in run_tp_follower() until rank 0 calls
// finish_tp_leader(). Without an active group both do nothing.
// run_tp_follower: mirrors rank 0's steps over this rank's shard and its own KV cache (sized as
// rank 0's), returns when rank 0 stops the group.
void run_tp_follower(LoadedModel& m);
// Rank 0, when done: stops the followers. After a failure in the middle of a step (followers
// inside a collective) it aborts the group instead (MPI_Abort for mpi).
void finish_tp_leader(LoadedModel& m, bool failed = false, const std::string& why = "");

// The committed default model (reference/models/default), found from the source tree.
std::filesystem::path default_model_dir();

}  // namespace cb::engine
