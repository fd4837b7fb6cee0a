// matmul driver: y[M, N] = x[M, K] * W[N, K]^T for dense f32/f16/bf16 and int8 per-channel W
// with f32 activations. Dense f32/bf16 weights the backend packed at upload (Weight::packed) go
// to the packed-panel kernel (cpu_algos_packed.h) at every M; the rest of this comment is about
// weights that were not packed (uploaded in place, $CB_CPU_PACK_WEIGHTS=0, or never uploaded). Weights that ask for low-precision activations (Weight::act_quant: W8A8,
// bf16 x bf16) and 2:4 sparse weights go to cpu_matmul_int8.cpp, cpu_matmul_bf16.cpp and
// cpu_matmul_sparse24.cpp after the shared checks here.
//
// The per-ISA GEMV kernel (cpu_algos.h) does every dtype at every M: threads split the N output
// columns, each streams its rows of W once per 8 rows of x (f16/bf16/i8 widened in registers),
// and past 8 rows it walks W in L2-sized blocks. From MatmulConfig::onednn_min_m rows on, dense
// f32 goes to oneDNN's sgemm instead.
//
// Why that split (Zen 4 EPYC, 2 threads, peak ~220 GFLOP/s; GFLOP/s own kernel vs oneDNN 2.6):
//   f32 K=2048 N=5632  M=1 46 vs 29 | M=8 96 vs 80 | M=128 182 vs 103 | M=256 187 vs 141
//                      M=512 176 vs 166 | M=1024 155 vs 204
//   f32 K=5632 N=2048  M=128 168 vs 128 | M=512 142 vs 180 | M=1024 129 vs 200
//   bf16 M=128 208 vs 103, M=2048 193 vs 152; f16 M=2048 194 vs 150; i8 M=2048 204 vs 150
//     (oneDNN here ran on f32 panels of W widened per call)
// so oneDNN pays only for f32 weights and only from ~512 rows (long prefills); half and int8
// weights stay on the own kernel, whose in-register widening beats widening panels for sgemm.
#include <oneapi/dnnl/dnnl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "../common/host_backend.h"
#include "cpu_ops.h"

