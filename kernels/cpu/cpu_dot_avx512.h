// AVX-512 dot-product steps for cpu_algos_dot.h. Include only inside a target region that has
// the features each struct names:
//   DAvx512I8  (F, BW)        int8 without VNNI: |w| * (x * sign(w)) with vpmaddubsw + vpmaddwd,
//                             as DAvx2I8 (cpu_dot_avx2.h) explains, on 64 bytes
//   DVnniI8    (+ VNNI)       vpdpbusd: u8 x s8 in one instruction; x stored as q + 128 (u8)
//   DBf16      (+ BF16)       vdpbf16ps: 32 bf16 products summed pairwise into 16 f32 lanes
// DVnniI8 and DBf16 sit behind CB_DOT_VNNI / CB_DOT_BF16 so the base AVX-512 file, compiled
// without those features, does not see their intrinsics.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace cb::kernels::cpu {
namespace {  // internal linkage: each ISA file has its own copy

namespace dot512 {
inline __mmask64 mask8(int n) { return n >= 64 ? ~__mmask64(0) : (__mmask64(1) << n) - 1; }
inline __mmask32 mask16(int n) { return n >= 32 ? ~__mmask32(0) : (__mmask32(1) << n) - 1; }
// Four horizontal sums in one shuffle tree: pairs of lanes, quads, then the four 128-bit lanes.
inline void sum4_epi32(__m512i a, __m512i b, __m512i c, __m512i d, int32_t out[4]) {
  const __m512i t0 = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
  const __m512i t1 = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
  const __m512i u = _mm512_add_epi32(_mm512_unpacklo_epi64(t0, t1), _mm512_unpackhi_epi64(t0, t1));
  const __m256i v = _mm256_add_epi32(_mm512_castsi512_si256(u), _mm512_extracti64x4_epi64(u, 1));
  const __m128i r = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), r);
}
inline void sum4_ps(__m512 a, __m512 b, __m512 c, __m512 d, float out[4]) {
  const __m512 t0 = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
  const __m512 t1 = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
  const __m512d t0d = _mm512_castps_pd(t0), t1d = _mm512_castps_pd(t1);
  const __m512 u =
      _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(t0d, t1d)), _mm512_castpd_ps(_mm512_unpackhi_pd(t0d, t1d)));
  const __m256 v =
      _mm256_add_ps(_mm512_castps512_ps256(u), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(u), 1)));
  _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)));
}
}  // namespace dot512

struct DAvx512I8 {
  using XT = int8_t;
  using WT = int8_t;
  using ST = int32_t;
  using acc = __m512i;
  using xv = __m512i;
  struct wv {
    __m512i aw;     // |w|
    __mmask64 neg;  // w < 0
  };
  static constexpr int KS = 64;
  static constexpr int kXOffset = 0, kWOffset = 0;
  static constexpr int kMaxRows = 4;
  template <int MR> static constexpr int nr() { return MR <= 1 ? 8 : MR <= 2 ? 6 : 4; }

  static acc zero() { return _mm512_setzero_si512(); }
  static xv load_x(const XT* p) { return _mm512_loadu_si512(p); }
  static wv make(__m512i w) { return {_mm512_abs_epi8(w), _mm512_movepi8_mask(w)}; }
  static wv load_w(const WT* p) { return make(_mm512_loadu_si512(p)); }
  static wv load_w_n(const WT* p, int n) { return make(_mm512_maskz_loadu_epi8(dot512::mask8(n), p)); }
  static xv keep(xv v) {
    __asm__("" : "+v"(v));
    return v;
  }
  static acc dot(acc a, xv x, const wv& w) {
    const __m512i xs = _mm512_mask_sub_epi8(x, w.neg, _mm512_setzero_si512(), x);  // x * sign(w)
    const __m512i p16 = _mm512_maddubs_epi16(w.aw, xs);
    return _mm512_add_epi32(a, _mm512_madd_epi16(p16, _mm512_set1_epi16(1)));
  }
  static ST sum(acc a) { return _mm512_reduce_add_epi32(a); }
  static void sum4(acc a, acc b, acc c, acc d, ST out[4]) { dot512::sum4_epi32(a, b, c, d, out); }
};

#ifdef CB_DOT_VNNI
struct DVnniI8 {
  using XT = uint8_t;  // q + 128
  using WT = int8_t;
  using ST = int32_t;
  using acc = __m512i;
  using xv = __m512i;
  using wv = __m512i;
  static constexpr int KS = 64;
  static constexpr int kXOffset = 128, kWOffset = 0;
  static constexpr int kMaxRows = 8;
  // As the f32 GEMV (gemv_nr): MR*NR accumulators + NR W vectors + x within 32 registers.
  template <int MR> static constexpr int nr() { return MR <= 2 ? 8 : MR <= 6 ? 4 : 3; }

