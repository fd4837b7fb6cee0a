// What a suite is: a function from a SuiteContext (run folder, model, SUT, options) to a
// SuiteResult. The registry of suites `claimbench run` knows is cb/harness/suites/suites.h.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include "cb/harness/core/results.h"

namespace cb::harness {

struct SuiteContext {
  std::filesystem::path run_dir;
  std::filesystem::path model_dir;  // model for engine-level measurements
  std::string sut = "inprocess";    // "inprocess", "null" or "http://HOST:PORT"
  std::string driver = "native";    // load suite: "native" (own load generator) or "locust"
  // The reference engine's backend for in-process measurements (ref, cpu, cuda): the engine,
  // accuracy, load and transport suites open the model on it; the kernels and scaling suites
  // measure the cpu backend only and skip (with the reason) for any other.
  std::string backend = "cpu";
  bool quick = false;
  uint64_t seed = 1;
  int repetitions = 0;       // kernels suite: benchmark repetitions (0 = default 5)
  std::filesystem::path ppl_text;  // accuracy suite: bring-your-own perplexity text (empty = none)
  std::filesystem::path qa_jsonl;  // accuracy suite: bring-your-own {"prompt","answer"} lines (empty = none)
  // --sut http://: the server profile (name or JSON path; empty = detect) and the checkpoint folder
  // whose tokenizer turns token-id prompts into text for servers that take text only (empty = the
  // model folder).
  std::string server_profile;
  std::filesystem::path tokenizer_dir;
  // Load suite: total power in watts the user states for the SUT (0 = none), used by the cost
  // suite only where no sensor measured power, and always labelled as supplied.
  double power_watts = 0;
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
  // Test hook: a self-test suite (selftest-*), present only with CB_TEST_SUITES=1 and
  // never part of "all".
  bool test_only = false;
};

// A suite that cannot run in this build: status not_built with the reason.
SuiteResult not_built_suite(const std::string& name, const std::string& reason);

// The committed default model (reference/models/default of the source tree).
std::filesystem::path default_model_dir();

}  // namespace cb::harness
