// The packed-panel GEMM over a "V" struct (cpu_simd_*.h): y = x * W^T for a dense f32 or bf16
// weight the backend packed at upload (PackedArgs in cpu_kernels.h: panels of 16 output columns,
// K-major). Included by cpu_algos.h inside each ISA's target region.
//
// Why an outer product instead of cpu_algos.h's dot-product tiles: per k the tile loads one
// vector of each panel (contiguous, aligned streams), broadcasts one x value per row and does
// rows x vectors FMAs into accumulators that *are* the outputs, so there is no horizontal
// reduction at the end of a row and x is read as scalars from cache (past one row, from a
// per-thread copy with each k step's rows side by side: interleave_rows). Measured against gemv<V> on
// llama-1b shapes from DRAM (Zen 5, AVX-512, 2 threads, interleaved, same results within 4e-6):
// M = 1 56-60 vs 46-49 GB/s, M = 8 212-218 vs 112-114 GFLOP/s, M = 16 275 vs 169, M = 128 1.45x.
// With CB_DOT_BF16 (AVX512_BF16 region) the same tile runs bf16 x bf16 on vdpbf16ps over
// panels of k pairs (packed_bf16dot); with CB_DOT_VNNI (AVX512_VNNI region) W8A8's u8 x s8 on
// vpdpbusd over panels of k quads, int32 sums (packed_w8a8).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu_kernels.h"
#include "cpu_types.h"

