// GEMM over dot-product steps: y[m, n] = sum_k x[m, k] * w[n, k] where each step multiplies KS
// consecutive elements of a row of x with KS of a row of W into a vector accumulator (vpdpbusd
// for int8, vdpbf16ps for bf16, widening FMAs elsewhere); the lanes are summed at the end. It is
// the GEMV kernel's loop (cpu_algos.h) with the multiply-add swapped for a "D" struct:
//
//   XT, WT          element types of x and W in memory
//   ST              type of a finished sum (int32_t, float)
//   acc, xv, wv     accumulator and loaded operands
//   KS              elements per step; kMaxRows the tallest tile (rows of x)
//   nr<MR>()        W rows per tile for MR rows of x (registers: MR*NR accumulators + operands)
//   zero(), load_x(p) (KS elements: rows of x are padded, so always whole), load_w(p),
//   load_w_n(p, n) (first n, rest 0), keep(xv) (pin in a register), dot(acc, xv, wv),
//   sum(acc) -> ST, sum4(a, b, c, d, ST out[4]) (four sums with one shuffle tree)
//
// Included by the cpu_isa_*.cpp files inside their target pragma region; internal linkage only.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu_kernels.h"
#include "cpu_types.h"

namespace cb::kernels::cpu {
namespace {

// Prefetch distance for W rows (see kGemvPrefetchBytes in cpu_algos.h: each step here reads 64
// bytes of every W row, as the int8 GEMV does).
constexpr int kDotPrefetchBytes = 512;

// W rows are ldw elements apart; K (<= ldw) columns are summed.
template <class D, int MR, int NR, class Epi>
inline void dot_tile(const typename D::XT* x, int64_t ldx, int64_t K, const typename D::WT* w, int64_t ldw, int64_t n0,
                     const Epi& epi) {
  using acc_t = typename D::acc;
  using wv_t = typename D::wv;
  constexpr int KS = D::KS;
  acc_t acc[NR][MR];
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) acc[r][m] = D::zero();
  const typename D::WT* wr[NR];
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r) wr[r] = w + (n0 + r) * ldw;

  int64_t k = 0;
  for (; k + KS <= K; k += KS) {
    wv_t wv[NR];
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) {
      if constexpr (KS > 1) __builtin_prefetch(reinterpret_cast<const char*>(wr[r] + k) + kDotPrefetchBytes);
      wv[r] = D::load_w(wr[r] + k);
    }
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      const auto xv = D::keep(D::load_x(x + m * ldx + k));
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) acc[r][m] = D::dot(acc[r][m], xv, wv[r]);
    }
  }
  if (k < K) {  // x is padded with zeros past K; W is not, so its loads are cut at the row end
    const int rem = static_cast<int>(K - k);
    wv_t wv[NR];
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) wv[r] = D::load_w_n(wr[r] + k, rem);
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      const auto xv = D::load_x(x + m * ldx + k);
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) acc[r][m] = D::dot(acc[r][m], xv, wv[r]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r) {
    int m = 0;
    if constexpr (MR >= 4) {
      for (; m + 4 <= MR; m += 4) {
        typename D::ST s[4];
        D::sum4(acc[r][m], acc[r][m + 1], acc[r][m + 2], acc[r][m + 3], s);
        for (int i = 0; i < 4; ++i) epi(m + i, n0 + r, s[i]);
      }
    }
    for (; m < MR; ++m) epi(m, n0 + r, D::sum(acc[r][m]));
  }
}

// MR rows of x against W rows [n0, n1).
template <class D, int MR, class Epi>
void dot_rows(const typename D::XT* x, int64_t ldx, int64_t K, const typename D::WT* w, int64_t ldw, int64_t n0,
              int64_t n1, const Epi& epi) {
  constexpr int NR = D::template nr<MR>();
  int64_t n = n0;
  for (; n + NR <= n1; n += NR) dot_tile<D, MR, NR>(x, ldx, K, w, ldw, n, epi);
  for (; n < n1; ++n) dot_tile<D, MR, 1>(x, ldx, K, w, ldw, n, epi);
}

