// Every cpu kernel body, written once as a template over a SIMD struct V (VScalar, VAvx2, VAvx512)
// that provides: vec, W (lanes), zero/set1, load/load_n (f32, f16_t, bf16_t, int8_t -> f32 lanes),
// store/store_n, fma/add/sub/mul/div/max, reduce_add/reduce_max, exp.
//
// Included by the cpu_isa_*.cpp files inside their target pragma region, after all system headers
// (the includes below are then no-ops), so each instantiation is compiled for that ISA. Everything
// here has internal linkage: the AVX-512 copy of a helper can never stand in for the scalar one.
// No function here spawns threads; the drivers split work into ranges and call these per range.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "cpu_kernels.h"
#include "cpu_types.h"

namespace cb::kernels::cpu {
namespace {

// ---------------------------------------------------------------------------------------------
// matmul, small M: y[m, n] = sum_k x[m, k] * w[n, k] (* scale[n])
// A tile is MR rows of x against NR rows of W: each W vector is loaded (and converted to f32 in
// registers) once and used for MR FMAs, so W streams from memory exactly once per MR rows.
// ---------------------------------------------------------------------------------------------

// Rows of W per tile for MR rows of x: keep MR*NR accumulators + NR W vectors + 1 x vector
// within the 32 (AVX-512) registers; AVX2 has 16, so it takes a narrower tile. For one or two
// rows of x (decode), 8 concurrent W rows stream from DRAM ~5% faster than 4 on Zen 4.
template <class V, int MR> constexpr int gemv_nr() {
  if (V::W >= 16) return MR <= 2 ? 8 : MR <= 6 ? 4 : 3;
  return MR <= 2 ? 4 : MR <= 6 ? 2 : 1;
}

// With 4+ rows of x (or int8 W, 16 bytes per row per step) a tile streams W slowly enough that
// the hardware prefetcher falls behind; prefetching each W row 512 B ahead gains 5-8% at M = 8
// and ~10% for int8 at M = 1 (larger distances lose).
constexpr int kGemvPrefetchBytes = 512;

template <class V>
concept HasReduceAdd4 = requires(typename V::vec v, const float* s, float* o) { V::reduce_add4(v, v, v, v, s, o, true); };

// One sum in the order reduce_add4 adds lanes: a W row must give the same bits whether it falls in
// a 4-row tile or in a single-row tail (where a thread's or a matmul_multi part's range ends), so
// matmul_multi equals one matmul per weight bit for bit.
template <class V>
inline float reduce_like_tiles(typename V::vec a) {
  if constexpr (HasReduceAdd4<V>) {
    float out[4];
    V::reduce_add4(a, V::zero(), V::zero(), V::zero(), nullptr, out, false);
    return out[0];
  } else {
    return V::reduce_add(a);
  }
}

// W rows are ldw elements apart; K (<= ldw) columns are summed. With `accumulate` the tile adds
// to y (a later slice of K) instead of overwriting it. pf: 0 prefetches each W row
// kGemvPrefetchBytes ahead (for MR >= 4 or int8 W), > 0 prefetches the element pf past each load
// instead (the next slice a later pass will read), < 0 prefetches nothing.
template <class V, class WT, int MR, int NR>
inline void gemv_tile(const float* x, int64_t ldx, int64_t K, const WT* w, int64_t ldw, const float* scales, float* y,
                      int64_t ldy, int64_t n0, bool accumulate, int64_t pf = 0) {
  using vec = typename V::vec;
  constexpr int W = V::W;
  vec acc[NR][MR];
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) acc[r][m] = V::zero();
  const WT* wr[NR];
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r) wr[r] = w + (n0 + r) * ldw;

  int64_t k = 0;
  for (; k + W <= K; k += W) {
    vec wv[NR];
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) {
      if constexpr (V::W > 1) {
        if (pf > 0) {
          __builtin_prefetch(wr[r] + k + pf);
        } else if constexpr (MR >= 4 || sizeof(WT) == 1) {
          if (pf == 0) __builtin_prefetch(reinterpret_cast<const char*>(wr[r] + k) + kGemvPrefetchBytes);
        }
      }
      wv[r] = V::load(wr[r] + k);
    }
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      const vec xv = V::keep(V::load(x + m * ldx + k));
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) acc[r][m] = V::fma(wv[r], xv, acc[r][m]);
    }
  }
  if (k < K) {
    const int rem = static_cast<int>(K - k);
    vec wv[NR];
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) wv[r] = V::load_n(wr[r] + k, rem);
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      const vec xv = V::load_n(x + m * ldx + k, rem);
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) acc[r][m] = V::fma(wv[r], xv, acc[r][m]);
    }
  }
  if constexpr (HasReduceAdd4<V> && NR % 4 == 0) {
    // y[m, n0 .. n0 + NR) is contiguous: four W rows' sums go out as one 4-wide store.
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
      for (int r = 0; r < NR; r += 4)
        V::reduce_add4(acc[r][m], acc[r + 1][m], acc[r + 2][m], acc[r + 3][m], scales ? scales + n0 + r : nullptr,
                       y + m * ldy + n0 + r, accumulate);
  } else {
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) {
      const float s = scales ? scales[n0 + r] : 1.f;
#pragma GCC unroll 8
      for (int m = 0; m < MR; ++m) {
        float& out = y[m * ldy + n0 + r];
        const float v = reduce_like_tiles<V>(acc[r][m]) * s;
        out = accumulate ? out + v : v;
      }
    }
  }
}

