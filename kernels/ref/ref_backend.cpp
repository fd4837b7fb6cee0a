// The `ref` backend: plain scalar loops in double accumulation, written to be read. It is the
// oracle every other backend is tested against, so clarity beats speed here.
#include <cmath>
#include <limits>
#include <vector>

#include "../common/host_backend.h"
#include "cb/kernels/int8_scheme.h"

namespace cb::kernels {
namespace {

class RefBackend final : public HostBackend {
 public:
  std::string name() const override { return "ref"; }

  bool supports(Op op, DType dtype, WeightLayout layout) const override {
    switch (op) {
      case Op::MatMul:
        if (layout == WeightLayout::Dense || layout == WeightLayout::Sparse24) return is_float_dtype(dtype);
        if (layout == WeightLayout::Int8PerChannel) return dtype == DType::I8;
        return false;
      case Op::RmsNorm:
      case Op::Embedding:
        return is_float_dtype(dtype);
      default:
        return dtype == DType::F32;
    }
  }

  bool supports_matmul(DType dtype, WeightLayout layout, ActQuant act) const override {
    switch (act) {
      case ActQuant::None: return supports(Op::MatMul, dtype, layout);
      case ActQuant::PerTokenInt8: return layout == WeightLayout::Int8PerChannel && dtype == DType::I8;
      case ActQuant::Bf16: return layout == WeightLayout::Dense && dtype == DType::BF16;
    }
    return false;
  }

  // y[m, n] = sum_k x[m, k] * w(n, k), with x first rounded or quantized as w.act_quant says.
  Status matmul(const Tensor& x, const Weight& w, Tensor& y) override {
    if (auto s = check_matmul_args(x, w, y); !s.ok()) return s;
    if (auto s = check_matmul_weight(w, "ref matmul"); !s.ok()) return s;
    if (!supports_matmul(w.dtype(), w.layout, w.act_quant))
      return Status::unsupported(std::string("ref matmul: weight dtype ") + dtype_name(w.dtype()) + " with " +
                                 act_quant_name(w.act_quant) + " activations");
    if (w.layout == WeightLayout::Sparse24)
      if (auto s = check_sparse24_meta(w, "ref matmul"); !s.ok()) return s;
    if (w.act_quant == ActQuant::PerTokenInt8) return matmul_w8a8(x, w, y);
    const int64_t M = x.rows(), N = w.n, K = w.k;
    std::vector<double> xr(static_cast<size_t>(K));
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t k = 0; k < K; ++k) {
        const float v = x.as<const float>()[m * K + k];
        xr[size_t(k)] = w.act_quant == ActQuant::Bf16 ? bf16_to_f32(f32_to_bf16(v)) : v;
      }
      for (int64_t n = 0; n < N; ++n) {
        double acc = 0;
        if (w.layout == WeightLayout::Sparse24) {
          // Group g keeps columns 4g + i0 and 4g + i1 (meta byte i0 | i1 << 2), values in that order.
          for (int64_t g = 0; g < K / 4; ++g) {
            const unsigned b = w.meta.as<const uint8_t>()[n * (K / 4) + g];
            acc += xr[size_t(4 * g + (b & 3))] * load_as_f32(w.values, n * (K / 2) + 2 * g);
            acc += xr[size_t(4 * g + (b >> 2))] * load_as_f32(w.values, n * (K / 2) + 2 * g + 1);
          }
        } else {
          for (int64_t k = 0; k < K; ++k) acc += xr[size_t(k)] * weight_at(w, n, k);
        }
        y.as<float>()[m * N + n] = static_cast<float>(acc);
      }
    }
    return Status::Ok();
  }

