// The results schema: one run folder per `claimbench run`, holding manifest.json, one
// <suite>.json (+ <suite>.csv) per suite, claims.json after `check`, and the log. Described for
// users in results/SCHEMA.md; versioned so readers can refuse files they do not understand.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace cb::harness {

inline constexpr int kSchemaMajor = 1;
inline constexpr int kSchemaMinor = 0;
std::string schema_version_string();  // "1.0"

// A results file that cannot be read: names the file, the JSON path and the problem.
class SchemaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class Direction { HigherIsBetter, LowerIsBetter, Neutral };
// How much run-to-run noise a metric carries on a shared machine; the regression gate uses it.
//   exact:  deterministic (byte counts, instruction counts, arithmetic); any change is real
//   ratio:  ratio of two quantities measured in the same run (noise largely cancels)
//   timing: absolute times or rates; noisy on shared machines
enum class NoiseClass { Exact, Ratio, Timing };

const char* to_string(Direction d);
const char* to_string(NoiseClass n);
Direction direction_from_string(const std::string& s, const std::string& where);
NoiseClass noise_from_string(const std::string& s, const std::string& where);

struct Metric {
  std::string key;     // dotted, e.g. "kernels.engine.decode.bw_fraction"
  double value = 0;    // the summary (median of samples unless noted)
  std::string unit;    // "GFLOP/s", "x", "fraction", "bytes", ...
  Direction direction = Direction::Neutral;
  NoiseClass noise = NoiseClass::Timing;
  std::vector<double> samples;  // raw repetitions (may be empty for exact metrics)
  nlohmann::json params = nlohmann::json::object();  // shapes, dtypes, model, ...
  std::string note;    // scope or method, shown in reports
};

enum class SuiteStatus { Ok, Error, Timeout, Skipped, NotBuilt };
const char* to_string(SuiteStatus s);
SuiteStatus suite_status_from_string(const std::string& s, const std::string& where);

struct SuiteResult {
  std::string suite;
  SuiteStatus status = SuiteStatus::Ok;
  std::string reason;  // why Error/Timeout/Skipped/NotBuilt
  double seconds = 0;
  nlohmann::json params = nlohmann::json::object();
  std::vector<Metric> metrics;
  std::map<std::string, nlohmann::json> tables;  // name -> array of row objects (CSV-able)

  const Metric* find(const std::string& key) const;
  Metric& add(Metric m);  // replaces a metric with the same key
  nlohmann::json to_json() const;
  static SuiteResult from_json(const nlohmann::json& j, const std::string& source);
};

nlohmann::json metric_to_json(const Metric& m);
Metric metric_from_json(const nlohmann::json& j, const std::string& where);

// A run folder as read back from disk.
struct RunData {
  std::filesystem::path dir;
  nlohmann::json manifest;
  std::map<std::string, SuiteResult> suites;

  static RunData load(const std::filesystem::path& dir);  // throws SchemaError
  const Metric* find_metric(const std::string& key) const;  // searches every suite
  std::string label() const;  // run id + short hardware description, for reports
};

// Throws SchemaError unless j["schema"] == expected_kind and the major version is known.
void check_schema(const nlohmann::json& j, const std::string& expected_kind, const std::string& source);

// Writes to a temp file in the same folder (PATH.tmp.PID), flushes it to disk, then renames:
// readers never see half a file. On any failure (disk full, read-only folder, file size limit)
// the temp file is removed, PATH keeps its previous contents (or stays absent), and the error
// names PATH and the system's reason.
void write_text_atomic(const std::filesystem::path& path, const std::string& text);
// Whether a file name is write_text_atomic's temp file (NAME.tmp.PID): never a result.
bool is_atomic_write_temp(const std::filesystem::path& path);
// Fault injection for tests: the next write_text_atomic of a file with this name (file name only)
// in this process writes half its bytes to the temp file, then the process kills itself with
// SIGKILL. Empty: off. `claimbench run-suite` sets it from $CB_FAULT_KILL_MID_WRITE.
void set_fault_kill_mid_write(const std::string& file_name);
void write_json_atomic(const std::filesystem::path& path, const nlohmann::json& j);
nlohmann::json read_json_file(const std::filesystem::path& path);  // SchemaError on parse errors

// Creates base/<run_id>, or base/<run_id>-2, -3, ... when it exists: a run never overwrites.
std::filesystem::path create_unique_dir(const std::filesystem::path& base, const std::string& run_id);

// CSV of a suite's metrics (key, value, unit, direction, noise, n_samples, params) and one CSV per table.
void write_suite_csvs(const std::filesystem::path& dir, const SuiteResult& r);

// Median, used for metric summaries.
double median(std::vector<double> v);

// Metric keys (docs/contracts.md, "Metric key rule"): "<suite>.<segment>.<segment>...", each
// segment snake_case ([a-z0-9_]+) or a shape token (K2048_N2048, M128, H32_KV4_D64_B16).
// A name from elsewhere (a workload, a policy, a variant, a benchmark) becomes key segments
// through metric_key_segments(): '-' -> '_', '/' -> '.'. ci/check_metric_contract.py checks
// what suites wrote against the rule and the contract's key index.
std::string metric_key_segments(std::string name);

}  // namespace cb::harness