// MR rows of x (at x, row stride ldx) against W rows [n0, n1).
template <class V, class WT, int MR>
void gemv_rows(const float* x, int64_t ldx, int64_t K, const WT* w, int64_t ldw, const float* scales, float* y,
               int64_t ldy, int64_t n0, int64_t n1, bool accumulate, int64_t pf = 0) {
  constexpr int NR = gemv_nr<V, MR>();
  int64_t n = n0;
  for (; n + NR <= n1; n += NR) gemv_tile<V, WT, MR, NR>(x, ldx, K, w, ldw, scales, y, ldy, n, accumulate, pf);
  for (; n < n1; ++n) gemv_tile<V, WT, MR, 1>(x, ldx, K, w, ldw, scales, y, ldy, n, accumulate, pf);
}

// bf16 W at up to 8 rows of x (decode), on SIMD levels with load_bf16_pairs: each W line is
// split into its even and odd elements in place, against the driver's copy of x permuted to match
// (GemvArgs::x_bf16_pairs), so the stream needs no widening shuffle per 16 values. The columns
// past the last whole block of 32 go through gemv_tile, added on.
template <class V>
concept HasBf16Pairs = requires { V::kBf16Pairs; };

// Each 64-byte line of W takes four vector ops here (split, mask, two FMAs) against one for
// vdpbf16ps: the FMAs waiting on a line fill the scheduler long before the load queue, so the
// hardware keeps fewer lines in flight. A software prefetch 1 KiB ahead in every row decouples
// the stream: llama-1b bf16 shapes at M = 1 from DRAM, 2 threads, Zen 5, passes interleaved in
// one process (median of 12): none 44.9-46.9 GB/s, 512 B 48.5-48.8, 1 KiB 49.5-50.9, 1.5 KiB 51.3,
// 2 KiB 49.1; the bf16-dot kernel on the same weights 55.5-56.9.
constexpr int kBf16PairsPrefetchBytes = 1024;

template <class V, int MR, int NR>
inline void gemv_tile_bf16_pairs(const float* xp, int64_t K32, const bf16_t* w, int64_t ldw, float* y, int64_t ldy,
                                 int64_t n0) {
  using vec = typename V::vec;
  vec acc[NR][MR];
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) acc[r][m] = V::zero();
  const bf16_t* wr[NR];
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r) wr[r] = w + (n0 + r) * ldw;
  for (int64_t k = 0; k < K32; k += 32) {
    vec xe[MR], xo[MR];
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      xe[m] = V::keep(V::load(xp + m * K32 + k));
      xo[m] = V::keep(V::load(xp + m * K32 + k + 16));
    }
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) {
      vec even, odd;
      __builtin_prefetch(reinterpret_cast<const char*>(wr[r] + k) + kBf16PairsPrefetchBytes);
      V::load_bf16_pairs(wr[r] + k, even, odd);
#pragma GCC unroll 8
      for (int m = 0; m < MR; ++m) acc[r][m] = V::fma(odd, xo[m], V::fma(even, xe[m], acc[r][m]));
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) y[m * ldy + n0 + r] = V::reduce_add(acc[r][m]);
}

template <class V, int MR>
void gemv_rows_bf16_pairs(const GemvArgs& a, const float* xp, int64_t K32, int64_t n0, int64_t n1) {
  constexpr int NR = gemv_nr<V, MR>();
  const bf16_t* w = static_cast<const bf16_t*>(a.w);
  const int64_t tail = a.K - K32;
  auto rows = [&]<int R>(int64_t n) {
    gemv_tile_bf16_pairs<V, MR, R>(xp, K32, w, a.K, a.y, a.N, n);
    if (tail > 0) gemv_tile<V, bf16_t, MR, R>(a.x + K32, a.ldx, tail, w + K32, a.K, nullptr, a.y, a.N, n, true);
  };
  int64_t n = n0;
  for (; n + NR <= n1; n += NR) rows.template operator()<NR>(n);
  for (; n < n1; ++n) rows.template operator()<1>(n);
}

