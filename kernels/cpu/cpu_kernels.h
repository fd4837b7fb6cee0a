// Private interface of the `cpu` backend: the per-ISA kernel table and the argument blocks the
// drivers hand to it.
//
// Layout of kernels/cpu/:
//   cpu_backend.cpp      the Backend class: argument checks, supports(), ISA choice
//   cpu_matmul.cpp       matmul driver: GEMV-style kernel, oneDNN for large-M f32, threading
//   cpu_attention.cpp    kv_store and the attention driver (work split, scratch)
//   cpu_elementwise.cpp  rmsnorm, rope, silu_mul, softmax, embedding, add drivers
//   cpu_algos.h          every kernel body, written once as a template over a SIMD "V" struct
//   cpu_simd_*.h         the V structs: scalar, AVX2 (+FMA, F16C), AVX-512 (F, BW, VL)
//   cpu_isa_*.cpp        instantiate cpu_algos.h for one V under that ISA's target pragma and
//                        export a KernelTable
// Drivers own OpenMP parallel regions and call kernels on ranges; kernels never spawn threads,
// so no OpenMP region is compiled under a target pragma.
#pragma once

#include <cstdint>

#include "cb/kernels/tensor.h"

namespace cb::kernels::cpu {

enum class Isa : uint8_t { Scalar, Avx2, Avx512 };
const char* isa_name(Isa isa);
// Best ISA this machine and OS support, lowered to $CB_CPU_ISA (scalar | avx2 | avx512) when that
// is set: tests use it to run every code path on one machine, benchmarks to compare them.
Isa choose_isa();

// y[m, n] = sum_k x[m, k] * w[n, k] (* scales[n] for i8 weights).
struct GemvArgs {
  const float* x = nullptr;  // [M, K], row stride ldx >= K
  int64_t ldx = 0;
  const void* w = nullptr;   // [N, K] in wdt, row stride K
  DType wdt = DType::F32;
  const float* scales = nullptr;  // [N] for i8 weights, else nullptr
  float* y = nullptr;             // [M, N], row stride N
  int64_t M = 0, N = 0, K = 0;
};

// Attention over a paged cache (see AttentionParams / KvView in backend.h). One work item is
// (query row m, kv head, chunk of `heads_per_item` query heads sharing that kv head).
struct AttnArgs {
  const float* q = nullptr;  // [M, n_heads * head_dim]
  float* out = nullptr;      // [M, n_heads * head_dim]
  const float* k_pool = nullptr;
  const float* v_pool = nullptr;
  const int32_t* block_table = nullptr;
  int64_t M = 0;
  int block_size = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0, q_pos0 = 0;
  int heads_per_item = 1;  // divides n_heads / n_kv_heads, at most kAttnMaxHeads
  float scale = 0.f;
  int64_t items() const { return M * n_kv_heads * ((n_heads / n_kv_heads) / heads_per_item); }
  // Floats of per-thread scratch a kernel call needs.
  int64_t scratch_floats() const { return 2 * int64_t(heads_per_item) * head_dim; }
};
inline constexpr int kAttnMaxHeads = 8;  // query heads processed together against one key tile
inline constexpr int kAttnTile = 64;     // keys per online-softmax step

// One ISA's kernels. Every function works on a range and is called from the drivers' threads.
struct KernelTable {
  Isa isa;
  // Output columns [n0, n1) for all M rows; streams each W row once per 8 rows of x.
  void (*gemv)(const GemvArgs& a, int64_t n0, int64_t n1);
  // out[r, :] = float(w[row0 + r, :]) (* scales[row0 + r]) for r in [0, rows): embedding rows
  // (and any other widening of f16/bf16/i8 rows to f32).
  void (*convert_rows)(const void* w, DType wdt, const float* scales, int64_t row0, int64_t rows, int64_t K,
                       float* out);
  // Attention work items [i0, i1); scratch has a.scratch_floats() floats.
  void (*attention)(const AttnArgs& a, int64_t i0, int64_t i1, float* scratch);
  // rmsnorm's halves: the sum of squares of a row, and y = x * s * weight (f32/f16/bf16).
  double (*sumsq)(const float* x, int64_t n);
  void (*scale_mul)(const float* x, float s, const void* w, DType wdt, float* y, int64_t n);
  // Rotates pairs (i, i + half) of `n_heads` consecutive heads of one row by cos/sin[half].
  void (*rope_row)(float* x, const float* cos, const float* sin, int n_heads, int head_dim);
  void (*silu_mul)(const float* g, const float* u, float* out, int64_t n);
  // Row softmax; y may alias x.
  void (*softmax_row)(const float* x, float* y, int64_t n);
  void (*add)(const float* a, const float* b, float* out, int64_t n);
};

const KernelTable& kernels_scalar();
const KernelTable& kernels_avx2();
const KernelTable& kernels_avx512();
const KernelTable& kernels_for(Isa isa);

}  // namespace cb::kernels::cpu
