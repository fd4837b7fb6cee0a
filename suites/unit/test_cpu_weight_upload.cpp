// What the cpu backend does with weights and tensors at upload (cpu_backend.cpp): tensors of 64
// KiB and more are copied into huge-page memory (2 MiB and more on their own blocks, smaller ones
// sharing blocks 4 KiB-aligned), smaller ones stay; dense f32/bf16 matmul weights are packed into
// panels of 16 output rows (cpu_kernels.h, PackedArgs) instead, and the packed kernel computes
// what the row-major one does.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "../../kernels/cpu/cpu_kernels.h"  // packed_panel_steps: the packed layout under test
#include "cb/kernels/backend.h"

namespace {

using cb::kernels::ActQuant;
using cb::kernels::DType;
using cb::kernels::MatmulOutput;
using cb::kernels::Tensor;
using cb::kernels::Weight;

std::unique_ptr<cb::kernels::Backend> cpu_with(const char* var, const char* value) {
  setenv(var, value, 1);
  auto be = cb::kernels::make_backend("cpu");
  unsetenv(var);
  return be;
}

// A random [N, K] weight (f32, or rounded to bf16) and [M, K] x drawn from seed: `be` runs x
// against the weight as given (never uploaded, so row-major) and against its own packed upload,
// and the two must agree (both sum in f32, in different orders). `what` names the case.
void expect_packed_matches_rowmajor(cb::kernels::Backend& be, DType dt, int64_t M, int64_t N, int64_t K, uint32_t& seed,
                                    const std::string& what) {
  auto next = [&seed] {
    seed = seed * 1664525u + 1013904223u;
    return float(seed >> 8) / float(1 << 24) - 0.5f;
  };
  std::vector<float> w(size_t(N * K)), x(size_t(M * K));
  for (auto& v : w) v = next();
  for (auto& v : x) v = next();
  std::vector<uint16_t> wb(w.size());
  for (size_t i = 0; i < w.size(); ++i) wb[i] = cb::kernels::f32_to_bf16(w[i]);
  const Weight host = Weight::dense(dt == DType::F32 ? Tensor(w.data(), DType::F32, {N, K}) : Tensor(wb.data(), DType::BF16, {N, K}));
  const Weight packed = be.upload_weight(host);
  ASSERT_FALSE(packed.packed.empty()) << what;
  std::vector<float> y0(size_t(M * N), NAN), y1(size_t(M * N), NAN);
  Tensor xt(x.data(), DType::F32, {M, K}), t0(y0.data(), DType::F32, {M, N}), t1(y1.data(), DType::F32, {M, N});
  ASSERT_TRUE(be.matmul(xt, host, t0).ok()) << what;
  ASSERT_TRUE(be.matmul(xt, packed, t1).ok()) << what;
  for (size_t i = 0; i < y0.size(); ++i)
    ASSERT_NEAR(y1[i], y0[i], 1e-5 * std::sqrt(double(K)) + 1e-6 * std::fabs(y0[i]))
        << what << " " << cb::kernels::dtype_name(dt) << " M=" << M << " N=" << N << " K=" << K << " at " << i;
}

Tensor matrix(std::vector<float>& v, int64_t rows) { return Tensor(v.data(), DType::F32, {rows, int64_t(v.size()) / rows}); }

}  // namespace