template <class V>
void gemv_bf16_pairs(const GemvArgs& a, int64_t n0, int64_t n1) {
  const int64_t K32 = a.K / 32 * 32;
  const float* xp = a.x_bf16_pairs;
  switch (a.M) {
    case 1: gemv_rows_bf16_pairs<V, 1>(a, xp, K32, n0, n1); break;
    case 2: gemv_rows_bf16_pairs<V, 2>(a, xp, K32, n0, n1); break;
    case 3: gemv_rows_bf16_pairs<V, 3>(a, xp, K32, n0, n1); break;
    case 4: gemv_rows_bf16_pairs<V, 4>(a, xp, K32, n0, n1); break;
    case 5: gemv_rows_bf16_pairs<V, 5>(a, xp, K32, n0, n1); break;
    case 6: gemv_rows_bf16_pairs<V, 6>(a, xp, K32, n0, n1); break;
    case 7: gemv_rows_bf16_pairs<V, 7>(a, xp, K32, n0, n1); break;
    default: gemv_rows_bf16_pairs<V, 8>(a, xp, K32, n0, n1); break;
  }
}

template <class V, class WT>
void gemv_typed(const GemvArgs& a, int64_t n0, int64_t n1) {
  constexpr int64_t kMaxRows = 8;
  if constexpr (std::is_same_v<WT, bf16_t> && HasBf16Pairs<V>) {
    if (a.x_bf16_pairs != nullptr && a.M <= kMaxRows) return gemv_bf16_pairs<V>(a, n0, n1);
  }
  const WT* w = static_cast<const WT*>(a.w);
  // With more than 8 rows of x, walk W in blocks that stay in L2 (l2_block_rows) while every
  // group of rows passes over them, so W still comes from memory once.
  const bool many = a.M > kMaxRows;
  const int64_t block = !many ? (n1 - n0) : l2_block_rows(a.K, sizeof(WT));
  // ... and in slices of K: 8 rows of x over a whole K = 2048 (64 KiB) spill L1, so every FMA
  // waited on L2 for x as well as W. Slices of a row group that fit L1 (a.k_slice) stay there across
  // the block's tiles; y adds up the slices. M = 128, K = 2048 and 5632 on Zen 5 (48 KiB L1),
  // GFLOP/s of a 463 peak: whole K 236 | 512: 290 | 1024: 305-317 | 1536: 248 (an earlier
  // version of this kernel). With the 6 x 4 tiles 1024 measured 15-29% slower than 512 (M = 16 and 128,
  // every llama-1b shape, interleaved A/B, 2026-12-04), so gemv_k_slice() keeps 512 on Zen 5.
  const int64_t kc = many ? std::max<int64_t>(16, a.k_slice) : a.K;
  // Past 8 rows, groups of 6 rows of x against 4 rows of W (24 accumulators, 10 loads per 24
  // FMAs) beat 8 x 3 (11 loads): llama-1b shapes at M = 16 and 128 on Zen 5, +5-30% (K = 5632
  // most), interleaved runs.
  const int64_t group = many ? 6 : kMaxRows;
  for (int64_t b0 = n0; b0 < n1; b0 += block) {
    const int64_t b1 = std::min(n1, b0 + block);
    for (int64_t k0 = 0; k0 < a.K; k0 += kc) {
      const int64_t kn = std::min(kc, a.K - k0);
      const bool acc = k0 > 0;
      for (int64_t m0 = 0; m0 < a.M; m0 += group) {
        const float* x = a.x + m0 * a.ldx + k0;
        float* y = a.y + m0 * a.N;
        const WT* wk = w + k0;
        // The first group streams this slice from memory while it computes, and the other groups
        // find it in cache: the second group fetches the next slice (or the next block's first) so
        // that the memory stream overlaps their work too, instead of stalling the next first pass.
        int64_t pf = 0;
        if (many && m0 > 0) pf = m0 != group ? -1 : k0 + kc < a.K ? kc : b1 < n1 ? block * a.K - k0 : -1;
        switch (std::min(group, a.M - m0)) {
          case 1: gemv_rows<V, WT, 1>(x, a.ldx, kn, wk, a.K, a.scales, y, a.N, b0, b1, acc, pf); break;
          case 2: gemv_rows<V, WT, 2>(x, a.ldx, kn, wk, a.K, a.scales, y, a.N, b0, b1, acc, pf); break;
          case 3: gemv_rows<V, WT, 3>(x, a.ldx, kn, wk, a.K, a.scales, y, a.N, b0, b1, acc, pf); break;
          case 4: gemv_rows<V, WT, 4>(x, a.ldx, kn, wk, a.K, a.scales, y, a.N, b0, b1, acc, pf); break;
          case 5: gemv_rows<V, WT, 5>(x, a.ldx, kn, wk, a.K, a.scales, y, a.N, b0, b1, acc, pf); break;
          case 6: gemv_rows<V, WT, 6>(x, a.ldx, kn, wk, a.K, a.scales, y, a.N, b0, b1, acc, pf); break;
          case 7: gemv_rows<V, WT, 7>(x, a.ldx, kn, wk, a.K, a.scales, y, a.N, b0, b1, acc, pf); break;
          default: gemv_rows<V, WT, 8>(x, a.ldx, kn, wk, a.K, a.scales, y, a.N, b0, b1, acc, pf); break;
        }
      }
    }
  }
}

