// Machine peaks library (kernels/peaks): every measurement returns a positive, physically sensible
// value with a method that names its ISA, and asking for a path the CPU or the measurement lacks
// yields "unsupported", never a crash. No timing thresholds: CI machines are shared and noisy, so
// the only bounds are ones no real machine can reach.
//
// The tests compile only where cb_unit_tests links cb_machine_peaks (its include dir is then on
// the path); until then this file is empty rather than a build break.
#if __has_include("cb/peaks/machine_peaks.h")

#include "cb/peaks/machine_peaks.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string>

namespace {

using cb::bench::Isa;
using cb::bench::PeakResult;

constexpr double kShort = 0.02;  // seconds per measurement: enough for 3 repetitions, fast in CI

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }
bool contains(const std::string& s, const std::string& p) { return s.find(p) != std::string::npos; }

// Every supported result: positive, best of its samples, sensible thread count.
void expect_supported(const PeakResult& r, const std::string& isa_word, double max_per_thread) {
  EXPECT_FALSE(starts_with(r.method, "unsupported")) << r.method;
  EXPECT_TRUE(contains(r.method, isa_word)) << r.method;
  ASSERT_FALSE(r.samples.empty());
  EXPECT_GT(r.value, 0);
  EXPECT_EQ(r.value, *std::max_element(r.samples.begin(), r.samples.end()));
  for (double s : r.samples) EXPECT_GT(s, 0);
  EXPECT_GE(r.threads, 1);
  // 1e5 G/s per thread is ~100x beyond any core that exists: catches unit and counting errors.
  EXPECT_LT(r.value / r.threads, max_per_thread) << r.method;
}

void expect_unsupported(const PeakResult& r) {
  EXPECT_TRUE(starts_with(r.method, "unsupported")) << r.method;
  EXPECT_EQ(r.value, 0);
  EXPECT_TRUE(r.samples.empty());
  EXPECT_FALSE(r.unit.empty());
}

TEST(MachinePeaks, Fp32FmaAutoPicksTheBestIsa) {
  const PeakResult r = cb::bench::measure_peak_fp32_fma(0, kShort);
  EXPECT_EQ(r.unit, "GFLOP/s");
  const std::string isa = cb::bench::cpu_has(Isa::Avx512) ? "avx512f" : cb::bench::cpu_has(Isa::Avx2) ? "avx2" : "scalar";
  expect_supported(r, isa, 1e5);
}

TEST(MachinePeaks, Fp32FmaEveryForcedIsaIsMeasuredOrUnsupported) {
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
    SCOPED_TRACE(cb::bench::isa_name(isa));
    const PeakResult r = cb::bench::measure_peak_fp32_fma(1, kShort, isa);
    if (cb::bench::cpu_has(isa)) {
      expect_supported(r, cb::bench::isa_name(isa), 1e5);
      EXPECT_EQ(r.threads, 1);
    } else {
      expect_unsupported(r);
    }
  }
}

TEST(MachinePeaks, Fp32FmaHasNoDotProductPath) {
  expect_unsupported(cb::bench::measure_peak_fp32_fma(1, kShort, Isa::Avx512Vnni));
  expect_unsupported(cb::bench::measure_peak_fp32_fma(1, kShort, Isa::Avx512Bf16));
}

TEST(MachinePeaks, WorkFunctionsCountOperationsExactly) {
  std::string method;
  int threads = 0;
  // scalar: 32 chains x (mul + add) per round.
  EXPECT_EQ(cb::bench::fp32_fma_work(1, 10, Isa::Scalar, &method, &threads), 10.0 * 32 * 2);
  EXPECT_EQ(threads, 1);
  EXPECT_TRUE(contains(method, "scalar")) << method;
  if (cb::bench::cpu_has(Isa::Avx512)) {  // 16 zmm chains x 16 lanes x 2 flops
    EXPECT_EQ(cb::bench::fp32_fma_work(1, 10, Isa::Avx512), 10.0 * 16 * 16 * 2);
  }
  if (cb::bench::cpu_has(Isa::Avx2)) {  // 12 ymm chains x 8 lanes x 2 flops
    EXPECT_EQ(cb::bench::fp32_fma_work(1, 10, Isa::Avx2), 10.0 * 12 * 8 * 2);
  }
  EXPECT_EQ(cb::bench::bf16_dot_work(1, 10, Isa::Avx2, &method), 0);
  EXPECT_TRUE(starts_with(method, "unsupported")) << method;
}

