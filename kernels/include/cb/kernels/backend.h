// The op table every backend fills.
//
// The model calls ops only through this interface (as in ggml): `ref` is the plain-loop oracle,
// `cpu` the vectorized, threaded backend, `cuda` the GPU one. Written so a device backend needs
// no host round trip per call:
// - Ops never read tensor contents on the host to validate them. Index tensors (block tables,
//   slot mappings, token ids) are checked by the caller on its host copies before upload
//   (plan_kv_batch, check_token_ids in kv_batch.h); weights are checked once, in upload_weight.
//   Ops check only shapes, dtypes and host-side scalars.
// - The public ops are non-virtual: Backend checks the arguments and supports() once, for every
//   backend, then calls the backend's run_* implementation (non-virtual interface).
// - Ops may run asynchronously on the backend's stream(); synchronize() waits and returns the
//   first error. Every allocation failure is StatusCode::OutOfMemory.
// - Attention and kv_store take a whole batch (varlen query rows, per-sequence context lengths,
//   block tables, a slot mapping: vLLM's layout); the backend allocates the KV pools and picks
//   their dtype and layout; copy-on-write copies are one batched call.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "cb/kernels/tensor.h"

namespace cb::kernels {

enum class Op : uint8_t { MatMul, RmsNorm, Rope, Attention, KvStore, SiluMul, Softmax, Embedding, Add, kCount };
const char* op_name(Op op);

enum class StatusCode : uint8_t { Ok, Unsupported, InvalidArgument, OutOfMemory, Internal };
const char* status_code_name(StatusCode c);

struct Status {
  StatusCode code = StatusCode::Ok;
  std::string message;
  bool ok() const { return code == StatusCode::Ok; }
  static Status Ok() { return {}; }
  static Status unsupported(std::string m) { return {StatusCode::Unsupported, std::move(m)}; }
  static Status invalid(std::string m) { return {StatusCode::InvalidArgument, std::move(m)}; }
  static Status out_of_memory(std::string m) { return {StatusCode::OutOfMemory, std::move(m)}; }
  static Status internal(std::string m) { return {StatusCode::Internal, std::move(m)}; }
};

// Thrown by the convenience calls that turn a Status into an exception (alloc, upload_weight's
// one-argument form) for callers that cannot go on without the result.
class BackendError : public std::runtime_error {
 public:
  explicit BackendError(Status s) : std::runtime_error(s.message), status_(std::move(s)) {}
  const Status& status() const { return status_; }

 private:
  Status status_;
};

// The KV cache a backend allocates: per layer one K and one V pool of num_blocks blocks of
// block_size token slots. Logical token t of a sequence lives in pool block table[t / block_size],
// slot t % block_size; "slot" below means block * block_size + offset.
struct KvCacheSpec {
  int num_layers = 0;
  int num_blocks = 0;
  int block_size = 16;
  int n_kv_heads = 0;
  int head_dim = 0;
};

// One layer's pools. Their dtype and layout are the backend's choice (host backends: f32
// [num_blocks, block_size, n_kv_heads, head_dim]); callers touch them only through kv_store,
// attention and copy_kv_blocks.
struct KvLayer {
  Tensor k_pool;
  Tensor v_pool;
  int num_blocks = 0;
  int block_size = 16;
  int n_kv_heads = 0;
  int head_dim = 0;
};

struct KvCacheStorage {
  KvCacheSpec spec;
  std::vector<KvLayer> layers;
  size_t bytes_per_block = 0;  // K + V over all layers, as allocated
};

// The sequences of one attention call, their query rows stacked in q (varlen layout). The index
// tensors live in backend memory and are trusted: build them with plan_kv_batch (kv_batch.h),
// which validates on the host. The host-side bounds let a device size its launch without reading
// the tensors.
struct AttentionBatch {
  Tensor query_start;   // i32 [num_seqs + 1]: sequence s owns q rows [query_start[s], query_start[s + 1])
  Tensor context_len;   // i32 [num_seqs]: keys sequence s attends over; its last query row is at
                        // position context_len[s] - 1, row i at context_len - rows + i (causal)
  Tensor block_tables;  // i32 [num_seqs, max_blocks_per_seq]: row s is sequence s's block table
  int num_seqs = 0;
  int max_blocks_per_seq = 0;
  int max_query_len = 0;
  int max_context_len = 0;
};

struct AttentionParams {
  int n_heads = 0;     // query heads
  int n_kv_heads = 0;  // key/value heads; n_heads % n_kv_heads == 0 (grouped-query attention)
  int head_dim = 0;
  float scale = 0.f;   // usually 1/sqrt(head_dim)
};

// A recorded run of queued ops that a backend can replay (a CUDA graph on the cuda backend).
class CapturedWork {
 public:
  virtual ~CapturedWork() = default;
};

// One output of Backend::matmul_multi: y = x * w^T.
struct MatmulOutput {
  const Weight* w = nullptr;
  Tensor* y = nullptr;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  // What the ops run. The default is the table of the host backends (ref, cpu): matmul on dense
  // f32/f16/bf16, 2:4 sparse f32/f16/bf16 and int8 per-channel weights; rmsnorm weights and
  // embedding tables in f32/f16/bf16; every other op on f32.
  virtual bool supports(Op op, DType dtype, WeightLayout layout = WeightLayout::Dense) const;
  // Whether matmul runs weights of this dtype and layout with activations treated as `act` (see
  // ActQuant in tensor.h). The default: W8A8 on int8 per-channel, bf16 dot on dense bf16, and f32
  // activations wherever supports() says yes.
  virtual bool supports_matmul(DType dtype, WeightLayout layout, ActQuant act) const;
  // Why supports_matmul() says no, for the Unsupported message ("needs cuSPARSELt, not found at
  // build time"); empty when there is nothing to add.
  virtual std::string matmul_unsupported_note(DType, WeightLayout, ActQuant) const { return {}; }

