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

  // y[m, n] = sum_k x[m, k] * w(n, k), with x first rounded or quantized as w.act_quant says.
  // The arguments were checked by Backend::matmul and the weight (2:4 meta included) by
  // upload_weight.
 protected:
  Status run_matmul(const Tensor& x, const Weight& w, Tensor& y) override {
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
            acc += xr[size_t(4 * g + ((b >> 2) & 3))] * load_as_f32(w.values, n * (K / 2) + 2 * g + 1);
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
  Status run_rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor& y) override {
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
  Status run_rope(Tensor& x, const Tensor& positions, int n_heads, int head_dim, float theta) override {
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

  Status run_kv_store(const Tensor& k, const Tensor& v, const Tensor& slot_mapping, KvLayer& kv) override {
    const int64_t row = int64_t(kv.n_kv_heads) * kv.head_dim;
    for (int64_t m = 0; m < k.rows(); ++m) {
      const int64_t slot = slot_mapping.as<const int32_t>()[m];
      if (slot < 0) continue;  // padding
      for (int64_t j = 0; j < row; ++j) {
        kv.k_pool.as<float>()[slot * row + j] = k.as<const float>()[m * row + j];
        kv.v_pool.as<float>()[slot * row + j] = v.as<const float>()[m * row + j];
      }
    }
    return Status::Ok();
  }

  // Each sequence on its own: its query rows are the last rows of its context (causal).
  Status run_attention(const Tensor& q, const KvLayer& kv, const AttentionBatch& b, const AttentionParams& p,
                       Tensor& out) override {
    const int group = p.n_heads / p.n_kv_heads;
    const int32_t* qs = b.query_start.as<const int32_t>();
    for (int s = 0; s < b.num_seqs; ++s) {
      const int64_t r0 = qs[s], rows = qs[s + 1] - qs[s];
      const int ctx = b.context_len.as<const int32_t>()[s];
      const int32_t* table = b.block_tables.as<const int32_t>() + int64_t(s) * b.max_blocks_per_seq;
      std::vector<double> scores(static_cast<size_t>(ctx));
      for (int64_t i = 0; i < rows; ++i) {
        const int last = ctx - int(rows) + int(i);  // keys 0..last
        const int64_t m = r0 + i;
        for (int h = 0; h < p.n_heads; ++h) {
          const float* qh = q.as<const float>() + m * q.cols() + int64_t(h) * p.head_dim;
          const int64_t kvh_off = int64_t(h / group) * p.head_dim;
          double mx = -INFINITY;
          for (int t = 0; t <= last; ++t) {
            const float* kt = kv.k_pool.as<const float>() + slot_offset(kv, table, t) + kvh_off;
            double dot = 0;
            for (int d = 0; d < p.head_dim; ++d) dot += double(qh[d]) * kt[d];
            scores[size_t(t)] = dot * p.scale;
            mx = std::max(mx, scores[size_t(t)]);
          }
          double sum = 0;
          for (int t = 0; t <= last; ++t) sum += (scores[size_t(t)] = std::exp(scores[size_t(t)] - mx));
          float* oh = out.as<float>() + m * out.cols() + int64_t(h) * p.head_dim;
          for (int d = 0; d < p.head_dim; ++d) {
            double acc = 0;
            for (int t = 0; t <= last; ++t)
              acc += scores[size_t(t)] * kv.v_pool.as<const float>()[slot_offset(kv, table, t) + kvh_off + d];
            oh[d] = static_cast<float>(acc / sum);
          }
        }
      }
    }
    return Status::Ok();
  }

  Status run_silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) override {
    for (int64_t i = 0; i < gate.numel(); ++i) {
      const double g = gate.as<const float>()[i];
      out.as<float>()[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up.as<const float>()[i]);
    }
    return Status::Ok();
  }

  Status run_softmax(const Tensor& x, Tensor& y) override {
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

  // ids are in range: the caller checked them (check_token_ids).
  Status run_embedding(const Tensor& ids, const Tensor& table, Tensor& out) override {
    const int64_t D = table.cols();
    for (int64_t m = 0; m < ids.numel(); ++m) {
      const int32_t id = ids.as<const int32_t>()[m];
      for (int64_t d = 0; d < D; ++d) out.as<float>()[m * D + d] = load_as_f32(table, int64_t(id) * D + d);
    }
    return Status::Ok();
  }

  Status run_add(const Tensor& a, const Tensor& b, Tensor& out) override {
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

  // Float offset of token t's row in the pools, through a sequence's block table.
  static int64_t slot_offset(const KvLayer& kv, const int32_t* table, int64_t t) {
    const int64_t row = int64_t(kv.n_kv_heads) * kv.head_dim;
    return (int64_t(table[t / kv.block_size]) * kv.block_size + t % kv.block_size) * row;
  }
};

}  // namespace

std::unique_ptr<Backend> make_ref_backend() { return std::make_unique<RefBackend>(); }

}  // namespace cb::kernels
