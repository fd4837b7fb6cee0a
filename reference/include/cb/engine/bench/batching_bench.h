// Offline measurements of the serving engine (`refengine bench-batching`, claimbench's engine
// suite): batching policies on one seeded request mix, paged vs contiguous KV reservation on a
// long-context mix, the batch-size policy on a scripted queue, and a 16K-token request.
#pragma once

#include <filesystem>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

namespace cb::engine {

struct BatchingBenchOptions {
  std::filesystem::path model_dir;
  std::string backend = "cpu";
  uint64_t seed = 1;
  int requests = 48;          // chat mix size
  int long_requests = 8;      // long-context mix size
  int long_max_tokens = 16384;  // longest prompt + output in the long-context mix
  bool quick = false;         // smaller mixes for CI
  double peak_gflops = 0;     // machine peaks for MFU / MBU (0 = not reported)
  double peak_gbs = 0;
};

// {"policies": [...per policy: throughput, latency percentiles, busy, MFU, MBU, batch sizes],
//  "kv": {paged/contiguous peak bytes, reduction}, "batch_policy": {...}, "ctx16k": {...}}
nlohmann::json run_batching_bench(const BatchingBenchOptions& opt,
                                  const std::function<void(const std::string&)>& progress = {});

}  // namespace cb::engine