TEST(CpuWeightUpload, LargeTensorsAreCopiedAlignedSmallOnesStayAndTiedCopiesAreShared) {
  auto be = cb::kernels::make_backend("cpu");
  std::vector<float> big(size_t(1024) * 1024), small(64 * 64);
  for (size_t i = 0; i < big.size(); ++i) big[i] = float(i % 1013) - 500.f;
  for (size_t i = 0; i < small.size(); ++i) small[i] = float(i);
  const Tensor big_t = matrix(big, 1024), small_t = matrix(small, 64);

  const Tensor up = be->upload_tensor(big_t);
  EXPECT_NE(up.data, big_t.data);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(up.data) % (size_t(2) << 20), 0u);
  EXPECT_EQ(std::memcmp(up.data, big.data(), big.size() * sizeof(float)), 0);
  EXPECT_EQ(be->upload_tensor(small_t).data, small_t.data);

  // Two 512 KiB tensors (bf16 k/v_proj-sized): copied, page-aligned, into one shared 2 MiB block.
  std::vector<float> mid_a(size_t(128) * 1024), mid_b(size_t(128) * 1024);
  for (size_t i = 0; i < mid_a.size(); ++i) mid_a[i] = float(i % 97), mid_b[i] = -float(i % 89);
  const Tensor ua = be->upload_tensor(matrix(mid_a, 128)), ub = be->upload_tensor(matrix(mid_b, 128));
  EXPECT_NE(ua.data, mid_a.data());
  EXPECT_NE(ub.data, mid_b.data());
  const auto addr_a = reinterpret_cast<uintptr_t>(ua.data), addr_b = reinterpret_cast<uintptr_t>(ub.data);
  EXPECT_EQ(addr_a % 4096, 0u);
  EXPECT_EQ(addr_b % 4096, 0u);
  EXPECT_EQ(addr_a >> 21, addr_b >> 21) << "not in one 2 MiB block";
  EXPECT_EQ(std::memcmp(ua.data, mid_a.data(), mid_a.size() * sizeof(float)), 0);
  EXPECT_EQ(std::memcmp(ub.data, mid_b.data(), mid_b.size() * sizeof(float)), 0);
  EXPECT_EQ(be->upload_tensor(matrix(mid_a, 128)).data, ua.data) << "a tied small tensor is copied once too";

  // The same tensor uploaded twice is one copy ...
  EXPECT_EQ(be->upload_tensor(big_t).data, up.data);
  // ... but new contents at the same address (a freed tensor's place reused) are a new copy.
  big[7] = 12345.f;
  const Tensor again = be->upload_tensor(big_t);
  EXPECT_NE(again.data, up.data);
  EXPECT_EQ(again.as<float>()[7], 12345.f);
  EXPECT_EQ(up.as<float>()[7], float(7 % 1013) - 500.f);  // the first copy is untouched

  // Weights that are not packed (f16 here) take the same copy, and compute what the original does.
  std::vector<uint16_t> h(size_t(256) * 1024);
  for (size_t i = 0; i < h.size(); ++i) h[i] = cb::kernels::f32_to_f16(float(i % 31) / 31.f - 0.5f);
  const Weight hw = Weight::dense(Tensor(h.data(), DType::F16, {256, 1024}));
  const Weight hu = be->upload_weight(hw);
  EXPECT_NE(hu.values.data, hw.values.data);
  EXPECT_TRUE(hu.packed.empty());
  std::vector<float> x(1024, 0.5f), y0(256), y1(256);
  Tensor xt(x.data(), DType::F32, {1, 1024}), t0(y0.data(), DType::F32, {1, 256}), t1(y1.data(), DType::F32, {1, 256});
  ASSERT_TRUE(be->matmul(xt, hw, t0).ok());
  ASSERT_TRUE(be->matmul(xt, hu, t1).ok());
  EXPECT_EQ(y0, y1);

  auto in_place = cpu_with("CB_CPU_WEIGHTS_IN_PLACE", "1");
  EXPECT_EQ(in_place->upload_tensor(big_t).data, big_t.data);
  const Weight ip = in_place->upload_weight(Weight::dense(big_t));
  EXPECT_EQ(ip.values.data, big_t.data);
  EXPECT_TRUE(ip.packed.empty()) << "in place means as mapped: no packed copy either";
}

