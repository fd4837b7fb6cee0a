// report.html: one self-contained page (inline CSS and SVG, no scripts, no network) with the same
// tables as report.md plus the charts. Every string that comes from a file goes through h().
#include <algorithm>
#include <cctype>
#include <cmath>
#include <tuple>
#include <sstream>

#include "cb/harness/report/report.h"
#include "cb/harness/report/svg_charts.h"

namespace cb::harness {
using nlohmann::json;
using namespace report_detail;

namespace {

std::string h(const std::string& s) { return svg::escape(s); }

std::string slug(const std::string& s) {
  std::string o;
  for (char c : s) o += std::isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(std::tolower(c)) : '-';
  return o;
}

std::string sfield(const json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

std::string badge(const std::string& verdict) {
  return "<span class=\"badge v-" + slug(verdict) + "\">" + h(verdict) + "</span>";
}

std::string bar_color(const std::string& verdict) {
  if (verdict == "PASS") return "#2da44e";
  if (verdict == "FAIL") return "#cf222e";
  if (verdict == "INCONCLUSIVE") return "#bf8700";
  if (verdict == "INVALID") return "#57606a";
  return "#8250df";  // ERROR
}

constexpr const char* kCss = R"(
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1f2328;background:#f6f8fa;margin:0}
main{max-width:1240px;margin:0 auto;padding:16px 24px 48px;background:#fff}
h1{font-size:26px;margin:8px 0 4px}h2{font-size:20px;margin:28px 0 10px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
nav a{margin-right:14px;color:#0969da;text-decoration:none}
.sub{color:#57606a;margin:0 0 10px}
.note{color:#57606a;font-size:13px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:13px;margin:6px 0 12px}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.diff td{background:#fff8c5}
table.claims{width:100%}table.claims tr.claim td{border-bottom:none}
table.claims tr.detail td{border-top:none;color:#57606a;font-size:12px;padding-top:0}
td.mono,code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
.badge{display:inline-block;padding:1px 7px;border-radius:10px;font-size:12px;font-weight:600;white-space:nowrap}
.v-pass,.s-ok{background:#dafbe1;color:#116329}
.v-fail,.s-error,.s-timeout{background:#ffebe9;color:#a40e26}
.v-skip,.s-skipped,.s-not-built,.s-not-run{background:#eaeef2;color:#424a53}
.v-not-measured{background:#fff8c5;color:#7d4e00}
.v-error{background:#fbefff;color:#6e40c9}
.v-inconclusive{background:#fff1d6;color:#7d4e00}
.v-invalid{background:#d0d7de;color:#24292f}
tr.section td{font-weight:600;background:#f6f8fa}
figure{margin:12px 0 18px}figcaption{color:#57606a;font-size:13px;margin-top:4px;max-width:1040px}
svg.chart{max-width:100%;height:auto;border:1px solid #d0d7de;border-radius:6px}
details{margin:8px 0}summary{cursor:pointer;color:#0969da}
ul.notdrawn li{margin:2px 0;font-size:13px}
)";

void info_table(std::ostringstream& o, const std::vector<ReportInput>& runs, const std::vector<std::string>& names) {
  o << "<div class=\"scroll\"><table class=\"info\"><tr><th></th>";
  for (const auto& n : names) o << "<th>" << h(n) << "</th>";
  o << "</tr>\n";
  for (const auto& [label, cells] : run_info_rows(runs)) {
    const bool differs = runs.size() > 1 && std::any_of(cells.begin(), cells.end(), [&](const auto& c) { return c != cells[0]; });
    o << "<tr" << (differs ? " class=\"diff\"" : "") << "><th>" << h(label) << "</th>";
    for (const auto& c : cells) o << "<td>" << h(c) << "</td>";
    o << "</tr>\n";
  }
  o << "</table></div>\n";
  if (runs.size() > 1) o << "<p class=\"note\">Highlighted rows differ between the runs.</p>\n";
}

void claims_section(std::ostringstream& o, const std::vector<ReportInput>& runs, const std::vector<std::string>& names) {
  o << "<section id=\"claims\"><h2>Claims</h2>\n";
  const auto claims = merge_claims(runs);
  if (claims.empty()) {
    o << "<p class=\"note\">No claims.json in these runs (run <code>claimbench check</code> first).</p></section>\n";
    return;
  }
  const bool multi = runs.size() > 1;
  o << "<ul>";
  for (size_t ri = 0; ri < runs.size(); ++ri) {
    o << "<li><b>" << h(names[ri]) << "</b>: ";
    if (!runs[ri].claims) {
      o << "no claims.json</li>";
      continue;
    }
    o << "measured: ";
    for (const auto& v : verdict_names()) {
      long n = 0;
      for (const auto& r : (*runs[ri].claims)["results"]) n += verdict_of(r) == v && r.value("kind", std::string("measurement")) == "measurement";
      o << badge(v) << " " << n << " &nbsp; ";
    }
    std::string others;
    for (const auto& v : verdict_names()) {
      long n = 0;
      for (const auto& r : (*runs[ri].claims)["results"]) n += verdict_of(r) == v && r.value("kind", std::string("measurement")) != "measurement";
      if (n) others += badge(v) + " " + std::to_string(n) + " &nbsp; ";
    }
    if (!others.empty()) o << "&mdash; not measurements (arithmetic, simulation): " << others;
    o << "</li>";
  }
  o << "</ul>\n<p class=\"note\">Figures in the article are for 70B-175B models on A100 clusters; every claim here "
       "is checked on the hardware and model of the run, as each row's scope says. A verdict comes from the 95% "
       "interval of the claim's repeated trials (in brackets after the value): PASS when it clears the threshold, FAIL "
       "when it lies wholly on the failing side, INCONCLUSIVE otherwise; INVALID when the run behind the metric broke "
       "its suite's validity rules. SKIP and NOT MEASURED are never counted as passing. Arithmetic and simulation "
       "checks are listed last and not counted among the measured verdicts.</p>\n";

  // table
  o << "<div class=\"scroll\"><table class=\"claims\"><tr><th>id</th><th>claim</th><th>article figure</th>"
       "<th>threshold</th>";
  for (const auto& n : names)
    o << "<th>measured" << (multi ? "<br>" + h(n) : "") << "</th><th>verdict" << (multi ? "<br>" + h(n) : "") << "</th>";
  o << "</tr>\n";
  const size_t ncols = 4 + 2 * runs.size();
  bool other_header = false;
  for (const ClaimRow* cp : measurements_first(claims)) {
    const ClaimRow& c = *cp;
    if (c.kind != "measurement" && !other_header) {
      o << "<tr class=\"section\"><td colspan=\"" << ncols
        << "\">Not measurements: arithmetic on published figures, simulations on assumed inputs</td></tr>\n";
      other_header = true;
    }
    o << "<tr class=\"claim\"><td class=\"mono\">" << h(c.id) << "</td><td>" << h(c.description) << "</td><td>"
      << h(c.figure) << "</td><td>" << h(c.threshold_text) << "</td>";
    std::vector<std::string> why(runs.size());
    for (size_t ri = 0; ri < runs.size(); ++ri) {
      const auto& r = c.per_run[ri];
      if (!r) {
        o << "<td></td><td class=\"note\">not in claim set</td>";
        continue;
      }
      o << "<td class=\"num\">" << h(measured_text(*r)) << "</td><td>" << badge(verdict_of(*r)) << "</td>";
      if (r->contains("reason") && (*r)["reason"].is_string()) why[ri] = (*r)["reason"].get<std::string>();
    }
    o << "</tr>\n";
    // scope and reasons on a line of their own under the claim (one reason when all runs agree)
    std::string reasons;
    const bool same = std::all_of(why.begin(), why.end(), [&](const auto& w) { return w == why[0]; });
    for (size_t ri = 0; ri < runs.size(); ++ri) {
      if (why[ri].empty() || (same && ri > 0)) continue;
      reasons += "<div><b>reason" + (multi && !same ? " (" + h(names[ri]) + ")" : std::string()) + ":</b> " + h(why[ri]) + "</div>";
    }
    if (!c.scope.empty() || !reasons.empty())
      o << "<tr class=\"detail\"><td></td><td colspan=\"" << ncols - 1 << "\">"
        << (c.scope.empty() ? "" : "<div><b>scope:</b> " + h(c.scope) + "</div>") << reasons << "</td></tr>\n";
  }
  o << "</table></div>\n";

  // chart: one group per numeric claim part, one bar per run
  svg::BarChart chart;
  chart.id = "chart-claims";
  chart.title = "Measured vs threshold";
  chart.axis_label = "bar: measured value; black tick: threshold; each claim has its own scale (ticks under its bars)";
  std::vector<std::string> not_drawn;
  for (const auto& c : claims) {
    // the parts of the claim (conditions of multi-part claims), as they appear in the first run that has it
    size_t n_parts = 1;
    for (const auto& r : c.per_run)
      if (r && r->contains("conditions") && (*r)["conditions"].is_array() && (*r)["conditions"].size() > 1)
        n_parts = std::max(n_parts, (*r)["conditions"].size());
    for (size_t pi = 0; pi < n_parts; ++pi) {
      svg::BarGroup g;
      g.label = n_parts > 1 ? c.id + " (" + std::to_string(pi + 1) + "/" + std::to_string(n_parts) + ")" : c.id;
      g.tip = c.description;
      bool any_bar = false;
      for (size_t ri = 0; ri < runs.size(); ++ri) {
        const auto& r = c.per_run[ri];
        if (!r) continue;
        const bool has_parts = r->contains("conditions") && (*r)["conditions"].is_array() && (*r)["conditions"].size() > 1;
        if (n_parts > 1 && (!has_parts || pi >= (*r)["conditions"].size()) && pi > 0) continue;
        const json part = n_parts > 1 && has_parts ? (*r)["conditions"][pi] : *r;
        const std::string claim_verdict = verdict_of(*r);
        const std::string verdict = part.contains("verdict") ? verdict_of(part) : claim_verdict;
        const bool numeric = part.contains("measured") && part["measured"].is_number();
        if (!g.threshold && part.contains("threshold") && part["threshold"].is_number()) {
          g.threshold = part["threshold"].get<double>();
          const json cmp = part.value("comparator", json());
          g.threshold_text = (cmp.is_string() ? cmp.get<std::string>() + " " : std::string()) + num(*g.threshold);
        }
        svg::Bar b;
        b.label = multi ? names[ri] : "";
        const bool drawable = numeric && (verdict == "PASS" || verdict == "FAIL" || verdict == "INCONCLUSIVE" ||
                                          verdict == "INVALID" || verdict == "ERROR");
        if (drawable) {
          b.value = part["measured"].get<double>();
          b.color = bar_color(verdict);
          const std::string unit = sfield(part, "unit").empty() ? sfield(*r, "unit") : sfield(part, "unit");
          b.text = num(b.value) + (unit.empty() ? "" : " " + unit) + "  " + verdict;
          any_bar = true;
        } else {
          b.value = std::nan("");
          b.text = verdict + ": not drawn";
          const std::string why = sfield(part, "reason").empty() ? sfield(*r, "reason") : sfield(part, "reason");
          not_drawn.push_back("<li><code>" + h(g.label) + "</code> " + (multi ? h(names[ri]) + " " : std::string()) +
                              badge(verdict) + " " + (why.empty() ? "no numeric measurement" : h(why)) + "</li>");
        }
        g.bars.push_back(b);
      }
      if (any_bar) chart.groups.push_back(std::move(g));
    }
  }
  chart.legend = {{"PASS", bar_color("PASS")}, {"FAIL", bar_color("FAIL")}, {"INCONCLUSIVE", bar_color("INCONCLUSIVE")},
                  {"INVALID", bar_color("INVALID")}, {"ERROR", bar_color("ERROR")},
                  {"threshold", ""}};
  if (!chart.groups.empty())
    o << "<figure>" << svg::render_bars(chart)
      << "<figcaption>Claims with a numeric measurement. Bars are colored by verdict; for <code>&lt;=</code> "
         "claims a bar left of the tick passes.</figcaption></figure>\n";
  else
    o << "<p class=\"note\">No claim has a numeric measurement in these runs, so there is no chart.</p>\n";
  if (!not_drawn.empty()) {
    o << "<h3>Not drawn (no measurement on this hardware, or not a number)</h3><ul class=\"notdrawn\">";
    for (const auto& s : not_drawn) o << s;
    o << "</ul>\n";
  }
  o << "</section>\n";
}

void kernels_section(std::ostringstream& o, const std::vector<ReportInput>& runs, const std::vector<std::string>& names) {
  bool any = false;
  for (const auto& r : runs) any = any || r.run.suites.count("kernels");
  o << "<section id=\"kernels\"><h2>Kernels</h2>\n";
  if (!any) {
    o << "<p class=\"note\">No kernels suite in these runs.</p></section>\n";
    return;
  }
  svg::XYChart c;
  c.id = "chart-roofline";
  c.title = "Kernel roofline";
  c.x = {"arithmetic intensity (FLOP/byte)", true, {}, {}};
  c.y = {"GFLOP/s", true, {}, {}};
  c.height = 460;
  std::string notes;
  size_t skipped = 0;
  double xlo = INFINITY, xhi = -INFINITY;
  for (const auto& r : runs)
    if (const json* t = suite_table(r.run, "kernels", "benchmarks"))
      for (const auto& row : *t)
        if (row.is_object() && row.contains("intensity") && row["intensity"].is_number() &&
            row["intensity"].get<double>() > 0)
          xlo = std::min(xlo, row["intensity"].get<double>()), xhi = std::max(xhi, row["intensity"].get<double>());
  std::vector<svg::Series> roofs;
  for (size_t ri = 0; ri < runs.size(); ++ri) {
    if (!runs[ri].run.suites.count("kernels")) continue;
    const std::string& color = svg::palette(ri);
    // One roof per compute peak measured in the run: FP32 FMA for f32 (and weight-only) kernels,
    // BF16 dot products for the BF16-dot GEMM, INT8 dot products for W8A8; each row's table entry
    // names the roof it is judged against (compute_roof).
    const Metric* pb = runs[ri].run.find_metric("kernels.peak.mem_read_gbs");
    const struct {
      const char* key;
      const char* label;
      const char* dash;
    } peaks[] = {{"kernels.peak.fp32_fma_gflops", "FP32 FMA", "7 4"},
                 {"kernels.peak.bf16_dot_gflops", "BF16 dot", "3 3"},
                 {"kernels.peak.int8_dot_gops", "INT8 dot (GOP/s)", "12 4 2 4"}};
    bool drew = false;
    for (const auto& pk : peaks) {
      const Metric* pf = runs[ri].run.find_metric(pk.key);
      if (!pf || !pb || pf->value <= 0 || pb->value <= 0) continue;
      const double ridge = pf->value / pb->value;
      const double a = std::min(std::isfinite(xlo) ? xlo / 2 : ridge / 100, ridge / 10);
      const double b = std::max(std::isfinite(xhi) ? xhi * 2 : ridge * 10, ridge * 10);
      svg::Series roof;
      roof.name = names[ri] + " " + pk.label + " roof: " + num(pf->value) + ", " + num(pb->value) + " GB/s";
      roof.color = color;
      roof.dash = pk.dash;
      roof.points = {{a, pb->value * a, ""}, {ridge, pf->value, std::string(pk.label) + " ridge at " + num(ridge) + " FLOP/byte"},
                     {b, pf->value, ""}};
      roofs.push_back(roof);
      drew = true;
    }
    if (!drew)
      notes += "<p class=\"note\">" + h(names[ri]) +
               ": kernels.peak.fp32_fma_gflops / kernels.peak.mem_read_gbs not measured, so its roof is not drawn.</p>\n";
    const json* t = suite_table(runs[ri].run, "kernels", "benchmarks");
    if (!t) continue;
    svg::Series pts;
    pts.name = names[ri] + " kernels";
    pts.color = color;
    pts.line = false;
    pts.marker = svg::marker_for(ri);
    for (const auto& row : *t) {
      if (!row.is_object()) continue;
      const double x = row.contains("intensity") && row["intensity"].is_number() ? row["intensity"].get<double>() : NAN;
      const double y = row.contains("gflops") && row["gflops"].is_number() ? row["gflops"].get<double>() : NAN;
      if (!(x > 0) || !(y > 0)) { ++skipped; continue; }
      std::string tip = json_cell(row.value("name", json())) + " (" + json_cell(row.value("op", json())) + ", " +
                        json_cell(row.value("backend", json())) + " " + json_cell(row.value("dtype", json())) + "): " +
                        num(y) + " GFLOP/s at " + num(x) + " FLOP/byte" +
                        (row.contains("compute_roof") ? ", judged against the " + json_cell(row["compute_roof"]) + " roof" : std::string());
      pts.points.push_back({x, y, tip});
    }
    if (!pts.points.empty()) c.series.push_back(pts);
  }
  c.series.insert(c.series.end(), roofs.begin(), roofs.end());
  if (skipped) c.note = "benchmark rows not drawn (intensity or GFLOP/s missing or not positive): " + std::to_string(skipped);
  if (!c.series.empty())
    o << "<figure>" << svg::render_xy(c)
      << "<figcaption>Each marker is one row of the kernels suite's benchmark table (hover for its name); dashed "
         "lines are each run's measured roofs, min(compute peak, memory read bandwidth × intensity), one per compute peak: "
         "FP32 FMA (f32 and weight-only kernels), BF16 dot (BF16-dot GEMM), INT8 dot (W8A8 GEMM).</figcaption></figure>\n";
  else
    o << "<p class=\"note\">The kernels suite has no benchmark rows or peaks to plot.</p>\n";
  o << notes;
  for (size_t ri = 0; ri < runs.size(); ++ri) {
    const json* t = suite_table(runs[ri].run, "kernels", "benchmarks");
    if (!t) continue;
    o << "<details><summary>kernel benchmarks: " << h(names[ri]) << " (" << t->size() << " rows)</summary>"
      << "<div class=\"scroll\"><table><tr>";
    const std::vector<std::string> cols = {"name", "op", "backend", "dtype", "M", "N", "K", "gflops", "gbs",
                                           "intensity", "ns_per_iter", "compute_roof", "roofline_fraction"};
    for (const auto& k : cols) o << "<th>" << h(k) << "</th>";
    o << "</tr>\n";
    for (const auto& row : *t) {
      o << "<tr>";
      for (const auto& k : cols) {
        const json v = row.is_object() && row.contains(k) ? row[k] : json();
        o << "<td" << (v.is_number() ? " class=\"num\"" : "") << ">" << h(json_cell(v)) << "</td>";
      }
      o << "</tr>\n";
    }
    o << "</table></div></details>\n";
  }
  o << "</section>\n";
}

// One CDF series per (run, workload) of a latency column; at most ~200 points per curve.
std::vector<svg::Series> cdf_series(const std::vector<ReportInput>& runs, const std::vector<std::string>& names,
                                    const std::string& col) {
  std::vector<std::string> workloads;  // color index: first-seen order across runs
  std::vector<svg::Series> out;
  for (size_t ri = 0; ri < runs.size(); ++ri) {
    const json* t = suite_table(runs[ri].run, "load", "requests");
    if (!t) continue;
    for (auto& [w, v] : column_by_group(*t, "workload", col)) {
      auto wi = std::find(workloads.begin(), workloads.end(), w);
      if (wi == workloads.end()) wi = workloads.insert(workloads.end(), w);
      std::sort(v.begin(), v.end());
      svg::Series s;
      s.name = runs.size() > 1 ? names[ri] + " / " + w : w;
      s.color = svg::palette(static_cast<size_t>(wi - workloads.begin()));
      s.dash = ri % 3 == 0 ? "" : ri % 3 == 1 ? "7 4" : "2 3";
      s.step = true;
      const size_t n = v.size(), k = std::min<size_t>(n, 200);
      for (size_t i = 0; i < k; ++i) {
        const size_t idx = k == 1 ? n - 1 : i * (n - 1) / (k - 1);
        s.points.push_back({v[idx], static_cast<double>(idx + 1) / static_cast<double>(n), ""});
      }
      out.push_back(std::move(s));
    }
  }
  return out;
}

// Sweep curves (x = offered rate) of one column, one series per (run, workload).
std::vector<svg::Series> sweep_series(const std::vector<ReportInput>& runs, const std::vector<std::string>& names,
                                      const std::string& col) {
  std::vector<svg::Series> out;
  std::vector<std::string> workloads;
  for (size_t ri = 0; ri < runs.size(); ++ri) {
    const json* t = suite_table(runs[ri].run, "load", "sweep");
    if (!t) continue;
    std::vector<std::pair<std::string, std::vector<std::pair<double, double>>>> by_w;
    for (const auto& row : *t) {
      if (!row.is_object() || !row.contains("rate_rps") || !row["rate_rps"].is_number() || !row.contains(col) ||
          !row[col].is_number())
        continue;
      const std::string w = row.contains("workload") ? json_cell(row["workload"]) : "";
      auto it = std::find_if(by_w.begin(), by_w.end(), [&](const auto& p) { return p.first == w; });
      if (it == by_w.end()) it = by_w.insert(by_w.end(), {w, {}});
      it->second.push_back({row["rate_rps"].get<double>(), row[col].get<double>()});
    }
    for (auto& [w, pts] : by_w) {
      std::stable_sort(pts.begin(), pts.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      auto wi = std::find(workloads.begin(), workloads.end(), w);
      if (wi == workloads.end()) wi = workloads.insert(workloads.end(), w);
      svg::Series s;
      s.name = runs.size() > 1 ? names[ri] + " / " + w : w;
      s.color = svg::palette(static_cast<size_t>(wi - workloads.begin()));
      s.dash = ri % 3 == 0 ? "" : ri % 3 == 1 ? "7 4" : "2 3";
      s.marker = svg::marker_for(ri);
      for (const auto& [x, y] : pts) s.points.push_back({x, y, w + ": " + num(y) + " at " + num(x) + " req/s"});
      out.push_back(std::move(s));
    }
  }
  return out;
}

// The server's /metrics time series of one measured run per report run (the load suite's
// params.runs.<label>.server_metrics, sampled against an HTTP server whose profile names series):
// the first saturation trial, else the first run that has one. Two charts: KV-cache usage
// (fraction) and queue depth / running requests.
void server_metrics_charts(std::ostringstream& o, const std::vector<ReportInput>& runs, const std::vector<std::string>& names) {
  svg::XYChart kv, q;
  kv.id = "chart-server-kv-usage";
  kv.title = "Server KV-cache usage over time";
  kv.x = {"time from the run's start (s)", false, {}, {}};
  kv.y = {"KV-cache usage (fraction)", false, 0.0, {}};
  q.id = "chart-server-queue-depth";
  q.title = "Server queue depth and running requests over time";
  q.x = kv.x;
  q.y = {"requests", false, 0.0, {}};
  std::string caption;
  for (size_t ri = 0; ri < runs.size(); ++ri) {
    const auto it = runs[ri].run.suites.find("load");
    if (it == runs[ri].run.suites.end() || !it->second.params.contains("runs")) continue;
    const json& all = it->second.params["runs"];
    std::string label;
    for (auto& [k, v] : all.items())
      if (v.contains("server_metrics") && (label.empty() || (k.find("saturation") != std::string::npos && label.find("saturation") == std::string::npos)))
        label = k;
    if (label.empty()) continue;
    const json& sm = all[label]["server_metrics"];
    if (!sm.contains("rows") || !sm["rows"].is_array()) continue;
    const std::string who = (runs.size() > 1 ? names[ri] + " / " : std::string()) + label;
    svg::Series skv, sw, sr;
    skv.name = who + ": KV usage";
    sw.name = who + ": waiting (queue depth)";
    sr.name = who + ": running";
    skv.color = sw.color = svg::palette(ri * 2);
    sr.color = svg::palette(ri * 2 + 1);
    sr.dash = "6 3";
    skv.marker = sw.marker = sr.marker = svg::marker_for(ri);
    for (const auto& row : sm["rows"]) {
      if (!row.is_array() || row.size() < 4 || !row[0].is_number()) continue;
      const double t = row[0].get<double>();
      if (row[3].is_number()) skv.points.push_back({t, row[3].get<double>(), num(row[3].get<double>()) + " at " + num(t) + " s"});
      if (row[2].is_number()) sw.points.push_back({t, row[2].get<double>(), num(row[2].get<double>()) + " waiting at " + num(t) + " s"});
      if (row[1].is_number()) sr.points.push_back({t, row[1].get<double>(), num(row[1].get<double>()) + " running at " + num(t) + " s"});
    }
    if (!skv.points.empty()) kv.series.push_back(skv);
    if (!sw.points.empty()) q.series.push_back(sw);
    if (!sr.points.empty()) q.series.push_back(sr);
    const json& series = sm.value("series", json::object());
    std::string names_of;
    for (const auto& [role, name] : series.items())
      if (name.is_string() && !name.get<std::string>().empty()) names_of += (names_of.empty() ? "" : ", ") + role + " = " + name.get<std::string>();
    caption += (caption.empty() ? "" : "; ") + who + ": " + names_of + ", every " + num(sm.value("interval_s", 0.0)) + " s";
  }
  if (kv.series.empty() && q.series.empty()) return;
  o << "<h3>Server metrics during the run</h3>\n";
  for (const svg::XYChart* c : {&kv, &q}) {
    if (c->series.empty()) continue;
    o << "<figure>" << svg::render_xy(*c) << "<figcaption>Sampled from the server's /metrics during the load run (own connection, "
      << "outside the worker pool). Series: " << h(caption) << "</figcaption></figure>\n";
  }
}

void load_section(std::ostringstream& o, const std::vector<ReportInput>& runs, const std::vector<std::string>& names) {
  o << "<section id=\"load\"><h2>Load</h2>\n";
  if (!any_load_results(runs)) {
    o << "<p class=\"note\">no load results in these runs</p></section>\n";
    return;
  }
  const std::string style_note = runs.size() > 1 ? " Color: workload; line style and marker: run (solid: first run)." : "";
  for (const auto& [col, label, id] : {std::tuple<std::string, std::string, std::string>{"ttft_ms", "TTFT", "ttft"},
                                       {"e2e_ms", "E2E latency", "e2e"}}) {
    svg::XYChart c;
    c.id = "chart-latency-cdf-" + id;
    c.title = label + " CDF";
    c.series = cdf_series(runs, names, col);
    if (c.series.empty()) continue;
    double lo = INFINITY, hi = 0;
    for (const auto& s : c.series)
      for (const auto& p : s.points) lo = std::min(lo, p.x), hi = std::max(hi, p.x);
    c.x = {label + " (ms)", lo > 0 && hi / lo > 100, {}, {}};
    c.y = {"fraction of requests", false, 0.0, 1.0};
    o << "<figure>" << svg::render_xy(c) << "<figcaption>Empirical CDF of " << h(label)
      << " per workload, from the load suite's request table." << style_note << "</figcaption></figure>\n";
  }
  for (const auto& [col, label, id] : {std::tuple<std::string, std::string, std::string>{"throughput_rps", "throughput (req/s)", "throughput-rate"},
                                       {"p99_e2e_ms", "p99 E2E latency (ms)", "p99-latency-rate"}}) {
    svg::XYChart c;
    c.id = "chart-" + id;
    c.title = (id == "throughput-rate" ? "Throughput" : "p99 E2E latency") + std::string(" vs offered rate");
    c.series = sweep_series(runs, names, col);
    if (c.series.empty()) continue;
    double lo = INFINITY, hi = 0;
    for (const auto& s : c.series)
      for (const auto& p : s.points) lo = std::min(lo, p.y), hi = std::max(hi, p.y);
    const bool logy = id != "throughput-rate" && lo > 0 && hi / lo > 30;
    c.x = {"offered rate (req/s)", false, {}, {}};
    c.y = logy ? svg::Axis{label, true, {}, {}} : svg::Axis{label, false, 0.0, {}};
    if (id == "throughput-rate") {
      double hi = 0;
      for (const auto& s : c.series)
        for (const auto& p : s.points) hi = std::max(hi, p.x);
      svg::Series ideal;
      ideal.name = "ideal (throughput = offered rate)";
      ideal.color = "#8c959f";
      ideal.dash = "3 3";
      ideal.points = {{0, 0, ""}, {hi, hi, ""}};
      c.series.push_back(ideal);
    }
    o << "<figure>" << svg::render_xy(c) << "<figcaption>From the load suite's rate sweep." << style_note
      << "</figcaption></figure>\n";
  }
  server_metrics_charts(o, runs, names);
  const auto lat = latency_rows(runs);
  if (!lat.empty()) {
    o << "<h3>Latency percentiles</h3><div class=\"scroll\"><table><tr><th>run</th><th>workload</th><th>requests</th>"
         "<th>TTFT p50 (ms)</th><th>TTFT p90</th><th>TTFT p99</th><th>E2E p50 (ms)</th><th>E2E p90</th><th>E2E p99</th></tr>\n";
    for (const auto& r : lat) {
      o << "<tr><td>" << h(names[r.run]) << "</td><td>" << h(r.workload) << "</td><td class=\"num\">" << r.n << "</td>";
      for (double v : {r.ttft_p50, r.ttft_p90, r.ttft_p99, r.e2e_p50, r.e2e_p90, r.e2e_p99})
        o << "<td class=\"num\">" << h(num(v)) << "</td>";
      o << "</tr>\n";
    }
    o << "</table></div>\n";
  }
  for (size_t ri = 0; ri < runs.size(); ++ri) {
    const json* t = suite_table(runs[ri].run, "load", "sweep");
    if (!t) continue;
    const std::vector<std::string> cols = {"workload", "rate_rps", "throughput_rps", "tokens_per_s", "p99_ttft_ms",
                                           "p99_e2e_ms", "goodput_rps"};
    o << "<details><summary>rate sweep: " << h(names[ri]) << " (" << t->size() << " rows)</summary><table><tr>";
    for (const auto& k : cols) o << "<th>" << h(k) << "</th>";
    o << "</tr>\n";
    for (const auto& row : *t) {
      o << "<tr>";
      for (const auto& k : cols) {
        const json v = row.is_object() && row.contains(k) ? row[k] : json();
        o << "<td" << (v.is_number() ? " class=\"num\"" : "") << ">" << h(json_cell(v)) << "</td>";
      }
      o << "</tr>\n";
    }
    o << "</table></details>\n";
  }
  o << "</section>\n";
}

void suites_and_metrics(std::ostringstream& o, const std::vector<ReportInput>& runs, const std::vector<std::string>& names) {
  o << "<section id=\"suites\"><h2>Suites</h2><div class=\"scroll\"><table><tr><th>suite</th>";
  for (const auto& n : names) o << "<th>" << h(n) << "</th>";
  o << "</tr>\n";
  for (const auto& [suite, cells] : suite_rows(runs)) {
    o << "<tr><td class=\"mono\">" << h(suite) << "</td>";
    for (const auto& c : cells) {
      const std::string st = c.status.empty() ? "not run" : c.status;
      o << "<td><span class=\"badge s-" << slug(st) << "\">" << h(st) << "</span>";
      if (!c.status.empty() && (c.seconds > 0 || c.status == "ok")) o << " <span class=\"note\">" << h(num(std::round(c.seconds * 10) / 10)) << " s</span>";
      if (!c.reason.empty()) o << "<div class=\"note\">" << h(c.reason) << "</div>";
      o << "</td>";
    }
    o << "</tr>\n";
  }
  o << "</table></div></section>\n";

  const auto metrics = metric_rows(runs);
  o << "<section id=\"metrics\"><h2>Metrics</h2>\n";
  const bool fold = metrics.size() > 20;
  if (fold) o << "<details><summary>" << metrics.size() << " metrics (click to expand)</summary>\n";
  o << "<div class=\"scroll\"><table><tr><th>key</th><th>unit</th>";
  for (const auto& n : names) o << "<th>" << h(n) << "</th>";
  o << "</tr>\n";
  for (const auto& m : metrics) {
    o << "<tr><td class=\"mono\">" << h(m.key) << "</td><td>" << h(m.unit) << "</td>";
    for (const auto& v : m.values) o << "<td class=\"num\">" << (v ? h(num(*v)) : "") << "</td>";
    o << "</tr>\n";
  }
  o << "</table></div>\n" << (fold ? "</details>\n" : "") << "</section>\n";
}

}  // namespace

std::string render_report_html(const std::vector<ReportInput>& runs) {
  const auto names = run_names(runs);
  std::string joined;
  for (const auto& n : names) joined += (joined.empty() ? "" : " vs ") + n;
  std::ostringstream o;
  o << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
       "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    << "<title>claimbench report: " << h(joined) << "</title>\n<style>" << kCss << "</style></head>\n<body><main>\n";
  o << "<h1>claimbench report</h1>\n<p class=\"sub\">" << h(joined) << "</p>\n";
  o << "<nav><a href=\"#runs\">runs</a><a href=\"#claims\">claims</a><a href=\"#kernels\">kernels</a>"
       "<a href=\"#load\">load</a><a href=\"#suites\">suites</a><a href=\"#metrics\">metrics</a></nav>\n";
  o << "<section id=\"runs\"><h2>Runs and hardware</h2>\n";
  info_table(o, runs, names);
  o << "</section>\n";
  claims_section(o, runs, names);
  kernels_section(o, runs, names);
  load_section(o, runs, names);
  suites_and_metrics(o, runs, names);
  o << "</main></body></html>\n";
  return o.str();
}

}  // namespace cb::harness