  // ---- Memory --------------------------------------------------------------------------------
  // A zero-initialized tensor owned by this backend, or OutOfMemory.
  virtual Status allocate(DType dtype, std::initializer_list<int64_t> dims, Tensor& out) = 0;
  virtual void release(Tensor& t) = 0;
  Tensor alloc(DType dtype, std::initializer_list<int64_t> dims);  // allocate(), throws BackendError
  virtual Status copy_from_host(Tensor& dst, const void* src) = 0;  // dst.nbytes() bytes
  virtual Status copy_to_host(void* dst, const Tensor& src) = 0;
  // dst.nbytes() bytes from src to dst, both this backend's memory. The default stages through
  // the host; backends override it with a direct copy.
  virtual Status copy(Tensor& dst, const Tensor& src);
  // Waits for queued ops; returns the first error they hit (a device fault, an allocation on the
  // stream), Ok on host backends.
  virtual Status synchronize() { return Status::Ok(); }
  // The queue ops run on (nullptr for host backends): collectives take it (cb/comm).
  virtual Stream stream() const { return nullptr; }
  // Device busy time: the work queued between busy_begin() and busy_end() (the forward pass marks
  // its ops) timed on the device itself, summed over the regions that have finished. On a GPU,
  // CUDA events on the stream: launch gaps inside a region count, host time between regions does
  // not. nullopt on host backends, whose busy time is the host's wall time in the forward pass.
  virtual void busy_begin() {}
  virtual void busy_end() {}
  virtual std::optional<double> device_busy_seconds() { return std::nullopt; }

  // Captured work (CUDA graphs): a backend that queues ops on a device stream can record a run
  // of them once and replay it, saving the host's launch cost per op. Between capture_begin() and
  // capture_end() ops are recorded, not run; a replay runs the same kernels on the same pointers
  // with the scalar arguments they were recorded with (tensor contents may change in between).
  // capture_end() must follow every capture_begin() that succeeded, also after an op failed (it
  // leaves capture and reports the failure). "" when supported, else why not.
  virtual std::string capture_unsupported_reason() const {
    return "backend " + name() + " runs each op when it is called (there is no queue of work to record)";
  }
  virtual Status capture_begin() { return Status::unsupported(capture_unsupported_reason()); }
  virtual Status capture_end(std::unique_ptr<CapturedWork>& out) {
    out.reset();
    return Status::unsupported(capture_unsupported_reason());
  }
  virtual Status replay(CapturedWork&) { return Status::unsupported(capture_unsupported_reason()); }

  // Makes a host weight usable by this backend, after checking it once (check_matmul_weight, and
  // every 2:4 meta byte): host backends return it unchanged (no copy); device backends upload it
  // and keep ownership until the backend dies. Matmul then trusts the weight's contents.
  Status upload_weight(const Weight& host, Weight& out);
  Weight upload_weight(const Weight& host);  // throws BackendError
  // A tensor that is not a matmul weight (embedding table, norm weight) made usable the same way,
  // in its own row-major layout: no backend repacks it.
  Status upload_tensor(const Tensor& host, Tensor& out);
  Tensor upload_tensor(const Tensor& host);  // throws BackendError

  // The KV cache: the backend allocates the pools (and picks dtype and layout), releases them,
  // and copies blocks between them. copies: (src, dst) block pairs, applied in every layer in one
  // call (copy-on-write of shared blocks); ids are checked against the pool here, on the host.
  Status alloc_kv_cache(const KvCacheSpec& spec, KvCacheStorage& out);
  void release_kv_cache(KvCacheStorage& kv);
  Status copy_kv_blocks(KvCacheStorage& kv, std::span<const std::pair<int32_t, int32_t>> copies);