namespace cb::kernels::cpu {
namespace {

// Tile shape per vector width: AVX-512 8 rows x 3 panels (24 of 32 registers accumulate, 3 hold
// W, 1 the broadcast); AVX2 6 rows x 1 panel of two vectors (12 + 2 + 1 of 16); scalar 4 x 1.
// One row of x (decode) runs a 1-row tile over packed_gemv_panels panels, prefetching each
// kPackedAheadBytes ahead (see packed_gemm_typed).
template <class V> constexpr int packed_tile_rows() { return V::W == 16 ? 8 : V::W == 8 ? 6 : 4; }
template <class V> constexpr int packed_tile_panels() { return V::W == 16 ? 3 : 1; }
template <class V> constexpr int packed_gemv_panels() { return V::W == 16 ? 3 : V::W == 8 ? 4 : 1; }
template <class V> constexpr int packed_wide_decode_panels() { return V::W == 16 ? 8 : V::W == 8 ? 4 : 1; }
// Two prefetch schemes, measured on llama-1b shapes (Zen 5, 2 threads, interleaved):
//  - several row groups: while they run, they prefetch the next tile's slice of W, each group
//    its share of the lines, so the DRAM stream overlaps the FMAs of every group instead of
//    stalling the first one. lm_head (N=32000, 262 MB) at M=16: 6.4-6.5 ms against 7.1-7.9 with
//    the scheme below. The hint is prefetcht0: on a host with a 32 MB L3 (weights streamed from
//    DRAM) it beat prefetcht1 (L2 only from Zen 4 on) in every round at M=16: gate/up 1.19-1.45
//    vs 1.46-2.16 ms, down 1.20-1.39 vs 1.28-1.65, lm_head 8.3-8.5 vs 10.6-13.2 (kernel bench);
//    a standalone DRAM prototype 261-274 vs 210-220 GFLOP/s. M=128 unchanged (7.5-8.2 ms both);
//  - one row group (M <= 8 on AVX-512, and decode rows): it prefetches its own panels
//    kPackedAheadBytes ahead into L1 (N=5632 at M=8: 0.54-0.57 ms against 0.59-0.62 with the
//    next-tile scheme).
constexpr int64_t kPackedAheadBytes = 2048;  // the prototype's 512 / 1024 / 2048 / 4096 B sweep peaked here
struct PackedPrefetch {
  const void* next = nullptr;  // the next tile's first panel at its first k (nullptr: none)
  int np = 0;                  // its panels
  int group = 0, groups = 1;   // this row group of the current tile, of how many
};
// Which scheme a tile runs: a template argument, so each inner loop carries only its own
// bookkeeping (the 8 x 3 tile uses 28 of 32 vector registers and most general ones).
enum class PackedPf { None, Ahead, NextTile };

// What one k step of a tile multiplies ("Op" below). f32 x against W of T widened to f32 in
// registers, one f32 FMA per vector: the f32 and bf16-weight panels.
template <class V, class T>
struct PackedFma {
  using XT = float;
  using WT = T;
  using xvec = typename V::vec;
  using wvec = typename V::vec;
  static wvec load_w(const T* p) { return V::keep(V::load(p)); }
  static xvec bcast_x(const float* p) { return V::set1(*p); }
  using avec = typename V::vec;  // the tile's sums
  static avec azero() { return V::zero(); }
  static typename V::vec to_vec(avec a) { return a; }  // as stored in y
  static avec madd(xvec x, wvec w, avec acc) { return V::fma(x, w, acc); }
  static typename V::vec combine(typename V::vec acc, typename V::vec y) { return V::add(acc, y); }  // a slice into y
};
#if defined(CB_DOT_BF16) || defined(CB_DOT_VNNI)
// The dot-product steps' operands (bf16 pairs, int8 quads): one uint32 per column of a panel line
// and one uint32 of x broadcast to all 16.
struct PackedU32Operands {
  using XT = uint32_t;
  using WT = uint32_t;
  using xvec = __m512i;
  using wvec = __m512i;
  static wvec load_w(const uint32_t* p) {
    __m512i v = _mm512_loadu_si512(p);
    __asm__("" : "+v"(v));  // one load per panel row, not one folded into every dot-product instruction
    return v;
  }
  static xvec bcast_x(const uint32_t* p) {
    uint32_t step;
    std::memcpy(&step, p, sizeof step);  // x lives in a uint16_t (bf16) or int8_t buffer
    return _mm512_set1_epi32(int(step));
  }
};
#endif
#ifdef CB_DOT_BF16
// bf16 x bf16 on vdpbf16ps over pair panels (pack_bf16_pairs): a step is two k, one uint32 per
// column holding (w[n, 2i], w[n, 2i + 1]) against the same pair of x (k even, k odd, little-endian
// as stored) broadcast: 32 products per instruction into 16 f32 sums, so the f32 tile's shape and
// streams at twice the products.
struct PackedDpBf16 : PackedU32Operands {
  using avec = __m512;
  static avec azero() { return _mm512_setzero_ps(); }
  static __m512 to_vec(avec a) { return a; }
  static avec madd(xvec x, wvec w, avec acc) { return _mm512_dpbf16_ps(acc, (__m512bh)x, (__m512bh)w); }
  static __m512 combine(__m512 acc, __m512 y) { return _mm512_add_ps(acc, y); }
};
#endif
#ifdef CB_DOT_VNNI
// u8 x s8 on vpdpbusd over quad panels (pack_i8_quads): a step is four k, one uint32 per column
// holding w[n, 4i .. 4i + 3] against x's four (q + 128) broadcast: 64 products per instruction
// into 16 int32 sums, kept in y as int32 bits between slices (casts only), so the f32 tile's
// shape and walks carry over; packed_w8a8 turns them into W8A8 results.
struct PackedDpI8 : PackedU32Operands {
  using avec = __m512i;  // int32 sums: an f32 array with casts each step left GCC storing all 24 every step
  static avec azero() { return _mm512_setzero_si512(); }
  static __m512 to_vec(avec a) { return _mm512_castsi512_ps(a); }
  static avec madd(xvec x, wvec w, avec acc) {
    // The intrinsic (GCC 12) copied and stored all 24 sums every step; in place, as an FMA's:
    __asm__("vpdpbusd %[w], %[x], %[acc]" : [acc] "+v"(acc) : [x] "v"(x), [w] "v"(w));
    return acc;
  }
  static __m512 combine(__m512 acc, __m512 y) {
    return _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(acc), _mm512_castps_si512(y)));
  }
};
#endif

