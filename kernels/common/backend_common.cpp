#include <stdexcept>

#include "cb/kernels/backend.h"

namespace cb::kernels {

const char* op_name(Op op) {
  switch (op) {
    case Op::MatMul: return "matmul";
    case Op::RmsNorm: return "rmsnorm";
    case Op::Rope: return "rope";
    case Op::Attention: return "attention";
    case Op::KvStore: return "kv_store";
    case Op::SiluMul: return "silu_mul";
    case Op::Softmax: return "softmax";
    case Op::Embedding: return "embedding";
    case Op::Add: return "add";
    case Op::kCount: break;
  }
  return "?";
}

Status check_matmul_args(const Tensor& x, const Weight& w, const Tensor& y) {
  if (x.dtype != DType::F32 || y.dtype != DType::F32)
    return Status::invalid("matmul: activations must be f32, got x " + x.describe() + ", y " + y.describe());
  if (x.cols() != w.k)
    return Status::invalid("matmul: x " + x.describe() + " has " + std::to_string(x.cols()) +
                           " columns but the weight expects K=" + std::to_string(w.k));
  if (y.rows() != x.rows() || y.cols() != w.n)
    return Status::invalid("matmul: y " + y.describe() + " must be [" + std::to_string(x.rows()) + ", " +
                           std::to_string(w.n) + "]");
  return Status::Ok();
}

namespace {
std::string dims(int64_t a, int64_t b) {  // built with += (GCC 12 warns falsely on "literal" + std::string&&)
  std::string s = "[";
  s += std::to_string(a);
  s += ", ";
  s += std::to_string(b);
  s += "]";
  return s;
}
}  // namespace

Status check_matmul_weight(const Weight& w, const char* who) {
  const std::string p = std::string(who) + ": ";
  const int64_t N = w.n, K = w.k;
  if (N < 0 || K < 0) return Status::invalid(p + "weight has negative size " + dims(N, K));
  switch (w.layout) {
    case WeightLayout::Dense:
    case WeightLayout::Int8PerChannel:
      if (w.values.numel() != N * K)
        return Status::invalid(p + "weight values " + w.values.describe() + " do not hold " + dims(N, K));
      break;
    case WeightLayout::Sparse24:
      if (K % 4 != 0)
        return Status::invalid(p + "2:4 sparse weight needs K % 4 == 0 (groups of 4 inputs), got K=" + std::to_string(K));
      if (w.values.numel() != N * (K / 2))
        return Status::invalid(p + "2:4 sparse values " + w.values.describe() + " must hold the kept half " + dims(N, K / 2));
      if (w.meta.dtype != DType::I8 || w.meta.numel() != N * (K / 4))
        return Status::invalid(p + "2:4 sparse meta " + w.meta.describe() + " must be i8 " + dims(N, K / 4) +
                               " (one byte of two 2-bit indices per group of 4)");
      break;
  }
  if (w.layout == WeightLayout::Int8PerChannel && (w.scales.dtype != DType::F32 || w.scales.numel() != N))
    return Status::invalid(p + "int8 scales " + w.scales.describe() + " must be f32[" + std::to_string(N) + "]");
  if (w.act_quant == ActQuant::PerTokenInt8 && w.layout != WeightLayout::Int8PerChannel)
    return Status::invalid(p + "per-token int8 activations (W8A8) need an Int8PerChannel weight");
  if (w.act_quant == ActQuant::Bf16 && (w.layout != WeightLayout::Dense || w.dtype() != DType::BF16))
    return Status::invalid(p + "bf16 activations need a dense bf16 weight, got " + w.values.describe());
  return Status::Ok();
}

Status check_sparse24_meta(const Weight& w, const char* who) {
  const int64_t groups = w.k / 4;
  const auto* meta = w.meta.as<const uint8_t>();
  for (int64_t n = 0; n < w.n; ++n)
    for (int64_t g = 0; g < groups; ++g) {
      const unsigned b = meta[n * groups + g];
      if ((b >> 4) != 0 || (b & 3u) >= (b >> 2))
        return Status::invalid(std::string(who) + ": 2:4 sparse meta byte 0x" + "0123456789abcdef"[b >> 4] +
                               "0123456789abcdef"[b & 15] + " at row " + std::to_string(n) + ", group " +
                               std::to_string(g) + " is not i0 | i1 << 2 with i0 < i1 <= 3");
    }
  return Status::Ok();
}

Status check_same_shape(const char* op, const Tensor& a, const Tensor& b) {
  if (a.numel() != b.numel() || a.cols() != b.cols())
    return Status::invalid(std::string(op) + ": shape mismatch " + a.describe() + " vs " + b.describe());
  return Status::Ok();
}

std::unique_ptr<Backend> make_ref_backend();
std::unique_ptr<Backend> make_cpu_backend();
#ifdef CB_HAVE_CUDA_BACKEND
std::unique_ptr<Backend> make_cuda_backend();  // nullptr when no GPU is usable
#endif

std::unique_ptr<Backend> make_backend(const std::string& name) {
  if (name == "ref") return make_ref_backend();
  if (name == "cpu") return make_cpu_backend();
#ifdef CB_HAVE_CUDA_BACKEND
  if (name == "cuda") {
    auto b = make_cuda_backend();
    if (!b) throw std::runtime_error("backend 'cuda': built with CUDA but no usable GPU was found");
    return b;
  }
#endif
  std::string known;
  for (const auto& n : available_backends()) known += (known.empty() ? "" : ", ") + n;
  throw std::invalid_argument("unknown backend '" + name + "' (available: " + known + ")");
}

std::vector<std::string> available_backends() {
  std::vector<std::string> out{"ref", "cpu"};
#ifdef CB_HAVE_CUDA_BACKEND
  if (make_cuda_backend()) out.push_back("cuda");
#endif
  return out;
}

}  // namespace cb::kernels
