// The `cuda` backend: the op table on one NVIDIA GPU. Tensors, weights and KV pools live in
// device memory; every op is queued on the backend's stream (no host round trip per op), and
// synchronize() returns the first fault. Dense matmul goes through cuBLASLt (FP32, BF16 with
// x rounded to bf16, INT8 IMMA for W8A8), with a weight-only GEMV of our own for decode rows;
// the other ops are the kernels in cuda_kernels.cu. Runs of ops can be recorded into CUDA graphs
// and replayed (Backend::capture_*; the model's decode steps, Model::set_step_graphs).
//
// Environment knobs, read once at construction:
//   CB_CUDA_DEVICE=N       device ordinal (default: the MPI local rank modulo the device count, else 0)
//   CB_CUDA_TF32=1         f32 GEMMs through TF32 tensor cores (CUBLAS_COMPUTE_32F_FAST_TF32)
//   CB_CUDA_LOG_ALGOS=1    print each cuBLASLt algorithm choice to stderr, once per shape
//   CB_CUDA_AUTOTUNE=0     take cuBLASLt's first heuristic choice instead of timing its top 8
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <span>
#include <memory>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "cb/kernels/backend.h"
#include "cb/kernels/cuda_info.h"
#include "cuda_kernels.h"

namespace cb::kernels {
namespace {

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' && std::string(v) != "0";
}

int pick_device(int count) {
  if (const char* d = std::getenv("CB_CUDA_DEVICE"); d && *d) return std::atoi(d) % count;
  for (const char* var : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "LOCAL_RANK"})
    if (const char* r = std::getenv(var); r && *r) return std::atoi(r) % count;
  return 0;
}

cuda::Elem elem_of(DType t) {
  switch (t) {
    case DType::F16: return cuda::Elem::F16;
    case DType::BF16: return cuda::Elem::BF16;
    case DType::I8: return cuda::Elem::I8;
    default: return cuda::Elem::F32;
  }
}

bool is_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

// A recorded run of ops (Backend::capture_*): an instantiated CUDA graph.
class CudaGraph final : public CapturedWork {
 public:
  explicit CudaGraph(cudaGraphExec_t exec) : exec_(exec) {}
  ~CudaGraph() override { cudaGraphExecDestroy(exec_); }
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;
  cudaGraphExec_t exec() const { return exec_; }

 private:
  cudaGraphExec_t exec_;
};

