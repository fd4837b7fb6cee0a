// matmul driver: y[M, N] = x[M, K] * W[N, K]^T for dense f32/f16/bf16 and int8 per-channel W.
//
// Small M (decode, M < onednn_min_m): the per-ISA GEMV kernel, threads split the N output columns
// so each thread streams its own rows of W, once per 8 rows of x (bandwidth bound).
// Large M: oneDNN's sgemm (compute bound). For f16/bf16/i8 weights, W is widened to f32 one
// L2-sized panel of rows at a time (threaded), and each panel goes through sgemm; the widening
// costs N*K per call against M*N*K FMAs, so it is small once M is large.
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "../common/host_backend.h"
#include "cpu_ops.h"

namespace cb::kernels::cpu {
namespace {

// Rows of W per thread chunk are a multiple of this (a whole number of GEMV tiles).
constexpr int64_t kRowAlign = 16;

bool sgemm(int64_t M, int64_t N, int64_t K, const float* x, const float* w, int64_t ldw, float* y, int64_t ldy) {
  // Row-major C[M, N] = A[M, K] * B^T, with B = W[N, K]: transa 'N', transb 'T'.
  return dnnl_sgemm('N', 'T', M, N, K, 1.f, x, K, w, ldw, 0.f, y, ldy) == dnnl_success;
}

bool matmul_onednn(const KernelTable& k, const Tensor& x, const Weight& w, Tensor& y) {
  const int64_t M = x.rows(), N = w.n, K = w.k;
  const float* xp = x.as<const float>();
  float* yp = y.as<float>();
  if (w.layout == WeightLayout::Dense && w.dtype() == DType::F32)
    return sgemm(M, N, K, xp, w.values.as<const float>(), K, yp, N);

  // ~2 MiB f32 panels: big enough for sgemm to run well, small enough to stay in cache.
  const int64_t panel_rows = std::clamp<int64_t>((int64_t(1) << 19) / K / kRowAlign * kRowAlign, kRowAlign, N);
  std::vector<float> panel(static_cast<size_t>(panel_rows * K));
  const float* scales = w.layout == WeightLayout::Int8PerChannel ? w.scales.as<const float>() : nullptr;
  for (int64_t n0 = 0; n0 < N; n0 += panel_rows) {
    const int64_t nb = std::min(panel_rows, N - n0);
    parallel_ranges(nb, 8, 1, [&](int64_t r0, int64_t r1) {
      k.convert_rows(w.values.data, w.dtype(), scales, n0 + r0, r1 - r0, K, panel.data() + r0 * K);
    });
    if (!sgemm(M, nb, K, xp, panel.data(), K, yp + n0, N)) return false;
  }
  return true;
}

void matmul_gemv(const KernelTable& k, const Tensor& x, const Weight& w, Tensor& y) {
  GemvArgs a;
  a.x = x.as<const float>();
  a.w = w.values.data;
  a.wdt = w.dtype();
  a.scales = w.layout == WeightLayout::Int8PerChannel ? w.scales.as<const float>() : nullptr;
  a.y = y.as<float>();
  a.M = x.rows();
  a.N = w.n;
  a.K = w.k;
  // Below ~64K multiply-adds per thread, one thread finishes before a second one wakes up.
  const int64_t min_rows = std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(1, a.M * a.K));
  parallel_ranges(a.N, min_rows, kRowAlign, [&](int64_t n0, int64_t n1) { k.gemv(a, n0, n1); });
}

}  // namespace

Status matmul(const KernelTable& k, const MatmulConfig& cfg, const Tensor& x, const Weight& w, Tensor& y) {
  if (auto s = check_matmul_args(x, w, y); !s.ok()) return s;
  if (!supports(Op::MatMul, w.dtype(), w.layout))
    return Status::unsupported(std::string("cpu matmul: weight dtype ") + dtype_name(w.dtype()) +
                               (w.layout == WeightLayout::Dense ? " (dense)" : w.layout == WeightLayout::Sparse24
                                                                                   ? " (2:4 sparse)"
                                                                                   : " (int8 per channel)"));
  const int64_t M = x.rows(), N = w.n, K = w.k;
  if (N < 0 || K < 0 || w.values.numel() != N * K)
    return Status::invalid("cpu matmul: weight values " + w.values.describe() + " do not hold [" + std::to_string(N) +
                           ", " + std::to_string(K) + "]");
  if (w.layout == WeightLayout::Int8PerChannel && (w.scales.dtype != DType::F32 || w.scales.numel() != N))
    return Status::invalid("cpu matmul: int8 scales " + w.scales.describe() + " must be f32[" + std::to_string(N) + "]");
  if (M == 0 || N == 0) return Status::Ok();
  if (y.data == nullptr || (K > 0 && (x.data == nullptr || w.values.data == nullptr)) ||
      (w.layout == WeightLayout::Int8PerChannel && w.scales.data == nullptr))
    return Status::invalid("cpu matmul: missing data pointer");
  if (K == 0) {
    std::memset(y.data, 0, y.nbytes());
    return Status::Ok();
  }
  if (M >= cfg.onednn_min_m && matmul_onednn(k, x, w, y)) return Status::Ok();
  matmul_gemv(k, x, w, y);  // also the fallback should oneDNN refuse a call
  return Status::Ok();
}

}  // namespace cb::kernels::cpu
