// Claim sets and `claimbench check`: a claim set (suites/claims/*.json) turns each claim of an
// article into a metric, a comparator and a threshold; `evaluate` reads a run folder and gives each
// claim a verdict from the 95% interval of its repeated trials (claim_stats.h): PASS (the interval
// clears the threshold), FAIL (it lies wholly on the failing side), INCONCLUSIVE (it straddles the
// threshold, or too few trials for an interval), INVALID (the run behind the metric broke its
// suite's validity rules: params.valid == false), SKIP (hardware it needs is absent), NOT MEASURED
// (the metric is not in the run) or ERROR (its suite failed, or the value is NaN). SKIP is never
// turned into PASS. Claims of kind "arithmetic" (checks of published figures) and "simulation"
// (models run on assumed inputs) are reported in their own section and never counted among the
// measured verdicts.
//
// Claim-set schema (schema "claimbench.claimset", schema_version "1.0"):
//   {
//     "$comment": "...",                        // any key starting with '$' is a comment, ignored
//     "schema": "claimbench.claimset", "schema_version": "1.0",
//     "name": "deepseek-article",               // string, required
//     "source": "where the claims come from",   // string, required
//     "claims": [                               // array, required, ids unique
//       { "id": "util-busy",                    // string, required, unique, non-empty
//         "claim": "our wording",               // string, required
//         "figure": "the article's figure",     // string, required
//         "suite": "load",                      // string, required: the suite that measures it
//         "kind": "measurement",                // optional: measurement (default) | arithmetic | simulation
//         "unit": "fraction",                   // string, optional
//         "scope": "what is compared",          // string, optional (printed next to the verdict)
//         // single-metric form:
//         "metric": "load.util.busy_fraction",  // string
//         "comparator": ">=",                   // one of >=, <=, >, <, ==
//         "threshold": 0.82,                    // number
//         "tolerance": 0.005,                   // number >= 0, only with "==" (|v - t| <= tol); default 0
//         // or the multi-part form (all parts must hold), instead of metric/comparator/threshold:
//         "conditions": [ {"metric", "comparator", "threshold", "tolerance"?, "unit"?, "suite"?}, ... ],
//         "requires": {"gpus": 8}                // optional; keys: "gpus": n, "devices": n,
//                                               //   "cpu_flags": ["avx512_bf16", ...], "any_of": [req, ...];
//                                               //   several keys in one object must all hold
//       } ] }
// Unknown keys (other than '$...') are errors, so a typo cannot silently drop a threshold.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cb/harness/verdicts/claim_stats.h"
#include "cb/harness/core/results.h"

