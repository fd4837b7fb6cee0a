// The likwid-bench cross-check of the machine limits: parsing its output, and the verdict it
// writes, which must be able to say "disagree" (a planted 1.5x error in our figure flips it).
#include <gtest/gtest.h>

#include "cb/harness/suites/likwid.h"

using namespace cb::harness;

namespace {
const char* kPeakflops = R"(--------------------------------------------------------------------------------
Cycles:			4878234522
Time:			2.327387e+00 sec
Number of Flops:	503316480000
MFlops/s:		216258.17
Data volume (Byte):	67108864000
MByte/s:		28834.42
--------------------------------------------------------------------------------
)";

LikwidFigure fig(const char* kernel, double likwid, double ours) {
  LikwidFigure f;
  f.kernel = kernel;
  f.command = std::string("likwid-bench -t ") + kernel;
  f.value = likwid;
  f.samples = {likwid * 0.97, likwid};
  f.ours = {ours * 0.98, ours};
  return f;
}
}  // namespace

TEST(Likwid, ParsesRatesIntoGigaUnits) {
  EXPECT_DOUBLE_EQ(*parse_likwid_rate(kPeakflops, "MFlops/s"), 216.25817);
  EXPECT_DOUBLE_EQ(*parse_likwid_rate(kPeakflops, "MByte/s"), 28.83442);
  EXPECT_FALSE(parse_likwid_rate(kPeakflops, "MUpdates/s").has_value());
  EXPECT_FALSE(parse_likwid_rate("MFlops/s:\t\tnan\n", "MFlops/s").has_value());
  EXPECT_FALSE(parse_likwid_rate("", "MByte/s").has_value());
}

TEST(Likwid, AgreementIsMeasuredAndCanFail) {
  SuiteResult r;
  r.suite = "kernels";
  r.add({"kernels.peak.fp32_fma_gflops", 410, "GFLOP/s", Direction::HigherIsBetter, NoiseClass::Timing, {}, {}, ""});
  LikwidCrosscheck c;
  c.version = "5.2";
  c.fp32 = fig("peakflops_sp_avx512_fma", 400, 404);   // +1%: agrees
  c.read = fig("load_avx512", 50, 75);                  // planted 1.5x error in our figure: disagrees
  c.triad.kernel = "stream_sp_avx512";
  c.triad.error = "likwid-bench exit code 1";           // failed: a reason, no figure
  add_likwid_metrics(c, r);
  const Metric* f = r.find("kernels.peak.fp32_fma_vs_likwid");
  ASSERT_NE(f, nullptr);
  EXPECT_NEAR(f->value, 1.01, 1e-12);
  EXPECT_TRUE(f->params["agree"].get<bool>());
  EXPECT_NE(f->note.find("within 5%"), std::string::npos) << f->note;
  const Metric* m = r.find("kernels.peak.mem_read_vs_likwid");
  ASSERT_NE(m, nullptr);
  EXPECT_NEAR(m->value, 1.5, 1e-12);
  EXPECT_FALSE(m->params["agree"].get<bool>());
  EXPECT_NE(m->note.find("OUTSIDE 5%"), std::string::npos) << m->note;
  ASSERT_NE(r.find("kernels.peak.crosscheck.ours.mem_read_gbs"), nullptr);
  EXPECT_EQ(r.find("kernels.peak.crosscheck.ours.mem_read_gbs")->value, 75);
  EXPECT_EQ(r.find("kernels.peak.likwid.triad_gbs"), nullptr);
  EXPECT_NE(r.params["not_measured"]["kernels.peak.likwid.triad_gbs"].get<std::string>().find("exit code 1"), std::string::npos);
  EXPECT_EQ(r.params["crosscheck"]["checks"].size(), 3u);
}

TEST(Likwid, AbsentToolIsAReasonNotAFigure) {
  SuiteResult r;
  LikwidCrosscheck c;
  c.unavailable = "likwid-bench is not installed (Debian package likwid)";
  add_likwid_metrics(c, r);
  EXPECT_TRUE(r.metrics.empty());
  EXPECT_EQ(r.params["not_measured"]["kernels.peak.likwid.fp32_gflops"], c.unavailable);
  EXPECT_FALSE(r.params["crosscheck"]["ran"].get<bool>());
}
