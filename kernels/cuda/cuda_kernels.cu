// The cuda backend's own kernels: elementwise ops, paged attention (with split-K over long
// contexts), KV store, and the helpers matmul needs around cuBLASLt (activation rounding and
// quantization, dequantization, a weight-only GEMV for decode). Written for clarity first, with the
// memory access patterns that matter on HBM: coalesced rows, 16-byte loads, several keys in flight.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cfloat>
#include <cmath>
#include <type_traits>

#include "cuda_kernels.h"

namespace cb::kernels::cuda {
namespace {

constexpr int kThreads = 256;

unsigned blocks_for(int64_t n, int threads = kThreads) {
  const int64_t b = (n + threads - 1) / threads;
  return unsigned(b < 65535 * 64 ? (b > 0 ? b : 1) : 65535 * 64);  // grid-stride loops cover the rest
}

__device__ __forceinline__ float bf16_bits_to_f32(uint16_t b) { return __uint_as_float(uint32_t(b) << 16); }

template <Elem E> struct Load;
template <> struct Load<Elem::F32> {
  using T = float;
  __device__ static float at(const void* p, int64_t i) { return __ldg(static_cast<const float*>(p) + i); }
  __device__ static float cvt(T v) { return v; }
};
template <> struct Load<Elem::F16> {
  using T = uint16_t;
  __device__ static float at(const void* p, int64_t i) {
    return __half2float(__ushort_as_half(__ldg(static_cast<const unsigned short*>(p) + i)));
  }
  __device__ static float cvt(T v) { return __half2float(__ushort_as_half(v)); }
};
template <> struct Load<Elem::BF16> {
  using T = uint16_t;
  __device__ static float at(const void* p, int64_t i) {
    return bf16_bits_to_f32(__ldg(static_cast<const unsigned short*>(p) + i));
  }
  __device__ static float cvt(T v) { return bf16_bits_to_f32(v); }
};
template <> struct Load<Elem::I8> {
  using T = int8_t;
  __device__ static float at(const void* p, int64_t i) { return float(__ldg(static_cast<const signed char*>(p) + i)); }
  __device__ static float cvt(T v) { return float(v); }
};

// Runs L::template go<E>(args...) for the runtime element type (C++17: CMake 3.25 cannot ask
// nvcc for C++20).
template <template <Elem> class L, class... A>
cudaError_t by_elem(Elem e, A... args) {
  switch (e) {
    case Elem::F32: return L<Elem::F32>::go(args...);
    case Elem::F16: return L<Elem::F16>::go(args...);
    case Elem::BF16: return L<Elem::BF16>::go(args...);
    case Elem::I8: return L<Elem::I8>::go(args...);
  }
  return cudaErrorInvalidValue;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Block-wide reduction of one value per thread (kThreads threads); every thread gets the result.
template <bool kMax>
__device__ float block_reduce(float v) {
  __shared__ float part[kThreads / 32];
  __shared__ float result;
  v = kMax ? warp_max(v) : warp_sum(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) part[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float r = lane < int(blockDim.x / 32) ? part[lane] : (kMax ? -INFINITY : 0.f);
    r = kMax ? warp_max(r) : warp_sum(r);
    if (lane == 0) result = r;
  }
  __syncthreads();
  const float out = result;
  __syncthreads();  // part/result may be reused by the next call
  return out;
}

// ---- elementwise -------------------------------------------------------------------------------

template <Elem E>
__global__ void rmsnorm_kernel(const float* x, const void* w, float* y, int64_t d, float eps) {
  const float* xr = x + blockIdx.x * d;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) ss += xr[i] * xr[i];
  ss = block_reduce<false>(ss);
  const float inv = rsqrtf(ss / float(d) + eps);
  float* yr = y + blockIdx.x * d;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) yr[i] = xr[i] * inv * Load<E>::at(w, i);
}

__global__ void rope_kernel(float* x, const int32_t* pos, int64_t rows, int64_t stride, int n_heads, int head_dim,
                            float theta) {
  const int half = head_dim / 2;
  const int64_t total = rows * n_heads * half;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total; t += int64_t(gridDim.x) * blockDim.x) {
    const int i = int(t % half);
    const int64_t rh = t / half;
    const int h = int(rh % n_heads);
    const int64_t m = rh / n_heads;
    // Angles in double: positions reach the hundreds of thousands, where a float angle loses the
    // digits the ref backend keeps.
    const double inv_freq = pow(double(theta), -2.0 * i / head_dim);
    double s, c;
    sincos(double(pos[m]) * inv_freq, &s, &c);
    float* v = x + m * stride + int64_t(h) * head_dim;
    const double a = v[i], b = v[i + half];
    v[i] = float(a * c - b * s);
    v[i + half] = float(b * c + a * s);
  }
}

