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

Status check_same_shape(const char* op, const Tensor& a, const Tensor& b) {
  if (a.numel() != b.numel() || a.cols() != b.cols())
    return Status::invalid(std::string(op) + ": shape mismatch " + a.describe() + " vs " + b.describe());
  return Status::Ok();
}

std::unique_ptr<Backend> make_ref_backend();
std::unique_ptr<Backend> make_cpu_backend();
#ifdef CB_HAVE_CUDA
std::unique_ptr<Backend> make_cuda_backend();  // nullptr when no GPU is usable
#endif

std::unique_ptr<Backend> make_backend(const std::string& name) {
  if (name == "ref") return make_ref_backend();
  if (name == "cpu") return make_cpu_backend();
#ifdef CB_HAVE_CUDA
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
#ifdef CB_HAVE_CUDA
  if (make_cuda_backend()) out.push_back("cuda");
#endif
  return out;
}

}  // namespace cb::kernels
