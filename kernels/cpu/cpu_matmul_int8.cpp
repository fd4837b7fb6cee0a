// W8A8 matmul driver: y[M, N] = x[M, K] * W[N, K]^T with W int8 per output channel and x
// quantized per token at call time (int8_scheme.h), integer products and int32 sums.
//
// Steps: quantize x into a padded int8 buffer (threads over rows), then the ISA's int8 GEMM
// (threads over output columns, as the f32 GEMV). On AVX512_VNNI the GEMM is vpdpbusd (64 u8 x
// s8 products into 16 int32 lanes per instruction). vpdpbusd needs one unsigned operand: up to 8
// rows of x, W is read as w + 128 and 128 * sum(q row) comes off each output; past 8 rows, x is
// stored as q + 128 and 128 * rowsum(W) comes off (cpu_algos_dot.h explains both). Without VNNI:
// vpmaddubsw + vpmaddwd with the sign of w moved onto x (cpu_dot_avx2.h); scalar: an int32 loop.
//
// Own kernel or oneDNN? dnnl_gemm_s8s8s32 (oneDNN 2.6, which packs W inside every call) is the
// peer the kernel benchmark runs next to this one (matmul/onednn_s8s8/..., the integer GEMM alone,
// x already quantized). Zen 4, 1 thread, CPU time on a loaded host, own W8A8 (with quantize and
// dequantize) vs oneDNN's GEMM alone vs own f32:
//   K=2048 N=2048  M=1 64 vs 65 vs 389 us | M=8 214 vs 910 vs 1495 | M=16 420 vs 1068 vs 2334
//                  M=128 3197 vs 3211 vs 11960
//   K=5632 N=2048  M=1 199 vs 281 vs 2104 | M=8 868 vs 1745 vs 4039 | M=128 7929 vs 8058 vs 30532
// so the own kernel runs at every M (at M=128 ~70% of the measured vpdpbusd peak).
#include <algorithm>
#include <string>
#include <vector>

#include "cpu_ops.h"

namespace cb::kernels::cpu {

// The int32 accumulator holds |sum q_x q_w| <= 127 * 128 * K exactly up to this K.
constexpr int64_t kW8A8MaxK = 131072;

Status matmul_w8a8(const KernelTable& k, const Tensor& x, const Weight& w, Tensor& y) {
  const int64_t M = x.rows(), N = w.n, K = w.k;
  if (K > kW8A8MaxK)
    return Status::unsupported("cpu matmul: W8A8 with K=" + std::to_string(K) + " > " + std::to_string(kW8A8MaxK) +
                               " could overflow the int32 accumulator");
  W8A8Args a;
  a.ldx = (K + 63) / 64 * 64;  // whole 64-byte steps: the GEMM reads x without tail masks
  std::vector<int8_t> q(static_cast<size_t>(M * a.ldx));
  std::vector<float> xs(static_cast<size_t>(M));
  const float* xp = x.as<const float>();
  const bool small = k.w8a8_small != nullptr && M <= k.w8a8_small_max_m;
  const int offset = small ? 0 : k.w8a8_x_offset;
  // Quantizing is ~1% of the GEMM; it gets threads of its own only from 4M elements per thread:
  // a second parallel region costs more than it saves below that, and on a shared host much
  // more (a descheduled thread stalls the region: bf16dot ran 28 vs 19 ms at M=128 here).
  const int64_t min_rows = std::max<int64_t>(1, (int64_t(1) << 22) / K);
  parallel_ranges(M, min_rows, 1, [&](int64_t m0, int64_t m1) {
    k.quantize_rows(xp, K, K, m0, m1, q.data(), a.ldx, xs.data(), offset);
  });
  std::vector<int32_t> xsum;
  if (small) {  // the few-rows kernel subtracts 128 * sum(q row)
    xsum.assign(static_cast<size_t>(M), 0);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t i = 0; i < K; ++i) xsum[size_t(m)] += q[size_t(m * a.ldx + i)];
    a.xsum = xsum.data();
  }
  a.xq = q.data();
  a.xs = xs.data();
  a.w = w.values.as<const int8_t>();
  a.ws = w.scales.as<const float>();
  a.y = y.as<float>();
  a.M = M;
  a.N = N;
  a.K = K;
  // Below ~256K multiply-adds per thread (int8 steps are 4x denser than f32 ones), one thread.
  const int64_t min_cols = std::max<int64_t>(1, (int64_t(1) << 18) / std::max<int64_t>(1, M * K));
  parallel_ranges(N, min_cols, 24, [&](int64_t n0, int64_t n1) { (small ? k.w8a8_small : k.w8a8)(a, n0, n1); });
  return Status::Ok();
}

}  // namespace cb::kernels::cpu
