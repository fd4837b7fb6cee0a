// Machine peaks (see include/cb/peaks/machine_peaks.h for what each figure means).
//
// Each ISA path is a plain function with its own __attribute__((target(...))), chosen at run time
// with __builtin_cpu_supports, so this file builds without -m flags and runs on any x86-64.
// The compute loops keep many independent accumulator chains (enough to cover the instruction's
// latency times its throughput) and fold the accumulators into a value that is written to an
// atomic sink, so the compiler can neither drop nor shorten them.
#include "cb/peaks/machine_peaks.h"

#include <immintrin.h>
#include <omp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <new>
#include <utility>
#include <vector>
#include <string>

namespace cb::bench {
namespace {

std::atomic<double> g_sink{0};  // every compute loop's result ends here

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

int resolve_threads(int threads) { return threads > 0 ? threads : std::max(1, omp_get_max_threads()); }

// ---- fp32 FMA --------------------------------------------------------------------------------
// acc = acc * a + b converges to b / (1 - a): bounded, never denormal, never folded.
constexpr int kZmmChains = 16;  // 16 x 64 B accumulators; leaves 16 zmm free (32 in AVX-512)
constexpr int kYmmChains = 12;  // 12 of the 16 ymm registers of AVX2
constexpr int kScalarChains = 32;  // the compiler packs these into 8 SSE registers

// Horizontal sum through memory (GCC 12's _mm512_reduce_* trip -Wmaybe-uninitialized).
__attribute__((target("avx512f"))) double sum_lanes(__m512 v) {
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, v);
  double out = 0;
  for (float x : lanes) out += x;
  return out;
}

__attribute__((target("avx512f"))) double fma_avx512(int64_t rounds, float seed) {
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-6f);
  __m512 c0 = _mm512_set1_ps(seed + 0), c1 = _mm512_set1_ps(seed + 1), c2 = _mm512_set1_ps(seed + 2),
         c3 = _mm512_set1_ps(seed + 3), c4 = _mm512_set1_ps(seed + 4), c5 = _mm512_set1_ps(seed + 5),
         c6 = _mm512_set1_ps(seed + 6), c7 = _mm512_set1_ps(seed + 7), c8 = _mm512_set1_ps(seed + 8),
         c9 = _mm512_set1_ps(seed + 9), c10 = _mm512_set1_ps(seed + 10), c11 = _mm512_set1_ps(seed + 11),
         c12 = _mm512_set1_ps(seed + 12), c13 = _mm512_set1_ps(seed + 13), c14 = _mm512_set1_ps(seed + 14),
         c15 = _mm512_set1_ps(seed + 15);
  for (int64_t r = 0; r < rounds; ++r) {
    c0 = _mm512_fmadd_ps(c0, a, b); c1 = _mm512_fmadd_ps(c1, a, b);
    c2 = _mm512_fmadd_ps(c2, a, b); c3 = _mm512_fmadd_ps(c3, a, b);
    c4 = _mm512_fmadd_ps(c4, a, b); c5 = _mm512_fmadd_ps(c5, a, b);
    c6 = _mm512_fmadd_ps(c6, a, b); c7 = _mm512_fmadd_ps(c7, a, b);
    c8 = _mm512_fmadd_ps(c8, a, b); c9 = _mm512_fmadd_ps(c9, a, b);
    c10 = _mm512_fmadd_ps(c10, a, b); c11 = _mm512_fmadd_ps(c11, a, b);
    c12 = _mm512_fmadd_ps(c12, a, b); c13 = _mm512_fmadd_ps(c13, a, b);
    c14 = _mm512_fmadd_ps(c14, a, b); c15 = _mm512_fmadd_ps(c15, a, b);
  }
  const __m512 s = _mm512_add_ps(
      _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                    _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7))),
      _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)),
                    _mm512_add_ps(_mm512_add_ps(c12, c13), _mm512_add_ps(c14, c15))));
  return sum_lanes(s);
}

__attribute__((target("avx2,fma"))) double fma_avx2(int64_t rounds, float seed) {
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-6f);
  __m256 c0 = _mm256_set1_ps(seed + 0), c1 = _mm256_set1_ps(seed + 1), c2 = _mm256_set1_ps(seed + 2),
         c3 = _mm256_set1_ps(seed + 3), c4 = _mm256_set1_ps(seed + 4), c5 = _mm256_set1_ps(seed + 5),
         c6 = _mm256_set1_ps(seed + 6), c7 = _mm256_set1_ps(seed + 7), c8 = _mm256_set1_ps(seed + 8),
         c9 = _mm256_set1_ps(seed + 9), c10 = _mm256_set1_ps(seed + 10), c11 = _mm256_set1_ps(seed + 11);
  for (int64_t r = 0; r < rounds; ++r) {
    c0 = _mm256_fmadd_ps(c0, a, b); c1 = _mm256_fmadd_ps(c1, a, b);
    c2 = _mm256_fmadd_ps(c2, a, b); c3 = _mm256_fmadd_ps(c3, a, b);
    c4 = _mm256_fmadd_ps(c4, a, b); c5 = _mm256_fmadd_ps(c5, a, b);
    c6 = _mm256_fmadd_ps(c6, a, b); c7 = _mm256_fmadd_ps(c7, a, b);
    c8 = _mm256_fmadd_ps(c8, a, b); c9 = _mm256_fmadd_ps(c9, a, b);
    c10 = _mm256_fmadd_ps(c10, a, b); c11 = _mm256_fmadd_ps(c11, a, b);
  }
  const __m256 s = _mm256_add_ps(
      _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                    _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7))),
      _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11)));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, s);
  double out = 0;
  for (float v : lanes) out += v;
  return out;
}

