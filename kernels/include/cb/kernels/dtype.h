// Element types and the stream handle, shared by the op table (backend.h) and the collectives
// (cb/comm/communicator.h), so a tensor's dtype goes to a collective without translation.
// Header-only: cb_comm includes it without linking the kernels library.
#pragma once

#include <cstddef>
#include <cstdint>

namespace cb::kernels {

// U8 and I64 only carry checkpoint metadata (compressed-tensors 2:4 bitmasks and shapes); no op
// computes on them.
enum class DType : uint8_t { F32, F16, BF16, I8, I32, U8, I64 };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F16: return 2;
    case DType::BF16: return 2;
    case DType::I8: return 1;
    case DType::I32: return 4;
    case DType::U8: return 1;
    case DType::I64: return 8;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::BF16: return "bf16";
    case DType::I8: return "i8";
    case DType::I32: return "i32";
    case DType::U8: return "u8";
    case DType::I64: return "i64";
  }
  return "?";
}

// The queue a backend's ops run on, as an opaque handle: a cudaStream_t for the cuda backend,
// nullptr for host backends (their ops finish inside the call). Collectives take it, so a
// collective is ordered after the ops that wrote its buffer without a host synchronize.
using Stream = void*;

}  // namespace cb::kernels
