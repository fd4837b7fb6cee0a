// Named load workloads (workloads/<name>.json, format in workloads/README.md), request traces
// (CSV), arrival processes, and the request plan a run replays.
//
// Arrival processes (times in seconds from the run start, the first request at t = 0):
//   poisson: exponential inter-arrival gaps with mean 1/rate.
//   gamma:   gamma-distributed gaps with mean 1/rate and shape k = burstiness, scale 1/(rate * k),
//            the convention of vLLM's benchmark_serving: burstiness 1 is Poisson, < 1 burstier
//            (coefficient of variation of the gaps = 1/sqrt(k), so 0.25 gives CV 2), > 1 more even.
//   trace:   arrival times from a CSV, divided by time_scale (2 = twice as fast); a rate given to a
//            trace run sets time_scale = rate / the trace's own mean rate.
//   closed:  a fixed number of requests in flight (concurrency); each completion issues the next.
// Every source of randomness has its own seed (arrivals, prompt lengths, output lengths, prompt
// token ids), derived from the workload's seed and the run's --seed, and recorded in params.
#pragma once

#include <cstdint>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cb/harness/load/stats.h"
#include "cb/harness/load/sut.h"

namespace cb::harness::load {

// A workload file or trace that cannot be used: the message names the file and the field or line.
class WorkloadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Token-count distribution: {"dist": "fixed", "value": n} | {"dist": "uniform", "min", "max"} |
// {"dist": "lognormal", "median", "sigma", "min", "max"} (clipped to [min, max]).
struct LengthDist {
  std::string dist = "fixed";
  int value = 16, min = 1, max = 16;
  double median = 16, sigma = 0.5;
  int sample(std::mt19937_64& rng) const;
  int upper() const { return dist == "fixed" ? value : max; }
  nlohmann::json to_json() const;
};

struct ArrivalSpec {
  std::string process = "poisson";  // poisson | gamma | trace | closed
  double rate_rps = 1;
  double burstiness = 1;            // gamma only
  std::filesystem::path trace;      // trace only (relative paths: from the workloads folder)
  double time_scale = 1;            // trace only
  int concurrency = 1;              // closed only
  nlohmann::json to_json() const;
};

struct TraceRow {
  double arrival_s = 0;
  int prompt_tokens = 0;
  int output_tokens = 0;
};
// Reads `arrival_s,prompt_tokens,output_tokens` (header required, '#' comment lines allowed) with
// libfccp. Checks: arrivals >= 0 and non-decreasing, prompt >= 1, output >= 1, and
// prompt + output <= max_context when max_context > 0. Throws WorkloadError("FILE:LINE: ...").
std::vector<TraceRow> read_trace_csv(const std::filesystem::path& file, int max_context = 0);

struct WorkloadSpec {
  std::filesystem::path file;
  std::string name, description;
  uint64_t seed = 1;
  bool quick = false;             // the quick variant's overrides were applied
  ArrivalSpec arrival;
  LengthDist prompt_tokens, output_tokens;  // unused by trace workloads
  Slo slo;
  double duration_s = 10;         // minimum run duration (open loop: arrivals span at least this)
  size_t min_requests = 100;      // minimum request count (and completed, for validity)
  size_t max_requests = 100000;   // cap on the plan
  ValidityRules validity;         // min_duration_s / min_completed default to the two above
  nlohmann::json sweep = nlohmann::json::array();        // offered rates (req/s) for rate sweeps
  nlohmann::json slo_search = nlohmann::json::object();  // {start_rps, min_rps, max_rps, max_trials, rel_tolerance}
  nlohmann::json engine = nlohmann::json::object();      // in-process engine settings this workload asks for
  nlohmann::json effective;       // the spec after applying "quick", as recorded in params
};

// The workloads folder of the source tree (CB_SOURCE_DIR/workloads).
std::filesystem::path workloads_dir();
// Reads workloads/<name>.json (or a path), applies the "quick" object as a JSON merge patch when
// quick is set, and checks every field. Throws WorkloadError naming the file and field.
WorkloadSpec load_workload(const std::string& name_or_path, bool quick);
WorkloadSpec parse_workload(const nlohmann::json& j, const std::filesystem::path& file, bool quick);

// Inter-arrival processes, seeded; n arrival times starting at 0.
std::vector<double> poisson_arrivals(double rate_rps, size_t n, uint64_t seed);
std::vector<double> gamma_arrivals(double rate_rps, double burstiness, size_t n, uint64_t seed);

// Seeds of each randomness source, derived from (workload seed, run seed, source name).
struct Seeds {
  uint64_t arrivals = 0, prompt_lengths = 0, output_lengths = 0, prompt_ids = 0;
  nlohmann::json to_json() const;
};
Seeds derive_seeds(uint64_t workload_seed, uint64_t run_seed);

struct PlannedRequest {
  double arrival_s = 0;  // open loop only
  LoadRequest req;
};

// Everything one run replays, built before the timed region.
struct Plan {
  std::string workload;
  bool closed_loop = false;
  int concurrency = 0;            // closed loop
  double rate_rps = 0;            // requested offered rate (open loop)
  double duration_s = 0;          // requested minimum duration
  size_t min_requests = 0;
  std::vector<PlannedRequest> requests;
  Seeds seeds;
  nlohmann::json requested;       // the requested settings, for params
};

struct PlanOptions {
  uint64_t run_seed = 1;
  double rate_rps = 0;        // > 0 overrides the workload's rate (sweeps, SLO search)
  int concurrency = 0;        // > 0 runs the workload closed-loop at this concurrency instead
  int bos_token = -1;         // >= 0: first token of every prompt
  int max_context = 0;        // > 0: prompt + output must fit (traces are checked, lengths clipped)
  int vocab_limit = 256;      // prompt ids drawn from [0, vocab_limit)
  // Text prompts (servers that take no token ids): the seeded ids become text through to_text
  // (invalid UTF-8 replaced by U+FFFD), cut back to the planned length in tokens where the
  // encoding is longer, and `prompt` becomes encode(text): the token counts the harness reports
  // are the tokenizer's count of the text the server receives.
  std::function<std::string(const std::vector<int32_t>&)> to_text;
  std::function<std::vector<int32_t>(const std::string&)> encode;
};

// Bytes -> valid UTF-8: each invalid or truncated sequence becomes U+FFFD (as JSON needs).
std::string valid_utf8(const std::string& s);
Plan make_plan(const WorkloadSpec& w, const PlanOptions& o);

}  // namespace cb::harness::load
