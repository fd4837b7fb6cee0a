// `claimbench run`: creates a run folder (never overwriting), writes the manifest, runs each
// requested suite in a child process with a timeout, and records what each produced.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "cb/harness/suites/suites.h"

namespace cb::harness {

struct RunOptions {
  std::vector<std::string> suites;  // names, or {"all"}
  bool quick = false;
  std::string sut = "inprocess";
  std::string driver = "native";  // load suite: "native" (own generator) or "locust"
  std::string backend = "cpu";    // engine backend for in-process suites (SuiteContext::backend)
  std::filesystem::path model_dir;
  std::filesystem::path out_base;   // default: <source>/results/runs
  uint64_t seed = 1;
  std::string command_line;
  double timeout_scale = 1.0;       // multiplies every suite's timeout
  int repetitions = 0;              // kernels suite: repetitions per benchmark (0 = default)
  std::filesystem::path ppl_text;   // accuracy suite: bring-your-own text file for perplexity
  std::filesystem::path qa_jsonl;   // accuracy suite: bring-your-own prompt/answer pairs (JSONL)
  std::vector<std::string> planted_defects;  // engine defects to plant (planted_defects.h); recorded in the manifest
  std::filesystem::path cost_defaults;  // cost suite: prices and hardware costs (default suites/claims/cost-defaults.json)
  std::string bench_filter;         // kernels suite: benchmark regex instead of the default set
  std::string server_profile;       // --sut http://: profile name or JSON path (empty = detect)
  std::filesystem::path tokenizer_dir;  // --sut http://: checkpoint folder with the tokenizer (empty = model folder)
  double power_watts = 0;           // load suite: stated SUT power when no sensor answers (labelled supplied)
};

// Runs and returns the run folder. Throws std::invalid_argument for unknown suites / bad options
// before anything is written.
std::filesystem::path execute_run(const RunOptions& opt, const std::filesystem::path& self_exe);

// The child side: runs one suite and writes <suite>.json (+ CSVs) into ctx.run_dir.
int run_suite_child(const std::string& suite, const SuiteContext& ctx);

std::filesystem::path default_results_dir();

}  // namespace cb::harness