  // y = x / sqrt(mean(x^2) + eps) * weight
  Status rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor& y) override {
    if (auto s = check_same_shape("rmsnorm", x, y); !s.ok()) return s;
    if (weight.numel() != x.cols()) return Status::invalid("rmsnorm: weight " + weight.describe() + " vs x " + x.describe());
    const int64_t M = x.rows(), D = x.cols();
    for (int64_t m = 0; m < M; ++m) {
      const float* xr = x.as<const float>() + m * D;
      double ss = 0;
      for (int64_t d = 0; d < D; ++d) ss += double(xr[d]) * xr[d];
      const double inv = 1.0 / std::sqrt(ss / D + eps);
      float* yr = y.as<float>() + m * D;
      for (int64_t d = 0; d < D; ++d) yr[d] = static_cast<float>(xr[d] * inv * load_as_f32(weight, d));
    }
    return Status::Ok();
  }

  // Pairs (i, i + half) of each head rotate by angle pos * theta^(-2i/head_dim).
  Status rope(Tensor& x, const Tensor& positions, int n_heads, int head_dim, float theta) override {
    if (x.cols() != int64_t(n_heads) * head_dim || positions.numel() != x.rows() || head_dim % 2)
      return Status::invalid("rope: x " + x.describe() + ", positions " + positions.describe());
    const int half = head_dim / 2;
    for (int64_t m = 0; m < x.rows(); ++m) {
      const double pos = positions.as<const int32_t>()[m];
      for (int h = 0; h < n_heads; ++h) {
        float* v = x.as<float>() + m * x.cols() + int64_t(h) * head_dim;
        for (int i = 0; i < half; ++i) {
          const double inv_freq = std::pow(double(theta), -2.0 * i / head_dim);
          const double c = std::cos(pos * inv_freq), s = std::sin(pos * inv_freq);
          const double a = v[i], b = v[i + half];
          v[i] = static_cast<float>(a * c - b * s);
          v[i + half] = static_cast<float>(b * c + a * s);
        }
      }
    }
    return Status::Ok();
  }

  Status kv_store(const Tensor& k, const Tensor& v, KvView& kv, int pos0) override {
    const int64_t row = int64_t(kv.n_kv_heads) * kv.head_dim;
    if (k.cols() != row || v.cols() != row || k.rows() != v.rows())
      return Status::invalid("kv_store: k " + k.describe() + ", v " + v.describe() + ", cache row " + std::to_string(row));
    // Checked before writing anything, so a bad call leaves the cache as it was.
    if (auto s = check_block_table(kv, pos0 + k.rows(), "kv_store"); !s.ok()) return s;
    for (int64_t m = 0; m < k.rows(); ++m) {
      const int64_t off = slot_offset(kv, pos0 + m);
      if (off < 0) return Status::invalid("kv_store: position " + std::to_string(pos0 + m) + " is past the block table");
      for (int64_t j = 0; j < row; ++j) {
        kv.k_pool.as<float>()[off + j] = k.as<const float>()[m * row + j];
        kv.v_pool.as<float>()[off + j] = v.as<const float>()[m * row + j];
      }
    }
    return Status::Ok();
  }

  Status attention(const Tensor& q, const KvView& kv, const AttentionParams& p, Tensor& out) override {
    if (p.n_kv_heads <= 0 || p.n_heads % p.n_kv_heads || q.cols() != int64_t(p.n_heads) * p.head_dim ||
        kv.head_dim != p.head_dim || kv.n_kv_heads != p.n_kv_heads || p.q_pos0 + q.rows() > p.n_ctx)
      return Status::invalid("attention: q " + q.describe() + " with heads " + std::to_string(p.n_heads) + "/" +
                             std::to_string(p.n_kv_heads) + ", n_ctx " + std::to_string(p.n_ctx));
    if (auto s = check_block_table(kv, p.n_ctx, "attention"); !s.ok()) return s;
    const int group = p.n_heads / p.n_kv_heads;
    std::vector<double> scores(p.n_ctx);
    for (int64_t m = 0; m < q.rows(); ++m) {
      const int last = p.q_pos0 + int(m);  // causal: keys 0..last
      for (int h = 0; h < p.n_heads; ++h) {
        const float* qh = q.as<const float>() + m * q.cols() + int64_t(h) * p.head_dim;
        const int kvh = h / group;
        double mx = -INFINITY;
        for (int t = 0; t <= last; ++t) {
          const float* kt = kv.k_pool.as<const float>() + slot_offset(kv, t) + int64_t(kvh) * p.head_dim;
          double dot = 0;
          for (int d = 0; d < p.head_dim; ++d) dot += double(qh[d]) * kt[d];
          scores[t] = dot * p.scale;
          mx = std::max(mx, scores[t]);
        }
        double sum = 0;
        for (int t = 0; t <= last; ++t) sum += (scores[t] = std::exp(scores[t] - mx));
        float* oh = out.as<float>() + m * out.cols() + int64_t(h) * p.head_dim;
        for (int d = 0; d < p.head_dim; ++d) {
          double acc = 0;
          for (int t = 0; t <= last; ++t)
            acc += scores[t] * kv.v_pool.as<const float>()[slot_offset(kv, t) + int64_t(kvh) * p.head_dim + d];
          oh[d] = static_cast<float>(acc / sum);
        }
      }
    }
    return Status::Ok();
  }

  Status silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) override {
    if (auto s = check_same_shape("silu_mul", gate, up); !s.ok()) return s;
    if (auto s = check_same_shape("silu_mul", gate, out); !s.ok()) return s;
    for (int64_t i = 0; i < gate.numel(); ++i) {
      const double g = gate.as<const float>()[i];
      out.as<float>()[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up.as<const float>()[i]);
    }
    return Status::Ok();
  }

  Status softmax(const Tensor& x, Tensor& y) override {
    if (auto s = check_same_shape("softmax", x, y); !s.ok()) return s;
    const int64_t N = x.cols();
    for (int64_t m = 0; m < x.rows(); ++m) {
      const float* xr = x.as<const float>() + m * N;
      double mx = -INFINITY, sum = 0;
      for (int64_t n = 0; n < N; ++n) mx = std::max(mx, double(xr[n]));
      std::vector<double> e(N);
      for (int64_t n = 0; n < N; ++n) sum += (e[n] = std::exp(xr[n] - mx));
      for (int64_t n = 0; n < N; ++n) y.as<float>()[m * N + n] = static_cast<float>(e[n] / sum);
    }
    return Status::Ok();
  }

  Status embedding(const Tensor& ids, const Tensor& table, Tensor& out) override {
    const int64_t D = table.cols(), V = table.rows();
    if (out.cols() != D || out.rows() != ids.numel())
      return Status::invalid("embedding: out " + out.describe() + ", table " + table.describe());
    for (int64_t m = 0; m < ids.numel(); ++m) {
      const int32_t id = ids.as<const int32_t>()[m];
      if (id < 0 || id >= V) return Status::invalid("embedding: token id " + std::to_string(id) + " outside vocab of " + std::to_string(V));
      for (int64_t d = 0; d < D; ++d) out.as<float>()[m * D + d] = load_as_f32(table, int64_t(id) * D + d);
    }
    return Status::Ok();
  }

  Status add(const Tensor& a, const Tensor& b, Tensor& out) override {
    if (auto s = check_same_shape("add", a, b); !s.ok()) return s;
    if (auto s = check_same_shape("add", a, out); !s.ok()) return s;
    for (int64_t i = 0; i < a.numel(); ++i) out.as<float>()[i] = a.as<const float>()[i] + b.as<const float>()[i];
    return Status::Ok();
  }

 private:
  // W8A8: each row of x quantized per token (int8_scheme.h), exact integer dot products,
  // y = acc * x_scale * w_scale. A row with NaN/Inf has no int8 form: its outputs are NaN.
  static Status matmul_w8a8(const Tensor& x, const Weight& w, Tensor& y) {
    const int64_t M = x.rows(), N = w.n, K = w.k;
    std::vector<int8_t> q(static_cast<size_t>(K));
    for (int64_t m = 0; m < M; ++m) {
      const float* xr = x.as<const float>() + m * K;
      bool finite = true;
      for (int64_t k = 0; k < K; ++k) finite = finite && std::isfinite(xr[k]);
      const float xs = finite ? int8::quantize_row(xr, K, q.data()) : std::numeric_limits<float>::quiet_NaN();
      for (int64_t n = 0; n < N; ++n) {
        int64_t acc = 0;
        for (int64_t k = 0; finite && k < K; ++k) acc += int64_t(q[size_t(k)]) * w.values.as<const int8_t>()[n * K + k];
        y.as<float>()[m * N + n] = static_cast<float>(double(acc) * xs * w.scales.as<const float>()[n]);
      }
    }
    return Status::Ok();
  }

  static double weight_at(const Weight& w, int64_t n, int64_t k) {
    if (w.layout == WeightLayout::Int8PerChannel)
      return double(w.values.as<const int8_t>()[n * w.k + k]) * w.scales.as<const float>()[n];
    return load_as_f32(w.values, n * w.k + k);
  }

  // Every block the first n_tokens positions use must be listed and inside the pools: a short or
  // wrong table would otherwise read outside the cache.
  static Status check_block_table(const KvView& kv, int64_t n_tokens, const char* op) {
    const int64_t row = int64_t(kv.n_kv_heads) * kv.head_dim;
    const int64_t pool_blocks = (row > 0 && kv.block_size > 0) ? kv.k_pool.numel() / (row * kv.block_size) : 0;
    const int64_t needed = kv.block_size > 0 ? (n_tokens + kv.block_size - 1) / kv.block_size : 0;
    if (kv.block_size <= 0 || kv.block_table.numel() < needed)
      return Status::invalid(std::string(op) + ": block table has " + std::to_string(kv.block_table.numel()) + " blocks, " +
                             std::to_string(n_tokens) + " tokens need " + std::to_string(needed));
    for (int64_t b = 0; b < needed; ++b) {
      const int32_t id = kv.block_table.as<const int32_t>()[b];
      if (id < 0 || id >= pool_blocks)
        return Status::invalid(std::string(op) + ": block table entry " + std::to_string(b) + " = " + std::to_string(id) +
                               " is outside the pool of " + std::to_string(pool_blocks) + " blocks");
    }
    return Status::Ok();
  }

  // Float offset of token t's row in the pools, or -1 when t is past the block table.
  static int64_t slot_offset(const KvView& kv, int64_t t) {
    const int64_t blk = t / kv.block_size;
    if (blk >= kv.block_table.numel()) return -1;
    const int64_t phys = kv.block_table.as<const int32_t>()[blk];
    const int64_t row = int64_t(kv.n_kv_heads) * kv.head_dim;
    return (phys * kv.block_size + t % kv.block_size) * row;
  }
};

}  // namespace

std::unique_ptr<Backend> make_ref_backend() { return std::make_unique<RefBackend>(); }

}  // namespace cb::kernels
