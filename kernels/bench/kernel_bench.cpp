// cb_kernel_bench: microbenchmarks of every op of the table (kernels/include/cb/kernels/backend.h)
// on the llama-1b shapes, oneDNN peers for the f32 and int8 matmuls, and the machine peaks, in one
// binary, so one run measures the roofline and the kernels together.
//
// Run (Google Benchmark flags; this binary takes --benchmark_min_time in seconds with or without
// the "s" suffix: libbenchmark < 1.8 (Debian 12 ships 1.7.1) only knows the bare number, so the
// suffix is stripped there before the library parses the flags):
//   cb_kernel_bench                                            # everything (slow while cpu == ref)
//   cb_kernel_bench --benchmark_filter='peak|mem_read|M1/' --benchmark_min_time=0.05s
//   cb_kernel_bench --benchmark_filter='^matmul/(cpu|onednn_sgemm)/f32/K2048_N5632/'
//                   --benchmark_format=json --benchmark_out=results/<run>/kernels.json   (one line)
//   cb_kernel_bench --benchmark_filter='/K512_N512/' --benchmark_repetitions=5   # cpu vs ref ratio
//   cb_kernel_bench --op_perf --benchmark_filter='^op/cpu/(rmsnorm|attention)/'   # perf mode, below
//
// Names: <op>/<backend>/<dtype>/<shape>/M<tokens>/real_time. Every case is timed in real time
// (the ops are multi-threaded) and Google Benchmark appends "/real_time" to such names, so select
// the decode-sized cases with 'M1/' (not 'M1$'):
//   matmul/{cpu,ref}/{f32,f16,bf16,int8pc}/K<in>_N<out>/M<m>   y[M,N] = x[M,K] W[N,K]^T
//       (f16, bf16, int8pc: weight-only low precision, x stays f32 and W widens in registers)
//   matmul/cpu/w8a8/K<in>_N<out>/M<m>      int8 W per channel, x quantized per token per call
//                                          (ActQuant::PerTokenInt8): the INT8 GEMM
//   matmul/cpu/bf16dot/K<in>_N<out>/M<m>   bf16 W, x rounded to bf16 per call (ActQuant::Bf16):
//                                          the BF16 dot-product GEMM (vdpbf16ps where present)
//   matmul/cpu/sparse24/K<in>_N<out>/M<m>  2:4 sparse W, f32 kept values + 2-bit indices
//   matmul/onednn_sgemm/f32/K<in>_N<out>/M<m>                  dnnl_sgemm on the same data
//   matmul/onednn_s8s8/w8a8/K<in>_N<out>/M<m>   dnnl_gemm_s8s8s32 on x already quantized (the
//                                          integer GEMM alone: no quantize or dequantize step)
//   matmul/onednn_matmul/{f32,w8a8,bf16dot}/K<in>_N<out>/M<m>   oneDNN's matmul primitive on
//                                          the same data (f32; int8 x and W, int32 out; bf16 x and
//                                          W, f32 out), W reordered once into the primitive's
//                                          layout: the stronger oneDNN peer (onednn_peers.h)
//   rmsnorm/cpu/f32/D2048/M<m>          rope/cpu/f32/H32_D64/M<m>
//   kv_store/cpu/f32/KV4_D64_B16/M<m>   attention/cpu/f32/H32_KV4_D64_B16/{decode,prefill}_ctx<n>/M<m>
//   silu_mul/cpu/f32/F5632/M<m>         softmax/cpu/f32/N32000/M<m>
//   embedding/cpu/{f32,f16,bf16}/V32000_D2048/M<m>              add/cpu/f32/D2048/M<m>
//   paired/attention/cpu/f32/H32_KV4_D64_B16_vs_contiguous/decode_ctx4096_S8/M8   the two 4K cases
//       above timed alternately in one benchmark (counter ratio = contiguous time / paged time;
//       name ends in "/manual_time"); B64 and B128 the same with 64- and 128-token blocks;
//       B16_given_tables the 16-token blocks on the tables of --cb_paged_tables=FILE (the harness
//       passes the engine allocator's; counters mean_run_blocks, jumps_per_sequence)
//   BM_peak_fp32_fma  BM_peak_bf16_dot  BM_peak_int8_dot  BM_mem_read_bw  BM_mem_triad_bw  (machine peaks;
//   names end in "/manual_time": timed inside the threads)
// with m in {1, 8, 128} (matmul also 16; attention: decode_ctx{512,2048} at M1 and M8,
// prefill_ctx128 at M128)
// and matmul shapes K2048_N2048 (q/o), K2048_N256 (k/v), K2048_N5632 (gate/up), K5632_N2048
// (down), K2048_N32000 (lm_head).
// `ref` runs only the small K512_N512 matmuls: the cpu/ref ratio there is a stable CI metric.
// Every op but matmul is an op case of cb/kernels/testing/op_cases.h (the cases the conformance
// suite checks against `ref`): the case builds its inputs untimed (prepare) and gives flops,
// bytes and the counters; model_cases() below holds their llama-1b shapes. The matmuls stay
// written out here: one weight per dtype and shape, built once from splitmix64 with the same
// values in every dtype and shared by the M values and the oneDNN peers (cached_weight), and the
// planted-slowdown hook of the gate's self-test; they share the flops and bytes formulas
// (matmul_flops, matmul_bytes) with the cases.
// These names, counters and labels are what the kernels suite, the gate and the baselines in
// results/ key on: kernels/bench/benchmark_names.txt holds the list (ctest kernels.bench_*).
//
// Perf mode (llama.cpp test-backend-ops' "perf"): --op_perf[=BACKENDS] also registers
//   op/<backend>/<op>/<dtype>/<shape...>/M<m>   (the case's perf_name(); label: backend + name())
// for every case of model_cases() and the matmuls of every dtype and layout on the shapes above,
// as op cases, on BACKENDS (comma-separated, or "all"; default: every available backend but ref,
// which is slow). A --benchmark_filter starting with "op/" or "^op/" turns it on too. A run
// without either (the kernels suite's, the gate's) does not register them.
//
// Counters: GFLOP/s and GB/s are rates over real time (ops are multi-threaded). Per iteration,
// matmul flops = 2*M*N*K (integer ops for int8, and dense-equivalent for 2:4 sparse, so GFLOP/s
// ratios between dtypes of one shape are time ratios) and bytes = weight bytes (+ int8 scales,
// + 2:4 meta) + x + y; the other ops count
// their compulsory traffic (inputs read once, outputs written once) and these flops per element:
// rmsnorm 4, rope 3 (6 per rotated pair), silu_mul 4 (exp counted as 1), softmax 4, add 1,
// attention 4*head_dim per (query head, visible key), kv_store and embedding 0 (pure data
// movement); attention bytes include the block table, embedding bytes the ids, rope bytes the
// positions. M, N, K (or the op's own sizes) are counters too; the label gives backend, dtype
// and the role of the shape. Inputs come from fixed seeds (splitmix64 for the matmuls, the case's
// seed from the benchmark name otherwise), so every run sees the same data.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cb/peaks/machine_peaks.h"
#include "cb/kernels/backend.h"
#include "cb/kernels/int8_scheme.h"
#include "cb/kernels/testing/op_cases.h"
#include "onednn_peers.h"

