// Fuzzes request-trace CSVs (workloads/traces/*.csv) through read_trace_csv(), with and without
// a context limit. Contract: WorkloadError("FILE:LINE: ...").
#include <cstdint>

#include "cb/harness/load/workload.h"
#include "fuzz_fccp_buffer.h"  // libfccp's 48 MiB reader buffer, reused (the speed; see there)
#include "fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto file = fuzz_input_file(data, size, "trace.csv");
  for (int max_context : {0, 4096}) {
    try {
      (void)cb::harness::load::read_trace_csv(file, max_context);
    } catch (const cb::harness::load::WorkloadError&) {
    }
  }
  return 0;
}