// Baseline x86-64: separate multiply and add (no FMA), 2 flops per chain per round. GCC turns the
// chains into SSE2 packed ops, which is what plain code on such a CPU gets.
double fma_scalar(int64_t rounds, float seed) {
  float c[kScalarChains];
  for (int i = 0; i < kScalarChains; ++i) c[i] = seed + float(i);
  const float a = 0.999999f, b = 1e-6f;
  for (int64_t r = 0; r < rounds; ++r)
    for (int i = 0; i < kScalarChains; ++i) c[i] = c[i] * a + b;
  double out = 0;
  for (float v : c) out += v;
  return out;
}

// ---- bf16 / int8 dot products ------------------------------------------------------------------
// vdpbf16ps: per 32-bit lane acc += a.lo*b.lo + a.hi*b.hi, i.e. 2 products = 4 flops per lane.
// a = (1.0, -1.0), b = (0.5, 0.25): each instruction adds 0.25 per lane, exactly representable.
__attribute__((target("avx512f,avx512bf16"))) double bf16_avx512(int64_t rounds, float seed) {
  const __m512bh a = (__m512bh)_mm512_set1_epi32(int(0xBF803F80u));  // hi -1.0, lo 1.0
  const __m512bh b = (__m512bh)_mm512_set1_epi32(0x3E803F00);        // hi 0.25, lo 0.5
  __m512 c0 = _mm512_set1_ps(seed + 0), c1 = _mm512_set1_ps(seed + 1), c2 = _mm512_set1_ps(seed + 2),
         c3 = _mm512_set1_ps(seed + 3), c4 = _mm512_set1_ps(seed + 4), c5 = _mm512_set1_ps(seed + 5),
         c6 = _mm512_set1_ps(seed + 6), c7 = _mm512_set1_ps(seed + 7), c8 = _mm512_set1_ps(seed + 8),
         c9 = _mm512_set1_ps(seed + 9), c10 = _mm512_set1_ps(seed + 10), c11 = _mm512_set1_ps(seed + 11),
         c12 = _mm512_set1_ps(seed + 12), c13 = _mm512_set1_ps(seed + 13), c14 = _mm512_set1_ps(seed + 14),
         c15 = _mm512_set1_ps(seed + 15);
  for (int64_t r = 0; r < rounds; ++r) {
    c0 = _mm512_dpbf16_ps(c0, a, b); c1 = _mm512_dpbf16_ps(c1, a, b);
    c2 = _mm512_dpbf16_ps(c2, a, b); c3 = _mm512_dpbf16_ps(c3, a, b);
    c4 = _mm512_dpbf16_ps(c4, a, b); c5 = _mm512_dpbf16_ps(c5, a, b);
    c6 = _mm512_dpbf16_ps(c6, a, b); c7 = _mm512_dpbf16_ps(c7, a, b);
    c8 = _mm512_dpbf16_ps(c8, a, b); c9 = _mm512_dpbf16_ps(c9, a, b);
    c10 = _mm512_dpbf16_ps(c10, a, b); c11 = _mm512_dpbf16_ps(c11, a, b);
    c12 = _mm512_dpbf16_ps(c12, a, b); c13 = _mm512_dpbf16_ps(c13, a, b);
    c14 = _mm512_dpbf16_ps(c14, a, b); c15 = _mm512_dpbf16_ps(c15, a, b);
  }
  const __m512 s = _mm512_add_ps(
      _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                    _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7))),
      _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)),
                    _mm512_add_ps(_mm512_add_ps(c12, c13), _mm512_add_ps(c14, c15))));
  return sum_lanes(s);
}

