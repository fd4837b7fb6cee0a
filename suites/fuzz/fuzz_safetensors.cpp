// Fuzzes the safetensors header and tensor table: parse_safetensors() is what
// SafetensorsFile::open() runs on a mapped file. Contract: ModelError on bad input.
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "cb/engine/model/errors.h"
#include "cb/engine/model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto h = cb::engine::parse_safetensors(data, size, "fuzz.safetensors");
    // What SafetensorsFile::view() relies on: every accepted tensor lies inside the input.
    for (const auto& [name, ti] : h.tensors) {
      if (ti.begin > ti.end || h.data_start + ti.end > size) {
        std::fprintf(stderr, "tensor '%s' [%zu, %zu) outside the %zu-byte input\n", name.c_str(), ti.begin, ti.end, size);
        std::abort();
      }
    }
  } catch (const cb::engine::ModelError&) {
  }
  return 0;
}