#ifndef CB_BENCHMARK_VERSION_MAJOR
#define CB_BENCHMARK_VERSION_MAJOR 0
#define CB_BENCHMARK_VERSION_MINOR 0
#define CB_BENCHMARK_VERSION "unknown"
#endif

namespace {

using namespace cb::kernels;
namespace kt = cb::kernels::testing;

// ---- llama-1b (TinyLlama-1.1B) shapes ----------------------------------------------------------
constexpr int64_t kHidden = 2048, kHeads = 32, kKvHeads = 4, kHeadDim = 64, kFfn = 5632, kVocab = 32000;
constexpr int kBlockSize = 16;
constexpr float kRopeTheta = 10000.f, kEps = 1e-5f;
const int kTokens[] = {1, 8, 128};
const int kMatTokens[] = {1, 8, 16, 128};  // matmul: decode batches up to 16 and a 128-token prefill

struct MatShape {
  const char* role;
  int64_t k, n;
};
const MatShape kMatShapes[] = {
    {"q/o proj", kHidden, kHidden},        {"k/v proj", kHidden, kKvHeads * kHeadDim},
    {"gate/up proj", kHidden, kFfn},       {"down proj", kFfn, kHidden},
    {"lm_head", kHidden, kVocab},
};
const MatShape kSmallShape = {"small (cpu/ref ratio)", 512, 512};

// ---- deterministic inputs ----------------------------------------------------------------------
uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
float uniform(uint64_t& s) { return float(splitmix64(s) >> 40) * (2.f / float(1 << 24)) - 1.f; }  // [-1, 1)

uint64_t seed_of(const std::string& what) {  // stable per-tensor seed (FNV-1a of its name)
  uint64_t h = 1469598103934665603ull;
  for (char c : what) h = (h ^ uint8_t(c)) * 1099511628211ull;
  return h;
}

// 64-byte aligned host memory.
struct HostBuf {
  std::unique_ptr<void, decltype(&std::free)> p{nullptr, &std::free};
  explicit HostBuf(size_t bytes) : p(std::aligned_alloc(64, (std::max<size_t>(bytes, 1) + 63) / 64 * 64), &std::free) {
    if (!p) throw std::bad_alloc();
  }
  template <class T> T* as() const { return static_cast<T*>(p.get()); }
};

HostBuf random_host(DType dt, int64_t n, const std::string& name, float scale) {
  HostBuf b(size_t(n) * dtype_size(dt));
  uint64_t s = seed_of(name);
  for (int64_t i = 0; i < n; ++i) {
    const float v = uniform(s) * scale;
    switch (dt) {
      case DType::F32: b.as<float>()[i] = v; break;
      case DType::F16: b.as<uint16_t>()[i] = f32_to_f16(v); break;
      case DType::BF16: b.as<uint16_t>()[i] = f32_to_bf16(v); break;
      case DType::I8: b.as<int8_t>()[i] = int8_t(std::lround(uniform(s) * 127.f)); break;
      case DType::I32: b.as<int32_t>()[i] = int32_t(splitmix64(s) & 0x7fffffff); break;
      case DType::U8: b.as<uint8_t>()[i] = uint8_t(splitmix64(s)); break;
      case DType::I64: b.as<int64_t>()[i] = int64_t(splitmix64(s) >> 1); break;
    }
  }
  return b;
}

// ---- backends and tensors ----------------------------------------------------------------------
Backend& backend(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Backend>> cache;
  auto& b = cache[name];
  if (!b) b = make_backend(name);
  return *b;
}

// A tensor allocated by a backend, released with it.
struct Owned {
  Backend* b = nullptr;
  Tensor t;
  Owned(Backend& be, DType dt, std::initializer_list<int64_t> dims) : b(&be), t(be.alloc(dt, dims)) {}
  Owned(Owned&& o) noexcept : b(o.b), t(o.t) { o.t.data = nullptr; }
  Owned(const Owned&) = delete;
  Owned& operator=(const Owned&) = delete;
  ~Owned() {
    if (b && t.data) b->release(t);
  }
};

Owned random_tensor(Backend& be, DType dt, std::initializer_list<int64_t> dims, const std::string& name,
                    float scale = 1.f) {
  Owned o(be, dt, dims);
  HostBuf h = random_host(dt, o.t.numel(), name, scale);
  be.copy_from_host(o.t, h.p.get());
  return o;
}

// Big constant inputs (the matmul weights) are built once and reused while consecutive
// benchmarks ask for the same one: Google Benchmark calls a benchmark function several times
// (iteration estimation, repetitions), and rebuilding 262 MB each time would dominate the run.
// One entry only, so memory stays bounded by the largest weight.
struct BigInput {
  std::string key;
  std::vector<HostBuf> host;  // values, scales
  Weight weight;              // for backends: what upload_weight returned
};

BigInput& cached_weight(const std::string& backend_name, const std::string& dt, int64_t n, int64_t k) {
  static std::unique_ptr<BigInput> cur;
  const std::string key = backend_name + "/" + dt + "/" + std::to_string(n) + "x" + std::to_string(k);
  if (cur && cur->key == key) return *cur;
  cur.reset();  // free the previous one first
  auto in = std::make_unique<BigInput>();
  in->key = key;
  const std::string seed_name = "W/" + std::to_string(n) + "x" + std::to_string(k);  // same values in every dtype
  const float scale = 1.f / std::sqrt(float(k));
  Weight w;
  w.n = n;
  w.k = k;
  if (dt == "int8pc" || dt == "w8a8" || dt == "w8a8rowmajor") {
    in->host.push_back(random_host(DType::I8, n * k, seed_name, 1.f));
    in->host.push_back(random_host(DType::F32, n, seed_name + "/scales", 1.f));
    for (int64_t i = 0; i < n; ++i) in->host[1].as<float>()[i] = scale / 127.f * (1.5f + 0.5f * in->host[1].as<float>()[i]);
    w.layout = WeightLayout::Int8PerChannel;
    w.values = Tensor(in->host[0].p.get(), DType::I8, {n, k});
    w.scales = Tensor(in->host[1].p.get(), DType::F32, {n});
    if (dt != "int8pc") w.act_quant = ActQuant::PerTokenInt8;
  } else if (dt == "sparse24") {
    // Kept values as the f32 weight's, and two random columns of every group of 4.
    in->host.push_back(random_host(DType::F32, n * (k / 2), seed_name, scale));
    in->host.emplace_back(size_t(n * (k / 4)));
    static const uint8_t kPairs[6] = {0x4, 0x8, 0xc, 0x9, 0xd, 0xe};  // i0 | i1 << 2, i0 < i1
    uint64_t st = seed_of(seed_name + "/meta");
    for (int64_t i = 0; i < n * (k / 4); ++i) in->host[1].as<uint8_t>()[i] = kPairs[splitmix64(st) % 6];
    w.layout = WeightLayout::Sparse24;
    w.values = Tensor(in->host[0].p.get(), DType::F32, {n, k / 2});
    w.meta = Tensor(in->host[1].p.get(), DType::I8, {n, k / 4});
  } else {
    // bf16, bf16dot, bf16rowmajor; f32, f32rowmajor; f16
    const DType d = dt.rfind("f32", 0) == 0 ? DType::F32 : dt == "f16" ? DType::F16 : DType::BF16;
    in->host.push_back(random_host(d, n * k, seed_name, scale));
    w = Weight::dense(Tensor(in->host[0].p.get(), d, {n, k}));
    if (dt == "bf16dot") w.act_quant = ActQuant::Bf16;
  }
  if (backend_name != "host" && dt.size() > 8 && dt.compare(dt.size() - 8, 8, "rowmajor") == 0) {
    // The peer of the packed kernel: the same weight uploaded as a plain tensor (copied into the
    // backend's memory as it is, row-major), so the row-major GEMV-style kernel runs it. W8A8 (a
    // weight with scales, not a plain tensor): uploaded by a cpu backend that packs nothing
    // ($CB_CPU_PACK_WEIGHTS=0), which the row-major W8A8 kernels then run.
    if (w.layout == WeightLayout::Dense) {
      in->weight = Weight::dense(backend(backend_name).upload_tensor(w.values));
    } else {
      static const std::unique_ptr<Backend> unpacked = [] {
        ::setenv("CB_CPU_PACK_WEIGHTS", "0", 1);
        auto b = make_backend("cpu");
        ::unsetenv("CB_CPU_PACK_WEIGHTS");
        return b;
      }();
      in->weight = unpacked->upload_weight(w);
    }
  } else {
    in->weight = backend_name == "host" ? w : backend(backend_name).upload_weight(w);
  }
  cur = std::move(in);
  return *cur;
}

// ---- counters ----------------------------------------------------------------------------------
void set_rates(benchmark::State& st, double flops, double bytes) {
  // Value per iteration, multiplied by iterations and divided by the (real) time: a rate.
  st.counters["GFLOP/s"] = benchmark::Counter(flops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["GB/s"] = benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

bool check(benchmark::State& st, const Status& s) {
  if (s.ok()) return true;
  st.SkipWithError((std::string(s.code == StatusCode::Unsupported ? "unsupported: " : "error: ") + s.message).c_str());
  return false;
}

// Runs op() once to check it, then times it.
template <class Op>
void time_op(benchmark::State& st, Backend& be, Op&& op) {
  if (!check(st, op())) return;
  be.synchronize();
  for (auto _ : st) {
    op();
    be.synchronize();
  }
}

// Test hook for the regression gate's self-test (suites/gate/gate_selftest.sh):
// CB_BENCH_PLANT_SLOWDOWN=N makes every cpu-backend matmul case do its work N times per iteration,
// a planted N x slowdown of the optimized kernel that leaves the kernel code itself untouched.
// CB_BENCH_PLANT_SLOWDOWN_DTYPE=DT limits it to the cases of that weight type (bf16dot, f32, ...),
// so one side of a same-run ratio can be slowed. Unset: 1, every type. The paired paged vs
// contiguous benchmark takes it too, as type paged_attention: the paged side runs N times.
int planted_slowdown(const std::string& dt) {
  struct Plant {
    int factor = 1;
    std::string only;  // "" : every type
  };
  static const Plant plant = [] {
    Plant p;
    const char* v = std::getenv("CB_BENCH_PLANT_SLOWDOWN");
    const char* only = std::getenv("CB_BENCH_PLANT_SLOWDOWN_DTYPE");
    p.factor = v && std::atoi(v) >= 1 ? std::atoi(v) : 1;
    p.only = only ? only : "";
    if (v)
      std::fprintf(stderr, "cb_kernel_bench: CB_BENCH_PLANT_SLOWDOWN=%d (cpu %s matmul cases run %dx)\n", p.factor,
                   only ? only : "(every type)", p.factor);
    return p;
  }();
  return plant.only.empty() || plant.only == dt ? plant.factor : 1;
}

// ---- op benchmarks -----------------------------------------------------------------------------
void bm_matmul(benchmark::State& st, std::string bname, std::string dt, MatShape sh, int64_t m) {
  Backend& be = backend(bname);
  const Weight& w = cached_weight(bname, dt, sh.n, sh.k).weight;
  Owned x = random_tensor(be, DType::F32, {m, sh.k}, "x/" + std::to_string(m) + "x" + std::to_string(sh.k));
  Owned y(be, DType::F32, {m, sh.n});
  const int repeat = bname == "cpu" ? planted_slowdown(dt) : 1;
  time_op(st, be, [&] {
    Status s;
    for (int r = 0; r < repeat && s.ok(); ++r) s = be.matmul(x.t, w, y.t);
    return s;
  });
  set_rates(st, kt::matmul_flops(m, sh.k, sh.n), kt::matmul_bytes(w.values.dtype, w.layout, m, sh.k, sh.n));
  st.counters["M"] = double(m);
  st.counters["N"] = double(sh.n);
  st.counters["K"] = double(sh.k);
  st.SetLabel(bname + " " + dt + " " + sh.role);
}

// The oneDNN peers on the same weight values (onednn_peers.h): f32 kinds on the f32 weight, s8
// kinds on the w8a8 one with x quantized per token beforehand (not timed; the integer GEMM alone,
// int32 out: no dequantization), bf16 on the bf16dot one with x rounded to bf16 beforehand. The
// matmul primitive reorders W once, before the timing.
void bm_onednn(benchmark::State& st, cb::kbench::OnednnPeerKind kind, MatShape sh, int64_t m) {
  using cb::kbench::OnednnPeerKind;
  const bool int8 = kind == OnednnPeerKind::GemmS8 || kind == OnednnPeerKind::MatmulS8;
  const bool bf16 = kind == OnednnPeerKind::MatmulBf16;
  const BigInput& in = cached_weight("host", int8 ? "w8a8" : bf16 ? "bf16dot" : "f32", sh.n, sh.k);
  HostBuf x = random_host(DType::F32, m * sh.k, "x/" + std::to_string(m) + "x" + std::to_string(sh.k), 1.f);
  HostBuf xq(size_t(m * sh.k) * 2);  // int8 or bf16 x
  for (int64_t r = 0; int8 && r < m; ++r) int8::quantize_row(x.as<float>() + r * sh.k, sh.k, xq.as<int8_t>() + r * sh.k);
  for (int64_t i = 0; bf16 && i < m * sh.k; ++i) xq.as<uint16_t>()[i] = f32_to_bf16(x.as<float>()[i]);
  HostBuf y(size_t(m * sh.n) * 4);  // f32 or int32
  std::unique_ptr<cb::kbench::OnednnPeer> peer;
  try {
    peer = cb::kbench::OnednnPeer::make(kind, m, sh.k, sh.n, in.host[0].p.get());
  } catch (const cb::kbench::OnednnUnsupported& e) {
    st.SkipWithError((std::string("unsupported: ") + e.what()).c_str());
    return;
  } catch (const std::exception& e) {
    st.SkipWithError((std::string("error: ") + e.what()).c_str());
    return;
  }
  const void* xp = int8 || bf16 ? xq.p.get() : x.p.get();
  if (!peer->run(xp, y.p.get())) {
    st.SkipWithError((std::string("error: oneDNN ") + cb::kbench::onednn_peer_name(kind) + " failed").c_str());
    return;
  }
  // A peer is only a peer if it does the same work: a few outputs (first and last row, three
  // columns) against the dot products computed here (int8 exact, else to 1e-4 of the terms' size).
  auto x_at = [&](int64_t i) {
    return int8 ? double(xq.as<int8_t>()[i]) : bf16 ? double(bf16_to_f32(xq.as<uint16_t>()[i])) : double(x.as<float>()[i]);
  };
  auto w_at = [&](int64_t i) {
    return int8 ? double(in.host[0].as<int8_t>()[i]) : bf16 ? double(bf16_to_f32(in.host[0].as<uint16_t>()[i]))
                                                           : double(in.host[0].as<float>()[i]);
  };
  for (int64_t r : {int64_t(0), m - 1})
    for (int64_t c : {int64_t(0), sh.n / 2, sh.n - 1}) {
      double want = 0, size = 0;
      for (int64_t i = 0; i < sh.k; ++i) {
        const double t = x_at(r * sh.k + i) * w_at(c * sh.k + i);
        want += t;
        size += std::fabs(t);
      }
      const double got = int8 ? double(y.as<int32_t>()[r * sh.n + c]) : double(y.as<float>()[r * sh.n + c]);
      if (std::fabs(got - want) > (int8 ? 0.0 : 1e-4 * size + 1e-30)) {
        st.SkipWithError((std::string("error: oneDNN ") + cb::kbench::onednn_peer_name(kind) + " computed y[" + std::to_string(r) +
                          "," + std::to_string(c) + "] = " + std::to_string(got) + ", want " + std::to_string(want))
                             .c_str());
        return;
      }
    }
  for (auto _ : st) peer->run(xp, y.p.get());
  benchmark::DoNotOptimize(y.as<float>()[0]);
  if (int8)
    set_rates(st, 2.0 * double(m) * double(sh.n) * double(sh.k), double(sh.n * sh.k + m * sh.k) + double(m * sh.n) * 4.0);
  else
    set_rates(st, kt::matmul_flops(m, sh.k, sh.n), kt::matmul_bytes(bf16 ? DType::BF16 : DType::F32, WeightLayout::Dense, m, sh.k, sh.n));
  st.counters["M"] = double(m);
  st.counters["N"] = double(sh.n);
  st.counters["K"] = double(sh.k);
  const bool primitive = kind != OnednnPeerKind::Sgemm && kind != OnednnPeerKind::GemmS8;
  st.SetLabel(std::string(primitive ? "onednn matmul " : "onednn ") + (int8 ? "s8s8s32 " : bf16 ? "bf16 " : "f32 ") + sh.role);
}

// ---- machine peaks -----------------------------------------------------------------------------
// Each iteration is a fixed amount of work on all threads (2^20 rounds of 16 vector instructions,
// a few milliseconds, for the compute peaks; one pass over a >= 1 GiB buffer for memory), timed
// inside the threads (spin barrier to the last thread's end: UseManualTime), so starting and
// joining the thread team does not count as slower hardware. A pre-roll of 100 ms of the same
// work runs first (the clock ramp under a new vector load). The kernels suite takes the best
// repetition as the peak. The library's own measure_* functions are what other tools record;
// these sit next to the kernels in one run.
using WorkFn = double (*)(int, int64_t, cb::bench::Isa, std::string*, int*, double*);

template <class Pass>
void preroll(Pass&& pass) {
  const auto t0 = std::chrono::steady_clock::now();
  do pass();
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < 0.1);
}

void bm_compute_peak(benchmark::State& st, WorkFn fn, const char* counter) {
  constexpr int64_t kRounds = 1 << 20;
  std::string method;
  int threads = 0;
  const double ops = fn(0, kRounds, cb::bench::Isa::Auto, &method, &threads, nullptr);  // method, thread count
  if (ops == 0) {
    st.SkipWithError(method.c_str());
    return;
  }
  preroll([&] { fn(0, kRounds, cb::bench::Isa::Auto, nullptr, nullptr, nullptr); });
  for (auto _ : st) {
    double secs = 0;
    fn(0, kRounds, cb::bench::Isa::Auto, nullptr, nullptr, &secs);
    st.SetIterationTime(secs);
  }
  st.counters[counter] = benchmark::Counter(ops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["threads"] = double(threads);
  st.SetLabel(method);
}

void bm_mem_read_bw(benchmark::State& st) {
  static std::unique_ptr<cb::bench::ReadBuffer> buf;  // allocated on first use, kept for the run
  if (!buf) buf = std::make_unique<cb::bench::ReadBuffer>(0, 0);
  preroll([&] { buf->read_pass(); });
  for (auto _ : st) {
    double secs = 0;
    buf->read_pass(cb::bench::Isa::Auto, &secs);
    st.SetIterationTime(secs);
  }
  benchmark::DoNotOptimize(buf->checksum());
  st.counters["GB/s"] = benchmark::Counter(double(buf->bytes()) / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["threads"] = double(buf->threads());
  st.SetLabel(buf->method());
}

void bm_mem_triad_bw(benchmark::State& st) {
  static std::unique_ptr<cb::bench::TriadBuffers> buf;
  if (!buf) buf = std::make_unique<cb::bench::TriadBuffers>(0, 0);
  preroll([&] { buf->triad_pass(); });
  double counted = 0;
  for (auto _ : st) {
    double secs = 0;
    counted = buf->triad_pass(cb::bench::Isa::Auto, &secs);
    st.SetIterationTime(secs);
  }
  benchmark::DoNotOptimize(buf->element(buf->elements() / 2));
  st.counters["GB/s"] = benchmark::Counter(counted / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["threads"] = double(buf->threads());
  st.SetLabel(buf->method());
}

// ---- registration ------------------------------------------------------------------------------
std::string shape_name(const MatShape& s) {
  std::string out = "K";  // built with += (GCC 12 warns falsely on "literal" + std::string&&)
  out += std::to_string(s.k);
  out += "_N";
  out += std::to_string(s.n);
  return out;
}

void reg(const std::string& name, std::function<void(benchmark::State&)> fn) {
  benchmark::RegisterBenchmark(name.c_str(), [fn](benchmark::State& st) { fn(st); })
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond);
}

// ---- op benchmarks from the op cases -----------------------------------------------------------
// Every op but matmul is a case of cb/kernels/testing/op_cases.h, the ones the conformance suite
// checks against `ref`: the case builds its inputs (prepare(), not timed) and says its flops(),
// bytes() and counters(); the registration adds the backend and the label.
struct CaseBench {
  std::string backend;
  std::shared_ptr<const kt::OpCase> c;
  std::string label;
};

// The last benchmark's prepared case, kept while Google Benchmark calls the same benchmark again
// (iteration estimation, repetitions) as cached_weight() keeps a weight: one entry, so memory
// stays bounded by the largest case (the 262 MB f32 embedding table). Emptied before the
// backends go (end of main).
struct PreparedCase {
  std::string name;
  std::unique_ptr<kt::Prepared> p;
};
PreparedCase& prepared_case() {
  static PreparedCase cur;
  return cur;
}

void bm_case(benchmark::State& st, const std::string& name, const CaseBench& b) {
  Backend& be = backend(b.backend);
  PreparedCase& cur = prepared_case();
  if (cur.name != name || !cur.p) {
    cur.p.reset();  // free the previous one first
    cur.name.clear();
    Status s;
    try {
      s = b.c->prepare(be, uint32_t(seed_of(name)), cur.p);
    } catch (const BackendError& e) {
      s = e.status();
    } catch (const std::exception& e) {
      s = Status::internal(e.what());
    }
    if (!check(st, s)) {
      cur.p.reset();
      return;
    }
    cur.name = name;
  }
  kt::Prepared& p = *cur.p;
  // Runs the op once to check it, then times it (ops that work in place run on their last result).
  if (!check(st, p.execute()) || !check(st, be.synchronize())) return;
  for (auto _ : st) {
    p.execute();
    be.synchronize();
  }
  set_rates(st, b.c->flops(), b.c->bytes());
  for (const auto& [counter, value] : b.c->counters()) st.counters[counter] = value;
  st.SetLabel(b.label);
}

// Paged vs contiguous at 4K context, same batch (8 sequences, one new token each): blocks of
// `block` tokens in shuffled order against one in-order block per sequence (a contiguous cache;
// block 0). The vLLM paper reports 20-26% kernel overhead for paging;
// kernels.attention.paged_vs_contiguous.
std::shared_ptr<const kt::OpCase> ctx4096_attention_case(int block) {
  const int64_t ctx = 4096, seqs = 8, bs = block > 0 ? block : ctx;
  auto c = std::make_shared<kt::AttentionCase>(int(bs), int(kHeads), int(kKvHeads), int(kHeadDim),
                                               std::vector<kt::SeqRows>(size_t(seqs), kt::SeqRows{1, int(ctx - 1)}));
  c->c.in_order = block == 0;
  c->c.pool = c->c.used_blocks();
  return c;
}

// The same batch on block tables given in a file (--cb_paged_tables): the harness writes the
// tables the engine's allocator gives 8 sequences decoding to 4K beside churning short requests
// (cb::engine::run_placement_trace; kernels/ does not link the engine), so the pair measures
// what the engine's paged attention reads, where the shuffled tables above are the worst case of
// a fully fragmented pool. File: {"block_size": 16, "context": 4096, "pool_blocks": n,
// "tables": [[id, ...] x 8], "mean_run_blocks": x, "jumps_per_sequence": y, "source": "..."}.
struct GivenTables {
  std::shared_ptr<const kt::OpCase> c;
  double mean_run_blocks = 0, jumps_per_sequence = 0;
  int64_t pool_blocks = 0;
  std::string source;
};
std::optional<GivenTables>& given_tables() {
  static std::optional<GivenTables> t;
  return t;
}

// Reads and checks the file; an error names the file and the field.
std::optional<GivenTables> read_given_tables(const std::string& path, std::string& error) {
  std::ifstream in(path);
  if (!in) {
    error = "--cb_paged_tables: cannot open " + path;
    return std::nullopt;
  }
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    error = "--cb_paged_tables: " + path + ": invalid JSON: " + e.what();
    return std::nullopt;
  }
  auto bad = [&](const std::string& what) {
    error = "--cb_paged_tables: " + path + ": " + what;
    return std::nullopt;
  };
  if (!j.is_object()) return bad("not a JSON object");
  for (const char* k : {"block_size", "context", "pool_blocks"})
    if (!j.contains(k) || !j[k].is_number_integer()) return bad(std::string("\"") + k + "\" missing or not an integer");
  if (!j.contains("tables") || !j["tables"].is_array() || j["tables"].empty()) return bad("\"tables\" missing or empty");
  const int64_t block = j["block_size"], ctx = j["context"], pool = j["pool_blocks"];
  if (block != kBlockSize) return bad("block_size " + std::to_string(block) + " (this benchmark's is " + std::to_string(kBlockSize) + ")");
  // The contiguous side of the pair is this benchmark's batch: 8 sequences at 4K.
  if (ctx != 4096) return bad("context " + std::to_string(ctx) + " (the paired batch is 8 sequences at 4096)");
  if (j["tables"].size() != 8) return bad(std::to_string(j["tables"].size()) + " tables (the paired batch is 8 sequences at 4096)");
  const size_t want = size_t((ctx + block - 1) / block);
  if (pool < int64_t(want) || pool > (int64_t(1) << 24)) return bad("pool_blocks " + std::to_string(pool) + " outside [" + std::to_string(want) + ", 16777216]");
  std::vector<std::vector<int32_t>> tables;
  std::vector<char> seen(size_t(pool), 0);
  for (size_t i = 0; i < j["tables"].size(); ++i) {
    const auto& t = j["tables"][i];
    if (!t.is_array() || t.size() != want)
      return bad("tables[" + std::to_string(i) + "] is not an array of " + std::to_string(want) + " block ids");
    std::vector<int32_t> ids;
    for (const auto& b : t) {
      if (!b.is_number_integer() || b.get<int64_t>() < 0 || b.get<int64_t>() >= pool)
        return bad("tables[" + std::to_string(i) + "] holds " + b.dump() + ", not a block id below pool_blocks");
      if (seen[size_t(b.get<int64_t>())]++) return bad("block " + b.dump() + " appears twice in tables");
      ids.push_back(b.get<int32_t>());
    }
    tables.push_back(std::move(ids));
  }
  auto c = std::make_shared<kt::AttentionCase>(int(kBlockSize), int(kHeads), int(kKvHeads), int(kHeadDim),
                                               std::vector<kt::SeqRows>(tables.size(), kt::SeqRows{1, int(ctx - 1)}));
  c->c.tables = std::move(tables);
  c->c.pool = pool;
  return GivenTables{c, j.value("mean_run_blocks", 0.0), j.value("jumps_per_sequence", 0.0), pool, j.value("source", std::string())};
}

std::string ctx4096_attention_what(int block) {
  return std::string("f32 ") + (block > 0 ? "paged block " + std::to_string(block) + ", shuffled" : "contiguous (one block per sequence)") +
         ", 8 sequences at 4K";
}

// The llama-1b cases of every op but matmul, in registration order: the name's "<shape>/M<m>"
// tail under "<op>/<backend>/<dtype>/" and the label's text after the backend.
struct ModelCase {
  std::string op, dtype, tail;
  std::shared_ptr<const kt::OpCase> c;
  std::string what;
};

std::vector<ModelCase> model_cases() {
  using kt::Elementwise;
  std::vector<ModelCase> out;
  for (int m : kTokens) {
    const std::string ms = "/M" + std::to_string(m);
    out.push_back({"rmsnorm", "f32", "D2048" + ms, std::make_shared<kt::RmsNormCase>(DType::F32, m, kHidden, kEps),
                   "f32 (weight f32)"});
    // A prompt continuing at position 500; rotations keep the norm, so rope applied to the same
    // buffer every iteration stays finite.
    out.push_back({"rope", "f32", "H32_D64" + ms,
                   std::make_shared<kt::RopeCase>(m, int(kHeads), int(kHeadDim), kRopeTheta, 500), "f32 q (32 heads)"});
    // A 2048-token cache (128 blocks), the write starting mid-block at position 1000.
    out.push_back({"kv_store", "f32", "KV4_D64_B16" + ms,
                   std::make_shared<kt::KvStoreCase>(kBlockSize, int(kKvHeads), int(kHeadDim), m, 1000, 2048 / kBlockSize),
                   "f32 block 16, pos0 1000"});
    out.push_back({"silu_mul", "f32", "F5632" + ms, std::make_shared<kt::ElementwiseCase>(Elementwise::SiluMul, m, kFfn, 4.f),
                   "f32"});
    out.push_back({"softmax", "f32", "N32000" + ms,
                   std::make_shared<kt::ElementwiseCase>(Elementwise::Softmax, m, kVocab, 8.f), "f32 (vocab rows)"});
    out.push_back({"add", "f32", "D2048" + ms, std::make_shared<kt::ElementwiseCase>(Elementwise::Add, m, kHidden, 1.f),
                   "f32 (residual)"});
  }
  for (DType dt : {DType::F32, DType::F16, DType::BF16})
    for (int m : kTokens)
      out.push_back({"embedding", dtype_name(dt), "V32000_D2048/M" + std::to_string(m),
                     std::make_shared<kt::EmbeddingCase>(dt, kVocab, kHidden, m), std::string("table ") + dtype_name(dt)});
  // Attention: decode (1 and 8 new tokens at the end of a 512 / 2048 context) and a 128-token
  // prefill, the last m tokens of the context being the queries; the pool holds exactly the
  // context's blocks, in shuffled order.
  auto attention = [&](int64_t ctx, int64_t m, const std::string& tail) {
    const int64_t blocks = (ctx + kBlockSize - 1) / kBlockSize;
    out.push_back({"attention", "f32", "H32_KV4_D64_B16/" + tail,
                   std::make_shared<kt::AttentionCase>(kBlockSize, int(kHeads), int(kKvHeads), int(kHeadDim), m, int(ctx - m),
                                                       1.f, blocks),
                   std::string("f32 paged block 16, ") + (m == ctx ? "prefill" : "decode")});
  };
  for (int64_t ctx : {512, 2048})
    for (int64_t m : {1, 8}) attention(ctx, m, "decode_ctx" + std::to_string(ctx) + "/M" + std::to_string(m));
  attention(128, 128, "prefill_ctx128/M128");
  for (bool paged : {true, false})
    out.push_back({"attention", "f32", std::string("H32_KV4_D64_") + (paged ? "B16" : "contiguous") + "/decode_ctx4096_S8/M8",
                   ctx4096_attention_case(paged ? kBlockSize : 0), ctx4096_attention_what(paged ? kBlockSize : 0)});
  return out;
}

void reg_case(const std::string& name, CaseBench b) {
  reg(name, [name, b = std::move(b)](benchmark::State& st) { bm_case(st, name, b); });
}

// ---- paired A/B: two cases timed alternately inside one benchmark --------------------------------
// A ratio of two separate benchmarks pairs repetitions that ran seconds apart (random
// interleaving spreads them over the run), and this host's bandwidth drifts by tens of percent
// in that time. Here every iteration runs both cases back to back, the order flipping each
// iteration (ABBA), so both see the same moments. Where the buffers land in memory moves each
// case by up to 15% on this VM (paged vs contiguous at 4K: one placement gave a ratio CV of 1.4%
// over repetitions, yet 0.80-1.33 between processes; 8 alternations on fresh buffers each
// 0.92-1.17), so both cases are prepared afresh every kIterationsPerPlacement iterations and a
// repetition averages over several placements (about 0.6 s of untimed preparing each here).
// Counters per repetition: ratio = time(b) / time(a) over its iterations (a's throughput over
// b's; 1.0 = as fast), a_ms and b_ms per call, placements.
constexpr int64_t kIterationsPerPlacement = 8;

// plant_as: the planted_slowdown() type naming case a (its calls run N times, timed as one).
void bm_paired_cases(benchmark::State& st, const std::string& name, const CaseBench& a, const CaseBench& b,
                     const std::string& plant_as) {
  Backend& be = backend(a.backend);
  const int repeat_a = planted_slowdown(plant_as);
  std::unique_ptr<kt::Prepared> pa, pb;
  auto place = [&]() {  // frees the old buffers first: at most one pair is held
    pa.reset();
    pb.reset();
    Status s = a.c->prepare(be, uint32_t(seed_of(name + "/a")), pa);
    if (s.ok()) s = b.c->prepare(be, uint32_t(seed_of(name + "/b")), pb);
    if (s.ok()) s = pa->execute();  // checked once per placement, untimed
    if (s.ok()) s = pb->execute();
    if (s.ok()) s = be.synchronize();
    return check(st, s);
  };
  using clock = std::chrono::steady_clock;
  auto timed = [&](kt::Prepared& p, int repeat) {
    const auto t0 = clock::now();
    for (int i = 0; i < repeat; ++i) p.execute();
    be.synchronize();
    return std::chrono::duration<double>(clock::now() - t0).count();
  };
  double ta = 0, tb = 0;
  int64_t n = 0, placements = 0;
  for (auto _ : st) {
    if (n % kIterationsPerPlacement == 0) {
      if (!place()) return;
      ++placements;
    }
    double da, db;
    if (n % 2 == 0) {
      da = timed(*pa, repeat_a);
      db = timed(*pb, 1);
    } else {
      db = timed(*pb, 1);
      da = timed(*pa, repeat_a);
    }
    ta += da;
    tb += db;
    ++n;
    st.SetIterationTime(da + db);
  }
  if (n == 0 || ta <= 0) return;
  st.counters["ratio"] = tb / ta;
  st.counters["a_ms"] = ta / double(n) * 1e3;
  st.counters["b_ms"] = tb / double(n) * 1e3;
  st.counters["placements"] = double(placements);
  st.SetLabel("a: " + a.label + "; b: " + b.label + "; ratio = time(b) / time(a), alternating ABBA, fresh buffers every " +
              std::to_string(kIterationsPerPlacement) + " iterations");
}

// The engine's block size (16) is the claim's; 64 and 128 are recorded beside it: on a host
// where paging's cost is per block switch (a stall as the walk jumps to the next block), it
// falls as the blocks grow, and the sweep says which block size would meet the target.
void register_paired() {
  const CaseBench contiguous{"cpu", ctx4096_attention_case(0), "cpu " + ctx4096_attention_what(0)};
  // 32 alternations per repetition whatever --benchmark_min_time says: 4 placements, ~0.25 s of
  // ~4 ms calls (2 threads). A fixed count, not a minimum time: under a loaded CI machine a
  // time-sized run shrank to fewer than 8 alternations, one placement, and averaged nothing.
  // `counters` are added to each repetition's.
  auto pair = [&](const std::string& name, const CaseBench& paged, const std::map<std::string, double>& counters) {
    benchmark::RegisterBenchmark(name.c_str(),
                                 [=](benchmark::State& st) {
                                   bm_paired_cases(st, name, paged, contiguous, "paged_attention");
                                   for (const auto& [k, v] : counters) st.counters[k] = v;
                                 })
        ->UseManualTime()
        ->Iterations(4 * kIterationsPerPlacement)
        ->Unit(benchmark::kMicrosecond);
  };
  if (const auto& g = given_tables())
    pair("paired/attention/cpu/f32/H32_KV4_D64_B16_given_tables_vs_contiguous/decode_ctx4096_S8/M8",
         {"cpu", g->c,
          "cpu f32 paged block 16, given tables (" + (g->source.empty() ? std::string("--cb_paged_tables") : g->source) + "; pool " +
              std::to_string(g->pool_blocks) + " blocks), 8 sequences at 4K"},
         {{"mean_run_blocks", g->mean_run_blocks}, {"jumps_per_sequence", g->jumps_per_sequence}});
  for (int block : {kBlockSize, 64, 128})
    pair("paired/attention/cpu/f32/H32_KV4_D64_B" + std::to_string(block) + "_vs_contiguous/decode_ctx4096_S8/M8",
         {"cpu", ctx4096_attention_case(block), "cpu " + ctx4096_attention_what(block)}, {});
}

// ---- perf mode: every model-shaped case on every backend -----------------------------------------
// op/<backend>/<case perf_name()>: the cases above plus the matmuls of every dtype and layout on
// the llama-1b projection shapes, as op cases (their own seeded weights: no weight cache, no
// planted slowdown, no oneDNN peer), on the backends asked for.
void register_op_perf(const std::vector<std::string>& backends) {
  std::vector<std::shared_ptr<const kt::OpCase>> cases;
  for (const ModelCase& mc : model_cases()) cases.push_back(mc.c);
  for (const MatShape& sh : kMatShapes)
    for (int m : kMatTokens) {
      for (DType dt : {DType::F32, DType::F16, DType::BF16, DType::I8})
        cases.push_back(std::make_shared<kt::MatMulCase>(dt, m, sh.k, sh.n));
      for (ActQuant aq : {ActQuant::PerTokenInt8, ActQuant::Bf16})
        cases.push_back(std::make_shared<kt::QuantMatMulCase>(aq, m, sh.k, sh.n));
      cases.push_back(std::make_shared<kt::Sparse24MatMulCase>(DType::F32, m, sh.k, sh.n));
    }
  for (const std::string& bn : backends)
    for (const auto& c : cases) reg_case("op/" + bn + "/" + c->perf_name(), {bn, c, bn + " " + c->name()});
}

void register_all() {
  using cb::bench::bf16_dot_work;
  using cb::bench::fp32_fma_work;
  using cb::bench::int8_dot_work;
  benchmark::RegisterBenchmark("BM_peak_fp32_fma", bm_compute_peak, fp32_fma_work, "GFLOP/s")->UseManualTime();
  benchmark::RegisterBenchmark("BM_peak_bf16_dot", bm_compute_peak, bf16_dot_work, "GFLOP/s")->UseManualTime();
  benchmark::RegisterBenchmark("BM_peak_int8_dot", bm_compute_peak, int8_dot_work, "GOP/s")->UseManualTime();
  benchmark::RegisterBenchmark("BM_mem_read_bw", bm_mem_read_bw)->UseManualTime()->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("BM_mem_triad_bw", bm_mem_triad_bw)->UseManualTime()->Unit(benchmark::kMillisecond);

  // Matmul: dtype, then shape, then M, so consecutive cases share the cached weight.
  for (const char* dt : {"f32", "f16", "bf16", "int8pc", "w8a8", "bf16dot", "sparse24"}) {
    for (const char* bn : {"cpu", "ref"})  // the cpu/ref pair (ref is slow: only the small shape)
      for (int64_t m : {1, 8})
        reg(std::string("matmul/") + bn + "/" + dt + "/" + shape_name(kSmallShape) + "/M" + std::to_string(m),
            [=](benchmark::State& st) { bm_matmul(st, bn, dt, kSmallShape, m); });
    for (const MatShape& sh : kMatShapes)
      for (int m : kMatTokens)
        reg(std::string("matmul/cpu/") + dt + "/" + shape_name(sh) + "/M" + std::to_string(m),
            [=](benchmark::State& st) { bm_matmul(st, "cpu", dt, sh, m); });
  }
  // The row-major kernel on the weights the cpu backend packs (f32, bf16; W8A8 on VNNI): the packed
  // kernel's peer.
  for (const char* dt : {"f32rowmajor", "bf16rowmajor", "w8a8rowmajor"})
    for (const MatShape& sh : kMatShapes)
      for (int m : kMatTokens)
        reg(std::string("matmul/cpu/") + dt + "/" + shape_name(sh) + "/M" + std::to_string(m),
            [=](benchmark::State& st) { bm_matmul(st, "cpu", dt, sh, m); });
  // oneDNN: the BLAS calls and the matmul primitive (the stronger peer: W reordered once).
  using cb::kbench::OnednnPeerKind;
  const std::pair<const char*, OnednnPeerKind> peers[] = {{"onednn_sgemm/f32", OnednnPeerKind::Sgemm},
                                                          {"onednn_s8s8/w8a8", OnednnPeerKind::GemmS8},
                                                          {"onednn_matmul/f32", OnednnPeerKind::MatmulF32},
                                                          {"onednn_matmul/w8a8", OnednnPeerKind::MatmulS8},
                                                          {"onednn_matmul/bf16dot", OnednnPeerKind::MatmulBf16}};
  for (const auto& [name, kind] : peers)
    for (const MatShape& sh : kMatShapes)
      for (int m : kMatTokens)
        reg(std::string("matmul/") + name + "/" + shape_name(sh) + "/M" + std::to_string(m),
            [=](benchmark::State& st) { bm_onednn(st, kind, sh, m); });

  // Every other op from its op case, on the cpu backend.
  for (ModelCase& mc : model_cases())
    reg_case(mc.op + "/cpu/" + mc.dtype + "/" + mc.tail, {"cpu", std::move(mc.c), "cpu " + mc.what});
  register_paired();
}

// libbenchmark < 1.8 parses --benchmark_min_time as a bare double and rejects "0.05s"; >= 1.8
// wants the suffix (and warns without it). Strip a trailing "s" on old versions so one command
// line works everywhere.
void normalize_flags(int argc, char** argv, std::vector<std::string>& storage) {
  const std::string flag = "--benchmark_min_time=";
  storage.reserve(size_t(argc));
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (CB_BENCHMARK_VERSION_MAJOR == 1 && CB_BENCHMARK_VERSION_MINOR < 8 && a.rfind(flag, 0) == 0 &&
        a.size() > flag.size() + 1 && a.back() == 's') {
      a.pop_back();
      storage.push_back(a);
      argv[i] = storage.back().data();
    }
  }
}

// --cb_paged_tables=FILE: reads the tables (read_given_tables) and takes the flag out of argv.
void take_paged_tables(int& argc, char** argv, std::string& error) {
  const std::string flag = "--cb_paged_tables=";
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind(flag, 0) == 0) {
      given_tables() = read_given_tables(a.substr(flag.size()), error);
      continue;
    }
    argv[kept++] = argv[i];
  }
  argc = kept;
  argv[argc] = nullptr;
}