// `rows` (1 .. MR) rows of x: picks the tile height at compile time.
template <class D, int MR, class Epi>
void dot_rows_upto(int rows, const typename D::XT* x, int64_t ldx, int64_t K, const typename D::WT* w, int64_t ldw,
                   int64_t n0, int64_t n1, const Epi& epi) {
  if constexpr (MR > 1) {
    if (rows < MR) return dot_rows_upto<D, MR - 1>(rows, x, ldx, K, w, ldw, n0, n1, epi);
  }
  dot_rows<D, MR>(x, ldx, K, w, ldw, n0, n1, epi);
}

// All M rows of x against W rows [n0, n1). W is walked in blocks that stay in L2 while every
// group of kMaxRows rows of x passes over them (so W comes from memory once); prep(b0, b1) runs
// before each block's first pass, epi(m, n, sum) stores an output.
template <class D, class Prep, class Epi>
void dot_gemm(const typename D::XT* x, int64_t ldx, int64_t M, int64_t K, const typename D::WT* w, int64_t n0,
              int64_t n1, const Prep& prep, const Epi& epi) {
  constexpr int64_t kMaxRows = D::kMaxRows;
  const int64_t block = l2_block_rows(K, sizeof(typename D::WT));
  for (int64_t b0 = n0; b0 < n1; b0 += block) {
    const int64_t b1 = std::min(n1, b0 + block);
    prep(b0, b1);
    for (int64_t m0 = 0; m0 < M; m0 += kMaxRows) {
      const auto e = [&](int64_t m, int64_t n, typename D::ST s) { epi(m0 + m, n, s); };
      dot_rows_upto<D, int(kMaxRows)>(int(std::min(kMaxRows, M - m0)), x + m0 * ldx, ldx, K, w, K, b0, b1, e);
    }
  }
}

// ---- D structs that need nothing beyond the V struct of the ISA --------------------------------

// int8 x int8 in plain integers (the scalar path). |sum| <= 127 * 128 * K fits int32 for the
// K <= 131072 the driver allows.
struct DScalarI8 {
  using XT = int8_t;
  using WT = int8_t;
  using ST = int32_t;
  using acc = int32_t;
  using xv = int32_t;
  using wv = int32_t;
  static constexpr int KS = 1;
  static constexpr int kXOffset = 0, kWOffset = 0;
  static constexpr int kMaxRows = 4;
  template <int MR> static constexpr int nr() { return 4; }
  static acc zero() { return 0; }
  static xv load_x(const XT* p) { return *p; }
  static wv load_w(const WT* p) { return *p; }
  static wv load_w_n(const WT* p, int n) { return n > 0 ? *p : 0; }
  static xv keep(xv v) { return v; }
  static acc dot(acc a, xv x, wv w) { return a + x * w; }
  static ST sum(acc a) { return a; }
  static void sum4(acc a, acc b, acc c, acc d, ST out[4]) {
    out[0] = a;
    out[1] = b;
    out[2] = c;
    out[3] = d;
  }
};

// bf16 x bf16 by widening both to f32 and FMA: the same products as vdpbf16ps (a product of two
// bf16 values is exact in f32), for ISAs without AVX512_BF16.
template <class V>
struct DWidenBf16 {
  using XT = bf16_t;
  using WT = bf16_t;
  using ST = float;
  using acc = typename V::vec;
  using xv = typename V::vec;
  using wv = typename V::vec;
  static constexpr int KS = V::W;
  static constexpr int kMaxRows = 8;
  // As the f32 GEMV (gemv_nr in cpu_algos.h).
  template <int MR> static constexpr int nr() {
    if (V::W >= 16) return MR <= 2 ? 8 : MR <= 6 ? 4 : 3;
    return MR <= 2 ? 4 : MR <= 6 ? 2 : 1;
  }
  static acc zero() { return V::zero(); }
  static xv load_x(const XT* p) { return V::load(p); }
  static wv load_w(const WT* p) { return V::load(p); }
  static wv load_w_n(const WT* p, int n) { return V::load_n(p, n); }
  static xv keep(xv v) { return V::keep(v); }
  static acc dot(acc a, xv x, wv w) { return V::fma(w, x, a); }
  static ST sum(acc a) { return V::reduce_add(a); }
  static void sum4(acc a, acc b, acc c, acc d, ST out[4]) {
    out[0] = V::reduce_add(a);
    out[1] = V::reduce_add(b);
    out[2] = V::reduce_add(c);
    out[3] = V::reduce_add(d);
  }
};

// ---- drivers' per-range entry points -----------------------------------------------------------

