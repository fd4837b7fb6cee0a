// Reads Locust's CSV output (PREFIX_stats.csv, PREFIX_stats_history.csv) with libfccp. Every
// field is read as text first and converted here, so a bad value is reported with the file, the
// line and the column it came from rather than as a bare parse failure.
//
// Locust's response times are its own: each request time is rounded before it is counted (to 1 ms
// under 100 ms, 10 ms under 1 s, 100 ms under 10 s, 1 s above), and the percentiles are read off
// that rounded histogram. The figures here are Locust's as written; nothing is recomputed.
#pragma GCC diagnostic push
#if defined(__GNUC__) && !defined(__clang__)  // clang (the fuzz build) has no such warning group
#pragma GCC diagnostic ignored "-Wstringop-truncation"  // libfccp's strncpy of file names (it terminates them)
#endif
#include <libfccp/csv.h>
#pragma GCC diagnostic pop

#include <array>
#include <charconv>
#include <cmath>
#include <fstream>
#include <tuple>

#include "cb/harness/load/locust.h"

namespace cb::harness {
namespace fs = std::filesystem;
using nlohmann::json;

const std::vector<std::string>& locust_percentile_columns() {
  static const std::vector<std::string> cols = {"50%", "66%", "75%", "80%", "90%", "95%",
                                                "98%", "99%", "99.9%", "99.99%", "100%"};
  return cols;
}

namespace {

constexpr size_t kPercentiles = 11;
constexpr size_t kStatsColumns = 11 + kPercentiles;
constexpr size_t kHistoryColumns = 6 + kPercentiles + 7;

template <size_t N>
std::array<std::string, N> column_names(const std::vector<std::string>& head, const std::vector<std::string>& tail) {
  std::array<std::string, N> a;
  size_t i = 0;
  for (const auto& s : head) a[i++] = s;
  for (const auto& s : locust_percentile_columns()) a[i++] = s;
  for (const auto& s : tail) a[i++] = s;
  return a;
}

const std::array<std::string, kStatsColumns>& stats_columns() {
  static const auto cols = column_names<kStatsColumns>(
      {"Type", "Name", "Request Count", "Failure Count", "Median Response Time", "Average Response Time",
       "Min Response Time", "Max Response Time", "Average Content Size", "Requests/s", "Failures/s"},
      {});
  return cols;
}

const std::array<std::string, kHistoryColumns>& history_columns() {
  static const auto cols = column_names<kHistoryColumns>(
      {"Timestamp", "User Count", "Type", "Name", "Requests/s", "Failures/s"},
      {"Total Request Count", "Total Failure Count", "Total Median Response Time", "Total Average Response Time",
       "Total Min Response Time", "Total Max Response Time", "Total Average Content Size"});
  return cols;
}

// The 1-based position of each column in the file's own header, for error messages (the reader
// accepts extra columns, so positions can differ from Locust 2.12's layout).
std::map<std::string, int> header_positions(const fs::path& path) {
  std::map<std::string, int> pos;
  std::ifstream in(path);
  std::string line;
  if (!std::getline(in, line)) return pos;
  if (!line.empty() && line.back() == '\r') line.pop_back();
  int col = 1;
  std::string cell;
  for (size_t i = 0; i <= line.size(); ++i) {
    if (i == line.size() || line[i] == ',') {
      if (cell.size() >= 2 && cell.front() == '"' && cell.back() == '"') cell = cell.substr(1, cell.size() - 2);
      pos.emplace(cell, col++);
      cell.clear();
    } else {
      cell += line[i];
    }
  }
  return pos;
}

// Converts one field, naming where it came from when it is not a number.
class FieldReader {
 public:
  FieldReader(const fs::path& path, std::map<std::string, int> positions) : path_(path), pos_(std::move(positions)) {}
  void at_line(unsigned line) { line_ = line; }