// vpdpbusd: per 32-bit lane acc += sum of 4 u8*s8 products, i.e. 8 int ops per lane. Wrap-around of
// the int32 accumulators is harmless (vector integer adds are modular).
__attribute__((target("avx512f,avx512vnni"))) double int8_avx512(int64_t rounds, float seed) {
  const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
  const int s = int(seed);
  __m512i c0 = _mm512_set1_epi32(s + 0), c1 = _mm512_set1_epi32(s + 1), c2 = _mm512_set1_epi32(s + 2),
          c3 = _mm512_set1_epi32(s + 3), c4 = _mm512_set1_epi32(s + 4), c5 = _mm512_set1_epi32(s + 5),
          c6 = _mm512_set1_epi32(s + 6), c7 = _mm512_set1_epi32(s + 7), c8 = _mm512_set1_epi32(s + 8),
          c9 = _mm512_set1_epi32(s + 9), c10 = _mm512_set1_epi32(s + 10), c11 = _mm512_set1_epi32(s + 11),
          c12 = _mm512_set1_epi32(s + 12), c13 = _mm512_set1_epi32(s + 13), c14 = _mm512_set1_epi32(s + 14),
          c15 = _mm512_set1_epi32(s + 15);
  for (int64_t r = 0; r < rounds; ++r) {
    c0 = _mm512_dpbusd_epi32(c0, a, b); c1 = _mm512_dpbusd_epi32(c1, a, b);
    c2 = _mm512_dpbusd_epi32(c2, a, b); c3 = _mm512_dpbusd_epi32(c3, a, b);
    c4 = _mm512_dpbusd_epi32(c4, a, b); c5 = _mm512_dpbusd_epi32(c5, a, b);
    c6 = _mm512_dpbusd_epi32(c6, a, b); c7 = _mm512_dpbusd_epi32(c7, a, b);
    c8 = _mm512_dpbusd_epi32(c8, a, b); c9 = _mm512_dpbusd_epi32(c9, a, b);
    c10 = _mm512_dpbusd_epi32(c10, a, b); c11 = _mm512_dpbusd_epi32(c11, a, b);
    c12 = _mm512_dpbusd_epi32(c12, a, b); c13 = _mm512_dpbusd_epi32(c13, a, b);
    c14 = _mm512_dpbusd_epi32(c14, a, b); c15 = _mm512_dpbusd_epi32(c15, a, b);
  }
  const __m512i x = _mm512_xor_si512(
      _mm512_xor_si512(_mm512_xor_si512(_mm512_xor_si512(c0, c1), _mm512_xor_si512(c2, c3)),
                       _mm512_xor_si512(_mm512_xor_si512(c4, c5), _mm512_xor_si512(c6, c7))),
      _mm512_xor_si512(_mm512_xor_si512(_mm512_xor_si512(c8, c9), _mm512_xor_si512(c10, c11)),
                       _mm512_xor_si512(_mm512_xor_si512(c12, c13), _mm512_xor_si512(c14, c15))));
  alignas(64) int32_t lanes[16];
  _mm512_store_si512(lanes, x);
  double out = 0;
  for (int32_t v : lanes) out += v;
  return out;
}

// ---- memory read -------------------------------------------------------------------------------
constexpr size_t kSliceAlign = 4096;  // slice boundaries on page boundaries; multiple of every unroll

// A streaming buffer: 2 MiB-aligned and marked for transparent huge pages where the kernel offers
// them (madvise mode), as an inference engine's weights would be: first touch of a 1 GiB buffer
// then takes a third of the time on a VM, and TLB misses stay out of the bandwidth figure.
void* alloc_streaming(size_t bytes, bool huge) {
  constexpr size_t kHuge = size_t(2) << 20;
  const size_t rounded = (bytes + kHuge - 1) / kHuge * kHuge;
  void* p = std::aligned_alloc(kHuge, rounded);
  if (!p) throw std::bad_alloc();
  // Advisory: ignored where THP is off. NOHUGEPAGE keeps 4 KiB pages also where THP is "always".
  ::madvise(p, rounded, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  return p;
}

const char* page_text(bool huge) { return huge ? "transparent huge pages requested" : "4 KiB pages"; }

__attribute__((target("avx512f"))) uint64_t read_avx512(const unsigned char* p, size_t n) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < n; i += 256) {
    a0 = _mm512_xor_si512(a0, _mm512_load_si512(p + i));
    a1 = _mm512_xor_si512(a1, _mm512_load_si512(p + i + 64));
    a2 = _mm512_xor_si512(a2, _mm512_load_si512(p + i + 128));
    a3 = _mm512_xor_si512(a3, _mm512_load_si512(p + i + 192));
  }
  const __m512i x = _mm512_xor_si512(_mm512_xor_si512(a0, a1), _mm512_xor_si512(a2, a3));
  alignas(64) uint64_t lanes[8];
  _mm512_store_si512(lanes, x);
  uint64_t out = 0;
  for (uint64_t v : lanes) out ^= v;
  return out;
}

