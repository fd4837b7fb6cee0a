// The portable "vector" of one float: the scalar fallback the kernel templates in cpu_algos.h are
// instantiated with when neither AVX2 nor AVX-512 is available (or $CB_CPU_ISA=scalar).
#pragma once

#include <cmath>
#include <cstdint>

#include "cb/kernels/tensor.h"
#include "cpu_types.h"

namespace cb::kernels::cpu {

struct VScalar {
  using vec = float;
  static constexpr int W = 1;
  static vec zero() { return 0.f; }
  static vec set1(float a) { return a; }
  static vec load(const float* p) { return *p; }
  static vec load(const f16_t* p) { return f16_to_f32(p->bits); }
  static vec load(const bf16_t* p) { return bf16_to_f32(p->bits); }
  static vec load(const int8_t* p) { return float(*p); }
  // Partial loads/stores of the first n < W lanes never happen with W == 1 but keep the interface.
  template <class T> static vec load_n(const T* p, int n) { return n > 0 ? load(p) : 0.f; }
  static void store(float* p, vec v) { *p = v; }
  static void store_n(float* p, vec v, int n) { if (n > 0) *p = v; }
  static vec keep(vec v) { return v; }
  static vec fma(vec a, vec b, vec c) { return a * b + c; }
  static vec add(vec a, vec b) { return a + b; }
  static vec sub(vec a, vec b) { return a - b; }
  static vec mul(vec a, vec b) { return a * b; }
  static vec div(vec a, vec b) { return a / b; }
  static vec max(vec a, vec b) { return a > b ? a : b; }
  static vec min(vec a, vec b) { return a < b ? a : b; }
  static vec abs(vec a) { return std::fabs(a); }
  // Rounds half to even (the default rounding mode) into int8; v is already in [-127, 127].
  static void store_i8(int8_t* p, vec v, int n) {
    if (n > 0) *p = static_cast<int8_t>(std::nearbyint(v));
  }
  static float reduce_add(vec a) { return a; }
  static float reduce_max(vec a) { return a; }
  static vec exp(vec a) { return std::exp(a); }
};

}  // namespace cb::kernels::cpu
