// likwid-bench as an independent check of the machine limits (see include/cb/harness/suites/likwid.h).
#include "cb/harness/suites/likwid.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>

#include "cb/harness/core/process.h"

namespace cb::harness {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

LikwidFigure run_kernel(const std::string& bin, const std::string& kernel, const std::string& workgroup, const char* field, int runs,
                        double seconds, const fs::path& raw_dir, const std::function<double()>& ours) {
  LikwidFigure f;
  f.kernel = kernel;
  char secs[32];
  std::snprintf(secs, sizeof secs, "%g", seconds);
  const std::vector<std::string> argv = {bin, "-t", kernel, "-W", workgroup, "-s", secs};
  for (const auto& a : argv) f.command += (f.command.empty() ? "" : " ") + a;
  for (int i = 0; i < runs; ++i) {
    const fs::path out = raw_dir / ("likwid-" + kernel + "-" + std::to_string(i) + ".txt");
    std::error_code ec;
    fs::remove(out, ec);
    const ProcessResult pr = run_process(argv, 120, out, {}, false);
    const std::string text = read_text_file(out);
    const auto v = parse_likwid_rate(text, field);
    if (pr.exit_code != 0 || !v) {
      f.error = "likwid-bench " + pr.describe() + (v ? "" : std::string(", no ") + field + " line") + "; last lines: " + tail_lines(out, 3);
      continue;
    }
    f.samples.push_back(*v);
    if (!f.value || *v > *f.value) f.value = *v;
    if (ours) f.ours.push_back(ours());
  }
  if (f.value) f.error.clear();
  return f;
}

}  // namespace

std::optional<double> parse_likwid_rate(const std::string& output, const std::string& field) {
  // "MFlops/s:\t\t418876.02" / "MByte/s:\t\t57436.81": MFLOP/s and 1e6 bytes/s.
  const std::regex re("(^|\\n)" + std::regex_replace(field, std::regex(R"([/.])"), R"(\$&)") + R"(:\s*([0-9.eE+-]+))");
  std::smatch m;
  if (!std::regex_search(output, m, re)) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(m[2].str().c_str(), &end);
  if (!std::isfinite(v) || v <= 0) return std::nullopt;
  return v / 1000.0;
}

LikwidCrosscheck run_likwid_crosscheck(int threads, const std::string& isa, size_t stream_bytes, int fp32_runs, int memory_runs,
                                       double seconds, const fs::path& raw_dir, const OwnMeasures& ours) {
  LikwidCrosscheck c;
  const std::string bin = find_executable("likwid-bench");
  if (bin.empty()) {
    c.unavailable = "likwid-bench is not installed (Debian package likwid)";
    return c;
  }
  fs::create_directories(raw_dir);
  {
    const fs::path h = raw_dir / "likwid-help.txt";
    run_process({bin, "-h"}, 20, h, {}, false);
    std::smatch m;
    const std::string text = read_text_file(h);
    static const std::regex ver(R"(Version\s+([0-9][0-9.]*))");
    if (std::regex_search(text, m, ver)) c.version = m[1];
  }
  const std::string t = std::to_string(std::max(1, threads));
  // FP32 FMA peak: 16 kB per thread, resident in L1 (the kernel loads one vector per 15 FMAs).
  const std::string suffix = isa == "avx512" ? "_avx512" : isa == "avx" ? "_avx" : "_sse";
  const std::string fma_kernel = "peakflops_sp" + suffix + (isa == "sse" ? "" : "_fma");
  c.fp32 = run_kernel(bin, fma_kernel, "N:" + std::to_string(16 * std::max(1, threads)) + "kB:" + t, "MFlops/s", fp32_runs, seconds, raw_dir, ours.fp32);
  const std::string mem = "N:" + std::to_string(std::max<size_t>(1, stream_bytes >> 20)) + "MB:" + t;
  c.read = run_kernel(bin, "load" + suffix, mem, "MByte/s", memory_runs, seconds, raw_dir, ours.read);
  c.triad = run_kernel(bin, "stream_sp" + suffix, mem, "MByte/s", memory_runs, seconds, raw_dir, ours.triad);
  return c;
}

