// The cpu backend's rope keeps the cos/sin table of the last call's positions per calling thread
// (cpu_elementwise.cpp): a forward pass ropes q and k of every layer at the same positions. The
// table must be rebuilt whenever what it was built from changes (the positions' values at the
// same row count, the row count, theta, head_dim) and must give what `ref` gives every time.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <thread>
#include <vector>

#include "cb/kernels/backend.h"

namespace {

using cb::kernels::DType;
using cb::kernels::Tensor;

struct RopeCall {
  std::vector<int32_t> positions;
  int n_heads, head_dim;
  float theta;
};

// x [M, n_heads * head_dim] filled from `seed`, roped by `be`.
std::vector<float> roped(cb::kernels::Backend& be, const RopeCall& c, uint32_t seed) {
  const int64_t M = int64_t(c.positions.size()), D = int64_t(c.n_heads) * c.head_dim;
  std::vector<float> x(size_t(M * D));
  for (auto& v : x) {
    seed = seed * 1664525u + 1013904223u;
    v = float(seed >> 8) / float(1 << 24) - 0.5f;
  }
  Tensor xt(x.data(), DType::F32, {M, D});
  std::vector<int32_t> pos = c.positions;
  Tensor pt(pos.data(), DType::I32, {M});
  EXPECT_TRUE(be.rope(xt, pt, c.n_heads, c.head_dim, c.theta).ok());
  return x;
}

void expect_matches_ref(cb::kernels::Backend& cpu, cb::kernels::Backend& ref, const RopeCall& c, const char* what) {
  const std::vector<float> a = roped(cpu, c, 7), b = roped(ref, c, 7);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-6f) << what << " at " << i;
}

}  // namespace

TEST(CpuRopeTable, EveryChangeOfWhatTheTableIsBuiltFromRebuildsIt) {
  auto cpu = cb::kernels::make_backend("cpu");
  auto ref = cb::kernels::make_backend("ref");
  RopeCall c{{5, 6, 7, 8}, 4, 16, 10000.f};
  expect_matches_ref(*cpu, *ref, c, "first call");
  expect_matches_ref(*cpu, *ref, c, "same positions again (the kept table)");
  c.positions = {105, 6, 7, 3000};
  expect_matches_ref(*cpu, *ref, c, "other positions, same row count");
  c.theta = 500000.f;
  expect_matches_ref(*cpu, *ref, c, "other theta");
  c.n_heads = 2, c.head_dim = 32;
  expect_matches_ref(*cpu, *ref, c, "other head_dim, same row width");
  c.positions = {105, 6, 7};
  expect_matches_ref(*cpu, *ref, c, "fewer rows, same leading positions");
  c.positions.assign(300, 0);
  for (size_t i = 0; i < c.positions.size(); ++i) c.positions[i] = int32_t(i * 37 % 16384);
  expect_matches_ref(*cpu, *ref, c, "many rows (the table built on several threads)");
}

// Two threads roping at different positions at once each keep their own table.
TEST(CpuRopeTable, ThreadsKeepTheirOwnTables) {
  auto cpu = cb::kernels::make_backend("cpu");
  auto ref = cb::kernels::make_backend("ref");
  const RopeCall a{{1, 2, 3}, 4, 16, 10000.f}, b{{900, 901, 902}, 4, 16, 10000.f};
  const std::vector<float> want_a = roped(*ref, a, 3), want_b = roped(*ref, b, 3);
  auto run = [&](const RopeCall& c, const std::vector<float>& want, bool& ok) {
    ok = true;
    for (int i = 0; i < 200 && ok; ++i) {
      const std::vector<float> got = roped(*cpu, c, 3);
      for (size_t j = 0; j < got.size(); ++j) ok = ok && std::fabs(got[j] - want[j]) <= 1e-6f;
    }
  };
  bool ok_a = false, ok_b = false;
  std::thread ta(run, std::cref(a), std::cref(want_a), std::ref(ok_a));
  std::thread tb(run, std::cref(b), std::cref(want_b), std::ref(ok_b));
  ta.join();
  tb.join();
  EXPECT_TRUE(ok_a);
  EXPECT_TRUE(ok_b);
}
