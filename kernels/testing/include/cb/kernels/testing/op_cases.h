// Op cases in the style of llama.cpp's test-backend-ops: one small struct per op that knows its
// parameters, builds its inputs from a seed, runs the op on any backend, and carries its own error
// limit (with the reason for it), its FLOPs and bytes, and the counters a benchmark reports. An op
// is described once, here, and two drivers use it:
// - conformance (suites/conformance/op_driver.h): run() on `ref` and on each backend under test
//   with the same seed, outputs compared by NMSE against max_nmse();
// - performance (kernels/bench/kernel_bench.cpp): prepare() once, then execute() timed in a loop,
//   with flops() and bytes() turned into GFLOP/s and GB/s (test-backend-ops' perf mode).
// Header-only (CMake target cb_op_cases); it needs only the op table, no test framework.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "cb/kernels/backend.h"
#include "cb/kernels/kv_batch.h"

namespace cb::kernels::testing {

using kernels::Backend;
using kernels::DType;
using kernels::Status;
using kernels::Tensor;
using kernels::Weight;
using kernels::WeightLayout;

// ------------------------------------------------------------------------------------------------
// Helpers: seeded data, backend buffers that free themselves, the error metric.
// ------------------------------------------------------------------------------------------------

struct Rng {
  std::mt19937 gen;
  explicit Rng(uint32_t seed) : gen(seed) {}
  float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(gen); }
  int randint(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(gen); }  // [lo, hi]
  std::vector<float> uniform_vec(int64_t n, float lo = -1.f, float hi = 1.f) {
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& e : v) e = uniform(lo, hi);
    return v;
  }
};

// Raw bytes of `v` stored as dtype dt (f32, f16, bf16).
inline std::vector<uint8_t> encode(const std::vector<float>& v, DType dt) {
  std::vector<uint8_t> out(v.size() * kernels::dtype_size(dt));
  for (size_t i = 0; i < v.size(); ++i) {
    if (dt == DType::F32) {
      std::memcpy(out.data() + 4 * i, &v[i], 4);
    } else {
      const uint16_t h = dt == DType::F16 ? kernels::f32_to_f16(v[i]) : kernels::f32_to_bf16(v[i]);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
  }
  return out;
}

// n values uniform in [-1, 1) stored as dtype dt (f32, f16, bf16) at dst, from a splitmix64
// stream seeded with `seed`: for big inputs (a 262 MB embedding table), ~20x faster than Rng.
inline void fast_uniform_fill(uint64_t seed, DType dt, void* dst, int64_t n) {
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    uint64_t z = (seed += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    const float v = float(z >> 40) * (2.f / float(1 << 24)) - 1.f;
    if (dt == DType::F32) {
      std::memcpy(out + 4 * i, &v, 4);
    } else {
      const uint16_t h = dt == DType::F16 ? kernels::f32_to_f16(v) : kernels::f32_to_bf16(v);
      std::memcpy(out + 2 * i, &h, 2);
    }
  }
}

// A tensor allocated on a backend and released when it goes out of scope (movable; a
// default-constructed or moved-from Buf holds nothing).
class Buf {
 public:
  Buf() = default;
  Buf(Backend& be, DType dt, std::initializer_list<int64_t> dims) : be_(&be), t_(be.alloc(dt, dims)) {}
  Buf(Backend& be, DType dt, std::initializer_list<int64_t> dims, const void* host) : Buf(be, dt, dims) {
    if (host != nullptr && t_.nbytes() > 0) be_->copy_from_host(t_, host);
  }
  Buf(Buf&& o) noexcept : be_(std::exchange(o.be_, nullptr)), t_(o.t_) {}
  Buf& operator=(Buf&& o) noexcept {
    if (this != &o) {
      reset();
      be_ = std::exchange(o.be_, nullptr);
      t_ = o.t_;
    }
    return *this;
  }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  ~Buf() { reset(); }
  Tensor& t() { return t_; }
  std::vector<float> f32() const {  // host copy of an f32 tensor
    std::vector<float> v(static_cast<size_t>(t_.numel()));
    if (!v.empty()) be_->copy_to_host(v.data(), t_);
    return v;
  }

 private:
  void reset() {
    if (be_ != nullptr) be_->release(t_);
    be_ = nullptr;
  }
  Backend* be_ = nullptr;
  Tensor t_;
};

// Its arguments printed one after the other (names and perf names are built with it).
template <class... A>
std::string str_cat(const A&... a) {
  std::ostringstream os;
  (os << ... << a);
  return os.str();
}

inline std::vector<float> nan_vec(int64_t n) {
  return std::vector<float>(static_cast<size_t>(n), std::numeric_limits<float>::quiet_NaN());
}

// Normalized mean squared error sum((a-b)^2) / sum(b^2) of `got` against the oracle `want`, the
// largest absolute difference, and how many outputs are NaN/Inf where the oracle is finite
// (untouched poisoned outputs show up here).
struct ErrorStats {
  double nmse = 0;
  double max_abs = 0;
  int64_t max_abs_at = -1;
  int64_t nonfinite = 0;
  int64_t first_nonfinite = -1;
  bool size_mismatch = false;
};

inline ErrorStats error_stats(const std::vector<float>& got, const std::vector<float>& want) {
  ErrorStats s;
  if (got.size() != want.size()) {
    s.size_mismatch = true;
    return s;
  }
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i]) && std::isfinite(want[i])) {
      if (s.nonfinite++ == 0) s.first_nonfinite = int64_t(i);
      continue;
    }
    if (!std::isfinite(want[i])) continue;  // the oracle itself overflowed: nothing to compare
    const double d = double(got[i]) - double(want[i]);
    num += d * d;
    den += double(want[i]) * want[i];
    if (std::fabs(d) > s.max_abs) {
      s.max_abs = std::fabs(d);
      s.max_abs_at = int64_t(i);
    }
  }
  s.nmse = num == 0 ? 0 : num / std::max(den, 1e-300);
  return s;
}

