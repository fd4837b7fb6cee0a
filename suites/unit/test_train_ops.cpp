// Training ops, one at a time: analytic backward against central finite differences of a scalar
// loss L = sum(R * out) (R fixed random), in double precision. Limit: relative error 1e-6 —
// double central differences with h = 1e-5 have truncation error ~h^2 |f'''| ~ 1e-10 and rounding
// ~1e-16 / h ~ 1e-11, on gradients of size 1e-2..1, so a correct backward sits near 1e-8; a wrong
// term (missing factor, sign, index) gives errors of order 1.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "cb/engine/train/ops.h"
#include "cb/kernels/backend.h"
#include "cb/kernels/int8_scheme.h"

using namespace cb::engine::train;

namespace {

std::vector<double> randn(size_t n, uint64_t seed, double scale = 1.0) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> d(0.0, scale);  // test inputs only: any normal sequence will do
  std::vector<double> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Worst relative error of analytic gradient g of f with respect to x (every element).
double grad_error(const std::function<double()>& f, std::vector<double>& x, const std::vector<double>& g) {
  constexpr double h = 1e-5;
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double old = x[i];
    x[i] = old + h;
    const double fp = f();
    x[i] = old - h;
    const double fm = f();
    x[i] = old;
    const double num = (fp - fm) / (2 * h);
    worst = std::max(worst, std::fabs(num - g[i]) / std::max(std::fabs(num) + std::fabs(g[i]), 1e-6));
  }
  return worst;
}

constexpr double kLimit = 1e-6;

}  // namespace

TEST(TrainOps, LinearGradient) {
  const int64_t M = 3, N = 4, K = 5;
  auto x = randn(M * K, 1), w = randn(N * K, 2), R = randn(M * N, 3);
  Gemm gemm;
  std::vector<double> scratch;
  auto f = [&] {
    std::vector<double> y(M * N);
    linear_forward(gemm, x.data(), w.data(), y.data(), M, N, K, false, scratch);
    return dot(y, R);
  };
  std::vector<double> dx(M * K, 0.0), dw(N * K, 0.0);
  linear_backward(gemm, R.data(), x.data(), w.data(), dx.data(), dw.data(), M, N, K, false, scratch);
  EXPECT_LT(grad_error(f, x, dx), kLimit);
  EXPECT_LT(grad_error(f, w, dw), kLimit);
}

// The float GEMMs through the cpu backend (transposed operands) against the plain double loops.
// Limit: relative 1e-5 of the largest output — f32 products and sums over K = 300 terms of
// O(1) values round to ~K * 6e-8 ~ 2e-5 worst case, ~1e-6 typical.
TEST(TrainOps, BackendGemmMatchesPlainLoops) {
  auto be = cb::kernels::make_backend("cpu");
  const int64_t M = 37, N = 29, K = 300;
  auto x = randn(M * K, 4), w = randn(N * K, 5), dy = randn(M * N, 6);
  std::vector<float> xf(x.begin(), x.end()), wf(w.begin(), w.end()), dyf(dy.begin(), dy.end());
  Gemm fast(be.get()), plain;
  std::vector<double> y(M * N), dx(M * K, 0.5), dw(N * K, -0.5);
  std::vector<float> yf(M * N), dxf(M * K, 0.5f), dwf(N * K, -0.5f);
  plain.nt(x.data(), w.data(), y.data(), M, N, K);
  plain.nn_acc(dy.data(), w.data(), dx.data(), M, N, K);
  plain.tn_acc(dy.data(), x.data(), dw.data(), M, N, K);
  fast.nt(xf.data(), wf.data(), yf.data(), M, N, K);
  fast.nn_acc(dyf.data(), wf.data(), dxf.data(), M, N, K);
  fast.tn_acc(dyf.data(), xf.data(), dwf.data(), M, N, K);
  auto rel = [](const std::vector<double>& a, const std::vector<float>& b) {
    double worst = 0, scale = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      worst = std::max(worst, std::fabs(a[i] - b[i]));
      scale = std::max(scale, std::fabs(a[i]));
    }
    return worst / scale;
  };
  EXPECT_LT(rel(y, yf), 1e-5);
  EXPECT_LT(rel(dx, dxf), 1e-5);  // accumulates onto the 0.5 already there
  EXPECT_LT(rel(dw, dwf), 1e-5);
}