// A grow-only device buffer for an op's temporaries (bf16 activations, int8 rows, partials).
struct Scratch {
  void* ptr = nullptr;
  size_t cap = 0;
};

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device) {}
  ~CudaBackend() override {
    cudaSetDevice(device_);
    if (stream_) cudaStreamSynchronize(stream_);
    for (void* p : owned_) cudaFree(p);
    for (auto& [p, bytes] : live_) cudaFree(p);
    for (auto& [bytes, list] : free_)
      for (void* p : list) cudaFree(p);
    for (Scratch* s : {&s_act_, &s_q_, &s_scale_, &s_acc_, &s_wide_, &s_partial_})
      if (s->ptr) cudaFree(s->ptr);
    if (workspace_) cudaFree(workspace_);
    if (open_) idle_.push_back(*open_);
    for (const EventPair& e : pending_) idle_.push_back(e);
    for (const EventPair& e : idle_) cudaEventDestroy(e.begin), cudaEventDestroy(e.end);
    if (lt_) cublasLtDestroy(lt_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  Status init() {
    if (cudaError_t e = cudaSetDevice(device_); e != cudaSuccess) return fail("init", e);
    if (cudaError_t e = cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking); e != cudaSuccess) return fail("init", e);
    if (cublasLtCreate(&lt_) != CUBLAS_STATUS_SUCCESS) return Status::internal("cuda: cublasLtCreate failed");
    if (cudaError_t e = cudaMalloc(&workspace_, kWorkspace); e != cudaSuccess) return fail("init", e);
    tf32_ = env_flag("CB_CUDA_TF32");
    log_algos_ = env_flag("CB_CUDA_LOG_ALGOS");
    const char* tune = std::getenv("CB_CUDA_AUTOTUNE");
    autotune_ = tune == nullptr || std::string(tune) != "0";
    if (cudaError_t e = cudaDeviceGetAttribute(&sms_, cudaDevAttrMultiProcessorCount, device_); e != cudaSuccess)
      return fail("init", e);
    return Status::Ok();
  }

  std::string name() const override { return "cuda"; }

  bool supports(Op op, DType dtype, WeightLayout layout) const override {
    switch (op) {
      case Op::MatMul:
        if (layout == WeightLayout::Dense) return is_float(dtype);
        if (layout == WeightLayout::Int8PerChannel) return dtype == DType::I8;
        return false;  // Sparse24: needs cuSPARSELt (cuda_has_cusparselt())
      case Op::RmsNorm:
      case Op::Embedding: return is_float(dtype);
      default: return dtype == DType::F32;
    }
  }

  std::string matmul_unsupported_note(DType, WeightLayout layout, ActQuant) const override {
    return layout == WeightLayout::Sparse24
               ? "2:4 sparse weights need cuSPARSELt, which this build did not find (the cuda backend reports them "
                 "unsupported rather than running them dense)"
               : std::string();
  }

  // ---- Memory: a caching allocator (cudaMalloc/cudaFree synchronize the device; a decode step
  // allocates its activations every time). Blocks are reused by exact rounded size, safely: every
  // op and copy runs on the one stream, so a reused block's previous work is ordered before.
  Status allocate(DType dtype, std::initializer_list<int64_t> dims, Tensor& out) override {
    Tensor t(nullptr, dtype, dims, MemSpace::Device);
    const size_t bytes = round_size(t.nbytes());
    void* p = nullptr;
    if (auto it = free_.find(bytes); it != free_.end() && !it->second.empty()) {
      p = it->second.back();
      it->second.pop_back();
    } else {
      cudaError_t e = cudaMalloc(&p, bytes);
      if (e == cudaErrorMemoryAllocation) {  // give the cache back and try once more
        cudaGetLastError();
        trim_cache();
        e = cudaMalloc(&p, bytes);
      }
      if (e != cudaSuccess) {
        cudaGetLastError();
        return Status::out_of_memory("cuda: cannot allocate " + std::to_string(t.nbytes()) + " bytes for " + t.describe() +
                                     ": " + cudaGetErrorString(e));
      }
    }
    if (cudaError_t e = cudaMemsetAsync(p, 0, bytes, stream_); e != cudaSuccess) return fail("allocate", e);
    live_[p] = bytes;
    t.data = p;
    out = t;
    return Status::Ok();
  }
  void release(Tensor& t) override {
    if (auto it = live_.find(t.data); it != live_.end()) {
      free_[it->second].push_back(it->first);
      live_.erase(it);
    }
    t.data = nullptr;
  }
  Status copy_from_host(Tensor& dst, const void* src) override {
    // Pageable source: the call returns once the bytes are staged, so the caller may reuse src.
    return check("copy_from_host", cudaMemcpyAsync(dst.data, src, dst.nbytes(), cudaMemcpyHostToDevice, stream_));
  }
  Status copy_to_host(void* dst, const Tensor& src) override {
    if (cudaError_t e = cudaMemcpyAsync(dst, src.data, src.nbytes(), cudaMemcpyDeviceToHost, stream_); e != cudaSuccess)
      return fail("copy_to_host", e);
    return check("copy_to_host", cudaStreamSynchronize(stream_));  // the caller reads dst next
  }
  Status copy(Tensor& dst, const Tensor& src) override {
    return check("copy", cudaMemcpyAsync(dst.data, src.data, dst.nbytes(), cudaMemcpyDeviceToDevice, stream_));
  }
  Status synchronize() override { return check("synchronize", cudaStreamSynchronize(stream_)); }
  Stream stream() const override { return stream_; }

  // Busy regions: an event pair per region, recorded on the stream; a pair is read (and its
  // events reused) once its end event has completed, so nothing here waits on the device.
  void busy_begin() override {
    if (open_) idle_.push_back(*open_);  // a region whose end was never marked (an op threw): dropped
    open_.reset();
    EventPair ev{};
    if (!idle_.empty()) {
      ev = idle_.back();
      idle_.pop_back();
    } else if (cudaEventCreate(&ev.begin) != cudaSuccess || cudaEventCreate(&ev.end) != cudaSuccess) {
      cudaGetLastError();
      return;  // no events: this region is not counted (device_busy_seconds stays a lower bound)
    }
    if (cudaEventRecord(ev.begin, stream_) == cudaSuccess) open_ = ev;
    else idle_.push_back(ev);
  }
  void busy_end() override {
    if (!open_) return;
    if (cudaEventRecord(open_->end, stream_) == cudaSuccess) pending_.push_back(*open_);
    else idle_.push_back(*open_);
    open_.reset();
    harvest_busy();
  }
  std::optional<double> device_busy_seconds() override {
    harvest_busy();
    return busy_seconds_;
  }

  // Captured work: stream capture into a CUDA graph. Thread-local mode: a call that is not
  // allowed while capturing (cudaMalloc when a temporary must grow, a synchronize) fails and
  // invalidates the capture, which capture_end() then reports; the model runs that step as usual.
  // Busy-time events stay outside (the model marks the region around the replay).
  std::string capture_unsupported_reason() const override { return {}; }
  Status capture_begin() override {
    return check("capture_begin", cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  }
  Status capture_end(std::unique_ptr<CapturedWork>& out) override {
    out.reset();
    cudaGraph_t graph = nullptr;
    cudaError_t e = cudaStreamEndCapture(stream_, &graph);
    if (e != cudaSuccess || graph == nullptr) {
      cudaGetLastError();  // the failed capture's error is reported here, not by the next op
      if (graph) cudaGraphDestroy(graph);
      return fail("capture_end", e != cudaSuccess ? e : cudaErrorStreamCaptureInvalidated);
    }
    cudaGraphExec_t exec = nullptr;
    e = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) {
      cudaGetLastError();
      return fail("capture_end (instantiate)", e);
    }
    out = std::make_unique<CudaGraph>(exec);
    return Status::Ok();
  }
  Status replay(CapturedWork& work) override {
    auto* g = dynamic_cast<CudaGraph*>(&work);
    if (g == nullptr) return Status::invalid("cuda replay: the recording was not made by the cuda backend");
    return check("replay", cudaGraphLaunch(g->exec(), stream_));
  }

 protected:
  Status run_upload_weight(const Weight& host, Weight& out) override {
    out = host;  // Sparse24 never gets here: supports_matmul() says no (matmul_unsupported_note)
    for (auto [from, to] : {std::pair{&host.values, &out.values}, {&host.scales, &out.scales}}) {
      if (from->empty() || from->nbytes() == 0) continue;
      void* p = nullptr;
      if (cudaError_t e = cudaMalloc(&p, from->nbytes()); e != cudaSuccess) {
        cudaGetLastError();
        return Status::out_of_memory("cuda upload_weight: cannot allocate " + std::to_string(from->nbytes()) + " bytes for " +
                                     from->describe() + ": " + cudaGetErrorString(e));
      }
      owned_.push_back(p);
      // Synchronous: the caller drops the host pages (a memory-mapped file) right after.
      if (cudaError_t e = cudaMemcpy(p, from->data, from->nbytes(), cudaMemcpyHostToDevice); e != cudaSuccess)
        return fail("upload_weight", e);
      *to = *from;
      to->data = p;
      to->mem = MemSpace::Device;
    }
    return Status::Ok();
  }

  Status run_matmul(const Tensor& x, const Weight& w, Tensor& y) override {
    const int64_t M = x.rows(), N = w.n, K = w.k;
    const float* xp = x.as<const float>();
    float* yp = y.as<float>();
    if (w.act_quant == ActQuant::PerTokenInt8) return matmul_w8a8(xp, w, yp, M, N, K);
    if (w.act_quant == ActQuant::Bf16) {
      auto* xb = static_cast<uint16_t*>(scratch(s_act_, size_t(M * K) * 2));
      if (!xb) return oom("matmul (bf16 activations)");
      if (cudaError_t e = cuda::to_bf16(xp, xb, M * K, stream_); e != cudaSuccess) return fail("matmul", e);
      return lt_gemm(CUDA_R_16BF, CUBLAS_COMPUTE_32F, w.values.data, xb, yp, M, N, K);
    }
    const float* scales = w.layout == WeightLayout::Int8PerChannel ? w.scales.as<const float>() : nullptr;
    if (M <= cuda::kGemvMaxRows)  // decode: one pass over the weight for all rows
      return check("matmul (gemv)", cuda::gemv_lowp(xp, M, w.values.data, elem_of(w.dtype()), scales, yp, N, K, stream_));
    if (w.dtype() == DType::F32)
      return lt_gemm(CUDA_R_32F, tf32_ ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, w.values.data, xp, yp, M, N, K);
    // Weight-only f16/bf16/int8 at prefill sizes: widen the weight to f32 once per call, then SGEMM.
    auto* wide = static_cast<float*>(scratch(s_wide_, size_t(N * K) * 4));
    if (!wide) return oom("matmul (widened weight)");
    if (cudaError_t e = cuda::widen_weight(w.values.data, elem_of(w.dtype()), scales, wide, N, K, stream_); e != cudaSuccess)
      return fail("matmul", e);
    return lt_gemm(CUDA_R_32F, tf32_ ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, wide, xp, yp, M, N, K);
  }

  // Projections of one input (q/k/v, gate/up) with rounded or quantized activations: x is
  // converted once for all of them, not once per weight.
  Status run_matmul_multi(const Tensor& x, std::span<const MatmulOutput> outs) override {
    const ActQuant act = outs.front().w->act_quant;
    bool same = outs.size() > 1 && act != ActQuant::None;
    for (const MatmulOutput& o : outs) same = same && o.w->act_quant == act;
    if (!same) return Backend::run_matmul_multi(x, outs);
    const int64_t M = x.rows(), K = x.cols();
    if (act == ActQuant::PerTokenInt8) {
      if (Status s = quantize_x(x.as<const float>(), M, K); !s.ok()) return s;
      for (const MatmulOutput& o : outs)
        if (Status s = w8a8_from_quantized(*o.w, o.y->as<float>(), M, o.w->n, K); !s.ok()) return s;
      return Status::Ok();
    }
    auto* xb = static_cast<uint16_t*>(scratch(s_act_, size_t(M * K) * 2));
    if (!xb) return oom("matmul (bf16 activations)");
    if (cudaError_t e = cuda::to_bf16(x.as<const float>(), xb, M * K, stream_); e != cudaSuccess) return fail("matmul", e);
    for (const MatmulOutput& o : outs)
      if (Status s = lt_gemm(CUDA_R_16BF, CUBLAS_COMPUTE_32F, o.w->values.data, xb, o.y->as<float>(), M, o.w->n, K); !s.ok())
        return s;
    return Status::Ok();
  }

  Status run_rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor& y) override {
    return check("rmsnorm", cuda::rmsnorm(x.as<const float>(), weight.data, elem_of(weight.dtype), y.as<float>(), x.rows(),
                                          x.cols(), eps, stream_));
  }
  Status run_rope(Tensor& x, const Tensor& positions, int n_heads, int head_dim, float theta) override {
    return check("rope", cuda::rope(x.as<float>(), positions.as<const int32_t>(), x.rows(), x.cols(), n_heads, head_dim,
                                    theta, stream_));
  }
  Status run_kv_store(const Tensor& k, const Tensor& v, const Tensor& slot_mapping, KvLayer& kv) override {
    return check("kv_store", cuda::kv_store(k.as<const float>(), v.as<const float>(), slot_mapping.as<const int32_t>(),
                                            kv.k_pool.as<float>(), kv.v_pool.as<float>(), k.rows(),
                                            int64_t(kv.n_kv_heads) * kv.head_dim, stream_));
  }
  Status run_attention(const Tensor& q, const KvLayer& kv, const AttentionBatch& b, const AttentionParams& p,
                       Tensor& out) override {
    if (!cuda::attention_supported(p.n_heads, p.n_kv_heads, p.head_dim))
      return Status::unsupported("cuda attention: head_dim " + std::to_string(p.head_dim) + " with " +
                                 std::to_string(p.n_heads) + "/" + std::to_string(p.n_kv_heads) +
                                 " heads (the kernel takes head_dim <= 256)");
    cuda::AttentionArgs a;
    a.q = q.as<const float>();
    a.out = out.as<float>();
    a.k_pool = kv.k_pool.as<const float>();
    a.v_pool = kv.v_pool.as<const float>();
    a.query_start = b.query_start.as<const int32_t>();
    a.context_len = b.context_len.as<const int32_t>();
    a.block_tables = b.block_tables.as<const int32_t>();
    a.rows = q.rows();
    a.num_seqs = b.num_seqs;
    a.max_blocks = b.max_blocks_per_seq;
    a.max_context = b.max_context_len;
    a.block_size = kv.block_size;
    a.n_heads = p.n_heads;
    a.n_kv_heads = p.n_kv_heads;
    a.head_dim = p.head_dim;
    a.scale = p.scale;
    // Split the context when the (row, kv head) grid alone cannot fill the GPU: decode at long
    // contexts. Chunks of at least 128 keys (one pass of the CTA's warps) keep the merge's extra
    // traffic small.
    const int64_t ctas = a.rows * p.n_kv_heads * ((p.n_heads / p.n_kv_heads + 7) / 8);
    const int64_t want = 4LL * sms_;
    if (ctas < want && a.max_context >= 256) {
      const int64_t by_fill = (want + ctas - 1) / ctas, by_len = a.max_context / 128;
      a.splits = int(std::min<int64_t>({by_fill, by_len, 256}));
    }
    if (a.splits > 1) {
      a.chunk = (a.max_context + a.splits - 1) / a.splits;
      a.partial = static_cast<float*>(
          scratch(s_partial_, size_t(cuda::attention_partial_floats(a.rows, p.n_heads, p.head_dim, a.splits)) * 4));
      if (!a.partial) return oom("attention (split partials)");
    }
    return check("attention", cuda::attention(a, stream_));
  }
  Status run_silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) override {
    return check("silu_mul", cuda::silu_mul(gate.as<const float>(), up.as<const float>(), out.as<float>(), gate.numel(), stream_));
  }
  Status run_softmax(const Tensor& x, Tensor& y) override {
    return check("softmax", cuda::softmax(x.as<const float>(), y.as<float>(), x.rows(), x.cols(), stream_));
  }
  Status run_embedding(const Tensor& ids, const Tensor& table, Tensor& out) override {
    return check("embedding", cuda::embedding(ids.as<const int32_t>(), table.data, elem_of(table.dtype), out.as<float>(),
                                              ids.numel(), table.cols(), stream_));
  }
  Status run_add(const Tensor& a, const Tensor& b, Tensor& out) override {
    return check("add", cuda::add(a.as<const float>(), b.as<const float>(), out.as<float>(), a.numel(), stream_));
  }

 private:
  static constexpr size_t kWorkspace = size_t(32) << 20;

  static size_t round_size(size_t n) {
    constexpr size_t kSmall = 512, kLarge = size_t(2) << 20;
    if (n == 0) return kSmall;
    return n < kLarge ? (n + kSmall - 1) / kSmall * kSmall : (n + kLarge - 1) / kLarge * kLarge;
  }
  void trim_cache() {
    cudaStreamSynchronize(stream_);
    for (auto& [bytes, list] : free_)
      for (void* p : list) cudaFree(p);
    free_.clear();
  }

  // scratch(s, bytes): s grown to at least bytes (the old buffer freed after the stream drains).
  void* scratch(Scratch& s, size_t bytes) {
    if (bytes <= s.cap) return s.ptr;
    if (s.ptr) {
      cudaStreamSynchronize(stream_);
      cudaFree(s.ptr);
      s.ptr = nullptr;
      s.cap = 0;
    }
    const size_t want = std::max(bytes, s.cap * 3 / 2);
    if (cudaMalloc(&s.ptr, want) != cudaSuccess) {
      cudaGetLastError();
      trim_cache();
      if (cudaMalloc(&s.ptr, bytes) != cudaSuccess) {
        cudaGetLastError();
        s.ptr = nullptr;
        return nullptr;
      }
      s.cap = bytes;
      return s.ptr;
    }
    s.cap = want;
    return s.ptr;
  }

  Status fail(const char* what, cudaError_t e) const {
    const std::string m = std::string("cuda ") + what + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
    return e == cudaErrorMemoryAllocation ? Status::out_of_memory(m) : Status::internal(m);
  }
  Status check(const char* what, cudaError_t e) const { return e == cudaSuccess ? Status::Ok() : fail(what, e); }
  static Status oom(const char* what) { return Status::out_of_memory(std::string("cuda ") + what + ": out of device memory for temporaries"); }

  // W8A8: rows of x quantized per token, int8 x int8 -> int32 on cuBLASLt's IMMA path (an exact
  // integer kernel of our own where cuBLASLt refuses the shape), then scaled back.
  Status matmul_w8a8(const float* x, const Weight& w, float* y, int64_t M, int64_t N, int64_t K) {
    if (Status s = quantize_x(x, M, K); !s.ok()) return s;
    return w8a8_from_quantized(w, y, M, N, K);
  }
  // x rows quantized into s_q_ (values) and s_scale_ (per-row scales).
  Status quantize_x(const float* x, int64_t M, int64_t K) {
    auto* q = static_cast<int8_t*>(scratch(s_q_, size_t(M * K)));
    auto* xs = static_cast<float*>(scratch(s_scale_, size_t(M) * 4));
    if (!q || !xs) return oom("matmul (W8A8 temporaries)");
    return check("matmul (quantize x)", cuda::quantize_rows_int8(x, q, xs, M, K, stream_));
  }
  Status w8a8_from_quantized(const Weight& w, float* y, int64_t M, int64_t N, int64_t K) {
    auto* acc = static_cast<int32_t*>(scratch(s_acc_, size_t(M * N) * 4));
    if (!acc) return oom("matmul (W8A8 accumulators)");
    const auto* q = static_cast<const int8_t*>(s_q_.ptr);
    const auto* xs = static_cast<const float*>(s_scale_.ptr);
    Status s = lt_gemm(CUDA_R_8I, CUBLAS_COMPUTE_32I, w.values.data, q, acc, M, N, K);
    if (s.code == StatusCode::Unsupported) s = check("matmul (int8)", cuda::int8_gemm_simple(q, w.values.as<const int8_t>(), acc, M, N, K, stream_));
    if (!s.ok()) return s;
    return check("matmul", cuda::dequantize_int32(acc, xs, w.scales.as<const float>(), y, M, N, stream_));
  }

  // Row-major y[M, N] = x[M, K] * W[N, K]^T, which in cuBLASLt's column-major terms is the "TN"
  // GEMM D[N, M] = W^T' * x' with m = N, n = M, k = K and every leading dimension the row length.
  // ab: the type of W and x; D is f32 (i32 for int8). The chosen algorithm is cached per shape.
  Status lt_gemm(cudaDataType_t ab, cublasComputeType_t compute, const void* W, const void* X, void* D, int64_t M,
                 int64_t N, int64_t K) {
    const bool int8 = ab == CUDA_R_8I;
    const cudaDataType_t dt = int8 ? CUDA_R_32I : CUDA_R_32F;
    const cudaDataType_t scale_t = int8 ? CUDA_R_32I : CUDA_R_32F;
    // cuBLASLt assumes 256-byte aligned operands unless told otherwise; row views of a tensor
    // (the model's last-row logits) are not, so the plan is made for the alignment at hand.
    const auto align = [](const void* p) {
      const auto a = reinterpret_cast<uintptr_t>(p);
      return uint32_t(std::min<uintptr_t>(256, a & (~a + 1)));
    };
    const std::array<uint32_t, 3> al{align(W), align(X), align(D)};
    const auto key = std::make_tuple(int(ab), int(compute), M, N, K, al);
    auto it = plans_.find(key);
    if (it == plans_.end()) {
      Plan p;
      if (Status s = make_plan(p, ab, dt, scale_t, compute, M, N, K, al, W, X, D); !s.ok()) return s;
      it = plans_.emplace(key, std::move(p)).first;
    }
    const PlanData& p = *it->second;
    const cublasStatus_t st = launch(p, p.algo, int8, W, X, D);
    if (st != CUBLAS_STATUS_SUCCESS)
      return Status::internal("cuda matmul: cublasLtMatmul failed with status " + std::to_string(int(st)) + " for M=" +
                              std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K));
    return Status::Ok();
  }

  struct PlanData;
  // D = W^T' * X' with alpha 1 and beta 0 in the plan's scale type (int32 for int8).
  cublasStatus_t launch(const PlanData& p, const cublasLtMatmulAlgo_t& algo, bool int8, const void* W, const void* X,
                        void* D) {
    static constexpr float kOneF = 1.f, kZeroF = 0.f;
    static constexpr int32_t kOneI = 1, kZeroI = 0;
    const void* alpha = int8 ? static_cast<const void*>(&kOneI) : &kOneF;
    const void* beta = int8 ? static_cast<const void*>(&kZeroI) : &kZeroF;
    return cublasLtMatmul(lt_, p.op, alpha, W, p.a, X, p.b, beta, D, p.d, D, p.d, &algo, workspace_, kWorkspace, stream_);
  }

  struct PlanData {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    cublasLtMatmulAlgo_t algo{};
    ~PlanData() {
      if (a) cublasLtMatrixLayoutDestroy(a);
      if (b) cublasLtMatrixLayoutDestroy(b);
      if (d) cublasLtMatrixLayoutDestroy(d);
      if (op) cublasLtMatmulDescDestroy(op);
    }
  };
  using Plan = std::unique_ptr<PlanData>;

  Status make_plan(Plan& out, cudaDataType_t ab, cudaDataType_t dt, cudaDataType_t scale_t, cublasComputeType_t compute,
                   int64_t M, int64_t N, int64_t K, const std::array<uint32_t, 3>& al, const void* W, const void* X,
                   void* D) {
    auto p = std::make_unique<PlanData>();
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    bool ok = cublasLtMatmulDescCreate(&p->op, compute, scale_t) == CUBLAS_STATUS_SUCCESS &&
              cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta) == CUBLAS_STATUS_SUCCESS &&
              cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb) == CUBLAS_STATUS_SUCCESS &&
              cublasLtMatrixLayoutCreate(&p->a, ab, uint64_t(K), uint64_t(N), K) == CUBLAS_STATUS_SUCCESS &&
              cublasLtMatrixLayoutCreate(&p->b, ab, uint64_t(K), uint64_t(M), K) == CUBLAS_STATUS_SUCCESS &&
              cublasLtMatrixLayoutCreate(&p->d, dt, uint64_t(N), uint64_t(M), N) == CUBLAS_STATUS_SUCCESS;
    if (!ok) return Status::internal("cuda matmul: cuBLASLt descriptor creation failed");
    cublasLtMatmulPreference_t pref = nullptr;
    cublasLtMatmulPreferenceCreate(&pref);
    const size_t ws = kWorkspace;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al[0], sizeof al[0]);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al[1], sizeof al[1]);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al[2], sizeof al[2]);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al[2], sizeof al[2]);
    // The heuristic's first choice is often not the fastest on model shapes: GEMMs big enough for
    // it to matter time the heuristic's top candidates once, on this call's own operands (D is
    // about to be written anyway), and keep the fastest. CB_CUDA_AUTOTUNE=0 keeps the first.
    constexpr int kCandidates = 8;
    const bool tune = autotune_ && 2.0 * double(M) * double(N) * double(K) >= 1e9;
    cublasLtMatmulHeuristicResult_t cand[kCandidates]{};
    int found = 0;
    const cublasStatus_t st =
        cublasLtMatmulAlgoGetHeuristic(lt_, p->op, p->a, p->b, p->d, p->d, pref, tune ? kCandidates : 1, cand, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0)
      return Status::unsupported("cuda matmul: cuBLASLt has no algorithm for this shape (M=" + std::to_string(M) +
                                 " N=" + std::to_string(N) + " K=" + std::to_string(K) + ", status " +
                                 std::to_string(int(st)) + ")");
    int best = 0;
    float first_ms = -1.f, best_ms = -1.f;
    if (tune && found > 1) {
      const bool int8 = ab == CUDA_R_8I;
      cudaEvent_t e0 = nullptr, e1 = nullptr;
      cudaEventCreate(&e0);
      cudaEventCreate(&e1);
      for (int i = 0; i < found; ++i) {
        auto run = [&] { return launch(*p, cand[i].algo, int8, W, X, D) == CUBLAS_STATUS_SUCCESS; };
        if (cand[i].state != CUBLAS_STATUS_SUCCESS || cand[i].workspaceSize > kWorkspace || !run()) continue;  // warm-up
        cudaEventRecord(e0, stream_);
        bool ok = true;
        for (int rep = 0; rep < 3 && ok; ++rep) ok = run();
        cudaEventRecord(e1, stream_);
        float ms = 0.f;
        if (!ok || cudaEventSynchronize(e1) != cudaSuccess || cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess) continue;
        if (i == 0) first_ms = ms / 3;
        if (best_ms < 0 || ms / 3 < best_ms) {
          best_ms = ms / 3;
          best = i;
        }
      }
      cudaEventDestroy(e0);
      cudaEventDestroy(e1);
      cudaGetLastError();  // a candidate that failed to launch leaves nothing behind
    }
    const cublasLtMatmulHeuristicResult_t& res = cand[best];
    p->algo = res.algo;
    if (log_algos_) {
      int id = -1, tile = -1, stages = -1;
      size_t got = 0;
      cublasLtMatmulAlgoConfigGetAttribute(&res.algo, CUBLASLT_ALGO_CONFIG_ID, &id, sizeof id, &got);
      cublasLtMatmulAlgoConfigGetAttribute(&res.algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile, sizeof tile, &got);
      cublasLtMatmulAlgoConfigGetAttribute(&res.algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stages, sizeof stages, &got);
      std::fprintf(stderr,
                   "cuda matmul algo: ab=%d compute=%d M=%lld N=%lld K=%lld -> algo %d tile %d stages %d workspace %zu "
                   "(candidate %d of %d; heuristic's first %.4f ms, chosen %.4f ms)\n",
                   int(ab), int(compute), static_cast<long long>(M), static_cast<long long>(N), static_cast<long long>(K),
                   id, tile, stages, res.workspaceSize, best, found, double(first_ms), double(best_ms));
    }
    out = std::move(p);
    return Status::Ok();
  }

 private:
  struct EventPair {
    cudaEvent_t begin = nullptr, end = nullptr;
  };
  void harvest_busy() {
    while (!pending_.empty() && cudaEventQuery(pending_.front().end) == cudaSuccess) {
      float ms = 0.f;
      if (cudaEventElapsedTime(&ms, pending_.front().begin, pending_.front().end) == cudaSuccess) busy_seconds_ += ms * 1e-3;
      idle_.push_back(pending_.front());
      pending_.pop_front();
    }
    // cudaErrorNotReady from the query is a state, not an error: nothing to clear (an op's real
    // error stays for synchronize() to report).
  }

  int device_ = 0;
  int sms_ = 1;  // multiprocessors: sizes the attention split
  std::optional<EventPair> open_;
  std::deque<EventPair> pending_;
  std::vector<EventPair> idle_;
  double busy_seconds_ = 0;
  cudaStream_t stream_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  void* workspace_ = nullptr;
  bool tf32_ = false, log_algos_ = false, autotune_ = true;
  std::unordered_map<void*, size_t> live_;
  std::map<size_t, std::vector<void*>> free_;
  std::vector<void*> owned_;
  Scratch s_act_, s_q_, s_scale_, s_acc_, s_wide_, s_partial_;
  std::map<std::tuple<int, int, int64_t, int64_t, int64_t, std::array<uint32_t, 3>>, Plan> plans_;
};

}  // namespace