// ------------------------------------------------------------------------------------------------
// Costs shared by the cases and the hand-written benchmarks (one formula per op).
// ------------------------------------------------------------------------------------------------

// y[M, N] = x[M, K] W[N, K]^T: 2*M*N*K, also for 2:4 sparse weights (dense-equivalent, so
// GFLOP/s ratios between dtypes of one shape are time ratios) and int8 (integer ops).
inline double matmul_flops(int64_t M, int64_t K, int64_t N) { return 2.0 * double(M) * double(N) * double(K); }

// What an ideal matmul kernel moves: the weight once (values; + f32 per-channel scales for int8;
// + the 2-bit 2:4 indices, K/4 bytes a row, next to K/2 kept values), x (f32) read once and y
// (f32) written once.
inline double matmul_bytes(DType wdt, WeightLayout layout, int64_t M, int64_t K, int64_t N) {
  double w = 0;
  switch (layout) {
    case WeightLayout::Dense: w = double(N * K) * double(kernels::dtype_size(wdt)); break;
    case WeightLayout::Int8PerChannel: w = double(N * K) + 4.0 * double(N); break;
    case WeightLayout::Sparse24: w = double(N * (K / 2)) * double(kernels::dtype_size(wdt)) + double(N * (K / 4)); break;
  }
  return w + 4.0 * double(M * K + M * N);
}

// ------------------------------------------------------------------------------------------------
// The case interface.
// ------------------------------------------------------------------------------------------------

// A case's inputs and outputs on one backend, built by OpCase::prepare(). execute() queues the op
// once (no synchronize: the caller waits, with Backend::synchronize()); it may be called many
// times. Ops that work in place or on a cache (rope, kv_store, in-place add/softmax/silu_mul)
// then run on their previous result: fine for timing; conformance prepares afresh for each run.
struct Prepared {
  virtual ~Prepared() = default;
  virtual Status execute() = 0;
  // Host copy of the outputs, after the caller's synchronize().
  virtual std::vector<float> output() = 0;
};

// Benchmark counters (name, value): "M" (rows) first, then the op's own sizes.
using Counters = std::vector<std::pair<std::string, double>>;

struct OpCase {
  virtual ~OpCase() = default;
  virtual std::string name() const = 0;  // op and parameters, e.g. "matmul(f16, M=5, K=33, N=17)"
  // A benchmark-name form, "<op>/<dtype>/<shape...>/M<rows>", segments snake_case or shape tokens
  // (docs/contracts.md, "Metric key rule"), e.g. "matmul/f16/K2048_N2048/M1".
  virtual std::string perf_name() const = 0;
  // What Backend::supports() is asked before running; unsupported cases must say Unsupported.
  virtual kernels::Op op() const = 0;
  virtual DType dtype() const { return DType::F32; }
  virtual WeightLayout layout() const { return WeightLayout::Dense; }
  virtual kernels::ActQuant act() const { return kernels::ActQuant::None; }  // matmul only
  virtual double max_nmse() const = 0;   // 0 means the outputs must match exactly
  virtual double flops() const { return 0; }
  virtual double bytes() const = 0;  // bytes an ideal kernel reads and writes (once each)
  // The op's sizes as benchmark counters, named as cb_kernel_bench has always named them.
  virtual Counters counters() const = 0;
  // Builds the inputs from `seed` on `be` (allocations, uploads, index plans): everything but the
  // op. A failure here (a weight the backend rejects, a KV pool it cannot allocate) is returned.
  virtual Status prepare(Backend& be, uint32_t seed, std::unique_ptr<Prepared>& out) const = 0;

  // Builds the inputs from `seed`, runs the op once on `be`, and returns the outputs (host copy).
  Status run(Backend& be, uint32_t seed, std::vector<float>& out) const {
    std::unique_ptr<Prepared> p;
    if (Status s = prepare(be, seed, p); !s.ok()) return s;
    Status s = p->execute();
    Status sync = be.synchronize();
    out = p->output();
    return s.ok() ? sync : s;
  }
};

// ---- matmul: y[M, N] = x[M, K] W[N, K]^T ------------------------------------------------------
// x and y, the weight's buffers (values, scales, meta) and the weight as the backend took it.
struct MatMulPrepared : Prepared {
  Backend* be = nullptr;
  Buf x, values, aux, y;  // aux: int8 scales or 2:4 meta
  Weight w;
  Status execute() override { return be->matmul(x.t(), w, y.t()); }
  std::vector<float> output() override { return y.f32(); }
};

inline std::string matmul_shape(int64_t M, int64_t K, int64_t N) {
  return str_cat("K", K, "_N", N, "/M", M);
}

inline Counters matmul_counters(int64_t M, int64_t K, int64_t N) {
  return {{"M", double(M)}, {"N", double(N)}, {"K", double(K)}};
}

