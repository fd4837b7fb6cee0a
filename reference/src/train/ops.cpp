// Training ops: forward and backward of each layer (shapes in train/ops.h). Plain loops, OpenMP
// over rows, heads or columns so no two threads write the same element.
#include "cb/engine/train/ops.h"

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "cb/kernels/int8_scheme.h"

namespace cb::engine::train {
namespace {

// dst[c, r] = src[r, c] for src [R, C]: 64 x 64 tiles so both sides stay in cache, 4 x 4 blocks
// through SSE registers inside (baseline x86-64), scalar edges.
void transpose(const float* src, float* dst, int64_t R, int64_t C) {
  constexpr int64_t B = 64;
  auto tile = [&](int64_t r0, int64_t c0) {
    const int64_t r1 = std::min(R, r0 + B), c1 = std::min(C, c0 + B);
    int64_t r = r0;
#if defined(__SSE__)
    for (; r + 4 <= r1; r += 4) {
      int64_t c = c0;
      for (; c + 4 <= c1; c += 4) {
        __m128 a = _mm_loadu_ps(src + r * C + c), b = _mm_loadu_ps(src + (r + 1) * C + c),
               e = _mm_loadu_ps(src + (r + 2) * C + c), f = _mm_loadu_ps(src + (r + 3) * C + c);
        _MM_TRANSPOSE4_PS(a, b, e, f);
        _mm_storeu_ps(dst + c * R + r, a);
        _mm_storeu_ps(dst + (c + 1) * R + r, b);
        _mm_storeu_ps(dst + (c + 2) * R + r, e);
        _mm_storeu_ps(dst + (c + 3) * R + r, f);
      }
      for (; c < c1; ++c)
        for (int64_t k = r; k < r + 4; ++k) dst[c * R + k] = src[k * C + c];
    }
#endif
    for (; r < r1; ++r)
      for (int64_t c = c0; c < c1; ++c) dst[c * R + r] = src[r * C + c];
  };
  const int64_t tr = (R + B - 1) / B, tc = (C + B - 1) / B;
  if (R * C < (int64_t(1) << 16)) {  // too small to be worth waking a second thread
    for (int64_t i = 0; i < tr * tc; ++i) tile((i / tc) * B, (i % tc) * B);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < tr * tc; ++i) tile((i / tc) * B, (i % tc) * B);
}

void add_into(float* dst, const float* src, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}

kernels::Tensor view(const float* p, int64_t rows, int64_t cols) {
  return kernels::Tensor(const_cast<float*>(p), kernels::DType::F32, {rows, cols});
}

// y[M, N] = x[M, K] W[N, K]^T through the backend; throws naming the shapes on failure.
void backend_nt(kernels::Backend& be, const float* x, const float* w, float* y, int64_t M, int64_t N, int64_t K) {
  kernels::Tensor xt = view(x, M, K), yt = view(y, M, N);
  const kernels::Weight wt = kernels::Weight::dense(view(w, N, K));
  const kernels::Status s = be.matmul(xt, wt, yt);
  if (!s.ok())
    throw std::runtime_error("train gemm [" + std::to_string(M) + "x" + std::to_string(K) + "] * [" + std::to_string(N) +
                             "x" + std::to_string(K) + "]^T on backend '" + be.name() + "': " + s.message);
}

template <class T> void plain_nt(const T* x, const T* w, T* y, int64_t M, int64_t N, int64_t K) {
#pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      T acc = 0;
#pragma omp simd reduction(+ : acc)
      for (int64_t k = 0; k < K; ++k) acc += x[m * K + k] * w[n * K + k];
      y[m * N + n] = acc;
    }
}

template <class T> void plain_nn_acc(const T* dy, const T* w, T* dx, int64_t M, int64_t N, int64_t K) {
#pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      const T a = dy[m * N + n];
      for (int64_t k = 0; k < K; ++k) dx[m * K + k] += a * w[n * K + k];
    }
}

template <class T> void plain_tn_acc(const T* dy, const T* x, T* dw, int64_t M, int64_t N, int64_t K) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t m = 0; m < M; ++m) {
      const T a = dy[m * N + n];
      for (int64_t k = 0; k < K; ++k) dw[n * K + k] += a * x[m * K + k];
    }
}

}  // namespace

