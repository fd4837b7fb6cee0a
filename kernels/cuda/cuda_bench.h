// cb_cuda_bench's shared pieces (cuda_bench.cpp: main and device facts; cuda_bench_gemm.cpp: peaks,
// backend GEMMs and the cuBLASLt reference; cuda_bench_attention.cpp: decode attention): the run
// context with its time budget and error list, device buffers, event timing, raw cuBLASLt GEMMs.
#pragma once

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

namespace cb::cuda_bench {

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

inline std::string cu_err(cudaError_t e, const char* what) {
  return e == cudaSuccess ? std::string() : std::string(what) + ": " + cudaGetErrorString(e);
}
inline std::string lt_err(cublasStatus_t s, const char* what) {
  return s == CUBLAS_STATUS_SUCCESS ? std::string() : std::string(what) + ": " + cublasLtGetStatusString(s);
}
inline std::string st_err(const ck::Status& s, const char* what) {
  return s.ok() ? std::string() : std::string(what) + ": " + ck::status_code_name(s.code) + ": " + s.message;
}

__attribute__((format(printf, 1, 2))) inline std::string fmt(const char* f, ...) {
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
  std::vector<double> chunk_ms;  // per-call time of each chunk, in the order they ran (the samples)
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
  t.chunk_ms = per_call;
  std::sort(per_call.begin(), per_call.end());
  const size_t n = per_call.size();
  t.median_ms = n % 2 ? per_call[n / 2] : 0.5 * (per_call[n / 2 - 1] + per_call[n / 2]);
  t.best_ms = per_call.front();
  t.reps = chunks * per;
  return t;
}

inline json timing_json(const Timing& t) {
  return {{"median_ms", t.median_ms}, {"best_ms", t.best_ms}, {"reps", t.reps}, {"chunk_ms", t.chunk_ms}};
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
inline double lt_best(Lt& lt, const LtType& ty, int64_t m, int64_t n, int64_t k, const TimeSpec& ts, json& rec) {
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

// ---- the model shapes and matmul variants sections 3 and 4 share ----------------------------------
struct Shape {
  const char* name;
  int64_t n, k;
};
inline const Shape kShapes[] = {{"q_o", 2048, 2048}, {"k_v", 256, 2048}, {"gate_up", 5632, 2048}, {"down", 2048, 5632},
                         {"lm_head", 32000, 2048}};
struct Variant {
  const char* name;
  ck::DType dt;
  ck::WeightLayout layout;
  ck::ActQuant act;
};
inline const Variant kVariants[] = {
    {"f32", ck::DType::F32, ck::WeightLayout::Dense, ck::ActQuant::None},
    {"bf16_act_bf16", ck::DType::BF16, ck::WeightLayout::Dense, ck::ActQuant::Bf16},
    {"bf16_weight_only", ck::DType::BF16, ck::WeightLayout::Dense, ck::ActQuant::None},
    {"w8a8", ck::DType::I8, ck::WeightLayout::Int8PerChannel, ck::ActQuant::PerTokenInt8},
};
// Backend TFLOP/s by (variant, N, K, M), for the ratios of section 4.
using RateKey = std::tuple<std::string, int64_t, int64_t, int64_t>;

// ---- the sections (cuda_bench_gemm.cpp, cuda_bench_attention.cpp) -------------------------------
json copy_peak(Ctx& ctx, cudaStream_t s, double& rw_gbps_best);
json gemm_peaks(Ctx& ctx, Lt& lt);
json backend_matmuls(Ctx& ctx, ck::Backend& be, const std::vector<int64_t>& Ms, std::map<RateKey, double>& rates);
json lt_reference(Ctx& ctx, Lt& lt, const std::map<RateKey, double>& rates, bool have_backend);
json attention_bench(Ctx& ctx, ck::Backend& be, double copy_rw_gbps);

}  // namespace cb::cuda_bench
