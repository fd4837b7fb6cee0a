// A Backend decorator base: every call goes to an inner backend's public op (which checks the
// arguments again: cheap, and the inner backend stays correct on its own). Decorators override the
// run_* they watch and call the base for the rest: the calibration recorder (compress/calibrate.cpp)
// and the per-op profiler (op_profile.h).
#pragma once

#include <string>

#include "cb/kernels/backend.h"

namespace cb::kernels {

class ForwardingBackend : public Backend {
 public:
  explicit ForwardingBackend(Backend& inner) : in_(inner) {}
  Backend& inner() const { return in_; }

  std::string name() const override { return in_.name(); }
  bool supports(Op op, DType d, WeightLayout l) const override { return in_.supports(op, d, l); }
  bool supports_matmul(DType d, WeightLayout l, ActQuant a) const override { return in_.supports_matmul(d, l, a); }
  std::string matmul_unsupported_note(DType d, WeightLayout l, ActQuant a) const override {
    return in_.matmul_unsupported_note(d, l, a);
  }
  Status allocate(DType d, std::initializer_list<int64_t> dims, Tensor& out) override { return in_.allocate(d, dims, out); }
  void release(Tensor& t) override { in_.release(t); }
  Status copy_from_host(Tensor& dst, const void* src) override { return in_.copy_from_host(dst, src); }
  Status copy_to_host(void* dst, const Tensor& src) override { return in_.copy_to_host(dst, src); }
  Status copy(Tensor& dst, const Tensor& src) override { return in_.copy(dst, src); }
  Status synchronize() override { return in_.synchronize(); }
  Stream stream() const override { return in_.stream(); }
  void busy_begin() override { in_.busy_begin(); }
  void busy_end() override { in_.busy_end(); }
  std::optional<double> device_busy_seconds() override { return in_.device_busy_seconds(); }
  // A decorator watches each op as it runs (the profiler times it), so it records nothing by
  // default, whatever the inner backend can do.
  std::string capture_unsupported_reason() const override {
    return "ops on backend " + in_.name() + " go through a decorator that watches each one as it runs (the op profiler, "
           "the calibration recorder), so they are not recorded";
  }

 protected:
  Status run_matmul(const Tensor& x, const Weight& w, Tensor& y) override { return in_.matmul(x, w, y); }
  Status run_matmul_multi(const Tensor& x, std::span<const MatmulOutput> outs) override { return in_.matmul_multi(x, outs); }
  Status run_rmsnorm(const Tensor& x, const Tensor& w, float eps, Tensor& y) override { return in_.rmsnorm(x, w, eps, y); }
  Status run_rope(Tensor& x, const Tensor& pos, int h, int hd, float theta) override { return in_.rope(x, pos, h, hd, theta); }
  Status run_kv_store(const Tensor& k, const Tensor& v, const Tensor& slots, KvLayer& kv) override {
    return in_.kv_store(k, v, slots, kv);
  }
  Status run_attention(const Tensor& q, const KvLayer& kv, const AttentionBatch& b, const AttentionParams& p,
                       Tensor& out) override {
    return in_.attention(q, kv, b, p, out);
  }
  Status run_silu_mul(const Tensor& g, const Tensor& u, Tensor& out) override { return in_.silu_mul(g, u, out); }
  Status run_softmax(const Tensor& x, Tensor& y) override { return in_.softmax(x, y); }
  Status run_embedding(const Tensor& ids, const Tensor& table, Tensor& out) override { return in_.embedding(ids, table, out); }
  Status run_add(const Tensor& a, const Tensor& b, Tensor& out) override { return in_.add(a, b, out); }
  Status run_upload_weight(const Weight& w, Weight& out) override { return in_.upload_weight(w, out); }
  Status run_upload_tensor(const Tensor& t, Tensor& out) override { return in_.upload_tensor(t, out); }
  Status run_alloc_kv_cache(const KvCacheSpec& spec, KvCacheStorage& out) override { return in_.alloc_kv_cache(spec, out); }
  Status run_copy_kv_blocks(KvCacheStorage& kv, std::span<const std::pair<int32_t, int32_t>> c) override {
    return in_.copy_kv_blocks(kv, c);
  }

 private:
  Backend& in_;
};

}  // namespace cb::kernels
