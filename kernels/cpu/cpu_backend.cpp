// Placeholder until the vectorized backend lands: the cpu backend is the ref backend.
#include "cb/kernels/backend.h"
namespace cb::kernels {
std::unique_ptr<Backend> make_ref_backend();
std::unique_ptr<Backend> make_cpu_backend() { return make_ref_backend(); }
}  // namespace cb::kernels
