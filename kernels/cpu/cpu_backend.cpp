// The `cpu` backend: vectorized (AVX-512 / AVX2 / scalar, picked at run time) and threaded
// (OpenMP) kernels behind the op table, with oneDNN for large-M GEMM. Results match `ref` up to
// float32 rounding; see suites/conformance/test_ops.cpp for the limits.
//
// Environment:
//   CB_CPU_ISA=scalar|avx2|avx512|avx512_vnni|avx512_bf16
//                                  use at most this ISA level (default: the best the machine has;
//                                  avx512 = F/BW/VL without the VNNI and BF16 extensions)
//   CB_CPU_ONEDNN_MIN_M=<rows>     rows from which dense f32 matmul goes to oneDNN (default 512)
//   CB_CPU_WEIGHTS_IN_PLACE=1      keep weights in the file mapping, row-major (default: copy
//                                  tensors of 64 KiB or more into huge-page memory at load, see
//                                  WeightArena, and pack dense f32/bf16 matmul weights there)
//   CB_CPU_PACK_WEIGHTS=0          copy dense f32/bf16 matmul weights row-major instead of packing
//                                  them into panels (the GEMV-style kernel runs them; for A/B runs)
//   CB_CPU_PANEL_SKEW=0            f32 panels exactly K steps apart even where that is a whole
//                                  number of pages (packed_panel_steps; for A/B runs)
#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "../common/host_backend.h"
#include "cpu_kernels.h"
#include "cpu_ops.h"

namespace cb::kernels {
namespace cpu {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::Avx512Vnni: return "avx512_vnni";
    case Isa::Avx512Bf16: return "avx512_bf16";
  }
  return "?";
}

namespace {
Isa detect_isa() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  // __builtin_cpu_supports also checks that the OS saves the AVX / AVX-512 register state.
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl")) {
    if (!__builtin_cpu_supports("avx512vnni")) return Isa::Avx512;
    return __builtin_cpu_supports("avx512bf16") ? Isa::Avx512Bf16 : Isa::Avx512Vnni;
  }
  if (avx2) return Isa::Avx2;
#endif
  return Isa::Scalar;
}
}  // namespace

Isa choose_isa() {
  static const Isa best = detect_isa();
  Isa isa = best;
  if (const char* req = std::getenv("CB_CPU_ISA")) {
    Isa want = best;
    if (std::strcmp(req, "scalar") == 0) want = Isa::Scalar;
    else if (std::strcmp(req, "avx2") == 0) want = Isa::Avx2;
    else if (std::strcmp(req, "avx512") == 0) want = Isa::Avx512;
    else if (std::strcmp(req, "avx512_vnni") == 0) want = Isa::Avx512Vnni;
    else if (std::strcmp(req, "avx512_bf16") == 0) want = Isa::Avx512Bf16;
    if (static_cast<int>(want) < static_cast<int>(isa)) isa = want;
  }
  return isa;
}

const KernelTable& kernels_for(Isa isa) {
  switch (isa) {
    case Isa::Avx512Bf16: return kernels_avx512_bf16();
    case Isa::Avx512Vnni: return kernels_avx512_vnni();
    case Isa::Avx512: return kernels_avx512();
    case Isa::Avx2: return kernels_avx2();
    case Isa::Scalar: break;
  }
  return kernels_scalar();
}

MatmulConfig matmul_config() {
  MatmulConfig cfg;
  if (const char* v = std::getenv("CB_CPU_ONEDNN_MIN_M")) {
    char* end = nullptr;
    const long long m = std::strtoll(v, &end, 10);
    if (end != v && m > 0) cfg.onednn_min_m = m;
  }
  if (const char* v = std::getenv("CB_CPU_FUSED_MATMULS")) cfg.fuse_matmuls = std::strcmp(v, "0") != 0;
  if (const char* v = std::getenv("CB_CPU_PACKED_WALK"); v && *v) {
    if (std::strcmp(v, "panel") == 0) cfg.packed_walk = PackedWalk::PanelMajor;
    else if (std::strcmp(v, "slice") == 0) cfg.packed_walk = PackedWalk::SliceMajor;
    else std::fprintf(stderr, "cpu backend: $CB_CPU_PACKED_WALK='%s' is neither 'panel' nor 'slice'; walking as usual\n", v);
  }
  if (const char* v = std::getenv("CB_CPU_PACKED_DECODE"); v && *v) {
    if (std::strcmp(v, "wide") == 0) cfg.packed_decode = PackedDecode::Wide;
    else if (std::strcmp(v, "prefetched") != 0)
      std::fprintf(stderr, "cpu backend: $CB_CPU_PACKED_DECODE='%s' is neither 'prefetched' nor 'wide'; using prefetched\n", v);
  }
  return cfg;
}

