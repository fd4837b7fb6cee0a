// A loaded model ready to run: config, memory-mapped weights, a backend, the forward pass, and
// single-sequence generation with timings. (The multi-request scheduler builds on Model.)
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cb/engine/config.h"
#include "cb/engine/kv_cache.h"
#include "cb/engine/model.h"
#include "cb/engine/safetensors.h"
#include "cb/engine/sampler.h"
#include "cb/engine/tokenizer.h"

namespace cb::engine {

class LoadedModel {
 public:
  // Throws ModelError naming the file / key / tensor when the directory is not a usable model.
  static std::unique_ptr<LoadedModel> open(const std::filesystem::path& dir, const std::string& backend = "cpu");

  const ModelConfig& config() const { return cfg_; }
  Model& model() { return *model_; }
  kernels::Backend& backend() { return *backend_; }
  const ByteTokenizer& tokenizer() const { return tok_; }
  const std::filesystem::path& dir() const { return dir_; }
  size_t weight_bytes() const { return model_->weights().bytes; }

 private:
  std::filesystem::path dir_;
  ModelConfig cfg_;
  WeightStore store_;  // keeps the mappings alive
  std::unique_ptr<kernels::Backend> backend_;
  std::unique_ptr<Model> model_;
  ByteTokenizer tok_{0, 0, 0, 0};
};

struct GenerateOptions {
  int max_tokens = 32;
  SamplingParams sampling;
  bool stop_at_eos = true;
  int prefill_chunk = 0;  // 0 = whole prompt in one step
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

// The committed default model (reference/models/default), found from the source tree.
std::filesystem::path default_model_dir();

}  // namespace cb::engine
