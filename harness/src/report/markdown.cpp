// report.md, loading the report's inputs, and the helpers the Markdown and HTML printers share.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>

#include "cb/harness/report/report.h"
#include "cb/harness/report/svg_charts.h"

namespace cb::harness {
namespace fs = std::filesystem;
using nlohmann::json;

ReportInput load_report_input(const fs::path& run_dir) {
  ReportInput in{RunData::load(run_dir), std::nullopt};
  const fs::path cpath = run_dir / "claims.json";
  if (fs::exists(cpath)) {
    json j = read_json_file(cpath);
    check_schema(j, "claimbench.claims", cpath.string());
    if (!j.contains("results") || !j["results"].is_array())
      throw SchemaError(cpath.string() + ".results: missing or not an array");
    in.claims = std::move(j);
  }
  return in;
}

void write_report(const std::vector<ReportInput>& runs, const fs::path& out_dir) {
  if (runs.empty()) throw std::invalid_argument("write_report: no runs to report");
  fs::create_directories(out_dir);
  write_text_atomic(out_dir / "report.md", render_report_markdown(runs));
  write_text_atomic(out_dir / "report.html", render_report_html(runs));
}

namespace report_detail {

std::string num(double v) { return svg::fmt_num(v); }

std::string json_cell(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return "";
  if (v.is_number()) return num(v.get<double>());
  return v.dump();
}

std::vector<std::string> run_names(const std::vector<ReportInput>& runs) {
  std::vector<std::string> names;
  std::map<std::string, int> seen;
  for (const auto& r : runs) {
    const auto id = r.run.manifest.find("run_id");
    std::string n = id != r.run.manifest.end() && id->is_string() ? id->get<std::string>() : "";
    if (n.empty()) n = r.run.dir.filename().string();
    const int k = ++seen[n];
    names.push_back(k == 1 ? n : n + " #" + std::to_string(k));
  }
  return names;
}

std::string verdict_of(const json& result) {
  const auto it = result.find("verdict");
  return it != result.end() && it->is_string() ? it->get<std::string>() : "ERROR";
}

const std::vector<std::string>& verdict_names() {
  static const std::vector<std::string> v = {"PASS", "FAIL", "INCONCLUSIVE", "INVALID", "SKIP", "NOT MEASURED", "ERROR"};
  return v;
}

namespace {
bool is_measurement(const json& r) {
  const auto it = r.find("kind");
  return it == r.end() || !it->is_string() || it->get<std::string>() == "measurement";
}
}  // namespace

std::string claim_counts_line(const json& claims) {
  std::map<std::string, int> n, other;
  bool any_other = false;
  if (claims.contains("results") && claims["results"].is_array())
    for (const auto& r : claims["results"]) {
      if (is_measurement(r)) n[verdict_of(r)]++;
      else {
        other[verdict_of(r)]++;
        any_other = true;
      }
    }
  std::string s = "measured: ", o;
  bool first = true;
  for (const auto& v : verdict_names()) {
    s += (first ? "" : ", ") + std::to_string(n[v]) + " " + v;
    first = false;
    if (other[v] > 0) o += (o.empty() ? "" : ", ") + std::to_string(other[v]) + " " + v;
  }
  if (any_other) s += "; not measurements (arithmetic, simulation): " + o;
  return s;
}

namespace {
double dbl(const json& j, const char* key, double def) {
  const auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : def;
}
bool flag(const json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

std::string str(const json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "";
  return it->is_string() ? it->get<std::string>() : json_cell(*it);
}

// The parts of a claim result: its "conditions" when it has several, else the result itself.
std::vector<json> parts_of(const json& r) {
  if (r.contains("conditions") && r["conditions"].is_array() && r["conditions"].size() > 1)
    return std::vector<json>(r["conditions"].begin(), r["conditions"].end());
  return {r};
}

std::string one_threshold(const json& p) {
  std::string s = str(p, "comparator");
  s += (s.empty() ? "" : " ") + str(p, "threshold");
  const double tol = dbl(p, "tolerance", 0.0);
  if (tol > 0) s += " (tol " + num(tol) + ")";
  return s;
}

std::string md(const std::string& s) {  // a Markdown table cell: no pipes, no raw HTML, one line
  std::string o;
  for (char c : s) {
    switch (c) {
      case '|': o += "\\|"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '&': o += "&amp;"; break;
      case '\n': case '\r': o += ' '; break;
      default: o += c;
    }
  }
  return o;
}
}  // namespace

std::string measured_text(const json& result) {
  std::string out;
  for (const json& p : parts_of(result)) {
    const auto it = p.find("measured");
    std::string v = (it == p.end() || it->is_null()) ? "\xE2\x80\x94" : json_cell(*it);
    const std::string unit = str(p, "unit").empty() ? str(result, "unit") : str(p, "unit");
    if (it != p.end() && !it->is_null() && !unit.empty()) v += " " + unit;
    const auto iv = p.find("interval");
    if (iv != p.end() && iv->is_object() && iv->value("method", std::string()) == "student-t" && (*iv)["low"].is_number() &&
        (*iv)["high"].is_number())
      v += " [" + num((*iv)["low"].get<double>()) + ", " + num((*iv)["high"].get<double>()) + "]";
    out += (out.empty() ? "" : "; ") + v;
  }
  return out;
}

std::string threshold_text(const json& result) {
  std::string out;
  for (const json& p : parts_of(result)) out += (out.empty() ? "" : " and ") + one_threshold(p);
  return out;
}

std::vector<ClaimRow> merge_claims(const std::vector<ReportInput>& runs) {
  std::vector<ClaimRow> rows;
  std::map<std::string, size_t> index;
  for (size_t ri = 0; ri < runs.size(); ++ri) {
    if (!runs[ri].claims) continue;
    for (const json& r : (*runs[ri].claims)["results"]) {
      if (!r.is_object()) continue;
      const std::string id = str(r, "id");
      auto [it, fresh] = index.emplace(id, rows.size());
      if (fresh) {
        ClaimRow row{id, str(r, "description"), str(r, "figure"), threshold_text(r), str(r, "scope"),
                     is_measurement(r) ? "measurement" : str(r, "kind"), {}};
        row.per_run.resize(runs.size());
        rows.push_back(std::move(row));
      }
      rows[it->second].per_run[ri] = r;
    }
  }
  return rows;
}

std::vector<const ClaimRow*> measurements_first(const std::vector<ClaimRow>& rows) {
  std::vector<const ClaimRow*> out;
  for (const auto& c : rows)
    if (c.kind == "measurement") out.push_back(&c);
  for (const auto& c : rows)
    if (c.kind != "measurement") out.push_back(&c);
  return out;
}

std::vector<std::pair<std::string, std::vector<std::string>>> run_info_rows(const std::vector<ReportInput>& runs) {
  const std::vector<std::string> labels = {"run id", "folder", "command", "commit", "build", "started", "finished",
                                           "CPU", "cores / threads", "memory", "ISA flags", "GPUs", "driver",
                                           "CUDA", "NCCL", "OS", "host", "fingerprint"};
  std::vector<std::pair<std::string, std::vector<std::string>>> rows;
  for (const auto& l : labels) rows.push_back({l, {}});
  const auto names = run_names(runs);
  for (size_t ri = 0; ri < runs.size(); ++ri) {
    const json& m = runs[ri].run.manifest;
    const json b = m.value("build", json::object());
    const json hw = m.value("hardware", json::object());
    std::string commit = str(b, "commit");
    if (flag(b, "commit_dirty")) commit += " (dirty)";
    std::string build = str(b, "build_type");
    if (!str(b, "compiler").empty()) build += (build.empty() ? "" : ", ") + str(b, "compiler");
    if (flag(b, "cuda_built")) build += ", CUDA";
    std::string mem;
    if (hw.contains("memory_bytes") && hw["memory_bytes"].is_number())
      mem = num(std::round(hw["memory_bytes"].get<double>() / 1073741824.0 * 10) / 10) + " GiB";
    std::string flags;
    if (hw.contains("cpu_flags") && hw["cpu_flags"].is_array())
      for (const auto& f : hw["cpu_flags"]) flags += (flags.empty() ? "" : " ") + json_cell(f);
    std::vector<std::pair<std::string, int>> gpus;  // name -> count, first-seen order
    if (hw.contains("gpus") && hw["gpus"].is_array())
      for (const auto& g : hw["gpus"]) {
        std::string n = g.is_object() ? str(g, "name") : json_cell(g);
        if (g.is_object() && !str(g, "memory").empty()) n += " (" + str(g, "memory") + ")";
        auto it = std::find_if(gpus.begin(), gpus.end(), [&](const auto& p) { return p.first == n; });
        if (it == gpus.end()) gpus.push_back({n, 1}); else ++it->second;
      }
    std::string gpu_text;
    for (const auto& [n, k] : gpus) gpu_text += (gpu_text.empty() ? "" : ", ") + std::to_string(k) + " \xC3\x97 " + n;
    if (gpu_text.empty()) gpu_text = "none";
    const std::vector<std::string> cells = {
        names[ri], runs[ri].run.dir.filename().string(), str(m, "command"), commit, build, str(m, "started_at"),
        str(m, "finished_at"), str(hw, "cpu_model"), str(hw, "cores") + " / " + str(hw, "threads"), mem, flags,
        gpu_text, str(hw, "driver"), str(hw, "cuda_version"), str(hw, "nccl_version"), str(hw, "os"),
        str(hw, "hostname"), str(hw, "fingerprint")};
    for (size_t i = 0; i < rows.size(); ++i) rows[i].second.push_back(cells[i]);
  }
  return rows;
}

std::vector<std::pair<std::string, std::vector<SuiteCell>>> suite_rows(const std::vector<ReportInput>& runs) {
  std::set<std::string> names;
  for (const auto& r : runs) {
    for (const auto& [n, s] : r.run.suites) names.insert(n);
    if (r.run.manifest.contains("suites") && r.run.manifest["suites"].is_object())
      for (const auto& [n, v] : r.run.manifest["suites"].items()) names.insert(n);
  }
  std::vector<std::pair<std::string, std::vector<SuiteCell>>> rows;
  for (const auto& n : names) {
    std::vector<SuiteCell> cells;
    for (const auto& r : runs) {
      SuiteCell c;
      const auto it = r.run.suites.find(n);
      const json ms = r.run.manifest.value("suites", json::object());
      if (it != r.run.suites.end()) {
        c.status = to_string(it->second.status);
        c.reason = it->second.reason;
        c.seconds = it->second.seconds;
      } else if (ms.is_object() && ms.contains(n) && ms[n].is_object()) {
        const json& e = ms[n];
        c.status = str(e, "status");
        c.reason = str(e, "reason");
        c.seconds = dbl(e, "seconds", 0.0);
        if (c.status == "ok") {
          c.status = "error";
          c.reason = "manifest says ok but " + (str(e, "file").empty() ? n + ".json" : str(e, "file")) +
                     " is missing from the run folder";
        }
      }
      cells.push_back(c);
    }
    rows.push_back({n, cells});
  }
  return rows;
}

std::vector<MetricRow> metric_rows(const std::vector<ReportInput>& runs) {
  std::map<std::string, MetricRow> rows;
  for (size_t ri = 0; ri < runs.size(); ++ri)
    for (const auto& [sn, s] : runs[ri].run.suites)
      for (const auto& m : s.metrics) {
        MetricRow& row = rows[m.key];
        row.key = m.key;
        if (row.unit.empty()) row.unit = m.unit;
        row.values.resize(runs.size());
        row.values[ri] = m.value;
      }
  std::vector<MetricRow> out;
  for (auto& [k, r] : rows) out.push_back(std::move(r));
  return out;
}

const json* suite_table(const RunData& run, const std::string& suite, const std::string& table) {
  const auto s = run.suites.find(suite);
  if (s == run.suites.end()) return nullptr;
  const auto t = s->second.tables.find(table);
  if (t == s->second.tables.end() || !t->second.is_array() || t->second.empty()) return nullptr;
  return &t->second;
}

bool any_load_results(const std::vector<ReportInput>& runs) {
  for (const auto& r : runs)
    if (suite_table(r.run, "load", "requests") || suite_table(r.run, "load", "sweep")) return true;
  return false;
}

std::vector<std::pair<std::string, std::vector<double>>> column_by_group(const json& rows, const std::string& group_col,
                                                                         const std::string& value_col) {
  std::vector<std::pair<std::string, std::vector<double>>> out;
  for (const auto& row : rows) {
    if (!row.is_object() || !row.contains(value_col) || !row[value_col].is_number()) continue;
    const std::string g = row.contains(group_col) ? json_cell(row[group_col]) : "";
    auto it = std::find_if(out.begin(), out.end(), [&](const auto& p) { return p.first == g; });
    if (it == out.end()) it = out.insert(out.end(), {g, {}});
    it->second.push_back(row[value_col].get<double>());
  }
  return out;
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const double rank = std::ceil(q * static_cast<double>(v.size()));
  const size_t i = static_cast<size_t>(std::clamp(rank, 1.0, static_cast<double>(v.size()))) - 1;
  return v[i];
}

std::vector<LatencyRow> latency_rows(const std::vector<ReportInput>& runs) {
  std::vector<LatencyRow> out;
  for (size_t ri = 0; ri < runs.size(); ++ri) {
    const json* t = suite_table(runs[ri].run, "load", "requests");
    if (!t) continue;
    const auto ttft = column_by_group(*t, "workload", "ttft_ms");
    for (const auto& [w, e2e] : column_by_group(*t, "workload", "e2e_ms")) {
      LatencyRow r;
      r.run = ri;
      r.workload = w;
      r.n = e2e.size();
      std::vector<double> tt;
      for (const auto& [w2, v] : ttft)
        if (w2 == w) tt = v;
      r.ttft_p50 = percentile(tt, 0.5), r.ttft_p90 = percentile(tt, 0.9), r.ttft_p99 = percentile(tt, 0.99);
      r.e2e_p50 = percentile(e2e, 0.5), r.e2e_p90 = percentile(e2e, 0.9), r.e2e_p99 = percentile(e2e, 0.99);
      out.push_back(r);
    }
  }
  return out;
}

}  // namespace report_detail

namespace {
using namespace report_detail;

void table_row(std::ostringstream& o, const std::vector<std::string>& cells) {
  o << "|";
  for (const auto& c : cells) o << " " << md(c) << " |";
  o << "\n";
}
void table_head(std::ostringstream& o, const std::vector<std::string>& cells) {
  table_row(o, cells);
  o << "|";
  for (size_t i = 0; i < cells.size(); ++i) o << "---|";
  o << "\n";
}
}  // namespace

std::string render_report_markdown(const std::vector<ReportInput>& runs) {
  const auto names = run_names(runs);
  const bool multi = runs.size() > 1;
  std::ostringstream o;
  o << "# claimbench report\n\n";
  o << "Runs: ";
  for (size_t i = 0; i < names.size(); ++i) o << (i ? ", " : "") << md(names[i]);
  o << ". Charts (measured vs threshold, roofline, latency CDFs, throughput vs rate) are in report.html.\n\n";

  o << "## Runs and hardware\n\n";
  std::vector<std::string> head = {""};
  for (const auto& n : names) head.push_back(n);
  table_head(o, head);
  for (const auto& [label, cells] : run_info_rows(runs)) {
    std::vector<std::string> row = {label};
    row.insert(row.end(), cells.begin(), cells.end());
    table_row(o, row);
  }

  o << "\n## Claims\n\n";
  const auto claims = merge_claims(runs);
  if (claims.empty()) {
    o << "No claims.json in these runs (run `claimbench check` first).\n";
  } else {
    for (size_t i = 0; i < runs.size(); ++i)
      o << "- " << md(names[i]) << ": "
        << (runs[i].claims ? md(claim_counts_line(*runs[i].claims)) : std::string("no claims.json")) << "\n";
    o << "\nMeasured vs threshold chart: see report.html. A verdict comes from the 95% interval of the claim's "
         "repeated trials (shown in brackets after the value; exact metrics have none): PASS when it clears the "
         "threshold, FAIL when it lies wholly on the failing side, INCONCLUSIVE otherwise. INVALID: the run behind "
         "the metric broke its suite's validity rules. Claims marked SKIP or NOT MEASURED were not measured on this "
         "hardware; they never count as passing. Arithmetic and simulation checks are listed apart and not counted "
         "among the measured verdicts.\n\n";
    head = {"id", "claim", "article figure", "threshold"};
    for (const auto& n : names) {
      head.push_back(multi ? "measured (" + n + ")" : "measured");
      head.push_back(multi ? "verdict (" + n + ")" : "verdict");
    }
    head.insert(head.end(), {"scope", "reason"});
    table_head(o, head);
    bool other_header = false;
    for (const ClaimRow* cp : measurements_first(claims)) {
      const ClaimRow& c = *cp;
      if (c.kind != "measurement" && !other_header) {
        o << "\n### Not measurements: arithmetic on published figures, simulations on assumed inputs\n\n";
        table_head(o, head);
        other_header = true;
      }
      std::vector<std::string> row = {c.id, c.description, c.figure, c.threshold_text};
      std::vector<std::string> reasons;
      for (size_t ri = 0; ri < runs.size(); ++ri) {
        const auto& r = c.per_run[ri];
        row.push_back(r ? measured_text(*r) : "");
        row.push_back(r ? verdict_of(*r) : "(not in claim set)");
        const std::string why = r ? str(*r, "reason") : "";
        if (!why.empty()) reasons.push_back(multi ? names[ri] + ": " + why : why);
      }
      std::string reason;
      const bool same = multi && reasons.size() == runs.size() &&
                        std::all_of(c.per_run.begin(), c.per_run.end(), [&](const auto& r) {
                          return r && str(*r, "reason") == str(*c.per_run[0], "reason");
                        });
      if (same) reason = str(*c.per_run[0], "reason");
      else
        for (const auto& s : reasons) reason += (reason.empty() ? "" : "; ") + s;
      row.push_back(c.scope);
      row.push_back(reason);
      table_row(o, row);
    }
  }

  o << "\n## Kernels\n\n";
  bool any_kernels = false;
  for (size_t ri = 0; ri < runs.size(); ++ri) {
    if (!runs[ri].run.suites.count("kernels")) continue;
    if (!any_kernels) {
      o << "Roofline plot: see report.html.\n\n";
      table_head(o, {"run", "peak FP32 FMA (GFLOP/s)", "peak BF16 dot (GFLOP/s)", "peak INT8 dot (GOP/s)", "memory read (GB/s)",
                     "triad (GB/s)", "vs likwid-bench (FP32 / read / triad)", "benchmarks"});
    }
    any_kernels = true;
    auto cell = [&](const char* key) {
      const Metric* m = runs[ri].run.find_metric(key);
      return m ? num(m->value) : std::string("not measured");
    };
    auto ratio = [&](const char* key) {
      const Metric* m = runs[ri].run.find_metric(key);
      return m ? num(m->value) + "x" : std::string("-");
    };
    const json* t = suite_table(runs[ri].run, "kernels", "benchmarks");
    table_row(o, {names[ri], cell("kernels.peak.fp32_fma_gflops"), cell("kernels.peak.bf16_dot_gflops"), cell("kernels.peak.int8_dot_gops"),
                  cell("kernels.peak.mem_read_gbs"), cell("kernels.peak.mem_triad_gbs"),
                  ratio("kernels.peak.fp32_fma_vs_likwid") + " / " + ratio("kernels.peak.mem_read_vs_likwid") + " / " +
                      ratio("kernels.peak.mem_triad_vs_likwid"),
                  std::to_string(t ? t->size() : 0)});
  }
  if (!any_kernels) o << "No kernels suite in these runs.\n";
  for (size_t ri = 0; ri < runs.size(); ++ri) {
    const json* t = suite_table(runs[ri].run, "kernels", "benchmarks");
    if (!t) continue;
    o << "\n<details><summary>kernel benchmarks: " << md(names[ri]) << " (" << t->size() << " rows)</summary>\n\n";
    table_head(o, {"name", "op", "backend", "dtype", "M", "N", "K", "GFLOP/s", "GB/s", "FLOP/byte", "ns/iter",
                   "compute roof", "roofline fraction"});
    for (const auto& row : *t) {
      std::vector<std::string> cells;
      for (const char* k : {"name", "op", "backend", "dtype", "M", "N", "K", "gflops", "gbs", "intensity",
                            "ns_per_iter", "compute_roof", "roofline_fraction"})
        cells.push_back(row.is_object() && row.contains(k) ? json_cell(row[k]) : "");
      table_row(o, cells);
    }
    o << "\n</details>\n";
  }

  o << "\n## Load\n\n";
  if (!any_load_results(runs)) {
    o << "no load results in these runs\n";
  } else {
    o << "Latency CDFs and throughput-vs-rate curves: see report.html.\n\n";
    const auto lat = latency_rows(runs);
    if (!lat.empty()) {
      table_head(o, {"run", "workload", "requests", "TTFT p50 (ms)", "TTFT p90", "TTFT p99", "E2E p50 (ms)",
                     "E2E p90", "E2E p99"});
      for (const auto& r : lat)
        table_row(o, {names[r.run], r.workload, std::to_string(r.n), num(r.ttft_p50), num(r.ttft_p90),
                      num(r.ttft_p99), num(r.e2e_p50), num(r.e2e_p90), num(r.e2e_p99)});
    }
    for (size_t ri = 0; ri < runs.size(); ++ri) {
      const json* t = suite_table(runs[ri].run, "load", "sweep");
      if (!t) continue;
      o << "\nRate sweep, " << md(names[ri]) << ":\n\n";
      const std::vector<std::string> cols = {"workload", "rate_rps", "throughput_rps", "tokens_per_s",
                                             "p99_ttft_ms", "p99_e2e_ms", "goodput_rps"};
      table_head(o, cols);
      for (const auto& row : *t) {
        std::vector<std::string> cells;
        for (const auto& k : cols) cells.push_back(row.is_object() && row.contains(k) ? json_cell(row[k]) : "");
        table_row(o, cells);
      }
    }
  }

  o << "\n## Suites\n\n";
  head = {"suite"};
  for (const auto& n : names) head.push_back(n);
  table_head(o, head);
  for (const auto& [suite, cells] : suite_rows(runs)) {
    std::vector<std::string> row = {suite};
    for (const auto& c : cells) {
      if (c.status.empty()) { row.push_back("(not run)"); continue; }
      std::string s = c.status + " (" + num(std::round(c.seconds * 10) / 10) + " s)";
      if (!c.reason.empty()) s += ": " + c.reason;
      row.push_back(s);
    }
    table_row(o, row);
  }

  o << "\n## Metrics\n\n";
  const auto metrics = metric_rows(runs);
  const bool fold = metrics.size() > 20;
  if (fold) o << "<details><summary>" << metrics.size() << " metrics</summary>\n\n";
  head = {"key", "unit"};
  for (const auto& n : names) head.push_back(n);
  table_head(o, head);
  for (const auto& m : metrics) {
    std::vector<std::string> row = {m.key, m.unit};
    for (const auto& v : m.values) row.push_back(v ? num(*v) : "");
    table_row(o, row);
  }
  if (fold) o << "\n</details>\n";
  return o.str();
}

}  // namespace cb::harness
