// Fuzzes config.json reading: ModelConfig::load() on the input as a file (JSON parse, then
// from_json with quantization_config -> CompressionConfig::from_json). Contract: ModelError on a
// bad config; a config it accepts must be written back (to_json) and read again unchanged.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "cb/engine/model/config.h"
#include "cb/engine/model/errors.h"
#include "fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto file = fuzz_input_file(data, size, "config.json");
  cb::engine::ModelConfig c;
  try {
    c = cb::engine::ModelConfig::load(file);
  } catch (const cb::engine::ModelError&) {
    return 0;
  }
  (void)c.parameter_count();
  (void)c.matmul_flops_per_token();
  // Round trip: what the engine writes for an accepted config must load again, to the same JSON.
  const nlohmann::json out = c.to_json();
  try {
    const auto again = cb::engine::ModelConfig::from_json(out, "fuzz/roundtrip.json").to_json();
    if (again != out) {
      std::fprintf(stderr, "round trip changed the config:\n%s\n%s\n", out.dump().c_str(), again.dump().c_str());
      std::abort();
    }
  } catch (const cb::engine::ModelError& e) {
    std::fprintf(stderr, "an accepted config does not load back: %s\n%s\n", e.what(), out.dump().c_str());
    std::abort();
  }
  return 0;
}
