// cb_cuda_bench: the GPU microbenchmark. One run measures the device's own peaks (copy bandwidth,
// raw cuBLASLt GEMMs), the cuda backend's matmul at llama-1b shapes, the best cuBLASLt algorithm
// for the same shapes (the reference the backend is judged against), and decode attention
// bandwidth over the paged KV cache; it writes everything as one JSON file (--json) and a table.
// Every CUDA/cuBLASLt/backend failure is recorded in the JSON ("errors", per-case "status"), never
// fatal; a global time budget (--budget-s) bounds the run: cases past it are "skipped: time budget".
// Exit codes: 0 ran (see "errors"), 1 the JSON could not be written, 2 bad arguments,
// 77 no usable CUDA device (prints "SKIP: <reason>").
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cb/kernels/backend.h"
#include "cb/kernels/int8_scheme.h"
#include "cb/kernels/kv_batch.h"

namespace {

namespace ck = cb::kernels;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// ---- run context: options, the time budget, the error list -------------------------------------
struct Ctx {
  bool quick = false;
  uint32_t seed = 1234;
  double budget_s = 80;  // the H200 run must finish in 90 s; teardown and JSON need a few
  Clock::time_point t0 = Clock::now();
  std::vector<std::string> errors;
  double elapsed() const { return std::chrono::duration<double>(Clock::now() - t0).count(); }
  // Whether the section that may run until `frac` of the budget must stop starting cases.
  bool past(double frac) const { return elapsed() > frac * budget_s; }
  void error(const std::string& e) {
    std::fprintf(stderr, "error: %s\n", e.c_str());
    errors.push_back(e);
  }
};

std::string cu_err(cudaError_t e, const char* what) {
  return e == cudaSuccess ? std::string() : std::string(what) + ": " + cudaGetErrorString(e);
}
std::string lt_err(cublasStatus_t s, const char* what) {
  return s == CUBLAS_STATUS_SUCCESS ? std::string() : std::string(what) + ": " + cublasLtGetStatusString(s);
}
std::string st_err(const ck::Status& s, const char* what) {
  return s.ok() ? std::string() : std::string(what) + ": " + ck::status_code_name(s.code) + ": " + s.message;
}

__attribute__((format(printf, 1, 2))) std::string fmt(const char* f, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

// Raw device memory, freed on scope exit.
struct DevMem {
  void* p = nullptr;
  size_t bytes = 0;
  DevMem() = default;
  DevMem(const DevMem&) = delete;
  DevMem& operator=(const DevMem&) = delete;
  ~DevMem() { reset(); }
  void reset() {
    if (p != nullptr) cudaFree(p);
    p = nullptr;
    bytes = 0;
  }
  std::string alloc(size_t n) {
    reset();
    if (cudaError_t e = cudaMalloc(&p, n); e != cudaSuccess) {
      p = nullptr;
      cudaGetLastError();  // allocation failures are not sticky; clear it
      return cu_err(e, ("cudaMalloc " + std::to_string(n) + " bytes").c_str());
    }
    bytes = n;
    return {};
  }
};

// A backend tensor, released on scope exit (declare after the backend so it dies first).
struct BeBuf {
  ck::Backend* be = nullptr;
  ck::Tensor t;
  BeBuf() = default;
  BeBuf(const BeBuf&) = delete;
  BeBuf& operator=(const BeBuf&) = delete;
  ~BeBuf() {
    if (be != nullptr && !t.empty()) be->release(t);
  }
  std::string init(ck::Backend& b, ck::DType dt, std::initializer_list<int64_t> dims) {
    be = &b;
    return st_err(b.allocate(dt, dims, t), "backend allocate");
  }
};

// Fast seeded uniform values for big inputs (splitmix64; mt19937 would cost seconds at 200M values).
struct SplitMix {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  float uniform() { return float(next() >> 40) * (2.f / 16777216.f) - 1.f; }  // [-1, 1)
};

// Inputs that a timed loop re-reads are cycled over copies adding up to at least this, so the
// reads come from HBM, not the 50 MB L2 (as in a model, where every layer has its own weights).
constexpr double kWorkingSet = 256.0 * (1 << 20);

// ---- timing ------------------------------------------------------------------------------------
struct TimeSpec {
  double target_ms = 20;  // timed calls add up to about this
  int warmups = 3;
  int64_t min_reps = 1, max_reps = 2000;
  int chunks = 10;  // events only between chunks, so tiny ops are not dominated by event records
};
struct Timing {
  std::string error;
  double median_ms = 0, best_ms = 0;
  int64_t reps = 0;
};

struct Events {
  std::vector<cudaEvent_t> ev;
  std::string error;
  explicit Events(size_t n) : ev(n, nullptr) {
    for (auto& e : ev)
      if (error.empty()) error = cu_err(cudaEventCreate(&e), "cudaEventCreate");
  }
  Events(const Events&) = delete;
  Events& operator=(const Events&) = delete;
  ~Events() {
    for (auto e : ev)
      if (e != nullptr) cudaEventDestroy(e);
  }
  float ms(size_t a, size_t b, std::string& err) const {
    float t = 0;
    if (err.empty()) err = cu_err(cudaEventElapsedTime(&t, ev[a], ev[b]), "cudaEventElapsedTime");
    return t;
  }
};

// fn() queues one call on stream s and returns "" or an error. Timed warm-ups (the last one
// estimates the per-call time; one over 50 ms ends the warm-up), then chunks of back-to-back calls
// between events: the median and best per-call time over chunks.
template <class F>
Timing time_op(cudaStream_t s, const TimeSpec& ts, F&& fn) {
  Timing t;
  Events ev(size_t(ts.chunks) + 1);
  if (!(t.error = ev.error).empty()) return t;
  auto run = [&](int64_t n) {
    for (int64_t i = 0; i < n && t.error.empty(); ++i) t.error = fn();
  };
  double est = 0;
  for (int w = 0; w < std::max(1, ts.warmups) && t.error.empty(); ++w) {
    t.error = cu_err(cudaEventRecord(ev.ev[0], s), "cudaEventRecord");
    run(1);
    if (t.error.empty()) t.error = cu_err(cudaEventRecord(ev.ev[1], s), "cudaEventRecord");
    if (t.error.empty()) t.error = cu_err(cudaEventSynchronize(ev.ev[1]), "cudaEventSynchronize (warm-up)");
    est = ev.ms(0, 1, t.error);
    if (est > 50) break;
  }
  if (!t.error.empty()) return t;
  int64_t reps = est > 50 ? ts.min_reps : int64_t(std::ceil(ts.target_ms / std::max(est, 1e-4)));
  reps = std::clamp(reps, std::max<int64_t>(ts.min_reps, 1), std::max<int64_t>(ts.max_reps, 1));
  const int64_t chunks = std::min<int64_t>(std::max(ts.chunks, 1), reps), per = (reps + chunks - 1) / chunks;
  t.error = cu_err(cudaEventRecord(ev.ev[0], s), "cudaEventRecord");
  for (int64_t c = 0; c < chunks && t.error.empty(); ++c) {
    run(per);
    if (t.error.empty()) t.error = cu_err(cudaEventRecord(ev.ev[size_t(c + 1)], s), "cudaEventRecord");
  }
  if (t.error.empty()) t.error = cu_err(cudaEventSynchronize(ev.ev[size_t(chunks)]), "cudaEventSynchronize");
  std::vector<double> per_call;
  for (int64_t c = 0; c < chunks && t.error.empty(); ++c) per_call.push_back(ev.ms(size_t(c), size_t(c + 1), t.error) / double(per));
  if (!t.error.empty()) return t;
  std::sort(per_call.begin(), per_call.end());
  const size_t n = per_call.size();
  t.median_ms = n % 2 ? per_call[n / 2] : 0.5 * (per_call[n / 2 - 1] + per_call[n / 2]);
  t.best_ms = per_call.front();
  t.reps = chunks * per;
  return t;
}

json timing_json(const Timing& t) {
  return {{"median_ms", t.median_ms}, {"best_ms", t.best_ms}, {"reps", t.reps}};
}

// ---- 1. device facts ---------------------------------------------------------------------------
json device_facts(int dev) {
  json j;
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, dev) == cudaSuccess) {
    j["name"] = p.name;
    j["total_memory_bytes"] = p.totalGlobalMem;
    j["compute_capability"] = std::to_string(p.major) + "." + std::to_string(p.minor);
  }
  auto attr = [dev](cudaDeviceAttr a) {
    int v = -1;
    return cudaDeviceGetAttribute(&v, a, dev) == cudaSuccess ? v : -1;
  };
  j["sm_count"] = attr(cudaDevAttrMultiProcessorCount);
  j["sm_clock_khz"] = attr(cudaDevAttrClockRate);
  j["memory_clock_khz"] = attr(cudaDevAttrMemoryClockRate);
  j["memory_bus_width_bits"] = attr(cudaDevAttrGlobalMemoryBusWidth);
  j["l2_cache_bytes"] = attr(cudaDevAttrL2CacheSize);
  const double mc = j["memory_clock_khz"].get<int>(), bw = j["memory_bus_width_bits"].get<int>();
  if (mc > 0 && bw > 0) j["dram_gbps_from_attributes"] = 2.0 * mc * 1e3 * bw / 8.0 / 1e9;  // DDR: 2 transfers a clock
  int drv = 0, rt = 0;
  cudaDriverGetVersion(&drv);
  cudaRuntimeGetVersion(&rt);
  j["driver_version"] = drv;
  j["runtime_version"] = rt;
  j["cublaslt_version"] = cublasLtGetVersion();
  j["cublaslt_cudart_version"] = cublasLtGetCudartVersion();
  return j;
}