std::string cuda_unavailable_reason() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return std::string("no usable CUDA device: cudaGetDeviceCount: ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
  }
  if (count == 0) return "no CUDA device: cudaGetDeviceCount found 0 devices";
  // A GPU older than the architectures this build was compiled for (sm_70/75 against the cuda
  // preset's 80;90) would fail every kernel launch: report it here, so its tests SKIP with why.
  const int dev = pick_device(count);
  cudaDeviceProp prop{};
  if (cudaSetDevice(dev) == cudaSuccess && cudaGetDeviceProperties(&prop, dev) == cudaSuccess) {
    if (const cudaError_t k = cuda::kernel_image_status(); k != cudaSuccess) {
      cudaGetLastError();
      return "CUDA device " + std::to_string(dev) + " (" + prop.name + ", compute capability " + std::to_string(prop.major) +
             "." + std::to_string(prop.minor) + ") cannot run this build's kernels: " + cudaGetErrorName(k) +
             " (add its architecture to CMAKE_CUDA_ARCHITECTURES, e.g. " + std::to_string(prop.major * 10 + prop.minor) + ")";
    }
  }
  return "";
}

bool cuda_has_cusparselt() { return false; }

std::unique_ptr<Backend> make_cuda_backend() {
  if (!cuda_unavailable_reason().empty()) return nullptr;
  int count = 0;
  cudaGetDeviceCount(&count);
  const int dev = pick_device(count);
  auto be = std::make_unique<CudaBackend>(dev);
  if (!be->init().ok()) return nullptr;
  return be;
}

}  // namespace cb::kernels
