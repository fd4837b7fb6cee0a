// 2:4 sparse matmul: y[m, n] = sum_g vals[n, 2g] x[m, 4g + i0] + vals[n, 2g + 1] x[m, 4g + i1]
// (layout in tensor.h). A step takes W kept values of a W row (W/2 groups, 2W input columns):
// the meta bytes become a lane index vector (lane j -> column 4(j/2) + i_{j%2} of the step), the
// 2W columns of a row of x sit in two registers, and one two-source permute (vpermt2ps on
// AVX-512) lines x up with the kept values for one FMA. So the FMAs do only the kept half of
// the multiply-adds, and W streams at K/2 values + K/4 meta bytes per row; the permute per FMA
// is the price of the irregular columns.
//
// V provides, besides the float ops: ivec, mraw (raw meta bytes), sp24_meta(p) (W/2 bytes),
// sp24_meta_n(p, groups) (fewer, padded with the valid byte 0x04), sp24_index(mraw) -> ivec,
// sp24_check(mraw, bad&) (accumulate malformed bytes), sp24_any(bad), sp24_nobad(), perm2(a, idx, b)
// (lane j = idx_j < W ? a[idx_j] : b[idx_j - W]). VScalar (W = 1) takes a plain loop instead.
//
// Meta bytes are checked in the first pass over each L2 block (the first group of rows of x),
// while they are decoded anyway: a malformed byte makes the kernel return false.
#pragma once

#include <algorithm>
#include <cstdint>

#include "cpu_kernels.h"
#include "cpu_types.h"

namespace cb::kernels::cpu {
namespace {

// W rows per tile for MR rows of x: MR*NR accumulators + NR values + NR index vectors + 2 x
// registers + a permute result within 32 (AVX-512) or 16 (AVX2) registers.
template <class V, int MR> constexpr int sp24_nr() {
  if (V::W >= 16) return MR == 1 ? 8 : MR == 2 ? 6 : 4;
  return MR == 1 ? 3 : 2;
}
template <class V> constexpr int sp24_max_rows() { return V::W >= 16 ? 4 : 2; }

template <class V, class WT, int MR, int NR, bool CHECK>
inline void sp24_tile(const float* x, int64_t ldx, int64_t K, const WT* vals, const uint8_t* meta, float* y,
                      int64_t ldy, int64_t n0, typename V::mraw& bad) {
  using vec = typename V::vec;
  using ivec = typename V::ivec;
  constexpr int W = V::W;
  const int64_t K2 = K / 2, K4 = K / 4;
  vec acc[NR][MR];
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) acc[r][m] = V::zero();
  const WT* vr[NR];
  const uint8_t* mr[NR];
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r) {
    vr[r] = vals + (n0 + r) * K2;
    mr[r] = meta + (n0 + r) * K4;
  }
  int64_t j = 0;  // kept-value index; input column 2j
  for (; j + W <= K2; j += W) {
    vec wv[NR];
    ivec iv[NR];
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) {
      __builtin_prefetch(reinterpret_cast<const char*>(vr[r] + j) + 512);
      wv[r] = V::load(vr[r] + j);
      const auto mb = V::sp24_meta(mr[r] + j / 2);
      if constexpr (CHECK) V::sp24_check(mb, bad);
      iv[r] = V::sp24_index(mb);
    }
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      const vec xa = V::keep(V::load(x + m * ldx + 2 * j)), xb = V::keep(V::load(x + m * ldx + 2 * j + W));
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) acc[r][m] = V::fma(wv[r], V::perm2(xa, iv[r], xb), acc[r][m]);
    }
  }
  if (j < K2) {  // rem kept values (even, < W) covering 2 * rem input columns
    const int rem = static_cast<int>(K2 - j);
    vec wv[NR];
    ivec iv[NR];
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) {
      wv[r] = V::load_n(vr[r] + j, rem);
      const auto mb = V::sp24_meta_n(mr[r] + j / 2, rem / 2);
      if constexpr (CHECK) V::sp24_check(mb, bad);
      iv[r] = V::sp24_index(mb);
    }
    const int na = std::min(W, 2 * rem), nb = std::max(0, 2 * rem - W);
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      const vec xa = V::load_n(x + m * ldx + 2 * j, na), xb = V::load_n(x + m * ldx + 2 * j + W, nb);
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) acc[r][m] = V::fma(wv[r], V::perm2(xa, iv[r], xb), acc[r][m]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) y[m * ldy + n0 + r] = V::reduce_add(acc[r][m]);
}

