// AVX2 int8 dot-product steps for cpu_algos_dot.h (no VNNI): vpmaddubsw takes an unsigned and a
// signed byte, so the sign of w moves onto x: |w| * (x * sign(w)). |w| <= 128 (so -128 works)
// and |x| <= 127 keep each pair sum <= 2 * 128 * 127 = 32512, clear of vpmaddubsw's int16
// saturation; vpmaddwd by 1 widens the pairs to int32. Include only inside the avx2 target region.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace cb::kernels::cpu {
namespace {  // internal linkage: each ISA file has its own copy

struct DAvx2I8 {
  using XT = int8_t;
  using WT = int8_t;
  using ST = int32_t;
  using acc = __m256i;
  using xv = __m256i;
  struct wv {
    __m256i aw;  // |w|
    __m256i w;
  };
  static constexpr int KS = 32;
  static constexpr int kXOffset = 0, kWOffset = 0;
  static constexpr int kMaxRows = 4;
  // 16 registers: MR*NR accumulators + 2 per W vector + x + 2 temporaries + the ones.
  template <int MR> static constexpr int nr() { return MR <= 1 ? 4 : MR <= 2 ? 3 : 2; }

  static acc zero() { return _mm256_setzero_si256(); }
  static xv load_x(const XT* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static wv load_w(const WT* p) {
    const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return {_mm256_abs_epi8(w), w};
  }
  static wv load_w_n(const WT* p, int n) {
    alignas(32) int8_t tmp[KS] = {};
    std::memcpy(tmp, p, static_cast<size_t>(n));
    return load_w(tmp);
  }
  static xv keep(xv v) {
    __asm__("" : "+x"(v));
    return v;
  }
  static acc dot(acc a, xv x, const wv& w) {
    const __m256i p16 = _mm256_maddubs_epi16(w.aw, _mm256_sign_epi8(x, w.w));
    return _mm256_add_epi32(a, _mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
  }
  static ST sum(acc a) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    return _mm_cvtsi128_si32(s);
  }
  // Four horizontal sums in one tree: pairs of lanes, then quads, then the two 128-bit halves.
  static void sum4(acc a, acc b, acc c, acc d, ST out[4]) {
    const __m256i t0 = _mm256_add_epi32(_mm256_unpacklo_epi32(a, b), _mm256_unpackhi_epi32(a, b));
    const __m256i t1 = _mm256_add_epi32(_mm256_unpacklo_epi32(c, d), _mm256_unpackhi_epi32(c, d));
    const __m256i u = _mm256_add_epi32(_mm256_unpacklo_epi64(t0, t1), _mm256_unpackhi_epi64(t0, t1));
    const __m128i r = _mm_add_epi32(_mm256_castsi256_si128(u), _mm256_extracti128_si256(u, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), r);
  }
};

}  // namespace
}  // namespace cb::kernels::cpu