struct MatMulCase : OpCase {
  DType wdt;  // F32, F16, BF16: dense; I8: int8 per channel
  int64_t M, K, N;
  MatMulCase(DType dt, int64_t m, int64_t k, int64_t n) : wdt(dt), M(m), K(k), N(n) {}
  kernels::Op op() const override { return kernels::Op::MatMul; }
  DType dtype() const override { return wdt; }
  WeightLayout layout() const override { return wdt == DType::I8 ? WeightLayout::Int8PerChannel : WeightLayout::Dense; }
  std::string name() const override {
    std::ostringstream os;
    os << "matmul(" << kernels::dtype_name(wdt) << (wdt == DType::I8 ? "/ch" : "") << ", M=" << M << ", K=" << K
       << ", N=" << N << ")";
    return os.str();
  }
  std::string perf_name() const override {
    return str_cat("matmul/", wdt == DType::I8 ? "int8pc" : kernels::dtype_name(wdt), "/", matmul_shape(M, K, N));
  }
  // f32 accumulation (SIMD lanes, oneDNN blocks) vs the double-accumulating oracle: each of the K
  // products and sums rounds at 2^-24, adding up to NMSE ~ K * 2^-48 (3e-11 at K = 8192) for
  // random signs; measured worst 3e-12 (scalar path, K = 5632). f16/bf16/int8 weights hold the
  // same values in both backends, so only the accumulation differs. 1e-8 leaves room for other
  // summation orders (split-K on a GPU) yet fails TF32 or f16 accumulation (NMSE ~1e-7 and up) and
  // any wrong element (one of 10^5 off by its own size is 1e-5).
  double max_nmse() const override { return 1e-8; }
  double flops() const override { return matmul_flops(M, K, N); }
  double bytes() const override { return matmul_bytes(wdt, layout(), M, K, N); }
  Counters counters() const override { return matmul_counters(M, K, N); }
  Status prepare(Backend& be, uint32_t seed, std::unique_ptr<Prepared>& out) const override {
    Rng r(seed);
    auto p = std::make_unique<MatMulPrepared>();
    p->be = &be;
    const auto x = r.uniform_vec(M * K);
    p->x = Buf(be, DType::F32, {M, K}, x.data());
    std::vector<uint8_t> wbytes;
    std::vector<float> scales;
    if (wdt == DType::I8) {
      wbytes.resize(size_t(N * K));
      for (auto& b : wbytes) b = static_cast<uint8_t>(static_cast<int8_t>(r.randint(-127, 127)));
      scales = r.uniform_vec(N, 0.001f, 0.02f);
    } else {
      wbytes = encode(r.uniform_vec(N * K), wdt);
    }
    p->values = Buf(be, wdt, {N, K}, wbytes.data());
    p->aux = Buf(be, DType::F32, {N}, scales.empty() ? nullptr : scales.data());
    Weight w = Weight::dense(p->values.t());
    if (wdt == DType::I8) {
      w.layout = WeightLayout::Int8PerChannel;
      w.scales = p->aux.t();
    }
    if (Status up = be.upload_weight(w, p->w); !up.ok()) return up;
    const auto poison = nan_vec(M * N);
    p->y = Buf(be, DType::F32, {M, N}, poison.data());
    out = std::move(p);
    return Status::Ok();
  }
};

// ---- low-precision matmuls: W8A8 and bf16 dot -------------------------------------------------
// Rows of x: uniform in [-1, 1]; Spiky: one value per row 50x the others (the int8 scale follows
// the outlier, most values land on few levels); ZeroRows: every third row all zero (scale 1).
enum class XKind { Uniform, Spiky, ZeroRows };

inline std::vector<float> make_x(Rng& r, int64_t M, int64_t K, XKind kind) {
  auto x = r.uniform_vec(M * K);
  for (int64_t m = 0; m < M; ++m) {
    if (kind == XKind::Spiky && K > 0) x[size_t(m * K + r.randint(0, int(K - 1)))] = r.uniform(-50.f, 50.f);
    if (kind == XKind::ZeroRows && m % 3 == 0) std::fill(x.begin() + m * K, x.begin() + (m + 1) * K, 0.f);
  }
  return x;
}

struct QuantMatMulCase : OpCase {
  kernels::ActQuant aq;  // PerTokenInt8 (i8 per-channel W) or Bf16 (dense bf16 W)
  int64_t M, K, N;
  XKind xk;
  QuantMatMulCase(kernels::ActQuant a, int64_t m, int64_t k, int64_t n, XKind x = XKind::Uniform)
      : aq(a), M(m), K(k), N(n), xk(x) {}
  bool w8a8() const { return aq == kernels::ActQuant::PerTokenInt8; }
  kernels::Op op() const override { return kernels::Op::MatMul; }
  DType dtype() const override { return w8a8() ? DType::I8 : DType::BF16; }
  WeightLayout layout() const override { return w8a8() ? WeightLayout::Int8PerChannel : WeightLayout::Dense; }
  kernels::ActQuant act() const override { return aq; }
  std::string name() const override {
    std::ostringstream os;
    os << "matmul(" << (w8a8() ? "w8a8" : "bf16 x bf16") << ", M=" << M << ", K=" << K << ", N=" << N
       << (xk == XKind::Spiky ? ", spiky x" : xk == XKind::ZeroRows ? ", zero rows" : "") << ")";
    return os.str();
  }
  std::string perf_name() const override {
    return str_cat("matmul/", w8a8() ? "w8a8" : "bf16dot", "/", matmul_shape(M, K, N),
                   xk == XKind::Spiky ? "/spiky" : xk == XKind::ZeroRows ? "/zero_rows" : "");
  }
  // W8A8: ref and backend quantize x the same way (one IEEE division and round-half-to-even per
  // element), so the products and sums are exact integers on both sides; only acc * x_scale *
  // w_scale rounds (float vs double: ~3 roundings of 2^-24, NMSE ~1e-15). 1e-12 fails a single
  // x element quantized one step off (at K = 2048 that row's outputs move by ~3e-4 relative,
  // NMSE ~1e-9 even spread over 128 rows).
  // bf16: both sides round x to bf16 (nearest even) and a product of two bf16 values is exact in
  // f32, so only the f32 summation differs from the double oracle, as for f32 matmul (1e-8; see
  // MatMulCase). vdpbf16ps also flushes denormal inputs, which uniform inputs never produce.
  double max_nmse() const override { return w8a8() ? 1e-12 : 1e-8; }
  double flops() const override { return matmul_flops(M, K, N); }
  double bytes() const override { return matmul_bytes(dtype(), layout(), M, K, N); }
  Counters counters() const override { return matmul_counters(M, K, N); }
  Status prepare(Backend& be, uint32_t seed, std::unique_ptr<Prepared>& out) const override {
    Rng r(seed);
    auto p = std::make_unique<MatMulPrepared>();
    p->be = &be;
    const auto x = make_x(r, M, K, xk);
    p->x = Buf(be, DType::F32, {M, K}, x.data());
    std::vector<uint8_t> wbytes;
    std::vector<float> scales;
    if (w8a8()) {
      // The full int8 range, -128 included: the scheme never produces it, but an imported weight
      // may hold it and the kernels' sign tricks must stay exact there.
      wbytes.resize(size_t(N * K));
      for (auto& b : wbytes) b = static_cast<uint8_t>(static_cast<int8_t>(r.randint(-128, 127)));
      scales = r.uniform_vec(N, 0.001f, 0.02f);
    } else {
      wbytes = encode(r.uniform_vec(N * K), DType::BF16);
    }
    p->values = Buf(be, dtype(), {N, K}, wbytes.data());
    p->aux = Buf(be, DType::F32, {N}, scales.empty() ? nullptr : scales.data());
    Weight w = Weight::dense(p->values.t());
    if (w8a8()) {
      w.layout = WeightLayout::Int8PerChannel;
      w.scales = p->aux.t();
    }
    w.act_quant = aq;
    if (Status up = be.upload_weight(w, p->w); !up.ok()) return up;
    const auto poison = nan_vec(M * N);
    p->y = Buf(be, DType::F32, {M, N}, poison.data());
    out = std::move(p);
    return Status::Ok();
  }
};

