// Private interface of the `cpu` backend: the per-ISA kernel table and the argument blocks the
// drivers hand to it.
//
// Layout of kernels/cpu/:
//   cpu_backend.cpp      the Backend class: argument checks, supports(), ISA choice
//   cpu_matmul.cpp       matmul driver: packed-panel kernel for weights packed at upload,
//                        GEMV-style kernel, oneDNN for large-M f32, threading, pack_panels;
//                        hands W8A8, bf16-dot and 2:4 sparse weights to the three files below
//   cpu_matmul_int8.cpp  W8A8: per-token quantization of x, integer GEMM (VNNI where present)
//   cpu_matmul_bf16.cpp  bf16 x bf16 dot-product GEMM (AVX512_BF16 where present)
//   cpu_matmul_sparse24.cpp  2:4 sparse GEMM over compressed values + 2-bit indices
//   cpu_attention.cpp    kv_store and the attention driver (work split, scratch)
//   cpu_elementwise.cpp  rmsnorm, rope, silu_mul, softmax, embedding, add drivers
//   cpu_algos.h          every kernel body, written once as a template over a SIMD "V" struct
//   cpu_algos_dot.h      GEMM tiles over a "D" struct of dot-product steps (int8, bf16)
//   cpu_algos_sparse24.h the 2:4 sparse tile over V
//   cpu_algos_packed.h   the outer-product tile over weights packed at upload (PackedArgs)
//   cpu_simd_*.h         the V structs: scalar, AVX2 (+FMA, F16C), AVX-512 (F, BW, VL), and
//                        the D structs of each ISA (cpu_dot_*.h)
//   isa/cpu_isa_*.cpp    instantiate the algos for one V under that ISA's target pragma and
//                        export a KernelTable; avx512_vnni and avx512_bf16 start from the
//                        AVX-512 table and replace the kernels those extensions speed up
// Drivers own OpenMP parallel regions and call kernels on ranges; kernels never spawn threads,
// so no OpenMP region is compiled under a target pragma.
#pragma once

#include <cstdint>

#include "cb/kernels/tensor.h"

namespace cb::kernels::cpu {

// Levels, each including the ones before it: avx512 is F+BW+VL; avx512_vnni adds VNNI (int8 dot
// products); avx512_bf16 adds AVX512_BF16 on top of VNNI (every CPU with BF16 has VNNI).
enum class Isa : uint8_t { Scalar, Avx2, Avx512, Avx512Vnni, Avx512Bf16 };
const char* isa_name(Isa isa);  // "scalar", "avx2", "avx512", "avx512_vnni", "avx512_bf16"
// Best ISA this machine and OS support, lowered to $CB_CPU_ISA (one of the names above) when that
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
  int64_t k_slice = 1024;  // past 8 rows of x, K is summed in slices of this many columns
  // For bf16 W at M <= 8 (else nullptr): x[M, K / 32 * 32] with each block of 32 columns
  // permuted to its 16 even columns, then its 16 odd ones (row stride K / 32 * 32); ISAs with
  // load_bf16_pairs use it, the others read x.
  const float* x_bf16_pairs = nullptr;
};

// Columns of K per slice so that a group of 6 rows of f32 x stays in this machine's L1 data
// cache (3/4 of it, rounded down to a power of two, at least 256): 1024 for 32 and 48 KiB.
int64_t gemv_k_slice();
// Bytes of a thread's outputs past which two or more row groups walk panel-major (half of this
// core's L2, from sysconf; 512 KiB where it does not say): see packed_gemm_typed.
int64_t packed_panel_major_y_bytes();

