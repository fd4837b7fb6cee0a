// The AVX-512 table with the W8A8 GEMMs on AVX512_VNNI (vpdpbusd: row-major and quad panels): every
// other kernel stays the base AVX-512 one. Only this region carries the VNNI target; the backend calls this table only
// after __builtin_cpu_supports("avx512vnni") (see cpu_isa_avx512.cpp for the GCC 12 warnings).
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
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")
#define CB_DOT_VNNI
#include "../cpu_simd_avx512.h"
#include "../cpu_dot_avx512.h"
#include "../cpu_algos_dot.h"
#include "../cpu_algos_packed.h"

namespace cb::kernels::cpu {
const KernelTable& kernels_avx512_vnni() {
  static const KernelTable table = [] {
    KernelTable t = kernels_avx512();
    t.isa = Isa::Avx512Vnni;
    t.w8a8_x_offset = DVnniI8::kXOffset;
    t.w8a8 = &w8a8_range<DVnniI8>;
    t.w8a8_small = &w8a8_range<DVnniI8W>;
    t.w8a8_small_max_m = DVnniI8W::kMaxRows;
    t.packed_w8a8 = &packed_w8a8<VAvx512>;
    return t;
  }();
  return table;
}
}  // namespace cb::kernels::cpu
#pragma GCC pop_options