namespace cb::kernels::cpu {
namespace {

// Rows of W per thread chunk are a multiple of this: whole tiles of 8, 4 or 3 rows.
constexpr int64_t kRowAlign = 24;

bool matmul_onednn(const Tensor& x, const Weight& w, Tensor& y) {
  // Row-major C[M, N] = A[M, K] * B^T with B = W[N, K]: transa 'N', transb 'T'.
  const int64_t M = x.rows(), N = w.n, K = w.k;
  return dnnl_sgemm('N', 'T', M, N, K, 1.f, x.as<const float>(), K, w.values.as<const float>(), K, 0.f, y.as<float>(),
                    N) == dnnl_success;
}

}  // namespace

void pack_panels(const void* src, int64_t elem_bytes, int64_t N, int64_t K, int64_t S, int64_t n0, int64_t n1, void* dst) {
  const auto* s = static_cast<const char*>(src);
  auto* d = static_cast<char*>(dst);
  const size_t es = size_t(elem_bytes);
  for (int64_t p = n0 / kPackPanel; p * kPackPanel < n1; ++p) {
    char* panel = d + size_t(p * S * kPackPanel) * es;
    for (int64_t j = 0; j < kPackPanel; ++j) {
      const int64_t n = p * kPackPanel + j;
      for (int64_t k = 0; k < K; ++k) {
        char* to = panel + size_t(k * kPackPanel + j) * es;
        if (n < N) std::memcpy(to, s + size_t(n * K + k) * es, es);
        else std::memset(to, 0, es);
      }
    }
    std::memset(panel + size_t(K * kPackPanel) * es, 0, size_t((S - K) * kPackPanel) * es);
  }
}

void pack_bf16_pairs(const uint16_t* src, int64_t N, int64_t K, int64_t S, int64_t n0, int64_t n1, uint16_t* dst) {
  const int64_t Kp = (K + 1) / 2;
  for (int64_t p = n0 / kPackPanel; p * kPackPanel < n1; ++p) {
    uint16_t* panel = dst + p * S * 2 * kPackPanel;
    for (int64_t j = 0; j < kPackPanel; ++j) {
      const int64_t n = p * kPackPanel + j;
      const uint16_t* row = n < N ? src + n * K : nullptr;
      for (int64_t k = 0; k < 2 * Kp; ++k) panel[(k / 2) * 2 * kPackPanel + j * 2 + k % 2] = row && k < K ? row[k] : 0;
    }
    std::memset(panel + Kp * 2 * kPackPanel, 0, sizeof(uint16_t) * size_t((S - Kp) * 2 * kPackPanel));
  }
}

void pack_i8_quads(const int8_t* src, int64_t N, int64_t K, int64_t S, int64_t n0, int64_t n1, uint8_t* dst) {
  const int64_t Kq = (K + 3) / 4;
  const int64_t panels_total = (N + kPackPanel - 1) / kPackPanel;
  auto* wsum = reinterpret_cast<int32_t*>(dst + packed_i8_quad_bytes(panels_total, S));
  for (int64_t p = n0 / kPackPanel; p * kPackPanel < n1; ++p) {
    uint8_t* panel = dst + p * S * 64;
    for (int64_t j = 0; j < kPackPanel; ++j) {
      const int64_t n = p * kPackPanel + j;
      const int8_t* row = n < N ? src + n * K : nullptr;
      int32_t sum = 0;
      for (int64_t k = 0; k < 4 * Kq; ++k) {
        const int8_t v = row && k < K ? row[k] : int8_t(0);
        panel[(k / 4) * 64 + j * 4 + k % 4] = uint8_t(v);
        sum += v;
      }
      wsum[n] = sum;
    }
    std::memset(panel + Kq * 64, 0, size_t((S - Kq) * 64));
  }
}

int64_t gemv_k_slice() {
  static const int64_t slice = [] {
    long l1 = ::sysconf(_SC_LEVEL1_DCACHE_SIZE);
    if (l1 <= 0) l1 = 32 << 10;
    int64_t s = 256;
    while (s * 2 * 6 * int64_t(sizeof(float)) <= l1 * 3 / 4) s *= 2;
    return s;
  }();
  return slice;
}

int64_t packed_panel_major_y_bytes() {
  static const int64_t bytes = [] {
    const long l2 = ::sysconf(_SC_LEVEL2_CACHE_SIZE);
    return l2 > 0 ? int64_t(l2) / 2 : int64_t(512) << 10;
  }();
  return bytes;
}

namespace {

// x as the GEMV kernel reads it, prepared once per call (matmul_multi shares it between weights).
struct GemvInput {
  const float* x = nullptr;
  int64_t ldx = 0;
  const float* bf16_pairs = nullptr;  // GemvArgs::x_bf16_pairs
  std::vector<float> padded, pairs;
};

// Rows of x a multiple of 2 KiB apart fall into the same few L1 sets, and the 8 rows a GEMV
// tile reads at one k then evict each other (K = 2048 f32: 133 vs 170 GFLOP/s at M = 128 on
// Zen 4). Such x is copied to rows padded by one cache line first; the copy is M*K floats
// against M*N*K multiply-adds. For bf16 weights at M <= 8 the even/odd permuted copy is made too
// (M*K floats against N*K weight bytes streamed).
void prepare_gemv_input(const Tensor& x, bool bf16_weights, GemvInput& in) {
  const int64_t M = x.rows(), K = x.cols();
  in.x = x.as<const float>();
  in.ldx = K;
  if (bf16_weights && M <= 8 && K >= 32) {
    const int64_t K32 = K / 32 * 32;
    in.pairs.resize(static_cast<size_t>(M * K32));
    for (int64_t m = 0; m < M; ++m)
      for (int64_t k = 0; k < K32; k += 32)
        for (int64_t j = 0; j < 16; ++j) {
          in.pairs[size_t(m * K32 + k + j)] = in.x[m * K + k + 2 * j];
          in.pairs[size_t(m * K32 + k + 16 + j)] = in.x[m * K + k + 2 * j + 1];
        }
    in.bf16_pairs = in.pairs.data();
  }
  if (M <= 1 || K % 512 != 0) return;
  const int64_t ld = K + 16;
  in.padded.resize(static_cast<size_t>(M * ld));
  for (int64_t m = 0; m < M; ++m)
    std::memcpy(in.padded.data() + m * ld, in.x + m * K, sizeof(float) * static_cast<size_t>(K));
  in.x = in.padded.data();
  in.ldx = ld;
}

GemvArgs gemv_args(const GemvInput& in, int64_t M, const Weight& w, Tensor& y) {
  GemvArgs a;
  a.k_slice = gemv_k_slice();
  a.x = in.x;
  a.ldx = in.ldx;
  a.x_bf16_pairs = w.dtype() == DType::BF16 ? in.bf16_pairs : nullptr;
  a.w = w.values.data;
  a.wdt = w.dtype();
  a.scales = w.layout == WeightLayout::Int8PerChannel ? w.scales.as<const float>() : nullptr;
  a.y = y.as<float>();
  a.M = M;
  a.N = w.n;
  a.K = w.k;
  return a;
}

// Below ~64K multiply-adds per thread, one thread finishes before a second one wakes up.
int64_t gemv_min_rows(int64_t M, int64_t K) { return std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(1, M * K)); }

void matmul_gemv(const KernelTable& k, const Tensor& x, const Weight& w, Tensor& y) {
  GemvInput in;
  prepare_gemv_input(x, w.dtype() == DType::BF16, in);
  const GemvArgs a = gemv_args(in, x.rows(), w, y);
  parallel_ranges(a.N, gemv_min_rows(a.M, a.K), kRowAlign, [&](int64_t n0, int64_t n1) { k.gemv(a, n0, n1); });
}

PackedArgs packed_args(const GemvInput& in, int64_t M, const Weight& w, Tensor& y, const MatmulConfig& cfg) {
  PackedArgs a;
  a.walk = cfg.packed_walk;
  a.decode = cfg.packed_decode;
  a.x = in.x;
  a.ldx = in.ldx;
  a.wp = w.packed.data;
  a.wdt = w.packed.dtype;
  a.y = y.as<float>();
  a.M = M;
  a.N = w.n;
  a.K = w.k;
  a.panel_steps = w.packed.shape[1];
  a.panel_major_y_bytes = packed_panel_major_y_bytes();
  return a;
}

void matmul_packed(const KernelTable& k, const MatmulConfig& cfg, const Tensor& x, const Weight& w, Tensor& y) {
  GemvInput in;
  prepare_gemv_input(x, false, in);
  const PackedArgs a = packed_args(in, x.rows(), w, y, cfg);
  parallel_ranges(a.N, gemv_min_rows(a.M, a.K), kPackedAlign, [&](int64_t n0, int64_t n1) { k.packed_gemm(a, n0, n1); });
}

// Whether matmul() would send this weight to the GEMV or the packed kernel at M rows.
bool takes_gemv(const MatmulConfig& cfg, const Weight& w, int64_t M) {
  if (w.k == 0 || w.act_quant != ActQuant::None || w.layout == WeightLayout::Sparse24) return false;
  if (!w.packed.empty()) return true;
  return !(w.layout == WeightLayout::Dense && w.dtype() == DType::F32 && M >= cfg.onednn_min_m);
}

}  // namespace

