// The AVX-512 + VNNI table with the bf16 dot-product GEMM on AVX512_BF16 (vdpbf16ps). Only this
// region carries the BF16 target; the backend calls this table only after
// __builtin_cpu_supports("avx512bf16") (see cpu_isa_avx512.cpp for the GCC 12 warnings).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../cpu_kernels.h"
#include "../cpu_types.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,avx512bf16,avx2,fma,f16c")
#define CB_DOT_BF16
#include "../cpu_simd_avx512.h"
#include "../cpu_dot_avx512.h"
#include "../cpu_algos_dot.h"
#include "../cpu_algos_packed.h"

namespace cb::kernels::cpu {
const KernelTable& kernels_avx512_bf16() {
  static const KernelTable table = [] {
    KernelTable t = kernels_avx512_vnni();
    t.isa = Isa::Avx512Bf16;
    t.bf16dot = &bf16dot_range<DBf16>;
    t.packed_bf16dot = &packed_bf16dot<VAvx512>;
    return t;
  }();
  return table;
}
}  // namespace cb::kernels::cpu
#pragma GCC pop_options
