// Conformance of the low-precision matmuls against `ref`: W8A8 (per-token int8 activations x
// per-channel int8 weights), bf16 x bf16 dot products, and 2:4 sparse weights, on every cpu code
// path (op_driver.h: best ISA, avx512_vnni, avx512, avx2, scalar). Grids cross every SIMD tail
// (K not a multiple of 64 / 32 / 16, N not a multiple of the tile), single rows (decode) and the
// row-blocking of prefill. Also: NaN/Inf activations under W8A8, what each precision costs
// against f32 (bounds with their reasons), and the bad calls of these layouts.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <tuple>

#include "conformance/op_driver.h"

namespace cb::conformance {
namespace {

using kernels::ActQuant;
using kernels::Op;

TEST(Conformance, MatMulW8A8) {
  Cases cases;
  for (int64_t M : {1, 2, 5, 8, 9, 17})
    for (int64_t K : {1, 7, 63, 64, 65, 200})
      for (int64_t N : {1, 3, 17, 50}) add_case<QuantMatMulCase>(cases, ActQuant::PerTokenInt8, M, K, N);
  // llama-1b projections at decode and prefill row counts, and x rows that stress the scale.
  for (int64_t M : {1, 16, 33, 128}) add_case<QuantMatMulCase>(cases, ActQuant::PerTokenInt8, M, 2048, 40);
  add_case<QuantMatMulCase>(cases, ActQuant::PerTokenInt8, 3, 5632, 30);
  // On quad panels (AVX512_VNNI) past 8 rows K goes in slices of 512 quads (2048 columns): several
  // slices, the last with a tail, one and two row groups and a partial one, panel tails.
  add_case<QuantMatMulCase>(cases, ActQuant::PerTokenInt8, 13, 2100, 29);
  add_case<QuantMatMulCase>(cases, ActQuant::PerTokenInt8, 20, 5632, 26);
  add_case<QuantMatMulCase>(cases, ActQuant::PerTokenInt8, 72, 4099, 50);
  add_case<QuantMatMulCase>(cases, ActQuant::PerTokenInt8, 12, 300, 29, XKind::Spiky);
  add_case<QuantMatMulCase>(cases, ActQuant::PerTokenInt8, 10, 130, 20, XKind::ZeroRows);
  check_cases("w8a8", cases, 11000);
}

TEST(Conformance, MatMulBf16Dot) {
  Cases cases;
  for (int64_t M : {1, 2, 5, 8, 9, 17})
    for (int64_t K : {1, 7, 31, 32, 33, 200})
      for (int64_t N : {1, 3, 17, 50}) add_case<QuantMatMulCase>(cases, ActQuant::Bf16, M, K, N);
  for (int64_t M : {1, 16, 33, 128}) add_case<QuantMatMulCase>(cases, ActQuant::Bf16, M, 2048, 40);
  add_case<QuantMatMulCase>(cases, ActQuant::Bf16, 3, 5632, 30);
  // Past 8 rows the cpu kernel sums K in slices (1024+ columns): several slices, the last with a tail.
  add_case<QuantMatMulCase>(cases, ActQuant::Bf16, 13, 2100, 29);
  add_case<QuantMatMulCase>(cases, ActQuant::Bf16, 20, 5632, 26);
  add_case<QuantMatMulCase>(cases, ActQuant::Bf16, 12, 300, 29, XKind::Spiky);
  check_cases("bf16dot", cases, 12000);
}

TEST(Conformance, MatMulSparse24) {
  Cases cases;
  for (DType dt : {DType::F32, DType::F16, DType::BF16})
    for (int64_t M : {1, 2, 3, 5, 9})
      for (int64_t K : {4, 8, 28, 32, 36, 64, 68, 260})
        for (int64_t N : {1, 3, 10, 25}) add_case<Sparse24MatMulCase>(cases, dt, M, K, N);
  for (int64_t M : {1, 4, 16, 33}) add_case<Sparse24MatMulCase>(cases, DType::F32, M, 2048, 48);
  add_case<Sparse24MatMulCase>(cases, DType::BF16, 3, 5632, 24);
  add_case<Sparse24MatMulCase>(cases, DType::F32, 130, 516, 26);  // several L2 blocks of rows of x
  for (int64_t K : {4, 36, 100}) add_case<Sparse24MatMulCase>(cases, DType::F32, 5, K, 13, true);
  add_case<Sparse24MatMulCase>(cases, DType::BF16, 7, 2048, 9, true);
  check_cases("sparse24", cases, 13000);
}

// W8A8 has no int8 form for a row holding NaN or Inf: that row of y is NaN (in ref and in every
// backend), and the other rows are unaffected.
TEST(Conformance, MatMulW8A8NonFiniteRows) {
  const int64_t M = 4, K = 100, N = 19;
  Rng r(14000);
  auto x = r.uniform_vec(M * K);
  x[1 * K + 7] = std::numeric_limits<float>::quiet_NaN();
  x[3 * K + K - 1] = -std::numeric_limits<float>::infinity();
  std::vector<uint8_t> wq(size_t(N * K));
  for (auto& b : wq) b = static_cast<uint8_t>(static_cast<int8_t>(r.randint(-127, 127)));
  const auto scales = r.uniform_vec(N, 0.001f, 0.02f);
  auto run = [&](Backend& be) {
    Buf bx(be, DType::F32, {M, K}, x.data()), bw(be, DType::I8, {N, K}, wq.data()), bs(be, DType::F32, {N}, scales.data());
    const auto poison = nan_vec(M * N);
    Buf by(be, DType::F32, {M, N}, poison.data());
    Weight w = Weight::dense(bw.t());
    w.layout = WeightLayout::Int8PerChannel;
    w.scales = bs.t();
    w.act_quant = ActQuant::PerTokenInt8;
    const Status s = be.matmul(bx.t(), be.upload_weight(w), by.t());
    EXPECT_TRUE(s.ok()) << s.message;
    return by.f32();
  };
  const auto want = run(ref_backend());
  for (auto& ut : backends_under_test()) {
    if (!ut.be->supports_matmul(DType::I8, WeightLayout::Int8PerChannel, ActQuant::PerTokenInt8)) continue;
    const auto got = run(*ut.be);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        const float g = got[size_t(m * N + n)], w = want[size_t(m * N + n)];
        if (m == 1 || m == 3) {
          EXPECT_TRUE(std::isnan(w)) << "ref row " << m << " col " << n;
          EXPECT_TRUE(std::isnan(g)) << ut.label << " row " << m << " col " << n << " = " << g;
        } else {
          EXPECT_NEAR(g, w, 1e-6f * std::max(1.f, std::fabs(w))) << ut.label << " row " << m << " col " << n;
        }
      }
  }
}

// What each precision costs against the f32 product of the same weights, on ref (exact
// arithmetic apart from the rounding under test). Lower bounds too: an NMSE of ~0 would mean the
// activations were never rounded or quantized.
//   bf16 x: each element rounds to 8 significant bits: in [2^e, 2^(e+1)) the error is uniform in
//     +-2^(e-8), mean square 2^(2e-14)/12 against E[x^2] = (7/3) 2^(2e): 2^-14/28 ~ 2.2e-6, and a
//     sum of K such independent terms has the same NMSE.
//   int8 x (per token, uniform in [-1, 1]): step amax/127, error variance step^2/12 against
//     E[x^2] = amax^2/3: NMSE ~ 1/(4 * 127^2) ~ 1.6e-5.
// Bounds are 4x either side of those estimates.
TEST(Conformance, LowPrecisionCostVsF32) {
  const int64_t M = 16, K = 1024, N = 64;
  Backend& ref = ref_backend();
  for (const auto& [aq, lo, hi] : {std::tuple{ActQuant::Bf16, 0.55e-6, 8.8e-6}, {ActQuant::PerTokenInt8, 4e-6, 6.4e-5}}) {
    const bool w8 = aq == ActQuant::PerTokenInt8;
    const std::string what = w8 ? "w8a8 vs int8 weight-only" : "bf16 x vs f32 x (bf16 weights)";
    QuantMatMulCase lowp(aq, M, K, N);
    std::vector<float> got, want;
    ASSERT_TRUE(lowp.run(ref, 14100, got).ok());
    // The same x and weights (drawn as QuantMatMulCase::prepare draws them) with f32 activations.
    Rng r(14100);
    const auto x = make_x(r, M, K, XKind::Uniform);
    std::vector<uint8_t> wbytes;
    std::vector<float> scales;
    if (w8) {
      wbytes.resize(size_t(N * K));
      for (auto& b : wbytes) b = static_cast<uint8_t>(static_cast<int8_t>(r.randint(-128, 127)));
      scales = r.uniform_vec(N, 0.001f, 0.02f);
    } else {
      wbytes = encode(r.uniform_vec(N * K), DType::BF16);
    }
    Buf bx(ref, DType::F32, {M, K}, x.data()), bw(ref, lowp.dtype(), {N, K}, wbytes.data());
    Buf bs(ref, DType::F32, {N}, scales.empty() ? nullptr : scales.data()), by(ref, DType::F32, {M, N});
    Weight w = Weight::dense(bw.t());
    if (w8) {
      w.layout = WeightLayout::Int8PerChannel;
      w.scales = bs.t();
    }
    ASSERT_TRUE(ref.matmul(bx.t(), w, by.t()).ok());
    want = by.f32();
    const ErrorStats e = error_stats(got, want);
    std::printf("  %-36s NMSE %.2e (expected %.1e .. %.1e)\n", what.c_str(), e.nmse, lo, hi);
    EXPECT_GT(e.nmse, lo) << what;
    EXPECT_LT(e.nmse, hi) << what;
  }
}

// ------------------------------------------------------------------------------------------------
// Bad calls: a status on every backend, never a crash
// ------------------------------------------------------------------------------------------------

// A 2:4 weight [N, K] (f32 values, all meta bytes valid) with one meta byte replaced.
struct SparseCall {
  int64_t M, K, N;
  int64_t bad_row = -1, bad_group = -1;
  uint8_t bad_byte = 0;
  // upload: through upload_weight (where a bad byte is caught, for every backend); else the raw
  // weight straight to matmul (the cpu kernels still check while they decode).
  Status run(Backend& be, std::vector<float>* y_out = nullptr, bool upload = true) const {
    Rng r(15000);
    const auto x = r.uniform_vec(M * K), vals = r.uniform_vec(N * (K / 2));
    std::vector<uint8_t> meta(size_t(N * (K / 4)), sparse24_meta(1, 3));
    if (bad_row >= 0) meta[size_t(bad_row * (K / 4) + bad_group)] = bad_byte;
    Buf bx(be, DType::F32, {M, K}, x.data()), bv(be, DType::F32, {N, K / 2}, vals.data());
    Buf bm(be, DType::I8, {N, K / 4}, meta.data()), by(be, DType::F32, {M, N});
    Weight w;
    w.layout = WeightLayout::Sparse24;
    w.values = bv.t();
    w.meta = bm.t();
    w.n = N;
    w.k = K;
    if (upload)
      if (Status s = be.upload_weight(w, w); !s.ok()) return s;
    const Status s = be.matmul(bx.t(), w, by.t());
    if (y_out) *y_out = by.f32();
    return s;
  }
};

TEST(Conformance, Sparse24BadMetaIsInvalid) {
  struct Bad {
    const char* what;
    SparseCall call;
  };
  const Bad cases[] = {
      {"i0 == i1 in the first group", {3, 64, 5, 0, 0, sparse24_meta(1, 1)}},
      {"i0 > i1 in the last group (a tail step)", {2, 36, 5, 4, 8, sparse24_meta(2, 1)}},
      {"high nibble set, row 29 of 30", {6, 128, 30, 29, 17, static_cast<uint8_t>(0x10 | sparse24_meta(0, 1))}},
      {"0xff in a model-sized row", {1, 2048, 40, 39, 300, 0xff}},
  };
  std::vector<std::pair<std::string, Backend*>> targets{{"ref", &ref_backend()}};
  for (auto& ut : backends_under_test()) {
    if (ut.act_quant_only) continue;
    if (!ut.be->supports_matmul(DType::F32, WeightLayout::Sparse24, ActQuant::None)) {
      // A backend without 2:4 support (cuda without cuSPARSELt) says Unsupported before it looks
      // at the bytes; that it never runs them is checked by the op driver.
      std::vector<float> y;
      const Status s = cases[0].call.run(*ut.be, &y);
      EXPECT_EQ(int(s.code), int(StatusCode::Unsupported)) << ut.label << ": " << s.message;
      continue;
    }
    targets.emplace_back(ut.label, ut.be.get());
  }
  for (const Bad& b : cases) {
    for (auto& [label, be] : targets) {
      std::vector<float> y;
      const Status s = b.call.run(*be, &y);
      EXPECT_EQ(int(s.code), int(StatusCode::InvalidArgument)) << label << " " << b.what << ": " << s.message;
      const std::string where = "row " + std::to_string(b.call.bad_row) + ", group " + std::to_string(b.call.bad_group);
      EXPECT_NE(s.message.find(where), std::string::npos) << label << " " << b.what << ": message '" << s.message
                                                          << "' does not name " << where;
      // A weight that skipped upload_weight: the cpu kernels still find the byte while computing,
      // and fill y with NaN (cpu_matmul_sparse24.cpp).
      if (label.rfind("cpu", 0) == 0) {
        const Status raw = b.call.run(*be, &y, /*upload=*/false);
        EXPECT_EQ(int(raw.code), int(StatusCode::InvalidArgument)) << label << " " << b.what << " (no upload): " << raw.message;
        EXPECT_NE(raw.message.find(where), std::string::npos) << label << " " << b.what << ": " << raw.message;
        for (float v : y) ASSERT_TRUE(std::isnan(v)) << label << " " << b.what << ": y must be NaN after a bad meta byte";
      }
    }
    // The same call with the byte fixed succeeds, so it was the byte.
    SparseCall good = b.call;
    good.bad_row = -1;
    for (auto& [label, be] : targets) EXPECT_TRUE(good.run(*be).ok()) << label << " " << b.what << " (fixed)";
  }
}

TEST(Conformance, LowPrecisionBadCallsReturnStatus) {
  const auto I = StatusCode::InvalidArgument;
  struct Call {
    const char* what;
    StatusCode expect;
    std::function<Status(Backend&)> call;
  };
  auto sparse = [](Backend& be, int64_t K, std::initializer_list<int64_t> vdims, std::initializer_list<int64_t> mdims,
                   DType mdt) {
    Buf x(be, DType::F32, {2, K}), v(be, DType::F32, vdims), m(be, mdt, mdims), y(be, DType::F32, {2, 4});
    Weight w;
    w.layout = WeightLayout::Sparse24;
    w.values = v.t();
    w.meta = m.t();
    w.n = 4;
    w.k = K;
    return be.matmul(x.t(), w, y.t());
  };
  auto act = [](Backend& be, DType wdt, WeightLayout layout, ActQuant aq) {
    Buf x(be, DType::F32, {2, 8}), v(be, wdt, {4, 8}), s(be, DType::F32, {4}), y(be, DType::F32, {2, 4});
    Weight w = Weight::dense(v.t());
    w.layout = layout;
    w.scales = s.t();
    w.act_quant = aq;
    return be.matmul(x.t(), w, y.t());
  };
  const Call calls[] = {
      {"2:4 with K % 4 != 0", I, [&](Backend& be) { return sparse(be, 6, {4, 3}, {4, 1}, DType::I8); }},
      {"2:4 values not [N, K/2]", I, [&](Backend& be) { return sparse(be, 8, {4, 3}, {4, 2}, DType::I8); }},
      {"2:4 meta not [N, K/4]", I, [&](Backend& be) { return sparse(be, 8, {4, 4}, {4, 1}, DType::I8); }},
      {"2:4 meta stored as f32", I, [&](Backend& be) { return sparse(be, 8, {4, 4}, {4, 2}, DType::F32); }},
      {"W8A8 on a dense f32 weight", I,
       [&](Backend& be) { return act(be, DType::F32, WeightLayout::Dense, ActQuant::PerTokenInt8); }},
      {"bf16 activations on a dense f32 weight", I,
       [&](Backend& be) { return act(be, DType::F32, WeightLayout::Dense, ActQuant::Bf16); }},
      {"bf16 activations on an int8 weight", I,
       [&](Backend& be) { return act(be, DType::I8, WeightLayout::Int8PerChannel, ActQuant::Bf16); }},
  };
  std::vector<std::pair<std::string, Backend*>> targets{{"ref", &ref_backend()}};
  for (auto& ut : backends_under_test()) targets.emplace_back(ut.label, ut.be.get());
  for (const Call& c : calls)
    for (auto& [label, be] : targets) {
      const Status s = c.call(*be);
      EXPECT_EQ(int(s.code), int(c.expect)) << label << " " << c.what << ": got '" << s.message << "'";
      EXPECT_FALSE(s.message.empty()) << label << " " << c.what;
    }
}

// The cpu W8A8 kernel sums in int32, exact up to K = 131072; past it the call says Unsupported
// (ref, summing in int64, has no limit).
TEST(Conformance, CpuW8A8RejectsKBeyondInt32) {
  const int64_t K = 131073;
  for (auto& ut : backends_under_test()) {
    if (ut.label.rfind("cpu", 0) != 0) continue;
    Backend& be = *ut.be;
    Buf x(be, DType::F32, {1, K}), v(be, DType::I8, {1, K}), s(be, DType::F32, {1}), y(be, DType::F32, {1, 1});
    Weight w = Weight::dense(v.t());
    w.layout = WeightLayout::Int8PerChannel;
    w.scales = s.t();
    w.act_quant = ActQuant::PerTokenInt8;
    const Status st = be.matmul(x.t(), w, y.t());
    EXPECT_EQ(int(st.code), int(StatusCode::Unsupported)) << ut.label << ": " << st.message;
  }
}

}  // namespace
}  // namespace cb::conformance