PackedArgs dot_step_packed_args(const void* x, int64_t ldx_steps, int64_t M, int64_t k_steps, const Weight& w, DType wdt,
                                Tensor& y) {
  PackedArgs p;
  p.x = x;
  p.ldx = ldx_steps;
  p.wp = w.packed.data;
  p.wdt = wdt;
  p.y = y.as<float>();
  p.M = M;
  p.N = w.n;
  p.K = k_steps;
  p.panel_steps = w.packed.shape[1];
  p.k_slice = 512;  // steps: the f32 tile's 96 KiB of W per slice, 2 KiB of x per row
  p.panel_major_y_bytes = packed_panel_major_y_bytes();
  return p;
}

Status matmul(const KernelTable& k, const MatmulConfig& cfg, const Tensor& x, const Weight& w, Tensor& y) {
  const int64_t K = w.k, M = x.rows();
  if (K == 0) {
    std::memset(y.data, 0, y.nbytes());
    return Status::Ok();
  }
  if (w.act_quant == ActQuant::PerTokenInt8) return matmul_w8a8(k, x, w, y);
  if (w.act_quant == ActQuant::Bf16) return matmul_bf16dot(k, x, w, y);
  if (w.layout == WeightLayout::Sparse24) return matmul_sparse24(k, x, w, y);
  if (!w.packed.empty()) {
    matmul_packed(k, cfg, x, w, y);
    return Status::Ok();
  }
  const bool dense_f32 = w.layout == WeightLayout::Dense && w.dtype() == DType::F32;
  if (dense_f32 && M >= cfg.onednn_min_m && matmul_onednn(x, w, y)) return Status::Ok();
  matmul_gemv(k, x, w, y);  // also the fallback should oneDNN refuse a call
  return Status::Ok();
}