__global__ void silu_mul_kernel(const float* g, const float* u, float* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float gv = g[i];
    out[i] = gv / (1.f + expf(-gv)) * u[i];
  }
}

__global__ void add_kernel(const float* a, const float* b, float* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = a[i] + b[i];
}

__global__ void softmax_kernel(const float* x, float* y, int64_t n) {
  const float* xr = x + blockIdx.x * n;
  float* yr = y + blockIdx.x * n;
  float mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) mx = fmaxf(mx, xr[i]);
  mx = block_reduce<true>(mx);
  float sum = 0.f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) sum += expf(xr[i] - mx);
  sum = block_reduce<false>(sum);
  const float inv = 1.f / sum;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) yr[i] = expf(xr[i] - mx) * inv;  // y may alias x
}

template <Elem E>
__global__ void embedding_kernel(const int32_t* ids, const void* table, float* out, int64_t rows, int64_t d) {
  const int64_t total = rows * d;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total; t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t m = t / d, j = t % d;
    out[t] = Load<E>::at(table, int64_t(ids[m]) * d + j);
  }
}

__global__ void kv_store_kernel(const float* k, const float* v, const int32_t* slots, float* kp, float* vp, int64_t rows,
                                int64_t row) {
  const int64_t total = rows * row;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total; t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t m = t / row, j = t % row;
    const int64_t slot = slots[m];
    if (slot < 0) continue;  // padding row
    kp[slot * row + j] = k[t];
    vp[slot * row + j] = v[t];
  }
}

// ---- paged attention ---------------------------------------------------------------------------
//
// One CTA per (query row, KV head, group of up to GM query heads sharing it, split of the
// context); kAttnWarps warps, each taking every kAttnWarps-th tile of 32 keys. Within a tile:
// - q.k with one lane per key: the lane reads its key row (16-byte loads, a row's loads all in
//   flight at once) and dots it with the GM query heads held in shared memory (broadcast reads),
//   so scores need no cross-lane reductions;
// - an online softmax per head (the tile's max is one warp reduction per head);
// - p.v with lanes over the head dimension: for each key of the tile every lane reads its slice of
//   the value row (coalesced) and weights it by the key's probabilities from shared memory.
// K and V rows are read once per KV head for all its query heads: grouped-query decode is bound
// by reading the cache, and this reads it once.

constexpr int kAttnWarps = 4;

