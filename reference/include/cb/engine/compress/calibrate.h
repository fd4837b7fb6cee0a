// Calibration for activation-aware pruning scores (Wanda: |W[n, k]| * ||X[:, k]||_2): runs the
// engine's own forward pass over calibration tokens and records, for every linear layer, the
// squared L2 norm of each input column over all calibration tokens. The recording is a Backend
// decorator around the real backend (the op table is the seam): no second forward pass to keep
// in step with model.cpp.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "cb/engine/compress/export.h"
#include "cb/engine/tokenizer/tokenizer.h"

namespace cb::engine::compress {

struct CalibrationOptions {
  std::string text_file;     // calibration text (bytes = tokens); empty = the built-in seeded text
  int tokens = 512;          // calibration tokens in all
  int seq_len = 128;         // tokens per sequence (each starts with BOS)
  uint64_t seed = 1;         // picks the windows of the text
  std::string backend = "cpu";
  nlohmann::json to_json() const;
};

// Sequences of token ids cut from the text at seeded offsets, with the byte tokenizer over cfg.
std::vector<std::vector<int32_t>> calibration_sequences(const ModelConfig& cfg, const CalibrationOptions& opt);
// The same with the model's own tokenizer (tok::load_tokenizer); each sequence is BOS + the
// tokens of its window, at most seq_len. For the byte tokenizer the ids equal the form above.
std::vector<std::vector<int32_t>> calibration_sequences(const ModelConfig& cfg, const CalibrationOptions& opt,
                                                        const tok::Tokenizer& tok);

// module name (e.g. "model.layers.0.mlp.down_proj") -> sum over tokens of x[t, k]^2, k < K.
using InputSquares = std::map<std::string, std::vector<double>>;

// Runs the source model (dense float weights) over the calibration sequences.
InputSquares calibrate_input_squares(const SourceModel& src, const CalibrationOptions& opt);

}  // namespace cb::engine::compress
