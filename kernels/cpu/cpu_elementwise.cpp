// Drivers of the row-wise and element-wise ops: rmsnorm, rope, silu_mul, softmax, embedding, add.
// Each splits rows or elements over threads and runs one ISA's row kernel per row; the arguments
// were checked by Backend's public op (backend_common.cpp).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "../common/host_backend.h"
#include "cpu_ops.h"

namespace cb::kernels::cpu {
namespace {

// Element-wise ops: below this many elements per thread the pool costs more than it saves.
constexpr int64_t kMinElemsPerThread = 1 << 14;

int64_t min_rows_per_thread(int64_t cols) { return std::max<int64_t>(1, kMinElemsPerThread / std::max<int64_t>(1, cols)); }

}  // namespace

// y = x / sqrt(mean(x^2) + eps) * weight
Status rmsnorm(const KernelTable& k, const Tensor& x, const Tensor& weight, float eps, Tensor& y) {
  const int64_t D = x.cols();
  parallel_ranges(x.rows(), min_rows_per_thread(D), 1, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      const float* xr = x.as<const float>() + m * D;
      const double ss = k.sumsq(xr, D);
      const float inv = static_cast<float>(1.0 / std::sqrt(ss / double(D) + eps));
      k.scale_mul(xr, inv, weight.data, weight.dtype, y.as<float>() + m * D, D);
    }
  });
  return Status::Ok();
}

// Pairs (i, i + half) of each head rotate by pos * theta^(-2i/head_dim). The angles are taken in
// double (positions reach 16K and more, where a float product loses the phase) and rounded to
// float cos/sin once per row, shared by all heads.
//
// A forward pass ropes q and k of every layer at the same positions (44 calls per step on
// llama-1b), and the double sin/cos were most of each call (22 us of a batch-16 rope, 1 ms a
// step), so the last table is kept per calling thread and reused while positions, head_dim and
// theta are the same: the same numbers, computed once per step instead of once per call.
Status rope(const KernelTable& k, Tensor& x, const Tensor& positions, int n_heads, int head_dim, float theta) {
  const int half = head_dim / 2;
  const int64_t M = x.rows(), D = x.cols();
  const int32_t* pos = positions.as<const int32_t>();
  struct Table {
    std::vector<int32_t> positions;
    int head_dim = 0;
    float theta = 0.f;
    std::vector<float> cs;  // per row: cos[half], then sin[half]
  };
  static thread_local Table t;
  if (t.head_dim != head_dim || t.theta != theta || t.positions.size() != size_t(M) ||
      !std::equal(pos, pos + M, t.positions.begin())) {
    std::vector<double> inv_freq(static_cast<size_t>(half));
    for (int i = 0; i < half; ++i) inv_freq[size_t(i)] = std::pow(double(theta), -2.0 * i / head_dim);
    t.positions.assign(pos, pos + M);
    t.head_dim = head_dim;
    t.theta = theta;
    t.cs.resize(static_cast<size_t>(M * 2 * half));
    float* all = t.cs.data();  // t is this thread's: the workers below have their own
    parallel_ranges(M, std::max<int64_t>(1, 256 / std::max(1, half)), 1, [&](int64_t m0, int64_t m1) {
      for (int64_t m = m0; m < m1; ++m) {
        float* cs = all + m * 2 * half;
        for (int i = 0; i < half; ++i) {
          const double ang = double(pos[m]) * inv_freq[size_t(i)];
          cs[i] = static_cast<float>(std::cos(ang));
          cs[half + i] = static_cast<float>(std::sin(ang));
        }
      }
    });
  }
  const float* table = t.cs.data();
  // With the table at hand a row is ~0.06 ns per element (llama-1b, Zen 5), and waking the
  // second thread costs ~4 us: only past ~64K elements per thread does it pay (8 rows of 2048:
  // 4.1 us on two threads, 1 us on one).
  parallel_ranges(M, std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(1, D)), 1, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      const float* cs = table + m * 2 * half;
      k.rope_row(x.as<float>() + m * D, cs, cs + half, n_heads, head_dim);
    }
  });
  return Status::Ok();
}

// out = silu(gate) * up, silu(g) = g / (1 + e^-g)
Status silu_mul(const KernelTable& k, const Tensor& gate, const Tensor& up, Tensor& out) {
  const float* g = gate.as<const float>();
  const float* u = up.as<const float>();
  float* o = out.as<float>();
  parallel_ranges(gate.numel(), kMinElemsPerThread, 64,
                  [&](int64_t i0, int64_t i1) { k.silu_mul(g + i0, u + i0, o + i0, i1 - i0); });
  return Status::Ok();
}

// Row-wise softmax of x[M, N] into y (may alias x).
Status softmax(const KernelTable& k, const Tensor& x, Tensor& y) {
  const int64_t N = x.cols();
  parallel_ranges(x.rows(), min_rows_per_thread(N), 1, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) k.softmax_row(x.as<const float>() + m * N, y.as<float>() + m * N, N);
  });
  return Status::Ok();
}

// out[M, D] = table[ids[m], :]; the caller checked the ids (check_token_ids).
Status embedding(const KernelTable& k, const Tensor& ids, const Tensor& table, Tensor& out) {
  const int64_t D = table.cols(), M = ids.numel();
  const int32_t* id = ids.as<const int32_t>();
  parallel_ranges(M, min_rows_per_thread(D), 1, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) k.convert_rows(table.data, table.dtype, nullptr, id[m], 1, D, out.as<float>() + m * D);
  });
  return Status::Ok();
}

// out = a + b (out may alias a or b).
Status add(const KernelTable& k, const Tensor& a, const Tensor& b, Tensor& out) {
  const float* ap = a.as<const float>();
  const float* bp = b.as<const float>();
  float* op = out.as<float>();
  parallel_ranges(a.numel(), kMinElemsPerThread, 64,
                  [&](int64_t i0, int64_t i1) { k.add(ap + i0, bp + i0, op + i0, i1 - i0); });
  return Status::Ok();
}

}  // namespace cb::kernels::cpu
