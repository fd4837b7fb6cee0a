// Conformance of Backend::matmul_multi (one input, several weights: q/k/v, gate/up). The cpu
// backend runs weights that take its GEMV kernel as one parallel pass over all their rows; each
// output must equal, bit for bit, what matmul gives for that weight alone on the same backend
// (the same kernel on the same rows, only the split over threads differs), and match ref within
// the matmul limit. Mixed dtypes and layouts, a weight that cannot be fused (2:4 sparse, bf16
// dot among f32-activation weights; bf16-dot weights on pair panels fuse among themselves), an
// empty output, and the bad calls: a bad output is named and nothing is written.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "conformance/op_driver.h"

namespace cb::conformance {
namespace {

using kernels::ActQuant;
using kernels::MatmulOutput;

// A host description of one weight; made on each backend with make().
struct WeightSpec {
  DType dt = DType::F32;
  WeightLayout layout = WeightLayout::Dense;
  ActQuant act = ActQuant::None;
  int64_t N = 0;
};

struct OnBackend {
  Buf values, scales, meta;
  Weight w;
};

OnBackend make(Backend& be, const WeightSpec& s, int64_t K, Rng& r) {
  OnBackend o;
  if (s.layout == WeightLayout::Sparse24) {
    std::vector<uint8_t> meta(size_t(s.N * (K / 4)));
    for (auto& b : meta) b = sparse24_meta(r.randint(0, 1), r.randint(2, 3));
    const auto vals = encode(r.uniform_vec(s.N * (K / 2)), s.dt);
    o.values = Buf(be, s.dt, {s.N, K / 2}, vals.data());
    o.meta = Buf(be, DType::I8, {s.N, K / 4}, meta.data());
    o.w = Weight::dense(o.values.t());
    o.w.layout = WeightLayout::Sparse24;
    o.w.k = K;
    o.w.meta = o.meta.t();
  } else if (s.layout == WeightLayout::Int8PerChannel) {
    std::vector<uint8_t> q(size_t(s.N * K));
    for (auto& b : q) b = static_cast<uint8_t>(static_cast<int8_t>(r.randint(-127, 127)));
    const auto sc = r.uniform_vec(s.N, 0.001f, 0.02f);
    o.values = Buf(be, DType::I8, {s.N, K}, q.data());
    o.scales = Buf(be, DType::F32, {s.N}, sc.data());
    o.w = Weight::dense(o.values.t());
    o.w.layout = WeightLayout::Int8PerChannel;
    o.w.scales = o.scales.t();
  } else {
    const auto vals = encode(r.uniform_vec(s.N * K), s.dt);
    o.values = Buf(be, s.dt, {s.N, K}, vals.data());
    o.w = Weight::dense(o.values.t());
  }
  o.w.act_quant = s.act;
  o.w = be.upload_weight(o.w);
  return o;
}

struct Outputs {
  std::vector<std::vector<float>> multi;   // matmul_multi
  std::vector<std::vector<float>> single;  // matmul, one weight at a time
};

// Runs the group on `be` both ways with the same seeded inputs; outputs start as NaN, so an
// element nobody wrote fails every comparison.
Outputs run_group(Backend& be, const std::vector<WeightSpec>& specs, int64_t M, int64_t K, uint32_t seed) {
  Rng r(seed);
  const auto x = r.uniform_vec(M * K);
  Buf bx(be, DType::F32, {M, K}, x.data());
  std::vector<OnBackend> ws;
  for (const WeightSpec& s : specs) ws.push_back(make(be, s, K, r));
  std::vector<Buf> ys;
  std::vector<MatmulOutput> outs;
  for (size_t i = 0; i < specs.size(); ++i) {
    const auto poison = nan_vec(M * specs[i].N);
    ys.emplace_back(be, DType::F32, std::initializer_list<int64_t>{M, specs[i].N}, poison.data());
  }
  for (size_t i = 0; i < specs.size(); ++i) outs.push_back({&ws[i].w, &ys[i].t()});
  Outputs got;
  const Status s = be.matmul_multi(bx.t(), outs);
  EXPECT_TRUE(s.ok()) << be.name() << ": " << s.message;
  for (Buf& y : ys) got.multi.push_back(y.f32());
  for (size_t i = 0; i < specs.size(); ++i) {
    const auto poison = nan_vec(M * specs[i].N);
    Buf y(be, DType::F32, {M, specs[i].N}, poison.data());
    const Status s1 = be.matmul(bx.t(), ws[i].w, y.t());
    EXPECT_TRUE(s1.ok()) << be.name() << ": " << s1.message;
    got.single.push_back(y.f32());
  }
  return got;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

struct Group {
  const char* what;
  std::vector<WeightSpec> specs;
};

TEST(Conformance, MatMulMultiEqualsOneMatmulPerWeight) {
  const WeightSpec f32_50{DType::F32, WeightLayout::Dense, ActQuant::None, 50};
  const WeightSpec f32_17{DType::F32, WeightLayout::Dense, ActQuant::None, 17};
  const WeightSpec f32_1{DType::F32, WeightLayout::Dense, ActQuant::None, 1};
  const WeightSpec bf16_64{DType::BF16, WeightLayout::Dense, ActQuant::None, 64};
  const WeightSpec bf16_24{DType::BF16, WeightLayout::Dense, ActQuant::None, 24};
  const WeightSpec f16_31{DType::F16, WeightLayout::Dense, ActQuant::None, 31};
  const WeightSpec i8_40{DType::I8, WeightLayout::Int8PerChannel, ActQuant::None, 40};
  const WeightSpec sparse_20{DType::F32, WeightLayout::Sparse24, ActQuant::None, 20};
  const WeightSpec bf16dot_26{DType::BF16, WeightLayout::Dense, ActQuant::Bf16, 26};
  const WeightSpec bf16dot_40{DType::BF16, WeightLayout::Dense, ActQuant::Bf16, 40};
  const WeightSpec w8a8_40{DType::I8, WeightLayout::Int8PerChannel, ActQuant::PerTokenInt8, 40};
  const WeightSpec w8a8_24{DType::I8, WeightLayout::Int8PerChannel, ActQuant::PerTokenInt8, 24};
  const WeightSpec empty{DType::F32, WeightLayout::Dense, ActQuant::None, 0};
  const std::vector<Group> groups = {
      {"q/k/v-like f32", {f32_50, f32_17, f32_17}},
      {"gate/up-like bf16", {bf16_64, bf16_24}},
      {"mixed dtypes", {f32_1, bf16_24, f16_31, i8_40}},
      {"with a 2:4 weight (not fused)", {f32_50, sparse_20}},
      {"with a bf16-dot weight (not fused)", {bf16dot_26, f32_17}},
      {"with an empty output", {f32_17, empty, bf16_24}},
      {"one weight", {i8_40}},
      // All rounded or all quantized alike: a backend may convert x once for the group (cuda does).
      {"q/k/v-like bf16-dot", {bf16dot_26, bf16dot_40, bf16dot_26}},
      {"gate/up-like W8A8", {w8a8_40, w8a8_24}},
  };
  uint32_t seed = 15000;
  int compared = 0;
  for (const Group& g : groups)
    for (int64_t M : {1, 3, 9, 16, 130})
      for (int64_t K : {64, 200, 1024 + 40}) {
        ++seed;
        const Outputs want = run_group(ref_backend(), g.specs, M, K, seed);
        for (auto& ut : backends_under_test()) {
          if (ut.act_quant_only) continue;
          bool supported = true;
          for (const WeightSpec& s : g.specs) supported = supported && ut.be->supports_matmul(s.dt, s.layout, s.act);
          if (!supported) continue;
          const Outputs got = run_group(*ut.be, g.specs, M, K, seed);
          for (size_t i = 0; i < g.specs.size(); ++i) {
            const std::string at = str_cat(ut.label, " ", g.what, " output ", i, " M=", M, " K=", K);
            EXPECT_TRUE(bitwise_equal(got.multi[i], got.single[i])) << at << ": differs from matmul of that weight alone";
            const ErrorStats e = error_stats(got.multi[i], want.single[i]);
            const double limit = g.specs[i].act == ActQuant::Bf16 ? 1e-4 : 1e-8;
            EXPECT_TRUE(!e.size_mismatch && e.nonfinite == 0 && e.nmse <= limit)
                << at << ": NMSE " << e.nmse << " vs ref (limit " << limit << "), " << e.nonfinite << " NaN/Inf";
            ++compared;
          }
        }
      }
  EXPECT_GT(compared, 200);
}

// A bad output anywhere in the group fails the call before anything runs: the error names the
// output, and the outputs before it keep their contents.
TEST(Conformance, MatMulMultiBadOutputIsNamedAndNothingIsWritten) {
  for (auto& ut : backends_under_test()) {
    Backend& be = *ut.be;
    const int64_t M = 2, K = 32;
    Rng r(15500);
    const auto x = r.uniform_vec(M * K);
    Buf bx(be, DType::F32, {M, K}, x.data());
    OnBackend a = make(be, {DType::F32, WeightLayout::Dense, ActQuant::None, 8}, K, r);
    OnBackend b = make(be, {DType::F32, WeightLayout::Dense, ActQuant::None, 6}, K, r);
    const auto poison = nan_vec(M * 8);
    Buf ya(be, DType::F32, {M, 8}, poison.data());
    Buf yb_wrong(be, DType::F32, {M, 7});  // b has 6 rows
    const std::vector<MatmulOutput> bad_shape = {{&a.w, &ya.t()}, {&b.w, &yb_wrong.t()}};
    const Status s = be.matmul_multi(bx.t(), bad_shape);
    EXPECT_EQ(s.code, StatusCode::InvalidArgument) << ut.label;
    EXPECT_NE(s.message.find("matmul_multi output 1"), std::string::npos) << ut.label << ": " << s.message;
    for (float v : ya.f32()) EXPECT_TRUE(std::isnan(v)) << ut.label << ": output 0 written by a failed call";

    const std::vector<MatmulOutput> no_weight = {{&a.w, &ya.t()}, {nullptr, &ya.t()}};
    const Status s2 = be.matmul_multi(bx.t(), no_weight);
    EXPECT_EQ(s2.code, StatusCode::InvalidArgument) << ut.label;
    EXPECT_NE(s2.message.find("output 1"), std::string::npos) << ut.label << ": " << s2.message;
    EXPECT_TRUE(be.matmul_multi(bx.t(), {}).ok()) << ut.label << ": an empty group is a no-op";
  }
}

// rows() is the product of the leading dims, not numel() / cols(): a matmul output with no
// columns (an empty weight) has M rows (it divided by zero before).
TEST(Conformance, ZeroColumnTensorKeepsItsRows) {
  const Tensor t(nullptr, DType::F32, {5, 0});
  EXPECT_EQ(t.rows(), 5);
  EXPECT_EQ(t.cols(), 0);
  EXPECT_EQ(Tensor(nullptr, DType::F32, {2, 3, 0}).rows(), 6);
  EXPECT_EQ(Tensor(nullptr, DType::F32, {0, 4}).rows(), 0);
}

}  // namespace
}  // namespace cb::conformance
