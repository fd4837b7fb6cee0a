// Renders report.html in headless Chromium: a screenshot (a real PNG of the requested size) and the
// DOM after load (the page parsed, its title and chart SVGs present, no script element injected by
// file content). Chromium is a CI dependency (ci/install-deps.sh); its absence is a failure.
// Artifacts stay in <build>/test-artifacts/report-chromium/ for people to look at.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "cb/harness/report/report.h"

namespace fs = std::filesystem;

namespace cb_report_test {
std::vector<fs::path> make_sample_runs(const fs::path& base);  // test_report.cpp
}

namespace {

const char* kChromium = "/usr/bin/chromium";

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs chromium headless on `url` with extra flags; output to out_file (stdout) and log_file (stderr).
int run_chromium(const fs::path& profile, const std::string& flags, const std::string& url, const fs::path& stdout_file,
                 const fs::path& log_file) {
  const std::string cmd = std::string("timeout -k 5 60 ") + kChromium +
                          " --headless --no-sandbox --disable-gpu --disable-quic --no-first-run"
                          " --disable-background-networking --disable-component-update --disable-sync"
                          " --hide-scrollbars --user-data-dir='" + profile.string() + "' " + flags + " '" + url +
                          "' >'" + stdout_file.string() + "' 2>'" + log_file.string() + "'";
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

uint32_t be32(const std::string& s, size_t at) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(s[at + i]);
  return v;
}

TEST(ReportChromium, RendersScreenshotAndDom) {
  ASSERT_TRUE(fs::exists(kChromium)) << kChromium << " is missing: the report's browser test needs Chromium. "
                                     << "Run ci/install-deps.sh (it installs the Debian 'chromium' package).";
  const fs::path art = fs::path(CB_BINARY_DIR) / "test-artifacts" / "report-chromium";
  const fs::path tmp = fs::temp_directory_path() / ("cb_report_chromium_" + std::to_string(::getpid()));
  fs::remove_all(art);
  fs::remove_all(tmp);
  fs::create_directories(art);

  std::vector<cb::harness::ReportInput> runs;
  for (const auto& d : cb_report_test::make_sample_runs(tmp / "runs")) runs.push_back(cb::harness::load_report_input(d));
  cb::harness::write_report(runs, art);
  const std::string url = "file://" + fs::absolute(art / "report.html").string();

  // screenshot
  const fs::path png = art / "report.png";
  int rc = run_chromium(tmp / "profile1", "--window-size=1400,3000 --screenshot='" + png.string() + "'", url,
                        art / "screenshot.stdout", art / "screenshot.log");
  ASSERT_EQ(rc, 0) << "chromium --screenshot failed (124 = timed out); see " << (art / "screenshot.log");
  ASSERT_TRUE(fs::exists(png)) << "no screenshot written; see " << (art / "screenshot.log");
  const std::string img = read_all(png);
  ASSERT_GT(img.size(), 50000u) << "screenshot is suspiciously small (blank page?)";
  ASSERT_EQ(img.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  ASSERT_EQ(img.substr(12, 4), "IHDR");
  EXPECT_EQ(be32(img, 16), 1400u) << "PNG width";
  EXPECT_EQ(be32(img, 20), 3000u) << "PNG height";

  // DOM after parsing
  rc = run_chromium(tmp / "profile2", "--dump-dom", url, art / "dom.html", art / "dump-dom.log");
  ASSERT_EQ(rc, 0) << "chromium --dump-dom failed; see " << (art / "dump-dom.log");
  const std::string dom = read_all(art / "dom.html");
  EXPECT_NE(dom.find("<title>claimbench report: run-a vs run-b</title>"), std::string::npos) << "page did not load";
  for (const char* id : {"chart-claims", "chart-roofline", "chart-latency-cdf-ttft", "chart-latency-cdf-e2e",
                         "chart-throughput-rate", "chart-p99-latency-rate"})
    EXPECT_NE(dom.find(std::string("<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"") + id + "\""), std::string::npos)
        << id << " not in the parsed DOM";
  EXPECT_NE(dom.find("<polyline"), std::string::npos);  // curves were parsed as SVG, not text
  EXPECT_EQ(dom.find("<script"), std::string::npos) << "a metric name became a script element";
  EXPECT_NE(dom.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
  fs::remove_all(tmp);
}

}  // namespace