// Rows [m0, m0 + MR) of x against panels [p, p + NP) over steps k in [k0, k0 + kn): stores
// (first slice) or adds into y; columns at or past a.N are not written.
//
// XI: x comes interleaved (xi, one k step's rows side by side: element (m0 + m, k0 + k) at
// xi[k * packed_tile_rows<V>() + m]), so every broadcast of a step is off one pointer at a
// constant offset; otherwise rows of a.x, a.ldx apart (8 pointers, more than the general
// registers the 8 x 3 tile leaves free: they spilled).
template <class V, class Op, int MR, int NP, PackedPf PF, bool XI>
inline void packed_tile(const PackedArgs& a, int64_t m0, int64_t p, int64_t k0, int64_t kn, bool first,
                        const PackedPrefetch& pf, const typename Op::XT* xi) {
  using vec = typename V::vec;
  using T = typename Op::WT;
  using XT = typename Op::XT;
  constexpr int VPP = kPackPanel / V::W;  // vectors per panel
  constexpr int NV = NP * VPP;
  const T* w = static_cast<const T*>(a.wp);
  const T* wv[NV];
  const int64_t ps = a.panel_stride();
  for (int v = 0; v < NV; ++v) wv[v] = w + ((p + v / VPP) * ps + k0) * kPackPanel + (v % VPP) * V::W;
  typename Op::avec acc[MR][NV];
  for (int m = 0; m < MR; ++m)
    for (int v = 0; v < NV; ++v) acc[m][v] = Op::azero();
  constexpr int64_t XS = packed_tile_rows<V>();
  const XT* xr = XI ? xi : static_cast<const XT*>(a.x) + m0 * a.ldx + k0;
  // One prefetch per 64-byte line of each next panel (a line is 1 k of f32, 2 of bf16); group g
  // of G takes lines g, g + G, ...
  constexpr int64_t kPerLine = 64 / (kPackPanel * int64_t(sizeof(T)));
  const T* pf_w = static_cast<const T*>(pf.next);
  int64_t pf_k = PF == PackedPf::NextTile && pf_w ? pf.group * kPerLine : kn;
  const int64_t pf_step = pf.groups * kPerLine;
  for (int64_t k = 0; k < kn; ++k) {
    if constexpr (PF == PackedPf::Ahead)
      if (k % kPerLine == 0)
        for (int j = 0; j < NP; ++j)
          __builtin_prefetch(reinterpret_cast<const char*>(wv[j * VPP] + k * kPackPanel) + kPackedAheadBytes, 0, 3);
    if constexpr (PF == PackedPf::NextTile)
      if (k == pf_k) {
        for (int j = 0; j < pf.np; ++j) __builtin_prefetch(pf_w + (j * ps + k) * kPackPanel, 0, 3);
        pf_k += pf_step;
      }
    typename Op::wvec wk[NV];
    for (int v = 0; v < NV; ++v) wk[v] = Op::load_w(wv[v] + k * kPackPanel);
    for (int m = 0; m < MR; ++m) {
      const typename Op::xvec xv = Op::bcast_x(XI ? xr + k * XS + m : xr + m * a.ldx + k);
      for (int v = 0; v < NV; ++v) acc[m][v] = Op::madd(xv, wk[v], acc[m][v]);
    }
  }
  for (int m = 0; m < MR; ++m) {
    float* yr = a.y + (m0 + m) * a.N;
    for (int v = 0; v < NV; ++v) {
      const int64_t col = (p + v / VPP) * kPackPanel + (v % VPP) * V::W;
      if (col >= a.N) break;
      const int n = int(std::min<int64_t>(V::W, a.N - col));
      const vec sum = Op::to_vec(acc[m][v]);
      if (n == V::W) V::store(yr + col, first ? sum : Op::combine(sum, V::load(yr + col)));
      else V::store_n(yr + col, first ? sum : Op::combine(sum, V::load_n(yr + col, n)), n);
    }
  }
}