// Element (n, k) of a packed weight sits at ((n / 16) * K + k) * 16 + n % 16; the rows that pad
// the last panel are zeros; `values` is left as given; large packed weights start on 2 MiB.
TEST(CpuWeightUpload, DenseF32AndBf16WeightsArePackedIntoPanels) {
  auto be = cb::kernels::make_backend("cpu");
  const int64_t N = 50, K = 37;  // 4 panels, the last holding 2 rows
  std::vector<float> w(size_t(N * K));
  for (size_t i = 0; i < w.size(); ++i) w[i] = float(i) * 0.25f - 7.f;
  std::vector<uint16_t> wb(w.size());
  for (size_t i = 0; i < w.size(); ++i) wb[i] = cb::kernels::f32_to_bf16(w[i]);

  const Weight f = be->upload_weight(Weight::dense(Tensor(w.data(), DType::F32, {N, K})));
  const Weight b = be->upload_weight(Weight::dense(Tensor(wb.data(), DType::BF16, {N, K})));
  for (const Weight* up : {&f, &b}) {
    ASSERT_FALSE(up->packed.empty());
    EXPECT_EQ(up->packed.describe(), std::string(cb::kernels::dtype_name(up->dtype())) + "[4, 37, 16]");
    EXPECT_EQ(up->values.data, up == &f ? static_cast<void*>(w.data()) : static_cast<void*>(wb.data()));
  }
  const auto* pf = f.packed.as<const float>();
  const auto* pb = b.packed.as<const uint16_t>();
  for (int64_t n = 0; n < 64; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const int64_t at = ((n / 16) * K + k) * 16 + n % 16;
      ASSERT_EQ(pf[at], n < N ? w[size_t(n * K + k)] : 0.f) << "f32 n=" << n << " k=" << k;
      ASSERT_EQ(pb[at], n < N ? wb[size_t(n * K + k)] : 0) << "bf16 n=" << n << " k=" << k;
    }

  std::vector<float> big(size_t(1024) * 1024, 1.f);
  const Weight bu = be->upload_weight(Weight::dense(matrix(big, 1024)));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(bu.packed.data) % (size_t(2) << 20), 0u);

  // bf16 with bf16 activations: k-pair panels where the CPU has vdpbf16ps, element (n, k) at
  // ((n / 16) * 19 + k / 2) * 32 + (n % 16) * 2 + k % 2, K = 37's last pair and the padding
  // rows zero; row-major (its own dot-product kernel) on an ISA without it.
  Weight dot = Weight::dense(Tensor(wb.data(), DType::BF16, {N, K}));
  dot.act_quant = ActQuant::Bf16;
  const Weight pairs = be->upload_weight(dot);
  if (__builtin_cpu_supports("avx512bf16")) {
    ASSERT_EQ(pairs.packed.describe(), "bf16[4, 19, 32]");
    const auto* pp = pairs.packed.as<const uint16_t>();
    for (int64_t n = 0; n < 64; ++n)
      for (int64_t k = 0; k < 38; ++k)
        ASSERT_EQ(pp[((n / 16) * 19 + k / 2) * 32 + (n % 16) * 2 + k % 2], n < N && k < K ? wb[size_t(n * K + k)] : 0)
            << "bf16 pairs n=" << n << " k=" << k;
  } else {
    EXPECT_TRUE(pairs.packed.empty());
  }
  EXPECT_TRUE(cpu_with("CB_CPU_ISA", "avx512")->upload_weight(dot).packed.empty()) << "no vdpbf16ps, no pair panels";
  // Nothing packed when $CB_CPU_PACK_WEIGHTS=0.
  auto unpacked = cpu_with("CB_CPU_PACK_WEIGHTS", "0");
  EXPECT_TRUE(unpacked->upload_weight(Weight::dense(Tensor(w.data(), DType::F32, {N, K}))).packed.empty());
}