void Gemm::nt(const float* x, const float* w, float* y, int64_t M, int64_t N, int64_t K) {
  if (M == 0 || N == 0) return;
  if (be_) return backend_nt(*be_, x, w, y, M, N, K);
  plain_nt(x, w, y, M, N, K);
}
void Gemm::nt(const double* x, const double* w, double* y, int64_t M, int64_t N, int64_t K) { plain_nt(x, w, y, M, N, K); }

void Gemm::nn_acc(const float* dy, const float* w, float* dx, int64_t M, int64_t N, int64_t K) {
  if (M == 0 || K == 0) return;
  if (!be_) return plain_nn_acc(dy, w, dx, M, N, K);
  b_.resize(size_t(N * K));
  c_.resize(size_t(M * K));
  transpose(w, b_.data(), N, K);  // W^T [K, N] as the "weight" of y = dy (W^T)^T
  backend_nt(*be_, dy, b_.data(), c_.data(), M, K, N);
  add_into(dx, c_.data(), M * K);
}
void Gemm::nn_acc(const double* dy, const double* w, double* dx, int64_t M, int64_t N, int64_t K) {
  plain_nn_acc(dy, w, dx, M, N, K);
}

void Gemm::tn_acc(const float* dy, const float* x, float* dw, int64_t M, int64_t N, int64_t K) {
  if (N == 0 || K == 0) return;
  if (!be_ || M == 0) return plain_tn_acc(dy, x, dw, M, N, K);
  a_.resize(size_t(N * M));
  b_.resize(size_t(K * M));
  c_.resize(size_t(N * K));
  transpose(dy, a_.data(), M, N);  // dy^T [N, M]
  transpose(x, b_.data(), M, K);   // x^T [K, M]
  backend_nt(*be_, a_.data(), b_.data(), c_.data(), N, K, M);
  add_into(dw, c_.data(), N * K);
}
void Gemm::tn_acc(const double* dy, const double* x, double* dw, int64_t M, int64_t N, int64_t K) {
  plain_tn_acc(dy, x, dw, M, N, K);
}

template <class T>
void linear_forward(Gemm& g, const T* x, const T* w, T* y, int64_t M, int64_t N, int64_t K, bool qat, std::vector<T>& scratch) {
  if (qat) {
    scratch.resize(size_t(M * K));
    fake_quant_rows(x, scratch.data(), M, K);
    x = scratch.data();
  }
  g.nt(x, w, y, M, N, K);
}

template <class T>
void linear_backward(Gemm& g, const T* dy, const T* x, const T* w, T* dx, T* dw, int64_t M, int64_t N, int64_t K, bool qat,
                     std::vector<T>& scratch) {
  if (dx) g.nn_acc(dy, w, dx, M, N, K);
  if (qat) {  // recomputed rather than kept from forward: O(M K), and saves one activation copy per linear
    scratch.resize(size_t(M * K));
    fake_quant_rows(x, scratch.data(), M, K);
    x = scratch.data();
  }
  g.tn_acc(dy, x, dw, M, N, K);
}

template <class T> void embedding_forward(const int32_t* ids, const T* table, T* out, int64_t n, int64_t D) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t) std::copy_n(table + int64_t(ids[t]) * D, D, out + t * D);
}

template <class T> void embedding_backward(const int32_t* ids, const T* dout, T* dtable, int64_t n, int64_t D) {
  // Threads split the columns: tokens sharing an id then never race.
  constexpr int64_t B = 16;
#pragma omp parallel for schedule(static)
  for (int64_t d0 = 0; d0 < D; d0 += B)
    for (int64_t t = 0; t < n; ++t)
      for (int64_t d = d0; d < std::min(D, d0 + B); ++d) dtable[int64_t(ids[t]) * D + d] += dout[t * D + d];
}

template <class T> void rmsnorm_forward(const T* x, const T* w, T* y, T* rstd, int64_t M, int64_t D, float eps) {
#pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < M; ++m) {
    const T* xr = x + m * D;
    double ss = 0;
    for (int64_t d = 0; d < D; ++d) ss += double(xr[d]) * xr[d];
    const double inv = 1.0 / std::sqrt(ss / double(D) + eps);
    rstd[m] = T(inv);
    for (int64_t d = 0; d < D; ++d) y[m * D + d] = T(xr[d] * inv * w[d]);
  }
}

