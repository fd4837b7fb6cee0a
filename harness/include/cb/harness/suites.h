// The suites `claimbench run` knows, and what each needs. A suite runs in its own child process
// (so a crash or a hang becomes an ERROR / TIMEOUT entry and the other suites still run) and
// writes <suite>.json into the run folder.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cb/harness/results.h"

namespace cb::harness {

struct SuiteContext {
  std::filesystem::path run_dir;
  std::filesystem::path model_dir;  // model for engine-level measurements
  std::string sut = "inprocess";    // "inprocess", "null" or "http://HOST:PORT"
  std::string driver = "native";    // load suite: "native" (own load generator) or "locust"
  bool quick = false;
  uint64_t seed = 1;
  int repetitions = 0;       // kernels suite: benchmark repetitions (0 = default 5)
  std::filesystem::path ppl_text;  // accuracy suite: bring-your-own perplexity text (empty = none)
  std::filesystem::path qa_jsonl;  // accuracy suite: bring-your-own {"prompt","answer"} lines (empty = none)
  std::filesystem::path cost_defaults;  // cost suite: prices for the run's model (empty = suites/claims/cost-defaults.json)
  std::string bench_filter;  // overrides the kernels suite's benchmark selection (regex)
  std::function<void(const std::string&)> progress;  // one line of progress
};

struct SuiteInfo {
  std::string name;
  std::string description;
  int timeout_seconds_quick = 600;
  int timeout_seconds_full = 3600;
  std::function<SuiteResult(const SuiteContext&)> run;
  // Test hook: a self-test suite (selftest-*), present only with CLAIMBENCH_TEST_SUITES=1 and
  // never part of "all".
  bool test_only = false;
};

const std::vector<SuiteInfo>& all_suites();
const SuiteInfo* find_suite(const std::string& name);

// Individual suites.
SuiteResult run_kernels_suite(const SuiteContext& ctx);
SuiteResult run_engine_suite(const SuiteContext& ctx);
SuiteResult run_cost_suite(const SuiteContext& ctx);
SuiteResult run_load_suite(const SuiteContext& ctx);      // suite_load.cpp (issue #5)
SuiteResult run_accuracy_suite(const SuiteContext& ctx);  // suite_accuracy.cpp (issue #6)
SuiteResult run_scaling_suite(const SuiteContext& ctx);   // suite_scaling.cpp (issue #7)
SuiteResult run_transport_suite(const SuiteContext& ctx); // suite_transport.cpp: the HTTP path's own cost
// wrk's console output -> {"requests_per_s", "latency_ms_p50", "latency_ms_p99", "non_2xx",
// "socket_errors"} (keys absent when wrk did not print them).
nlohmann::json parse_wrk_output(const std::string& text);
// A suite whose measurements land with a later issue: status not_built with the reason.
SuiteResult not_built_suite(const std::string& name, const std::string& reason);

// Where the Google Benchmark binary is (next to the build's other tools), or empty.
std::filesystem::path kernel_bench_binary();

}  // namespace cb::harness