// ---- raw cuBLASLt GEMMs (TN, column-major): D[m, n] = A^T B, A stored k x m, B k x n ----------
struct LtType {
  const char* name;
  cudaDataType_t ab, cd, scale;
  cublasComputeType_t compute;
  int rnd;  // which random input buffer: 0 bf16, 1 i8, 2 f32
};
const LtType kBf16{"bf16", CUDA_R_16BF, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F, 0};
const LtType kInt8{"int8_imma", CUDA_R_8I, CUDA_R_32I, CUDA_R_32I, CUBLAS_COMPUTE_32I, 1};
const LtType kTf32{"tf32", CUDA_R_32F, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32, 2};
const LtType kFp32{"fp32", CUDA_R_32F, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F, 2};

struct Lt {
  cublasLtHandle_t h = nullptr;
  cudaStream_t s = nullptr;
  DevMem ws, out, rnd[3];
  uint64_t seed = 0;
  static constexpr size_t kWorkspace = 32u << 20;
  Lt() = default;
  Lt(const Lt&) = delete;
  Lt& operator=(const Lt&) = delete;
  ~Lt() {
    if (h != nullptr) cublasLtDestroy(h);
  }
  std::string init(cudaStream_t stream, uint64_t sd) {
    s = stream;
    seed = sd;
    if (auto e = lt_err(cublasLtCreate(&h), "cublasLtCreate"); !e.empty()) return e;
    return ws.alloc(kWorkspace);
  }
  // Random inputs of the type (A and B both read this one buffer), grown on demand.
  std::string ensure_random(int kind, size_t elems) {
    static constexpr size_t kSize[3] = {2, 1, 4};
    if (rnd[kind].bytes >= elems * kSize[kind]) return {};
    if (auto e = rnd[kind].alloc(elems * kSize[kind]); !e.empty()) return e;
    std::vector<uint8_t> host(elems * kSize[kind]);
    SplitMix g{seed + uint64_t(kind) * 7919};
    for (size_t i = 0; i < elems; ++i) {
      if (kind == 0) {
        const uint16_t b = ck::f32_to_bf16(g.uniform());
        std::memcpy(&host[2 * i], &b, 2);
      } else if (kind == 1) {
        host[i] = uint8_t(int8_t(int(g.next() % 255) - 127));
      } else {
        const float f = g.uniform();
        std::memcpy(&host[4 * i], &f, 4);
      }
    }
    return cu_err(cudaMemcpy(rnd[kind].p, host.data(), host.size(), cudaMemcpyHostToDevice), "cudaMemcpy random inputs");
  }
  std::string ensure_out(size_t bytes) { return out.bytes >= bytes ? std::string() : out.alloc(bytes); }
};