template <int DPL, int GM, bool kVec4>
__global__ void __launch_bounds__(kAttnWarps * 32) attention_kernel(AttentionArgs a) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t r = blockIdx.x;
  const int group = a.n_heads / a.n_kv_heads;
  const int groups_per_kv = (group + GM - 1) / GM;
  const int kvh = blockIdx.y / groups_per_kv;
  const int h0 = kvh * group + (blockIdx.y % groups_per_kv) * GM;
  const int gc = min(GM, kvh * group + group - h0);  // query heads this CTA serves
  const int split = blockIdx.z;
  const int hd = a.head_dim;

  __shared__ __align__(16) float q_s[GM][DPL * 32];
  __shared__ __align__(16) float p_s[kAttnWarps][GM][32];
  __shared__ int64_t off_s[kAttnWarps][32];
  for (int e = threadIdx.x; e < GM * DPL * 32; e += blockDim.x) {
    const int g = e / (DPL * 32), d = e % (DPL * 32);
    q_s[g][d] = (g < gc && d < hd) ? a.q[(r * a.n_heads + h0 + g) * int64_t(hd) + d] * a.scale : 0.f;
  }
  __syncthreads();

  // The row's sequence: the last s with query_start[s] <= r.
  int lo = 0, hi = a.num_seqs - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (a.query_start[mid] <= r) lo = mid;
    else hi = mid - 1;
  }
  const int s = lo;
  const int rows_s = a.query_start[s + 1] - a.query_start[s];
  const int nkeys = a.context_len[s] - rows_s + int(r - a.query_start[s]) + 1;  // causal: keys 0 .. last
  const int k0 = a.splits == 1 ? 0 : split * a.chunk;
  const int k1 = a.splits == 1 ? nkeys : min(nkeys, k0 + a.chunk);
  const int32_t* table = a.block_tables + int64_t(s) * a.max_blocks;
  const int64_t kv_row = int64_t(a.n_kv_heads) * hd;

  float m[GM], l[GM], acc[GM][DPL];  // m: running max (same in every lane); l: this lane's part of the sum
#pragma unroll
  for (int g = 0; g < GM; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.f;
#pragma unroll
    for (int j = 0; j < DPL; ++j) acc[g][j] = 0.f;
  }

  for (int t0 = k0 + warp * 32; t0 < k1; t0 += kAttnWarps * 32) {
    const int t = t0 + lane;
    const bool valid = t < k1;
    const int64_t off = valid ? (int64_t(table[t / a.block_size]) * a.block_size + t % a.block_size) * kv_row + int64_t(kvh) * hd : 0;
    float sc[GM];
#pragma unroll
    for (int g = 0; g < GM; ++g) sc[g] = 0.f;
    if (valid) {
      const float* kr = a.k_pool + off;
      if constexpr (kVec4) {
#pragma unroll 4
        for (int d = 0; d < hd; d += 4) {
          const float4 kv = __ldg(reinterpret_cast<const float4*>(kr + d));
#pragma unroll
          for (int g = 0; g < GM; ++g) {  // one 16-byte shared read per head (a broadcast)
            const float4 qv = *reinterpret_cast<const float4*>(&q_s[g][d]);
            sc[g] += qv.x * kv.x + qv.y * kv.y + qv.z * kv.z + qv.w * kv.w;
          }
        }
      } else {
        for (int d = 0; d < hd; ++d) {
          const float kv = __ldg(kr + d);
#pragma unroll
          for (int g = 0; g < GM; ++g) sc[g] += q_s[g][d] * kv;
        }
      }
    }
    off_s[warp][lane] = off;
#pragma unroll
    for (int g = 0; g < GM; ++g) {
      const float mt = warp_max(valid ? sc[g] : -INFINITY);
      const float mn = fmaxf(m[g], mt);  // finite: the tile has at least one valid key
      const float corr = expf(m[g] - mn);  // m = -inf at first: exp(-inf) = 0
      const float p = valid ? expf(sc[g] - mn) : 0.f;
      l[g] = l[g] * corr + p;
#pragma unroll
      for (int j = 0; j < DPL; ++j) acc[g][j] *= corr;
      m[g] = mn;
      p_s[warp][g][lane] = p;
    }
    __syncwarp();
    const int n = min(32, k1 - t0);
    // Eight keys at a time: their probabilities are two 16-byte shared reads per head, and their
    // value rows' loads are all in flight together (the value half of the traffic needs them).
    for (int u = 0; u < n; u += 8) {
      float v[8][DPL];
#pragma unroll
      for (int q = 0; q < 8; ++q) {
        const float* vr = a.v_pool + off_s[warp][u + q];
#pragma unroll
        for (int j = 0; j < DPL; ++j) {
          const int d = lane + 32 * j;
          v[q][j] = (u + q < n && d < hd) ? __ldg(vr + d) : 0.f;  // keys past n have p = 0
        }
      }
#pragma unroll
      for (int g = 0; g < GM; ++g) {
        const float4 pa = *reinterpret_cast<const float4*>(&p_s[warp][g][u]);
        const float4 pb = *reinterpret_cast<const float4*>(&p_s[warp][g][u + 4]);
#pragma unroll
        for (int j = 0; j < DPL; ++j)
          acc[g][j] += pa.x * v[0][j] + pa.y * v[1][j] + pa.z * v[2][j] + pa.w * v[3][j] + pb.x * v[4][j] + pb.y * v[5][j] +
                       pb.z * v[6][j] + pb.w * v[7][j];
      }
    }
    __syncwarp();  // p_s and off_s are rewritten by the next tile
  }

  // Combine the warps: each writes its (m, l, acc) to shared memory; then the CTA's threads merge.
  __shared__ float sm_m[kAttnWarps][GM], sm_l[kAttnWarps][GM];
  __shared__ float sm_acc[kAttnWarps][GM][DPL * 32];