// packed_tile with NP (<= NPMAX) and MR (<= MRMAX) chosen at run time for the tails.
template <class V, class Op, int MR, int NPMAX, PackedPf PF, bool XI = false>
inline void packed_tile_np(int np, const PackedArgs& a, int64_t m0, int64_t p, int64_t k0, int64_t kn, bool first,
                           const PackedPrefetch& pf, const typename Op::XT* xi = nullptr) {
  if (np == NPMAX) return packed_tile<V, Op, MR, NPMAX, PF, XI>(a, m0, p, k0, kn, first, pf, xi);
  if constexpr (NPMAX > 1) packed_tile_np<V, Op, MR, NPMAX - 1, PF, XI>(np, a, m0, p, k0, kn, first, pf, xi);
}
template <class V, class Op, int MRMAX, int NPMAX, PackedPf PF, bool XI>
inline void packed_tile_any(int mr, int np, const PackedArgs& a, int64_t m0, int64_t p, int64_t k0, int64_t kn,
                            bool first, const PackedPrefetch& pf, const typename Op::XT* xi) {
  if (mr == MRMAX) return packed_tile_np<V, Op, MRMAX, NPMAX, PF, XI>(np, a, m0, p, k0, kn, first, pf, xi);
  if constexpr (MRMAX > 1) packed_tile_any<V, Op, MRMAX - 1, NPMAX, PF, XI>(mr, np, a, m0, p, k0, kn, first, pf, xi);
}

// dst[k * packed_tile_rows<V>() + r] = x[r * ldx + k] for r < rows, k < kn: a row group of x
// interleaved for packed_tile's XI form. A full group of 8 on AVX-512 goes 16 steps at a time
// through registers (VAvx512::transpose_8x16); the scalar loop stores one element per cycle,
// which at 16 rows was 14 us per call and thread, 3% of a 2048 x 2048 matmul. Elements are
// moved as bits (f32, or bf16 pairs as uint32).
template <class V, class XT>
void interleave_rows(const XT* x, int64_t ldx, int rows, int64_t kn, XT* dst) {
  constexpr int MR = packed_tile_rows<V>();
  static_assert(sizeof(XT) == 4);
  int64_t k = 0;
  if constexpr (MR == 8 && requires(const float* f, float* t) { V::transpose_8x16(f, int64_t(1), t); })
    if (rows == MR)
      for (; k + 16 <= kn; k += 16)
        V::transpose_8x16(reinterpret_cast<const float*>(x + k), ldx, reinterpret_cast<float*>(dst + k * MR));
  for (; k < kn; ++k)
    for (int r = 0; r < rows; ++r) dst[k * MR + r] = x[r * ldx + k];
}

