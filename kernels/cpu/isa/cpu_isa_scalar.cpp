// The kernels of cpu_algos.h with one-float "vectors": the portable fallback, and the path
// $CB_CPU_ISA=scalar forces so it is tested on every machine.
#include "../cpu_simd_scalar.h"
#include "../cpu_algos.h"

namespace cb::kernels::cpu {
const KernelTable& kernels_scalar() {
  static const KernelTable table = make_table<VScalar, DScalarI8>(Isa::Scalar);
  return table;
}
}  // namespace cb::kernels::cpu