void add_likwid_metrics(const LikwidCrosscheck& c, SuiteResult& r, double tolerance) {
  const std::vector<std::string> keys = {"kernels.peak.likwid.fp32_gflops", "kernels.peak.likwid.mem_read_gbs",
                                         "kernels.peak.likwid.triad_gbs"};
  if (!c.unavailable.empty()) {
    for (const auto& k : keys) r.params["not_measured"][k] = c.unavailable;
    r.params["crosscheck"] = {{"tool", "likwid-bench"}, {"ran", false}, {"reason", c.unavailable}};
    return;
  }
  json summary = {{"tool", "likwid-bench " + c.version}, {"ran", true}, {"tolerance", tolerance}, {"checks", json::array()}};
  struct Pair {
    const LikwidFigure* theirs;
    const char* ours;       // the suite's own peak
    const char* ours_like;  // ours measured as likwid measures (1 s mean; 4 KiB pages for memory)
    const char* key;
    const char* ratio_key;
    const char* unit;
    const char* what;
  };
  const Pair pairs[] = {
      {&c.fp32, "kernels.peak.fp32_fma_gflops", "kernels.peak.crosscheck.ours.fp32_gflops", "kernels.peak.likwid.fp32_gflops",
       "kernels.peak.fp32_fma_vs_likwid", "GFLOP/s", "FP32 FMA peak"},
      {&c.read, "kernels.peak.mem_read_gbs", "kernels.peak.crosscheck.ours.mem_read_gbs", "kernels.peak.likwid.mem_read_gbs",
       "kernels.peak.mem_read_vs_likwid", "GB/s", "memory read bandwidth"},
      {&c.triad, "kernels.peak.mem_triad_gbs", "kernels.peak.crosscheck.ours.triad_gbs", "kernels.peak.likwid.triad_gbs",
       "kernels.peak.mem_triad_vs_likwid", "GB/s", "STREAM triad bandwidth"}};
  for (const Pair& p : pairs) {
    const LikwidFigure& f = *p.theirs;
    json check = {{"what", p.what}, {"kernel", f.kernel}, {"command", f.command}, {"samples", f.samples}};
    if (!f.value) {
      r.params["not_measured"][p.key] = "likwid-bench " + f.kernel + " failed: " + f.error;
      check["error"] = f.error;
      summary["checks"].push_back(check);
      continue;
    }
    r.add({p.key, *f.value, p.unit, Direction::HigherIsBetter, NoiseClass::Timing, f.samples,
           {{"command", f.command}, {"estimator", "best run"}}, std::string("likwid-bench ") + f.kernel + " (independent tool)"});
    check["likwid"] = *f.value;
    double ours_best = 0;
    for (double x : f.ours) ours_best = std::max(ours_best, x);
    const Metric* suite_peak = r.find(p.ours);
    if (ours_best > 0) {
      const double ratio = ours_best / *f.value;
      const bool agree = std::fabs(ratio - 1.0) <= tolerance;
      char buf[240];
      std::snprintf(buf, sizeof buf, "%s: ours %.4g vs likwid-bench %.4g %s (1 s mean per run, best of %zu runs each, interleaved; memory on 4 KiB pages as likwid's): %+.1f%% (%s %.0f%%)",
                    p.what, ours_best, *f.value, p.unit, f.samples.size(), 100.0 * (ratio - 1.0), agree ? "within" : "OUTSIDE",
                    100.0 * tolerance);
      std::string note = buf;
      if (suite_peak) {
        std::snprintf(buf, sizeof buf, "; the suite's peak %s (best short window) = %.4g", p.ours, suite_peak->value);
        note += buf;
      }
      r.add({p.ours_like, ours_best, p.unit, Direction::HigherIsBetter, NoiseClass::Timing, f.ours, {{"estimator", "best run"}},
             std::string("ours, measured as likwid-bench measures (1 s mean per run") +
                 (p.theirs == &c.fp32 ? ")" : ", 4 KiB pages)") + ", each run right after one of likwid's"});
      // Samples: the per-pair ratios (each our run over the likwid run just before it), so the
      // spread a shared machine puts on the comparison is on record beside the best-vs-best value.
      std::vector<double> pairs_ratio;
      for (size_t i = 0; i < std::min(f.ours.size(), f.samples.size()); ++i)
        if (f.samples[i] > 0) pairs_ratio.push_back(f.ours[i] / f.samples[i]);
      r.add({p.ratio_key, ratio, "x", Direction::Neutral, NoiseClass::Ratio, pairs_ratio,
             {{"ours_samples", f.ours}, {"likwid_samples", f.samples}, {"likwid", p.key}, {"agree", agree},
              {"estimator", "best of ours / best of likwid's (samples: per interleaved pair)"}},
             note});
      check["ours_interleaved"] = f.ours;
      check["ours"] = ours_best;
      check["ratio"] = ratio;
      check["agree"] = agree;
      check["line"] = note;
    }
    summary["checks"].push_back(check);
  }
  r.params["crosscheck"] = summary;
}

}  // namespace cb::harness