// Output columns [n0, n1) (n0 a multiple of kPackPanel) for all M rows.
template <class V, class Op>
void packed_gemm_typed(const PackedArgs& a, int64_t n0, int64_t n1) {
  const int64_t p0 = n0 / kPackPanel, p1 = (std::min(n1, a.N) + kPackPanel - 1) / kPackPanel;
  if (a.M == 1) {
    // Decode: one pass over K, no slices (nothing reuses a slice of W), a few sequential streams
    // each prefetched 2 KiB ahead. In-process A/B on llama-1b shapes (cold f32 weights, 40-60
    // rounds, both orders, Zen 5, 2 threads), 3 panels with the prefetch against the 8 panels
    // without it that ran before: 1.07-1.15x on every matrix (bf16 weights 1.08-1.43x); 4
    // panels 0.92-0.97x of 3, 6 panels and 2 panels slower still; 8 with the prefetch 0.95x and 4
    // without 0.92x of the prefetched 3. Engine decode (refengine bench, 3 interleaved pairs):
    // 0.91-0.97 of the triad bandwidth against 0.81-0.90. AVX2 (4 panels): 1.02-1.06x with it.
    // The distance: 1 KiB ahead ran 0.97-0.99x of 2 KiB, 4 and 8 KiB 0.88-0.92x.
    // a.decode == Wide runs that 8-panel tile: `cb_m16_stream_study decode` reruns the A/B on any
    // machine (here, 2 weight copies alternated: wide / prefetched time 1.33-1.55).
    if (a.decode == PackedDecode::Wide) {
      constexpr int WP = packed_wide_decode_panels<V>();
      for (int64_t p = p0; p < p1; p += WP)
        packed_tile_np<V, Op, 1, WP, PackedPf::None>(int(std::min<int64_t>(WP, p1 - p)), a, 0, p, 0, a.K, true, {});
      return;
    }
    constexpr int GP = packed_gemv_panels<V>();
    for (int64_t p = p0; p < p1; p += GP)
      packed_tile_np<V, Op, 1, GP, PackedPf::Ahead>(int(std::min<int64_t>(GP, p1 - p)), a, 0, p, 0, a.K, true, {});
    return;
  }
  // Past one row group, K goes in slices so that a tile's slice of W (k_slice x 48 columns, 96
  // KiB for f32 at 512) stays in L2 while every row group passes over it: W from memory once.
  // One row group (x's copy within kPanelMajorXBytes): a tile's panels are walked slice after
  // slice (all of K) before the next tile's, so its W is 3 sequential streams and the next-tile
  // prefetch runs down the same panels; the slice-major walk (every tile's first slice before any
  // second one) jumps to new panels every 32 KiB. `cb_m16_stream_study walk` (llama-1b shapes,
  // cold weights, 40 ABBA rounds, 2 threads, Zen 5), slice-major / panel-major time: 4 rows
  // 1.10-1.23, 8 rows 1.05-1.22 (gate+up, down, q/k/v, o_proj, lm_head). At 16 rows (two row
  // groups, the second reading the slice from L2 while the first streams it) the walks swap:
  // down_proj 0.95-0.97, q/k/v 0.94, o_proj 0.97, gate+up 1.0, lm_head 1.05, so two or more
  // groups walk slice-major, whose copy of x is also one slice, unless this thread's outputs
  // outgrow half of L2 (a.panel_major_y_bytes): slice-major adds each slice's sums into y, so every slice rereads and rewrites
  // all of y (lm_head at 16 rows: 1 MiB a thread, 4 slices), where panel-major writes it once.
  // `cb_m16_stream_study walk` (alternated in one process, Zen 5, 2 threads), slice-major /
  // panel-major time: lm_head (N=32000) 1.03-1.17 at 16 rows, 1.06-1.08 at 64; gate+up 1.03-1.05
  // at 64 (1.4 MiB of y a thread), 0.97-1.04 at 16 (0.35 MiB); down_proj 0.97-0.98 (small y).
  // Past 512 KiB of x (all of K for every row: prefill) the slice stays. a.walk forces either.
  constexpr int MR = packed_tile_rows<V>(), NP = packed_tile_panels<V>();
  constexpr size_t kPanelMajorXBytes = size_t(1) << 20;
  const int64_t ks = a.k_slice > 0 ? a.k_slice : a.K;
  const int groups = int((a.M + MR - 1) / MR);
  const auto* w = static_cast<const typename Op::WT*>(a.wp);
  const int64_t ps = a.panel_stride();
  using XT = typename Op::XT;
  const XT* x = static_cast<const XT*>(a.x);
  const size_t x_bytes = size_t(groups * MR * a.K) * sizeof(XT), y_bytes = size_t(a.M * (n1 - n0)) * sizeof(float);
  const bool panel_major = a.walk == PackedWalk::Auto
                               ? (groups == 1 ? x_bytes <= kPanelMajorXBytes
                                              : x_bytes <= kPanelMajorXBytes / 2 && y_bytes >= size_t(a.panel_major_y_bytes))
                               : a.walk == PackedWalk::PanelMajor;
  // This thread's interleaved copy of x (see packed_tile): all of K (panel-major) or one slice at
  // a time, a slice's row groups one after another; M * K elements against the M * K * (n1 - n0)
  // multiply-adds of the tiles that read it.
  static thread_local std::vector<XT> xi;
  xi.resize(size_t(groups * MR * (panel_major ? a.K : std::min(ks, a.K))));
  auto copy_slice = [&](int64_t k0, int64_t kn, XT* to) {
    for (int g = 0; g < groups; ++g)
      interleave_rows<V>(x + int64_t(g) * MR * a.ldx + k0, a.ldx, int(std::min<int64_t>(MR, a.M - int64_t(g) * MR)), kn,
                         to + g * kn * MR);
  };
  // Every row group over panels [p, p + np) and steps [k0, k0 + kn), x's slice at xs.
  auto run_tile = [&](int64_t p, int np, int64_t k0, int64_t kn, const XT* xs, PackedPrefetch pf) {
    pf.groups = groups;
    for (int64_t m0 = 0; m0 < a.M; m0 += MR, ++pf.group) {
      const int mr = int(std::min<int64_t>(MR, a.M - m0));
      const XT* xg = xs + (m0 / MR) * kn * MR;
      if (groups == 1) packed_tile_any<V, Op, MR, NP, PackedPf::Ahead, true>(mr, np, a, m0, p, k0, kn, k0 == 0, pf, xg);
      else packed_tile_any<V, Op, MR, NP, PackedPf::NextTile, true>(mr, np, a, m0, p, k0, kn, k0 == 0, pf, xg);
    }
  };
  if (panel_major) {
    for (int64_t k0 = 0; k0 < a.K; k0 += ks) copy_slice(k0, std::min(ks, a.K - k0), xi.data() + groups * MR * k0);
    for (int64_t p = p0; p < p1; p += NP) {
      const int np = int(std::min<int64_t>(NP, p1 - p));
      for (int64_t k0 = 0; k0 < a.K; k0 += ks) {
        // The tile after this one: the next slice of these panels, else the next panels' first.
        PackedPrefetch pf;
        if (k0 + ks < a.K) {
          pf.next = w + (p * ps + k0 + ks) * kPackPanel;
          pf.np = np;
        } else if (p + NP < p1) {
          pf.next = w + (p + NP) * ps * kPackPanel;
          pf.np = int(std::min<int64_t>(NP, p1 - p - NP));
        }
        run_tile(p, np, k0, std::min(ks, a.K - k0), xi.data() + groups * MR * k0, pf);
      }
    }
  } else {
    for (int64_t k0 = 0; k0 < a.K; k0 += ks) {
      const int64_t kn = std::min(ks, a.K - k0);
      copy_slice(k0, kn, xi.data());
      for (int64_t p = p0; p < p1; p += NP) {
        const int np = int(std::min<int64_t>(NP, p1 - p));
        // The tile after this one: the next panels of this slice, else the first of the next slice.
        PackedPrefetch pf;
        if (p + NP < p1) {
          pf.next = w + ((p + NP) * ps + k0) * kPackPanel;
          pf.np = int(std::min<int64_t>(NP, p1 - p - NP));
        } else if (k0 + ks < a.K) {
          pf.next = w + (p0 * ps + k0 + ks) * kPackPanel;
          pf.np = int(std::min<int64_t>(NP, p1 - p0));
        }
        run_tile(p, np, k0, kn, xi.data(), pf);
      }
    }
  }
  // A long prefill's slice copy (M * k_slice elements) is not kept for the decode steps after it.
  if (xi.capacity() * sizeof(XT) > (size_t(8) << 20)) std::vector<XT>().swap(xi);
}