__attribute__((target("avx2"))) uint64_t read_avx2(const unsigned char* p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < n; i += 128) {
    a0 = _mm256_xor_si256(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_xor_si256(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_xor_si256(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    a3 = _mm256_xor_si256(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  const __m256i x = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), x);
  return lanes[0] ^ lanes[1] ^ lanes[2] ^ lanes[3];
}

// Baseline x86-64: the compiler may use SSE2 here, which is what "scalar" code gets anyway.
uint64_t read_scalar(const unsigned char* p, size_t n) {
  const uint64_t* q = reinterpret_cast<const uint64_t*>(p);
  uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  for (size_t i = 0; i < n / 8; i += 4) {
    a0 ^= q[i];
    a1 ^= q[i + 1];
    a2 ^= q[i + 2];
    a3 ^= q[i + 3];
  }
  return a0 ^ a1 ^ a2 ^ a3;
}

// STREAM triad a = b + s*c. Regular stores, as STREAM compiled plainly and likwid-bench's
// stream_* kernels do (the write-allocate read of `a` is real traffic that neither counts).
__attribute__((target("avx512f"))) void triad_avx512(float* a, const float* b, const float* c, size_t n, float k) {
  const __m512 vk = _mm512_set1_ps(k);
  for (size_t i = 0; i < n; i += 64) {
    _mm512_store_ps(a + i, _mm512_fmadd_ps(_mm512_load_ps(c + i), vk, _mm512_load_ps(b + i)));
    _mm512_store_ps(a + i + 16, _mm512_fmadd_ps(_mm512_load_ps(c + i + 16), vk, _mm512_load_ps(b + i + 16)));
    _mm512_store_ps(a + i + 32, _mm512_fmadd_ps(_mm512_load_ps(c + i + 32), vk, _mm512_load_ps(b + i + 32)));
    _mm512_store_ps(a + i + 48, _mm512_fmadd_ps(_mm512_load_ps(c + i + 48), vk, _mm512_load_ps(b + i + 48)));
  }
}

__attribute__((target("avx2,fma"))) void triad_avx2(float* a, const float* b, const float* c, size_t n, float k) {
  const __m256 vk = _mm256_set1_ps(k);
  for (size_t i = 0; i < n; i += 32) {
    _mm256_store_ps(a + i, _mm256_fmadd_ps(_mm256_load_ps(c + i), vk, _mm256_load_ps(b + i)));
    _mm256_store_ps(a + i + 8, _mm256_fmadd_ps(_mm256_load_ps(c + i + 8), vk, _mm256_load_ps(b + i + 8)));
    _mm256_store_ps(a + i + 16, _mm256_fmadd_ps(_mm256_load_ps(c + i + 16), vk, _mm256_load_ps(b + i + 16)));
    _mm256_store_ps(a + i + 24, _mm256_fmadd_ps(_mm256_load_ps(c + i + 24), vk, _mm256_load_ps(b + i + 24)));
  }
}

void triad_scalar(float* a, const float* b, const float* c, size_t n, float k) {
  for (size_t i = 0; i < n; ++i) a[i] = b[i] + k * c[i];
}

Isa best_vector_isa() { return cpu_has(Isa::Avx512) ? Isa::Avx512 : cpu_has(Isa::Avx2) ? Isa::Avx2 : Isa::Scalar; }

// ---- the repetition loop shared by every measurement -------------------------------------------
// `work(rounds)` runs the measured operation `rounds` times on all threads and returns {units of
// work done (flops or bytes), seconds measured inside the threads}; `calibrate(rounds)` runs the
// same per-thread work on one thread. Calibration grows `rounds` from `min_rounds` until a call
// lasts a quarter of the target repetition length and keeps the best rate seen; a repetition is
// that rate times the target. Calibrating on one thread keeps the cost of waking the other threads
// out of the estimate. Then a pre-roll of at least 100 ms on all threads (min_seconds / 2 when
// that is shorter): a core can take tens of milliseconds to reach its sustained clock under a
// new vector load (frequency ramp, AVX-512 licence), and a repetition taken before that would be
// a slower machine. Repetitions are short (min_seconds / 20, 2..50 ms) and many, so best-of finds
// a quiet window on a shared machine; they run until min_seconds have passed and at least 3 ran
// (at most 20 x min_seconds in all). The best repetition is the peak: a neighbour or an
// interrupt can only make a window slower than the hardware, never faster.
template <class Work, class Calibrate>
void repeat_best(Work&& work, Calibrate&& calibrate, double min_seconds, double unit_scale, int64_t min_rounds,
                 PeakResult& r) {
  const double target = min_seconds > 0 ? std::clamp(min_seconds / 20, 0.002, 0.05) : 0.002;
  int64_t rounds = std::max<int64_t>(1, min_rounds);
  double best_rate = 0;  // rounds per second
  for (int step = 0; step < 48; ++step) {
    const auto [units, secs] = calibrate(rounds);
    (void)units;
    const double dt = std::max(secs, 1e-9);
    best_rate = std::max(best_rate, double(rounds) / dt);
    if (dt >= target / 4 || rounds >= (int64_t(1) << 40)) break;
    rounds *= dt < target / 64 ? 8 : 2;
  }
  rounds = std::max<int64_t>(std::max<int64_t>(1, min_rounds), int64_t(best_rate * target));
  const double preroll = min_seconds > 0 ? std::min(0.1, min_seconds / 2) : 0;
  const auto p0 = Clock::now();
  do work(rounds);  // warm-up of all threads (at least one call)
  while (seconds_since(p0) < preroll);
  r.preroll_seconds = seconds_since(p0);
  double total = 0;
  const double budget = min_seconds > 0 ? 20 * min_seconds : 0;
  for (int rep = 0;; ++rep) {
    if (rep > 0 && (min_seconds <= 0 || total >= budget || (rep >= 3 && total >= min_seconds))) break;
    const auto [units, secs] = work(rounds);
    const double dt = std::max(secs, 1e-9);
    total += dt;
    r.samples.push_back(units / dt / unit_scale);
  }
  r.value = *std::max_element(r.samples.begin(), r.samples.end());
}

PeakResult unsupported(const char* unit, std::string why, int threads) {
  PeakResult r;
  r.unit = unit;
  r.method = "unsupported: " + std::move(why);
  r.threads = resolve_threads(threads);
  return r;
}

// Runs kernel(rounds, seed) on every thread. The threads meet at a spin barrier first and each
// times its own loop, so the window (first start to last end, taken inside the threads) leaves
// out starting and waking the thread team and joining it, which on a 2-vCPU VM can cost
// milliseconds; a timer around the parallel region would count that as slower hardware.
struct ThreadRun {
  int used = 1;
  double seconds = 0;
};

template <class Kernel>
ThreadRun run_on_threads(int threads, int64_t rounds, Kernel kernel) {
  const int n = resolve_threads(threads);
  std::vector<Clock::time_point> start(static_cast<size_t>(n)), stop(static_cast<size_t>(n));
  std::atomic<int> arrived{0};
  ThreadRun run;
  double total = 0;
#pragma omp parallel num_threads(n) reduction(+ : total)
  {
    const int id = omp_get_thread_num(), nt = omp_get_num_threads();
    if (id == 0) run.used = nt;
    arrived.fetch_add(1, std::memory_order_acq_rel);
    while (arrived.load(std::memory_order_acquire) < nt) __builtin_ia32_pause();
    start[size_t(id)] = Clock::now();
    total += kernel(rounds, float(id));
    stop[size_t(id)] = Clock::now();
  }
  const auto first = *std::min_element(start.begin(), start.begin() + run.used);
  const auto last = *std::max_element(stop.begin(), stop.begin() + run.used);
  run.seconds = std::chrono::duration<double>(last - first).count();
  g_sink.store(total, std::memory_order_relaxed);
  return run;
}

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  std::string s;
  std::getline(f, s);
  return s;
}

std::string mib(size_t bytes) {
  char buf[64];
  if (bytes >= (size_t(1) << 30))
    std::snprintf(buf, sizeof buf, "%.2f GiB", double(bytes) / double(size_t(1) << 30));
  else
    std::snprintf(buf, sizeof buf, "%.0f MiB", double(bytes) / double(size_t(1) << 20));
  return buf;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Auto: return "auto";
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512f";
    case Isa::Avx512Bf16: return "avx512_bf16";
    case Isa::Avx512Vnni: return "avx512_vnni";
  }
  return "?";
}