// W8A8 (int8 per-channel W, per-token int8 x): k-quad panels where the CPU has vpdpbusd, element
// (n, k) at ((n / 16) * ceil(K / 4) + k / 4) * 64 + (n % 16) * 4 + k % 4, then each row's sum over
// k as int32; the quad kernel's output is bit-equal to the row-major kernels' (integer sums, the
// same epilogue) at decode, one row group, two, a partial one and past eight, over several
// slices with a tail and ragged panels. Without VNNI, or with $CB_CPU_PACK_WEIGHTS=0, row-major.
TEST(CpuWeightUpload, W8A8WeightsPackIntoQuadPanelsAndMatchRowMajorBitForBit) {
  uint32_t seed = 31337;
  auto next = [&seed] {
    seed = seed * 1664525u + 1013904223u;
    return seed >> 8;
  };
  auto w8a8 = [](std::vector<int8_t>& q, std::vector<float>& scales, int64_t N, int64_t K) {
    Weight w;
    w.layout = cb::kernels::WeightLayout::Int8PerChannel;
    w.values = Tensor(q.data(), DType::I8, {N, K});
    w.scales = Tensor(scales.data(), DType::F32, {N});
    w.n = N;
    w.k = K;
    w.act_quant = ActQuant::PerTokenInt8;
    return w;
  };
  auto be = cb::kernels::make_backend("cpu");
  auto rowmajor = cpu_with("CB_CPU_PACK_WEIGHTS", "0");
  const bool vnni = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw");
  for (auto [M, N, K] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
           {1, 50, 37}, {3, 48, 2048}, {8, 130, 300}, {16, 100, 2100}, {17, 33, 4099}, {72, 40, 5000}}) {
    std::vector<int8_t> q(static_cast<size_t>(N * K));
    std::vector<float> scales(static_cast<size_t>(N)), x(static_cast<size_t>(M * K)), y0(static_cast<size_t>(M * N)),
        y1(static_cast<size_t>(M * N));
    for (auto& v : q) v = int8_t(int(next() % 255) - 127);
    for (auto& v : scales) v = 1e-3f * float(1 + next() % 100);
    for (auto& v : x) v = float(int(next() % 2001) - 1000) / 300.f;
    const Weight host = w8a8(q, scales, N, K);
    const Weight packed = be->upload_weight(host), plain = rowmajor->upload_weight(host);
    const std::string at = "M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K);
    ASSERT_TRUE(plain.packed.empty()) << at;
    if (!vnni) {
      EXPECT_TRUE(packed.packed.empty()) << at;
      continue;
    }
    const int64_t Kq = (K + 3) / 4, panels = (N + 15) / 16;
    ASSERT_EQ(packed.packed.describe(), "i8[" + std::to_string(panels) + ", " + std::to_string(Kq) + ", 64]") << at;
    const auto* pq = packed.packed.as<const int8_t>();
    const auto* wsum = reinterpret_cast<const int32_t*>(pq + panels * Kq * 64);
    for (int64_t n = 0; n < panels * 16; ++n) {
      int32_t sum = 0;
      for (int64_t k = 0; k < 4 * Kq; ++k) {
        const int8_t want = n < N && k < K ? q[size_t(n * K + k)] : int8_t(0);
        ASSERT_EQ(pq[((n / 16) * Kq + k / 4) * 64 + (n % 16) * 4 + k % 4], want) << at << " n=" << n << " k=" << k;
        sum += want;
      }
      ASSERT_EQ(wsum[n], sum) << at << " row sum n=" << n;
    }
    Tensor xt(x.data(), DType::F32, {M, K}), t0(y0.data(), DType::F32, {M, N}), t1(y1.data(), DType::F32, {M, N});
    ASSERT_TRUE(rowmajor->matmul(xt, plain, t0).ok()) << at;
    ASSERT_TRUE(be->matmul(xt, packed, t1).ok()) << at;
    EXPECT_EQ(0, std::memcmp(y0.data(), y1.data(), y0.size() * sizeof(float))) << at;
  }
}

