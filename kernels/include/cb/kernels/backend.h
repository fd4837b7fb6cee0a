// The op table every backend fills.
//
// The model calls ops only through this interface (as in ggml): `ref` is the plain-loop oracle,
// `cpu` the vectorized, threaded backend, `cuda` the GPU one. A backend says which ops and dtypes
// it supports; calling an unsupported combination returns Status::Unsupported, not a crash.
// Ops may run asynchronously (on a stream); synchronize() waits for them. Buffers are allocated
// through the backend so they can live in device memory.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cb/kernels/tensor.h"

namespace cb::kernels {

enum class Op : uint8_t { MatMul, RmsNorm, Rope, Attention, KvStore, SiluMul, Softmax, Embedding, Add, kCount };
const char* op_name(Op op);

enum class StatusCode : uint8_t { Ok, Unsupported, InvalidArgument, OutOfMemory, Internal };

struct Status {
  StatusCode code = StatusCode::Ok;
  std::string message;
  bool ok() const { return code == StatusCode::Ok; }
  static Status Ok() { return {}; }
  static Status unsupported(std::string m) { return {StatusCode::Unsupported, std::move(m)}; }
  static Status invalid(std::string m) { return {StatusCode::InvalidArgument, std::move(m)}; }
};

// One layer's KV cache as a pool of fixed-size blocks, read through a block table (vLLM style).
// k_pool / v_pool: f32 [num_blocks, block_size, n_kv_heads, head_dim].
// block_table: i32 [blocks used by this sequence]; logical token t lives in block
// block_table[t / block_size], slot t % block_size. A contiguous cache is the special case of one
// block of max-context size.
struct KvView {
  Tensor k_pool;
  Tensor v_pool;
  Tensor block_table;
  int block_size = 16;
  int n_kv_heads = 0;
  int head_dim = 0;
};

struct AttentionParams {
  int n_heads = 0;     // query heads
  int n_kv_heads = 0;  // key/value heads; n_heads % n_kv_heads == 0 (grouped-query attention)
  int head_dim = 0;
  int q_pos0 = 0;      // position of the first query row; row i attends keys at positions <= q_pos0 + i
  int n_ctx = 0;       // number of valid keys in the cache (>= q_pos0 + rows of q)
  float scale = 0.f;   // usually 1/sqrt(head_dim)
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual bool supports(Op op, DType dtype, WeightLayout layout = WeightLayout::Dense) const = 0;
  // Whether matmul runs weights of this dtype and layout with activations treated as `act` (see
  // ActQuant in tensor.h). The default: f32 activations only, wherever supports() says yes.
  virtual bool supports_matmul(DType dtype, WeightLayout layout, ActQuant act) const {
    return act == ActQuant::None && supports(Op::MatMul, dtype, layout);
  }

  // Memory. alloc returns a zero-initialized tensor owned by this backend; release frees it.
  virtual Tensor alloc(DType dtype, std::initializer_list<int64_t> dims) = 0;
  virtual void release(Tensor& t) = 0;
  virtual void copy_from_host(Tensor& dst, const void* src) = 0;  // dst.nbytes() bytes
  virtual void copy_to_host(void* dst, const Tensor& src) = 0;
  // dst.nbytes() bytes from src to dst, both this backend's memory. The default stages through
  // the host; backends override it with a direct copy.
  virtual void copy(Tensor& dst, const Tensor& src) {
    std::vector<unsigned char> staging(dst.nbytes());
    copy_to_host(staging.data(), src);
    copy_from_host(dst, staging.data());
  }
  virtual void synchronize() {}
  // Makes a weight usable by this backend: host-resident backends return it unchanged (no copy);
  // device backends upload it and keep ownership until the backend dies.
  virtual Weight upload_weight(const Weight& w) { return w; }

  // Ops. Shapes: M rows (tokens), activations f32 unless noted.
  // y[M, N] = x[M, K] * W[N, K]^T
  virtual Status matmul(const Tensor& x, const Weight& w, Tensor& y) = 0;
  // y[M, D] = x / sqrt(mean(x^2) + eps) * weight[D]   (weight f32/f16/bf16)
  virtual Status rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor& y) = 0;
  // In place on x[M, n_heads * head_dim]; Hugging Face "rotate_half" pairing (i, i + head_dim/2);
  // positions i32 [M]; inv_freq_j = theta^(-2j/head_dim).
  virtual Status rope(Tensor& x, const Tensor& positions, int n_heads, int head_dim, float theta) = 0;
  // Writes k, v [M, n_kv_heads * head_dim] to cache positions pos0 .. pos0 + M - 1.
  virtual Status kv_store(const Tensor& k, const Tensor& v, KvView& kv, int pos0) = 0;
  // out[M, n_heads * head_dim] = causal softmax(q k^T * scale) v over the paged cache.
  virtual Status attention(const Tensor& q, const KvView& kv, const AttentionParams& p, Tensor& out) = 0;
  // out[M, F] = silu(gate[M, F]) * up[M, F]
  virtual Status silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) = 0;
  // Row-wise softmax of x[M, N] into y (may alias x).
  virtual Status softmax(const Tensor& x, Tensor& y) = 0;
  // out[M, D] = table[ids[m], :]   (ids i32 [M], table f32/f16/bf16 [V, D])
  virtual Status embedding(const Tensor& ids, const Tensor& table, Tensor& out) = 0;
  // out = a + b, same shape (out may alias a or b).
  virtual Status add(const Tensor& a, const Tensor& b, Tensor& out) = 0;
};

// Registry. Known names: "ref", "cpu", and "cuda" when built with CUDA and a GPU is present.
std::unique_ptr<Backend> make_backend(const std::string& name);
std::vector<std::string> available_backends();

// Shared argument checks, so every backend rejects the same bad calls with the same message.
Status check_matmul_args(const Tensor& x, const Weight& w, const Tensor& y);
// The weight's own consistency: values (and scales, meta) hold [N, K] in its layout, data pointers
// are set, act_quant fits the layout and dtype, and for Sparse24 K % 4 == 0. `who` prefixes the
// message ("cpu matmul"). Meta *contents* are checked separately (check_sparse24_meta).
Status check_matmul_weight(const Weight& w, const char* who);
// Every Sparse24 meta byte is i0 | i1 << 2 with i0 < i1 and a zero high nibble (tensor.h); names
// the first bad byte by row and group. Plain loop: the reference check for backends.
Status check_sparse24_meta(const Weight& w, const char* who);
Status check_same_shape(const char* op, const Tensor& a, const Tensor& b);

}  // namespace cb::kernels