#pragma unroll
  for (int g = 0; g < GM; ++g) {
    const float lsum = warp_sum(l[g]);
    if (lane == 0) {
      sm_m[warp][g] = m[g];
      sm_l[warp][g] = lsum;
    }
#pragma unroll
    for (int j = 0; j < DPL; ++j) sm_acc[warp][g][lane + 32 * j] = acc[g][j];
  }
  __syncthreads();
  for (int e = threadIdx.x; e < gc * hd; e += blockDim.x) {
    const int g = e / hd, d = e % hd;
    float mx = -INFINITY;
    for (int w = 0; w < kAttnWarps; ++w) mx = fmaxf(mx, sm_m[w][g]);
    float lsum = 0.f, o = 0.f;
    for (int w = 0; w < kAttnWarps; ++w) {
      const float f = sm_m[w][g] == -INFINITY ? 0.f : expf(sm_m[w][g] - mx);
      lsum += sm_l[w][g] * f;
      o += sm_acc[w][g][d] * f;
    }
    const int64_t head_row = r * a.n_heads + h0 + g;
    if (a.splits == 1) {
      a.out[head_row * hd + d] = o / lsum;
    } else {
      float* p = a.partial + (head_row * a.splits + split) * (hd + 2);
      p[d] = o;
      if (d == 0) {
        p[hd] = mx;
        p[hd + 1] = lsum;
      }
    }
  }
}

// Merges the splits of one (row, head): out = sum_z acc_z e^(m_z - M) / sum_z l_z e^(m_z - M).
__global__ void attention_combine_kernel(const float* partial, float* out, int n_heads, int hd, int splits) {
  const int64_t head_row = int64_t(blockIdx.x) * n_heads + blockIdx.y;
  const float* p = partial + head_row * splits * (hd + 2);
  float mx = -INFINITY;
  for (int z = 0; z < splits; ++z) mx = fmaxf(mx, p[z * (hd + 2) + hd]);
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float lsum = 0.f, o = 0.f;
    for (int z = 0; z < splits; ++z) {
      const float mz = p[z * (hd + 2) + hd];
      if (mz == -INFINITY) continue;  // a split past this row's last key
      const float f = expf(mz - mx);
      lsum += p[z * (hd + 2) + hd + 1] * f;
      o += p[z * (hd + 2) + d] * f;
    }
    out[head_row * hd + d] = o / lsum;
  }
}

template <int DPL>
cudaError_t launch_attention_dpl(const AttentionArgs& a, cudaStream_t s) {
  const int group = a.n_heads / a.n_kv_heads;
  auto go = [&](auto gm_tag) {
    constexpr int GM = decltype(gm_tag)::value;
    const dim3 grid(unsigned(a.rows), unsigned(a.n_kv_heads * ((group + GM - 1) / GM)), unsigned(a.splits));
    if (a.head_dim % 4 == 0) attention_kernel<DPL, GM, true><<<grid, kAttnWarps * 32, 0, s>>>(a);
    else attention_kernel<DPL, GM, false><<<grid, kAttnWarps * 32, 0, s>>>(a);
    return cudaGetLastError();
  };
  if (group <= 1) return go(std::integral_constant<int, 1>{});
  if (group <= 2) return go(std::integral_constant<int, 2>{});
  if (group <= 4) return go(std::integral_constant<int, 4>{});
  return go(std::integral_constant<int, 8>{});
}