TEST(MachinePeaks, NonPositiveMinSecondsTakesOneSample) {
  const PeakResult r = cb::bench::measure_peak_fp32_fma(1, 0);
  EXPECT_EQ(r.samples.size(), 1u);
  EXPECT_GT(r.value, 0);
}

TEST(MachinePeaks, MemoryReadBandwidthIsPositive) {
  // 64 MiB keeps the test fast; the default (>= 1 GiB, 4x LLC) is what tools record.
  const PeakResult r = cb::bench::measure_memory_read_bandwidth(0, size_t(64) << 20, kShort);
  EXPECT_EQ(r.unit, "GB/s");
  const std::string isa = cb::bench::cpu_has(Isa::Avx512) ? "avx512f" : cb::bench::cpu_has(Isa::Avx2) ? "avx2" : "scalar";
  expect_supported(r, isa, 1e5);
  EXPECT_TRUE(contains(r.method, "MiB buffer")) << r.method;
}

TEST(MachinePeaks, MemoryReadForcedIsas) {
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
    SCOPED_TRACE(cb::bench::isa_name(isa));
    const PeakResult r = cb::bench::measure_memory_read_bandwidth(1, size_t(8) << 20, kShort, isa);
    if (cb::bench::cpu_has(isa))
      expect_supported(r, cb::bench::isa_name(isa), 1e5);
    else
      expect_unsupported(r);
  }
  expect_unsupported(cb::bench::measure_memory_read_bandwidth(1, size_t(8) << 20, kShort, Isa::Avx512Vnni));
}

TEST(MachinePeaks, ReadBufferRoundsToWholePagesPerThread) {
  cb::bench::ReadBuffer buf(1000, 2);  // smaller than a page per thread
  EXPECT_EQ(buf.threads(), 2);
  EXPECT_EQ(buf.bytes(), 2u * 4096u);
  EXPECT_EQ(buf.read_pass(), double(buf.bytes()));
  EXPECT_EQ(buf.read_pass(Isa::Avx512Bf16), 0);  // no such read path
  EXPECT_GT(cb::bench::default_read_buffer_bytes(), cb::bench::last_level_cache_bytes());  // far beyond the LLC
}

TEST(MachinePeaks, TriadComputesBPlusSTimesCAndCountsTwelveBytesPerElement) {
  cb::bench::TriadBuffers buf(size_t(3) << 20, 2);
  EXPECT_EQ(buf.threads(), 2);
  ASSERT_GT(buf.elements(), 0u);
  EXPECT_EQ(buf.bytes(), 3 * buf.elements() * sizeof(float));
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
    if (!cb::bench::cpu_has(isa)) {
      EXPECT_EQ(buf.triad_pass(isa), 0) << cb::bench::isa_name(isa);
      continue;
    }
    double secs = -1;
    EXPECT_EQ(buf.triad_pass(isa, &secs), 12.0 * double(buf.elements())) << cb::bench::isa_name(isa);
    EXPECT_GT(secs, 0);
    // b[i] = (i % 1024) / 4, c[i] = ((7 i) % 1024) / 2, s = 1.5: exact in fp32.
    for (size_t i : {size_t(0), size_t(1), size_t(1023), buf.elements() / 2 + 5, buf.elements() - 1})
      EXPECT_EQ(buf.element(i), float(i % 1024) * 0.25f + 1.5f * (float((i * 7) % 1024) * 0.5f)) << i;
  }
  EXPECT_EQ(buf.triad_pass(Isa::Avx512Vnni), 0);  // no such path
}

