// The one INT8 scheme every part of the project uses (kernels, PTQ, QAT fake quantization, export):
// symmetric, no zero point; weights per output channel (row of W[N, K]), activations per token
// (row of x[M, K]) computed at run time. scale = max|v| / 127 (1 for an all-zero row, so the row
// quantizes to zeros), q = clamp(round-half-to-even(v / scale), -127, 127). -128 is never used,
// so negation stays exact (as in the compressed-tensors "symmetric" int8 scheme vLLM reads).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace cb::kernels::int8 {

constexpr float kQMax = 127.f;

// Scale of one row of n values.
inline float row_scale(const float* v, int64_t n) {
  float amax = 0.f;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(v[i]));
  return amax > 0.f ? amax / kQMax : 1.f;
}

// Quantizes one value with a given scale (round half to even, as std::nearbyint in the default
// rounding mode).
inline int8_t quantize(float v, float scale) {
  const float q = std::nearbyint(v / scale);
  return static_cast<int8_t>(std::clamp(q, -kQMax, kQMax));
}

// Quantize then dequantize (fake quantization, used by QAT's forward pass).
inline float fake_quant(float v, float scale) { return float(quantize(v, scale)) * scale; }

// Quantizes a row in place into q (n values); returns its scale.
inline float quantize_row(const float* v, int64_t n, int8_t* q) {
  const float s = row_scale(v, n);
  for (int64_t i = 0; i < n; ++i) q[i] = quantize(v[i], s);
  return s;
}

}  // namespace cb::kernels::int8
