// cb_m16_stream_study: the standalone measurements behind the f32 panel skew (packed_panel_steps
// in ../cpu/cpu_kernels.h) and the packed GEMM's walk (cpu_algos_packed.h), kept so anyone can
// rerun them on their machine.
//
//   cb_m16_stream_study overlap   3 sequential f32 streams from DRAM with R x 24 FMAs per 192 B
//                                 (R = 2 is the 16-row tile's ratio), against the stream alone and
//                                 the FMAs alone (on an L1-resident block): does the core overlap
//                                 the two, i.e. is the roofline's max(memory, compute) reachable?
//                                 Then the same 48 FMAs per 192 B as the packed GEMM can run them:
//                                 two 8-row passes per chunk of 64 or 512 steps (the second
//                                 rereading the chunk from L1 / L2: the slice-major walk's shape).
//   cb_m16_stream_study tiles     the 16-row tile's own walk, outside the engine: 8 x 3 tiles in two
//                                 passes over 512-step slices of K-major panels, every tile's slice
//                                 before the next slice, the next tile prefetched over both passes
//                                 (what packed_gemm_typed runs at 16 rows), against the same loop on
//                                 cached W (FMAs only); and three other shapes of the same work:
//                                 a slice-major layout (a slice of all panels contiguous), the
//                                 panel-major walk, one pass of a 16 x 1 tile.
//   cb_m16_stream_study skew [K N] the cpu backend's matmul at 16 rows and at 1 row on an [N, K] f32
//                                 weight (default 11264 x 2048: llama-1b gate + up) packed with
//                                 panels K steps apart ($CB_CPU_PANEL_SKEW=0) and skewed.
//   cb_m16_stream_study walk [K N] the same matmul at 4, 8 and 16 rows walking each tile's slices
//                                 of K before the next tile ($CB_CPU_PACKED_WALK=panel, what
//                                 decode batches get) against every tile's first slice first
//                                 ($CB_CPU_PACKED_WALK=slice, what long prefills get).
//   cb_m16_stream_study aa [K N]   the same matmul at 16 rows and at 1 as two identical cases: the
//                                 pair's own spread and bias (read the other pairs against it).
//   cb_m16_stream_study decode [K N] the same matmul at 1 row: the default tile (3 panels on
//                                 AVX-512, each prefetched 2 KiB ahead) against the 8-panel one
//                                 without prefetch that it replaced ($CB_CPU_PACKED_DECODE=wide).
//   cb_m16_stream_study sequence [ROWS [ops]] a decode step's matmuls at ROWS rows (default 16)
//                                 on llama-1b's 22 layers of distinct weights + lm_head (4.4 GB),
//                                 optionally with the rmsnorm / silu_mul / adds between them: the
//                                 engine's matmuls without the engine. Set it beside the engine's
//                                 op profile before blaming the engine for a gap to `walk`: on
//                                 2026-12-07 (Zen 5, 2 threads) it matched the engine's per-call
//                                 times within 3-7% while `walk` minutes apart read 10-15% faster or
//                                 slower with the host's memory phase (compare in one sitting).
//
// All OpenMP threads ($OMP_NUM_THREADS), weights in enough copies rotated that none starts
// L3-resident, medians of interleaved rounds. Inputs are fixed patterns (no randomness). overlap
// is AVX-512 only (elsewhere it says so and exits 0); skew runs whatever ISA the backend picks.
#include <immintrin.h>
#include <omp.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "cb/kernels/backend.h"