TEST(MachinePeaks, TriadBandwidthIsPositiveAndNamesItsConvention) {
  const PeakResult r = cb::bench::measure_triad_bandwidth(0, size_t(48) << 20, kShort);
  EXPECT_EQ(r.unit, "GB/s");
  expect_supported(r, "STREAM triad", 1e5);
  EXPECT_TRUE(contains(r.method, "12 bytes/element")) << r.method;
  expect_unsupported(cb::bench::measure_triad_bandwidth(1, size_t(8) << 20, kShort, Isa::Avx512Bf16));
}

// A repetition is timed inside the threads: never longer than a clock around the whole call.
TEST(MachinePeaks, InThreadTimeIsWithinTheCallsWallTime) {
  for (int threads : {1, 2}) {
    double secs = 0;
    const auto t0 = std::chrono::steady_clock::now();
    const double ops = cb::bench::fp32_fma_work(threads, 1 << 16, Isa::Auto, nullptr, nullptr, &secs);
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_GT(ops, 0);
    EXPECT_GT(secs, 0);
    EXPECT_LE(secs, wall);
  }
  cb::bench::ReadBuffer buf(size_t(8) << 20, 2);
  double secs = 0;
  const auto t0 = std::chrono::steady_clock::now();
  buf.read_pass(Isa::Auto, &secs);
  EXPECT_GT(secs, 0);
  EXPECT_LE(secs, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

TEST(MachinePeaks, SustainedRatesArePositive) {
  EXPECT_GT(cb::bench::sustained_fp32_fma_rate(1, 0.02), 0);
  cb::bench::ReadBuffer rb(size_t(16) << 20, 2);
  EXPECT_GT(cb::bench::sustained_rate(rb, 0.02), 0);
  cb::bench::TriadBuffers tb(size_t(24) << 20, 2);
  EXPECT_GT(cb::bench::sustained_rate(tb, 0.02), 0);
}

TEST(MachinePeaks, Bf16DotPeakOrUnsupported) {
  const PeakResult r = cb::bench::measure_bf16_dot_peak(0, kShort);
  EXPECT_EQ(r.unit, "GFLOP/s");
  if (cb::bench::cpu_has(Isa::Avx512Bf16)) {
    expect_supported(r, "avx512_bf16", 1e5);
  } else {
    expect_unsupported(r);
    EXPECT_EQ(r.method, "unsupported: no avx512_bf16");
  }
  expect_unsupported(cb::bench::measure_bf16_dot_peak(1, kShort, Isa::Avx2));  // forced: no bf16 path
}

TEST(MachinePeaks, Int8DotPeakOrUnsupported) {
  const PeakResult r = cb::bench::measure_int8_dot_peak(0, kShort);
  EXPECT_EQ(r.unit, "GOP/s");
  if (cb::bench::cpu_has(Isa::Avx512Vnni)) {
    expect_supported(r, "avx512_vnni", 2e5);
  } else {
    expect_unsupported(r);
    EXPECT_EQ(r.method, "unsupported: no avx512_vnni");
  }
  expect_unsupported(cb::bench::measure_int8_dot_peak(1, kShort, Isa::Scalar));  // forced: no int8 path
}

TEST(MachinePeaks, ToJsonCarriesEveryField) {
  const PeakResult r = cb::bench::measure_peak_fp32_fma(1, 0);
  const nlohmann::json j = cb::bench::to_json(r);
  EXPECT_EQ(j.at("value").get<double>(), r.value);
  EXPECT_EQ(j.at("unit").get<std::string>(), "GFLOP/s");
  EXPECT_EQ(j.at("method").get<std::string>(), r.method);
  EXPECT_EQ(j.at("threads").get<int>(), 1);
  EXPECT_EQ(j.at("samples").size(), r.samples.size());
  EXPECT_TRUE(j.at("supported").get<bool>());
  EXPECT_FALSE(cb::bench::to_json(cb::bench::measure_int8_dot_peak(1, 0, Isa::Scalar)).at("supported").get<bool>());
}

}  // namespace

#endif  // __has_include("cb/peaks/machine_peaks.h")
