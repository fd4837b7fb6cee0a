// The cuda backend's own kernels (cuda_kernels.cu), as plain C++ launchers so the backend class
// (cuda_backend.cpp) stays host code. Every launcher queues work on `s` and returns the launch
// error (cudaSuccess when queued); asynchronous faults surface at the backend's synchronize().
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace cb::kernels::cuda {

// Element types of weights and tables the kernels read (activations are always f32).
enum class Elem : uint8_t { F32, F16, BF16, I8 };

cudaError_t rmsnorm(const float* x, const void* w, Elem wt, float* y, int64_t rows, int64_t d, float eps, cudaStream_t s);
cudaError_t rope(float* x, const int32_t* pos, int64_t rows, int64_t row_stride, int n_heads, int head_dim, float theta,
                 cudaStream_t s);
cudaError_t silu_mul(const float* gate, const float* up, float* out, int64_t n, cudaStream_t s);
cudaError_t add(const float* a, const float* b, float* out, int64_t n, cudaStream_t s);
// cudaSuccess when this build holds machine code or PTX the current device can run (a device older
// than every CMAKE_CUDA_ARCHITECTURES entry gets cudaErrorNoKernelImageForDevice).
cudaError_t kernel_image_status();
cudaError_t softmax(const float* x, float* y, int64_t rows, int64_t n, cudaStream_t s);
cudaError_t embedding(const int32_t* ids, const void* table, Elem tt, float* out, int64_t rows, int64_t d, cudaStream_t s);
// Row m of k/v [rows, row_elems] to pool slot slots[m]; negative slots are skipped.
cudaError_t kv_store(const float* k, const float* v, const int32_t* slots, float* k_pool, float* v_pool, int64_t rows,
                     int64_t row_elems, cudaStream_t s);

// Paged attention over f32 pools [blocks, block_size, n_kv_heads, head_dim] (see backend.h).
struct AttentionArgs {
  const float* q = nullptr;  // [rows, n_heads * head_dim]
  float* out = nullptr;      // same shape
  const float* k_pool = nullptr;
  const float* v_pool = nullptr;
  const int32_t* query_start = nullptr;   // [num_seqs + 1]
  const int32_t* context_len = nullptr;   // [num_seqs]
  const int32_t* block_tables = nullptr;  // [num_seqs, max_blocks]
  int64_t rows = 0;
  int num_seqs = 0, max_blocks = 0, max_context = 0, block_size = 16;
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;
  float scale = 0.f;
  // Split-K over the context (decode at long contexts): `splits` chunks of `chunk` keys, partial
  // results in `partial` ([rows, n_heads, splits, head_dim + 2] floats), combined by a second
  // kernel. splits == 1 writes `out` directly.
  int splits = 1, chunk = 0;
  float* partial = nullptr;
};
// Floats of scratch attention needs for `splits` > 1.
int64_t attention_partial_floats(int64_t rows, int n_heads, int head_dim, int splits);
// Whether the kernel handles this shape (head_dim <= 256, n_heads a multiple of n_kv_heads).
bool attention_supported(int n_heads, int n_kv_heads, int head_dim);
cudaError_t attention(const AttentionArgs& a, cudaStream_t s);

// ---- matmul helpers ---------------------------------------------------------------------------
// y[n] = bf16(x[n]) (round to nearest even), the Bf16 activation path.
cudaError_t to_bf16(const float* x, uint16_t* y, int64_t n, cudaStream_t s);
// The project's INT8 scheme per row (int8_scheme.h): scale = max|x| / 127 (1 for a zero row),
// q = clamp(rint(x / scale), -127, 127); a row holding NaN/Inf gets scale NaN (its outputs NaN).
cudaError_t quantize_rows_int8(const float* x, int8_t* q, float* scales, int64_t rows, int64_t k, cudaStream_t s);
// y[m, n] = acc[m, n] * x_scale[m] * w_scale[n]
cudaError_t dequantize_int32(const int32_t* acc, const float* x_scale, const float* w_scale, float* y, int64_t M,
                             int64_t N, cudaStream_t s);
// Exact int8 GEMM for shapes cuBLASLt's IMMA path refuses: acc[m, n] = sum_k q[m, k] * w[n, k].
cudaError_t int8_gemm_simple(const int8_t* q, const int8_t* w, int32_t* acc, int64_t M, int64_t N, int64_t K, cudaStream_t s);
// out[n, k] = f32(w[n, k]) (* row_scale[n] for int8): weight-only low precision widened for SGEMM.
cudaError_t widen_weight(const void* w, Elem wt, const float* row_scale, float* out, int64_t N, int64_t K, cudaStream_t s);
// Weight-only GEMV for up to kGemvMaxRows rows of x: y[m, n] = sum_k x[m, k] * f32(w[n, k]) (*
// row_scale[n] for int8), reading each weight row once for all rows of x (decode is bound by it).
constexpr int64_t kGemvMaxRows = 8;
cudaError_t gemv_lowp(const float* x, int64_t M, const void* w, Elem wt, const float* row_scale, float* y, int64_t N,
                      int64_t K, cudaStream_t s);

}  // namespace cb::kernels::cuda
