// Training ops, llm.c style: each a plain function with its shapes in a comment; forward saves what
// backward needs, backward accumulates (+=) into parameter gradients and writes or accumulates
// input gradients as noted. Templated on the scalar type: float for training, double for the
// gradient checks (tests/test_train_ops.cpp), instantiated for both in src/train/ops.cpp.
//
// The math matches the engine's forward pass (model.cpp over the op table, `ref` as the oracle):
//   rmsnorm   y = x / sqrt(mean(x^2) + eps) * w
//   rope      pairs (i, i + Dh/2) of each head rotate by pos * theta^(-2i/Dh) (HF rotate_half)
//   attention causal softmax(q k^T / sqrt(Dh)) v, query head h reads KV head h / (H / Hkv)
//   silu_mul  silu(gate) * up
//   linear    y = x W^T, W [out, in] as Hugging Face stores it
#pragma once

#include <cstdint>
#include <vector>

#include "cb/kernels/backend.h"

namespace cb::engine::train {

// One sequence of a packed batch: tokens [start, start + len) of the batch's rows; positions of
// its tokens are 0 .. len - 1 and attention never crosses sequences.
struct SeqSpan {
  int64_t start = 0, len = 0;
};

// The GEMMs training needs, in three orientations. float may run through an op-table backend's
// matmul (the engine's vectorized kernels: y = x W^T only, so the other two transpose operands
// first, O(size) against O(M N K)); double (and float without a backend) uses plain loops.
class Gemm {
 public:
  explicit Gemm(kernels::Backend* backend = nullptr) : be_(backend) {}
  // y[M, N] = x[M, K] W[N, K]^T
  void nt(const float* x, const float* w, float* y, int64_t M, int64_t N, int64_t K);
  void nt(const double* x, const double* w, double* y, int64_t M, int64_t N, int64_t K);
  // dx[M, K] += dy[M, N] W[N, K]
  void nn_acc(const float* dy, const float* w, float* dx, int64_t M, int64_t N, int64_t K);
  void nn_acc(const double* dy, const double* w, double* dx, int64_t M, int64_t N, int64_t K);
  // dw[N, K] += dy[M, N]^T x[M, K]
  void tn_acc(const float* dy, const float* x, float* dw, int64_t M, int64_t N, int64_t K);
  void tn_acc(const double* dy, const double* x, double* dw, int64_t M, int64_t N, int64_t K);

 private:
  kernels::Backend* be_;
  std::vector<float> a_, b_, c_;  // scratch: transposed operands and the product
};

// Linear layer y[M, N] = x[M, K] W[N, K]^T. Under QAT (qat = true) x is fake-quantized per token
// (row) into `scratch` first, and w is the caller's fake-quantized weight (per output channel,
// once per step). Backward is the straight-through estimator: the quantizer counts as identity,
// so dx += dy w (the weight forward used) and dw += dy^T q(x) (the input forward used).
template <class T>
void linear_forward(Gemm& g, const T* x, const T* w, T* y, int64_t M, int64_t N, int64_t K, bool qat, std::vector<T>& scratch);
template <class T>
void linear_backward(Gemm& g, const T* dy, const T* x, const T* w, T* dx, T* dw, int64_t M, int64_t N, int64_t K, bool qat,
                     std::vector<T>& scratch);

// out[T, D] = table[ids[t], :]
template <class T> void embedding_forward(const int32_t* ids, const T* table, T* out, int64_t n, int64_t D);
// dtable[ids[t], :] += dout[t, :]
template <class T> void embedding_backward(const int32_t* ids, const T* dout, T* dtable, int64_t n, int64_t D);

// y[M, D] = x * rstd * w, rstd[M] = 1 / sqrt(mean(x^2) + eps) saved for backward
template <class T> void rmsnorm_forward(const T* x, const T* w, T* y, T* rstd, int64_t M, int64_t D, float eps);
// dx[M, D] += d/dx, dw[D] += d/dw, from dy[M, D]
template <class T>
void rmsnorm_backward(const T* dy, const T* x, const T* w, const T* rstd, T* dx, T* dw, int64_t M, int64_t D);

// cos / sin of pos * theta^(-2i/Dh) for pos < max_pos, i < Dh/2, computed in double like `ref`.
struct RopeTable {
  int head_dim = 0;
  std::vector<double> cos, sin;  // [max_pos, head_dim / 2]
  RopeTable(int max_pos, int head_dim, float theta);
};
// In place on x[M, H * Dh] at positions pos[M]; backward rotates the gradient by -angle.
template <class T> void rope_forward(T* x, const int32_t* pos, int64_t M, int H, const RopeTable& rt);
template <class T> void rope_backward(T* dx, const int32_t* pos, int64_t M, int H, const RopeTable& rt);

// Offsets of each sequence's attention probabilities in a probs buffer: H * len * len each.
std::vector<int64_t> attention_prob_offsets(const std::vector<SeqSpan>& seqs, int H, int64_t* total);
// out[T, H * Dh] = causal softmax(q k^T * scale) v per sequence; q[T, H * Dh], k and v
// [T, Hkv * Dh]; probs (saved, row i has len entries, zeros past i) at attention_prob_offsets.
template <class T>
void attention_forward(const T* q, const T* k, const T* v, T* out, T* probs, const std::vector<SeqSpan>& seqs, int H,
                       int Hkv, int Dh);
// dq, dk, dv [same shapes] += gradients from dout.
template <class T>
void attention_backward(const T* dout, const T* q, const T* k, const T* v, const T* probs, T* dq, T* dk, T* dv,
                        const std::vector<SeqSpan>& seqs, int H, int Hkv, int Dh);

// out[n] = silu(g) * u
template <class T> void silu_mul_forward(const T* g, const T* u, T* out, int64_t n);
// dg[n], du[n] = gradients from dout (written, not accumulated)
template <class T> void silu_mul_backward(const T* dout, const T* g, const T* u, T* dg, T* du, int64_t n);

// Mean cross-entropy of logits[R, V] against targets[R] (all valid ids), and dlogits[R, V] =
// (softmax - onehot) * scale (written). Returns the summed loss (not divided by R).
template <class T> double cross_entropy(const T* logits, const int32_t* targets, T* dlogits, int64_t R, int64_t V, double scale);

// In-place fake INT8 quantization (cb/kernels/int8_scheme.h): each row of x[M, K] quantized with its
// own scale (per token for activations, per output channel for weights) and dequantized.
template <class T> void fake_quant_rows(const T* x, T* out, int64_t M, int64_t K);

}  // namespace cb::engine::train