// W8A8 over output columns [n0, n1). vpdpbusd multiplies an unsigned by a signed byte, so one
// operand carries +128 and the products carry 128 * (sum of the other operand) extra:
//   D::kXOffset = 128: x stored as u8 = q + 128; 128 * rowsum(W) comes off per W row (row sums
//     per L2 block, while the block is being loaded anyway); for many rows of x.
//   D::kWOffset = 128: W loaded as w ^ 0x80 = w + 128 (one xor per W vector); 128 * xsum[m]
//     comes off per row of x; for few rows, where the row-sum pass over W would cost as much as
//     the products.
// The int32 arithmetic may wrap in between; the true result fits int32 (|q| <= 127,
// K <= 131072), so the modulo-2^32 difference is exact.
template <class D>
void w8a8_range(const W8A8Args& a, int64_t n0, int64_t n1) {
  const auto* x = reinterpret_cast<const typename D::XT*>(a.xq);
  std::vector<int32_t> wsum;
  int64_t blk0 = 0;
  const auto prep = [&](int64_t b0, int64_t b1) {
    blk0 = b0;
    if constexpr (D::kXOffset != 0) {
      wsum.resize(static_cast<size_t>(b1 - b0));
      for (int64_t n = b0; n < b1; ++n) wsum[size_t(n - b0)] = D::row_sum(a.w + n * a.K, a.K);
    }
  };
  const auto epi = [&](int64_t m, int64_t n, int32_t s) {
    int32_t acc = s;
    if constexpr (D::kXOffset != 0)
      acc = static_cast<int32_t>(static_cast<uint32_t>(s) -
                                 uint32_t(D::kXOffset) * static_cast<uint32_t>(wsum[size_t(n - blk0)]));
    if constexpr (D::kWOffset != 0)
      acc = static_cast<int32_t>(static_cast<uint32_t>(s) - uint32_t(D::kWOffset) * static_cast<uint32_t>(a.xsum[m]));
    a.y[m * a.N + n] = float(acc) * a.xs[m] * a.ws[n];
  };
  dot_gemm<D>(x, a.ldx, a.M, a.K, a.w, n0, n1, prep, epi);
}

// bf16 dot. Up to kMaxRows rows of x (decode) as dot_gemm. Past that as the f32 GEMV
// (gemv_typed): W in L2-sized blocks, each walked in slices of K (a.k_slice columns) so that a
// group of 6 rows of x stays in L1 across the block's tiles, with 6 x 4 tiles; y adds up the
// slices (f32 sums: the slices change only the rounding order). Unsliced 8 x 3 tiles left x of
// K = 5632 (11 KiB a row) in L2.
template <class D>
void bf16dot_range(const Bf16Args& a, int64_t n0, int64_t n1) {
  const auto* x = reinterpret_cast<const typename D::XT*>(a.xb);
  const auto* w = reinterpret_cast<const typename D::WT*>(a.w);
  if (a.M <= D::kMaxRows) {
    dot_gemm<D>(x, a.ldx, a.M, a.K, w, n0, n1, [](int64_t, int64_t) {},
                [&](int64_t m, int64_t n, float s) { a.y[m * a.N + n] = s; });
    return;
  }
  constexpr int64_t kGroup = 6;
  const int64_t block = l2_block_rows(a.K, sizeof(typename D::WT));
  // Whole dot-product steps per slice (a.ldx is padded to them, so only the last slice has a tail).
  const int64_t kc = std::max<int64_t>(D::KS, a.k_slice / D::KS * D::KS);
  for (int64_t b0 = n0; b0 < n1; b0 += block) {
    const int64_t b1 = std::min(n1, b0 + block);
    for (int64_t k0 = 0; k0 < a.K; k0 += kc) {
      const int64_t kn = std::min(kc, a.K - k0);
      for (int64_t m0 = 0; m0 < a.M; m0 += kGroup) {
        float* y = a.y + m0 * a.N;
        const auto e = [&](int64_t m, int64_t n, float s) {
          float& out = y[m * a.N + n];
          out = k0 > 0 ? out + s : s;
        };
        dot_rows_upto<D, int(kGroup)>(int(std::min(kGroup, a.M - m0)), x + m0 * a.ldx + k0, a.ldx, kn, w + k0, a.K, b0,
                                      b1, e);
      }
    }
  }
}

}  // namespace
}  // namespace cb::kernels::cpu
