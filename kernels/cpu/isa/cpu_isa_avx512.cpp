// The kernels of cpu_algos.h compiled for AVX-512 (F, BW, VL) with FMA and F16C. Only this
// region carries the target: the library stays loadable on any x86-64, and the backend calls
// this table only after __builtin_cpu_supports says the machine has these features.
//
// GCC 12's AVX-512 headers seed some results with a self-initialized `__Y = __Y` (e.g. in
// _mm512_min_ps, _mm512_scalef_ps), which -Wuninitialized reports wherever they are inlined
// (GCC bug 105593); the warning is silenced for this file only.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "../cpu_kernels.h"
#include "../cpu_types.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")
#include "../cpu_simd_avx512.h"
#include "../cpu_dot_avx512.h"
#include "../cpu_algos.h"

namespace cb::kernels::cpu {
const KernelTable& kernels_avx512() {
  static const KernelTable table = make_table<VAvx512, DAvx512I8>(Isa::Avx512);
  return table;
}
}  // namespace cb::kernels::cpu
#pragma GCC pop_options