namespace {

// The weights' rows laid end to end, split over the threads in one parallel region: one
// fork/join and one barrier for q/k/v (or gate/up) instead of one per weight, and no thread
// idles at the end of a small matrix (k/v_proj are 256 rows on llama-1b). With packed weights
// every part starts on a panel boundary (its rows rounded up to whole panels; the padding rows
// are skipped) and the split is in whole packed tiles. run(i, n0, n1): rows [n0, n1) of part i.
template <class F>
void run_parts_fused(std::span<const MatmulOutput> outs, bool panels, int64_t min_per_thread, F&& run) {
  std::vector<int64_t> start{0};  // part i owns rows [start[i], start[i] + n_i) of the whole
  for (const MatmulOutput& o : outs)
    start.push_back(start.back() + (panels ? (o.w->n + kPackPanel - 1) / kPackPanel * kPackPanel : o.w->n));
  parallel_ranges(start.back(), min_per_thread, panels ? kPackedAlign : kRowAlign, [&](int64_t n0, int64_t n1) {
    for (size_t i = 0; i < outs.size(); ++i) {
      const int64_t b = std::max(n0, start[i]), e = std::min(n1, start[i] + outs[i].w->n);
      if (b < e) run(i, b - start[i], e - start[i]);
    }
  });
}

}  // namespace

Status matmul_multi(const KernelTable& k, const MatmulConfig& cfg, const Tensor& x, std::span<const MatmulOutput> outs) {
  const int64_t M = x.rows();
  const bool fuse = cfg.fuse_matmuls && outs.size() > 1;
  bool all_gemv = fuse, all_pairs = fuse, all_quads = fuse;
  for (const MatmulOutput& o : outs) {
    all_gemv = all_gemv && takes_gemv(cfg, *o.w, M);
    all_pairs = all_pairs && on_pair_panels(k, *o.w) && o.w->k > 0;
    all_quads = all_quads && on_quad_panels(k, *o.w) && o.w->k > 0 && w8a8_k_fits(o.w->k).ok();
  }
  if (all_quads) {  // W8A8 on quad panels: x quantized once for all of them
    const W8A8Input in = quantize_w8a8_input(k, x, k.w8a8_x_offset);
    std::vector<PackedArgs> pargs;
    for (const MatmulOutput& o : outs) pargs.push_back(w8a8_packed_args(in, M, *o.w, *o.y));
    run_parts_fused(outs, true, w8a8_min_cols(M, x.cols()),
                    [&](size_t i, int64_t n0, int64_t n1) { k.packed_w8a8(pargs[i], n0, n1); });
    return Status::Ok();
  }
  if (all_pairs) {  // bf16 x bf16 on pair panels: x rounded once for all of them
    const Bf16Input in = prepare_bf16_input(x);
    std::vector<PackedArgs> pargs;
    for (const MatmulOutput& o : outs) pargs.push_back(bf16_packed_args(in, M, *o.w, *o.y));
    run_parts_fused(outs, true, bf16_min_cols(M, x.cols()),
                    [&](size_t i, int64_t n0, int64_t n1) { k.packed_bf16dot(pargs[i], n0, n1); });
    return Status::Ok();
  }
  if (!all_gemv) {
    for (const MatmulOutput& o : outs)
      if (Status s = matmul(k, cfg, x, *o.w, *o.y); !s.ok()) return s;
    return Status::Ok();
  }
  bool any_bf16_rowmajor = false, any_packed = false;
  for (const MatmulOutput& o : outs) {
    any_packed = any_packed || !o.w->packed.empty();
    any_bf16_rowmajor = any_bf16_rowmajor || (o.w->packed.empty() && o.w->dtype() == DType::BF16);
  }
  GemvInput in;
  prepare_gemv_input(x, any_bf16_rowmajor, in);
  std::vector<GemvArgs> args;
  std::vector<PackedArgs> pargs;
  for (const MatmulOutput& o : outs) {
    args.push_back(gemv_args(in, M, *o.w, *o.y));
    pargs.push_back(o.w->packed.empty() ? PackedArgs{} : packed_args(in, M, *o.w, *o.y, cfg));
  }
  run_parts_fused(outs, any_packed, gemv_min_rows(M, x.cols()), [&](size_t i, int64_t n0, int64_t n1) {
    if (pargs[i].wp) k.packed_gemm(pargs[i], n0, n1);
    else k.gemv(args[i], n0, n1);
  });
  return Status::Ok();
}

}  // namespace cb::kernels::cpu