namespace {

using Clock = std::chrono::steady_clock;

float* huge_buffer(size_t floats, bool huge) {
  constexpr size_t kHuge = size_t(2) << 20;
  const size_t bytes = (floats * sizeof(float) + kHuge - 1) / kHuge * kHuge;
  auto* p = static_cast<float*>(std::aligned_alloc(kHuge, bytes));
  if (!p) {
    std::fprintf(stderr, "cb_m16_stream_study: cannot allocate %zu bytes\n", bytes);
    std::exit(1);
  }
  ::madvise(p, bytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  for (size_t i = 0; i < floats; ++i) p[i] = 1e-3f * float(i % 7);
  return p;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// One k step of an 8-row x 3-vector tile: each row's x broadcast against the 3 vectors of W
// (24 accumulators, row-major in acc), as packed_tile runs it.
__attribute__((target("avx512f"), always_inline)) inline void fma_8x3(__m512* acc, const float* xk, __m512 w0, __m512 w1,
                                                                       __m512 w2) {
  for (int m = 0; m < 8; ++m) {
    const __m512 x = _mm512_set1_ps(xk[m]);
    acc[m * 3 + 0] = _mm512_fmadd_ps(x, w0, acc[m * 3 + 0]);
    acc[m * 3 + 1] = _mm512_fmadd_ps(x, w1, acc[m * 3 + 1]);
    acc[m * 3 + 2] = _mm512_fmadd_ps(x, w2, acc[m * 3 + 2]);
  }
}

// One k step of such a tile with W's 3 vectors loaded from the 3 streams at `off`.
__attribute__((target("avx512f"), always_inline)) inline void step_8x3(__m512* acc, const float* const* s, long off,
                                                                        const float* xk) {
  fma_8x3(acc, xk, _mm512_loadu_ps(s[0] + off), _mm512_loadu_ps(s[1] + off), _mm512_loadu_ps(s[2] + off));
}

// The sum of both passes' outputs: what keeps the work alive.
inline float sum_passes(const float (*y)[24 * 16]) {
  float sum = 0.f;
  for (int p = 0; p < 2; ++p)
    for (int i = 0; i < 24 * 16; ++i) sum += y[p][i];
  return sum;
}

// A pass's 24 sums added into its outputs (y: 24 x 16 floats), as packed_tile ends a slice.
__attribute__((target("avx512f"), always_inline)) inline void add_into(float* y, const __m512* acc) {
  for (int i = 0; i < 24; ++i) _mm512_store_ps(y + i * 16, _mm512_add_ps(_mm512_load_ps(y + i * 16), acc[i]));
}

// ---- overlap ---------------------------------------------------------------------------------
// MODE 0: stream + FMAs, 1: FMAs only (the same loads from a 4 KiB block), 2: stream only.
// x is broadcast from an interleaved block as the packed tile does (8 values per row group and
// step, 64 steps cycled: L1-resident), each of the R groups its own: 8 x vectors held in
// registers beside the 24 accumulators and 3 loads spilled (35 of 32 registers), which held
// "FMAs only" to ~0.7 of the FMA peak before.
template <int R, int MODE>
__attribute__((target("avx512f"), noinline)) float stream_fma(const float* w, long steps) {
  __m512 acc[24];
  for (auto& a : acc) a = _mm512_setzero_ps();
  alignas(64) float xi[64 * 8 * R];
  for (int i = 0; i < 64 * 8 * R; ++i) xi[i] = 1e-7f * float(i % (8 * R) + 1);
  const float* s0 = w;
  const float* s1 = w + steps * 16;
  const float* s2 = w + 2 * steps * 16;
  for (long k = 0; k < steps; ++k) {
    const long off = MODE == 1 ? (k & 63) * 16 : k * 16;
    if (MODE != 1) {
      _mm_prefetch(reinterpret_cast<const char*>(s0 + off) + 2048, _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(s1 + off) + 2048, _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(s2 + off) + 2048, _MM_HINT_T0);
    }
    const __m512 w0 = _mm512_loadu_ps(s0 + off), w1 = _mm512_loadu_ps(s1 + off), w2 = _mm512_loadu_ps(s2 + off);
    if (MODE == 2) {
      acc[0] = _mm512_add_ps(acc[0], w0);
      acc[1] = _mm512_add_ps(acc[1], w1);
      acc[2] = _mm512_add_ps(acc[2], w2);
      continue;
    }
    const float* xk = xi + (k & 63) * 8 * R;
    for (int r = 0; r < R; ++r) fma_8x3(acc, xk + r * 8, w0, w1, w2);
  }
  __m512 s = acc[0];
  for (int i = 1; i < 24; ++i) s = _mm512_add_ps(s, acc[i]);
  float lanes[16];
  _mm512_storeu_ps(lanes, s);
  float sum = 0.f;
  for (float v : lanes) sum += v;
  return sum;
}

// The 16-row tile as the packed GEMM can run it (48 accumulators do not fit): two 8 x 3 passes
// over each chunk of C steps, the first loading W from the streams (prefetched as above), the
// second rereading the chunk (3 x C x 64 B, from L1 at C = 64) with its own rows of x; each pass
// starts from zero and adds its 24 sums into y at the end, as packed_tile does per slice.
// MODE 0: streams + FMAs, 1: FMAs only (the chunk read from a 4 KiB block).
template <int C, int MODE>
__attribute__((target("avx512f"), noinline)) float stream_fma_passes(const float* w, long steps) {
  alignas(64) float xi[64 * 16];
  for (int i = 0; i < 64 * 16; ++i) xi[i] = 1e-7f * float(i % 16 + 1);
  alignas(64) float y[2][24 * 16] = {};
  const float* s[3] = {w, w + steps * 16, w + 2 * steps * 16};
  for (long k0 = 0; k0 + C <= steps; k0 += C)
    for (int pass = 0; pass < 2; ++pass) {
      __m512 acc[24];
      for (auto& a : acc) a = _mm512_setzero_ps();
      for (long k = k0; k < k0 + C; ++k) {
        const long off = MODE == 1 ? (k & 63) * 16 : k * 16;
        if (MODE != 1 && pass == 0)
          for (int j = 0; j < 3; ++j) _mm_prefetch(reinterpret_cast<const char*>(s[j] + off) + 2048, _MM_HINT_T0);
        step_8x3(acc, s, off, xi + (k & 63) * 16 + pass * 8);
      }
      add_into(y[pass], acc);
    }
  return sum_passes(y);
}

// ---- tiles -----------------------------------------------------------------------------------
// The packed GEMM's 16-row work on P panels of K = 2048 f32 steps (16 columns each):
// 8 x 3 tiles, two 8-row passes per tile and 512-step slice, each pass's 24 sums added into y.
// LAYOUT 0: panels K-major one after another, K + 3 steps apart (the engine's packing, skewed as
// packed_panel_steps lays 2048-step panels); 1: slice-major ([slice]
// [panel][512][16]: a slice of every panel is one run). PANEL_MAJOR: each tile's slices in turn
// before the next tile (else every tile's slice before the next slice). Both passes prefetch the
// next tile in walk order, every other line each (packed_tile's NextTile). HOT: the tiles reuse
// the first 6 panels (W cached: the FMAs alone).
template <int LAYOUT, bool PANEL_MAJOR, bool HOT>
__attribute__((target("avx512f"), noinline)) float tile_walk(const float* w, long P, long K) {
  constexpr long C = 512;
  alignas(64) float xi[64 * 16];
  for (int i = 0; i < 64 * 16; ++i) xi[i] = 1e-7f * float(i % 16 + 1);
  alignas(64) float y[2][24 * 16] = {};
  auto at = [&](long p, long k) {
    if (HOT) p %= 6;
    return LAYOUT == 0 ? w + (p * (K + 3) + k) * 16 : w + ((k / C) * P * C + p * C + k % C) * 16;
  };
  const long tiles = P / 3, slices = K / C, n = tiles * slices;
  auto tile_of = [&](long it, long& p, long& k0) {
    p = (PANEL_MAJOR ? it / slices : it % tiles) * 3;
    k0 = (PANEL_MAJOR ? it % slices : it / tiles) * C;
  };
  for (long it = 0; it < n; ++it) {
    long p, k0, pn, kn;
    tile_of(it, p, k0);
    tile_of(std::min(it + 1, n - 1), pn, kn);
    const float* s[3] = {at(p, k0), at(p + 1, k0), at(p + 2, k0)};
    const float* nx[3] = {at(pn, kn), at(pn + 1, kn), at(pn + 2, kn)};
    for (int pass = 0; pass < 2; ++pass) {
      __m512 acc[24];
      for (auto& a : acc) a = _mm512_setzero_ps();
      for (long k = 0; k < C; ++k) {
        const long off = k * 16;
        if (!HOT && (k & 1) == pass)
          for (int j = 0; j < 3; ++j) _mm_prefetch(reinterpret_cast<const char*>(nx[j] + off), _MM_HINT_T0);
        step_8x3(acc, s, off, xi + (k & 63) * 16 + pass * 8);
      }
      add_into(y[pass], acc);
    }
  }
  return sum_passes(y);
}

// The same work in one pass: a 16 x 1 tile (16 accumulators, x's 16 values of a step broadcast
// from an interleaved copy of all K), each panel through all of K, prefetched 2 KiB ahead.
template <bool HOT>
__attribute__((target("avx512f"), noinline)) float tile_16x1(const float* w, long P, long K) {
  std::vector<float> xbuf(size_t(K * 16));
  for (long i = 0; i < K * 16; ++i) xbuf[size_t(i)] = 1e-7f * float(i % 16 + 1);
  alignas(64) float y[16 * 16] = {};
  for (long p = 0; p < P; ++p) {
    const float* s0 = w + (HOT ? p % 3 : p) * K * 16;
    __m512 acc[16];
    for (auto& a : acc) a = _mm512_setzero_ps();
    for (long k = 0; k < K; ++k) {
      if (!HOT) _mm_prefetch(reinterpret_cast<const char*>(s0 + k * 16) + 2048, _MM_HINT_T0);
      const __m512 w0 = _mm512_loadu_ps(s0 + k * 16);
      const float* xk = xbuf.data() + k * 16;
#pragma GCC unroll 16
      for (int m = 0; m < 16; ++m) acc[m] = _mm512_fmadd_ps(_mm512_set1_ps(xk[m]), w0, acc[m]);
    }
    for (int i = 0; i < 16; ++i) _mm512_store_ps(y + i * 16, _mm512_add_ps(_mm512_load_ps(y + i * 16), acc[i]));
  }
  float sum = 0.f;
  for (float v : y) sum += v;
  return sum;
}

int run_tiles() {
  const int nt = omp_get_max_threads();
  constexpr long K = 2048;
  const long P = ((long(512) << 20) / nt / (K * 64)) / 3 * 3;  // 512 MiB of W in all
  std::vector<float*> bufs(size_t(nt), nullptr);
  for (auto& b : bufs) b = huge_buffer(size_t(P * (K + 3) * 16), true);
  using Loop = float (*)(const float*, long, long);
  struct Case {
    Loop loop;
    const char* what;
  };
  const Case cases[] = {
      {tile_walk<0, false, true>, "8 x 3 tiles, two passes, FMAs only (W cached)"},
      {tile_walk<0, false, false>, "8 x 3 tiles, two passes, slice-major walk (the engine's)"},
      {tile_walk<0, true, false>, "8 x 3 tiles, two passes, panel-major walk"},
      {tile_walk<1, false, false>, "8 x 3 tiles, two passes, slice-major walk, slice-major layout"},
      {tile_16x1<true>, "16 x 1 tiles, one pass, FMAs only (W cached)"},
      {tile_16x1<false>, "16 x 1 tiles, one pass"},
  };
  constexpr int kCases = sizeof(cases) / sizeof(cases[0]);
  // Cases interleaved round by round: this host's bandwidth moves by tens of percent in minutes.
  std::vector<double> t[kCases];
  for (int round = 0; round < 7; ++round)
    for (int i = 0; i < kCases; ++i) {
      float sink = 0.f;
      const auto t0 = Clock::now();
#pragma omp parallel reduction(+ : sink)
      sink += cases[i].loop(bufs[size_t(omp_get_thread_num())], P, K);
      t[i].push_back(std::chrono::duration<double>(Clock::now() - t0).count() * 1e3);
      if (sink == 1234.5f) std::puts("");  // keeps the sums alive
    }
  const double flops = 2.0 * 16 * double(P) * 16 * K * nt;  // 16 rows x 16 columns a panel
  std::printf("16 rows x %ld panels x K %ld per thread (%.0f MiB of f32 W in all), %d threads, medians of 7 rounds\n", P, K,
              double(P) * K * 64 * nt / (1 << 20), nt);
  for (int i = 0; i < kCases; ++i) {
    const double ms = median(t[i]);
    const double hot = median(t[i < 4 ? 0 : 4]);
    std::printf("%-62s %7.2f ms (%3.0f GFLOP/s)  %.2f x its FMAs only\n", cases[i].what, ms, flops / ms / 1e6, ms / hot);
  }
  return 0;
}

int run_overlap() {
  const int nt = omp_get_max_threads();
  const long steps = (long(512) << 20) / nt / (3 * 64);  // 512 MiB in all, 3 streams per thread
  std::vector<float*> bufs(size_t(nt), nullptr);
  for (auto& b : bufs) b = huge_buffer(size_t(3 * steps * 16 + 4096), true);
  // Eleven loops, each timed once per round, rounds interleaved: this host's bandwidth moves by
  // tens of percent within minutes, so each comparison is between neighbours in time.
  using Loop = float (*)(const float*, long);
  constexpr int kLoops = 11;
  const Loop loops[kLoops] = {stream_fma<1, 2>,          stream_fma<1, 1>,          stream_fma<1, 0>,
                              stream_fma<2, 1>,          stream_fma<2, 0>,          stream_fma<3, 1>,
                              stream_fma<3, 0>,          stream_fma_passes<64, 1>,  stream_fma_passes<64, 0>,
                              stream_fma_passes<512, 1>, stream_fma_passes<512, 0>};
  std::vector<double> t[kLoops];
  for (int round = 0; round < 9; ++round)
    for (int i = 0; i < kLoops; ++i) {
      float sink = 0.f;
      const auto t0 = Clock::now();
#pragma omp parallel reduction(+ : sink)
      sink += loops[i](bufs[size_t(omp_get_thread_num())], steps);
      t[i].push_back(std::chrono::duration<double>(Clock::now() - t0).count() * 1e3);
      if (sink == 1234.5f) std::puts("");  // keeps the sums alive
    }
  const double mem = median(t[0]);
  std::printf("stream only: %.2f ms (%.1f GB/s, %d threads; medians of 9 interleaved rounds)\n", mem,
              3.0 * double(steps) * 64 * nt / mem / 1e6, nt);
  for (int r = 1; r <= 3; ++r) {
    const double fma = median(t[2 * r - 1]), both = median(t[2 * r]);
    std::printf("R = %d (%2d FMAs per 192 B): FMAs only %.2f ms, both %.2f ms = %.2f x max(stream, FMAs) (sum: %.2f x)\n", r,
                24 * r, fma, both, both / std::max(mem, fma), (mem + fma) / std::max(mem, fma));
  }
  for (int c = 0; c < 2; ++c) {
    const double fma = median(t[7 + 2 * c]), both = median(t[8 + 2 * c]);
    std::printf("two 8-row passes per %3d-step chunk (48 FMAs per 192 B): FMAs only %.2f ms, both %.2f ms = %.2f x max(stream, FMAs) (sum: %.2f x)\n",
                c ? 512 : 64, fma, both, both / std::max(mem, fma), (mem + fma) / std::max(mem, fma));
  }
  return 0;
}

// ---- skew, walk ------------------------------------------------------------------------------
// The engine's own matmul (cpu backend, packed weights in huge-page memory) on a [N, K] f32
// weight, under two backends made with `var` set to values[0] and values[1]: rows of x from
// `rows`, 40 interleaved rounds (the two cases alternate, so host drift hits both), copies of the
// weight rotated so no call starts with it in L3 (see run_pair). Medians, and the median of the
// per-round ratios case 0 / case 1 (> 1: case 1 faster).
std::unique_ptr<cb::kernels::Backend> cpu_backend_with(const char* var, const char* value) {
  ::setenv(var, value, 1);
  auto be = cb::kernels::make_backend("cpu");
  ::unsetenv(var);
  return be;
}

int run_pair(const char* mode, const char* var, const char* const values[2], const char* const names[2], long K, long N,
             const std::vector<int64_t>& rows) {
  using cb::kernels::DType;
  using cb::kernels::Tensor;
  using cb::kernels::Weight;
  if (K <= 0 || N <= 0) {
    std::fprintf(stderr, "cb_m16_stream_study %s: K and N must be positive (got K=%ld N=%ld)\n", mode, K, N);
    return 2;
  }
  const int64_t max_rows = *std::max_element(rows.begin(), rows.end());
  std::vector<float> host(size_t(N * K)), x(size_t(max_rows * K)), y(size_t(max_rows * N));
  for (size_t i = 0; i < host.size(); ++i) host[i] = 1e-3f * float(int(i % 7) - 3);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 1e-2f * float(int(i % 5) - 2);
  struct Case {
    std::unique_ptr<cb::kernels::Backend> be;
    std::vector<Weight> copies;
    std::vector<std::vector<double>> ms;  // per entry of rows
  };
  // Every call reads a copy no call has touched for at least kColdBytes of other weights (the
  // engine reads each weight once per step, ~4 GB apart): a copy the previous call (another row
  // count) just streamed would start partly in L3 and flatter the figure. At most 64 copies a
  // case: below 16 MiB a weight is cache-sized anyway (and each copy takes a 2 MiB page).
  constexpr double kColdBytes = 1024.0 * 1024 * 1024;
  const int n_copies = std::clamp(int(std::ceil(kColdBytes / (4.0 * double(N) * double(K)))) + 1, 2, 64);
  Case cases[2];
  for (int c = 0; c < 2; ++c) {
    cases[c].be = cpu_backend_with(var, values[c]);
    cases[c].ms.resize(rows.size());
  }
  // The two cases' copies allocated alternately, so neither gets all the early (or late) memory.
  for (int i = 0; i < n_copies; ++i)
    for (Case& c : cases) c.copies.push_back(c.be->upload_weight(Weight::dense(Tensor(host.data(), DType::F32, {N, K}))));
  size_t next_copy = 0;  // one rotation over both cases' copies
  constexpr int kRounds = 40;
  for (int round = 0; round < kRounds; ++round)
    for (int ci = 0; ci < 2; ++ci) {
      Case& c = cases[round % 2 ? 1 - ci : ci];  // ABBA: neither case always runs first
      for (size_t r = 0; r < rows.size(); ++r) {
        Tensor xt(x.data(), DType::F32, {rows[r], K}), yt(y.data(), DType::F32, {rows[r], N});
        const auto t0 = Clock::now();
        const Weight& w = c.copies[next_copy++ % c.copies.size()];
        if (!c.be->matmul(xt, w, yt).ok()) {
          std::fprintf(stderr, "cb_m16_stream_study %s: matmul failed\n", mode);
          return 1;
        }
        c.ms[r].push_back(std::chrono::duration<double>(Clock::now() - t0).count() * 1e3);
      }
    }
  std::printf("K=%ld N=%ld f32, cpu backend's packed matmul, %d threads, medians of %d interleaved rounds, %d copies a case "
              "(a call's copy untouched since up to 1 GiB of other weights)\n",
              K, N, omp_get_max_threads(), kRounds, n_copies);
  const double bytes = 4.0 * double(N) * double(K);
  for (int c = 0; c < 2; ++c) {
    std::printf("%-14s (%s):", names[c], cases[c].copies[0].packed.describe().c_str());
    for (size_t r = 0; r < rows.size(); ++r) {
      const double m = median(cases[c].ms[r]);
      std::printf("%s %ld row%s %.3f ms (%.1f GB/s, %.0f GFLOP/s)", r ? ";" : "", long(rows[r]), rows[r] == 1 ? "" : "s", m, bytes / m / 1e6,
                  2.0 * double(rows[r]) * double(N) * double(K) / m / 1e6);
    }
    std::printf("\n");
  }
  for (size_t r = 0; r < rows.size(); ++r) {
    std::vector<double> ratio;
    for (int i = 0; i < kRounds; ++i) ratio.push_back(cases[0].ms[r][size_t(i)] / cases[1].ms[r][size_t(i)]);
    std::sort(ratio.begin(), ratio.end());
    std::printf("%ld row%s: %s / %s time %.3f (quartiles %.3f, %.3f)\n", long(rows[r]), rows[r] == 1 ? "" : "s", names[0],
                names[1], ratio[kRounds / 2], ratio[kRounds / 4], ratio[3 * kRounds / 4]);
  }
  return 0;
}

// ---- sequence --------------------------------------------------------------------------------
// The engine's decode step at `rows` rows with only its matmuls: llama-1b's 22 layers of distinct
// weights (q/k/v and gate/up as one matmul_multi each, o_proj, down_proj) and lm_head, 4.4 GB of
// f32, each read once per step as the engine reads them; with `ops`, also the rmsnorm, silu_mul
// and residual adds between them (on the same buffers). Per-op medians over 7 steps: set beside
// `walk` (one weight, copies rotated) and the engine's op profile, it says whether a gap between
// them comes from the other ops or from the matmuls meeting one weight after another.
int run_sequence(int64_t rows, bool ops) {
  using cb::kernels::DType;
  using cb::kernels::MatmulOutput;
  using cb::kernels::Tensor;
  using cb::kernels::Weight;
  constexpr int64_t D = 2048, KV = 256, F = 5632, V = 32000;
  constexpr int kLayers = 22, kSteps = 7;
  auto be = cb::kernels::make_backend("cpu");
  auto weight = [&](int64_t n, int64_t k) {
    std::vector<float> host(size_t(n * k));
    for (size_t i = 0; i < host.size(); ++i) host[i] = 1e-3f * float(int(i % 7) - 3);
    return be->upload_weight(Weight::dense(Tensor(host.data(), DType::F32, {n, k})));
  };
  struct Layer {
    Weight q, k, v, o, gate, up, down;
  };
  std::vector<Layer> layers;
  for (int l = 0; l < kLayers; ++l)
    layers.push_back({weight(D, D), weight(KV, D), weight(KV, D), weight(D, D), weight(F, D), weight(F, D), weight(D, F)});
  const Weight lm_head = weight(V, D);
  std::vector<float> norm_w(size_t(D), 1.f);
  const Tensor norm(norm_w.data(), DType::F32, {D});
  std::vector<float> bx(size_t(rows * D), 0.01f), bh(size_t(rows * D)), bq(size_t(rows * D)), bk(size_t(rows * KV)),
      bv(size_t(rows * KV)), bo(size_t(rows * D)), bg(size_t(rows * F)), bu(size_t(rows * F)), bf(size_t(rows * F)),
      bl(size_t(rows * V));
  Tensor x(bx.data(), DType::F32, {rows, D}), h(bh.data(), DType::F32, {rows, D}), q(bq.data(), DType::F32, {rows, D}),
      k(bk.data(), DType::F32, {rows, KV}), v(bv.data(), DType::F32, {rows, KV}), o(bo.data(), DType::F32, {rows, D}),
      g(bg.data(), DType::F32, {rows, F}), u(bu.data(), DType::F32, {rows, F}), f(bf.data(), DType::F32, {rows, F}),
      logits(bl.data(), DType::F32, {rows, V});
  const char* names[5] = {"q/k/v_proj", "o_proj", "gate/up_proj", "down_proj", "lm_head"};
  std::vector<double> ms[6];  // per op kind, then the step
  bool ok = true;
  auto timed = [&](double& into, auto&& call) {
    const auto t0 = Clock::now();
    ok = call().ok() && ok;
    into += std::chrono::duration<double>(Clock::now() - t0).count() * 1e3;
  };
  for (int step = 0; step < kSteps; ++step) {
    double t[5] = {};
    const auto s0 = Clock::now();
    for (const Layer& L : layers) {
      if (ops) ok = be->rmsnorm(x, norm, 1e-5f, h).ok() && ok;
      const MatmulOutput qkv[3] = {{&L.q, &q}, {&L.k, &k}, {&L.v, &v}};
      timed(t[0], [&] { return be->matmul_multi(ops ? h : x, qkv); });
      timed(t[1], [&] { return be->matmul(q, L.o, o); });
      if (ops) ok = be->add(x, o, x).ok() && be->rmsnorm(x, norm, 1e-5f, h).ok() && ok;
      const MatmulOutput gu[2] = {{&L.gate, &g}, {&L.up, &u}};
      timed(t[2], [&] { return be->matmul_multi(ops ? h : x, gu); });
      if (ops) ok = be->silu_mul(g, u, f).ok() && ok;
      timed(t[3], [&] { return be->matmul(f, L.down, o); });
      if (ops) ok = be->add(x, o, x).ok() && ok;
    }
    timed(t[4], [&] { return be->matmul(x, lm_head, logits); });
    ms[5].push_back(std::chrono::duration<double>(Clock::now() - s0).count() * 1e3);
    for (int i = 0; i < 5; ++i) ms[i].push_back(t[i] / (i == 4 ? 1 : kLayers));
  }
  if (!ok) {
    std::fprintf(stderr, "cb_m16_stream_study sequence: an op failed\n");
    return 1;
  }
  std::printf("llama-1b decode step's matmuls%s at %ld rows, f32, cpu backend, %d threads, medians of %d steps\n",
              ops ? " with rmsnorm, silu_mul and the residual adds" : " only", long(rows), omp_get_max_threads(), kSteps);
  const double bytes[5] = {4.0 * D * (D + 2 * KV), 4.0 * D * D, 8.0 * D * F, 4.0 * D * F, 4.0 * D * V};
  for (int i = 0; i < 5; ++i) {
    const double m = median(ms[i]);
    std::printf("  %-13s %8.3f ms a call (%.1f GB/s, %.0f GFLOP/s)\n", names[i], m, bytes[i] / m / 1e6,
                2.0 * double(rows) * bytes[i] / 4.0 / m / 1e6);
  }
  std::printf("  step          %8.3f ms\n", median(ms[5]));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode != "overlap" && mode != "tiles" && mode != "skew" && mode != "walk" && mode != "decode" && mode != "sequence" &&
      mode != "aa") {
    std::fprintf(stderr,
                 "usage: cb_m16_stream_study overlap | skew [K N] | walk [K N] | decode [K N] | aa [K N] | tiles | "
                 "sequence [ROWS [ops]]\n");
    return 2;
  }
  if (mode == "sequence") {
    const long rows = argc > 2 ? std::atol(argv[2]) : 16;
    if (rows <= 0) {
      std::fprintf(stderr, "cb_m16_stream_study sequence: ROWS must be positive (got '%s')\n", argv[2]);
      return 2;
    }
    return run_sequence(rows, argc > 3 && std::string(argv[3]) == "ops");
  }
  if (mode == "overlap") {
    if (!__builtin_cpu_supports("avx512f")) {
      std::printf("cb_m16_stream_study overlap: this CPU has no AVX-512; nothing measured\n");
      return 0;
    }
    return run_overlap();
  }
  if (mode == "tiles") {
    if (!__builtin_cpu_supports("avx512f")) {
      std::printf("cb_m16_stream_study tiles: this CPU has no AVX-512; nothing measured\n");
      return 0;
    }
    return run_tiles();
  }
  const long K = argc > 3 ? std::atol(argv[2]) : 2048, N = argc > 3 ? std::atol(argv[3]) : 11264;
  if (mode == "skew") {
    const char* const values[2] = {"0", "1"};
    const char* const names[2] = {"panels K apart", "skewed"};
    return run_pair("skew", "CB_CPU_PANEL_SKEW", values, names, K, N, {16, 1});
  }
  if (mode == "aa") {  // the same backend twice: the pair's own noise and bias, to read the others against
    const char* const values[2] = {"", ""};
    const char* const names[2] = {"first", "second"};
    return run_pair("aa", "CB_CPU_PACKED_WALK", values, names, K, N, {16, 1});
  }
  if (mode == "decode") {
    const char* const values[2] = {"wide", "prefetched"};
    const char* const names[2] = {"wide", "prefetched"};
    return run_pair("decode", "CB_CPU_PACKED_DECODE", values, names, K, N, {1});
  }
  const char* const values[2] = {"slice", "panel"};
  const char* const names[2] = {"slice-major", "panel-major"};
  return run_pair("walk", "CB_CPU_PACKED_WALK", values, names, K, N, {4, 8, 16, 64});
}