// ---- matmul helpers ----------------------------------------------------------------------------

__global__ void to_bf16_kernel(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = __bfloat16_as_ushort(__float2bfloat16_rn(x[i]));
}

__global__ void quantize_rows_kernel(const float* x, int8_t* q, float* scales, int64_t k) {
  const float* xr = x + blockIdx.x * k;
  float amax = 0.f, bad = 0.f;
  for (int64_t i = threadIdx.x; i < k; i += blockDim.x) {
    const float v = xr[i];
    if (!isfinite(v)) bad = 1.f;
    else amax = fmaxf(amax, fabsf(v));
  }
  amax = block_reduce<true>(amax);
  bad = block_reduce<true>(bad);
  const float scale = bad > 0.f ? NAN : (amax > 0.f ? amax / 127.f : 1.f);
  int8_t* qr = q + blockIdx.x * k;
  for (int64_t i = threadIdx.x; i < k; i += blockDim.x)
    qr[i] = bad > 0.f ? 0 : int8_t(fminf(fmaxf(rintf(__fdiv_rn(xr[i], scale)), -127.f), 127.f));
  if (threadIdx.x == 0) scales[blockIdx.x] = scale;
}

__global__ void dequantize_kernel(const int32_t* acc, const float* xs, const float* ws, float* y, int64_t M, int64_t N) {
  const int64_t total = M * N;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total; t += int64_t(gridDim.x) * blockDim.x)
    y[t] = float(double(acc[t]) * xs[t / N] * ws[t % N]);  // double, as the ref backend: acc exceeds 2^24
}

__global__ void int8_gemm_simple_kernel(const int8_t* q, const int8_t* w, int32_t* acc, int64_t M, int64_t N, int64_t K) {
  const int64_t total = M * N;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total; t += int64_t(gridDim.x) * blockDim.x) {
    const int8_t* qr = q + (t / N) * K;
    const int8_t* wr = w + (t % N) * K;
    int32_t s = 0;
    for (int64_t k = 0; k < K; ++k) s += int32_t(qr[k]) * int32_t(wr[k]);
    acc[t] = s;
  }
}

template <Elem E>
__global__ void widen_kernel(const void* w, const float* row_scale, float* out, int64_t N, int64_t K) {
  const int64_t total = N * K;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total; t += int64_t(gridDim.x) * blockDim.x)
    out[t] = Load<E>::at(w, t) * (row_scale ? row_scale[t / K] : 1.f);
}

// One warp per weight row n; each lane reads 16 bytes of the row per step (8 f16/bf16, 16 int8,
// 4 f32) and multiplies them into every row of x. kVec: elements per 16 bytes.
template <Elem E>
__global__ void gemv_kernel(const float* x, int M, const void* w, const float* row_scale, float* y, int64_t N, int64_t K) {
  using T = typename Load<E>::T;
  constexpr int kVec = 16 / sizeof(T);
  const int lane = threadIdx.x & 31;
  const int64_t n = blockIdx.x * int64_t(blockDim.x / 32) + (threadIdx.x >> 5);
  if (n >= N) return;
  const T* wr = static_cast<const T*>(w) + n * K;
  float acc[kGemvMaxRows];
#pragma unroll
  for (int i = 0; i < kGemvMaxRows; ++i) acc[i] = 0.f;
  const bool vec_ok = (K % kVec == 0) && (reinterpret_cast<uintptr_t>(wr) % 16 == 0);
  const int64_t kv = vec_ok ? K : 0;  // the vector part; a ragged row runs the scalar tail alone
#pragma unroll 4
  for (int64_t k = int64_t(lane) * kVec; k < kv; k += 32 * kVec) {
    const uint4 raw = __ldg(reinterpret_cast<const uint4*>(wr + k));
    const T* wv = reinterpret_cast<const T*>(&raw);
    float wf[kVec];
#pragma unroll
    for (int e = 0; e < kVec; ++e) wf[e] = Load<E>::cvt(wv[e]);
#pragma unroll
    for (int i = 0; i < kGemvMaxRows; ++i) {
      if (i >= M) break;
      const float* xr = x + i * K + k;
#pragma unroll
      for (int e = 0; e < kVec; ++e) acc[i] += wf[e] * __ldg(xr + e);
    }
  }
  for (int64_t k = kv + lane; k < K; k += 32) {
    const float wf = Load<E>::at(wr, k);
    for (int i = 0; i < M; ++i) acc[i] += wf * x[i * K + k];
  }
  const float sc = row_scale ? row_scale[n] : 1.f;
#pragma unroll
  for (int i = 0; i < kGemvMaxRows; ++i) {
    if (i >= M) break;
    const float v = warp_sum(acc[i]);
    if (lane == 0) y[i * N + n] = v * sc;
  }
}

}  // namespace

