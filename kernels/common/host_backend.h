// Memory handling shared by the host-resident backends (ref, cpu): 64-byte aligned (2 MiB and huge
// pages from 2 MiB up), zeroed allocations; copies are plain memcpy.
#pragma once

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "cb/kernels/backend.h"

namespace cb::kernels {

class HostBackend : public Backend {
 public:
  Status allocate(DType dtype, std::initializer_list<int64_t> dims, Tensor& out) override {
    Tensor t(nullptr, dtype, dims);
    // Large buffers (KV pools, activations of long prompts) on 2 MiB boundaries, marked for
    // transparent huge pages: paged attention jumps between blocks all over the pool, and on 4 KiB
    // pages every jump was a TLB miss (4K-context decode, 1 thread: paged 0.82 of contiguous).
    constexpr size_t kHuge = size_t(2) << 20;
    const bool huge = t.nbytes() >= kHuge;
    const size_t align = huge ? kHuge : 64;
    const size_t bytes = (t.nbytes() + align - 1) / align * align;
    t.data = std::aligned_alloc(align, bytes == 0 ? 64 : bytes);
#ifdef MADV_HUGEPAGE
    if (huge && t.data) ::madvise(t.data, bytes, MADV_HUGEPAGE);
#endif
    if (!t.data)
      return Status::out_of_memory(name() + ": cannot allocate " + std::to_string(t.nbytes()) + " bytes for " + t.describe());
    std::memset(t.data, 0, bytes);
    out = t;
    return Status::Ok();
  }
  void release(Tensor& t) override {
    std::free(t.data);
    t.data = nullptr;
  }
  Status copy_from_host(Tensor& dst, const void* src) override {
    std::memcpy(dst.data, src, dst.nbytes());
    return Status::Ok();
  }
  Status copy_to_host(void* dst, const Tensor& src) override {
    std::memcpy(dst, src.data, src.nbytes());
    return Status::Ok();
  }
  Status copy(Tensor& dst, const Tensor& src) override {
    std::memmove(dst.data, src.data, dst.nbytes());
    return Status::Ok();
  }
};

// Reads element i of a f32/f16/bf16 tensor as float.
inline float load_as_f32(const Tensor& t, int64_t i) {
  switch (t.dtype) {
    case DType::F32: return t.as<const float>()[i];
    case DType::F16: return f16_to_f32(t.as<const uint16_t>()[i]);
    case DType::BF16: return bf16_to_f32(t.as<const uint16_t>()[i]);
    case DType::I8: return static_cast<float>(t.as<const int8_t>()[i]);
    case DType::I32: return static_cast<float>(t.as<const int32_t>()[i]);
    case DType::U8: return static_cast<float>(t.as<const uint8_t>()[i]);
    case DType::I64: return static_cast<float>(t.as<const int64_t>()[i]);
  }
  return 0.f;
}

inline bool is_float_dtype(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

}  // namespace cb::kernels