bool cpu_has(Isa isa) {
  __builtin_cpu_init();
  switch (isa) {
    case Isa::Auto:
    case Isa::Scalar: return true;
    case Isa::Avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::Avx512: return __builtin_cpu_supports("avx512f");
    case Isa::Avx512Bf16: return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
    case Isa::Avx512Vnni: return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vnni");
  }
  return false;
}

// ---- work functions ----------------------------------------------------------------------------

double fp32_fma_work(int threads, int64_t rounds, Isa isa, std::string* method, int* threads_used, double* seconds) {
  if (isa == Isa::Auto) isa = best_vector_isa();
  double ops_per_round = 0;  // per thread
  std::string m;
  ThreadRun run{0, 0};
  if ((isa != Isa::Avx512 && isa != Isa::Avx2 && isa != Isa::Scalar) || !cpu_has(isa)) {
    m = std::string("unsupported: fp32 fma has no ") + isa_name(isa) + " path on this cpu";
  } else if (isa == Isa::Avx512) {
    run = run_on_threads(threads, rounds, fma_avx512);
    ops_per_round = kZmmChains * 16 * 2;
    m = "avx512f vfmadd (zmm), " + std::to_string(kZmmChains) + " independent chains/thread";
  } else if (isa == Isa::Avx2) {
    run = run_on_threads(threads, rounds, fma_avx2);
    ops_per_round = kYmmChains * 8 * 2;
    m = "avx2+fma vfmadd (ymm), " + std::to_string(kYmmChains) + " independent chains/thread";
  } else {
    run = run_on_threads(threads, rounds, fma_scalar);
    ops_per_round = kScalarChains * 2;
    m = "scalar path (baseline x86-64, SSE2) mul+add, " + std::to_string(kScalarChains) + " independent chains/thread";
  }
  if (method) *method = m;
  if (threads_used) *threads_used = run.used ? run.used : resolve_threads(threads);
  if (seconds) *seconds = run.seconds;
  return ops_per_round * double(rounds) * run.used;
}

double bf16_dot_work(int threads, int64_t rounds, Isa isa, std::string* method, int* threads_used, double* seconds) {
  if (isa == Isa::Auto) isa = Isa::Avx512Bf16;
  ThreadRun run{0, 0};
  std::string m;
  if (isa != Isa::Avx512Bf16) {
    m = std::string("unsupported: bf16 dot needs avx512_bf16 (requested ") + isa_name(isa) + ")";
  } else if (!cpu_has(Isa::Avx512Bf16)) {
    m = "unsupported: no avx512_bf16";
  } else {
    run = run_on_threads(threads, rounds, bf16_avx512);
    m = "avx512_bf16 vdpbf16ps (zmm), " + std::to_string(kZmmChains) + " independent chains/thread";
  }
  if (method) *method = m;
  if (threads_used) *threads_used = run.used ? run.used : resolve_threads(threads);
  if (seconds) *seconds = run.seconds;
  return double(kZmmChains) * 16 * 4 * double(rounds) * run.used;  // 16 lanes x 2 products x 2 flops
}