namespace {

bool weights_in_place() {
  const char* v = std::getenv("CB_CPU_WEIGHTS_IN_PLACE");
  return v && *v && std::strcmp(v, "0") != 0;
}

bool env_not_zero(const char* name) {
  const char* v = std::getenv(name);
  return !(v && std::strcmp(v, "0") == 0);
}

// Weights copied out of the safetensors mapping into anonymous memory backed by transparent huge
// pages. Decode streams every weight once per token: from the page cache (4 KiB pages) a 1.1B
// f32 model is ~1M pages, each a TLB miss and a stop for the hardware prefetchers, which do not
// cross 4 KiB pages. On huge pages llama-1b f32 decode ran at ~0.54 of the measured read
// bandwidth before and ~0.75-0.84 after (Zen 5, 2 threads); the copy costs one pass over the
// weights at load (+1.1-2.6 s for 4.4 GB; the kernel zeroes each new page first). Tensors under
// 2 MiB share huge pages (carved 4 KiB-aligned out of common 2 MiB blocks): bf16 llama-1b's
// k/v_proj (1 MiB each) were left on 4 KiB pages, and its q/k/v pass streamed at 0.90-0.92 of
// o_proj's GB/s; shared huge pages: 0.96-0.99 (refengine bench --op-profile, interleaved runs,
// 2026-12-05; a few percent of that pass, about 1% of the step). Tensors under kMinBytes (norm
// weights) stay in place: they live in cache anyway. A tensor mapped twice (tied embeddings and
// lm_head) is copied once. Copies live as long as the backend.
class WeightArena {
 public:
  static constexpr size_t kMinBytes = size_t(64) << 10;
  static constexpr size_t kHuge = size_t(2) << 20, kPage = size_t(4) << 10;
  ~WeightArena() {
    for (auto& [p, n] : blocks_) ::munmap(p, n);
  }
  void* copy(const void* src, size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    // Same address and size could also be a new tensor where a freed one was: compare contents.
    if (auto it = copies_.find(src); it != copies_.end() && it->second.second == bytes &&
                                     std::memcmp(it->second.first, src, bytes) == 0)
      return it->second.first;
    char* dst = allocate_locked(bytes);
    if (!dst) return nullptr;
    // Threads copy their own slices: the pages are first touched (and faulted) in parallel.
    const int64_t chunks = int64_t((bytes + kHuge - 1) / kHuge);
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (int64_t c = 0; c < chunks; ++c) {
      const size_t off = size_t(c) * kHuge, n = std::min(kHuge, bytes - off);
      std::memcpy(dst + off, static_cast<const char*>(src) + off, n);
    }
    copies_[src] = {dst, bytes};
    return dst;
  }
  // Uninitialized memory placed as copy() places it (for packed weights, written by the caller).
  void* allocate(size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    return allocate_locked(bytes);
  }

 private:
  char* allocate_locked(size_t bytes) { return bytes >= kHuge ? map_huge((bytes + kHuge - 1) / kHuge * kHuge) : carve(bytes); }
  // len bytes (a multiple of kHuge) of anonymous memory starting on a 2 MiB boundary, THP advised.
  char* map_huge(size_t len) {
    // Over-map by one huge page so the block can start on a 2 MiB boundary.
    void* raw = ::mmap(nullptr, len + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return nullptr;
    char* base = static_cast<char*>(raw);
    char* aligned = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(base) + kHuge - 1) / kHuge * kHuge);
    if (aligned > base) ::munmap(base, size_t(aligned - base));
    const size_t tail = size_t(base + len + kHuge - (aligned + len));
    if (tail) ::munmap(aligned + len, tail);
#ifdef MADV_HUGEPAGE
    ::madvise(aligned, len, MADV_HUGEPAGE);
#endif
    blocks_.emplace_back(aligned, len);
    return aligned;
  }
  // A 4 KiB-aligned piece of the current shared 2 MiB block (a new block when it is full).
  char* carve(size_t bytes) {
    const size_t need = (bytes + kPage - 1) / kPage * kPage;
    if (shared_ == nullptr || shared_used_ + need > kHuge) {
      shared_ = map_huge(kHuge);
      shared_used_ = 0;
      if (!shared_) return nullptr;
    }
    char* p = shared_ + shared_used_;
    shared_used_ += need;
    return p;
  }

