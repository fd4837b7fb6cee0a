// Machine peaks: what the hardware can do at best, measured, so kernel results can be read as a
// fraction of it (roofline). Each measurement runs on all requested threads at once, after a
// pre-roll of up to 100 ms (the clock's ramp under a new vector load), repeats until `min_seconds`
// have passed (at least 3 repetitions), and reports the best repetition; every repetition's value
// is kept in `samples`. A repetition is timed inside the threads, from a spin barrier to the last
// thread's end: starting, waking and joining the thread team is not counted as hardware time.
//
//   fp32 FMA      : independent FMA chains per thread (16 zmm / 12 ymm accumulators), GFLOP/s,
//                   2 flops per FMA lane.
//   memory read   : streaming vector-load reduction over a buffer far larger than the LLC; each
//                   thread reads the slice it first touched (NUMA-local), GB/s (1e9 bytes).
//   memory triad  : STREAM triad a = b + s*c in fp32 over three such arrays, regular stores, 12
//                   bytes counted per element as STREAM and likwid-bench count them (the
//                   write-allocate read of a is not counted), GB/s.
//   bf16 dot      : _mm512_dpbf16_ps (AVX512_BF16), GFLOP/s, 2 flops per bf16 product.
//   int8 dot      : _mm512_dpbusd_epi32 (AVX512_VNNI), GOP/s, 2 ops per u8*s8 product.
//
// The bf16 and int8 figures are the CPU analogue of tensor-core peaks. Where an instruction set is
// missing, the result has value 0 and a method starting with "unsupported:", never a crash.
// Every code path is compiled with its own target attribute, so the library runs on any x86-64.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace cb::bench {

struct PeakResult {
  double value = 0;             // best repetition, in `unit`; 0 when unsupported
  std::string unit;             // "GFLOP/s", "GOP/s" or "GB/s"
  std::string method;           // ISA and method, e.g. "avx512f fma, 16 zmm chains/thread"; "unsupported: ..."
  int threads = 0;              // threads that actually ran
  std::vector<double> samples;  // every repetition, in `unit`
  double preroll_seconds = 0;   // warm-up before the first sample
};

// Which code path to use. Auto picks the best the CPU has; asking for a path the CPU (or the
// measurement) does not have returns an "unsupported" result, which is how tests reach that path.
enum class Isa { Auto, Scalar, Avx2, Avx512, Avx512Bf16, Avx512Vnni };
const char* isa_name(Isa isa);  // "auto", "scalar", "avx2", "avx512f", "avx512_bf16", "avx512_vnni"
bool cpu_has(Isa isa);          // run-time CPU check (Scalar and Auto: always true)

// threads = 0: omp_get_max_threads(). min_seconds <= 0: a single short repetition.
PeakResult measure_peak_fp32_fma(int threads = 0, double min_seconds = 0.2, Isa isa = Isa::Auto);
// bytes = 0: max(1 GiB, 4 x the last-level cache), at most a quarter of physical memory.
PeakResult measure_memory_read_bandwidth(int threads = 0, size_t bytes = 0, double min_seconds = 0.3,
                                         Isa isa = Isa::Auto);
// bytes: the three arrays together (0: as for the read buffer). isa: Auto, Avx512, Avx2 or Scalar.
PeakResult measure_triad_bandwidth(int threads = 0, size_t bytes = 0, double min_seconds = 0.3, Isa isa = Isa::Auto);
// isa: Auto or Avx512Bf16 (anything else reports "unsupported").
PeakResult measure_bf16_dot_peak(int threads = 0, double min_seconds = 0.2, Isa isa = Isa::Auto);
// isa: Auto or Avx512Vnni (anything else reports "unsupported").
PeakResult measure_int8_dot_peak(int threads = 0, double min_seconds = 0.2, Isa isa = Isa::Auto);

nlohmann::json to_json(const PeakResult& r);

