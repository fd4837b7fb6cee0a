// Fuzzes claim-set files (suites/claims/*.json) and claims.json as compare/report read it back:
// load_claim_set() and load_claims_json() on the input as a file. Contract: SchemaError naming
// the file and JSON path.
#include <cstdint>

#include "cb/harness/core/results.h"
#include "cb/harness/verdicts/claims.h"
#include "fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto file = fuzz_input_file(data, size, "claims.json");
  try {
    const auto set = cb::harness::load_claim_set(file);
    for (const auto& c : set.claims)
      if (c.requirement) (void)c.requirement->describe();
  } catch (const cb::harness::SchemaError&) {
  }
  try {
    (void)cb::harness::load_claims_json(file);
  } catch (const cb::harness::SchemaError&) {
  }
  return 0;
}