  static acc zero() { return _mm512_setzero_si512(); }
  static xv load_x(const XT* p) { return _mm512_loadu_si512(p); }
  static wv load_w(const WT* p) { return _mm512_loadu_si512(p); }
  static wv load_w_n(const WT* p, int n) { return _mm512_maskz_loadu_epi8(dot512::mask8(n), p); }
  static xv keep(xv v) {
    __asm__("" : "+v"(v));
    return v;
  }
  // In place through asm: with the intrinsic, GCC 12 copies every accumulator after each
  // vpdpbusd (a zmm move per multiply-add; the M=128 GEMM ran at ~40% of the vpdpbusd peak).
  static acc dot(acc a, xv x, wv w) {
    __asm__("vpdpbusd %2, %1, %0" : "+v"(a) : "v"(x), "v"(w));
    return a;
  }
  static ST sum(acc a) { return _mm512_reduce_add_epi32(a); }
  static void sum4(acc a, acc b, acc c, acc d, ST out[4]) { dot512::sum4_epi32(a, b, c, d, out); }
  // sum_k w[k], by vpdpbusd against ones.
  static int32_t row_sum(const WT* w, int64_t K) {
    const __m512i ones = _mm512_set1_epi8(1);
    __m512i s = _mm512_setzero_si512();
    int64_t k = 0;
    for (; k + KS <= K; k += KS) s = _mm512_dpbusd_epi32(s, ones, _mm512_loadu_si512(w + k));
    if (k < K) s = _mm512_dpbusd_epi32(s, ones, load_w_n(w + k, int(K - k)));
    return _mm512_reduce_add_epi32(s);
  }
};

// vpdpbusd with W as the unsigned operand (w ^ 0x80 = w + 128) and x as plain q: for few rows of
// x (decode), where DVnniI8's pass over W for its row sums would cost as much as the products.
struct DVnniI8W {
  using XT = int8_t;
  using WT = int8_t;
  using ST = int32_t;
  using acc = __m512i;
  using xv = __m512i;
  using wv = __m512i;
  static constexpr int KS = 64;
  static constexpr int kXOffset = 0, kWOffset = 128;
  static constexpr int kMaxRows = 8;
  template <int MR> static constexpr int nr() { return MR <= 2 ? 8 : MR <= 6 ? 4 : 3; }

  static acc zero() { return _mm512_setzero_si512(); }
  static xv load_x(const XT* p) { return _mm512_loadu_si512(p); }
  static wv load_w(const WT* p) { return _mm512_xor_si512(_mm512_loadu_si512(p), _mm512_set1_epi8(-128)); }
  // Zero-filled past n *after* the flip: those lanes meet zero-padded x either way.
  static wv load_w_n(const WT* p, int n) {
    return _mm512_maskz_mov_epi8(dot512::mask8(n), _mm512_xor_si512(_mm512_maskz_loadu_epi8(dot512::mask8(n), p),
                                                                     _mm512_set1_epi8(-128)));
  }
  static xv keep(xv v) {
    __asm__("" : "+v"(v));
    return v;
  }
  static acc dot(acc a, xv x, wv w) {  // a += (u8) w * (s8) x
    __asm__("vpdpbusd %1, %2, %0" : "+v"(a) : "v"(x), "v"(w));
    return a;
  }
  static ST sum(acc a) { return _mm512_reduce_add_epi32(a); }
  static void sum4(acc a, acc b, acc c, acc d, ST out[4]) { dot512::sum4_epi32(a, b, c, d, out); }
};
#endif

#ifdef CB_DOT_BF16
struct DBf16 {
  using XT = uint16_t;  // bf16 bit patterns
  using WT = uint16_t;
  using ST = float;
  using acc = __m512;
  using xv = __m512i;
  using wv = __m512i;
  static constexpr int KS = 32;
  static constexpr int kMaxRows = 8;
  template <int MR> static constexpr int nr() { return MR <= 2 ? 8 : MR <= 6 ? 4 : 3; }

  static acc zero() { return _mm512_setzero_ps(); }
  static xv load_x(const XT* p) { return _mm512_loadu_si512(p); }
  static wv load_w(const WT* p) { return _mm512_loadu_si512(p); }
  static wv load_w_n(const WT* p, int n) { return _mm512_maskz_loadu_epi16(dot512::mask16(n), p); }
  static xv keep(xv v) {
    __asm__("" : "+v"(v));
    return v;
  }
  static acc dot(acc a, xv x, wv w) { return _mm512_dpbf16_ps(a, (__m512bh)x, (__m512bh)w); }
  static ST sum(acc a) { return _mm512_reduce_add_ps(a); }
  static void sum4(acc a, acc b, acc c, acc d, ST out[4]) { dot512::sum4_ps(a, b, c, d, out); }
};
#endif

}  // namespace
}  // namespace cb::kernels::cpu