  // ---- Ops (activations f32 unless noted; M rows = tokens) ----------------------------------
  // y[M, N] = x[M, K] * W[N, K]^T  (W from upload_weight)
  Status matmul(const Tensor& x, const Weight& w, Tensor& y);
  // y_i[M, N_i] = x[M, K] * W_i[N_i, K]^T for every pair: projections of one input (q/k/v,
  // gate/up). Each pair is checked as matmul checks it. One call lets a backend run them as one
  // pass (cpu: one parallel region over all their rows, one barrier instead of one per weight);
  // the default runs matmul once per pair.
  Status matmul_multi(const Tensor& x, std::span<const MatmulOutput> outs);
  // y[M, D] = x / sqrt(mean(x^2) + eps) * weight[D]   (weight f32/f16/bf16)
  Status rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor& y);
  // In place on x[M, n_heads * head_dim]; Hugging Face "rotate_half" pairing (i, i + head_dim/2);
  // positions i32 [M]; inv_freq_j = theta^(-2j/head_dim).
  Status rope(Tensor& x, const Tensor& positions, int n_heads, int head_dim, float theta);
  // Row m of k and v [M, n_kv_heads * head_dim] goes to cache slot slot_mapping[m] (i32 [M]); a
  // negative slot skips the row (padding). Slots come from plan_kv_batch.
  Status kv_store(const Tensor& k, const Tensor& v, const Tensor& slot_mapping, KvLayer& kv);
  // out[M, n_heads * head_dim] = causal softmax(q k^T * scale) v per sequence, over the paged
  // cache, for every sequence of the batch in one call.
  Status attention(const Tensor& q, const KvLayer& kv, const AttentionBatch& batch, const AttentionParams& p,
                   Tensor& out);
  // out[M, F] = silu(gate[M, F]) * up[M, F]
  Status silu_mul(const Tensor& gate, const Tensor& up, Tensor& out);
  // Row-wise softmax of x[M, N] into y (may alias x).
  Status softmax(const Tensor& x, Tensor& y);
  // out[M, D] = table[ids[m], :]   (ids i32 [M], each in [0, V): check_token_ids; table f32/f16/bf16 [V, D])
  Status embedding(const Tensor& ids, const Tensor& table, Tensor& out);
  // out = a + b, same shape (out may alias a or b).
  Status add(const Tensor& a, const Tensor& b, Tensor& out);

 protected:
  // What a backend implements. Called only after the shared checks above passed (shapes, dtypes
  // supported, data pointers set, non-empty work).
  virtual Status run_matmul(const Tensor& x, const Weight& w, Tensor& y) = 0;
  // Only pairs with work (x.rows() > 0, N > 0) arrive here; the default calls run_matmul per pair.
  virtual Status run_matmul_multi(const Tensor& x, std::span<const MatmulOutput> outs);
  virtual Status run_rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor& y) = 0;
  virtual Status run_rope(Tensor& x, const Tensor& positions, int n_heads, int head_dim, float theta) = 0;
  virtual Status run_kv_store(const Tensor& k, const Tensor& v, const Tensor& slot_mapping, KvLayer& kv) = 0;
  virtual Status run_attention(const Tensor& q, const KvLayer& kv, const AttentionBatch& batch,
                               const AttentionParams& p, Tensor& out) = 0;
  virtual Status run_silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) = 0;
  virtual Status run_softmax(const Tensor& x, Tensor& y) = 0;
  virtual Status run_embedding(const Tensor& ids, const Tensor& table, Tensor& out) = 0;
  virtual Status run_add(const Tensor& a, const Tensor& b, Tensor& out) = 0;
  // Defaults: the weight unchanged (host memory); f32 pools allocated with allocate(); block
  // copies with copy() per layer and pair. Device backends override them.
  virtual Status run_upload_weight(const Weight& host, Weight& out);
  // The default: run_upload_weight of the tensor as a dense weight, its values.
  virtual Status run_upload_tensor(const Tensor& host, Tensor& out);
  virtual Status run_alloc_kv_cache(const KvCacheSpec& spec, KvCacheStorage& out);
  virtual Status run_copy_kv_blocks(KvCacheStorage& kv, std::span<const std::pair<int32_t, int32_t>> copies);
};

// Registry. Known names: "ref", "cpu" and "cuda"; "cuda" is available when the build has the CUDA
// backend and a GPU it can run on is present. make_backend throws std::invalid_argument for an
// unknown name and std::runtime_error with backend_unavailable_reason() for a known one that
// cannot run here.
std::unique_ptr<Backend> make_backend(const std::string& name);
std::vector<std::string> available_backends();
std::vector<std::string> backend_names();
// "" when make_backend(name) can succeed here, else why not; throws std::invalid_argument for a
// name that is not in backend_names().
std::string backend_unavailable_reason(const std::string& name);

// Shared argument checks (Backend's public ops run them; exposed for backends that wrap others).
Status check_matmul_args(const Tensor& x, const Weight& w, const Tensor& y);
// The weight's own consistency: values (and scales, meta) hold [N, K] in its layout, data pointers
// are set, act_quant fits the layout and dtype, and for Sparse24 K % 4 == 0. `who` prefixes the
// message ("cpu matmul"). Meta *contents* are checked separately (check_sparse24_meta).
Status check_matmul_weight(const Weight& w, const char* who);
// Every Sparse24 meta byte is i0 | i1 << 2 with i0 < i1 and a zero high nibble (tensor.h); names
// the first bad byte by row and group. Reads host memory: upload_weight runs it.
Status check_sparse24_meta(const Weight& w, const char* who);
Status check_same_shape(const char* op, const Tensor& a, const Tensor& b);

}  // namespace cb::kernels