// The packed kernel against the row-major one (a weight never uploaded is not packed) over every
// tile tail: rows 1 (decode), under one tile, one tile, past it; columns under one panel, whole
// tiles of 3 panels, and ragged; K past one slice, and panels skewed past a whole number of
// pages (packed_panel_steps); one row group (3, 8 rows) walks panel-major, more (9, 17, 300)
// slice-major, and more with a thread's outputs past half of L2 (64 rows x 40000 columns: 2.4
// MiB a thread at up to 4 threads, past half of any L2 up to 4 MiB; K past one slice)
// panel-major again. Both sum in f32, in
// different orders.
TEST(CpuWeightUpload, PackedKernelMatchesRowMajorAtEveryTail) {
  auto be = cb::kernels::make_backend("cpu");
  uint32_t seed = 12345;
  for (DType dt : {DType::F32, DType::BF16})
    for (int64_t N : {5, 48, 50, 200})
      for (int64_t K : {7, 600, 1024})  // 1024: panels a whole number of pages long, skewed
        for (int64_t M : {1, 3, 8, 9, 17, 300}) {
          expect_packed_matches_rowmajor(*be, dt, M, N, K, seed, "default");
          if (HasFatalFailure()) return;
        }
  for (DType dt : {DType::F32, DType::BF16}) {
    expect_packed_matches_rowmajor(*be, dt, 64, 40000, 520, seed, "default, large y");
    if (HasFatalFailure()) return;
  }
}

// $CB_CPU_PACKED_WALK forces the packed GEMM's walk past one row: panel-major at 9-300 rows (two
// or more row groups, which walk slice-major by default) and slice-major at 4 rows (one group,
// panel-major by default) give what the row-major kernel gives, over K of several slices with a
// ragged last one; an unknown value walks as usual.
TEST(CpuWeightUpload, EitherForcedPackedWalkMatchesRowMajor) {
  uint32_t seed = 777;
  for (const char* walk : {"panel", "slice", "sideways"}) {
    auto be = cpu_with("CB_CPU_PACKED_WALK", walk);
    for (int64_t M : {4, 9, 17, 300}) {
      expect_packed_matches_rowmajor(*be, DType::F32, M, 200, 1300, seed, std::string("walk ") + walk);
      if (HasFatalFailure()) return;
    }
  }
}

// $CB_CPU_PACKED_DECODE picks the one-row tile: the default (3 panels on AVX-512, prefetched
// ahead) and the 8-panel one it replaced ("wide") give what the row-major kernel gives at every
// panel tail (N = 5 .. 300: 1 to 19 panels), f32 and bf16 weights; an unknown value warns and
// runs the default.
TEST(CpuWeightUpload, EitherDecodeTileMatchesRowMajor) {
  uint32_t seed = 4242;
  for (const char* decode : {"prefetched", "wide", "narrow"}) {
    auto be = cpu_with("CB_CPU_PACKED_DECODE", decode);
    for (DType dt : {DType::F32, DType::BF16})
      for (int64_t N : {5, 48, 130, 300})
        for (int64_t K : {7, 1300}) {
          expect_packed_matches_rowmajor(*be, dt, 1, N, K, seed, std::string("decode ") + decode);
          if (HasFatalFailure()) return;
        }
  }
}