template <class V>
void packed_gemm(const PackedArgs& a, int64_t n0, int64_t n1) {
  if (a.wdt == DType::BF16) packed_gemm_typed<V, PackedFma<V, bf16_t>>(a, n0, n1);
  else packed_gemm_typed<V, PackedFma<V, float>>(a, n0, n1);
}
#ifdef CB_DOT_BF16
// a.x: bf16 pairs [M, ldx] (ldx, K and k_slice counted in pairs); a.wp: pack_bf16_pairs panels.
template <class V>
void packed_bf16dot(const PackedArgs& a, int64_t n0, int64_t n1) {
  packed_gemm_typed<V, PackedDpBf16>(a, n0, n1);
}
#endif

#ifdef CB_DOT_VNNI
// a.x: u8 quads (q + 128) [M, ldx] (ldx, K and k_slice counted in quads); a.wp: pack_i8_quads
// panels. The tiles leave int32 sums in y; then each column takes w8a8_range's epilogue, in the
// same order of operations, so the result is bit-equal to the row-major W8A8 kernels'.
template <class V>
void packed_w8a8(const PackedArgs& a, int64_t n0, int64_t n1) {
  packed_gemm_typed<V, PackedDpI8>(a, n0, n1);
  const int64_t e = std::min(n1, a.N);
  for (int64_t m = 0; m < a.M; ++m) {
    float* yr = a.y + m * a.N;
    for (int64_t n = n0; n < e; ++n) {
      uint32_t s;
      std::memcpy(&s, yr + n, sizeof s);
      const auto acc = static_cast<int32_t>(s - 128u * static_cast<uint32_t>(a.wsum[n]));
      yr[n] = float(acc) * a.xs[m] * a.ws[n];
    }
  }
}
#endif

}  // namespace
}  // namespace cb::kernels::cpu
