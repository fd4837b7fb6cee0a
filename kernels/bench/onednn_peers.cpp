#include "onednn_peers.h"

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl.hpp>
#include <oneapi/dnnl/dnnl_version.h>

#include <stdexcept>

namespace cb::kbench {
namespace {

// The BLAS-style calls: nothing to prepare, W passed (and packed by oneDNN) on every call.
class BlasPeer final : public OnednnPeer {
 public:
  BlasPeer(bool int8, int64_t m, int64_t k, int64_t n, const void* w) : int8_(int8), m_(m), k_(k), n_(n), w_(w) {}
  bool run(const void* x, void* y) override {
    if (!int8_)  // row-major y[M,N] = x[M,K] * W[N,K]^T
      return dnnl_sgemm('N', 'T', m_, n_, k_, 1.f, static_cast<const float*>(x), k_, static_cast<const float*>(w_), k_, 0.f,
                        static_cast<float*>(y), n_) == dnnl_success;
    const int32_t offset_c = 0;
    return dnnl_gemm_s8s8s32('N', 'T', 'F', m_, n_, k_, 1.f, static_cast<const int8_t*>(x), k_, 0,
                             static_cast<const int8_t*>(w_), k_, 0, 0.f, static_cast<int32_t*>(y), n_, &offset_c) == dnnl_success;
  }
  std::string impl() const override { return int8_ ? "dnnl_gemm_s8s8s32 (packs W per call)" : "dnnl_sgemm (packs W per call)"; }

 private:
  bool int8_;
  int64_t m_, k_, n_;
  const void* w_;
};

// The matmul primitive, built once for this shape with the weights' layout left to oneDNN
// (format_tag::any) and W reordered into it once: what an engine on oneDNN does at load time, so
// a call streams W in the primitive's own blocking and packs nothing.
class MatmulPeer final : public OnednnPeer {
 public:
  MatmulPeer(OnednnPeerKind kind, int64_t m, int64_t k, int64_t n, const void* w)
      : eng_(dnnl::engine::kind::cpu, 0), stream_(eng_) {
    using dnnl::memory;
    const memory::data_type in = kind == OnednnPeerKind::MatmulS8     ? memory::data_type::s8
                                 : kind == OnednnPeerKind::MatmulBf16 ? memory::data_type::bf16
                                                                      : memory::data_type::f32;
    const memory::data_type out = kind == OnednnPeerKind::MatmulS8 ? memory::data_type::s32 : memory::data_type::f32;
    const memory::desc xd({m, k}, in, memory::format_tag::ab);
    // W[N, K] row-major is the [K, N] weights matrix stored transposed ("ba").
    const memory::desc w_user({k, n}, in, memory::format_tag::ba);
    const memory::desc w_any({k, n}, in, memory::format_tag::any);
    yd_ = memory::desc({m, n}, out, memory::format_tag::ab);
    xd_ = xd;
#if DNNL_VERSION_MAJOR >= 3
    pd_ = dnnl::matmul::primitive_desc(eng_, xd, w_any, yd_);
#else
    pd_ = dnnl::matmul::primitive_desc(dnnl::matmul::desc(xd, w_any, yd_), eng_);
#endif
    // oneDNN's reference loops run any type anywhere, orders of magnitude below its kernels: a
    // peer that slow would flatter whatever it is set beside, so there is no peer here.
    const std::string impl = pd_.impl_info_str();
    if (impl.rfind("ref", 0) == 0)
      throw OnednnUnsupported(std::string("oneDNN matmul primitive (") + onednn_peer_name(kind) + "): only its reference "
                              "implementation '" + impl + "' on this CPU");
    prim_ = dnnl::matmul(pd_);
    memory user(w_user, eng_, const_cast<void*>(w));
    w_ = memory(pd_.weights_desc(), eng_);
    dnnl::reorder(user, w_).execute(stream_, user, w_);
    stream_.wait();
  }
  bool run(const void* x, void* y) override {
    try {
      dnnl::memory xm(xd_, eng_, const_cast<void*>(x)), ym(yd_, eng_, y);
      prim_.execute(stream_, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, w_}, {DNNL_ARG_DST, ym}});
      stream_.wait();
      return true;
    } catch (const dnnl::error&) {
      return false;
    }
  }
  std::string impl() const override { return std::string("matmul primitive ") + pd_.impl_info_str() + ", W reordered once"; }

 private:
  dnnl::engine eng_;
  dnnl::stream stream_;
  dnnl::memory::desc xd_, yd_;
  dnnl::matmul::primitive_desc pd_;
  dnnl::matmul prim_;
  dnnl::memory w_;
};

}  // namespace

const char* onednn_peer_name(OnednnPeerKind kind) {
  switch (kind) {
    case OnednnPeerKind::Sgemm: return "sgemm";
    case OnednnPeerKind::GemmS8: return "gemm_s8s8s32";
    case OnednnPeerKind::MatmulF32: return "matmul";
    case OnednnPeerKind::MatmulS8: return "matmul_s8";
    case OnednnPeerKind::MatmulBf16: return "matmul_bf16";
  }
  return "?";
}

std::unique_ptr<OnednnPeer> OnednnPeer::make(OnednnPeerKind kind, int64_t m, int64_t k, int64_t n, const void* w) {
  switch (kind) {
    case OnednnPeerKind::Sgemm: return std::make_unique<BlasPeer>(false, m, k, n, w);
    case OnednnPeerKind::GemmS8: return std::make_unique<BlasPeer>(true, m, k, n, w);
    case OnednnPeerKind::MatmulF32:
    case OnednnPeerKind::MatmulS8:
    case OnednnPeerKind::MatmulBf16:
      try {
        return std::make_unique<MatmulPeer>(kind, m, k, n, w);
      } catch (const dnnl::error& e) {
        const std::string what = std::string("oneDNN matmul primitive (") + onednn_peer_name(kind) + ", M=" + std::to_string(m) +
                                 " K=" + std::to_string(k) + " N=" + std::to_string(n) + "): " + e.what();
        if (e.status == dnnl_unimplemented) throw OnednnUnsupported(what + " (no implementation for this CPU)");
        throw std::runtime_error(what);
      }
  }
  throw std::runtime_error("unknown oneDNN peer kind");
}

std::string onednn_version() {
  const dnnl_version_t* v = dnnl_version();
  return std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
}

}  // namespace cb::kbench