// y_d = x_d r w_d with r = (mean(x^2) + eps)^(-1/2): dr/dx_d = -r^3 x_d / D, so
// dx_d = r w_d dy_d - (r^3 / D) x_d sum_e(dy_e w_e x_e); dw_d = sum over rows of dy_d x_d r.
template <class T>
void rmsnorm_backward(const T* dy, const T* x, const T* w, const T* rstd, T* dx, T* dw, int64_t M, int64_t D) {
#pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < M; ++m) {
    const T* g = dy + m * D;
    const T* xr = x + m * D;
    const double r = rstd[m];
    double dot = 0;
    for (int64_t d = 0; d < D; ++d) dot += double(g[d]) * w[d] * xr[d];
    const double c = r * r * r * dot / double(D);
    for (int64_t d = 0; d < D; ++d) dx[m * D + d] += T(r * w[d] * g[d] - c * xr[d]);
  }
  constexpr int64_t B = 16;
#pragma omp parallel for schedule(static)
  for (int64_t d0 = 0; d0 < D; d0 += B) {
    double acc[B] = {};
    const int64_t d1 = std::min(D, d0 + B);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t d = d0; d < d1; ++d) acc[d - d0] += double(dy[m * D + d]) * x[m * D + d] * rstd[m];
    for (int64_t d = d0; d < d1; ++d) dw[d] += T(acc[d - d0]);
  }
}

RopeTable::RopeTable(int max_pos, int hd, float theta) : head_dim(hd) {
  if (hd <= 0 || hd % 2) throw std::invalid_argument("rope: head_dim " + std::to_string(hd) + " must be even and > 0");
  const int half = hd / 2;
  cos.resize(size_t(max_pos) * half);
  sin.resize(size_t(max_pos) * half);
  for (int p = 0; p < max_pos; ++p)
    for (int i = 0; i < half; ++i) {
      const double inv_freq = std::pow(double(theta), -2.0 * i / hd);
      cos[size_t(p) * half + i] = std::cos(p * inv_freq);
      sin[size_t(p) * half + i] = std::sin(p * inv_freq);
    }
}

namespace {
// Rotates pairs (i, i + half) of every head by +angle (sign 1) or -angle (sign -1).
template <class T> void rope_rotate(T* x, const int32_t* pos, int64_t M, int H, const RopeTable& rt, double sign) {
  const int Dh = rt.head_dim, half = Dh / 2;
  const int64_t max_pos = int64_t(rt.cos.size()) / half;
#pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < M; ++m) {
    if (pos[m] < 0 || pos[m] >= max_pos) continue;  // checked by the caller; never read out of bounds
    const double* c = rt.cos.data() + int64_t(pos[m]) * half;
    const double* s = rt.sin.data() + int64_t(pos[m]) * half;
    for (int h = 0; h < H; ++h) {
      T* v = x + (m * H + h) * Dh;
      for (int i = 0; i < half; ++i) {
        const double a = v[i], b = v[i + half], sn = sign * s[i];
        v[i] = T(a * c[i] - b * sn);
        v[i + half] = T(b * c[i] + a * sn);
      }
    }
  }
}
}  // namespace

template <class T> void rope_forward(T* x, const int32_t* pos, int64_t M, int H, const RopeTable& rt) {
  rope_rotate(x, pos, M, H, rt, 1.0);
}
// The rotation is orthogonal, so its gradient is the rotation by the opposite angle.
template <class T> void rope_backward(T* dx, const int32_t* pos, int64_t M, int H, const RopeTable& rt) {
  rope_rotate(dx, pos, M, H, rt, -1.0);
}

std::vector<int64_t> attention_prob_offsets(const std::vector<SeqSpan>& seqs, int H, int64_t* total) {
  std::vector<int64_t> off(seqs.size());
  int64_t o = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    off[s] = o;
    o += int64_t(H) * seqs[s].len * seqs[s].len;
  }
  if (total) *total = o;
  return off;
}

