// The per-op profiler (kernels/op_profile.h): it records only while enabled, counts each op's
// calls, weight bytes and FLOPs exactly, leaves results unchanged, and puts time where it was
// spent (a planted slow op shows up as that op, not spread over the others).
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "cb/kernels/op_profile.h"

namespace {
using cb::kernels::Backend;
using cb::kernels::DType;
using cb::kernels::MatmulOutput;
using cb::kernels::OpTiming;
using cb::kernels::ProfilingBackend;
using cb::kernels::Tensor;
using cb::kernels::Weight;

std::vector<float> seeded(size_t n, float scale) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = scale * float(int((i * 2654435761u) % 17) - 8);
  return v;
}

const OpTiming* row(const std::vector<OpTiming>& rows, const std::string& op) {
  for (const OpTiming& r : rows)
    if (r.op == op) return &r;
  return nullptr;
}

TEST(OpProfile, CountsCallsBytesAndFlopsOnlyWhileEnabledAndLeavesResultsUnchanged) {
  auto cpu = cb::kernels::make_backend("cpu");
  ProfilingBackend prof(*cpu);
  EXPECT_EQ(prof.name(), "cpu");
  EXPECT_FALSE(prof.synchronizes());
  constexpr int64_t M = 3, N = 64, K = 32;
  std::vector<float> wv = seeded(N * K, 0.01f), xv = seeded(M * K, 0.1f);
  const Weight w = prof.upload_weight(Weight::dense(Tensor(wv.data(), DType::F32, {N, K})));
  Tensor x(xv.data(), DType::F32, {M, K});
  std::vector<float> y_direct(M * N), y_prof(M * N), y_off(M * N);
  Tensor yd(y_direct.data(), DType::F32, {M, N}), yp(y_prof.data(), DType::F32, {M, N}), yo(y_off.data(), DType::F32, {M, N});

  ASSERT_TRUE(prof.matmul(x, w, yo).ok());
  EXPECT_TRUE(prof.timings().empty()) << "recorded while disabled";

  prof.set_enabled(true);
  ASSERT_TRUE(prof.matmul(x, w, yp).ok());
  ASSERT_TRUE(prof.matmul(x, w, yp).ok());
  std::vector<float> gain(K, 1.f), normed(M * K);
  Tensor g(gain.data(), DType::F32, {K}), n(normed.data(), DType::F32, {M, K});
  ASSERT_TRUE(prof.rmsnorm(x, g, 1e-5f, n).ok());
  prof.set_enabled(false);
  ASSERT_TRUE(prof.rmsnorm(x, g, 1e-5f, n).ok());

  ASSERT_TRUE(cpu->matmul(x, w, yd).ok());
  EXPECT_EQ(std::memcmp(y_direct.data(), y_prof.data(), sizeof(float) * y_direct.size()), 0);
  EXPECT_EQ(std::memcmp(y_direct.data(), y_off.data(), sizeof(float) * y_direct.size()), 0);

  const auto rows = prof.timings();
  ASSERT_EQ(rows.size(), 2u);
  const OpTiming* mm = row(rows, "matmul");
  ASSERT_NE(mm, nullptr);
  EXPECT_EQ(mm->calls, 2);
  EXPECT_EQ(mm->shape, "N=64 K=32 f32 dense M=3");
  EXPECT_DOUBLE_EQ(mm->bytes, 2.0 * N * K * sizeof(float));
  EXPECT_DOUBLE_EQ(mm->flops, 2.0 * 2 * M * N * K);
  EXPECT_GT(mm->seconds, 0);
  const OpTiming* rn = row(rows, "rmsnorm");
  ASSERT_NE(rn, nullptr);
  EXPECT_EQ(rn->calls, 1);
  EXPECT_EQ(rn->bytes, 0);
  prof.reset();
  EXPECT_TRUE(prof.timings().empty());
}

TEST(OpProfile, MatmulMultiIsOneRowCarryingEveryWeight) {
  auto cpu = cb::kernels::make_backend("cpu");
  ProfilingBackend prof(*cpu);
  constexpr int64_t M = 2, K = 48, N1 = 40, N2 = 24;
  std::vector<float> w1v = seeded(N1 * K, 0.02f), w2v = seeded(N2 * K, 0.03f), xv = seeded(M * K, 0.1f);
  const Weight w1 = prof.upload_weight(Weight::dense(Tensor(w1v.data(), DType::F32, {N1, K})));
  const Weight w2 = prof.upload_weight(Weight::dense(Tensor(w2v.data(), DType::F32, {N2, K})));
  Tensor x(xv.data(), DType::F32, {M, K});
  std::vector<float> y1(M * N1), y2(M * N2), r1(M * N1);
  Tensor t1(y1.data(), DType::F32, {M, N1}), t2(y2.data(), DType::F32, {M, N2}), tr(r1.data(), DType::F32, {M, N1});
  const MatmulOutput outs[] = {{&w1, &t1}, {&w2, &t2}};
  prof.set_enabled(true);
  ASSERT_TRUE(prof.matmul_multi(x, outs).ok());
  const auto rows = prof.timings();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].op, "matmul_multi");
  EXPECT_EQ(rows[0].shape, "N=40 K=48 f32 dense + N=24 K=48 f32 dense M=2");
  EXPECT_DOUBLE_EQ(rows[0].bytes, double(N1 + N2) * K * sizeof(float));
  EXPECT_DOUBLE_EQ(rows[0].flops, 2.0 * M * (N1 + N2) * K);
  ASSERT_TRUE(cpu->matmul(x, w1, tr).ok());
  EXPECT_EQ(std::memcmp(y1.data(), r1.data(), sizeof(float) * r1.size()), 0);
}

// A backend whose silu_mul is slow by a known amount: the profile must charge it to silu_mul.
class SlowSiluBackend final : public cb::kernels::ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;

 protected:
  cb::kernels::Status run_silu_mul(const Tensor& g, const Tensor& u, Tensor& out) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return ForwardingBackend::run_silu_mul(g, u, out);
  }
};

TEST(OpProfile, APlantedSlowOpIsChargedToThatOp) {
  auto cpu = cb::kernels::make_backend("cpu");
  SlowSiluBackend slow(*cpu);
  ProfilingBackend prof(slow);
  std::vector<float> a = seeded(256, 0.1f), b = seeded(256, 0.2f), out(256);
  Tensor ta(a.data(), DType::F32, {4, 64}), tb(b.data(), DType::F32, {4, 64}), to(out.data(), DType::F32, {4, 64});
  prof.set_enabled(true);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(prof.silu_mul(ta, tb, to).ok());
    ASSERT_TRUE(prof.add(ta, tb, to).ok());
  }
  const auto rows = prof.timings();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].op, "silu_mul") << "most time first";
  EXPECT_GE(rows[0].seconds, 3 * 0.020);
  EXPECT_LT(row(rows, "add")->seconds, 0.020) << "the sleep leaked into the next op's time";
}

}  // namespace