double int8_dot_work(int threads, int64_t rounds, Isa isa, std::string* method, int* threads_used, double* seconds) {
  if (isa == Isa::Auto) isa = Isa::Avx512Vnni;
  ThreadRun run{0, 0};
  std::string m;
  if (isa != Isa::Avx512Vnni) {
    m = std::string("unsupported: int8 dot needs avx512_vnni (requested ") + isa_name(isa) + ")";
  } else if (!cpu_has(Isa::Avx512Vnni)) {
    m = "unsupported: no avx512_vnni";
  } else {
    run = run_on_threads(threads, rounds, int8_avx512);
    m = "avx512_vnni vpdpbusd (zmm, u8*s8->s32), " + std::to_string(kZmmChains) + " independent chains/thread";
  }
  if (method) *method = m;
  if (threads_used) *threads_used = run.used ? run.used : resolve_threads(threads);
  if (seconds) *seconds = run.seconds;
  return double(kZmmChains) * 16 * 8 * double(rounds) * run.used;  // 16 lanes x 4 products x 2 ops
}

// ---- read buffer -------------------------------------------------------------------------------

size_t last_level_cache_bytes() {
  size_t best = 0;
  int best_level = 0;
  for (int i = 0; i < 16; ++i) {  // sysfs is what lscpu reads; cpuid under a hypervisor can be odd
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    const std::string level = read_text(dir + "level"), size = read_text(dir + "size");
    if (level.empty() || size.empty()) continue;
    if (read_text(dir + "type") == "Instruction") continue;
    size_t bytes = std::strtoull(size.c_str(), nullptr, 10);
    if (size.back() == 'K') bytes <<= 10;
    if (size.back() == 'M') bytes <<= 20;
    if (std::atoi(level.c_str()) >= best_level) best_level = std::atoi(level.c_str()), best = bytes;
  }
  if (best == 0) {
    const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE), l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    best = size_t(l3 > 0 ? l3 : l2 > 0 ? l2 : 0);
  }
  return best;
}

size_t default_read_buffer_bytes() {
  size_t bytes = std::max<size_t>(size_t(1) << 30, 4 * last_level_cache_bytes());
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) bytes = std::min(bytes, size_t(pages) * size_t(page) / 4);
  return bytes;
}

ReadBuffer::ReadBuffer(size_t bytes, int threads, bool huge_pages) : huge_pages_(huge_pages), threads_(resolve_threads(threads)) {
  if (bytes == 0) bytes = default_read_buffer_bytes();
  const size_t slice = std::max<size_t>(kSliceAlign, bytes / size_t(threads_) / kSliceAlign * kSliceAlign);
  bytes_ = slice * size_t(threads_);
  data_ = static_cast<unsigned char*>(alloc_streaming(bytes_, huge_pages_));
  // First touch: the thread that will read a slice writes it first, so its pages are local.
#pragma omp parallel num_threads(threads_)
  {
    const int nt = omp_get_num_threads();
    for (int s = omp_get_thread_num(); s < threads_; s += nt) {
      uint64_t* q = reinterpret_cast<uint64_t*>(data_ + size_t(s) * slice);
      for (size_t i = 0; i < slice / 8; ++i) q[i] = (uint64_t(s) << 40) ^ (i * 0x9E3779B97F4A7C15ull);
    }
  }
}

ReadBuffer::~ReadBuffer() { std::free(data_); }

std::string ReadBuffer::method(Isa isa) const {
  if (isa == Isa::Auto) isa = best_vector_isa();
  if ((isa != Isa::Avx512 && isa != Isa::Avx2 && isa != Isa::Scalar) || !cpu_has(isa))
    return std::string("unsupported: memory read has no ") + isa_name(isa) + " path on this cpu";
  const char* how = isa == Isa::Avx512 ? "avx512f 64-byte loads" : isa == Isa::Avx2 ? "avx2 32-byte loads" : "scalar 8-byte loads";
  const size_t llc = last_level_cache_bytes();
  return std::string(how) + ", xor-reduce, " + mib(bytes_) + " buffer (" + mib(bytes_ / size_t(threads_)) +
         "/thread, first-touched, " + page_text(huge_pages_) + "), LLC " + (llc ? mib(llc) : std::string("unknown"));
}