namespace cb::harness {

// What a claim's check is: a measurement on this machine, arithmetic on published figures, or a
// simulation on assumed inputs. Only measurements count in the measured tally.
enum class ClaimKind { Measurement, Arithmetic, Simulation };
const char* to_string(ClaimKind k);  // "measurement", "arithmetic", "simulation"
ClaimKind claim_kind_from_string(const std::string& s, const std::string& where);

struct Condition {
  std::string metric;
  Comparator comparator = Comparator::GE;
  double threshold = 0;
  double tolerance = 0;  // only meaningful for EQ
  std::string unit;      // defaults to the claim's unit
  std::string suite;     // defaults to the claim's suite
};

// What hardware a claim needs. Every field that is set must hold; any_of needs one alternative.
struct Requirement {
  std::optional<int> gpus;
  std::optional<int> devices;
  std::vector<std::string> cpu_flags;
  std::vector<Requirement> any_of;
  std::string describe() const;  // "8 GPUs", "avx512_bf16 CPU flag or 1 GPU", ...
};

struct Claim {
  std::string id;
  std::string claim;   // our wording
  std::string figure;  // the article's figure, as text
  std::vector<Condition> conditions;  // one for the single-metric form
  std::string unit;
  std::string suite;
  std::string scope;
  ClaimKind kind = ClaimKind::Measurement;
  std::optional<Requirement> requirement;  // JSON key "requires"
};

struct ClaimSet {
  std::filesystem::path file;  // where it was loaded from
  std::string name;
  std::string source;
  std::vector<Claim> claims;
  const Claim* find(const std::string& id) const;
};

// Throws SchemaError naming the file, the JSON path ("claims[3].comparator") and the problem.
ClaimSet load_claim_set(const std::filesystem::path& path);
// The same checks on an in-memory document; `source` names it in error messages.
ClaimSet claim_set_from_json(const nlohmann::json& j, const std::string& source);

enum class Verdict { Pass, Fail, Inconclusive, Invalid, Skip, NotMeasured, Error };
// "PASS", "FAIL", "INCONCLUSIVE", "INVALID", "SKIP", "NOT MEASURED", "ERROR"
const char* to_string(Verdict v);
Verdict verdict_from_string(const std::string& s, const std::string& where);

struct ConditionResult {
  Condition condition;
  std::optional<double> measured;  // absent when the metric is not in the run; may be NaN
  std::optional<Interval> interval;  // 95% interval of its trials, when it has one
  Verdict verdict = Verdict::NotMeasured;
  std::string reason;
};

struct ClaimResult {
  std::string id;
  std::string description;  // the claim's wording
  std::string figure;
  std::string metric;       // the first condition's metric key
  std::string unit;
  std::optional<double> measured;  // the first condition's value
  std::optional<Interval> interval;  // the first condition's
  ClaimKind kind = ClaimKind::Measurement;
  Comparator comparator = Comparator::GE;  // the first condition's
  double threshold = 0;
  double tolerance = 0;
  Verdict verdict = Verdict::NotMeasured;
  std::string reason;  // empty for a plain PASS/FAIL of a single condition
  std::string scope;
  std::vector<ConditionResult> parts;  // every condition (one for single-metric claims)
};

// The hardware a run had, as `evaluate` reads it from manifest.hardware / manifest.params.
struct RunHardware {
  int gpus = 0;
  int devices = 1;       // the claim's suite's params, else manifest.params devices|ranks|world_size, else GPU count, else 1
  std::string devices_from;  // where `devices` came from, for reasons
  std::vector<std::string> cpu_flags;
  bool recorded = false;  // manifest has a "hardware" object
};
RunHardware run_hardware(const nlohmann::json& manifest, const nlohmann::json& suite_params = nlohmann::json());
// nullopt when the requirement holds, else "needs X; this machine has Y".
std::optional<std::string> unmet(const Requirement& r, const RunHardware& hw);

std::vector<ClaimResult> evaluate(const ClaimSet& set, const RunData& run);

// Counts per verdict, every verdict present (zero when none), of the measurement claims only or
// of the others (arithmetic and simulation).
std::map<std::string, int> count_verdicts(const std::vector<ClaimResult>& results, bool measurements = true);
// "measured: 3 PASS, 5 FAIL, 1 INCONCLUSIVE, 0 INVALID, 2 SKIP, 10 NOT MEASURED, 1 ERROR", then
// "; not measurements (arithmetic, simulation): 2 PASS, 1 FAIL" when there are such claims.
std::string summary_line(const std::vector<ClaimResult>& results);
// Fixed-width table: id, measured (unit), 95% interval, threshold, verdict, scope; a reason line
// under each row that is not a plain PASS/FAIL; the arithmetic and simulation claims in a section
// of their own; the summary line last.
void print_claims_table(std::ostream& os, const std::vector<ClaimResult>& results);

// claims.json as pinned in docs/contracts.md (multi-part claims also carry "conditions").
nlohmann::json claims_to_json(const std::vector<ClaimResult>& results, const std::string& claim_set_file,
                              const std::string& run_dir);

struct ClaimsReport {
  std::string claim_set;
  std::string run_dir;
  std::vector<ClaimResult> results;
  std::map<std::string, int> counts;  // measurement claims
  std::map<std::string, int> counts_not_measurements;
};
// Reads claims.json back (schema "claimbench.claims"); throws SchemaError.
ClaimsReport load_claims_json(const std::filesystem::path& path);
ClaimsReport claims_report_from_json(const nlohmann::json& j, const std::string& source);

// 0 when no claim is FAIL, INVALID or ERROR; 1 when some claim FAILs or is INVALID (0 with
// allow_fail); 2 when some claim is ERROR (a broken measurement is never allowed). INCONCLUSIVE
// is not a failure: it says the run's noise allows no call.
int check_exit_code(const std::vector<ClaimResult>& results, bool allow_fail = false);

}  // namespace cb::harness
