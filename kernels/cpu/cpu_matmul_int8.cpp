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
//
// Where the table has packed_w8a8 (VNNI) the backend packs such weights at upload into k-quad
// panels (pack_i8_quads: one 64-byte line = 16 output rows x 4 k, vpdpbusd's signed operand, and
// each row's sum over k) and the f32 GEMM's outer-product tiles run them (cpu_algos_packed.h) at
// every M, x stored as q + 128: no horizontal sums, W in a few sequential streams. Against the
// row-major tiles above (Zen 5, 2 threads, kernel bench, alternated): 1.07-1.21x at M = 1,
// 1.27-1.69x at 16, 1.13-1.70x at 128 on the llama-1b shapes; bit-equal output.
#include <algorithm>
#include <string>
#include <vector>

#include "cpu_ops.h"

namespace cb::kernels::cpu {

// The int32 accumulator holds |sum q_x q_w| <= 127 * 128 * K exactly up to this K.
constexpr int64_t kW8A8MaxK = 131072;

W8A8Input quantize_w8a8_input(const KernelTable& k, const Tensor& x, int offset) {
  const int64_t M = x.rows(), K = x.cols();
  W8A8Input in;
  in.ldx = (K + 63) / 64 * 64;  // whole 64-byte steps: the GEMMs read x without tail masks
  in.q.resize(static_cast<size_t>(M * in.ldx));
  in.xs.resize(static_cast<size_t>(M));
  in.offset = offset;
  const float* xp = x.as<const float>();
  // Quantizing is ~1% of the GEMM; it gets threads of its own only from 4M elements per thread:
  // a second parallel region costs more than it saves below that, and on a shared host much
  // more (a descheduled thread stalls the region: bf16dot ran 28 vs 19 ms at M=128 here).
  const int64_t min_rows = std::max<int64_t>(1, (int64_t(1) << 22) / std::max<int64_t>(1, K));
  parallel_ranges(M, min_rows, 1, [&](int64_t m0, int64_t m1) {
    k.quantize_rows(xp, K, K, m0, m1, in.q.data(), in.ldx, in.xs.data(), offset);
  });
  return in;
}

PackedArgs w8a8_packed_args(const W8A8Input& in, int64_t M, const Weight& w, Tensor& y) {
  PackedArgs p = dot_step_packed_args(in.q.data(), in.ldx / 4, M, (w.k + 3) / 4, w, DType::I8, y);
  p.wsum = reinterpret_cast<const int32_t*>(static_cast<const uint8_t*>(w.packed.data) +
                                            packed_i8_quad_bytes(w.packed.shape[0], w.packed.shape[1]));
  p.xs = in.xs.data();
  p.ws = w.scales.as<const float>();
  return p;
}

// Below ~256K multiply-adds per thread (int8 steps are 4x denser than f32 ones), one thread.
int64_t w8a8_min_cols(int64_t M, int64_t K) { return std::max<int64_t>(1, (int64_t(1) << 18) / std::max<int64_t>(1, M * K)); }

Status w8a8_k_fits(int64_t K) {
  if (K > kW8A8MaxK)
    return Status::unsupported("cpu matmul: W8A8 with K=" + std::to_string(K) + " > " + std::to_string(kW8A8MaxK) +
                               " could overflow the int32 accumulator");
  return Status::Ok();
}

Status matmul_w8a8(const KernelTable& k, const Tensor& x, const Weight& w, Tensor& y) {
  const int64_t M = x.rows(), N = w.n, K = w.k;
  if (Status s = w8a8_k_fits(K); !s.ok()) return s;
  const bool panels = on_quad_panels(k, w);
  const bool small = !panels && k.w8a8_small != nullptr && M <= k.w8a8_small_max_m;
  const W8A8Input in = quantize_w8a8_input(k, x, small ? 0 : k.w8a8_x_offset);
  const int64_t min_cols = w8a8_min_cols(M, K);
  if (panels) {  // quad panels (the backend packed them because k.packed_w8a8 exists)
    const PackedArgs p = w8a8_packed_args(in, M, w, y);
    parallel_ranges(N, min_cols, kPackedAlign, [&](int64_t n0, int64_t n1) { k.packed_w8a8(p, n0, n1); });
    return Status::Ok();
  }
  W8A8Args a;
  a.ldx = in.ldx;
  std::vector<int32_t> xsum;
  if (small) {  // the few-rows kernel subtracts 128 * sum(q row)
    xsum.assign(static_cast<size_t>(M), 0);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t i = 0; i < K; ++i) xsum[size_t(m)] += in.q[size_t(m * a.ldx + i)];
    a.xsum = xsum.data();
  }
  a.xq = in.q.data();
  a.xs = in.xs.data();
  a.w = w.values.as<const int8_t>();
  a.ws = w.scales.as<const float>();
  a.y = y.as<float>();
  a.M = M;
  a.N = N;
  a.K = K;
  parallel_ranges(N, min_cols, 24, [&](int64_t n0, int64_t n1) { (small ? k.w8a8_small : k.w8a8)(a, n0, n1); });
  return Status::Ok();
}

}  // namespace cb::kernels::cpu
