// The load suite's Locust driver (`claimbench run --suite load --driver locust`): starts
// `refengine serve` (or uses the --sut http://HOST:PORT endpoint), runs Locust headless for a
// bounded time with workloads/locust/locustfile.py, reads Locust's CSV output (stats and history)
// into the suite's results, and stops everything it started on every exit path.
//
// Locust's figures go under load.locust.* and stay apart from the native generator's
// load.throughput.*: Locust measures with its own clock, client and rounding (see parse notes).
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "cb/harness/core/results.h"
#include "cb/harness/suites/suites.h"

namespace cb::harness {

// A Locust CSV that cannot be read: the message names the file, the line and the column.
class LocustCsvError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The percentile columns Locust 2.x writes ("50%" ... "100%"), in file order.
const std::vector<std::string>& locust_percentile_columns();

// One row of PREFIX_stats.csv. Times in ms. A percentile Locust wrote as "N/A" (no requests)
// is absent from the map.
struct LocustStatsRow {
  std::string type;  // request type: "POST", "TTFT", or "" for the "Aggregated" row
  std::string name;
  long long request_count = 0;
  long long failure_count = 0;
  double median_ms = 0, avg_ms = 0, min_ms = 0, max_ms = 0;
  double avg_content_size = 0;
  double requests_per_s = 0, failures_per_s = 0;
  std::map<std::string, double> percentiles_ms;  // column name ("50%") -> ms
};

// One row of PREFIX_stats_history.csv (one per entry per second with --csv-full-history).
// requests_per_s and the percentiles are Locust's "current" (sliding-window) values.
struct LocustHistoryRow {
  long long timestamp = 0;  // Unix seconds
  long long user_count = 0;
  std::string type, name;
  double requests_per_s = 0, failures_per_s = 0;
  std::map<std::string, double> percentiles_ms;
  long long total_request_count = 0, total_failure_count = 0;
  double total_median_ms = 0, total_avg_ms = 0, total_min_ms = 0, total_max_ms = 0, total_avg_content_size = 0;
};

// Parse with libfccp; throw LocustCsvError("FILE:LINE: column 'NAME' (#N): ...").
std::vector<LocustStatsRow> parse_locust_stats(const std::filesystem::path& path);
std::vector<LocustHistoryRow> parse_locust_history(const std::filesystem::path& path);

// Table rows (flat objects, CSV-able) for the suite's "locust_stats" / "locust_history" tables.
nlohmann::json locust_stats_table(const std::vector<LocustStatsRow>& rows);
nlohmann::json locust_history_table(const std::vector<LocustHistoryRow>& rows);

// Everything one Locust run needs; run_locust_load fills it from a SuiteContext.
struct LocustRunOptions {
  std::filesystem::path out_dir;      // CSVs and logs go here (the run's raw/locust/)
  std::vector<std::string> server_argv;  // server to start (must print "listening on http://..."); empty: use host
  std::string host;                   // endpoint to drive when server_argv is empty (http://HOST:PORT)
  std::vector<std::string> locust_argv = {"/usr/bin/locust"};  // the Locust executable (+ leading args)
  std::filesystem::path locustfile;
  std::filesystem::path workload;     // JSON request mix passed to the locustfile (empty: its default)
  bool quick = false;                 // use the workload's "quick" variant
  int users = 4;
  double spawn_rate = 4;              // users started per second
  int duration_s = 10;
  // Locust's --stop-timeout: at the end of the run time each user finishes the request it is in
  // (recorded like any other) and stops between requests. Without it Locust kills users mid-stream,
  // which drops the slowest requests from the figures and sometimes deadlocks Locust 2.12 (the kill
  // lands in urllib3's connection release under gevent; the other users then run on until our
  // time limit). A request still running after this many seconds is killed; 0 kills at once.
  int stop_timeout_s = 60;
  uint64_t seed = 1;
  int max_tokens_cap = 0;             // > 0: the locustfile clips max_tokens (tests)
  double server_start_timeout_s = 120;  // loading a model can take a while
};

// What a Locust run produced; run_locust_load turns it into a SuiteResult.
struct LocustRunOutput {
  std::string host;                   // the endpoint Locust drove
  std::vector<std::string> command;   // the Locust command line as run (env -i ... /usr/bin/locust ...)
  std::string locust_version;
  std::filesystem::path stats_csv, history_csv, failures_csv;
  std::vector<LocustStatsRow> stats;
  std::vector<LocustHistoryRow> history;
  bool server_started = false;
  bool server_died = false;           // the started server exited before Locust finished
  std::string server_exit;            // how the started server ended ("exit code 0", ...)
  bool stopped_after_final_stats = false;  // Locust hung after writing its final stats and was stopped
};

// Runs one bounded Locust session. Throws std::runtime_error naming what failed (server did not
// come up, Locust timed out / crashed / was interrupted, CSV unreadable); kills what it started
// first.
LocustRunOutput run_locust(const LocustRunOptions& o);

// Builds the suite result (metrics load.locust.*, tables, params) from a run's output.
SuiteResult locust_suite_result(const LocustRunOptions& o, const LocustRunOutput& out);

// The whole driver: Skipped when Locust is not installed, NotBuilt when there is no refengine to
// serve and no --sut endpoint, Error when the run fails.
SuiteResult run_locust_load(const SuiteContext& ctx);

// Locust's installed version ("2.12.1"), or empty. Debian's package reports no version through
// `locust --version`, so this falls back to dpkg's.
std::string locust_version(const std::vector<std::string>& locust_argv);

}  // namespace cb::harness
