// 8-lane AVX2 vector ops (with FMA and F16C) for the kernel templates in cpu_algos.h. Include only
// inside the `#pragma GCC target("avx2,fma,f16c")` region of cpu_isa_avx2.cpp. Tails go through a
// small stack buffer, so no kernel reads or writes past the end of a row.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "cpu_types.h"

namespace cb::kernels::cpu {

struct VAvx2 {
  using vec = __m256;
  static constexpr int W = 8;

  static vec zero() { return _mm256_setzero_ps(); }
  static vec set1(float a) { return _mm256_set1_ps(a); }
  static vec load(const float* p) { return _mm256_loadu_ps(p); }
  static vec load(const f16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static vec load(const bf16_t* p) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
  }
  static vec load(const int8_t* p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  }
  template <class T> static vec load_n(const T* p, int n) {
    T tmp[W] = {};
    std::memcpy(tmp, p, sizeof(T) * static_cast<size_t>(n));
    return load(tmp);
  }
  static void store(float* p, vec v) { _mm256_storeu_ps(p, v); }
  static void store_n(float* p, vec v, int n) {
    float tmp[W];
    _mm256_storeu_ps(tmp, v);
    std::memcpy(p, tmp, sizeof(float) * static_cast<size_t>(n));
  }

  // Pins v in a register (see VAvx512::keep).
  static vec keep(vec v) {
    __asm__("" : "+x"(v));
    return v;
  }
  static vec fma(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
  static vec add(vec a, vec b) { return _mm256_add_ps(a, b); }
  static vec sub(vec a, vec b) { return _mm256_sub_ps(a, b); }
  static vec mul(vec a, vec b) { return _mm256_mul_ps(a, b); }
  static vec div(vec a, vec b) { return _mm256_div_ps(a, b); }
  static vec max(vec a, vec b) { return _mm256_max_ps(a, b); }
  static vec min(vec a, vec b) { return _mm256_min_ps(a, b); }
  static vec abs(vec a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.f), a); }
  // Rounds to nearest even (MXCSR default) into int8, saturating; n lanes.
  static void store_i8(int8_t* p, vec v, int n) {
    const __m256i i = _mm256_cvtps_epi32(v);
    const __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
    const __m128i b = _mm_packs_epi16(w16, w16);
    int8_t tmp[16];
    _mm_storeu_si128(reinterpret_cast<__m128i*>(tmp), b);
    std::memcpy(p, tmp, static_cast<size_t>(n));
  }

  // 2:4 sparse steps (cpu_algos_sparse24.h): 8 kept values = 4 groups = 16 input columns.
  using ivec = __m256i;
  using mraw = __m128i;  // the 4 meta bytes in the low dword
  static mraw sp24_meta(const uint8_t* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return _mm_cvtsi32_si128(v);
  }
  static mraw sp24_meta_n(const uint8_t* p, int groups) {
    uint8_t b[4] = {4, 4, 4, 4};  // padding: i0 = 0, i1 = 1 (valid; its values are zero)
    std::memcpy(b, p, static_cast<size_t>(groups));
    return sp24_meta(b);
  }
  // Lane j -> column 4 (j / 2) + ((byte_{j/2} >> 2 (j % 2)) & 3) of the step (see VAvx512).
  static ivec sp24_index(mraw m) {
    const __m128i lo = _mm_setr_epi8(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3);  // b & 3
    const __m128i hi = _mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);  // b >> 2
    const __m128i pairs = _mm_unpacklo_epi8(_mm_shuffle_epi8(lo, m), _mm_shuffle_epi8(hi, m));
    const __m128i base = _mm_setr_epi8(0, 0, 4, 4, 8, 8, 12, 12, 0, 0, 0, 0, 0, 0, 0, 0);
    return _mm256_cvtepu8_epi32(_mm_add_epi8(pairs, base));
  }
  // Marks bytes whose high nibble is set or whose i0 >= i1.
  static void sp24_check(mraw m, mraw& bad) {
    const __m128i three = _mm_set1_epi8(3);
    const __m128i i0 = _mm_and_si128(m, three), i1 = _mm_and_si128(_mm_srli_epi16(m, 2), three);
    const __m128i not_ok = _mm_andnot_si128(_mm_cmpgt_epi8(i1, i0), _mm_set1_epi8(-1));
    bad = _mm_or_si128(bad, _mm_or_si128(not_ok, _mm_and_si128(m, _mm_set1_epi8(static_cast<char>(0xF0)))));
  }
  static mraw sp24_nobad() { return _mm_setzero_si128(); }
  static bool sp24_any(mraw bad) { return _mm_cvtsi128_si32(bad) != 0; }  // the 4 bytes in use
  static vec perm2(vec a, ivec idx, vec b) {
    const vec pa = _mm256_permutevar8x32_ps(a, idx), pb = _mm256_permutevar8x32_ps(b, idx);
    return _mm256_blendv_ps(pa, pb, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));  // bit 3 -> sign
  }
  static float reduce_add(vec a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static float reduce_max(vec a) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }

  // e^x to ~2 ulp (Cephes expf): x = n ln2 + r with |r| <= ln2/2, e^r by a degree-6 polynomial,
  // 2^n built in the exponent field; inputs past the float range give 0 or inf; NaN propagates.
  static vec exp(vec x) {
    const vec lo = _mm256_set1_ps(-87.3365478515625f), hi = _mm256_set1_ps(88.3762626647949f);
    const vec under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ), over = _mm256_cmp_ps(x, hi, _CMP_GT_OQ);
    const vec xc = _mm256_max_ps(lo, _mm256_min_ps(hi, x));
    const vec n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    vec r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    vec p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    const vec y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    vec out = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
    out = _mm256_blendv_ps(out, _mm256_setzero_ps(), under);
    return _mm256_blendv_ps(out, _mm256_set1_ps(__builtin_inff()), over);
  }
};

}  // namespace cb::kernels::cpu