// ---- 2:4 sparse matmul (layout in kernels/include/cb/kernels/tensor.h) -------------------------
inline uint8_t sparse24_meta(int i0, int i1) { return static_cast<uint8_t>(i0 | (i1 << 2)); }

struct Sparse24MatMulCase : OpCase {
  DType vdt;  // kept values f32/f16/bf16
  int64_t M, K, N;
  bool poison_unkept;  // no row keeps column 4g+3, and x is NaN there: a kernel reading it fails
  Sparse24MatMulCase(DType dt, int64_t m, int64_t k, int64_t n, bool poison = false)
      : vdt(dt), M(m), K(k), N(n), poison_unkept(poison) {}
  kernels::Op op() const override { return kernels::Op::MatMul; }
  DType dtype() const override { return vdt; }
  WeightLayout layout() const override { return WeightLayout::Sparse24; }
  std::string name() const override {
    std::ostringstream os;
    os << "matmul(2:4 " << kernels::dtype_name(vdt) << ", M=" << M << ", K=" << K << ", N=" << N
       << (poison_unkept ? ", NaN in unkept columns" : "") << ")";
    return os.str();
  }
  std::string perf_name() const override {
    return str_cat("matmul/sparse24", vdt == DType::F32 ? "" : "_", vdt == DType::F32 ? "" : kernels::dtype_name(vdt), "/",
                   matmul_shape(M, K, N), poison_unkept ? "/poison" : "");
  }
  // f32 sums of K/2 products vs the double oracle, as MatMulCase (1e-8); a wrong index picks an
  // unrelated x value (NMSE ~1 for that product, >1e-4 overall).
  double max_nmse() const override { return 1e-8; }
  double flops() const override { return matmul_flops(M, K, N); }  // dense-equivalent (see matmul_flops)
  double bytes() const override { return matmul_bytes(vdt, WeightLayout::Sparse24, M, K, N); }
  Counters counters() const override { return matmul_counters(M, K, N); }
  Status prepare(Backend& be, uint32_t seed, std::unique_ptr<Prepared>& out) const override {
    Rng r(seed);
    auto x = r.uniform_vec(M * K);
    if (poison_unkept)
      for (int64_t m = 0; m < M; ++m)
        for (int64_t g = 0; g < K / 4; ++g) x[size_t(m * K + 4 * g + 3)] = std::numeric_limits<float>::quiet_NaN();
    static const std::pair<int, int> kPairs[6] = {{0, 1}, {0, 2}, {1, 2}, {0, 3}, {1, 3}, {2, 3}};
    std::vector<uint8_t> meta(size_t(N * (K / 4)));
    for (auto& b : meta) {
      const auto [i0, i1] = kPairs[r.randint(0, poison_unkept ? 2 : 5)];
      b = sparse24_meta(i0, i1);
    }
    auto vals = r.uniform_vec(N * (K / 2));
    for (size_t i = 0; i + 1 < vals.size(); i += 2)
      if (r.randint(0, 9) == 0) vals[i + 1] = 0.f;  // groups with a single nonzero keep an explicit zero
    const auto vbytes = encode(vals, vdt);
    auto p = std::make_unique<MatMulPrepared>();
    p->be = &be;
    p->x = Buf(be, DType::F32, {M, K}, x.data());
    p->values = Buf(be, vdt, {N, K / 2}, vbytes.data());
    p->aux = Buf(be, DType::I8, {N, K / 4}, meta.data());
    Weight w;
    w.layout = WeightLayout::Sparse24;
    w.values = p->values.t();
    w.meta = p->aux.t();
    w.n = N;
    w.k = K;
    if (Status up = be.upload_weight(w, p->w); !up.ok()) return up;
    const auto poison = nan_vec(M * N);
    p->y = Buf(be, DType::F32, {M, N}, poison.data());
    out = std::move(p);
    return Status::Ok();
  }
};