  std::mutex mu_;
  std::vector<std::pair<void*, size_t>> blocks_;
  char* shared_ = nullptr;  // the block small tensors are carved from
  size_t shared_used_ = 0;
  std::map<const void*, std::pair<void*, size_t>> copies_;
};

class CpuBackend final : public HostBackend {
 public:
  CpuBackend()
      : k_(kernels_for(choose_isa())), mm_(matmul_config()), in_place_(weights_in_place()),
        pack_(env_not_zero("CB_CPU_PACK_WEIGHTS")),
        skew_panels_(env_not_zero("CB_CPU_PANEL_SKEW")) {}

  std::string name() const override { return "cpu"; }

 protected:
  // Called by Backend's public ops after the shared checks (backend_common.cpp).
  Status run_matmul(const Tensor& x, const Weight& w, Tensor& y) override { return cpu::matmul(k_, mm_, x, w, y); }
  Status run_matmul_multi(const Tensor& x, std::span<const MatmulOutput> outs) override {
    return cpu::matmul_multi(k_, mm_, x, outs);
  }
  Status run_rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor& y) override {
    return cpu::rmsnorm(k_, x, weight, eps, y);
  }
  Status run_rope(Tensor& x, const Tensor& positions, int n_heads, int head_dim, float theta) override {
    return cpu::rope(k_, x, positions, n_heads, head_dim, theta);
  }
  Status run_kv_store(const Tensor& k, const Tensor& v, const Tensor& slot_mapping, KvLayer& kv) override {
    return cpu::kv_store(k, v, slot_mapping, kv);
  }
  Status run_attention(const Tensor& q, const KvLayer& kv, const AttentionBatch& b, const AttentionParams& p,
                       Tensor& out) override {
    return cpu::attention(k_, q, kv, b, p, out);
  }
  Status run_silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) override {
    return cpu::silu_mul(k_, gate, up, out);
  }
  Status run_softmax(const Tensor& x, Tensor& y) override { return cpu::softmax(k_, x, y); }
  Status run_embedding(const Tensor& ids, const Tensor& table, Tensor& out) override {
    return cpu::embedding(k_, ids, table, out);
  }
  Status run_add(const Tensor& a, const Tensor& b, Tensor& out) override { return cpu::add(k_, a, b, out); }
  // Dense f32 and bf16 weights (f32 activations) are packed into panels for packed_gemm, every
  // size: the packed kernel beats the row-major one at every M (cpu_algos_packed.h). The packed
  // copy replaces the row-major one (the loader drops the mapping's pages: RSS once); `values`
  // stays as given. One pass over the weight at load, threads packing their own panels. bf16
  // weights for bf16 x bf16 pack into k-pair panels where the ISA has vdpbf16ps (cpu_kernels.h).
  Status run_upload_weight(const Weight& host, Weight& out) override {
    out = host;
    if (in_place_) return Status::Ok();
    if (pack_ && packable(host)) return pack(host, out);
    for (Tensor* t : {&out.values, &out.scales, &out.meta})
      if (Status s = copy_to_arena(*t); !s.ok()) return s;
    return Status::Ok();
  }
  Status run_upload_tensor(const Tensor& host, Tensor& out) override {
    out = host;
    return in_place_ ? Status::Ok() : copy_to_arena(out);
  }

 private:
  // bf16 x bf16 weights pack into k-pair panels where this ISA has a kernel for them.
  bool pairs(const Weight& w) const { return w.act_quant == ActQuant::Bf16 && k_.packed_bf16dot != nullptr; }
  // W8A8 weights pack into k-quad panels where this ISA has vpdpbusd.
  bool quads(const Weight& w) const {
    return w.act_quant == ActQuant::PerTokenInt8 && w.layout == WeightLayout::Int8PerChannel && w.dtype() == DType::I8 &&
           k_.packed_w8a8 != nullptr;
  }
  bool packable(const Weight& w) const {
    const bool f32_acts = w.act_quant == ActQuant::None && (w.dtype() == DType::F32 || w.dtype() == DType::BF16);
    const bool dense = w.layout == WeightLayout::Dense && (f32_acts || (pairs(w) && w.dtype() == DType::BF16));
    return (dense || quads(w)) && w.n > 0 && w.k > 0 && w.values.data != nullptr;
  }
  // W8A8: quad panels, then each row's sum over k (pack_i8_quads); the scales stay as uploaded.
  Status pack_quads(const Weight& host, Weight& out) {
    if (Status s = copy_to_arena(out.scales); !s.ok()) return s;
    const int64_t steps = (host.k + 3) / 4, panels = (host.n + kPackPanel - 1) / kPackPanel;
    const size_t bytes = size_t(packed_i8_quad_bytes(panels, steps)) + size_t(panels * kPackPanel) * sizeof(int32_t);
    void* dst = arena_.allocate(bytes);
    if (!dst) return Status::out_of_memory(name() + ": cannot map " + std::to_string(bytes) + " bytes to pack weight " + host.values.describe());
#pragma omp parallel for schedule(static) if (panels > 1 && bytes >= WeightArena::kMinBytes)
    for (int64_t p = 0; p < panels; ++p)
      pack_i8_quads(host.values.as<const int8_t>(), host.n, host.k, steps, p * kPackPanel, std::min(host.n, (p + 1) * kPackPanel),
                    static_cast<uint8_t*>(dst));
    out.packed = Tensor(dst, DType::I8, {panels, steps, 64});
    return Status::Ok();
  }
  Status pack(const Weight& host, Weight& out) {
    if (quads(host)) return pack_quads(host, out);
    const bool as_pairs = pairs(host);
    const size_t es = dtype_size(host.dtype());
    const int64_t lanes = as_pairs ? 2 * kPackPanel : kPackPanel, k_steps = as_pairs ? (host.k + 1) / 2 : host.k;
    // f32 panels only: bf16-weight decode (M = 1) ran slower skewed, 10 of 10 interleaved pairs
    // on llama-1b (12-22 against 12-17 tokens/s); f32 decode was even (5 of 8), batch 16 faster.
    const bool skew = skew_panels_ && host.dtype() == DType::F32;
    const int64_t steps = skew ? packed_panel_steps(k_steps, lanes * int64_t(es)) : k_steps;
    const int64_t panels = (host.n + kPackPanel - 1) / kPackPanel;
    const size_t bytes = size_t(panels * steps * lanes) * es;
    void* dst = arena_.allocate(bytes);
    if (!dst) return Status::out_of_memory(name() + ": cannot map " + std::to_string(bytes) + " bytes to pack weight " + host.values.describe());
#pragma omp parallel for schedule(static) if (panels > 1 && bytes >= WeightArena::kMinBytes)
    for (int64_t p = 0; p < panels; ++p) {
      const int64_t n0 = p * kPackPanel, n1 = std::min(host.n, (p + 1) * kPackPanel);
      if (as_pairs) pack_bf16_pairs(host.values.as<const uint16_t>(), host.n, host.k, steps, n0, n1, static_cast<uint16_t*>(dst));
      else pack_panels(host.values.data, int64_t(es), host.n, host.k, steps, n0, n1, dst);
    }
    out.packed = Tensor(dst, host.dtype(), {panels, steps, lanes});
    return Status::Ok();
  }
  Status copy_to_arena(Tensor& t) {
    if (t.empty() || t.nbytes() < WeightArena::kMinBytes) return Status::Ok();
    void* copy = arena_.copy(t.data, t.nbytes());
    if (!copy) return Status::out_of_memory(name() + ": cannot map " + std::to_string(t.nbytes()) + " bytes for weight " + t.describe());
    t.data = copy;
    return Status::Ok();
  }

  const KernelTable& k_;
  MatmulConfig mm_;
  const bool in_place_, pack_, skew_panels_;
  WeightArena arena_;
};

}  // namespace
}  // namespace cpu

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<cpu::CpuBackend>(); }

}  // namespace cb::kernels