// Every algorithm the heuristic returns (up to 16) for one GEMM, each timed; the record holds all
// of them, the heuristic's first choice and the best. Returns the best TFLOP/s (0: none ran).
double lt_best(Lt& lt, const LtType& ty, int64_t m, int64_t n, int64_t k, const TimeSpec& ts, json& rec) {
  rec = {{"type", ty.name}, {"m", m}, {"n", n}, {"k", k}, {"layout", "TN column-major (A k x m, B k x n, D m x n)"},
         {"requested_algos", 16}, {"workspace_bytes", Lt::kWorkspace}};
  struct Desc {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    cublasLtMatmulPreference_t pref = nullptr;
    ~Desc() {
      if (pref) cublasLtMatmulPreferenceDestroy(pref);
      if (d) cublasLtMatrixLayoutDestroy(d);
      if (b) cublasLtMatrixLayoutDestroy(b);
      if (a) cublasLtMatrixLayoutDestroy(a);
      if (op) cublasLtMatmulDescDestroy(op);
    }
  } ds;
  std::string e = lt.ensure_random(ty.rnd, size_t(std::max(m, n) * k));
  if (e.empty()) e = lt.ensure_out(size_t(m * n) * 4);  // f32 or i32 output
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  const uint64_t wsb = Lt::kWorkspace;
  if (e.empty()) e = lt_err(cublasLtMatmulDescCreate(&ds.op, ty.compute, ty.scale), "cublasLtMatmulDescCreate");
  if (e.empty()) e = lt_err(cublasLtMatmulDescSetAttribute(ds.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), "set TRANSA");
  if (e.empty()) e = lt_err(cublasLtMatmulDescSetAttribute(ds.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), "set TRANSB");
  if (e.empty()) e = lt_err(cublasLtMatrixLayoutCreate(&ds.a, ty.ab, uint64_t(k), uint64_t(m), k), "layout A");
  if (e.empty()) e = lt_err(cublasLtMatrixLayoutCreate(&ds.b, ty.ab, uint64_t(k), uint64_t(n), k), "layout B");
  if (e.empty()) e = lt_err(cublasLtMatrixLayoutCreate(&ds.d, ty.cd, uint64_t(m), uint64_t(n), m), "layout D");
  if (e.empty()) e = lt_err(cublasLtMatmulPreferenceCreate(&ds.pref), "cublasLtMatmulPreferenceCreate");
  if (e.empty())
    e = lt_err(cublasLtMatmulPreferenceSetAttribute(ds.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb),
               "set MAX_WORKSPACE_BYTES");
  cublasLtMatmulHeuristicResult_t res[16] = {};
  int got = 0;
  if (e.empty())
    e = lt_err(cublasLtMatmulAlgoGetHeuristic(lt.h, ds.op, ds.a, ds.b, ds.d, ds.d, ds.pref, 16, res, &got),
               "cublasLtMatmulAlgoGetHeuristic");
  if (e.empty() && got <= 0) e = "cublasLtMatmulAlgoGetHeuristic returned no algorithm";
  if (!e.empty()) {
    rec["status"] = "error: " + e;
    return 0;
  }
  const float one_f = 1.f, zero_f = 0.f;
  const int32_t one_i = 1, zero_i = 0;
  const bool int_scale = ty.scale == CUDA_R_32I;
  const void* alpha = int_scale ? static_cast<const void*>(&one_i) : &one_f;
  const void* beta = int_scale ? static_cast<const void*>(&zero_i) : &zero_f;
  const double flops = 2.0 * double(m) * double(n) * double(k);
  double best = 0;
  json algos = json::array();
  for (int i = 0; i < got; ++i) {
    json a = {{"index", i}, {"waves", res[i].wavesCount}, {"algo_workspace_bytes", res[i].workspaceSize}};
    int32_t id = -1;
    size_t written = 0;
    if (cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_ID, &id, sizeof id, &written) ==
        CUBLAS_STATUS_SUCCESS)
      a["algo_id"] = id;
    if (res[i].state != CUBLAS_STATUS_SUCCESS) {
      a["status"] = std::string("heuristic state: ") + cublasLtGetStatusString(res[i].state);
      algos.push_back(a);
      continue;
    }
    const Timing t = time_op(lt.s, ts, [&] {
      return lt_err(cublasLtMatmul(lt.h, ds.op, alpha, lt.rnd[ty.rnd].p, ds.a, lt.rnd[ty.rnd].p, ds.b, beta, lt.out.p,
                                   ds.d, lt.out.p, ds.d, &res[i].algo, lt.ws.p, Lt::kWorkspace, lt.s),
                    "cublasLtMatmul");
    });
    if (!t.error.empty()) {
      a["status"] = "error: " + t.error;
      cudaStreamSynchronize(lt.s);
      cudaGetLastError();
    } else {
      const double tf = flops / (t.median_ms * 1e-3) / 1e12;
      a.update(timing_json(t));
      a["tflops"] = tf;
      a["status"] = "ok";
      if (i == 0) rec["heuristic_first_tflops"] = tf;
      if (tf > best) {
        best = tf;
        rec["best_index"] = i;
      }
    }
    algos.push_back(a);
  }
  rec["algos"] = algos;
  rec["status"] = best > 0 ? "ok" : "error: no algorithm ran";
  if (best > 0) rec["best_tflops"] = best;
  return best;
}