// --op_perf[=BACKENDS] turns on the perf mode (register_op_perf) on BACKENDS, comma-separated, or
// "all"; without a list, every available backend but ref (the plain-loop oracle, slow on these
// shapes). A --benchmark_filter that starts with "op/" or "^op/" turns it on too, with the
// default backends. Takes the flag out of argv (Google Benchmark rejects flags it does not know).
// Returns whether the mode is on; a bad list sets `error`.
bool take_op_perf(int& argc, char** argv, std::vector<std::string>& backends, std::string& error) {
  const std::string flag = "--op_perf", filter = "--benchmark_filter=";
  bool on = false;
  std::string list;
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == flag || a.rfind(flag + "=", 0) == 0) {
      on = true;
      list = a.size() > flag.size() ? a.substr(flag.size() + 1) : "";
      continue;
    }
    if (a.rfind(filter, 0) == 0 && (a.compare(filter.size(), 3, "op/") == 0 || a.compare(filter.size(), 4, "^op/") == 0))
      on = true;
    argv[kept++] = argv[i];
  }
  argc = kept;
  argv[argc] = nullptr;
  if (!on) return false;
  const std::vector<std::string> avail = available_backends();
  if (list.empty() || list == "all") {
    for (const std::string& b : avail)
      if (list == "all" || b != "ref") backends.push_back(b);
    return true;
  }
  size_t at = 0;
  while (at <= list.size()) {
    const size_t comma = std::min(list.find(',', at), list.size());
    const std::string b = list.substr(at, comma - at);
    if (std::find(avail.begin(), avail.end(), b) == avail.end()) {
      std::string known;
      for (const std::string& n : avail) known += (known.empty() ? "" : ", ") + n;
      error = "--op_perf: unknown backend '" + b + "' (available: " + known + ", or all)";
      return true;
    }
    backends.push_back(b);
    at = comma + 1;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> storage;
  normalize_flags(argc, argv, storage);
  std::vector<std::string> op_backends;
  std::string error;
  const bool op_perf = take_op_perf(argc, argv, op_backends, error);
  if (error.empty()) take_paged_tables(argc, argv, error);
  if (!error.empty()) {
    std::fprintf(stderr, "cb_kernel_bench: %s\n", error.c_str());
    return 1;
  }
  register_all();
  if (op_perf) {
    register_op_perf(op_backends);
    std::string list;
    for (const std::string& b : op_backends) list += (list.empty() ? "" : ",") + b;
    benchmark::AddCustomContext("op_perf_backends", list);
  }
  benchmark::AddCustomContext("google_benchmark_version", CB_BENCHMARK_VERSION);
  benchmark::AddCustomContext("omp_max_threads", std::to_string(omp_get_max_threads()));
  std::string isa;
  for (auto i : {cb::bench::Isa::Avx2, cb::bench::Isa::Avx512, cb::bench::Isa::Avx512Bf16, cb::bench::Isa::Avx512Vnni})
    if (cb::bench::cpu_has(i)) {
      if (!isa.empty()) isa += ",";
      isa += cb::bench::isa_name(i);
    }
  benchmark::AddCustomContext("cpu_isa", isa.empty() ? "baseline" : isa);
  benchmark::AddCustomContext("llc_bytes", std::to_string(cb::bench::last_level_cache_bytes()));
  benchmark::AddCustomContext("onednn_version", cb::kbench::onednn_version());
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  prepared_case().p.reset();  // its tensors go back to their backend while it still exists
  benchmark::Shutdown();
  return 0;
}
