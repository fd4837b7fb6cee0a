// Seeded random-weight models in Hugging Face layout, so benchmarks get realistic shapes without
// downloads. Weights ~ N(0, 0.02) (std scaled down for output projections as GPT-2 does), norms 1.
#pragma once

#include <cstdint>
#include <filesystem>

#include "cb/engine/model/config.h"
#include "cb/kernels/tensor.h"

namespace cb::engine {

// Writes config.json and model.safetensors to out_dir (created if missing). dtype: F32, F16 or BF16.
// Throws ModelError if out_dir exists and holds a model already, unless overwrite is set.
void write_random_model(const ModelConfig& cfg, uint64_t seed, const std::filesystem::path& out_dir,
                        kernels::DType dtype = kernels::DType::F32, bool overwrite = false);

}  // namespace cb::engine
