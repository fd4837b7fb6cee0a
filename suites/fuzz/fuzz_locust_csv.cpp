// Fuzzes Locust's CSV output (PREFIX_stats.csv, PREFIX_stats_history.csv) through
// parse_locust_stats() and parse_locust_history(), each on the same input. Contract: only
// LocustCsvError escapes, and its message starts with "FILE:LINE: " (the file passed in, a line
// number); a field it cannot convert also names the column.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "cb/harness/load/locust.h"
#include "fuzz_fccp_buffer.h"  // libfccp's 48 MiB reader buffer, reused (the speed; see there)
#include "fuzz_input_file.h"

namespace {

// "FILE:LINE: ..." with FILE the path given and LINE a number.
void check_message(const std::string& file, const char* what) {
  const std::string m = what;
  size_t i = file.size() + 1;
  bool ok = m.compare(0, file.size(), file) == 0 && m.size() > i && m[file.size()] == ':';
  const size_t digits = i;
  while (ok && i < m.size() && m[i] >= '0' && m[i] <= '9') ++i;
  ok = ok && i > digits && m.compare(i, 2, ": ") == 0;
  if (!ok) {
    std::fprintf(stderr, "LocustCsvError without FILE:LINE: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto stats = fuzz_input_file(data, size, "run_stats.csv");
  try {
    for (const auto& r : cb::harness::parse_locust_stats(stats)) (void)r.name.size();
  } catch (const cb::harness::LocustCsvError& e) {
    check_message(stats.string(), e.what());
  }
  const auto history = fuzz_input_file(data, size, "run_stats_history.csv");
  try {
    (void)cb::harness::parse_locust_history(history);
  } catch (const cb::harness::LocustCsvError& e) {
    check_message(history.string(), e.what());
  }
  return 0;
}
