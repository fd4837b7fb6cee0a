// The suites `claimbench run` knows, and what each needs. A suite runs in its own child process
// (so a crash or a hang becomes an ERROR / TIMEOUT entry and the other suites still run) and
// writes <suite>.json into the run folder.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cb/harness/core/suite.h"

namespace cb::harness {

const std::vector<SuiteInfo>& all_suites();
const SuiteInfo* find_suite(const std::string& name);

// The suites that measure an endpoint or the machine (no engine linked). The engine-side suites
// (engine, accuracy, scaling) are declared in cb/harness/engine/suites.h and reach the registry
// through EngineAccess (cb/harness/core/engine_access.h).
SuiteResult run_kernels_suite(const SuiteContext& ctx);
SuiteResult run_cost_suite(const SuiteContext& ctx);
SuiteResult run_load_suite(const SuiteContext& ctx);
SuiteResult run_transport_suite(const SuiteContext& ctx);  // the HTTP path's own cost
// wrk's console output -> {"requests_per_s", "latency_ms_p50", "latency_ms_p99", "non_2xx",
// "socket_errors"} (keys absent when wrk did not print them).
nlohmann::json parse_wrk_output(const std::string& text);

// Where the Google Benchmark binary is (next to the build's other tools), or empty.
std::filesystem::path kernel_bench_binary();

}  // namespace cb::harness