// ---- launchers -----------------------------------------------------------------------------------

template <Elem E> struct RmsNormLaunch {
  static cudaError_t go(const float* x, const void* w, float* y, int64_t rows, int64_t d, float eps, cudaStream_t s) {
    rmsnorm_kernel<E><<<unsigned(rows), kThreads, 0, s>>>(x, w, y, d, eps);
    return cudaGetLastError();
  }
};
cudaError_t rmsnorm(const float* x, const void* w, Elem wt, float* y, int64_t rows, int64_t d, float eps, cudaStream_t s) {
  return by_elem<RmsNormLaunch>(wt, x, w, y, rows, d, eps, s);
}

cudaError_t rope(float* x, const int32_t* pos, int64_t rows, int64_t stride, int n_heads, int head_dim, float theta,
                 cudaStream_t s) {
  rope_kernel<<<blocks_for(rows * n_heads * (head_dim / 2)), kThreads, 0, s>>>(x, pos, rows, stride, n_heads, head_dim, theta);
  return cudaGetLastError();
}

cudaError_t silu_mul(const float* gate, const float* up, float* out, int64_t n, cudaStream_t s) {
  silu_mul_kernel<<<blocks_for(n), kThreads, 0, s>>>(gate, up, out, n);
  return cudaGetLastError();
}

cudaError_t add(const float* a, const float* b, float* out, int64_t n, cudaStream_t s) {
  add_kernel<<<blocks_for(n), kThreads, 0, s>>>(a, b, out, n);
  return cudaGetLastError();
}

cudaError_t kernel_image_status() {
  cudaFuncAttributes attr{};
  return cudaFuncGetAttributes(&attr, add_kernel);
}

cudaError_t softmax(const float* x, float* y, int64_t rows, int64_t n, cudaStream_t s) {
  softmax_kernel<<<unsigned(rows), kThreads, 0, s>>>(x, y, n);
  return cudaGetLastError();
}

template <Elem E> struct EmbeddingLaunch {
  static cudaError_t go(const int32_t* ids, const void* table, float* out, int64_t rows, int64_t d, cudaStream_t s) {
    embedding_kernel<E><<<blocks_for(rows * d), kThreads, 0, s>>>(ids, table, out, rows, d);
    return cudaGetLastError();
  }
};
cudaError_t embedding(const int32_t* ids, const void* table, Elem tt, float* out, int64_t rows, int64_t d, cudaStream_t s) {
  return by_elem<EmbeddingLaunch>(tt, ids, table, out, rows, d, s);
}

cudaError_t kv_store(const float* k, const float* v, const int32_t* slots, float* k_pool, float* v_pool, int64_t rows,
                     int64_t row_elems, cudaStream_t s) {
  kv_store_kernel<<<blocks_for(rows * row_elems), kThreads, 0, s>>>(k, v, slots, k_pool, v_pool, rows, row_elems);
  return cudaGetLastError();
}

int64_t attention_partial_floats(int64_t rows, int n_heads, int head_dim, int splits) {
  return rows * n_heads * int64_t(splits) * (head_dim + 2);
}

bool attention_supported(int n_heads, int n_kv_heads, int head_dim) {
  return n_kv_heads > 0 && n_heads % n_kv_heads == 0 && head_dim > 0 && head_dim <= 256;
}