  [[noreturn]] void fail(const std::string& column, const std::string& what) const {
    const auto it = pos_.find(column);
    const std::string col = it == pos_.end() ? "column '" + column + "'"
                                             : "column " + std::to_string(it->second) + " ('" + column + "')";
    throw LocustCsvError(path_.string() + ":" + std::to_string(line_) + ": " + col + ": " + what);
  }

  double number(const std::string& column, const std::string& text) const {
    double v = 0;
    const char* b = text.data();
    const char* e = b + text.size();
    const auto [p, ec] = std::from_chars(b, e, v);
    if (text.empty() || ec != std::errc() || p != e || !std::isfinite(v))
      fail(column, "'" + text + "' is not a number");
    if (v < 0) fail(column, "'" + text + "' is negative");
    return v;
  }

  long long integer(const std::string& column, const std::string& text) const {
    long long v = 0;
    const char* b = text.data();
    const char* e = b + text.size();
    const auto [p, ec] = std::from_chars(b, e, v);
    if (text.empty() || ec != std::errc() || p != e) fail(column, "'" + text + "' is not an integer");
    if (v < 0) fail(column, "'" + text + "' is negative");
    return v;
  }

  // Locust writes "N/A" for percentiles of an entry without requests: left out of the map.
  void percentile(std::map<std::string, double>& out, const std::string& column, const std::string& text) const {
    if (text == "N/A") return;
    out[column] = number(column, text);
  }