// Rows of W (K elements of elem_bytes each) per block that stays in L2 (~256 KiB) while every
// group of x rows passes over it, so W still comes from memory once: a whole multiple of 24 (lcm
// of every tile height, 8, 6, 4 and 3), so no block ends in single-row tiles.
inline int64_t l2_block_rows(int64_t K, int64_t elem_bytes) {
  constexpr int64_t kL2Bytes = int64_t(256) << 10, kTileLcm = 24;
  const int64_t row_bytes = K * elem_bytes > 0 ? K * elem_bytes : 1;
  const int64_t tiles = (kL2Bytes / row_bytes + kTileLcm - 1) / kTileLcm;
  return (tiles > 0 ? tiles : 1) * kTileLcm;
}

// A dense f32 or bf16 weight as the cpu backend packs it at upload (Weight::packed, shape
// [panels, S, 16]): panels of kPackPanel output rows, each stored K-major, S >= K steps apart
// (f32: packed_panel_steps(K, 64), or K with $CB_CPU_PANEL_SKEW=0; bf16: K), so element (n, k)
// sits at [((n / 16) * S + k) * 16 + n % 16]; the last panel is zero-padded to 16 rows and steps
// K..S-1 of every panel are zeros. y[m, n] = sum_k x[m, k] * w(n, k), f32 accumulation.
inline constexpr int64_t kPackPanel = 16;
// Steps from one panel's start to the next: `steps`, unless they fill a whole number of 4 KiB
// pages (give or take 3 lines), then 3 cache lines more. A tile streams 3 neighbouring panels
// and prefetches the next 3; panels a power of two apart (128 KiB at K = 2048 f32) start on
// the same cache sets, and on 2 MiB pages nothing scatters them. cb_m16_stream_study skew (this
// kernel, Zen 5, 2 threads, 40 interleaved rounds): 16 rows 9-11% faster skewed on gate+up,
// down_proj and lm_head; 1 row from 7% slower to 10% faster over 8 runs (llama-1b decode even,
// 5 of 8 pairs). Other skews, gate+up: 2, 8 and 16 lines 6-10% faster at 16 rows but 8-30%
// slower at 1 row; 5 lines like 3. The skew is 192 B per panel: 0.15% of memory at K = 2048.
// The backend skews f32 panels only (cpu_backend.cpp says why).
inline int64_t packed_panel_steps(int64_t steps, int64_t step_bytes) {
  constexpr int64_t kPage = 4096, kSkew = 192;
  if (step_bytes <= 0 || kSkew % step_bytes != 0) return steps;
  const int64_t r = steps * step_bytes % kPage;
  if (r >= kSkew && r <= kPage - kSkew) return steps;
  return steps + (kSkew - r + kPage) % kPage / step_bytes;  // r is a multiple of step_bytes
}
// How packed_gemm walks a tile's panels past one row group (cpu_algos_packed.h): Auto picks by the
// size of x's per-thread interleaved copy; the other two force one walk (A/B runs and tests).
enum class PackedWalk : uint8_t { Auto, PanelMajor, SliceMajor };
// How packed_gemm runs one row of x (decode): Prefetched, a few panels each prefetched ahead (the
// default); Wide, 8 panels (AVX-512; AVX2 4) left to the hardware prefetchers, as before
// 2026-12-06 (A/B runs: `cb_m16_stream_study decode`).
enum class PackedDecode : uint8_t { Prefetched, Wide };
struct PackedArgs {
  // packed_gemm: f32 [M, K]; packed_bf16dot: bf16 pairs (uint32) [M, K] where K counts pairs.
  const void* x = nullptr;  // row stride ldx >= K (same unit as K)
  int64_t ldx = 0;
  const void* wp = nullptr;  // [panels, panel_steps, 16] of wdt (F32 or BF16), or of pairs
  DType wdt = DType::F32;
  float* y = nullptr;  // [M, N], row stride N
  int64_t M = 0, N = 0, K = 0;
  int64_t panel_steps = 0;  // steps from one panel to the next (Weight::packed's dim 1; 0: K)
  int64_t k_slice = 512;    // past one tile of rows, K is summed in slices of this many steps
  int64_t panel_major_y_bytes = int64_t(512) << 10;  // packed_panel_major_y_bytes()
  PackedWalk walk = PackedWalk::Auto;
  PackedDecode decode = PackedDecode::Prefetched;
  // packed_w8a8 only: y[m, n] = (sum - 128 * wsum[n]) * xs[m] * ws[n] after the int32 sums.
  const int32_t* wsum = nullptr;  // [N] sum over k of W's row n (pack_i8_quads)
  const float* xs = nullptr;      // [M] x's per-token scales
  const float* ws = nullptr;      // [N] W's per-channel scales
  int64_t panel_stride() const { return panel_steps > 0 ? panel_steps : K; }
};
// Packs rows [n0, n1) of a row-major [N, K] weight (n0 a multiple of kPackPanel) into dst, laid
// out as above with panels S steps apart; rows past N in the last panel and steps K..S-1 become
// zeros. elem_bytes 4 (f32) or 2 (bf16).
void pack_panels(const void* src, int64_t elem_bytes, int64_t N, int64_t K, int64_t S, int64_t n0, int64_t n1, void* dst);
// A bf16 weight for bf16 x bf16 (ActQuant::Bf16) where the ISA has packed_bf16dot: panels of 16
// rows over ceil(K / 2) k pairs, S >= ceil(K / 2) pair steps apart (the backend: ceil(K / 2)),
// element (n, k) at [((n / 16) * S + k / 2) * 32 + (n % 16) * 2 + k % 2]; an odd K's last pair,
// the last panel's padding rows and pair steps past ceil(K / 2) are zeros. One 64-byte line per
// pair and panel is exactly vdpbf16ps's operand: 16 columns x 2 k.
void pack_bf16_pairs(const uint16_t* src, int64_t N, int64_t K, int64_t S, int64_t n0, int64_t n1, uint16_t* dst);

