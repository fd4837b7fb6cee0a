// INT8 post-training quantization (PTQ) and its export: per-channel symmetric INT8 weights and,
// for W8A8, per-token dynamic INT8 activations at run time — the one scheme in
// cb/kernels/int8_scheme.h, stored the compressed-tensors way (compress/export.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace cb::engine::compress {

enum class Int8Scheme { W8A8, W8A16 };
Int8Scheme parse_int8_scheme(const std::string& s);  // "w8a8" | "w8a16"; std::invalid_argument otherwise
const char* int8_scheme_name(Int8Scheme s);

// W[N, K] quantized per output row: w[n, k] ~ q[n * K + k] * scales[n].
struct QuantizedMatrix {
  int64_t n = 0, k = 0;
  std::vector<int8_t> q;
  std::vector<float> scales;
};
QuantizedMatrix quantize_per_channel(const float* w, int64_t n, int64_t k);
std::vector<float> dequantize(const QuantizedMatrix& m);

struct QuantizeOptions {
  Int8Scheme scheme = Int8Scheme::W8A8;
  bool overwrite = false;
  // lm_head to INT8 too (as QAT with qat_lm_head trains it); off by default: it stays float.
  bool quantize_lm_head = false;
  std::string eval_backend = "cpu";  // compares logits with the source's on it ("" = skip)
};

struct QuantizeReport {
  Int8Scheme scheme = Int8Scheme::W8A8;
  std::string source_dtype;
  uint64_t source_bytes = 0, output_bytes = 0;  // model file bytes (config.json + safetensors)
  // The FP32 model's file bytes when the source is F32 (else 0: the ratio vs FP32 is not measured).
  uint64_t fp32_bytes = 0;
  int quantized_matrices = 0;
  int64_t quantized_params = 0, float_params = 0;
  // Per-matrix weight error ||W - deq(Q)||_F / ||W||_F: largest and mean over the quantized matrices.
  double max_rel_error = 0, mean_rel_error = 0;
  nlohmann::json logits_vs_source;  // compare_logits (export.h) on 64 calibration tokens
  double size_ratio_vs_source() const { return output_bytes ? double(source_bytes) / double(output_bytes) : 0; }
  double size_ratio_vs_fp32() const { return output_bytes && fp32_bytes ? double(fp32_bytes) / double(output_bytes) : 0; }
  nlohmann::json to_json() const;
};

// Reads a float model from `source`, writes the INT8 export to `out` (model.safetensors,
// config.json with quantization_config, compression.json). Throws ModelError naming the problem.
QuantizeReport quantize_model(const std::filesystem::path& source, const std::filesystem::path& out,
                              const QuantizeOptions& opt);

}  // namespace cb::engine::compress
