// Fuzzes workload specs (workloads/*.json): load_workload() on the input as a file, with and
// without the "quick" merge patch. Contract: WorkloadError naming the file and field.
#include <cstdint>

#include <nlohmann/json.hpp>

#include "cb/harness/load/workload.h"
#include "fuzz_input_file.h"

namespace {
// A trace path is opened by parse_workload; an absolute one could name any file on this machine
// (/dev/zero ...), which is not the parser under test; such inputs are skipped. Relative ones
// resolve in the scratch folder of the input file.
bool names_absolute_path(const nlohmann::json& j) {
  if (j.is_string()) return !j.get_ref<const std::string&>().empty() && j.get_ref<const std::string&>()[0] == '/';
  if (j.is_structured())
    for (const auto& v : j)
      if (names_absolute_path(v)) return true;
  return false;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    if (names_absolute_path(nlohmann::json::parse(data, data + size))) return 0;
  } catch (const nlohmann::json::exception&) {
    // not JSON: load_workload must say so
  }
  const auto file = fuzz_input_file(data, size, "workload.json");
  for (bool quick : {false, true}) {
    try {
      const auto w = cb::harness::load::load_workload(file.string(), quick);
      (void)w.arrival.to_json();
      (void)w.prompt_tokens.to_json();
      (void)w.output_tokens.to_json();
    } catch (const cb::harness::load::WorkloadError&) {
    }
  }
  return 0;
}
