// Element types the cpu kernels overload on: f16 and bf16 are both 16-bit patterns, so they get
// distinct wrapper types and a V struct's load() picks the right conversion.
#pragma once

#include <cstdint>

namespace cb::kernels::cpu {

struct f16_t {
  uint16_t bits;
};
struct bf16_t {
  uint16_t bits;
};
static_assert(sizeof(f16_t) == 2 && sizeof(bf16_t) == 2, "half types must be 2 bytes");

}  // namespace cb::kernels::cpu
