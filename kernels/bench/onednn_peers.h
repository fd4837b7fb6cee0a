// The oneDNN peers of cb_kernel_bench's matmuls: y[M, N] = x[M, K] W[N, K]^T through the calls an
// engine built on oneDNN could make, on the same row-major weight. Kept apart from the benchmark
// file so the oneDNN API (and its version differences) stays in one place.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

namespace cb::kbench {

enum class OnednnPeerKind {
  Sgemm,      // dnnl_sgemm (f32): a BLAS call, W re-packed inside every call
  GemmS8,     // dnnl_gemm_s8s8s32 (int8 x, int8 W, int32 y): the same, integer
  MatmulF32,  // the matmul primitive (f32), W reordered once into the layout it asks for
  MatmulS8,   // the matmul primitive, int8 x and W, int32 y, W reordered once
  MatmulBf16, // the matmul primitive, bf16 x and W, f32 y, W reordered once
};
// "sgemm", "gemm_s8s8s32", "matmul", "matmul_s8", "matmul_bf16"
const char* onednn_peer_name(OnednnPeerKind kind);

// make() throws this where oneDNN has no implementation for the kind on this CPU (bf16 without
// AVX512_BF16 / AMX, say): a peer that cannot exist here, not a broken one.
struct OnednnUnsupported : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class OnednnPeer {
 public:
  // w: row-major [n, k], f32 for the f32 kinds, int8 for the s8 ones, bf16 bits (uint16) for
  // MatmulBf16; read (reordered, for the
  // matmul primitive) here and, for the BLAS calls, at every run(). Throws std::runtime_error
  // naming the call that failed (e.g. no primitive for this shape).
  static std::unique_ptr<OnednnPeer> make(OnednnPeerKind kind, int64_t m, int64_t k, int64_t n, const void* w);
  virtual ~OnednnPeer() = default;
  // x: [m, k] row-major (f32, int8 or bf16), y: [m, n] (f32, or int32 for the s8 kinds). Returns when y is written;
  // false when oneDNN reports an error.
  virtual bool run(const void* x, void* y) = 0;
  // The implementation oneDNN picked (the primitive's impl string; the BLAS calls say so).
  virtual std::string impl() const = 0;
};

std::string onednn_version();  // "2.6.3"

}  // namespace cb::kbench