double ReadBuffer::read_pass(Isa isa, double* seconds) {
  if (isa == Isa::Auto) isa = best_vector_isa();
  if ((isa != Isa::Avx512 && isa != Isa::Avx2 && isa != Isa::Scalar) || !cpu_has(isa)) return 0;
  const size_t slice = bytes_ / size_t(threads_);
  std::atomic<uint64_t> x{0};
  const ThreadRun run = run_on_threads(threads_, 1, [&](int64_t, float seed) {
    const int nt = omp_get_num_threads();
    uint64_t v = 0;
    for (int s = int(seed); s < threads_; s += nt) {
      const unsigned char* p = data_ + size_t(s) * slice;
      v ^= isa == Isa::Avx512 ? read_avx512(p, slice) : isa == Isa::Avx2 ? read_avx2(p, slice) : read_scalar(p, slice);
    }
    x.fetch_xor(v, std::memory_order_relaxed);
    return 0.0;
  });
  sink_ ^= x.load();
  if (seconds) *seconds = run.seconds;
  return double(bytes_);
}

// ---- triad buffers -----------------------------------------------------------------------------

TriadBuffers::TriadBuffers(size_t bytes, int threads, bool huge_pages) : huge_pages_(huge_pages), threads_(resolve_threads(threads)) {
  if (bytes == 0) bytes = default_read_buffer_bytes();
  // Per array and thread: a whole number of pages (a multiple of every unroll).
  const size_t slice = std::max<size_t>(kSliceAlign, bytes / 3 / size_t(threads_) / kSliceAlign * kSliceAlign);
  n_ = slice / sizeof(float) * size_t(threads_);
  for (float** p : {&a_, &b_, &c_}) {
    *p = static_cast<float*>(alloc_streaming(n_ * sizeof(float), huge_pages_));
  }
  const size_t per = n_ / size_t(threads_);
#pragma omp parallel num_threads(threads_)
  {
    const int nt = omp_get_num_threads();
    for (int s = omp_get_thread_num(); s < threads_; s += nt)
      for (size_t i = size_t(s) * per; i < size_t(s + 1) * per; ++i) {
        a_[i] = 0.0f;
        b_[i] = float(i % 1024) * 0.25f;
        c_[i] = float((i * 7) % 1024) * 0.5f;
      }
  }
}

TriadBuffers::~TriadBuffers() {
  std::free(a_);
  std::free(b_);
  std::free(c_);
}

std::string TriadBuffers::method(Isa isa) const {
  if (isa == Isa::Auto) isa = best_vector_isa();
  if ((isa != Isa::Avx512 && isa != Isa::Avx2 && isa != Isa::Scalar) || !cpu_has(isa))
    return std::string("unsupported: triad has no ") + isa_name(isa) + " path on this cpu";
  const char* how = isa == Isa::Avx512 ? "avx512f zmm" : isa == Isa::Avx2 ? "avx2+fma ymm" : "scalar";
  const size_t llc = last_level_cache_bytes();
  return std::string("STREAM triad a = b + s*c (fp32, ") + how + ", regular stores), 3 x " + mib(n_ * sizeof(float)) +
         " arrays (first-touched per thread, " + page_text(huge_pages_) + "), 12 bytes/element counted (no write-allocate), LLC " +
         (llc ? mib(llc) : std::string("unknown"));
}

double TriadBuffers::triad_pass(Isa isa, double* seconds) {
  if (isa == Isa::Auto) isa = best_vector_isa();
  if ((isa != Isa::Avx512 && isa != Isa::Avx2 && isa != Isa::Scalar) || !cpu_has(isa)) return 0;
  const size_t per = n_ / size_t(threads_);
  const float k = 1.5f;
  const ThreadRun run = run_on_threads(threads_, 1, [&](int64_t, float seed) {
    const int nt = omp_get_num_threads();
    for (int s = int(seed); s < threads_; s += nt) {
      const size_t o = size_t(s) * per;
      if (isa == Isa::Avx512) triad_avx512(a_ + o, b_ + o, c_ + o, per, k);
      else if (isa == Isa::Avx2) triad_avx2(a_ + o, b_ + o, c_ + o, per, k);
      else triad_scalar(a_ + o, b_ + o, c_ + o, per, k);
    }
    return 0.0;
  });
  if (seconds) *seconds = run.seconds;
  return 12.0 * double(n_);
}

// ---- measurements ------------------------------------------------------------------------------

namespace {
template <class WorkFn>
PeakResult measure_compute(WorkFn fn, const char* unit, int threads, double min_seconds, Isa isa) {
  PeakResult r;
  r.unit = unit;
  fn(threads, 1, isa, &r.method, &r.threads, nullptr);
  if (r.method.rfind("unsupported", 0) == 0) return r;
  // 4096 rounds = 64k vector instructions per thread (tens of microseconds): well above the cost
  // of starting a parallel region.
  auto timed = [&](int nthreads) {
    return [&, nthreads](int64_t rounds) {
      double secs = 0;
      const double ops = fn(nthreads, rounds, isa, nullptr, nullptr, &secs);
      return std::pair<double, double>{ops, secs};
    };
  };
  repeat_best(timed(threads), timed(1), min_seconds, 1e9, 4096, r);
  return r;
}
}  // namespace

PeakResult measure_peak_fp32_fma(int threads, double min_seconds, Isa isa) {
  return measure_compute(fp32_fma_work, "GFLOP/s", threads, min_seconds, isa);
}

