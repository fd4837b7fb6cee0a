// The cpu backend's op drivers: work split over OpenMP threads and calls into one ISA's
// KernelTable. CpuBackend (cpu_backend.cpp) forwards each Backend op here after Backend's shared
// argument checks (backend_common.cpp) passed: shapes, dtypes, data pointers, non-empty work.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cb/kernels/backend.h"
#include "cpu_kernels.h"

namespace cb::kernels::cpu {

struct MatmulConfig {
  // From this many rows of x on, dense f32 matmul goes to oneDNN's sgemm (see cpu_matmul.cpp
  // for the timings behind 512).
  int64_t onednn_min_m = 512;
  // matmul_multi runs weights that all take the GEMV kernel in one parallel region
  // ($CB_CPU_FUSED_MATMULS=0: one region per weight, for A/B runs).
  bool fuse_matmuls = true;
  // The packed f32 / bf16-weight GEMM's walk past one row group ($CB_CPU_PACKED_WALK=panel or
  // slice forces one, for `cb_m16_stream_study walk`; unset: by the size of x's copy).
  PackedWalk packed_walk = PackedWalk::Auto;
  // Its one-row tile ($CB_CPU_PACKED_DECODE=wide: the 8-panel one it replaced, for A/B runs).
  PackedDecode packed_decode = PackedDecode::Prefetched;
};
// Defaults, with $CB_CPU_ONEDNN_MIN_M overriding the threshold, $CB_CPU_FUSED_MATMULS=0 turning
// fusion off, $CB_CPU_PACKED_WALK forcing the packed walk and $CB_CPU_PACKED_DECODE its
// one-row tile.
MatmulConfig matmul_config();

Status matmul(const KernelTable& k, const MatmulConfig& cfg, const Tensor& x, const Weight& w, Tensor& y);
Status matmul_multi(const KernelTable& k, const MatmulConfig& cfg, const Tensor& x, std::span<const MatmulOutput> outs);
// The three special matmuls, called by matmul() when K > 0.
Status matmul_w8a8(const KernelTable& k, const Tensor& x, const Weight& w, Tensor& y);
// x quantized per token once per call (matmul_multi shares it between W8A8 weights on quad panels).
struct W8A8Input {
  std::vector<int8_t> q;   // [M, ldx], plus `offset` (read as u8 where 128); columns K .. ldx-1 offset zeros
  std::vector<float> xs;   // [M] per-token scales
  int64_t ldx = 0;         // a multiple of 64
  int offset = 0;
};
W8A8Input quantize_w8a8_input(const KernelTable& k, const Tensor& x, int offset);
// The packed_w8a8 arguments for a weight on quad panels (in quantized with k.w8a8_x_offset).
PackedArgs w8a8_packed_args(const W8A8Input& in, int64_t M, const Weight& w, Tensor& y);
int64_t w8a8_min_cols(int64_t M, int64_t K);
Status w8a8_k_fits(int64_t K);  // Unsupported past the K the int32 sums hold exactly
Status matmul_bf16dot(const KernelTable& k, const Tensor& x, const Weight& w, Tensor& y);
Status matmul_sparse24(const KernelTable& k, const Tensor& x, const Weight& w, Tensor& y);
// x rounded to bf16 once per call (matmul_multi shares it between bf16-dot weights).
struct Bf16Input {
  std::vector<uint16_t> xb;  // [M, ldx], columns K .. ldx-1 zero
  int64_t ldx = 0;           // a multiple of 32
};
Bf16Input prepare_bf16_input(const Tensor& x);
// Whether w sits on pair panels this table can run (a weight packed by another backend's table
// falls back to its row-major values).
inline bool on_pair_panels(const KernelTable& k, const Weight& w) {
  return w.act_quant == ActQuant::Bf16 && !w.packed.empty() && k.packed_bf16dot != nullptr;
}
// Whether w sits on W8A8 quad panels this table can run (else its row-major values run).
inline bool on_quad_panels(const KernelTable& k, const Weight& w) {
  return w.act_quant == ActQuant::PerTokenInt8 && !w.packed.empty() && k.packed_w8a8 != nullptr;
}
// PackedArgs for x already in a dot-product kernel's step unit (bf16 pairs, int8 quads: one uint32
// per step), ldx and K counted in steps, against w's packed panels of wdt.
PackedArgs dot_step_packed_args(const void* x, int64_t ldx_steps, int64_t M, int64_t k_steps, const Weight& w, DType wdt,
                                Tensor& y);
// The packed_bf16dot arguments for a weight packed into pair panels.
PackedArgs bf16_packed_args(const Bf16Input& in, int64_t M, const Weight& w, Tensor& y);
// Fewest output columns per thread worth a second thread at M rows of K.
int64_t bf16_min_cols(int64_t M, int64_t K);
Status rmsnorm(const KernelTable& k, const Tensor& x, const Tensor& weight, float eps, Tensor& y);
Status rope(const KernelTable& k, Tensor& x, const Tensor& positions, int n_heads, int head_dim, float theta);
Status kv_store(const Tensor& key, const Tensor& value, const Tensor& slot_mapping, KvLayer& kv);
Status attention(const KernelTable& k, const Tensor& q, const KvLayer& kv, const AttentionBatch& b,
                 const AttentionParams& p, Tensor& out);
Status silu_mul(const KernelTable& k, const Tensor& gate, const Tensor& up, Tensor& out);
Status softmax(const KernelTable& k, const Tensor& x, Tensor& y);
Status embedding(const KernelTable& k, const Tensor& ids, const Tensor& table, Tensor& out);
Status add(const KernelTable& k, const Tensor& a, const Tensor& b, Tensor& out);

// Output columns per thread chunk of a packed weight are a multiple of this: whole panels, so
// the threads' shares differ by at most one panel (a share's last tile may be narrower than the
// kernel's 3 or 8 panels). Whole 3-panel tiles split q/o/down_proj (128 panels) 66 + 62, and the
// longer share kept the other thread waiting (llama-1b batch-16 decode, per-thread busy times:
// 7.4% of those matmuls' wall time idle, 6.1% with even panels; q/k/v 8.3% -> 4.4%).
inline constexpr int64_t kPackedAlign = kPackPanel;

// Runs f(begin, end) over [0, n) split into one contiguous range per thread, each range a
// multiple of `align` (except the last, which ends at n); stays on the calling thread when the work is too small
// to pay for waking the pool (fewer than `min_per_thread` units per thread).
template <class F>
void parallel_ranges(int64_t n, int64_t min_per_thread, int64_t align, F&& f) {
  if (n <= 0) return;
  const int64_t max_threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const int64_t nt = std::clamp<int64_t>(n / std::max<int64_t>(1, min_per_thread), 1, max_threads);
  if (nt <= 1) {
    f(int64_t(0), n);
    return;
  }
  // Whole units of `align`, as evenly as they go: rounding each range up to a multiple instead
  // left the last thread 6% short on a 2048-column matmul split in 48s (1056 + 992).
  const int64_t units = (n + align - 1) / align;
#pragma omp parallel for num_threads(static_cast<int>(nt)) schedule(static, 1)
  for (int64_t t = 0; t < nt; ++t) {
    const int64_t b = std::min(n, units * t / nt * align), e = std::min(n, units * (t + 1) / nt * align);
    if (b < e) f(b, e);
  }
}

}  // namespace cb::kernels::cpu