template <class T>
void attention_forward(const T* q, const T* k, const T* v, T* out, T* probs, const std::vector<SeqSpan>& seqs, int H,
                       int Hkv, int Dh) {
  const int group = H / Hkv;
  const int64_t qc = int64_t(H) * Dh, kc = int64_t(Hkv) * Dh;
  const T scale = T(1.0 / std::sqrt(double(Dh)));
  const std::vector<int64_t> off = attention_prob_offsets(seqs, H, nullptr);
  const int64_t tasks = int64_t(seqs.size()) * H;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t task = 0; task < tasks; ++task) {
    const size_t s = size_t(task / H);
    const int h = int(task % H), kvh = h / group;
    const int64_t n = seqs[s].len, t0 = seqs[s].start;
    for (int64_t i = 0; i < n; ++i) {
      const T* qi = q + (t0 + i) * qc + int64_t(h) * Dh;
      T* p = probs + off[s] + (int64_t(h) * n + i) * n;
      T mx = -INFINITY;
      for (int64_t j = 0; j <= i; ++j) {
        const T* kj = k + (t0 + j) * kc + int64_t(kvh) * Dh;
        T dot = 0;
#pragma omp simd reduction(+ : dot)
        for (int d = 0; d < Dh; ++d) dot += qi[d] * kj[d];
        p[j] = dot * scale;
        mx = std::max(mx, p[j]);
      }
      double sum = 0;
      for (int64_t j = 0; j <= i; ++j) sum += (p[j] = T(std::exp(double(p[j] - mx))));
      const T inv = T(1.0 / sum);
      for (int64_t j = 0; j <= i; ++j) p[j] *= inv;
      for (int64_t j = i + 1; j < n; ++j) p[j] = 0;
      T* oi = out + (t0 + i) * qc + int64_t(h) * Dh;
      for (int d = 0; d < Dh; ++d) oi[d] = 0;
      for (int64_t j = 0; j <= i; ++j) {
        const T* vj = v + (t0 + j) * kc + int64_t(kvh) * Dh;
        const T pj = p[j];
#pragma omp simd
        for (int d = 0; d < Dh; ++d) oi[d] += pj * vj[d];
      }
    }
  }
}

// Per row i of one head: dP_j = dout_i . v_j, dS_j = P_j (dP_j - sum_l P_l dP_l),
// dq_i += scale sum_j dS_j k_j, dk_j += scale dS_j q_i, dv_j += P_j dout_i. One task per
// (sequence, KV head) so the query heads sharing a KV head add into dk / dv without races.
template <class T>
void attention_backward(const T* dout, const T* q, const T* k, const T* v, const T* probs, T* dq, T* dk, T* dv,
                        const std::vector<SeqSpan>& seqs, int H, int Hkv, int Dh) {
  const int group = H / Hkv;
  const int64_t qc = int64_t(H) * Dh, kc = int64_t(Hkv) * Dh;
  const T scale = T(1.0 / std::sqrt(double(Dh)));
  const std::vector<int64_t> off = attention_prob_offsets(seqs, H, nullptr);
  const int64_t tasks = int64_t(seqs.size()) * Hkv;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t task = 0; task < tasks; ++task) {
    const size_t s = size_t(task / Hkv);
    const int kvh = int(task % Hkv);
    const int64_t n = seqs[s].len, t0 = seqs[s].start;
    std::vector<T> ds(static_cast<size_t>(n));
    for (int h = kvh * group; h < (kvh + 1) * group; ++h)
      for (int64_t i = 0; i < n; ++i) {
        const T* p = probs + off[s] + (int64_t(h) * n + i) * n;
        const T* go = dout + (t0 + i) * qc + int64_t(h) * Dh;
        const T* qi = q + (t0 + i) * qc + int64_t(h) * Dh;
        T* gq = dq + (t0 + i) * qc + int64_t(h) * Dh;
        double sum = 0;
        for (int64_t j = 0; j <= i; ++j) {
          const T* vj = v + (t0 + j) * kc + int64_t(kvh) * Dh;
          T dot = 0;
#pragma omp simd reduction(+ : dot)
          for (int d = 0; d < Dh; ++d) dot += go[d] * vj[d];
          ds[j] = dot;
          sum += double(p[j]) * dot;
        }
        for (int64_t j = 0; j <= i; ++j) {
          const T dsj = p[j] * (ds[j] - T(sum)) * scale;
          const T* kj = k + (t0 + j) * kc + int64_t(kvh) * Dh;
          T* gk = dk + (t0 + j) * kc + int64_t(kvh) * Dh;
          T* gv = dv + (t0 + j) * kc + int64_t(kvh) * Dh;
          const T pj = p[j];
#pragma omp simd
          for (int d = 0; d < Dh; ++d) {
            gq[d] += dsj * kj[d];
            gk[d] += dsj * qi[d];
            gv[d] += pj * go[d];
          }
        }
      }
  }
}