// f32 panels whose K steps fill whole 4 KiB pages start 3 cache lines later than K steps (K =
// 64: 67 steps apart), the skew steps zeros and every element where packed_panel_steps says;
// $CB_CPU_PANEL_SKEW=0 turns it off; bf16 panels and pair panels are not skewed (measured slower
// at decode), their 4 KiB of K as they are.
TEST(CpuWeightUpload, F32PanelsAWholeNumberOfPagesLongAreSkewedByThreeLines) {
  EXPECT_EQ(cb::kernels::cpu::packed_panel_steps(64, 64), 67);
  EXPECT_EQ(cb::kernels::cpu::packed_panel_steps(2048, 64), 2051);  // llama-1b q/k/v/o, gate/up, lm_head
  EXPECT_EQ(cb::kernels::cpu::packed_panel_steps(5632, 64), 5635);  // down_proj
  EXPECT_EQ(cb::kernels::cpu::packed_panel_steps(37, 64), 37) << "2368 B: no page multiple, no skew";
  EXPECT_EQ(cb::kernels::cpu::packed_panel_steps(63, 64), 67) << "4032 B: 64 B short of a page, skewed to 192 B past it";
  auto be = cb::kernels::make_backend("cpu");
  const int64_t N = 20, K = 64, S = 67;
  std::vector<float> w(size_t(N * K));
  for (size_t i = 0; i < w.size(); ++i) w[i] = float(i % 97) + 1.f;  // never zero: the skew is told apart
  const Weight up = be->upload_weight(Weight::dense(Tensor(w.data(), DType::F32, {N, K})));
  ASSERT_EQ(up.packed.describe(), "f32[2, 67, 16]");
  for (int64_t n = 0; n < 32; ++n)
    for (int64_t k = 0; k < S; ++k)
      ASSERT_EQ(up.packed.as<const float>()[((n / 16) * S + k) * 16 + n % 16], n < N && k < K ? w[size_t(n * K + k)] : 0.f)
          << "n=" << n << " k=" << k;
  EXPECT_EQ(cpu_with("CB_CPU_PANEL_SKEW", "0")->upload_weight(Weight::dense(Tensor(w.data(), DType::F32, {N, K}))).packed.describe(),
            "f32[2, 64, 16]")
      << "$CB_CPU_PANEL_SKEW=0: panels exactly K steps apart";
  std::vector<uint16_t> wb(size_t(N * 128));
  for (size_t i = 0; i < wb.size(); ++i) wb[i] = cb::kernels::f32_to_bf16(float(i % 97) + 1.f);
  EXPECT_EQ(be->upload_weight(Weight::dense(Tensor(wb.data(), DType::BF16, {N, 128}))).packed.describe(), "bf16[2, 128, 16]");
  if (!__builtin_cpu_supports("avx512bf16")) return;  // no pair panels made here
  Weight dot = Weight::dense(Tensor(wb.data(), DType::BF16, {N, 128}));
  dot.act_quant = ActQuant::Bf16;
  EXPECT_EQ(be->upload_weight(dot).packed.describe(), "bf16[2, 64, 32]");
}

// A weight on pair panels handed to a cpu backend whose ISA has no bf16 dot product (another
// backend's upload) runs its row-major values there instead of calling a kernel that is absent.
TEST(CpuWeightUpload, PairPanelsFromAnotherBackendFallBackToRowMajor) {
  if (!__builtin_cpu_supports("avx512bf16")) GTEST_SKIP() << "no avx512_bf16: no pair panels are made here";
  auto be = cb::kernels::make_backend("cpu");
  auto plain = cpu_with("CB_CPU_ISA", "avx512");
  const int64_t M = 9, N = 50, K = 37;
  std::vector<float> x(size_t(M * K));
  std::vector<uint16_t> wb(size_t(N * K));
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(int(i % 13) - 6) * 0.125f;
  for (size_t i = 0; i < wb.size(); ++i) wb[i] = cb::kernels::f32_to_bf16(float(int(i % 7) - 3) * 0.5f);
  Weight dot = Weight::dense(Tensor(wb.data(), DType::BF16, {N, K}));
  dot.act_quant = ActQuant::Bf16;
  const Weight pairs = be->upload_weight(dot);
  ASSERT_FALSE(pairs.packed.empty());
  std::vector<float> y0(size_t(M * N), NAN), y1(size_t(M * N), NAN);
  Tensor xt(x.data(), DType::F32, {M, K}), t0(y0.data(), DType::F32, {M, N}), t1(y1.data(), DType::F32, {M, N});
  ASSERT_TRUE(be->matmul(xt, pairs, t0).ok());
  ASSERT_TRUE(plain->matmul(xt, pairs, t1).ok());
  for (size_t i = 0; i < y0.size(); ++i) ASSERT_EQ(y1[i], y0[i]) << "at " << i;  // small exact values: every order sums alike
}
