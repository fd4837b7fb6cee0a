// `claimbench gate`: the CI performance gate, in two modes.
//
// Baseline mode: a new run is compared with the committed baseline whose hardware fingerprint
// (harness/environment.h: CPU vendor, family, model, stepping, microcode, ISA flags, cores,
// threads, hypervisor, GPUs) equals the run's. Where none matches, the gate is SKIP with the
// reason (this machine class, the classes that have baselines, the command that makes one): a
// baseline from another machine class is never used, so a machine difference can neither fail
// nor pass the gate.
//
// A/B mode: two builds of cb_kernel_bench (base and candidate) run the same benchmarks on this
// machine in one job, interleaved in rounds whose order alternates (AB, BA, AB, ...) so that the
// drift of a shared machine lands on both sides alike. Each side becomes a run folder of the
// results schema, and the candidate is judged against the base by `compare`'s rules (two-sided
// Mann-Whitney U on the raw repetitions, relative threshold). This is how CI perf systems on
// shared runners work (no stored absolute numbers), and it holds on any machine.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cb/harness/verdicts/compare.h"
#include "cb/harness/core/results.h"

namespace cb::harness {

// Exit codes of `claimbench gate` (77 is the automake / CTest convention for "skipped").
inline constexpr int kGatePass = 0;
inline constexpr int kGateFail = 1;
inline constexpr int kGateSkip = 77;

struct BaselineEntry {
  std::filesystem::path dir;
  std::string fingerprint;
  std::string machine;  // describe_machine_class of its manifest's hardware
  std::string commit;   // build.commit of its manifest
  std::string finished_at;
};
// Every `<root>/<anything>/<name>/manifest.json` (and `<root>/<name>` itself) that records a
// hardware fingerprint, newest first. A folder without one is skipped.
std::vector<BaselineEntry> list_baselines(const std::filesystem::path& root, const std::string& name);

struct GateResult {
  int exit_code = kGatePass;  // kGatePass, kGateFail or kGateSkip
  std::string verdict;        // "PASS", "FAIL" or "SKIP"
  std::string reason;         // why (always set for SKIP and FAIL)
  std::optional<CompareResult> comparison;
  std::filesystem::path baseline;  // the baseline used (baseline mode)
  nlohmann::json to_json() const;
};

// Baseline mode. `how_to_make` is printed with a SKIP: the command that records a baseline here.
GateResult gate_against_baselines(const std::filesystem::path& root, const std::string& name, const RunData& next,
                                  const CompareOptions& options, const std::string& how_to_make);

// ---- A/B mode --------------------------------------------------------------------------------
struct AbSide {
  std::string label;                 // what the user named: a ref, a build folder, a binary
  std::filesystem::path bench;       // the cb_kernel_bench binary
  std::vector<std::string> env;      // NAME=VALUE set for this side only (e.g. a planted defect)
  std::string commit;                // when known
};

// Resolves a --base / --candidate argument: a cb_kernel_bench binary, a build folder that holds
// kernels/bench/cb_kernel_bench, or a git ref of `source_dir`, which is then exported (git
// archive) and built (target cb_kernel_bench, Release) under work_dir/<commit>/, reused when
// already built. Throws std::invalid_argument naming the argument when it is none of these, and
// std::runtime_error (with the log's last lines) when the build fails.
AbSide resolve_ab_side(const std::string& spec, const std::filesystem::path& source_dir, const std::filesystem::path& work_dir,
                       const std::function<void(const std::string&)>& say);

struct AbOptions {
  AbSide base, candidate;
  int rounds = 6;                     // each round runs both sides once (order alternates)
  int repetitions = 3;                // Google Benchmark repetitions per side and round
  std::string filter;                 // --benchmark_filter (empty: the binary's everything)
  std::string min_time = "0.05";      // --benchmark_min_time (seconds)
  std::vector<std::string> env;       // NAME=VALUE for both sides (e.g. OMP_NUM_THREADS=1)
  std::filesystem::path out_dir;      // creates out_dir/<time>-ab/{base,candidate}/ and ab.json
  double timeout_s = 900;             // per benchmark process
};

struct AbResult {
  std::filesystem::path dir, base_run, candidate_run;
  nlohmann::json schedule = nlohmann::json::array();  // one entry per benchmark process, in order
};

// Runs the interleaved rounds and writes both run folders. Throws std::runtime_error naming the
// side and round when a benchmark process fails.
AbResult run_ab(const AbOptions& options, const std::function<void(const std::string&)>& say);

}  // namespace cb::harness