template <class V>
void gemv(const GemvArgs& a, int64_t n0, int64_t n1) {
  switch (a.wdt) {
    case DType::F32: gemv_typed<V, float>(a, n0, n1); break;
    case DType::F16: gemv_typed<V, f16_t>(a, n0, n1); break;
    case DType::BF16: gemv_typed<V, bf16_t>(a, n0, n1); break;
    case DType::I8: gemv_typed<V, int8_t>(a, n0, n1); break;
    case DType::I32:
    case DType::U8:
    case DType::I64: break;  // rejected by the backend before any kernel runs
  }
}

// ---------------------------------------------------------------------------------------------
// Weight rows to f32 (optionally times a per-row scale).
// ---------------------------------------------------------------------------------------------
template <class V, class WT>
void convert_rows_typed(const WT* w, const float* scales, int64_t row0, int64_t rows, int64_t K, float* out) {
  constexpr int W = V::W;
  for (int64_t r = 0; r < rows; ++r) {
    const WT* src = w + (row0 + r) * K;
    float* dst = out + r * K;
    const auto s = V::set1(scales ? scales[row0 + r] : 1.f);
    int64_t k = 0;
    for (; k + W <= K; k += W) V::store(dst + k, V::mul(V::load(src + k), s));
    if (k < K) V::store_n(dst + k, V::mul(V::load_n(src + k, int(K - k)), s), int(K - k));
  }
}

template <class V>
void convert_rows(const void* w, DType wdt, const float* scales, int64_t row0, int64_t rows, int64_t K, float* out) {
  switch (wdt) {
    case DType::F32: convert_rows_typed<V>(static_cast<const float*>(w), scales, row0, rows, K, out); break;
    case DType::F16: convert_rows_typed<V>(static_cast<const f16_t*>(w), scales, row0, rows, K, out); break;
    case DType::BF16: convert_rows_typed<V>(static_cast<const bf16_t*>(w), scales, row0, rows, K, out); break;
    case DType::I8: convert_rows_typed<V>(static_cast<const int8_t*>(w), scales, row0, rows, K, out); break;
    case DType::I32:
    case DType::U8:
    case DType::I64: break;
  }
}

// ---------------------------------------------------------------------------------------------
// Attention, flash style: for one query row and G query heads sharing a kv head, walk the keys
// 0..q_pos0+m in tiles of kAttnTile, keeping a running max and sum per head (online softmax) and
// an unnormalized output accumulator; each K and V row is loaded once for all G heads.
// ---------------------------------------------------------------------------------------------
template <class V> inline constexpr int kVecRegs = V::W == 16 ? 32 : 16;
template <class V>
concept HasReduceAdd16 = requires(const typename V::vec* v) { V::reduce_add16(v); };

// One head's scores of 16 keys: out[i] = q . k_i, head_dim being DV vectors. Kept out of line:
// inlined into attention_item (8 heads unrolled in a 6000-instruction function) GCC kept q, the
// partial sums and the key rows on the stack, loading and storing around every FMA. Out of line
// (Zen 5, alternating processes, old / new time): kernel bench decode 2048 keys 1.30-1.37,
// 8 x 4K paged 1.18-1.21, contiguous 1.71-1.77, prefill 1.10; cb_attention_study warm 1.25-1.3
// (16 x 144 KV-cold, memory-bound at 2 threads: about even); engine batch-16 decode step
// attention 4.6-4.9 -> 4.0-4.1 ms.
template <class V, int DV>
[[gnu::noinline]] void attention_scores16_head(const float* q, const float* const* kp, float* out) {
  using vec = typename V::vec;
  constexpr int W = V::W, B = 16;
  vec qv[DV];
  for (int v = 0; v < DV; ++v) qv[v] = V::load(q + v * W);
  vec part[B];
#pragma GCC unroll 16
  for (int i = 0; i < B; ++i) {
    const float* k = kp[i];
    part[i] = V::mul(qv[0], V::load(k));
#pragma GCC unroll 8
    for (int v = 1; v < DV; ++v) part[i] = V::fma(qv[v], V::load(k + v * W), part[i]);
  }
  V::store(out, V::reduce_add16(part));
}

// The scores of keys [0, 16 * floor(nt / 16)) of a tile for all G heads: p[g][j] = qs[g] . k_j,
// head_dim being DV vectors. Per head, 16 keys' partial-sum vectors go through one reduce_add16
// instead of 16 horizontal sums of ~8 shuffles and adds each; the head's query stays in registers
// and each key's row is reread from L1 per head. The rows kAttnBlockPrefetch keys ahead (below
// `fetchable`) are prefetched, spread over the heads. Returns the keys scored.
template <class V, int DV, int G, class Prefetch>
int attention_scores16(const float* qs, const float* const* kp, int nt, int fetchable, float (*p)[kAttnTile],
                       const Prefetch& prefetch_row) {
  constexpr int W = V::W, D = DV * W, B = 16;
  static_assert(kAttnTile % B == 0);
  int j0 = 0;
  for (; j0 + B <= nt; j0 += B) {
    for (int g = 0; g < G; ++g) {
      for (int i = g * B / G; i < (g + 1) * B / G; ++i)
        if (j0 + i + kAttnBlockPrefetch < fetchable) prefetch_row(j0 + i + kAttnBlockPrefetch);
      attention_scores16_head<V, DV>(qs + g * D, kp + j0, &p[g][j0]);
    }
  }
  return j0;
}

