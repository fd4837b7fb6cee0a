// What every compression command shares: reading a source model as floats, writing a model
// directory (model.safetensors + config.json + compression.json) and the compressed-tensors
// "quantization_config" blocks vLLM reads.
//
// On-disk convention (compressed-tensors, as vLLM loads it; see config.h for what the engine reads):
//   INT8 (format "int-quantized"): `<module>.weight` I8 [N, K], `<module>.weight_scale` F32 [N, 1];
//     config_groups.group_0 = {targets ["Linear"], weights {num_bits 8, type int, symmetric,
//     strategy channel, dynamic false}, input_activations {num_bits 8, type int, symmetric,
//     strategy token, dynamic true} (W8A8) or null (W8A16)}, ignore ["lm_head"].
//   2:4: sparsity_config {format "dense" | "sparse-24-bitmask", sparsity_structure "2:4",
//     global_sparsity, targets ["Linear"], ignore ["lm_head"]}; sparse-24-bitmask stores
//     `<module>.compressed`, `<module>.bitmask`, `<module>.shape` (sparse24.h).
// Norms, embeddings and lm_head stay in the source's float dtype.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cb/engine/model/config.h"
#include "cb/engine/model/safetensors.h"

namespace cb::engine::compress {

// A model directory opened for reading by a compression command.
struct SourceModel {
  std::filesystem::path dir;
  ModelConfig cfg;
  WeightStore store;
  // Throws ModelError naming the directory / file when it is not a model.
  static SourceModel open(const std::filesystem::path& dir);
  // A float tensor (F32, F16 or BF16) as f32 values; throws ModelError naming it otherwise.
  std::vector<float> read_f32(const std::string& name) const;
  kernels::DType dtype(const std::string& name) const { return store.info(name).dtype; }
  // Refuses (ModelError naming `command`) a source whose linear layers are not plain float tensors.
  void require_float_linears(const std::string& command) const;
};

// Bytes of the files that make up a model directory (config.json, *.safetensors and the shard
// index): what the size claims compare. compression.json and other notes are not counted.
uint64_t model_file_bytes(const std::filesystem::path& dir);

// Creates `out` for a new model. Refuses (ModelError) when it is the source directory, or holds a
// model already and overwrite is not set.
void prepare_output_dir(const std::filesystem::path& out, const std::filesystem::path& source, bool overwrite);

// Tensor specs are written in the given order, except that wider elements go first (F32/I32, then
// F16/BF16, then I8) so every view stays aligned to its element size for the kernels.
void write_model_dir(const std::filesystem::path& out, const nlohmann::json& config, std::vector<TensorSpec> specs,
                     const std::function<void(const TensorSpec&, void* dst, size_t nbytes)>& fill,
                     const std::map<std::string, std::string>& metadata);

// Writes `record` to out/compression.json (atomically), adding "schema" and "schema_version".
void write_compression_json(const std::filesystem::path& out, nlohmann::json record);

// Where a compressed model came from: directory, model file bytes, torch_dtype, and a FNV-1a 64
// digest of its safetensors bytes (so a record names the exact input).
nlohmann::json provenance(const SourceModel& src);

// compressed-tensors blocks.
// ignore = ["lm_head"] unless quantize_lm_head.
nlohmann::json int8_quantization_config(bool dynamic_activations, const nlohmann::json& sparsity_config = nullptr,
                                        bool quantize_lm_head = false);
nlohmann::json sparsity_config_json(const std::string& format, double global_sparsity);
nlohmann::json sparsity_only_quantization_config(const nlohmann::json& sparsity_config);

// f32 values to a float dtype's bytes (round to nearest even for F16 / BF16).
void store_f32(const float* src, size_t n, kernels::DType dtype, void* dst);

void write_text_atomic(const std::filesystem::path& path, const std::string& text);

// Runs both models on the same tokens (all positions) on `backend` and compares logits:
// {"backend", "tokens", "rel_error": ||b - a||_2 / ||a||_2, "max_abs_diff"}, or
// {"backend", "not_measured": reason} when either model cannot run there.
nlohmann::json compare_logits(const std::filesystem::path& a, const std::filesystem::path& b, const std::string& backend,
                              const std::vector<int32_t>& tokens);
// The same on the first 64 tokens of the built-in calibration text; null when backend is "".
nlohmann::json compare_logits_default(const std::filesystem::path& a, const std::filesystem::path& b, const ModelConfig& cfg,
                                      const std::string& backend);

}  // namespace cb::engine::compress
