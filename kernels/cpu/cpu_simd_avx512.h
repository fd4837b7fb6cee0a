// 16-lane AVX-512 vector ops for the kernel templates in cpu_algos.h. Include only inside the
// `#pragma GCC target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")` region of cpu_isa_avx512.cpp.
// Tails use masked loads and stores, so no kernel reads or writes past the end of a row.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "cpu_types.h"

namespace cb::kernels::cpu {

struct VAvx512 {
  using vec = __m512;
  static constexpr int W = 16;
  static __mmask16 mask(int n) { return static_cast<__mmask16>((1u << n) - 1u); }  // n in [0, 16]

  static vec zero() { return _mm512_setzero_ps(); }
  static vec set1(float a) { return _mm512_set1_ps(a); }
  static vec load(const float* p) { return _mm512_loadu_ps(p); }
  static vec load(const f16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static vec load(const bf16_t* p) {
    return bf16_widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static vec load(const int8_t* p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  }
  static vec load_n(const float* p, int n) { return _mm512_maskz_loadu_ps(mask(n), p); }
  static vec load_n(const f16_t* p, int n) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask(n), p)); }
  static vec load_n(const bf16_t* p, int n) { return bf16_widen(_mm256_maskz_loadu_epi16(mask(n), p)); }
  static vec load_n(const int8_t* p, int n) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mask(n), p)));
  }
  // 32 bf16 (one 64-byte line) as two f32 vectors with no cross-lane shuffle: lane j of `even`
  // holds element 2j, of `odd` element 2j + 1 (a bf16 is the high half of its f32). Sums over k
  // against x permuted the same way (gemv_bf16_pairs) take 5 instructions per line instead of 8.
  static constexpr bool kBf16Pairs = true;
  static void load_bf16_pairs(const bf16_t* p, vec& even, vec& odd) {
    const __m512i v = _mm512_loadu_si512(p);
    even = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
    odd = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u))));
  }
  static void store(float* p, vec v) { _mm512_storeu_ps(p, v); }
  static void store_n(float* p, vec v, int n) { _mm512_mask_storeu_ps(p, mask(n), v); }

  // Pins v in a register: stops the compiler from folding a load into each FMA that uses it
  // (which would re-read the same x vector from cache once per W row of a GEMV tile).
  static vec keep(vec v) {
    __asm__("" : "+v"(v));
    return v;
  }
  static vec fma(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
  static vec add(vec a, vec b) { return _mm512_add_ps(a, b); }
  static vec sub(vec a, vec b) { return _mm512_sub_ps(a, b); }
  static vec mul(vec a, vec b) { return _mm512_mul_ps(a, b); }
  static vec div(vec a, vec b) { return _mm512_div_ps(a, b); }
  static vec max(vec a, vec b) { return _mm512_max_ps(a, b); }
  static vec min(vec a, vec b) { return _mm512_min_ps(a, b); }
  static vec abs(vec a) { return _mm512_abs_ps(a); }
  // Rounds to nearest even (MXCSR default) into int8, saturating; n lanes.
  static void store_i8(int8_t* p, vec v, int n) {
    _mm_mask_storeu_epi8(p, mask(n), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(v)));
  }

  // 2:4 sparse steps (cpu_algos_sparse24.h): 16 kept values = 8 groups = 32 input columns.
  using ivec = __m512i;
  using mraw = __m128i;  // the 8 meta bytes in the low qword
  static mraw sp24_meta(const uint8_t* p) { return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)); }
  static mraw sp24_meta_n(const uint8_t* p, int groups) {  // padding 0x04: i0 = 0, i1 = 1 (valid)
    return _mm_mask_loadu_epi8(_mm_set1_epi8(4), static_cast<__mmask16>((1u << groups) - 1u), p);
  }
  // Lane j -> column 4 (j / 2) + ((byte_{j/2} >> 2 (j % 2)) & 3) of the step: both 2-bit fields
  // looked up with pshufb (byte-wide, cheaper than shifting 16 dword lanes), interleaved, offset.
  static ivec sp24_index(mraw m) {
    const __m128i lo = _mm_setr_epi8(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3);  // b & 3
    const __m128i hi = _mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);  // b >> 2
    const __m128i pairs = _mm_unpacklo_epi8(_mm_shuffle_epi8(lo, m), _mm_shuffle_epi8(hi, m));
    const __m128i base = _mm_setr_epi8(0, 0, 4, 4, 8, 8, 12, 12, 16, 16, 20, 20, 24, 24, 28, 28);
    return _mm512_cvtepu8_epi32(_mm_add_epi8(pairs, base));
  }
  // Marks bytes whose high nibble is set or whose i0 >= i1.
  static void sp24_check(mraw m, mraw& bad) {
    const __m128i three = _mm_set1_epi8(3);
    const __m128i i0 = _mm_and_si128(m, three), i1 = _mm_and_si128(_mm_srli_epi16(m, 2), three);
    const __m128i not_ok = _mm_andnot_si128(_mm_cmpgt_epi8(i1, i0), _mm_set1_epi8(-1));
    bad = _mm_or_si128(bad, _mm_or_si128(not_ok, _mm_and_si128(m, _mm_set1_epi8(static_cast<char>(0xF0)))));
  }
  static mraw sp24_nobad() { return _mm_setzero_si128(); }
  static bool sp24_any(mraw bad) { return _mm_cvtsi128_si64(bad) != 0; }  // the 8 bytes in use
  static vec perm2(vec a, ivec idx, vec b) { return _mm512_permutex2var_ps(a, idx, b); }
  static float reduce_add(vec a) { return _mm512_reduce_add_ps(a); }
  // dst[k * 8 + r] = x[r * ldx + k] for 8 rows and 16 steps k, as bits: per 128-bit quarter q
  // (steps 4q .. 4q + 3) unpacks pair the rows, then u[c] / v[c] hold rows 0-3 / 4-7 of step
  // 4q + c, and each quarter is stored where its step's 8 rows go.
  static void transpose_8x16(const float* x, int64_t ldx, float* dst) {
    __m512 t[8], u[4], v[4];
    for (int i = 0; i < 4; ++i) {
      const __m512 a = _mm512_loadu_ps(x + 2 * i * ldx), b = _mm512_loadu_ps(x + (2 * i + 1) * ldx);
      t[2 * i] = _mm512_unpacklo_ps(a, b);      // steps 4q, 4q + 1 of rows 2i, 2i + 1
      t[2 * i + 1] = _mm512_unpackhi_ps(a, b);  // steps 4q + 2, 4q + 3
    }
    for (int h = 0; h < 2; ++h)  // h = 0: rows 0-3 into u, 1: rows 4-7 into v
      for (int c = 0; c < 2; ++c) {
        const __m512d a = _mm512_castps_pd(t[4 * h + c]), b = _mm512_castps_pd(t[4 * h + c + 2]);
        (h ? v : u)[2 * c] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
        (h ? v : u)[2 * c + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
      }
    for (int c = 0; c < 4; ++c) {
      _mm_storeu_ps(dst + c * 8, _mm512_extractf32x4_ps(u[c], 0));
      _mm_storeu_ps(dst + c * 8 + 4, _mm512_extractf32x4_ps(v[c], 0));
      _mm_storeu_ps(dst + (4 + c) * 8, _mm512_extractf32x4_ps(u[c], 1));
      _mm_storeu_ps(dst + (4 + c) * 8 + 4, _mm512_extractf32x4_ps(v[c], 1));
      _mm_storeu_ps(dst + (8 + c) * 8, _mm512_extractf32x4_ps(u[c], 2));
      _mm_storeu_ps(dst + (8 + c) * 8 + 4, _mm512_extractf32x4_ps(v[c], 2));
      _mm_storeu_ps(dst + (12 + c) * 8, _mm512_extractf32x4_ps(u[c], 3));
      _mm_storeu_ps(dst + (12 + c) * 8 + 4, _mm512_extractf32x4_ps(v[c], 3));
    }
  }
  // The sums of a, b, c and d to out[0..3] (times scales[0..3] when given; added to out when
  // accumulate): 13 shuffles and adds for four sums where four reduce_adds take ~32, which a
  // GEMV tile pays for every slice of K (6 x 4 tiles over 512-column slices: 24 sums per 768 FMAs).
  static void reduce_add4(vec a, vec b, vec c, vec d, const float* scales, float* out, bool accumulate) {
    const __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));  // per 128-bit lane: a b a b
    const __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    const __m512 abcd = _mm512_add_ps(_mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)),
                                      _mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));  // lane: a b c d
    const __m256 half = _mm256_add_ps(_mm512_castps512_ps256(abcd),
                                      _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(abcd), 1)));
    __m128 sum = _mm_add_ps(_mm256_castps256_ps128(half), _mm256_extractf128_ps(half, 1));
    if (scales) sum = _mm_mul_ps(sum, _mm_loadu_ps(scales));
    if (accumulate) sum = _mm_add_ps(sum, _mm_loadu_ps(out));
    _mm_storeu_ps(out, sum);
  }
  static float reduce_max(vec a) { return _mm512_reduce_max_ps(a); }
  // Lane i of the result = the sum of a[i]'s lanes, for 16 vectors: 45 shuffles and adds where 16
  // reduce_adds take ~130 (attention scores 16 keys at a time; see attention_item).
  static vec reduce_add16(const vec* a) {
    vec b[8], c[4], d[2];
    for (int i = 0; i < 8; ++i)  // per 128-bit lane: a[2i] a[2i+1] a[2i] a[2i+1] (half sums)
      b[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]), _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
    for (int i = 0; i < 4; ++i) {  // per 128-bit lane: the lane's sums of a[4i .. 4i+3]
      const __m512d x = _mm512_castps_pd(b[2 * i]), y = _mm512_castps_pd(b[2 * i + 1]);
      c[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
    }
    for (int i = 0; i < 2; ++i)  // 128-bit lanes: c[2i] lanes 0+1, 2+3, c[2i+1] lanes 0+1, 2+3
      d[i] = _mm512_add_ps(_mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                           _mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_add_ps(_mm512_shuffle_f32x4(d[0], d[1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(d[0], d[1], _MM_SHUFFLE(3, 1, 3, 1)));
  }

  // e^x to ~2 ulp (Cephes expf): x = n ln2 + r with |r| <= ln2/2, e^r by a degree-6 polynomial,
  // 2^n by scalef, which also gives inf above ~88.7 and 0 far below; NaN propagates.
  static vec exp(vec x) {
    x = _mm512_max_ps(_mm512_set1_ps(-104.f), _mm512_min_ps(_mm512_set1_ps(89.f), x));
    const vec n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    vec r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    vec p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    const vec y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.f));
    return _mm512_scalef_ps(y, n);
  }

 private:
  static vec bf16_widen(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }
};

}  // namespace cb::kernels::cpu
