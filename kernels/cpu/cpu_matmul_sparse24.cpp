// 2:4 sparse matmul driver over the Sparse24 layout (tensor.h): threads over output columns, the
// ISA's kernel (cpu_algos_sparse24.h) per range.
//
// Speed against the dense f32 GEMM of the same shape (Zen 4, 1 thread, CPU time, median of 5 on
// a loaded host): M=1 1.0-1.4x, M=8..16 1.1-1.4x (W streams 2.25 instead of 4 bytes per weight),
// M=128 0.97x: half the FMAs, but each needs a two-source permute to line x up with the kept
// values, and on Zen 4 the permute costs about what the FMA it saves did. CPUs have no sparse
// tensor cores; this is the honest CPU figure. The kernels check every meta byte while they
// decode it (no separate pass over the metadata); a malformed byte turns the call into
// InvalidArgument, with y filled with NaN so no caller can mistake it for a result.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu_ops.h"

namespace cb::kernels::cpu {

Status matmul_sparse24(const KernelTable& k, const Tensor& x, const Weight& w, Tensor& y) {
  Sparse24Args a;
  a.x = x.as<const float>();
  a.ldx = w.k;
  a.vals = w.values.data;
  a.wdt = w.dtype();
  a.meta = w.meta.as<const uint8_t>();
  a.y = y.as<float>();
  a.M = x.rows();
  a.N = w.n;
  a.K = w.k;
  // Rows of x a multiple of 2 KiB apart alias in L1 (see matmul_gemv in cpu_matmul.cpp).
  std::vector<float> padded;
  if (a.M > 1 && a.K % 512 == 0) {
    const int64_t ld = a.K + 16;
    padded.resize(static_cast<size_t>(a.M * ld));
    for (int64_t m = 0; m < a.M; ++m)
      std::memcpy(padded.data() + m * ld, a.x + m * a.K, sizeof(float) * static_cast<size_t>(a.K));
    a.x = padded.data();
    a.ldx = ld;
  }
  std::atomic<bool> ok{true};
  const int64_t min_cols = std::max<int64_t>(1, (int64_t(1) << 17) / std::max<int64_t>(1, a.M * a.K));
  parallel_ranges(a.N, min_cols, 24, [&](int64_t n0, int64_t n1) {
    if (!k.sparse24(a, n0, n1)) ok.store(false, std::memory_order_relaxed);
  });
  if (ok.load()) return Status::Ok();
  std::fill(a.y, a.y + a.M * a.N, std::numeric_limits<float>::quiet_NaN());
  Status s = check_sparse24_meta(w, "cpu matmul");  // names the first bad byte
  if (s.ok()) s = Status::invalid("cpu matmul: malformed 2:4 sparse meta");  // kernel and check disagree
  return s;
}

}  // namespace cb::kernels::cpu