// --- Building blocks, for callers that time the work themselves (cb_kernel_bench) -------------
//
// Run `rounds` rounds of the compute loop on `threads` threads (0 = omp max) and return the
// operations executed (flops, or int ops for int8), 0 when the path is unsupported. One round is
// one instruction on every accumulator of every thread. `method` (optional) receives the method
// string; `threads_used` (optional) the thread count; `seconds` (optional) the time measured inside
// the threads (spin barrier to the last thread's end), which is what a rate should divide by.
double fp32_fma_work(int threads, int64_t rounds, Isa isa = Isa::Auto, std::string* method = nullptr,
                     int* threads_used = nullptr, double* seconds = nullptr);
double bf16_dot_work(int threads, int64_t rounds, Isa isa = Isa::Auto, std::string* method = nullptr,
                     int* threads_used = nullptr, double* seconds = nullptr);
double int8_dot_work(int threads, int64_t rounds, Isa isa = Isa::Auto, std::string* method = nullptr,
                     int* threads_used = nullptr, double* seconds = nullptr);

// A read-bandwidth buffer: allocated once, each thread first-touches the slice it later reads.
class ReadBuffer {
 public:
  // bytes = 0 / threads = 0: defaults as above. huge_pages: ask for transparent huge pages (the
  // default, as an engine would place its weights); false gives 4 KiB pages, as tools that just
  // allocate (likwid-bench, STREAM) get: under a hypervisor their TLB misses cost ~20% of the figure.
  ReadBuffer(size_t bytes, int threads, bool huge_pages = true);
  ~ReadBuffer();
  ReadBuffer(const ReadBuffer&) = delete;
  ReadBuffer& operator=(const ReadBuffer&) = delete;

  // One streaming pass by all threads; returns the bytes read (0 when isa is unsupported) and,
  // in `seconds`, the pass's time measured inside the threads.
  double read_pass(Isa isa = Isa::Auto, double* seconds = nullptr);
  size_t bytes() const { return bytes_; }
  int threads() const { return threads_; }
  std::string method(Isa isa = Isa::Auto) const;  // e.g. "avx512f xor-reduce, 1.00 GiB buffer, LLC 32 MiB"
  uint64_t checksum() const { return sink_; }     // keeps the reads observable
  bool huge_pages() const { return huge_pages_; }

 private:
  bool huge_pages_ = true;
  unsigned char* data_ = nullptr;
  size_t bytes_ = 0;
  int threads_ = 0;
  uint64_t sink_ = 0;
};

// STREAM triad buffers (a = b + s*c, fp32): allocated once, each thread first-touches its slices.
class TriadBuffers {
 public:
  TriadBuffers(size_t bytes, int threads, bool huge_pages = true);  // bytes: the three arrays together; 0 / 0: defaults
  ~TriadBuffers();
  TriadBuffers(const TriadBuffers&) = delete;
  TriadBuffers& operator=(const TriadBuffers&) = delete;

  // One pass by all threads; returns the bytes counted (12 per element; 0 when isa is unsupported).
  double triad_pass(Isa isa = Isa::Auto, double* seconds = nullptr);
  size_t bytes() const { return 3 * n_ * sizeof(float); }
  int threads() const { return threads_; }
  std::string method(Isa isa = Isa::Auto) const;
  float element(size_t i) const { return a_[i]; }  // keeps the stores observable (tests)
  size_t elements() const { return n_; }
  bool huge_pages() const { return huge_pages_; }

 private:
  bool huge_pages_ = true;
  float* a_ = nullptr;
  float* b_ = nullptr;
  float* c_ = nullptr;
  size_t n_ = 0;  // elements per array
  int threads_ = 0;
};

size_t default_read_buffer_bytes();

// The mean rate over one long window (`seconds`, after the same pre-roll) on all threads: what a
// long-running tool such as likwid-bench or STREAM reports. For cross-checks against such tools,
// like with like; the measure_* peaks above are the best of many short windows.
// GFLOP/s or GB/s.
double sustained_fp32_fma_rate(int threads = 0, double seconds = 1.0);
double sustained_rate(ReadBuffer& buf, double seconds = 1.0);
double sustained_rate(TriadBuffers& buf, double seconds = 1.0);

size_t last_level_cache_bytes();  // 0 when unknown

}  // namespace cb::bench
