// Per-op time of a forward pass: a Backend decorator that times every op it forwards while
// enabled and adds it to a row per (op, shape). refengine bench --op-profile uses it to say where
// a decode step's time goes (which matmul streams below the bandwidth, what the ops outside the
// matmuls cost). On a device backend each op is followed by synchronize() so its time is its own:
// that serializes the queue, so the profile's total is not the unprofiled step time there.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "cb/kernels/forwarding_backend.h"

namespace cb::kernels {

struct OpTiming {
  std::string op;      // "matmul", "matmul_multi", "attention", "rmsnorm", "copy_from_host", ...
  std::string shape;   // what distinguishes rows of one op: "N=2048 K=2048 M=1 f32 dense", "M=1", ...
  int64_t calls = 0;
  double seconds = 0;
  double bytes = 0;    // matmul: weight bytes read (values, scales, meta); copies: bytes moved; else 0
  double flops = 0;    // matmul: 2 * M * N * K; else 0
};

class ProfilingBackend final : public ForwardingBackend {
 public:
  explicit ProfilingBackend(Backend& inner);
  // Off (the default): ops pass straight through and nothing is recorded.
  void set_enabled(bool on) { enabled_ = on; }
  bool enabled() const { return enabled_; }
  void reset() { rows_.clear(); }
  // Every row recorded since reset(), most time first.
  std::vector<OpTiming> timings() const;
  // Whether each op is followed by synchronize() (a backend with a device queue).
  bool synchronizes() const { return sync_; }

  Status copy_from_host(Tensor& dst, const void* src) override;
  Status copy_to_host(void* dst, const Tensor& src) override;

 protected:
  Status run_matmul(const Tensor& x, const Weight& w, Tensor& y) override;
  Status run_matmul_multi(const Tensor& x, std::span<const MatmulOutput> outs) override;
  Status run_rmsnorm(const Tensor& x, const Tensor& w, float eps, Tensor& y) override;
  Status run_rope(Tensor& x, const Tensor& pos, int h, int hd, float theta) override;
  Status run_kv_store(const Tensor& k, const Tensor& v, const Tensor& slots, KvLayer& kv) override;
  Status run_attention(const Tensor& q, const KvLayer& kv, const AttentionBatch& b, const AttentionParams& p,
                       Tensor& out) override;
  Status run_silu_mul(const Tensor& g, const Tensor& u, Tensor& out) override;
  Status run_softmax(const Tensor& x, Tensor& y) override;
  Status run_embedding(const Tensor& ids, const Tensor& table, Tensor& out) override;
  Status run_add(const Tensor& a, const Tensor& b, Tensor& out) override;

 private:
  // Runs f, timed (and synchronized on a device backend) when enabled, into row (op, shape).
  template <class S, class F>
  Status timed(const char* op, S&& shape_of, double bytes, double flops, F&& f);

  bool enabled_ = false;
  const bool sync_;
  std::map<std::pair<std::string, std::string>, OpTiming> rows_;
};

}  // namespace cb::kernels
