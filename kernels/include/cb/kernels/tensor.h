// Tensor views and dtypes shared by every backend.
//
// A Tensor is a non-owning view of a dense, row-major array of up to 4 dims (outermost first).
// Its memory belongs to a backend allocation (see Backend::alloc) or to a memory-mapped file, and
// may live in device memory: only the backend that owns it dereferences `data`.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "cb/kernels/dtype.h"

namespace cb::kernels {

enum class MemSpace : uint8_t { Host, Device };

struct Tensor {
  void* data = nullptr;
  DType dtype = DType::F32;
  MemSpace mem = MemSpace::Host;
  int ndim = 0;
  std::array<int64_t, 4> shape{0, 0, 0, 0};

  Tensor() = default;
  Tensor(void* d, DType t, std::initializer_list<int64_t> dims, MemSpace m = MemSpace::Host);

  int64_t numel() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  // Last dim, and product of all the others: how matrix ops see a tensor.
  int64_t cols() const { return ndim == 0 ? 1 : shape[ndim - 1]; }
  int64_t rows() const {  // not numel() / cols(): a [M, 0] tensor still has M rows
    int64_t r = 1;
    for (int i = 0; i + 1 < ndim; ++i) r *= shape[i];
    return r;
  }
  bool empty() const { return data == nullptr; }
  std::string describe() const;  // e.g. "f32[8, 2048]"

  template <class T> T* as() const { return static_cast<T*>(data); }
  // A view of rows [r0, r0 + n) of a matrix-shaped tensor (2-D view).
  Tensor row_slice(int64_t r0, int64_t n) const;
};

// How a weight matrix is stored. Dense is `values` alone; the others add scales or metadata.
enum class WeightLayout : uint8_t {
  Dense,           // values [N, K] in f32/f16/bf16
  Int8PerChannel,  // values i8 [N, K], scales f32 [N]: w = values * scales[row]
  Sparse24,        // 2:4 sparse: values [N, K/2] kept, meta u8 [N, K/4] two 2-bit indices per group
};
// Sparse24 in detail: K % 4 == 0; values f32/f16/bf16 [N, K/2]; meta i8 [N, K/4] read as bytes.
// Group g of row n covers input columns 4g .. 4g+3 and keeps two of them: meta byte
// b = i0 | (i1 << 2) with 0 <= i0 < i1 <= 3 and the high 4 bits zero (anything else is
// InvalidArgument); values[n, 2g] sits at column 4g + i0, values[n, 2g + 1] at 4g + i1. A group
// with fewer than two nonzeros stores explicit zeros (as NVIDIA's 2:4 format does).

// What matmul does with the activations (f32 x) before multiplying. None: f32 x against the
// weight as stored (f16/bf16/i8 weights widen to f32: "weight-only" low precision).
//   PerTokenInt8 (W8A8, needs Int8PerChannel): each row of x is quantized with the scheme of
//     int8_scheme.h (symmetric, per token, at call time), products and sums are exact integers,
//     y[m, n] = acc * x_scale[m] * w_scale[n]. A row of x holding NaN/Inf gives a NaN row of y.
//   Bf16 (needs Dense BF16): x is rounded to bf16 (nearest even) and multiplied in bf16
//     dot-product instructions (vdpbf16ps where present) with f32 accumulation.
// A backend says which combinations it runs through Backend::supports_matmul.
enum class ActQuant : uint8_t { None, PerTokenInt8, Bf16 };
const char* act_quant_name(ActQuant a);
const char* weight_layout_name(WeightLayout l);  // "dense", "2:4 sparse", "int8 per-channel"

// A weight matrix W of logical shape [N (out), K (in)], as Hugging Face stores linear layers.
struct Weight {
  WeightLayout layout = WeightLayout::Dense;
  Tensor values;
  Tensor scales;
  Tensor meta;
  int64_t n = 0;  // output features
  int64_t k = 0;  // input features
  ActQuant act_quant = ActQuant::None;  // see ActQuant
  // The same weight rearranged by a backend's upload_weight into the layout its kernels read
  // fastest, owned by that backend (cpu: dense f32/bf16 as panels of 16 output rows, K-major);
  // empty when it made none. `values` still describes the logical [N, K] weight, which a host
  // backend that packed need not read again (the loader may drop its pages).
  Tensor packed;
  DType dtype() const { return values.dtype; }
  static Weight dense(const Tensor& w);
};

// Half-precision conversions (round to nearest even), used by every backend and the loader.
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
float bf16_to_f32(uint16_t b);
uint16_t f32_to_bf16(float f);

}  // namespace cb::kernels