TEST(TrainOps, RmsNormGradient) {
  const int64_t M = 3, D = 8;
  auto x = randn(M * D, 7), w = randn(D, 8, 0.5), R = randn(M * D, 9);
  for (auto& v : w) v += 1.0;
  auto f = [&] {
    std::vector<double> y(M * D), rstd(M);
    rmsnorm_forward(x.data(), w.data(), y.data(), rstd.data(), M, D, 1e-5f);
    return dot(y, R);
  };
  std::vector<double> y(M * D), rstd(M), dx(M * D, 0.0), dw(D, 0.0);
  rmsnorm_forward(x.data(), w.data(), y.data(), rstd.data(), M, D, 1e-5f);
  rmsnorm_backward(R.data(), x.data(), w.data(), rstd.data(), dx.data(), dw.data(), M, D);
  EXPECT_LT(grad_error(f, x, dx), kLimit);
  EXPECT_LT(grad_error(f, w, dw), kLimit);
}

TEST(TrainOps, RopeGradient) {
  const int64_t M = 3;
  const int H = 2, Dh = 8;
  const std::vector<int32_t> pos = {0, 5, 11};
  const RopeTable rt(16, Dh, 10000.f);
  auto x = randn(M * H * Dh, 10), R = randn(M * H * Dh, 11);
  auto f = [&] {
    auto y = x;
    rope_forward(y.data(), pos.data(), M, H, rt);
    return dot(y, R);
  };
  auto dx = R;
  rope_backward(dx.data(), pos.data(), M, H, rt);
  EXPECT_LT(grad_error(f, x, dx), kLimit);
  // Position 0 is the identity; the rotation keeps each pair's norm.
  auto y = x;
  rope_forward(y.data(), pos.data(), M, H, rt);
  for (int d = 0; d < H * Dh; ++d) EXPECT_DOUBLE_EQ(y[size_t(d)], x[size_t(d)]);
  for (int h = 0; h < H; ++h)
    for (int i = 0; i < Dh / 2; ++i) {
      const size_t a = size_t(2 * H * Dh + h * Dh + i), b = a + Dh / 2;
      EXPECT_NEAR(y[a] * y[a] + y[b] * y[b], x[a] * x[a] + x[b] * x[b], 1e-12);
    }
}

// Two sequences packed back to back, grouped-query heads (4 query heads over 2 KV heads).
TEST(TrainOps, AttentionGradient) {
  const std::vector<SeqSpan> seqs = {{0, 4}, {4, 3}};
  const int H = 4, Hkv = 2, Dh = 4;
  const int64_t T = 7, qc = H * Dh, kc = Hkv * Dh;
  auto q = randn(T * qc, 12), k = randn(T * kc, 13), v = randn(T * kc, 14), R = randn(T * qc, 15);
  int64_t np = 0;
  attention_prob_offsets(seqs, H, &np);
  auto f = [&] {
    std::vector<double> out(T * qc), probs(np);
    attention_forward(q.data(), k.data(), v.data(), out.data(), probs.data(), seqs, H, Hkv, Dh);
    return dot(out, R);
  };
  std::vector<double> out(T * qc), probs(np), dq(T * qc, 0.0), dk(T * kc, 0.0), dv(T * kc, 0.0);
  attention_forward(q.data(), k.data(), v.data(), out.data(), probs.data(), seqs, H, Hkv, Dh);
  attention_backward(R.data(), q.data(), k.data(), v.data(), probs.data(), dq.data(), dk.data(), dv.data(), seqs, H, Hkv, Dh);
  EXPECT_LT(grad_error(f, q, dq), kLimit);
  EXPECT_LT(grad_error(f, k, dk), kLimit);
  EXPECT_LT(grad_error(f, v, dv), kLimit);
  // The first token of each sequence sees only itself: its output is its own value row.
  for (int h = 0; h < H; ++h)
    for (int d = 0; d < Dh; ++d) EXPECT_NEAR(out[size_t(4 * qc + h * Dh + d)], v[size_t(4 * kc + (h / 2) * Dh + d)], 1e-12);
}

