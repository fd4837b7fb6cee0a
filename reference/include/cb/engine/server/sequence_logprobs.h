// Log-probabilities of a token sequence under the served model, for the completions `logprobs` and
// `echo` fields: one teacher-forced forward over the whole sequence (prompt, then any generated
// tokens) with every position's logits kept (SeqStep::all_logits), through a private KV cache, in
// chunks of 512 positions, as train::perplexity does. The log-softmax is taken in double.
//
// It runs beside the serving engine, not inside it: the scheduler's chunked prefill keeps only the
// last row of logits, and changing that for the few requests that ask would touch every step. The
// server calls this on the engine thread between steps (EngineLoop::run_exclusive), so the model
// is never used by two threads. Generated tokens are scored again by this pass, so their
// log-probabilities come from a full-sequence forward, not from the batched decode steps that
// produced them (equal up to float rounding of the batch shape).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "cb/engine/model/engine.h"

namespace cb::engine {

struct PositionLogprobs {
  double logprob = 0;                          // log P(tokens[i] | tokens[< i])
  std::vector<std::pair<int32_t, double>> top; // the top_n most likely tokens at i, most likely first
};

// Entry i (i >= 1) scores tokens[i] given tokens[0..i); entry 0 is empty (nothing predicts the
// first token). Throws std::invalid_argument for an empty sequence, ids outside the vocabulary or a
// sequence past the model's context; std::runtime_error for a tensor-parallel model.
std::vector<PositionLogprobs> sequence_logprobs(LoadedModel& m, const std::vector<int32_t>& tokens, int top_n);

// log-softmax of one row of logits, in double.
std::vector<double> log_softmax(const float* logits, int vocab);

}  // namespace cb::engine
