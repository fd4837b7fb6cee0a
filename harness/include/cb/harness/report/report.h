// The report renderer: one or several run folders side by side (e.g. two machines) rendered to
// report.md and a self-contained report.html (inline CSS and SVG charts, no network, no scripts).
// Reads only the results schema (results.h) and claims.json (docs/contracts.md, "claimbench.claims");
// output is deterministic, so reports of the same runs can be diffed.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cb/harness/core/results.h"

namespace cb::harness {

struct ReportInput {
  RunData run;
  std::optional<nlohmann::json> claims;  // claims.json of the run folder, when `check` has run
};

// Loads a run folder and its claims.json when present. Throws SchemaError for a folder that is not
// a run, or a claims.json that is not "claimbench.claims" with a known major version.
ReportInput load_report_input(const std::filesystem::path& run_dir);

// Writes out_dir/report.md and out_dir/report.html (out_dir is created; files written atomically).
// Throws std::invalid_argument when `runs` is empty.
void write_report(const std::vector<ReportInput>& runs, const std::filesystem::path& out_dir);

// The two documents as strings (what write_report writes), for tests and for other printers.
std::string render_report_markdown(const std::vector<ReportInput>& runs);
std::string render_report_html(const std::vector<ReportInput>& runs);

namespace report_detail {
// Shared between the Markdown and HTML printers (report/markdown.cpp defines them).

// Display names for the runs: run_id (or folder name), made unique with "#2", "#3" suffixes.
std::vector<std::string> run_names(const std::vector<ReportInput>& runs);

// One claim as the report shows it, merged across runs by id (order: first appearance).
struct ClaimRow {
  std::string id, description, figure, threshold_text, scope;
  std::string kind = "measurement";  // or "arithmetic" / "simulation": reported apart, never counted as measured
  std::vector<std::optional<nlohmann::json>> per_run;  // the run's result object, if it has this claim
};
std::vector<ClaimRow> merge_claims(const std::vector<ReportInput>& runs);
// The rows in report order: measurement claims first, then the arithmetic and simulation ones.
std::vector<const ClaimRow*> measurements_first(const std::vector<ClaimRow>& rows);
// "measured" as text (number, list of numbers, or "—" for null) with the unit, and the 95%
// interval of its trials when it has one ("1.2 x [1.1, 1.3]").
std::string measured_text(const nlohmann::json& result);
// "comparator threshold [unit] (tol x)".
std::string threshold_text(const nlohmann::json& result);
std::string verdict_of(const nlohmann::json& result);  // "PASS", ..., "ERROR" when missing
// Every verdict string, in the order reports list them.
const std::vector<std::string>& verdict_names();
// "measured: 3 PASS, 5 FAIL, ...; not measurements: 2 PASS" from a claims.json document.
std::string claim_counts_line(const nlohmann::json& claims);

// Hardware / build rows for the header table: label -> one cell per run.
std::vector<std::pair<std::string, std::vector<std::string>>> run_info_rows(const std::vector<ReportInput>& runs);

// Suite status rows: suite -> per run {status, seconds, reason}; status "" when the run lacks it.
struct SuiteCell {
  std::string status, reason;
  double seconds = 0;
};
std::vector<std::pair<std::string, std::vector<SuiteCell>>> suite_rows(const std::vector<ReportInput>& runs);

// Metric rows: key -> unit and per-run value (NaN when missing), sorted by key.
struct MetricRow {
  std::string key, unit;
  std::vector<std::optional<double>> values;
};
std::vector<MetricRow> metric_rows(const std::vector<ReportInput>& runs);

// Latency percentiles per run and workload from the load suite's "requests" table.
struct LatencyRow {
  size_t run = 0;
  std::string workload;
  size_t n = 0;
  double ttft_p50 = 0, ttft_p90 = 0, ttft_p99 = 0, e2e_p50 = 0, e2e_p90 = 0, e2e_p99 = 0;
};
std::vector<LatencyRow> latency_rows(const std::vector<ReportInput>& runs);
// Values of a numeric column of a table, grouped by the string column `group_col` (first-seen order).
std::vector<std::pair<std::string, std::vector<double>>> column_by_group(const nlohmann::json& rows,
                                                                         const std::string& group_col,
                                                                         const std::string& value_col);
double percentile(std::vector<double> v, double q);  // nearest-rank on sorted copy; NaN when empty

// A table of a suite when it exists and is a non-empty array of objects, else nullptr.
const nlohmann::json* suite_table(const RunData& run, const std::string& suite, const std::string& table);
bool any_load_results(const std::vector<ReportInput>& runs);

std::string num(double v);             // svg::fmt_num
std::string json_cell(const nlohmann::json& v);  // string as is, numbers via num, null as "", other dumped
}  // namespace report_detail

}  // namespace cb::harness