// A longer sequence (40 tokens: a recall prompt's length) behind a short one; a sample of
// elements is checked, every one would take too long.
TEST(TrainOps, AttentionGradientLongSequence) {
  const std::vector<SeqSpan> seqs = {{0, 3}, {3, 40}};
  const int H = 2, Hkv = 1, Dh = 8;
  const int64_t T = 43, qc = H * Dh, kc = Hkv * Dh;
  auto q = randn(T * qc, 26), k = randn(T * kc, 27), v = randn(T * kc, 28), R = randn(T * qc, 29);
  int64_t np = 0;
  attention_prob_offsets(seqs, H, &np);
  auto f = [&] {
    std::vector<double> out(T * qc), probs(np);
    attention_forward(q.data(), k.data(), v.data(), out.data(), probs.data(), seqs, H, Hkv, Dh);
    return dot(out, R);
  };
  std::vector<double> out(T * qc), probs(np), dq(T * qc, 0.0), dk(T * kc, 0.0), dv(T * kc, 0.0);
  attention_forward(q.data(), k.data(), v.data(), out.data(), probs.data(), seqs, H, Hkv, Dh);
  attention_backward(R.data(), q.data(), k.data(), v.data(), probs.data(), dq.data(), dk.data(), dv.data(), seqs, H, Hkv, Dh);
  std::mt19937_64 pick(30);
  for (auto [x, g] : {std::pair{&q, &dq}, std::pair{&k, &dk}, std::pair{&v, &dv}}) {
    double worst = 0;
    for (int s = 0; s < 40; ++s) {
      const size_t i = pick() % x->size();
      const double old = (*x)[i];
      (*x)[i] = old + 1e-5;
      const double fp = f();
      (*x)[i] = old - 1e-5;
      const double fm = f();
      (*x)[i] = old;
      const double num = (fp - fm) / 2e-5;
      worst = std::max(worst, std::fabs(num - (*g)[i]) / std::max(std::fabs(num) + std::fabs((*g)[i]), 1e-6));
    }
    EXPECT_LT(worst, kLimit);
  }
}

TEST(TrainOps, SiluMulGradient) {
  const int64_t n = 12;
  auto g = randn(n, 16, 2.0), u = randn(n, 17), R = randn(n, 18);
  auto f = [&] {
    std::vector<double> out(n);
    silu_mul_forward(g.data(), u.data(), out.data(), n);
    return dot(out, R);
  };
  std::vector<double> dg(n), du(n);
  silu_mul_backward(R.data(), g.data(), u.data(), dg.data(), du.data(), n);
  EXPECT_LT(grad_error(f, g, dg), kLimit);
  EXPECT_LT(grad_error(f, u, du), kLimit);
}

TEST(TrainOps, CrossEntropyGradient) {
  const int64_t R = 3, V = 7;
  auto logits = randn(R * V, 19, 2.0);
  const std::vector<int32_t> targets = {2, 0, 6};
  std::vector<double> scratch(R * V), dl(R * V);
  auto f = [&] { return cross_entropy(logits.data(), targets.data(), scratch.data(), R, V, 1.0) / R; };
  const double loss = cross_entropy(logits.data(), targets.data(), dl.data(), R, V, 1.0 / R) / R;
  EXPECT_LT(grad_error(f, logits, dl), kLimit);
  // Uniform logits give log(V) per row.
  std::vector<double> flat(R * V, 0.5);
  EXPECT_NEAR(cross_entropy(flat.data(), targets.data(), scratch.data(), R, V, 1.0) / R, std::log(double(V)), 1e-12);
  EXPECT_GT(loss, 0);
}