// ---- 2. peaks: device-to-device copy bandwidth, large GEMMs ------------------------------------
json copy_peak(Ctx& ctx, cudaStream_t s, double& rw_gbps_best) {
  const size_t bytes = size_t(2) << 30;
  json j = {{"bytes", bytes}, {"method", "cudaMemcpyAsync device to device"}, {"warmups", 2}, {"reps", 10}};
  DevMem src, dst;
  std::string e = src.alloc(bytes);
  if (e.empty()) e = dst.alloc(bytes);
  if (e.empty()) e = cu_err(cudaMemsetAsync(src.p, 0x5a, bytes, s), "cudaMemsetAsync");
  Timing t;
  if (e.empty()) {
    TimeSpec ts{0, 2, 10, 10, 10};
    t = time_op(s, ts, [&] { return cu_err(cudaMemcpyAsync(dst.p, src.p, bytes, cudaMemcpyDeviceToDevice, s), "cudaMemcpyAsync"); });
    e = t.error;
  }
  if (!e.empty()) {
    ctx.error("d2d copy: " + e);
    j["status"] = "error: " + e;
    return j;
  }
  const double b = double(bytes);
  rw_gbps_best = 2 * b / (t.best_ms * 1e-3) / 1e9;
  j.update(timing_json(t));
  j["read_plus_written_gbps_best"] = rw_gbps_best;
  j["read_plus_written_gbps_median"] = 2 * b / (t.median_ms * 1e-3) / 1e9;
  j["copied_gbps_best"] = b / (t.best_ms * 1e-3) / 1e9;
  j["copied_gbps_median"] = b / (t.median_ms * 1e-3) / 1e9;
  j["status"] = "ok";
  std::printf("d2d copy 2 GiB: read+written %.0f GB/s best, %.0f median; copied %.0f GB/s best\n", rw_gbps_best,
              j["read_plus_written_gbps_median"].get<double>(), j["copied_gbps_best"].get<double>());
  return j;
}

json gemm_peaks(Ctx& ctx, Lt& lt) {
  json j = json::object();
  const TimeSpec ts{10, 2, 2, 50, 5};
  const std::tuple<const LtType*, int64_t> cases[] = {{&kBf16, 8192}, {&kInt8, 8192}, {&kTf32, 8192}, {&kFp32, 4096}};
  for (const auto& [ty, sz] : cases) {
    json rec;
    const double tf = lt_best(lt, *ty, sz, sz, sz, ts, rec);
    if (tf <= 0) ctx.error(std::string("gemm peak ") + ty->name + ": " + rec.value("status", std::string("?")));
    std::printf("gemm peak %-9s %5lld^3: %8.1f TFLOP/s (best of %zu algos)\n", ty->name, (long long)sz, tf,
                rec.contains("algos") ? rec["algos"].size() : size_t(0));
    j[ty->name] = rec;
  }
  return j;
}

// ---- 3. model-shape GEMMs through the backend --------------------------------------------------
struct Shape {
  const char* name;
  int64_t n, k;
};
const Shape kShapes[] = {{"q_o", 2048, 2048}, {"k_v", 256, 2048}, {"gate_up", 5632, 2048}, {"down", 2048, 5632},
                         {"lm_head", 32000, 2048}};
struct Variant {
  const char* name;
  ck::DType dt;
  ck::WeightLayout layout;
  ck::ActQuant act;
};
const Variant kVariants[] = {
    {"f32", ck::DType::F32, ck::WeightLayout::Dense, ck::ActQuant::None},
    {"bf16_act_bf16", ck::DType::BF16, ck::WeightLayout::Dense, ck::ActQuant::Bf16},
    {"bf16_weight_only", ck::DType::BF16, ck::WeightLayout::Dense, ck::ActQuant::None},
    {"w8a8", ck::DType::I8, ck::WeightLayout::Int8PerChannel, ck::ActQuant::PerTokenInt8},
};
// Backend TFLOP/s by (variant, N, K, M), for the ratios of section 4.
using RateKey = std::tuple<std::string, int64_t, int64_t, int64_t>;