// ---- rmsnorm ----------------------------------------------------------------------------------
struct RmsNormCase : OpCase {
  DType wdt;
  int64_t M, D;
  float eps;
  RmsNormCase(DType dt, int64_t m, int64_t d, float e) : wdt(dt), M(m), D(d), eps(e) {}
  kernels::Op op() const override { return kernels::Op::RmsNorm; }
  DType dtype() const override { return wdt; }
  std::string name() const override {
    std::ostringstream os;
    os << "rmsnorm(w " << kernels::dtype_name(wdt) << ", M=" << M << ", D=" << D << ", eps=" << eps << ")";
    return os.str();
  }
  std::string perf_name() const override {
    return str_cat("rmsnorm/", kernels::dtype_name(wdt), "/D", D, "/M", M);
  }
  // float sum of squares over D <= 8192 and two float products per element vs double: a few
  // 2^-24 roundings per element, NMSE ~1e-14; 1e-10 leaves ample headroom.
  double max_nmse() const override { return 1e-10; }
  // Per element: square, add, scale by 1/rms, multiply by the weight.
  double flops() const override { return 4.0 * M * D; }
  double bytes() const override { return 8.0 * M * D + double(D) * kernels::dtype_size(wdt); }  // x, y; weight once
  Counters counters() const override { return {{"M", double(M)}, {"D", double(D)}}; }
  struct P : Prepared {
    Backend* be = nullptr;
    Buf x, w, y;
    float eps = 0;
    Status execute() override { return be->rmsnorm(x.t(), w.t(), eps, y.t()); }
    std::vector<float> output() override { return y.f32(); }
  };
  Status prepare(Backend& be, uint32_t seed, std::unique_ptr<Prepared>& out) const override {
    Rng r(seed);
    const auto x = r.uniform_vec(M * D, -3.f, 3.f);
    const auto w = encode(r.uniform_vec(D, 0.5f, 1.5f), wdt);
    auto p = std::make_unique<P>();
    p->be = &be;
    p->eps = eps;
    p->x = Buf(be, DType::F32, {M, D}, x.data());
    p->w = Buf(be, wdt, {D}, w.data());
    const auto poison = nan_vec(M * D);
    p->y = Buf(be, DType::F32, {M, D}, poison.data());
    out = std::move(p);
    return Status::Ok();
  }
};

// ---- rope (in place) --------------------------------------------------------------------------
struct RopeCase : OpCase {
  int64_t M;
  int n_heads, head_dim;
  float theta;
  int pos0;  // < 0: positions 16383, 0, then random in [0, 16383]; else pos0, pos0 + 1, ... (a prompt)
  RopeCase(int64_t m, int h, int d, float t, int p0 = -1) : M(m), n_heads(h), head_dim(d), theta(t), pos0(p0) {}
  kernels::Op op() const override { return kernels::Op::Rope; }
  std::string name() const override {
    std::ostringstream os;
    os << "rope(M=" << M << ", heads=" << n_heads << ", head_dim=" << head_dim << ", theta=" << theta;
    if (pos0 >= 0) os << ", positions from " << pos0;
    os << ")";
    return os.str();
  }
  std::string perf_name() const override {
    return str_cat("rope/f32/H", n_heads, "_D", head_dim, "/M", M);
  }
  // Angles in double on both sides; cos/sin rounded to float and float products add ~3 roundings
  // per element: NMSE ~1e-14. 1e-10 fails on any phase error (a float angle at pos 16K is off by
  // ~1e-3 rad, NMSE ~1e-6).
  double max_nmse() const override { return 1e-10; }
  double flops() const override { return 6.0 * M * n_heads * head_dim / 2; }  // 2 mul + 1 add per output, a pair at a time
  double bytes() const override { return 8.0 * M * n_heads * head_dim + 4.0 * M; }  // x read and written; positions
  Counters counters() const override { return {{"M", double(M)}, {"heads", double(n_heads)}, {"head_dim", double(head_dim)}}; }
  struct P : Prepared {
    Backend* be = nullptr;
    Buf x, pos;
    int n_heads = 0, head_dim = 0;
    float theta = 0;
    Status execute() override { return be->rope(x.t(), pos.t(), n_heads, head_dim, theta); }
    std::vector<float> output() override { return x.f32(); }
  };
  Status prepare(Backend& be, uint32_t seed, std::unique_ptr<Prepared>& out) const override {
    Rng r(seed);
    const int64_t C = int64_t(n_heads) * head_dim;
    const auto x = r.uniform_vec(M * C);
    std::vector<int32_t> pos(static_cast<size_t>(M));
    for (int64_t m = 0; m < M; ++m)
      pos[size_t(m)] = pos0 >= 0 ? int32_t(pos0 + m) : m == 0 ? 16383 : m == 1 ? 0 : r.randint(0, 16383);
    auto p = std::make_unique<P>();
    p->be = &be;
    p->n_heads = n_heads;
    p->head_dim = head_dim;
    p->theta = theta;
    p->x = Buf(be, DType::F32, {M, C}, x.data());
    p->pos = Buf(be, DType::I32, {M}, pos.data());
    out = std::move(p);
    return Status::Ok();
  }
};

// ---- paged KV cache: a batch of sequences shared by kv_store and attention --------------------
// One pool; each sequence's blocks are a random, disjoint slice of the shuffled pool, so logical
// order never matches physical order. The pools come from Backend::alloc_kv_cache and are filled
// through copy_from_host, which assumes the f32 [blocks, block_size, kv_heads, head_dim] layout
// of the host backends.
struct SeqRows {
  int64_t rows;  // query rows (new tokens) this step
  int pos0;      // position of the first; the context is pos0 + rows
};