template <class T> void silu_mul_forward(const T* g, const T* u, T* out, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = g[i] / (T(1) + std::exp(-g[i])) * u[i];
}

// silu(g) = g s, s = sigmoid(g); silu'(g) = s (1 + g (1 - s)).
template <class T> void silu_mul_backward(const T* dout, const T* g, const T* u, T* dg, T* du, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T gi = g[i], s = T(1) / (T(1) + std::exp(-gi));
    du[i] = dout[i] * gi * s;
    dg[i] = dout[i] * u[i] * s * (T(1) + gi * (T(1) - s));
  }
}

template <class T>
double cross_entropy(const T* logits, const int32_t* targets, T* dlogits, int64_t R, int64_t V, double scale) {
  std::vector<double> row_loss(static_cast<size_t>(R));  // summed in row order below: no thread-order dependence
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    const T* l = logits + r * V;
    T* g = dlogits + r * V;
    double mx = -INFINITY;
    for (int64_t c = 0; c < V; ++c) mx = std::max(mx, double(l[c]));
    double sum = 0;
    for (int64_t c = 0; c < V; ++c) sum += std::exp(double(l[c]) - mx);
    const double lse = mx + std::log(sum);
    row_loss[size_t(r)] = lse - double(l[targets[r]]);
    for (int64_t c = 0; c < V; ++c) g[c] = T((std::exp(double(l[c]) - lse) - (c == targets[r] ? 1.0 : 0.0)) * scale);
  }
  double loss = 0;
  for (double x : row_loss) loss += x;
  return loss;
}

template <class T> void fake_quant_rows(const T* x, T* out, int64_t M, int64_t K) {
#pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < M; ++m) {
    // The scheme is defined on float rows; a double row is rounded to float first.
    std::vector<float> row(x + m * K, x + (m + 1) * K);
    const float s = kernels::int8::row_scale(row.data(), K);
    for (int64_t k = 0; k < K; ++k) out[m * K + k] = T(kernels::int8::fake_quant(row[size_t(k)], s));
  }
}

#define CB_TRAIN_OPS_INSTANTIATE(T)                                                                                   \
  template void linear_forward<T>(Gemm&, const T*, const T*, T*, int64_t, int64_t, int64_t, bool, std::vector<T>&);  \
  template void linear_backward<T>(Gemm&, const T*, const T*, const T*, T*, T*, int64_t, int64_t, int64_t, bool,     \
                                   std::vector<T>&);                                                                \
  template void embedding_forward<T>(const int32_t*, const T*, T*, int64_t, int64_t);                               \
  template void embedding_backward<T>(const int32_t*, const T*, T*, int64_t, int64_t);                              \
  template void rmsnorm_forward<T>(const T*, const T*, T*, T*, int64_t, int64_t, float);                            \
  template void rmsnorm_backward<T>(const T*, const T*, const T*, const T*, T*, T*, int64_t, int64_t);              \
  template void rope_forward<T>(T*, const int32_t*, int64_t, int, const RopeTable&);                                \
  template void rope_backward<T>(T*, const int32_t*, int64_t, int, const RopeTable&);                               \
  template void attention_forward<T>(const T*, const T*, const T*, T*, T*, const std::vector<SeqSpan>&, int, int, int); \
  template void attention_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*,                 \
                                      const std::vector<SeqSpan>&, int, int, int);                                  \
  template void silu_mul_forward<T>(const T*, const T*, T*, int64_t);                                               \
  template void silu_mul_backward<T>(const T*, const T*, const T*, T*, T*, int64_t);                                \
  template double cross_entropy<T>(const T*, const int32_t*, T*, int64_t, int64_t, double);                         \
  template void fake_quant_rows<T>(const T*, T*, int64_t, int64_t);

CB_TRAIN_OPS_INSTANTIATE(float)
CB_TRAIN_OPS_INSTANTIATE(double)

}  // namespace cb::engine::train