// An int8 per-channel weight for W8A8 where the ISA has packed_w8a8 (vpdpbusd): panels of 16 rows
// over ceil(K / 4) k quads, S >= ceil(K / 4) quad steps apart, element (n, k) at byte
// [((n / 16) * S + k / 4) * 64 + (n % 16) * 4 + k % 4] (one 64-byte line per quad and panel is
// vpdpbusd's signed operand: 16 columns x 4 k), zeros past K and N; then, at byte
// panels * S * 64, int32 wsum[panels * 16]: each row's sum over k (the x offset's correction).
void pack_i8_quads(const int8_t* src, int64_t N, int64_t K, int64_t S, int64_t n0, int64_t n1, uint8_t* dst);
inline int64_t packed_i8_quad_bytes(int64_t panels, int64_t S) { return panels * S * 64; }

// W8A8: y[m, n] = (sum_k xq[m, k] * w[n, k]) * xs[m] * ws[n], integer products and sums.
struct W8A8Args {
  const int8_t* xq = nullptr;  // [M, ldx]: q, or q + 128 read as u8 when KernelTable::w8a8_x_offset
  int64_t ldx = 0;             // is 128; columns K .. ldx-1 hold (offset) zeros; ldx % 64 == 0
  const float* xs = nullptr;   // [M] scale per row of x (NaN: the row had NaN/Inf)
  const int32_t* xsum = nullptr;  // [M] sum of the q row (w8a8_small only)
  const int8_t* w = nullptr;   // [N, K]
  const float* ws = nullptr;   // [N]
  float* y = nullptr;          // [M, N]
  int64_t M = 0, N = 0, K = 0;
};

// bf16 dot: y[m, n] = sum_k xb[m, k] * w[n, k], both bf16 bit patterns, f32 accumulation.
struct Bf16Args {
  const uint16_t* xb = nullptr;  // [M, ldx]; columns K .. ldx-1 zero; ldx % 32 == 0
  int64_t ldx = 0;
  const uint16_t* w = nullptr;   // [N, K]
  float* y = nullptr;            // [M, N]
  int64_t M = 0, N = 0, K = 0;
  int64_t k_slice = 1024;  // past 8 rows of x, K is summed in slices of this many columns
};