struct PagedBatch {
  int block_size, n_kv_heads, head_dim;
  std::vector<SeqRows> seqs;
  // Pool size in blocks: 0 (conformance) means twice what the batch uses plus 3, the spare slots
  // poisoned; a benchmark sets the cache it models (at least used_blocks()).
  int64_t pool;
  // Each sequence's blocks in order, back to back: with one block per sequence this is the
  // contiguous cache a non-paged engine keeps (the baseline paged attention is compared with).
  bool in_order = false;
  // Given block tables (an allocator's placement, one per sequence, ids below pool_blocks()):
  // used as they are instead of in_order / shuffled ones.
  std::vector<std::vector<int32_t>> tables = {};
  int64_t row() const { return int64_t(n_kv_heads) * head_dim; }
  int64_t blocks_of(const SeqRows& s) const { return (s.pos0 + s.rows + block_size - 1) / block_size; }
  int64_t used_blocks() const {
    int64_t n = 0;
    for (const auto& s : seqs) n += blocks_of(s);
    return n;
  }
  int64_t pool_blocks() const { return pool > 0 ? std::max(pool, used_blocks()) : 2 * used_blocks() + 3; }
  int64_t pool_floats() const { return pool_blocks() * block_size * row(); }
  int64_t rows() const {
    int64_t n = 0;
    for (const auto& s : seqs) n += s.rows;
    return n;
  }
  int64_t max_context() const {
    int64_t n = 0;
    for (const auto& s : seqs) n = std::max(n, s.pos0 + s.rows);
    return n;
  }
  std::vector<std::vector<int32_t>> make_tables(Rng& r) const {
    if (!tables.empty()) return tables;
    std::vector<int32_t> all(static_cast<size_t>(pool_blocks()));
    std::iota(all.begin(), all.end(), 0);
    if (!in_order) std::shuffle(all.begin(), all.end(), r.gen);
    std::vector<std::vector<int32_t>> tables = {};
    size_t next = 0;
    for (const auto& s : seqs) {
      tables.emplace_back(all.begin() + int64_t(next), all.begin() + int64_t(next + size_t(blocks_of(s))));
      next += size_t(blocks_of(s));
    }
    return tables;
  }
  // Float offset of logical token t's row through `table`.
  int64_t offset(const std::vector<int32_t>& table, int64_t t) const {
    return (int64_t(table[size_t(t / block_size)]) * block_size + t % block_size) * row();
  }
  Status plan(const std::vector<std::vector<int32_t>>& tables, kernels::KvBatchPlan& out) const {
    std::vector<kernels::KvSeq> ks;
    for (size_t i = 0; i < seqs.size(); ++i) ks.push_back({seqs[i].pos0, int(seqs[i].rows), tables[i]});
    return kernels::plan_kv_batch(ks, pool_blocks(), block_size, out);
  }
  std::string describe() const {
    std::ostringstream os;
    os << "block=" << block_size << ", kv_heads=" << n_kv_heads << ", head_dim=" << head_dim << ", seqs=[";
    for (size_t i = 0; i < seqs.size(); ++i) os << (i ? " " : "") << seqs[i].rows << "@" << seqs[i].pos0;
    os << "]";
    if (pool > 0) os << ", pool=" << pool_blocks();
    return os.str();
  }
  // "KV4_D64_B16" and, for the perf name, the rows' positions: "P1000" (one sequence: its first
  // position) or "S3_C2348" (sequences, summed context).
  std::string shape() const {
    return str_cat("KV", n_kv_heads, "_D", head_dim, "_B", block_size);
  }
  std::string where() const {
    if (seqs.size() == 1) return str_cat("P", seqs[0].pos0);
    int64_t ctx = 0;
    for (const auto& s : seqs) ctx += s.pos0 + s.rows;
    return str_cat("S", seqs.size(), "_C", ctx);
  }
};

// A one-layer cache from the backend, released with this object, its pools filled from the host.
class OwnedKvCache {
 public:
  OwnedKvCache(Backend& be, const PagedBatch& c, const std::vector<float>& k, const std::vector<float>& v) : be_(be) {
    kernels::KvCacheSpec spec{1, int(c.pool_blocks()), c.block_size, c.n_kv_heads, c.head_dim};
    status_ = be.alloc_kv_cache(spec, kv_);
    if (status_.ok()) status_ = be.copy_from_host(layer().k_pool, k.data());
    if (status_.ok()) status_ = be.copy_from_host(layer().v_pool, v.data());
  }
  OwnedKvCache(const OwnedKvCache&) = delete;
  OwnedKvCache& operator=(const OwnedKvCache&) = delete;
  ~OwnedKvCache() { be_.release_kv_cache(kv_); }
  const Status& status() const { return status_; }
  kernels::KvLayer& layer() { return kv_.layers.at(0); }

 private:
  Backend& be_;
  kernels::KvCacheStorage kv_;
  Status status_;
};

// A cache, the index tensors of the batch's plan, and the op's own tensors. Members are declared
// so that they are released before the cache.
struct PagedPrepared : Prepared {
  Backend* be = nullptr;
  std::unique_ptr<OwnedKvCache> cache;
  std::unique_ptr<kernels::KvBatchTensors> idx;
  // Builds cache and idx: pools from k and v, the plan of `tables`.
  Status init(Backend& b, const PagedBatch& c, const std::vector<std::vector<int32_t>>& tables,
              const std::vector<float>& k, const std::vector<float>& v) {
    be = &b;
    kernels::KvBatchPlan plan;
    if (Status s = c.plan(tables, plan); !s.ok()) return s;
    cache = std::make_unique<OwnedKvCache>(b, c, k, v);
    if (!cache->status().ok()) return cache->status();
    idx = std::make_unique<kernels::KvBatchTensors>(b);
    return idx->upload(plan);
  }
};

struct KvStoreCase : OpCase {
  PagedBatch c;
  KvStoreCase(int bs, int kvh, int hd, int64_t m, int p0, int64_t pool = 0) : c{bs, kvh, hd, {{m, p0}}, pool} {}
  KvStoreCase(int bs, int kvh, int hd, std::vector<SeqRows> seqs) : c{bs, kvh, hd, std::move(seqs), 0} {}
  kernels::Op op() const override { return kernels::Op::KvStore; }
  std::string name() const override { return str_cat("kv_store(", c.describe(), ")"); }
  std::string perf_name() const override {
    return str_cat("kv_store/f32/", c.shape(), "/", c.where(), "/M", c.rows());
  }
  double max_nmse() const override { return 0; }  // a copy: both pools must match bit for bit
  double bytes() const override { return 16.0 * c.rows() * c.row(); }  // k and v rows, read + written
  Counters counters() const override {
    return {{"M", double(c.rows())}, {"kv_heads", double(c.n_kv_heads)}, {"head_dim", double(c.head_dim)}};
  }
  struct P : PagedPrepared {
    Buf k, v;
    int64_t pool_floats = 0;
    Status execute() override { return be->kv_store(k.t(), v.t(), idx->slot_mapping(), cache->layer()); }
    std::vector<float> output() override {  // both pools
      std::vector<float> out(size_t(2 * pool_floats));
      be->copy_to_host(out.data(), cache->layer().k_pool);
      be->copy_to_host(out.data() + pool_floats, cache->layer().v_pool);
      be->synchronize();
      return out;
    }
  };
  Status prepare(Backend& be, uint32_t seed, std::unique_ptr<Prepared>& out) const override {
    Rng r(seed);
    const auto tables = c.make_tables(r);
    const auto kp = r.uniform_vec(c.pool_floats()), vp = r.uniform_vec(c.pool_floats());
    const int64_t M = c.rows();
    const auto k = r.uniform_vec(M * c.row()), v = r.uniform_vec(M * c.row());
    auto p = std::make_unique<P>();
    if (Status s = p->init(be, c, tables, kp, vp); !s.ok()) return s;
    p->pool_floats = c.pool_floats();
    p->k = Buf(be, DType::F32, {M, c.row()}, k.data());
    p->v = Buf(be, DType::F32, {M, c.row()}, v.data());
    out = std::move(p);
    return Status::Ok();
  }
};