json backend_matmuls(Ctx& ctx, ck::Backend& be, const std::vector<int64_t>& Ms, std::map<RateKey, double>& rates) {
  json cases = json::array(), checks = json::array();
  const auto bs = static_cast<cudaStream_t>(be.stream());
  const TimeSpec ts{20, 3, 1, 2000, 10};
  const int64_t Mmax = *std::max_element(Ms.begin(), Ms.end());
  std::mt19937 gen(ctx.seed);
  for (const Shape& sh : kShapes) {
    const int64_t N = sh.n, K = sh.k;
    auto record = [&](const Variant& v, int64_t M, json c) {
      c["variant"] = v.name;
      c["shape"] = sh.name;
      c["N"] = N;
      c["K"] = K;
      c["M"] = M;
      cases.push_back(std::move(c));
    };
    if (ctx.past(0.55)) {
      for (const Variant& v : kVariants)
        for (int64_t M : Ms) record(v, M, {{"status", "skipped: time budget"}});
      continue;
    }
    // Weights: mt19937(seed) top 24 bits scaled to [-1, 1), one stream over all shapes; bf16 and
    // int8 (the project's per-channel scheme) derived from the same f32 values.
    std::vector<float> wf(size_t(N * K));
    for (auto& f : wf) f = float(gen() >> 8) * (2.f / 16777216.f) - 1.f;
    std::vector<float> xh(size_t(Mmax * K));
    SplitMix xg{ctx.seed * 31ull + uint64_t(N * 7 + K)};
    for (auto& f : xh) f = xg.uniform();
    BeBuf x, y;
    std::string e = x.init(be, ck::DType::F32, {Mmax, K});
    if (e.empty()) e = y.init(be, ck::DType::F32, {Mmax, N});
    if (e.empty()) e = st_err(be.copy_from_host(x.t, xh.data()), "copy x");
    for (const Variant& v : kVariants) {
      if (!be.supports_matmul(v.dt, v.layout, v.act)) {
        for (int64_t M : Ms) record(v, M, {{"status", "unsupported"}});
        continue;
      }
      std::vector<uint16_t> wb;
      std::vector<int8_t> wq;
      std::vector<float> scales;
      ck::Weight hw;
      hw.layout = v.layout;
      hw.n = N;
      hw.k = K;
      hw.act_quant = v.act;
      double wbytes = double(N * K) * double(ck::dtype_size(v.dt));
      if (v.dt == ck::DType::F32) {
        hw.values = ck::Tensor(wf.data(), v.dt, {N, K});
      } else if (v.dt == ck::DType::BF16) {
        wb.resize(wf.size());
        for (size_t i = 0; i < wf.size(); ++i) wb[i] = ck::f32_to_bf16(wf[i]);
        hw.values = ck::Tensor(wb.data(), v.dt, {N, K});
      } else {
        wq.resize(wf.size());
        scales.resize(size_t(N));
        for (int64_t r = 0; r < N; ++r) scales[size_t(r)] = ck::int8::quantize_row(&wf[size_t(r * K)], K, &wq[size_t(r * K)]);
        hw.values = ck::Tensor(wq.data(), v.dt, {N, K});
        hw.scales = ck::Tensor(scales.data(), ck::DType::F32, {N});
        wbytes += 4.0 * double(N);
      }
      // M = 1 (weight-bandwidth bound) cycles through copies of the weight (see kWorkingSet);
      // larger M reuse copy 0, as the raw cuBLASLt reference of section 4 does.
      std::vector<ck::Weight> dws(size_t(std::clamp(std::ceil(kWorkingSet / wbytes), 1.0, 64.0)));
      std::string ve = e;
      for (auto& dw : dws)
        if (ve.empty()) ve = st_err(be.upload_weight(hw, dw), "upload_weight");
      if (ve.empty()) ve = st_err(be.synchronize(), "synchronize after upload");
      bool ran = false;
      for (int64_t M : Ms) {
        json c;
        if (!ve.empty()) {
          c["status"] = "error: " + ve;
        } else if (ctx.past(0.55)) {
          c["status"] = "skipped: time budget";
        } else {
          ck::Tensor xv = x.t.row_slice(0, M), yv = y.t.row_slice(0, M);
          const size_t ncopies = M == 1 ? dws.size() : 1;
          size_t call = 0;
          Timing t = time_op(bs, ts, [&] { return st_err(be.matmul(xv, dws[call++ % ncopies], yv), "matmul"); });
          if (std::string se = st_err(be.synchronize(), "synchronize"); t.error.empty()) t.error = se;
          if (!t.error.empty()) {
            c["status"] = "error: " + t.error;
          } else {
            ran = true;
            const double tf = 2.0 * double(M) * double(N) * double(K) / (t.median_ms * 1e-3) / 1e12;
            c = timing_json(t);
            c["status"] = "ok";
            c["tflops"] = tf;
            c["weight_bytes"] = wbytes;
            c["weight_copies_cycled"] = ncopies;
            if (M == 1) c["weight_gbps"] = wbytes / (t.median_ms * 1e-3) / 1e9;
            rates[{v.name, N, K, M}] = tf;
          }
        }
        const std::string st = c["status"].get<std::string>();
        if (st.rfind("error", 0) == 0) ctx.error(std::string("matmul ") + v.name + " " + sh.name + " M=" + std::to_string(M) + ": " + st);
        std::string shown = st;
        if (st == "ok") {
          shown = fmt("%10.2f us %8.2f TFLOP/s", c["median_ms"].get<double>() * 1e3, c["tflops"].get<double>());
          if (M == 1) shown += fmt(" %7.0f GB/s (weights)", c["weight_gbps"].get<double>());
        }
        std::printf("matmul %-16s %-7s N=%5lld K=%5lld M=%5lld: %s\n", v.name, sh.name, (long long)N, (long long)K,
                    (long long)M, shown.c_str());
        record(v, M, std::move(c));
      }
      // Sanity of the numbers: row 0 (the last run's, all runs share it), first <= 256 outputs, vs
      // a double dot product with the f32 weights (includes bf16/int8 rounding: NMSE ~1e-5..1e-4).
      if (ran) {
        const int64_t nc = std::min<int64_t>(N, 256);
        ck::Tensor row = y.t.row_slice(0, 1);
        row.shape[1] = nc;
        std::vector<float> got(static_cast<size_t>(nc));
        std::string ce = st_err(be.copy_to_host(got.data(), row), "copy_to_host y");
        if (ce.empty()) ce = st_err(be.synchronize(), "synchronize");
        json chk = {{"outputs", nc}, {"against", "f32 weights, double accumulation"}};
        if (!ce.empty()) {
          chk["status"] = "error: " + ce;
        } else {
          double num = 0, den = 0;
          for (int64_t c = 0; c < nc; ++c) {
            double ref = 0;
            for (int64_t kk = 0; kk < K; ++kk) ref += double(xh[size_t(kk)]) * wf[size_t(c * K + kk)];
            num += (got[size_t(c)] - ref) * (got[size_t(c)] - ref);
            den += ref * ref;
          }
          const double nmse = num / std::max(den, 1e-300);
          chk["nmse"] = std::isfinite(nmse) ? json(nmse) : json("non-finite");
          chk["status"] = std::isfinite(nmse) && nmse < 1e-2 ? "ok" : "suspect";
          if (chk["status"] != "ok") ctx.error(std::string("matmul ") + v.name + " " + sh.name + ": output check suspect");
        }
        chk.update({{"variant", v.name}, {"shape", sh.name}, {"N", N}, {"K", K}});
        checks.push_back(chk);
      }
    }
  }
  return {{"cases", cases}, {"output_checks", checks}};
}