template <class V, int G>
void attention_item(const AttnArgs& a, int64_t item, float* scratch) {
  using vec = typename V::vec;
  constexpr int W = V::W;
  constexpr int T = kAttnTile;
  const int D = a.head_dim;
  const int group = a.n_heads / a.n_kv_heads, chunks = group / G;
  const int64_t m = item / (int64_t(a.n_kv_heads) * chunks);
  const int rem = static_cast<int>(item % (int64_t(a.n_kv_heads) * chunks));
  const int kvh = rem / chunks, h0 = kvh * group + (rem % chunks) * G;
  const int64_t qcols = int64_t(a.n_heads) * D, pool_row = int64_t(a.n_kv_heads) * D;

  float* qs = scratch;          // [G][D] queries times scale
  float* acc = scratch + G * D;  // [G][D] unnormalized outputs
  for (int g = 0; g < G; ++g)
    for (int d = 0; d < D; ++d) {
      qs[g * D + d] = a.q[m * qcols + int64_t(h0 + g) * D + d] * a.scale;
      acc[g * D + d] = 0.f;
    }
  float run_max[G], run_sum[G];
  for (int g = 0; g < G; ++g) {
    run_max[g] = -std::numeric_limits<float>::infinity();
    run_sum[g] = 0.f;
  }

  const int64_t n_keys = a.q_pos0 + m + 1;  // causal: keys 0 .. q_pos0 + m
  // K and V rows are fetched kAttnPrefetch keys ahead of the scores loop, one key per key scored:
  // blocks lie anywhere in the pool, where the hardware prefetchers (which follow one stream)
  // cannot guess them, and a whole tile's prefetches issued at once overflow the core's miss
  // buffers. So the row pointers cover the tile and the next kAttnPrefetch keys.
  // 16-key blocks (attention_scores16) fetch a whole block ahead: the block reads its 16 rows at
  // once, so rows only PD ahead would still be in flight for half of it (8 sequences at 4K:
  // 0.85-0.9x of the per-key path with PD; 32 or 48 keys ahead, or prefetcht1, no better than 16).
  // These blocks with the two-vector P.V loop below, against the per-key scores and one-vector
  // loop, alternating processes of cb_kernel_bench (Zen 5, 2 threads), old / new time:
  // decode at 512 and 2048 keys 1.06-1.25, 8 x 4K paged 0.9-1.15, contiguous 1.17-1.25, prefill
  // 1.1; llama-1b batch-16 decode step (refengine bench --op-profile) attention 6.3 -> 5.2 ms.
  constexpr int PD = kAttnPrefetch, PB = kAttnBlockPrefetch;
  bool blocks = false;
  if constexpr (HasReduceAdd16<V>) blocks = D == 4 * W || D == 8 * W;
  const int PA = blocks ? PB : PD;
  const float* kp[T + std::max(PD, PB)];
  const float* vp[T + std::max(PD, PB)];
  float p[G][T];
  // Key t's row: block table[t / block_size], slot t % block_size, walked incrementally over the
  // keys in order (no division per key); (blk, slot) is the first key past the tile.
  int64_t blk = 0, slot = 0;
  auto row_of = [&](int64_t b, int64_t sl) { return (int64_t(a.block_table[b]) * a.block_size + sl) * pool_row + int64_t(kvh) * D; };
  auto prefetch_row = [&](int j) {
    for (int d = 0; d < D; d += 16) {
      __builtin_prefetch(kp[j] + d);
      __builtin_prefetch(vp[j] + d);
    }
  };
  for (int64_t t0 = 0; t0 < n_keys; t0 += T) {
    const int nt = static_cast<int>(std::min<int64_t>(T, n_keys - t0));
    for (int j = 0; j < nt; ++j) {
      const int64_t off = row_of(blk, slot);
      kp[j] = a.k_pool + off;
      vp[j] = a.v_pool + off;
      if (++slot == a.block_size) slot = 0, ++blk;
    }
    const int ahead = static_cast<int>(std::min<int64_t>(PA, n_keys - t0 - nt));
    for (int64_t j = 0, b2 = blk, s2 = slot; j < ahead; ++j) {
      const int64_t off = row_of(b2, s2);
      kp[nt + j] = a.k_pool + off;
      vp[nt + j] = a.v_pool + off;
      if (++s2 == a.block_size) s2 = 0, ++b2;
    }
    if (t0 == 0)  // the first keys: nothing was fetched ahead of them
      for (int j = 0; j < std::min(PA, nt); ++j) prefetch_row(j);
    // Scores s = (q * scale) . k for the tile: 16 keys at a time where the ISA has reduce_add16,
    // the rest one key at a time.
    int j = 0;
    if constexpr (HasReduceAdd16<V>)
      if (blocks) {
        if (D == 4 * W) j = attention_scores16<V, 4, G>(qs, kp, nt, nt + ahead, p, prefetch_row);
        else j = attention_scores16<V, 8, G>(qs, kp, nt, nt + ahead, p, prefetch_row);
      }
    for (; j < nt; ++j) {
      if (j + PD < nt + ahead) prefetch_row(j + PD);
      vec s[G];
#pragma GCC unroll 8
      for (int g = 0; g < G; ++g) s[g] = V::zero();
      int d = 0;
      for (; d + W <= D; d += W) {
        const vec kv = V::load(kp[j] + d);
#pragma GCC unroll 8
        for (int g = 0; g < G; ++g) s[g] = V::fma(V::load(qs + g * D + d), kv, s[g]);
      }
      if (d < D) {
        const vec kv = V::load_n(kp[j] + d, D - d);
#pragma GCC unroll 8
        for (int g = 0; g < G; ++g) s[g] = V::fma(V::load_n(qs + g * D + d, D - d), kv, s[g]);
      }
#pragma GCC unroll 8
      for (int g = 0; g < G; ++g) p[g][j] = V::reduce_add(s[g]);
    }
    // Online softmax: new running max, rescale of the old sum/accumulator, p = e^(s - max).
    float corr[G];
    for (int g = 0; g < G; ++g) {
      // The tile's max a vector at a time: the scalar chain of dependent max was ~10% of a
      // decode call (16 sequences at 144 keys, in-process A/B: 1.07-1.10x; 8 at 4K: 1.08-1.10x).
      int jm = 0;
      vec vmax = V::set1(p[g][0]);
      for (; jm + W <= nt; jm += W) vmax = V::max(vmax, V::load(&p[g][jm]));
      float tmax = V::reduce_max(vmax);
      for (; jm < nt; ++jm) tmax = std::max(tmax, p[g][jm]);
      const float new_max = std::max(run_max[g], tmax);
      corr[g] = std::exp(run_max[g] - new_max);  // 0 on the first tile (run_max = -inf)
      run_max[g] = new_max;
      const vec mx = V::set1(new_max);
      vec sum = V::zero();
      int j = 0;
      for (; j + W <= nt; j += W) {
        const vec e = V::exp(V::sub(V::load(&p[g][j]), mx));
        V::store(&p[g][j], e);
        sum = V::add(sum, e);
      }
      float tail = 0.f;
      for (; j < nt; ++j) tail += (p[g][j] = std::exp(p[g][j] - new_max));
      run_sum[g] = run_sum[g] * corr[g] + V::reduce_add(sum) + tail;
    }
    // acc = acc * corr + sum_j p_j v_j, one vector of head_dim at a time held in registers.
    // Two vectors at a time where the registers hold 2G accumulators: with one, each key's G FMAs
    // wait on the previous key's (FMA latency), with two the FMA ports set the pace.
    int d0 = 0;
    if constexpr (2 * G + 3 <= kVecRegs<V>)
      for (; d0 + 2 * W <= D; d0 += 2 * W) {
        vec o[G][2];
#pragma GCC unroll 8
        for (int g = 0; g < G; ++g) {
          o[g][0] = V::mul(V::load(acc + g * D + d0), V::set1(corr[g]));
          o[g][1] = V::mul(V::load(acc + g * D + d0 + W), V::set1(corr[g]));
        }
        for (int j = 0; j < nt; ++j) {
          const vec v0 = V::load(vp[j] + d0), v1 = V::load(vp[j] + d0 + W);
#pragma GCC unroll 8
          for (int g = 0; g < G; ++g) {
            const vec pj = V::set1(p[g][j]);
            o[g][0] = V::fma(pj, v0, o[g][0]);
            o[g][1] = V::fma(pj, v1, o[g][1]);
          }
        }
#pragma GCC unroll 8
        for (int g = 0; g < G; ++g) {
          V::store(acc + g * D + d0, o[g][0]);
          V::store(acc + g * D + d0 + W, o[g][1]);
        }
      }
    for (int d = d0; d < D; d += W) {
      const int n = std::min(W, D - d);
      vec o[G];
#pragma GCC unroll 8
      for (int g = 0; g < G; ++g) o[g] = V::mul(V::load_n(acc + g * D + d, n), V::set1(corr[g]));
      if (n == W) {
        for (int j = 0; j < nt; ++j) {
          const vec vv = V::load(vp[j] + d);
#pragma GCC unroll 8
          for (int g = 0; g < G; ++g) o[g] = V::fma(V::set1(p[g][j]), vv, o[g]);
        }
      } else {
        for (int j = 0; j < nt; ++j) {
          const vec vv = V::load_n(vp[j] + d, n);
#pragma GCC unroll 8
          for (int g = 0; g < G; ++g) o[g] = V::fma(V::set1(p[g][j]), vv, o[g]);
        }
      }
#pragma GCC unroll 8
      for (int g = 0; g < G; ++g) V::store_n(acc + g * D + d, o[g], n);
    }
  }
  for (int g = 0; g < G; ++g) {
    const float inv = 1.f / run_sum[g];
    float* o = a.out + m * qcols + int64_t(h0 + g) * D;
    for (int d = 0; d < D; ++d) o[d] = acc[g * D + d] * inv;
  }
}