// ---- attention over the paged cache, a batch of sequences in one call --------------------------
struct AttentionCase : OpCase {
  PagedBatch c;
  int n_heads;
  float q_amp;  // q magnitude: 1 gives soft attention, larger values make a few keys dominate
  AttentionCase(int bs, int heads, int kvh, int hd, int64_t m, int p0, float amp = 1.f, int64_t pool = 0)
      : c{bs, kvh, hd, {{m, p0}}, pool}, n_heads(heads), q_amp(amp) {}
  AttentionCase(int bs, int heads, int kvh, int hd, std::vector<SeqRows> seqs, float amp = 1.f)
      : c{bs, kvh, hd, std::move(seqs), 0}, n_heads(heads), q_amp(amp) {}
  kernels::Op op() const override { return kernels::Op::Attention; }
  std::string name() const override {
    std::ostringstream os;
    os << "attention(heads=" << n_heads << ", " << c.describe() << (q_amp != 1.f ? ", sharp" : "") << ")";
    return os.str();
  }
  std::string perf_name() const override {
    const std::string where = c.seqs.size() == 1 ? str_cat("C", c.max_context()) : c.where();  // the context read
    return str_cat("attention/f32/H", n_heads, "_", c.shape(), "/", where, "/M", c.rows(), q_amp != 1.f ? "/sharp" : "");
  }
  // Online softmax in float with a ~2 ulp vector exp and float sums over up to a few thousand
  // keys, vs double throughout: NMSE ~1e-12 measured; 1e-8 keeps headroom and still catches a
  // wrong mask, block, head or sequence offset (NMSE > 1e-3).
  double max_nmse() const override { return 1e-8; }
  // 4 * head_dim per (query head, visible key): q.k and p*v, a multiply and an add each.
  double flops() const override {
    double keys = 0;
    for (const auto& s : c.seqs) keys += double(s.rows) * s.pos0 + double(s.rows) * (s.rows + 1) / 2;
    return 4.0 * keys * n_heads * c.head_dim;
  }
  // q read and out written; every sequence's K and V rows read once (a GQA group shares them);
  // the block tables (i32, one entry a block).
  double bytes() const override {
    double ctx = 0, blocks = 0;
    for (const auto& s : c.seqs) {
      ctx += double(s.pos0 + s.rows);
      blocks += double(c.blocks_of(s));
    }
    return 8.0 * c.rows() * n_heads * c.head_dim + 8.0 * ctx * c.row() + 4.0 * blocks;
  }
  Counters counters() const override {
    Counters out = {{"M", double(c.rows())}, {"ctx", double(c.max_context())}, {"heads", double(n_heads)},
                    {"kv_heads", double(c.n_kv_heads)}, {"head_dim", double(c.head_dim)}};
    if (c.seqs.size() > 1) out.push_back({"seqs", double(c.seqs.size())});
    return out;
  }
  struct P : PagedPrepared {
    Buf q, o;
    kernels::AttentionParams params;
    Status execute() override { return be->attention(q.t(), cache->layer(), idx->attention(), params, o.t()); }
    std::vector<float> output() override { return o.f32(); }
  };
  Status prepare(Backend& be, uint32_t seed, std::unique_ptr<Prepared>& out) const override {
    Rng r(seed);
    const auto tables = c.make_tables(r);
    // Every slot no sequence owns is NaN: reading the wrong block or a slot past a sequence's
    // context poisons the output.
    auto kp = nan_vec(c.pool_floats()), vp = nan_vec(c.pool_floats());
    for (size_t i = 0; i < c.seqs.size(); ++i)
      for (int64_t t = 0; t < c.seqs[i].pos0 + c.seqs[i].rows; ++t) {
        const int64_t off = c.offset(tables[i], t);
        for (int64_t j = 0; j < c.row(); ++j) {
          kp[size_t(off + j)] = r.uniform(-1.f, 1.f);
          vp[size_t(off + j)] = r.uniform(-1.f, 1.f);
        }
      }
    const int64_t M = c.rows(), C = int64_t(n_heads) * c.head_dim;
    const auto q = r.uniform_vec(M * C, -q_amp, q_amp);
    auto p = std::make_unique<P>();
    if (Status s = p->init(be, c, tables, kp, vp); !s.ok()) return s;
    p->q = Buf(be, DType::F32, {M, C}, q.data());
    const auto poison = nan_vec(M * C);
    p->o = Buf(be, DType::F32, {M, C}, poison.data());
    p->params.n_heads = n_heads;
    p->params.n_kv_heads = c.n_kv_heads;
    p->params.head_dim = c.head_dim;
    p->params.scale = 1.f / std::sqrt(float(c.head_dim));
    out = std::move(p);
    return Status::Ok();
  }
};

// ---- element-wise and row ops: silu_mul, softmax, add -----------------------------------------
enum class Elementwise { SiluMul, Softmax, Add };

