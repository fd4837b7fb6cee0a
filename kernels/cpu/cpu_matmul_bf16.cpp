// bf16-compute matmul driver (Weight::act_quant == ActQuant::Bf16, dense bf16 W): x is rounded
// to bf16 (nearest even, as f32_to_bf16), then y[M, N] = x_bf16 * W^T with products of two bf16
// values (exact in f32) summed in f32. On AVX512_BF16 the GEMM is vdpbf16ps (32 products per
// instruction, twice the f32 FMA's 16); elsewhere both operands widen to f32 for FMAs: the same
// products, another summation order.
//
// Speed (Zen 4, 1 thread, CPU time, median of 5 on a loaded host; f32 = the cpu backend's f32
// GEMM on the same shape): K=2048 N=2048 M=128 1.82x, K=5632 N=2048 M=128 2.00x, K=2048 N=5632
// M=128 1.96x; M=1..16 2-3.4x (half the weight bytes). The hardware ceiling is the instruction
// ratio vdpbf16ps / vfmadd231ps (kernels.peak.bf16_vs_fp32, 1.97-2.16 here): both retire one zmm
// per cycle and vdpbf16ps does twice the products, so with both GEMMs near 80% of their peaks
// ~2x is what this CPU allows.
//
// Where the ISA has vdpbf16ps the backend packs such weights into k-pair panels at upload
// (pack_bf16_pairs) and the packed outer-product tile runs them (cpu_algos_packed.h), fused over
// q/k/v and gate/up like the f32 panels (matmul_multi). Against the row-major dot tiles on Zen 5
// (2 threads, kernel bench, interleaved, 2 rounds) M = 128: K=2048 N=5632 637-697 vs 507-592
// GFLOP/s, K=5632 N=2048 644-662 vs 424-436, N=32000 548-675 vs 458-540; M = 16 1.1-1.6x; M = 1
// 5-30% faster. llama-1b 128-token prefill 500/500/409 vs 396/403/380 GFLOP/s (3 rounds).
//
// Why a flag on the weight rather than a backend option: the same model can hold both kinds of
// bf16 layers, and the choice changes the numbers (x is rounded), so it belongs with the weight,
// where ref (the oracle) sees it too. Without the flag a bf16 weight is "weight-only": x stays f32
// and the weights widen in registers (cpu_matmul.cpp).
#include <cstring>
#include <vector>

#include "cpu_ops.h"

namespace cb::kernels::cpu {
namespace {

// f32 -> bf16 bits, round to nearest even; NaN stays a (quiet) NaN. Same as kernels::f32_to_bf16,
// written inline so the compiler vectorizes the row loop.
inline uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  return static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? ((u >> 16) | 0x40u) : rounded);
}

}  // namespace

Bf16Input prepare_bf16_input(const Tensor& x) {
  const int64_t M = x.rows(), K = x.cols();
  Bf16Input in;
  in.ldx = (K + 31) / 32 * 32;  // whole 32-element steps, zero padded
  // Rows a multiple of 1 KiB apart share L1 sets (see prepare_gemv_input): one more line apart.
  if (in.ldx * 2 % 1024 == 0) in.ldx += 32;
  in.xb.assign(static_cast<size_t>(M * in.ldx), 0);
  const float* xp = x.as<const float>();
  // Threads of its own only from 4M elements per thread (see cpu_matmul_int8.cpp: a second
  // parallel region costs more than the conversion below that).
  const int64_t min_rows = std::max<int64_t>(1, (int64_t(1) << 22) / std::max<int64_t>(1, K));
  parallel_ranges(M, min_rows, 1, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m)
      for (int64_t i = 0; i < K; ++i) in.xb[size_t(m * in.ldx + i)] = to_bf16(xp[m * K + i]);
  });
  return in;
}

PackedArgs bf16_packed_args(const Bf16Input& in, int64_t M, const Weight& w, Tensor& y) {
  return dot_step_packed_args(in.xb.data(), in.ldx / 2, M, (w.k + 1) / 2, w, DType::BF16, y);
}

int64_t bf16_min_cols(int64_t M, int64_t K) { return std::max<int64_t>(1, (int64_t(1) << 17) / std::max<int64_t>(1, M * K)); }

Status matmul_bf16dot(const KernelTable& k, const Tensor& x, const Weight& w, Tensor& y) {
  const int64_t M = x.rows(), N = w.n, K = w.k;
  const Bf16Input in = prepare_bf16_input(x);
  const int64_t min_cols = bf16_min_cols(M, K);
  if (on_pair_panels(k, w)) {
    // Pair panels (the backend packed them because k.packed_bf16dot exists).
    const PackedArgs p = bf16_packed_args(in, M, w, y);
    parallel_ranges(N, min_cols, kPackedAlign, [&](int64_t n0, int64_t n1) { k.packed_bf16dot(p, n0, n1); });
    return Status::Ok();
  }
  Bf16Args a;
  a.ldx = in.ldx;
  a.xb = in.xb.data();
  a.w = w.values.as<const uint16_t>();
  a.y = y.as<float>();
  a.M = M;
  a.N = N;
  a.K = K;
  // As many bytes of x per slice as the f32 GEMV's (gemv_k_slice), so twice the columns. At
  // M = 128 on Zen 5 (interleaved A/B, 4 rounds) K = 5632: 423-452 GFLOP/s unsliced 8 x 3 tiles,
  // 462-506 sliced at 1024, 481-503 at 2048; K = 2048: 506-543 vs 536-557 vs 526-578.
  a.k_slice = 2 * gemv_k_slice();
  parallel_ranges(N, min_cols, 24, [&](int64_t n0, int64_t n1) { k.bf16dot(a, n0, n1); });
  return Status::Ok();
}

}  // namespace cb::kernels::cpu
