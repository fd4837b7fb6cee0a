// Planted defects, in the spirit of MLPerf's compliance tests: each breaks one technique the way a
// real bug or a benchmark-gaming shortcut would, so a test can show that the claim measuring that
// technique flips (to FAIL, or the run to INVALID). Off unless named in the environment variable
// CB_PLANT_DEFECTS (comma-separated); `claimbench run --plant-defect NAME` sets it for its suite
// processes and records the names in the run's manifest (params.planted_defects).
//
//   batch-ignores-queue  the queue-table policy returns a fixed batch of 16 whatever the queue
//   kv-reserve-max       the paged KV cache reserves the model's whole context per sequence at
//                        admission (what a contiguous allocator does)
//   busy-loop            every engine step spins twice as long as its forward pass inside the
//                        timed region: busy time triples, work does not
//   dense-pruned         a structurally pruned model (compression.json names its dense shape) is
//                        loaded zero-padded back to the dense shape: same outputs, dense matmuls
//                        (masking instead of removing, the way a pruning that only zeroes works)
//   answer-cache         the serving engine keeps each finished single-sample answer and serves a
//                        repeated request (same prompt, length and sampling) from that cache
//                        without a forward pass (what MLPerf's TEST04 looks for)
//   slow-sampling        the sampler sorts the whole vocabulary for every token (what it did before
//                        issue #16): the serving engine's per-step overhead must show it
//   matmul-twice         every matmul of the forward pass runs twice (the second writes the same
//                        result), counted once: the weights stream twice per token, as with a
//                        projection computed both fused and unfused; `refengine bench`'s decode
//                        bandwidth fraction must drop
//   kv-scatter           the KV block allocator hands out blocks LIFO (a plain free list) instead
//                        of in runs of adjacent ids: after churn every sequence is scattered over
//                        the pool, and the kernels suite's paged-vs-contiguous figure on the
//                        engine's placement must drop to the shuffled one
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "cb/engine/model/config.h"
#include "cb/engine/model/weights.h"

namespace cb::engine {

enum class Defect { BatchIgnoresQueue, KvReserveMax, BusyLoop, DensePruned, AnswerCache, SlowSampling, MatmulTwice, KvScatter };

const char* defect_name(Defect d);
const std::vector<std::string>& known_defect_names();
// True when `d` is planted in this process (CB_PLANT_DEFECTS, read once).
bool planted(Defect d);
// The planted names (validated); throws std::invalid_argument naming an unknown one and listing
// the known ones.
std::vector<std::string> planted_defect_names();
// Parses a comma-separated list; throws std::invalid_argument as above.
std::vector<std::string> parse_defect_list(const std::string& csv);

// dense-pruned: when `dir` holds a structurally pruned model whose compression.json names its
// dense shape, pads `w` with zeros to that shape and sets `cfg` to it (outputs unchanged, matmuls
// dense); otherwise leaves both alone. Throws ModelError for a record that is not a superset.
void pad_pruned_to_dense(const std::filesystem::path& dir, ModelConfig& cfg, ModelWeights& w);

}  // namespace cb::engine