struct ElementwiseCase : OpCase {
  Elementwise kind;
  int64_t M, N;
  float amp;     // inputs uniform in [-amp, amp]
  bool in_place;  // output aliases the first input
  ElementwiseCase(Elementwise o, int64_t m, int64_t n, float a, bool ip = false) : kind(o), M(m), N(n), amp(a), in_place(ip) {}
  kernels::Op op() const override {
    return kind == Elementwise::SiluMul ? kernels::Op::SiluMul : kind == Elementwise::Softmax ? kernels::Op::Softmax : kernels::Op::Add;
  }
  const char* op_name() const { return kind == Elementwise::SiluMul ? "silu_mul" : kind == Elementwise::Softmax ? "softmax" : "add"; }
  std::string name() const override {
    std::ostringstream os;
    os << op_name() << "(M=" << M << ", N=" << N << ", amp=" << amp << (in_place ? ", in place" : "") << ")";
    return os.str();
  }
  // The row length's letter: silu_mul rows are FFN rows (F), add rows hidden states (D), softmax
  // rows the vocabulary (N).
  const char* row_letter() const { return kind == Elementwise::SiluMul ? "F" : kind == Elementwise::Softmax ? "N" : "D"; }
  std::string perf_name() const override {
    return str_cat(op_name(), "/f32/", row_letter(), N, "/M", M, in_place ? "/in_place" : "");
  }
  // silu_mul, softmax: float exp (~2 ulp) and a division or a float row sum vs double: NMSE
  // ~1e-14; 1e-10 leaves headroom. add: one float addition on both sides, so exact.
  double max_nmse() const override { return kind == Elementwise::Add ? 0 : 1e-10; }
  // Per element, exp counted as one: silu_mul g / (1 + exp(-g)) * u: exp, add, divide, multiply
  // (4); softmax: subtract the row max, exp, add to the row sum, scale (4; the max's compares not
  // counted); add 1.
  double flops() const override { return (kind == Elementwise::Add ? 1.0 : 4.0) * M * N; }
  // silu_mul, add: two inputs read, one output written; softmax: one read, one written.
  double bytes() const override { return (kind == Elementwise::Softmax ? 8.0 : 12.0) * M * N; }
  Counters counters() const override { return {{"M", double(M)}, {row_letter(), double(N)}}; }
  struct P : Prepared {
    Backend* be = nullptr;
    Elementwise kind = Elementwise::Add;
    bool in_place = false;
    Buf a, b, o;
    Status execute() override {
      Tensor& out = in_place ? a.t() : o.t();
      switch (kind) {
        case Elementwise::SiluMul: return be->silu_mul(a.t(), b.t(), out);
        case Elementwise::Softmax: return be->softmax(a.t(), out);
        case Elementwise::Add: return be->add(a.t(), b.t(), out);
      }
      return Status::internal("unknown element-wise op");
    }
    std::vector<float> output() override { return in_place ? a.f32() : o.f32(); }
  };
  Status prepare(Backend& be, uint32_t seed, std::unique_ptr<Prepared>& out) const override {
    Rng r(seed);
    const auto a = r.uniform_vec(M * N, -amp, amp), b = r.uniform_vec(M * N, -amp, amp);
    auto p = std::make_unique<P>();
    p->be = &be;
    p->kind = kind;
    p->in_place = in_place;
    p->a = Buf(be, DType::F32, {M, N}, a.data());
    p->b = Buf(be, DType::F32, {M, N}, b.data());
    const auto poison = nan_vec(M * N);
    p->o = Buf(be, DType::F32, {M, N}, poison.data());
    out = std::move(p);
    return Status::Ok();
  }
};

// ---- embedding --------------------------------------------------------------------------------
struct EmbeddingCase : OpCase {
  DType tdt;
  int64_t V, D, M;
  EmbeddingCase(DType dt, int64_t v, int64_t d, int64_t m) : tdt(dt), V(v), D(d), M(m) {}
  kernels::Op op() const override { return kernels::Op::Embedding; }
  DType dtype() const override { return tdt; }
  std::string name() const override {
    return str_cat("embedding(", kernels::dtype_name(tdt), ", V=", V, ", D=", D, ", M=", M, ")");
  }
  std::string perf_name() const override {
    return str_cat("embedding/", kernels::dtype_name(tdt), "/V", V, "_D", D, "/M", M);
  }
  double max_nmse() const override { return 0; }  // widening f16/bf16 to f32 is exact
  // M table rows read and M f32 rows written; the ids (i32) read.
  double bytes() const override { return double(M * D) * (4.0 + kernels::dtype_size(tdt)) + 4.0 * double(M); }
  Counters counters() const override { return {{"M", double(M)}, {"V", double(V)}, {"D", double(D)}}; }
  struct P : Prepared {
    Backend* be = nullptr;
    Buf table, ids, o;
    Status execute() override { return be->embedding(ids.t(), table.t(), o.t()); }
    std::vector<float> output() override { return o.f32(); }
  };
  Status prepare(Backend& be, uint32_t seed, std::unique_ptr<Prepared>& out) const override {
    Rng r(seed);
    auto p = std::make_unique<P>();
    p->be = &be;
    // The table can be 262 MB (llama-1b, f32): filled fast, in place where the backend's memory
    // is host memory, else through one staging copy.
    p->table = Buf(be, tdt, {V, D});
    const uint64_t table_seed = r.gen();
    if (p->table.t().mem == kernels::MemSpace::Host) {
      fast_uniform_fill(table_seed, tdt, p->table.t().data, V * D);
    } else {
      std::unique_ptr<uint8_t[]> host(new uint8_t[p->table.t().nbytes()]);
      fast_uniform_fill(table_seed, tdt, host.get(), V * D);
      if (Status s = be.copy_from_host(p->table.t(), host.get()); !s.ok()) return s;
    }
    std::vector<int32_t> ids(static_cast<size_t>(M));
    for (int64_t m = 0; m < M; ++m) ids[size_t(m)] = m == 0 ? int32_t(V - 1) : r.randint(0, int(V - 1));
    p->ids = Buf(be, DType::I32, {M}, ids.data());
    const auto poison = nan_vec(M * D);
    p->o = Buf(be, DType::F32, {M, D}, poison.data());
    out = std::move(p);
    return Status::Ok();
  }
};

}  // namespace cb::kernels::testing