// ---- 4. cuBLASLt best-algorithm reference and the ratios --------------------------------------
json lt_reference(Ctx& ctx, Lt& lt, const std::map<RateKey, double>& rates, bool have_backend) {
  const std::vector<int64_t> bf16_ms = ctx.quick ? std::vector<int64_t>{128, 4096} : std::vector<int64_t>{128, 1024, 4096};
  const std::vector<int64_t> int8_ms = ctx.quick ? std::vector<int64_t>{4096} : std::vector<int64_t>{1024, 4096};
  const TimeSpec ts{5, 1, 2, 200, 5};
  json gemms = json::array(), bf16_ratio = json::array(), int8_ratio = json::array();
  auto rate = [&](const char* v, int64_t N, int64_t K, int64_t M) {
    auto it = rates.find({v, N, K, M});
    return it == rates.end() ? 0.0 : it->second;
  };
  // One raw GEMM as the backend's op runs it: m = N (weight rows), n = M (tokens), k = K.
  auto raw = [&](const LtType& ty, const Shape& sh, int64_t M) {
    json rec = {{"type", ty.name}, {"m", sh.n}, {"n", M}, {"k", sh.k}, {"status", "skipped: time budget"}};
    const double best = ctx.past(0.75) ? 0 : lt_best(lt, ty, sh.n, M, sh.k, ts, rec);
    rec["shape"] = sh.name;
    if (best <= 0 && rec["status"] != "skipped: time budget")
      ctx.error(fmt("cublaslt %s %s M=%lld: ", ty.name, sh.name, (long long)M) + rec["status"].get<std::string>());
    gemms.push_back(rec);
    return best;
  };
  std::map<std::tuple<int64_t, int64_t, int64_t>, double> raw_bf16;
  for (const Shape& sh : kShapes)
    for (int64_t M : bf16_ms) {
      const double best = raw_bf16[{sh.n, sh.k, M}] = raw(kBf16, sh, M);
      const double be_tf = rate("bf16_act_bf16", sh.n, sh.k, M);
      json r = {{"shape", sh.name}, {"N", sh.n}, {"K", sh.k}, {"M", M}, {"target", 0.90},
                {"note", "backend time includes rounding x from f32 to bf16 (part of the op)"}};
      if (be_tf > 0) r["backend_bf16_tflops"] = be_tf;
      if (best > 0) r["cublaslt_best_bf16_tflops"] = best;
      if (be_tf > 0 && best > 0) {
        r["fraction"] = be_tf / best;
        r["meets_target"] = be_tf / best >= 0.90;
      } else {
        r["status"] = !have_backend ? "no backend" : be_tf <= 0 ? "backend rate missing" : "cublaslt rate missing";
      }
      std::printf("bf16 ref %-7s M=%5lld: cublasLt best %7.1f TFLOP/s, backend %7.1f -> %.3f\n", sh.name, (long long)M,
                  best, be_tf, best > 0 ? be_tf / best : 0.0);
      bf16_ratio.push_back(r);
    }
  for (const Shape& sh : kShapes)
    for (int64_t M : int8_ms) {
      const double best = raw(kInt8, sh, M), raw_b = raw_bf16[{sh.n, sh.k, M}];
      const double be_i8 = rate("w8a8", sh.n, sh.k, M), be_b = rate("bf16_act_bf16", sh.n, sh.k, M);
      json r = {{"shape", sh.name}, {"N", sh.n}, {"K", sh.k}, {"M", M}, {"target", 1.6}};
      if (be_i8 > 0) r["backend_w8a8_tflops"] = be_i8;
      if (be_b > 0) r["backend_bf16_tflops"] = be_b;
      if (be_i8 > 0 && be_b > 0) {
        r["backend_speedup"] = be_i8 / be_b;
        r["meets_target"] = be_i8 / be_b >= 1.6;
      }
      if (best > 0) r["cublaslt_int8_best_tflops"] = best;
      if (raw_b > 0) r["cublaslt_bf16_best_tflops"] = raw_b;
      if (best > 0 && raw_b > 0) r["cublaslt_speedup"] = best / raw_b;
      std::printf("int8 speedup %-7s M=%5lld: backend %.2fx (%.1f / %.1f), cublasLt %.2fx (%.1f / %.1f)\n", sh.name,
                  (long long)M, be_b > 0 ? be_i8 / be_b : 0.0, be_i8, be_b, raw_b > 0 ? best / raw_b : 0.0, best, raw_b);
      int8_ratio.push_back(r);
    }
  return {{"gemms", gemms}, {"backend_bf16_vs_cublaslt_best", bf16_ratio}, {"int8_speedup", int8_ratio},
          {"time_spec", {{"target_ms_per_algo", ts.target_ms}, {"warmups", ts.warmups}}}};
}

