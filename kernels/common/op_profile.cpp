// Per-op timing decorator (op_profile.h).
#include "cb/kernels/op_profile.h"

#include <algorithm>
#include <chrono>

namespace cb::kernels {
namespace {

double weight_bytes(const Weight& w) { return double(w.values.nbytes() + w.scales.nbytes() + w.meta.nbytes()); }

std::string weight_shape(const Weight& w) {
  return "N=" + std::to_string(w.n) + " K=" + std::to_string(w.k) + " " + dtype_name(w.dtype()) + " " + weight_layout_name(w.layout) +
         (w.act_quant == ActQuant::None ? "" : std::string(" ") + act_quant_name(w.act_quant));
}

std::string rows_of(const Tensor& x) { return "M=" + std::to_string(x.rows()); }

}  // namespace

ProfilingBackend::ProfilingBackend(Backend& inner) : ForwardingBackend(inner), sync_(inner.stream() != nullptr) {}

template <class S, class F>
Status ProfilingBackend::timed(const char* op, S&& shape_of, double bytes, double flops, F&& f) {
  if (!enabled_) return f();
  const std::string shape = shape_of();
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  Status s = f();
  if (s.ok() && sync_) s = ForwardingBackend::synchronize();
  const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
  OpTiming& r = rows_[{op, shape}];
  if (r.calls == 0) r.op = op, r.shape = shape;
  ++r.calls;
  r.seconds += dt;
  r.bytes += bytes;
  r.flops += flops;
  return s;
}

std::vector<OpTiming> ProfilingBackend::timings() const {
  std::vector<OpTiming> out;
  for (const auto& [key, r] : rows_) out.push_back(r);
  std::stable_sort(out.begin(), out.end(), [](const OpTiming& a, const OpTiming& b) { return a.seconds > b.seconds; });
  return out;
}

Status ProfilingBackend::copy_from_host(Tensor& dst, const void* src) {
  return timed("copy_from_host", [] { return std::string(); }, double(dst.nbytes()), 0, [&] { return ForwardingBackend::copy_from_host(dst, src); });
}
Status ProfilingBackend::copy_to_host(void* dst, const Tensor& src) {
  return timed("copy_to_host", [] { return std::string(); }, double(src.nbytes()), 0, [&] { return ForwardingBackend::copy_to_host(dst, src); });
}

Status ProfilingBackend::run_matmul(const Tensor& x, const Weight& w, Tensor& y) {
  const double flops = 2.0 * double(x.rows()) * double(w.n) * double(w.k);
  return timed("matmul", [&] { return weight_shape(w) + " " + rows_of(x); }, weight_bytes(w), flops,
               [&] { return ForwardingBackend::run_matmul(x, w, y); });
}

Status ProfilingBackend::run_matmul_multi(const Tensor& x, std::span<const MatmulOutput> outs) {
  double bytes = 0, flops = 0;
  for (const MatmulOutput& o : outs) {
    bytes += weight_bytes(*o.w);
    flops += 2.0 * double(x.rows()) * double(o.w->n) * double(o.w->k);
  }
  auto shape = [&] {
    std::string s;
    for (const MatmulOutput& o : outs) s += (s.empty() ? "" : " + ") + weight_shape(*o.w);
    return s + " " + rows_of(x);
  };
  return timed("matmul_multi", shape, bytes, flops, [&] { return ForwardingBackend::run_matmul_multi(x, outs); });
}

Status ProfilingBackend::run_rmsnorm(const Tensor& x, const Tensor& w, float eps, Tensor& y) {
  return timed("rmsnorm", [&] { return rows_of(x); }, 0, 0, [&] { return ForwardingBackend::run_rmsnorm(x, w, eps, y); });
}
Status ProfilingBackend::run_rope(Tensor& x, const Tensor& pos, int h, int hd, float theta) {
  return timed("rope", [&] { return rows_of(x); }, 0, 0, [&] { return ForwardingBackend::run_rope(x, pos, h, hd, theta); });
}
Status ProfilingBackend::run_kv_store(const Tensor& k, const Tensor& v, const Tensor& slots, KvLayer& kv) {
  return timed("kv_store", [&] { return rows_of(k); }, 0, 0, [&] { return ForwardingBackend::run_kv_store(k, v, slots, kv); });
}
Status ProfilingBackend::run_attention(const Tensor& q, const KvLayer& kv, const AttentionBatch& b, const AttentionParams& p,
                                       Tensor& out) {
  return timed("attention", [&] { return rows_of(q); }, 0, 0, [&] { return ForwardingBackend::run_attention(q, kv, b, p, out); });
}
Status ProfilingBackend::run_silu_mul(const Tensor& g, const Tensor& u, Tensor& out) {
  return timed("silu_mul", [&] { return rows_of(g); }, 0, 0, [&] { return ForwardingBackend::run_silu_mul(g, u, out); });
}
Status ProfilingBackend::run_softmax(const Tensor& x, Tensor& y) {
  return timed("softmax", [&] { return rows_of(x); }, 0, 0, [&] { return ForwardingBackend::run_softmax(x, y); });
}
Status ProfilingBackend::run_embedding(const Tensor& ids, const Tensor& table, Tensor& out) {
  return timed("embedding", [&] { return "M=" + std::to_string(ids.numel()); }, 0, 0, [&] { return ForwardingBackend::run_embedding(ids, table, out); });
}
Status ProfilingBackend::run_add(const Tensor& a, const Tensor& b, Tensor& out) {
  return timed("add", [&] { return rows_of(a); }, 0, 0, [&] { return ForwardingBackend::run_add(a, b, out); });
}

}  // namespace cb::kernels