// 2:4 sparse (tensor.h): y[m, n] = sum_g vals[n, 2g] x[m, 4g + i0] + vals[n, 2g + 1] x[m, 4g + i1].
struct Sparse24Args {
  const float* x = nullptr;  // [M, ldx]
  int64_t ldx = 0;
  const void* vals = nullptr;  // [N, K/2] in wdt (f32/f16/bf16)
  DType wdt = DType::F32;
  const uint8_t* meta = nullptr;  // [N, K/4]
  float* y = nullptr;             // [M, N]
  int64_t M = 0, N = 0, K = 0;
};

// Attention over a paged cache for one sequence of a batch (see AttentionBatch / KvLayer in backend.h). One work item is
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
inline constexpr int kAttnPrefetch = 8;  // keys whose K/V rows are in flight ahead of the scores loop
inline constexpr int kAttnBlockPrefetch = 16;  // the same for 16-key blocks (attention_scores16)

// One ISA's kernels. Every function works on a range and is called from the drivers' threads.
struct KernelTable {
  Isa isa;
  // Output columns [n0, n1) for all M rows; streams each W row once per 8 rows of x.
  void (*gemv)(const GemvArgs& a, int64_t n0, int64_t n1);
  // Output columns [n0, n1) (n0 a multiple of kPackPanel) for all M rows of a packed weight.
  void (*packed_gemm)(const PackedArgs& a, int64_t n0, int64_t n1);
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

  // Rows [m0, m1) of x[., K] (row stride ldx) quantized per token as int8_scheme.h says into
  // q (row stride ldq, columns K .. ldq-1 zero), plus w8a8_x_offset; scales[m] the row's scale,
  // NaN for a row holding NaN/Inf (its q row is then zeros).
  void (*quantize_rows)(const float* x, int64_t ldx, int64_t K, int64_t m0, int64_t m1, int8_t* q, int64_t ldq,
                        float* scales, int offset);
  int w8a8_x_offset;  // 128 where the int8 dot product takes u8 x (VNNI's vpdpbusd), else 0
  // Output columns [n0, n1) for all M rows.
  void (*w8a8)(const W8A8Args& a, int64_t n0, int64_t n1);
  // For up to w8a8_small_max_m rows (0: none): a variant taking x as plain q (offset 0) and
  // W + 128 as the unsigned operand, corrected by 128 * xsum[m] (no pass over W for row sums).
  void (*w8a8_small)(const W8A8Args& a, int64_t n0, int64_t n1);
  int64_t w8a8_small_max_m;
  void (*bf16dot)(const Bf16Args& a, int64_t n0, int64_t n1);
  // Output columns [n0, n1) (n0 a multiple of kPackPanel) of a pack_bf16_pairs weight, x as bf16
  // pairs; nullptr where the ISA has no bf16 dot product (its bf16-dot weights stay row-major).
  void (*packed_bf16dot)(const PackedArgs& a, int64_t n0, int64_t n1);
  // Output columns [n0, n1) (n0 a multiple of kPackPanel) of a pack_i8_quads weight, x as u8 quads
  // (q + 128) [M, ldx]; y gets the W8A8 result. nullptr without vpdpbusd (such weights stay
  // row-major for w8a8 / w8a8_small).
  void (*packed_w8a8)(const PackedArgs& a, int64_t n0, int64_t n1);
  // Output columns [n0, n1); returns false when a meta byte in those rows is malformed (the
  // outputs are then garbage and the driver reports InvalidArgument).
  bool (*sparse24)(const Sparse24Args& a, int64_t n0, int64_t n1);
};

const KernelTable& kernels_scalar();
const KernelTable& kernels_avx2();
const KernelTable& kernels_avx512();
const KernelTable& kernels_avx512_vnni();
const KernelTable& kernels_avx512_bf16();
const KernelTable& kernels_for(Isa isa);

}  // namespace cb::kernels::cpu