cudaError_t attention(const AttentionArgs& a, cudaStream_t s) {
  if (a.rows <= 0 || a.rows > 2147483647LL || a.splits < 1 || (a.splits > 1 && (a.partial == nullptr || a.chunk <= 0)))
    return cudaErrorInvalidValue;
  cudaError_t e = cudaErrorInvalidValue;
  switch ((a.head_dim + 31) / 32) {
    case 1: e = launch_attention_dpl<1>(a, s); break;
    case 2: e = launch_attention_dpl<2>(a, s); break;
    case 3: e = launch_attention_dpl<3>(a, s); break;
    case 4: e = launch_attention_dpl<4>(a, s); break;
    case 5: e = launch_attention_dpl<5>(a, s); break;
    case 6: e = launch_attention_dpl<6>(a, s); break;
    case 7: e = launch_attention_dpl<7>(a, s); break;
    case 8: e = launch_attention_dpl<8>(a, s); break;
    default: return cudaErrorInvalidValue;
  }
  if (e != cudaSuccess || a.splits == 1) return e;
  attention_combine_kernel<<<dim3(unsigned(a.rows), unsigned(a.n_heads)), 64, 0, s>>>(a.partial, a.out, a.n_heads,
                                                                                       a.head_dim, a.splits);
  return cudaGetLastError();
}

cudaError_t to_bf16(const float* x, uint16_t* y, int64_t n, cudaStream_t s) {
  to_bf16_kernel<<<blocks_for(n), kThreads, 0, s>>>(x, y, n);
  return cudaGetLastError();
}

cudaError_t quantize_rows_int8(const float* x, int8_t* q, float* scales, int64_t rows, int64_t k, cudaStream_t s) {
  quantize_rows_kernel<<<unsigned(rows), kThreads, 0, s>>>(x, q, scales, k);
  return cudaGetLastError();
}

cudaError_t dequantize_int32(const int32_t* acc, const float* x_scale, const float* w_scale, float* y, int64_t M,
                             int64_t N, cudaStream_t s) {
  dequantize_kernel<<<blocks_for(M * N), kThreads, 0, s>>>(acc, x_scale, w_scale, y, M, N);
  return cudaGetLastError();
}

cudaError_t int8_gemm_simple(const int8_t* q, const int8_t* w, int32_t* acc, int64_t M, int64_t N, int64_t K, cudaStream_t s) {
  int8_gemm_simple_kernel<<<blocks_for(M * N), kThreads, 0, s>>>(q, w, acc, M, N, K);
  return cudaGetLastError();
}

template <Elem E> struct WidenLaunch {
  static cudaError_t go(const void* w, const float* row_scale, float* out, int64_t N, int64_t K, cudaStream_t s) {
    widen_kernel<E><<<blocks_for(N * K), kThreads, 0, s>>>(w, row_scale, out, N, K);
    return cudaGetLastError();
  }
};
cudaError_t widen_weight(const void* w, Elem wt, const float* row_scale, float* out, int64_t N, int64_t K, cudaStream_t s) {
  return by_elem<WidenLaunch>(wt, w, row_scale, out, N, K, s);
}

template <Elem E> struct GemvLaunch {
  static cudaError_t go(const float* x, int M, const void* w, const float* row_scale, float* y, int64_t N, int64_t K,
                        cudaStream_t s) {
    constexpr int kWarps = 8;  // one weight row per warp
    gemv_kernel<E><<<unsigned((N + kWarps - 1) / kWarps), kWarps * 32, 0, s>>>(x, M, w, row_scale, y, N, K);
    return cudaGetLastError();
  }
};
cudaError_t gemv_lowp(const float* x, int64_t M, const void* w, Elem wt, const float* row_scale, float* y, int64_t N,
                      int64_t K, cudaStream_t s) {
  if (M < 1 || M > kGemvMaxRows) return cudaErrorInvalidValue;
  return by_elem<GemvLaunch>(wt, x, int(M), w, row_scale, y, N, K, s);
}

}  // namespace cb::kernels::cuda