// ---- 5. decode attention bandwidth -------------------------------------------------------------
json attention_bench(Ctx& ctx, ck::Backend& be, double copy_rw_gbps) {
  const int n_heads = 32, n_kv = 4, hd = 64, bsz = 16;
  const std::vector<int> Bs = ctx.quick ? std::vector<int>{1, 32} : std::vector<int>{1, 8, 32};
  const std::vector<int> Ls = ctx.quick ? std::vector<int>{4096} : std::vector<int>{4096, 16384};
  const int maxB = *std::max_element(Bs.begin(), Bs.end()), maxL = *std::max_element(Ls.begin(), Ls.end());
  const int num_blocks = maxB * maxL / bsz;
  json j = {{"n_heads", n_heads}, {"n_kv_heads", n_kv}, {"head_dim", hd}, {"block_size", bsz}, {"pool_blocks", num_blocks},
            {"limit", "d2d copy, bytes read + written per second (best of reps)"}, {"target", 0.70}};
  if (copy_rw_gbps > 0) j["limit_gbps"] = copy_rw_gbps;
  const auto bs = static_cast<cudaStream_t>(be.stream());
  ck::KvCacheStorage kv;
  std::string e = st_err(be.alloc_kv_cache({1, num_blocks, bsz, n_kv, hd}, kv), "alloc_kv_cache");
  if (!e.empty()) {
    ctx.error("attention: " + e);
    j["status"] = "error: " + e;
    return j;
  }
  struct KvGuard {
    ck::Backend& be;
    ck::KvCacheStorage& kv;
    ~KvGuard() { be.release_kv_cache(kv); }
  } kv_guard{be, kv};
  const ck::KvLayer& layer = kv.layers.at(0);
  const ck::DType pool_dt = layer.k_pool.dtype;
  j["pool_dtype"] = ck::dtype_name(pool_dt);
  // Fill every slot once (not timed) with random keys/values through kv_store, in chunks of rows
  // that reuse one random k/v block (values repeat across chunks: irrelevant for timing).
  const int64_t row = int64_t(n_kv) * hd, total = int64_t(num_blocks) * bsz, chunk = std::min<int64_t>(65536, total);
  {
    BeBuf kb, vb, sb;
    std::vector<float> kh(size_t(chunk * row));
    std::vector<int32_t> slots(static_cast<size_t>(chunk));
    SplitMix g{ctx.seed + 99};
    e = kb.init(be, ck::DType::F32, {chunk, row});
    if (e.empty()) e = vb.init(be, ck::DType::F32, {chunk, row});
    if (e.empty()) e = sb.init(be, ck::DType::I32, {chunk});
    for (auto& f : kh) f = g.uniform();
    if (e.empty()) e = st_err(be.copy_from_host(kb.t, kh.data()), "copy k");
    for (auto& f : kh) f = g.uniform();
    if (e.empty()) e = st_err(be.copy_from_host(vb.t, kh.data()), "copy v");
    for (int64_t s0 = 0; s0 < total && e.empty(); s0 += chunk) {
      const int64_t n = std::min(chunk, total - s0);
      std::iota(slots.begin(), slots.begin() + n, int32_t(s0));
      ck::Tensor sv = sb.t;
      sv.shape[0] = n;
      e = st_err(be.copy_from_host(sv, slots.data()), "copy slots");
      if (e.empty()) e = st_err(be.kv_store(kb.t.row_slice(0, n), vb.t.row_slice(0, n), sv, kv.layers[0]), "kv_store");
      if (e.empty()) e = st_err(be.synchronize(), "synchronize kv_store");  // slots buffer is reused
    }
  }
  j["kv_fill"] = e.empty() ? "random via kv_store" : "failed (pools left as allocated): " + e;
  if (!e.empty()) ctx.error("attention kv fill: " + e);
  // Shuffled block order: a random permutation of the whole pool (seeded), each sequence a slice.
  std::vector<int32_t> perm(static_cast<size_t>(num_blocks));
  std::iota(perm.begin(), perm.end(), 0);
  std::mt19937 pg(ctx.seed + 1);
  std::shuffle(perm.begin(), perm.end(), pg);
  BeBuf q, out;
  std::string qe = q.init(be, ck::DType::F32, {maxB, int64_t(n_heads) * hd});
  if (qe.empty()) qe = out.init(be, ck::DType::F32, {maxB, int64_t(n_heads) * hd});
  std::vector<float> qh(size_t(maxB) * n_heads * hd);
  SplitMix qg{ctx.seed + 7};
  for (auto& f : qh) f = qg.uniform();
  if (qe.empty()) qe = st_err(be.copy_from_host(q.t, qh.data()), "copy q");
  ck::AttentionParams p{n_heads, n_kv, hd, 1.f / std::sqrt(float(hd))};
  const TimeSpec ts{20, 3, 1, 2000, 10};
  json cases = json::array();
  for (int L : Ls)
    for (int B : Bs) {
      const int bps = L / bsz;
      const double bytes = double(B) * L * n_kv * hd * 2.0 * double(ck::dtype_size(pool_dt));
      json c = {{"B", B}, {"L", L}, {"kv_bytes_read", bytes}};
      double ms[2] = {0, 0};
      // Consecutive calls read disjoint slices of the pool (see kWorkingSet), each its own batch.
      const int64_t per = int64_t(B) * bps;
      const int64_t regions = std::clamp<int64_t>(int64_t(std::ceil(kWorkingSet / bytes)), 1, num_blocks / per);
      c["regions_cycled"] = regions;
      for (int paged = 1; paged >= 0; --paged) {
        const char* key = paged ? "paged" : "contiguous";
        json r;
        std::vector<std::unique_ptr<ck::KvBatchTensors>> idx;
        std::string ce = qe;
        if (ctx.past(0.95)) ce = "skipped: time budget";
        for (int64_t g = 0; g < regions && ce.empty(); ++g) {
          std::vector<int32_t> tables(static_cast<size_t>(per));
          for (int64_t i = 0; i < per; ++i) tables[size_t(i)] = paged ? perm[size_t(g * per + i)] : int32_t(g * per + i);
          std::vector<ck::KvSeq> seqs;
          for (int sq = 0; sq < B; ++sq)
            seqs.push_back({L - 1, 1, std::span<const int32_t>(tables.data() + size_t(sq) * bps, size_t(bps))});
          ck::KvBatchPlan plan;
          idx.push_back(std::make_unique<ck::KvBatchTensors>(be));
          ce = st_err(ck::plan_kv_batch(seqs, num_blocks, bsz, plan), "plan_kv_batch");
          if (ce.empty()) ce = st_err(idx.back()->upload(plan), "upload index tensors");
        }
        Timing t;
        if (ce.empty()) {
          ck::Tensor qv = q.t.row_slice(0, B), ov = out.t.row_slice(0, B);
          size_t call = 0;
          t = time_op(bs, ts, [&] {
            return st_err(be.attention(qv, layer, idx[call++ % idx.size()]->attention(), p, ov), "attention");
          });
          if (std::string se = st_err(be.synchronize(), "synchronize"); t.error.empty()) t.error = se;
          ce = t.error;
        }
        if (!ce.empty()) {
          r["status"] = ce.rfind("skipped", 0) == 0 ? ce : "error: " + ce;
          if (ce.rfind("skipped", 0) != 0) ctx.error("attention B=" + std::to_string(B) + " L=" + std::to_string(L) + " " + key + ": " + ce);
        } else {
          ms[paged] = t.median_ms;
          r = timing_json(t);
          r["status"] = "ok";
          r["gbps"] = bytes / (t.median_ms * 1e-3) / 1e9;
          if (copy_rw_gbps > 0) {
            r["fraction_of_limit"] = r["gbps"].get<double>() / copy_rw_gbps;
            r["meets_target"] = r["gbps"].get<double>() / copy_rw_gbps >= 0.70;
          }
        }
        const std::string shown = r["status"] == "ok" ? fmt("%10.2f us %7.0f GB/s", t.median_ms * 1e3, r["gbps"].get<double>())
                                                      : r["status"].get<std::string>();
        std::printf("attention B=%2d L=%5d %-10s: %s\n", B, L, key, shown.c_str());
        c[key] = r;
      }
      if (ms[0] > 0 && ms[1] > 0)
        c["paged_over_contiguous_time"] = {{"ratio", ms[1] / ms[0]}, {"paged_median_ms", ms[1]}, {"contiguous_median_ms", ms[0]}};
      cases.push_back(c);
    }
  j["cases"] = cases;
  j["status"] = "ok";
  return j;
}

int usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s [--json PATH] [--quick] [--seed N] [--budget-s S]\n", argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Ctx ctx;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    if (a == "--quick") {
      ctx.quick = true;
    } else if (a == "--json" || a == "--seed" || a == "--budget-s") {
      const char* v = value();
      if (v == nullptr) return usage(argv[0]);
      try {
        if (a == "--json") json_path = v;
        else if (a == "--seed") ctx.seed = uint32_t(std::stoul(v));
        else ctx.budget_s = std::stod(v);
      } catch (const std::exception&) {
        return usage(argv[0]);
      }
    } else {
      return usage(argv[0]);
    }
  }
  json root = {{"schema", "cb_cuda_bench/1"}};
  auto write = [&]() -> int {
    if (json_path.empty()) return 0;
    std::ofstream f(json_path);
    f << root.dump(2) << "\n";
    if (!f.good()) {
      std::fprintf(stderr, "error: cannot write %s\n", json_path.c_str());
      return 1;
    }
    return 0;
  };

  int ndev = 0;
  if (cudaError_t ce = cudaGetDeviceCount(&ndev); ce != cudaSuccess || ndev == 0) {
    const std::string why = ce != cudaSuccess ? std::string("cudaGetDeviceCount: ") + cudaGetErrorString(ce)
                                              : std::string("no CUDA device");
    std::printf("SKIP: %s\n", why.c_str());
    root["skipped"] = why;
    write();
    return 77;
  }
  if (cudaError_t ce = cudaSetDevice(0); ce != cudaSuccess) {
    std::printf("SKIP: cudaSetDevice(0): %s\n", cudaGetErrorString(ce));
    root["skipped"] = std::string("cudaSetDevice(0): ") + cudaGetErrorString(ce);
    write();
    return 77;
  }

  const std::vector<int64_t> Ms = ctx.quick ? std::vector<int64_t>{1, 128, 4096} : std::vector<int64_t>{1, 16, 128, 1024, 4096};
  json shapes = json::array();
  for (const Shape& s : kShapes) shapes.push_back({{"name", s.name}, {"N", s.n}, {"K", s.k}});
  root["params"] = {
      {"quick", ctx.quick}, {"seed", ctx.seed}, {"budget_s", ctx.budget_s}, {"matmul_shapes", shapes}, {"matmul_M", Ms},
      {"weights", "mt19937(seed) top 24 bits -> uniform [-1, 1); bf16 rounded and int8 per-channel quantized from them"},
      {"activations", "splitmix64 uniform [-1, 1)"},
      {"matmul_timing", "3 timed warm-ups, then ~20 ms of back-to-back calls in <= 10 chunks between CUDA events; median of chunk per-call times"},
      {"attention", "decode (1 query row per sequence), llama-1b heads 32/4, head_dim 64, block 16"},
      {"working_set_bytes", kWorkingSet},
      {"working_set", "M=1 matmul cycles weight copies, attention cycles disjoint pool slices, so re-read inputs come from HBM, not L2"}};
  std::printf("cb_cuda_bench%s, seed %u\n", ctx.quick ? " (quick)" : "", ctx.seed);
  root["device"] = device_facts(0);
  std::printf("device: %s, %d SMs, %.1f GiB\n", root["device"].value("name", std::string("?")).c_str(),
              root["device"]["sm_count"].get<int>(),
              double(root["device"].value("total_memory_bytes", size_t(0))) / double(1u << 30));

  cudaStream_t s = nullptr;
  if (auto e = cu_err(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate"); !e.empty()) ctx.error(e);
  double copy_rw = 0;
  std::map<RateKey, double> rates;
  std::unique_ptr<ck::Backend> be;
  try {
    root["peaks"]["d2d_copy"] = copy_peak(ctx, s, copy_rw);
    {
      Lt lt;
      if (auto e = lt.init(s, ctx.seed); !e.empty()) ctx.error("cublasLt init: " + e);
      else root["peaks"]["gemm"] = gemm_peaks(ctx, lt);
    }
    try {
      be = ck::make_backend("cuda");
      root["backend"] = be->name();
    } catch (const std::exception& ex) {
      ctx.error(std::string("make_backend(\"cuda\"): ") + ex.what());
      root["backend"] = std::string("unavailable: ") + ex.what();
    }
    if (be) {
      try {
        root["matmul"] = backend_matmuls(ctx, *be, Ms, rates);
      } catch (const std::exception& ex) {
        ctx.error(std::string("matmul section: ") + ex.what());
      }
    }
    {
      Lt lt;
      if (auto e = lt.init(s, ctx.seed); !e.empty()) ctx.error("cublasLt init: " + e);
      else root["cublaslt_reference"] = lt_reference(ctx, lt, rates, be != nullptr);
    }
    if (be) {
      try {
        root["attention"] = attention_bench(ctx, *be, copy_rw);
      } catch (const std::exception& ex) {
        ctx.error(std::string("attention section: ") + ex.what());
      }
    }
  } catch (const std::exception& ex) {
    ctx.error(std::string("unexpected: ") + ex.what());
  }
  be.reset();
  if (s != nullptr) cudaStreamDestroy(s);
  root["errors"] = ctx.errors;
  root["ok"] = ctx.errors.empty();
  root["elapsed_s"] = ctx.elapsed();
  std::printf("done in %.1f s, %zu error(s)\n", ctx.elapsed(), ctx.errors.size());
  return write();
}