template <class V>
void attention(const AttnArgs& a, int64_t i0, int64_t i1, float* scratch) {
  for (int64_t i = i0; i < i1; ++i) {
    switch (a.heads_per_item) {
      case 1: attention_item<V, 1>(a, i, scratch); break;
      case 2: attention_item<V, 2>(a, i, scratch); break;
      case 3: attention_item<V, 3>(a, i, scratch); break;
      case 4: attention_item<V, 4>(a, i, scratch); break;
      case 5: attention_item<V, 5>(a, i, scratch); break;
      case 6: attention_item<V, 6>(a, i, scratch); break;
      case 7: attention_item<V, 7>(a, i, scratch); break;
      default: attention_item<V, 8>(a, i, scratch); break;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Row and element-wise ops.
// ---------------------------------------------------------------------------------------------
// Long row sums are added up in float over chunks of this many elements and the chunk sums in
// double, so the error does not grow with the row length (32K-wide softmax rows, scalar path).
constexpr int64_t kSumChunk = 256;

template <class V>
double sumsq(const float* x, int64_t n) {
  constexpr int W = V::W;
  double total = 0;
  for (int64_t c0 = 0; c0 < n; c0 += kSumChunk) {
    const int64_t c1 = std::min(n, c0 + kSumChunk);
    auto s0 = V::zero(), s1 = V::zero();
    int64_t i = c0;
    for (; i + 2 * W <= c1; i += 2 * W) {
      const auto a = V::load(x + i), b = V::load(x + i + W);
      s0 = V::fma(a, a, s0);
      s1 = V::fma(b, b, s1);
    }
    for (; i < c1; i += W) {
      const auto a = V::load_n(x + i, int(std::min<int64_t>(W, c1 - i)));
      s0 = V::fma(a, a, s0);
    }
    total += V::reduce_add(V::add(s0, s1));
  }
  return total;
}

template <class V, class WT>
void scale_mul_typed(const float* x, float s, const WT* w, float* y, int64_t n) {
  constexpr int W = V::W;
  const auto vs = V::set1(s);
  int64_t i = 0;
  for (; i + W <= n; i += W) V::store(y + i, V::mul(V::mul(V::load(x + i), vs), V::load(w + i)));
  if (i < n) {
    const int r = int(n - i);
    V::store_n(y + i, V::mul(V::mul(V::load_n(x + i, r), vs), V::load_n(w + i, r)), r);
  }
}

template <class V>
void scale_mul(const float* x, float s, const void* w, DType wdt, float* y, int64_t n) {
  switch (wdt) {
    case DType::F32: scale_mul_typed<V>(x, s, static_cast<const float*>(w), y, n); break;
    case DType::F16: scale_mul_typed<V>(x, s, static_cast<const f16_t*>(w), y, n); break;
    case DType::BF16: scale_mul_typed<V>(x, s, static_cast<const bf16_t*>(w), y, n); break;
    default: break;
  }
}

template <class V>
void rope_row(float* x, const float* cs, const float* sn, int n_heads, int head_dim) {
  constexpr int W = V::W;
  const int half = head_dim / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* a = x + int64_t(h) * head_dim;
    float* b = a + half;
    for (int i = 0; i < half; i += W) {
      const int n = std::min(W, half - i);
      const auto va = V::load_n(a + i, n), vb = V::load_n(b + i, n);
      const auto c = V::load_n(cs + i, n), s = V::load_n(sn + i, n);
      V::store_n(a + i, V::sub(V::mul(va, c), V::mul(vb, s)), n);
      V::store_n(b + i, V::fma(va, s, V::mul(vb, c)), n);
    }
  }
}

template <class V>
void silu_mul(const float* g, const float* u, float* out, int64_t n) {
  constexpr int W = V::W;
  const auto one = V::set1(1.f), zero = V::zero();
  for (int64_t i = 0; i < n; i += W) {
    const int r = int(std::min<int64_t>(W, n - i));
    const auto vg = V::load_n(g + i, r);
    const auto e = V::exp(V::sub(zero, vg));
    V::store_n(out + i, V::mul(V::div(vg, V::add(one, e)), V::load_n(u + i, r)), r);
  }
}

template <class V>
void softmax_row(const float* x, float* y, int64_t n) {
  constexpr int W = V::W;
  if (n <= 0) return;
  auto vmax = V::set1(-std::numeric_limits<float>::infinity());
  int64_t i = 0;
  for (; i + W <= n; i += W) vmax = V::max(vmax, V::load(x + i));
  float mx = V::reduce_max(vmax);
  for (; i < n; ++i) mx = std::max(mx, x[i]);
  const auto vm = V::set1(mx);
  double sum = 0;
  for (int64_t c0 = 0; c0 < n; c0 += kSumChunk) {
    const int64_t c1 = std::min(n, c0 + kSumChunk);
    auto vsum = V::zero();
    float tail = 0.f;
    i = c0;
    for (; i + W <= c1; i += W) {
      const auto e = V::exp(V::sub(V::load(x + i), vm));
      V::store(y + i, e);
      vsum = V::add(vsum, e);
    }
    for (; i < c1; ++i) tail += (y[i] = std::exp(x[i] - mx));
    sum += double(V::reduce_add(vsum)) + tail;
  }
  const auto inv = V::set1(static_cast<float>(1.0 / sum));
  for (i = 0; i < n; i += W) {
    const int r = int(std::min<int64_t>(W, n - i));
    V::store_n(y + i, V::mul(V::load_n(y + i, r), inv), r);
  }
}

template <class V>
void add(const float* a, const float* b, float* out, int64_t n) {
  constexpr int W = V::W;
  int64_t i = 0;
  for (; i + W <= n; i += W) V::store(out + i, V::add(V::load(a + i), V::load(b + i)));
  if (i < n) {
    const int r = int(n - i);
    V::store_n(out + i, V::add(V::load_n(a + i, r), V::load_n(b + i, r)), r);
  }
}

// ---------------------------------------------------------------------------------------------
// Per-token int8 quantization of activations (the scheme of int8_scheme.h, bit for bit: the same
// IEEE division v / scale and round-half-to-even, which is what std::nearbyint does by default).
// ---------------------------------------------------------------------------------------------
template <class V>
void quantize_rows(const float* x, int64_t ldx, int64_t K, int64_t m0, int64_t m1, int8_t* q, int64_t ldq,
                   float* scales, int offset) {
  constexpr int W = V::W;
  for (int64_t m = m0; m < m1; ++m) {
    const float* xr = x + m * ldx;
    int8_t* qr = q + m * ldq;
    // amax of |x|, and v * 0 summed: 0 while every value is finite, NaN once one is not.
    auto amax = V::zero(), nonfinite = V::zero();
    for (int64_t k = 0; k < K; k += W) {
      const auto v = V::load_n(xr + k, int(std::min<int64_t>(W, K - k)));
      amax = V::max(amax, V::abs(v));
      nonfinite = V::fma(v, V::zero(), nonfinite);
    }
    if (!(V::reduce_add(nonfinite) == 0.f)) {
      scales[m] = std::numeric_limits<float>::quiet_NaN();
      std::memset(qr, offset, static_cast<size_t>(ldq));
      continue;
    }
    const float a = V::reduce_max(amax);
    const float scale = a > 0.f ? a / 127.f : 1.f;
    scales[m] = scale;
    const auto vs = V::set1(scale), lo = V::set1(-127.f), hi = V::set1(127.f);
    for (int64_t k = 0; k < K; k += W) {
      const int n = int(std::min<int64_t>(W, K - k));
      V::store_i8(qr + k, V::min(hi, V::max(lo, V::div(V::load_n(xr + k, n), vs))), n);
    }
    if (offset != 0)
      for (int64_t k = 0; k < K; ++k) qr[k] = static_cast<int8_t>(static_cast<uint8_t>(qr[k]) ^ 0x80u);
    std::memset(qr + K, offset, static_cast<size_t>(ldq - K));
  }
}

}  // namespace
}  // namespace cb::kernels::cpu