template <class V, class WT, int MR, bool CHECK>
void sp24_rows(const float* x, int64_t ldx, int64_t K, const WT* vals, const uint8_t* meta, float* y, int64_t ldy,
               int64_t n0, int64_t n1, typename V::mraw& bad) {
  constexpr int NR = sp24_nr<V, MR>();
  int64_t n = n0;
  for (; n + NR <= n1; n += NR) sp24_tile<V, WT, MR, NR, CHECK>(x, ldx, K, vals, meta, y, ldy, n, bad);
  for (; n < n1; ++n) sp24_tile<V, WT, MR, 1, CHECK>(x, ldx, K, vals, meta, y, ldy, n, bad);
}

template <class V, class WT, int MR, bool CHECK>
void sp24_rows_upto(int rows, const float* x, int64_t ldx, int64_t K, const WT* vals, const uint8_t* meta, float* y,
                    int64_t ldy, int64_t n0, int64_t n1, typename V::mraw& bad) {
  if constexpr (MR > 1) {
    if (rows < MR) return sp24_rows_upto<V, WT, MR - 1, CHECK>(rows, x, ldx, K, vals, meta, y, ldy, n0, n1, bad);
  }
  sp24_rows<V, WT, MR, CHECK>(x, ldx, K, vals, meta, y, ldy, n0, n1, bad);
}

// The W = 1 path: one group at a time.
template <class V, class WT>
bool sp24_scalar(const Sparse24Args& a, int64_t n0, int64_t n1) {
  const WT* vals = static_cast<const WT*>(a.vals);
  const int64_t K2 = a.K / 2, K4 = a.K / 4;
  bool ok = true;
  for (int64_t n = n0; n < n1; ++n) {
    for (int64_t g = 0; g < K4; ++g) {
      const unsigned b = a.meta[n * K4 + g];
      ok = ok && (b >> 4) == 0 && (b & 3u) < (b >> 2);
    }
    for (int64_t m = 0; m < a.M; ++m) {
      const float* x = a.x + m * a.ldx;
      float acc = 0.f;
      for (int64_t g = 0; g < K4; ++g) {
        const unsigned b = a.meta[n * K4 + g];
        acc += V::load(vals + n * K2 + 2 * g) * x[4 * g + (b & 3u)];
        acc += V::load(vals + n * K2 + 2 * g + 1) * x[4 * g + ((b >> 2) & 3u)];
      }
      a.y[m * a.N + n] = acc;
    }
  }
  return ok;
}

template <class V, class WT>
bool sp24_typed(const Sparse24Args& a, int64_t n0, int64_t n1) {
  if constexpr (V::W == 1) {
    return sp24_scalar<V, WT>(a, n0, n1);
  } else {
    const WT* vals = static_cast<const WT*>(a.vals);
    constexpr int kMaxRows = sp24_max_rows<V>();
    constexpr int64_t kL2Bytes = int64_t(256) << 10, kTileLcm = 24;
    const int64_t row_bytes = (a.K / 2) * int64_t(sizeof(WT)) + a.K / 4;
    const int64_t fit = kL2Bytes / std::max<int64_t>(1, row_bytes);
    const int64_t block = std::max<int64_t>(1, (fit + kTileLcm - 1) / kTileLcm) * kTileLcm;
    auto bad = V::sp24_nobad();
    for (int64_t b0 = n0; b0 < n1; b0 += block) {
      const int64_t b1 = std::min(n1, b0 + block);
      for (int64_t m0 = 0; m0 < a.M; m0 += kMaxRows) {
        const int rows = int(std::min<int64_t>(kMaxRows, a.M - m0));
        const float* x = a.x + m0 * a.ldx;
        float* y = a.y + m0 * a.N;
        if (m0 == 0)
          sp24_rows_upto<V, WT, kMaxRows, true>(rows, x, a.ldx, a.K, vals, a.meta, y, a.N, b0, b1, bad);
        else
          sp24_rows_upto<V, WT, kMaxRows, false>(rows, x, a.ldx, a.K, vals, a.meta, y, a.N, b0, b1, bad);
      }
    }
    return !V::sp24_any(bad);
  }
}

template <class V>
bool sparse24(const Sparse24Args& a, int64_t n0, int64_t n1) {
  switch (a.wdt) {
    case DType::F32: return sp24_typed<V, float>(a, n0, n1);
    case DType::F16: return sp24_typed<V, f16_t>(a, n0, n1);
    case DType::BF16: return sp24_typed<V, bf16_t>(a, n0, n1);
    default: return false;  // rejected by the backend before any kernel runs
  }
}

}  // namespace
}  // namespace cb::kernels::cpu
