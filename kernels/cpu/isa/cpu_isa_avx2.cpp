// The kernels of cpu_algos.h compiled for AVX2 with FMA and F16C. Only this region carries the
// target: the library stays loadable on any x86-64, and the backend calls this table only after
// __builtin_cpu_supports says the machine has these features.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "../cpu_kernels.h"
#include "../cpu_types.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#include "../cpu_simd_avx2.h"
#include "../cpu_dot_avx2.h"
#include "../cpu_algos.h"

namespace cb::kernels::cpu {
const KernelTable& kernels_avx2() {
  static const KernelTable table = make_table<VAvx2, DAvx2I8>(Isa::Avx2);
  return table;
}
}  // namespace cb::kernels::cpu
#pragma GCC pop_options