TEST(TrainOps, EmbeddingGradientAddsRepeatedIds) {
  const int64_t D = 3;
  const std::vector<int32_t> ids = {2, 0, 2, 1};
  auto table = randn(4 * D, 20), R = randn(ids.size() * D, 21);
  auto f = [&] {
    std::vector<double> out(ids.size() * D);
    embedding_forward(ids.data(), table.data(), out.data(), int64_t(ids.size()), D);
    return dot(out, R);
  };
  std::vector<double> dt(4 * D, 0.0);
  embedding_backward(ids.data(), R.data(), dt.data(), int64_t(ids.size()), D);
  EXPECT_LT(grad_error(f, table, dt), kLimit);
  for (int d = 0; d < D; ++d) EXPECT_EQ(dt[size_t(3 * D + d)], 0.0);  // id 3 unused
}

// fake_quant_rows is the kernels' INT8 scheme, element for element (an all-zero row stays zero).
TEST(TrainOps, FakeQuantIsTheInt8Scheme) {
  const int64_t M = 3, K = 33;
  auto xd = randn(M * K, 22);
  std::vector<float> x(xd.begin(), xd.end());
  for (int64_t k = 0; k < K; ++k) x[size_t(K + k)] = 0.f;
  std::vector<float> out(M * K);
  fake_quant_rows(x.data(), out.data(), M, K);
  for (int64_t m = 0; m < M; ++m) {
    std::vector<int8_t> q(K);
    const float s = cb::kernels::int8::quantize_row(x.data() + m * K, K, q.data());
    for (int64_t k = 0; k < K; ++k) ASSERT_EQ(out[size_t(m * K + k)], float(q[size_t(k)]) * s) << "row " << m << " col " << k;
  }
  for (int64_t k = 0; k < K; ++k) EXPECT_EQ(out[size_t(K + k)], 0.f);
  // At most 127 levels each side: the largest magnitude maps to itself.
  float amax = 0, qmax = 0;
  for (int64_t k = 0; k < K; ++k) {
    amax = std::max(amax, std::fabs(x[size_t(k)]));
    qmax = std::max(qmax, std::fabs(out[size_t(k)]));
  }
  EXPECT_FLOAT_EQ(qmax, amax);
}

// QAT linear: forward on q(x) and the given (already quantized) weight; backward straight through
// the quantizer: dx = dy w, dw = dy^T q(x).
TEST(TrainOps, QatLinearIsStraightThrough) {
  const int64_t M = 4, N = 3, K = 6;
  auto xd = randn(M * K, 23), wd = randn(N * K, 24), dyd = randn(M * N, 25);
  std::vector<float> x(xd.begin(), xd.end()), w(wd.begin(), wd.end()), dy(dyd.begin(), dyd.end()), xq(M * K);
  fake_quant_rows(x.data(), xq.data(), M, K);
  Gemm gemm;
  std::vector<float> scratch, y(M * N), dx(M * K, 0.f), dw(N * K, 0.f);
  linear_forward(gemm, x.data(), w.data(), y.data(), M, N, K, true, scratch);
  linear_backward(gemm, dy.data(), x.data(), w.data(), dx.data(), dw.data(), M, N, K, true, scratch);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double e = 0;
      for (int64_t k = 0; k < K; ++k) e += double(xq[size_t(m * K + k)]) * w[size_t(n * K + k)];
      EXPECT_NEAR(y[size_t(m * N + n)], e, 1e-5);
    }
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) {
      double e = 0;
      for (int64_t n = 0; n < N; ++n) e += double(dy[size_t(m * N + n)]) * w[size_t(n * K + k)];
      EXPECT_NEAR(dx[size_t(m * K + k)], e, 1e-5);
    }
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      double e = 0;
      for (int64_t m = 0; m < M; ++m) e += double(dy[size_t(m * N + n)]) * xq[size_t(m * K + k)];
      EXPECT_NEAR(dw[size_t(n * K + k)], e, 1e-5);
    }
  // The quantized input differs from x (else the test would not tell QAT from plain).
  EXPECT_NE(xq, x);
}