PeakResult measure_bf16_dot_peak(int threads, double min_seconds, Isa isa) {
  return measure_compute(bf16_dot_work, "GFLOP/s", threads, min_seconds, isa);
}

PeakResult measure_int8_dot_peak(int threads, double min_seconds, Isa isa) {
  return measure_compute(int8_dot_work, "GOP/s", threads, min_seconds, isa);
}

PeakResult measure_memory_read_bandwidth(int threads, size_t bytes, double min_seconds, Isa isa) {
  const Isa resolved =
      isa == Isa::Auto ? best_vector_isa() : isa;
  if ((resolved != Isa::Avx512 && resolved != Isa::Avx2 && resolved != Isa::Scalar) || !cpu_has(resolved))
    return unsupported("GB/s", std::string("memory read has no ") + isa_name(resolved) + " path on this cpu", threads);
  ReadBuffer buf(bytes, threads);
  PeakResult r;
  r.unit = "GB/s";
  r.threads = buf.threads();
  r.method = buf.method(resolved);
  // One "round" is one full pass over the buffer (a pass over 1 GiB takes tens of milliseconds, so
  // a repetition is usually a single pass). Calibrated on all threads: the buffer is split by thread.
  auto passes = [&](int64_t rounds) {
    double b = 0, secs = 0;
    for (int64_t i = 0; i < rounds; ++i) {
      double s = 0;
      b += buf.read_pass(resolved, &s);
      secs += s;
    }
    return std::pair<double, double>{b, secs};
  };
  repeat_best(passes, passes, min_seconds, 1e9, 1, r);
  g_sink.store(double(buf.checksum() & 0xffff), std::memory_order_relaxed);
  return r;
}

PeakResult measure_triad_bandwidth(int threads, size_t bytes, double min_seconds, Isa isa) {
  const Isa resolved = isa == Isa::Auto ? best_vector_isa() : isa;
  if ((resolved != Isa::Avx512 && resolved != Isa::Avx2 && resolved != Isa::Scalar) || !cpu_has(resolved))
    return unsupported("GB/s", std::string("triad has no ") + isa_name(resolved) + " path on this cpu", threads);
  TriadBuffers buf(bytes, threads);
  PeakResult r;
  r.unit = "GB/s";
  r.threads = buf.threads();
  r.method = buf.method(resolved);
  auto passes = [&](int64_t rounds) {
    double b = 0, secs = 0;
    for (int64_t i = 0; i < rounds; ++i) {
      double s = 0;
      b += buf.triad_pass(resolved, &s);
      secs += s;
    }
    return std::pair<double, double>{b, secs};
  };
  repeat_best(passes, passes, min_seconds, 1e9, 1, r);
  return r;
}

namespace {
// Pre-roll (and rate estimate) for 100 ms, then one window of `seconds`; pass(n) runs n units of
// the operation on all threads and returns {flops or bytes, in-thread seconds}.
template <class Pass>
double one_window(Pass&& pass, int64_t n, bool grow, double seconds) {
  double rate = 0;  // n-units per second
  const auto p0 = Clock::now();
  while (seconds_since(p0) < 0.1) {
    const auto [u, s] = pass(n);
    (void)u;
    rate = std::max(rate, double(n) / std::max(s, 1e-9));
    if (grow && s < 0.01) n *= 2;
  }
  const auto [units, secs] = pass(std::max<int64_t>(1, int64_t(rate * seconds)));
  return secs > 0 ? units / secs / 1e9 : 0.0;
}

template <class Buf, class PassFn>
double buffer_window(Buf& buf, PassFn fn, double seconds) {
  return one_window(
      [&](int64_t n) {
        double units = 0, secs = 0;
        for (int64_t i = 0; i < n; ++i) {
          double s = 0;
          units += (buf.*fn)(Isa::Auto, &s);
          secs += s;
        }
        return std::pair<double, double>{units, secs};
      },
      1, false, seconds);
}
}  // namespace

double sustained_fp32_fma_rate(int threads, double seconds) {
  return one_window(
      [&](int64_t rounds) {
        double secs = 0;
        const double ops = fp32_fma_work(threads, rounds, Isa::Auto, nullptr, nullptr, &secs);
        return std::pair<double, double>{ops, secs};
      },
      4096, true, seconds);
}

double sustained_rate(ReadBuffer& buf, double seconds) { return buffer_window(buf, &ReadBuffer::read_pass, seconds); }
double sustained_rate(TriadBuffers& buf, double seconds) { return buffer_window(buf, &TriadBuffers::triad_pass, seconds); }

nlohmann::json to_json(const PeakResult& r) {
  return nlohmann::json{{"value", r.value},     {"unit", r.unit},       {"method", r.method},
                        {"threads", r.threads}, {"samples", r.samples}, {"supported", r.method.rfind("unsupported", 0) != 0},
                        {"estimator", "best of the samples (each a window timed inside the threads)"},
                        {"preroll_s", r.preroll_seconds}};
}

}  // namespace cb::bench