// The GEMM tiles for int8 / bf16 dot products and 2:4 sparsity build on the pieces above.
#include "cpu_algos_dot.h"
#include "cpu_algos_sparse24.h"
#include "cpu_algos_packed.h"

namespace cb::kernels::cpu {
namespace {

// The table of one ISA: V for the float kernels, DI8 for the W8A8 GEMM, DBF for the bf16 one.
template <class V, class DI8, class DBF = DWidenBf16<V>>
KernelTable make_table(Isa isa) {
  KernelTable t{};
  t.isa = isa;
  t.gemv = &gemv<V>;
  t.packed_gemm = &packed_gemm<V>;
  t.convert_rows = &convert_rows<V>;
  t.attention = &attention<V>;
  t.sumsq = &sumsq<V>;
  t.scale_mul = &scale_mul<V>;
  t.rope_row = &rope_row<V>;
  t.silu_mul = &silu_mul<V>;
  t.softmax_row = &softmax_row<V>;
  t.add = &add<V>;
  t.quantize_rows = &quantize_rows<V>;
  t.w8a8_x_offset = DI8::kXOffset;
  t.w8a8 = &w8a8_range<DI8>;
  t.w8a8_small = nullptr;
  t.w8a8_small_max_m = 0;
  t.bf16dot = &bf16dot_range<DBF>;
  t.packed_bf16dot = nullptr;  // AVX512_BF16's table sets it
  t.packed_w8a8 = nullptr;     // AVX512_VNNI's table sets it
  t.sparse24 = &sparse24<V>;
  return t;
}

}  // namespace
}  // namespace cb::kernels::cpu