 private:
  fs::path path_;
  std::map<std::string, int> pos_;
  unsigned line_ = 1;
};

using StatsReader = io::CSVReader<kStatsColumns, io::trim_chars<' ', '\t'>, io::double_quote_escape<',', '"'>>;
using HistoryReader = io::CSVReader<kHistoryColumns, io::trim_chars<' ', '\t'>, io::double_quote_escape<',', '"'>>;

// Runs fn over every data row (as N strings); turns libfccp's errors into "FILE:LINE: ..." ones.
template <class CsvReader, size_t N, class Fn>
void read_rows(const fs::path& path, const std::array<std::string, N>& columns, Fn&& fn) {
  if (!fs::exists(path)) throw LocustCsvError(path.string() + ": file does not exist");
  unsigned line = 1;
  try {
    CsvReader in(path.string());
    std::apply([&](const auto&... names) { in.read_header(io::ignore_extra_column, names...); }, columns);
    std::array<std::string, N> row;
    while (std::apply([&](auto&... cells) { return in.read_row(cells...); }, row)) {
      line = in.get_file_line();
      fn(line, row);
    }
  } catch (const io::error::base& e) {
    int at = int(line);
    if (const auto* l = dynamic_cast<const io::error::with_file_line*>(&e); l && l->file_line > 0) at = l->file_line;
    std::string what = e.what();
    if (dynamic_cast<const io::error::header_missing*>(&e)) what = "empty file: no header line";
    if (dynamic_cast<const io::error::missing_column_in_header*>(&e)) at = 1;
    throw LocustCsvError(path.string() + ":" + std::to_string(at) + ": " + what);
  }
}

json percentile_fields(const std::map<std::string, double>& p) {
  json o = json::object();
  for (const auto& c : locust_percentile_columns()) {
    std::string key = "p";  // "99.9%" -> "p99_9_ms" (appended piecewise: GCC 12 -Wrestrict false positive)
    key.append(c, 0, c.size() - 1);
    key += "_ms";
    for (auto& ch : key)
      if (ch == '.') ch = '_';
    const auto it = p.find(c);
    o[key] = it == p.end() ? json() : json(it->second);
  }
  return o;
}

}  // namespace

std::vector<LocustStatsRow> parse_locust_stats(const fs::path& path) {
  std::vector<LocustStatsRow> rows;
  FieldReader f(path, header_positions(path));
  const auto& c = stats_columns();
  read_rows<StatsReader>(path, c, [&](unsigned line, const std::array<std::string, kStatsColumns>& v) {
    f.at_line(line);
    LocustStatsRow r;
    r.type = v[0];
    r.name = v[1];
    if (r.name.empty()) f.fail(c[1], "empty name");
    r.request_count = f.integer(c[2], v[2]);
    r.failure_count = f.integer(c[3], v[3]);
    r.median_ms = f.number(c[4], v[4]);
    r.avg_ms = f.number(c[5], v[5]);
    r.min_ms = f.number(c[6], v[6]);
    r.max_ms = f.number(c[7], v[7]);
    r.avg_content_size = f.number(c[8], v[8]);
    r.requests_per_s = f.number(c[9], v[9]);
    r.failures_per_s = f.number(c[10], v[10]);
    for (size_t i = 0; i < kPercentiles; ++i) f.percentile(r.percentiles_ms, c[11 + i], v[11 + i]);
    if (r.failure_count > r.request_count)
      f.fail(c[3], std::to_string(r.failure_count) + " failures exceed the " + std::to_string(r.request_count) + " requests");
    rows.push_back(std::move(r));
  });
  return rows;
}

std::vector<LocustHistoryRow> parse_locust_history(const fs::path& path) {
  std::vector<LocustHistoryRow> rows;
  FieldReader f(path, header_positions(path));
  const auto& c = history_columns();
  read_rows<HistoryReader>(path, c, [&](unsigned line, const std::array<std::string, kHistoryColumns>& v) {
    f.at_line(line);
    LocustHistoryRow r;
    r.timestamp = f.integer(c[0], v[0]);
    r.user_count = f.integer(c[1], v[1]);
    r.type = v[2];
    r.name = v[3];
    if (r.name.empty()) f.fail(c[3], "empty name");
    r.requests_per_s = f.number(c[4], v[4]);
    r.failures_per_s = f.number(c[5], v[5]);
    for (size_t i = 0; i < kPercentiles; ++i) f.percentile(r.percentiles_ms, c[6 + i], v[6 + i]);
    const size_t t = 6 + kPercentiles;
    r.total_request_count = f.integer(c[t], v[t]);
    r.total_failure_count = f.integer(c[t + 1], v[t + 1]);
    r.total_median_ms = f.number(c[t + 2], v[t + 2]);
    r.total_avg_ms = f.number(c[t + 3], v[t + 3]);
    r.total_min_ms = f.number(c[t + 4], v[t + 4]);
    r.total_max_ms = f.number(c[t + 5], v[t + 5]);
    r.total_avg_content_size = f.number(c[t + 6], v[t + 6]);
    rows.push_back(std::move(r));
  });
  return rows;
}

json locust_stats_table(const std::vector<LocustStatsRow>& rows) {
  json out = json::array();
  for (const auto& r : rows) {
    json o = {{"type", r.type},
              {"name", r.name},
              {"request_count", r.request_count},
              {"failure_count", r.failure_count},
              {"median_ms", r.median_ms},
              {"avg_ms", r.avg_ms},
              {"min_ms", r.min_ms},
              {"max_ms", r.max_ms},
              {"avg_content_size", r.avg_content_size},
              {"requests_per_s", r.requests_per_s},
              {"failures_per_s", r.failures_per_s}};
    o.update(percentile_fields(r.percentiles_ms));
    out.push_back(std::move(o));
  }
  return out;
}

json locust_history_table(const std::vector<LocustHistoryRow>& rows) {
  json out = json::array();
  for (const auto& r : rows) {
    json o = {{"timestamp", r.timestamp},
              {"user_count", r.user_count},
              {"type", r.type},
              {"name", r.name},
              {"requests_per_s", r.requests_per_s},
              {"failures_per_s", r.failures_per_s}};
    o.update(percentile_fields(r.percentiles_ms));
    o.update(json{{"total_request_count", r.total_request_count},
                  {"total_failure_count", r.total_failure_count},
                  {"total_median_ms", r.total_median_ms},
                  {"total_avg_ms", r.total_avg_ms},
                  {"total_min_ms", r.total_min_ms},
                  {"total_max_ms", r.total_max_ms},
                  {"total_avg_content_size", r.total_avg_content_size}});
    out.push_back(std::move(o));
  }
  return out;
}

}  // namespace cb::harness
