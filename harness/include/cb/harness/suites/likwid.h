// An independent check of the machine limits the kernels suite measures: likwid-bench (Debian
// package `likwid`), run in the same job on the same thread count, with the kernels that match
// ours: peakflops_sp_<isa>_fma (FP32 FMA peak, L1-resident), load_<isa> (read bandwidth) and
// stream_sp_<isa> (STREAM triad, 12 bytes per element counted, as ours). Each likwid run is
// followed at once by a run of our own measurement of the same limit, and both keep their best
// figure (a peak is a best-of), so that the comparison is fair on a shared machine whose memory
// bandwidth alone drifts by 20% from minute to minute. Where likwid-bench is absent or fails, the
// reason is returned instead of figures.
#pragma once

#include <filesystem>
#include <functional>
#include <vector>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "cb/harness/core/results.h"

namespace cb::harness {

struct LikwidFigure {
  std::string kernel;           // e.g. "peakflops_sp_avx512_fma"
  std::string command;          // the command line run
  std::optional<double> value;  // GFLOP/s or GB/s (1e9 bytes), best of the runs
  std::vector<double> samples;
  std::vector<double> ours;     // our measurement, interleaved with likwid's runs
  std::string error;            // why value is absent
};

// Our own measurement of each limit (GFLOP/s or GB/s), run right after each likwid run.
struct OwnMeasures {
  std::function<double()> fp32, read, triad;
};

struct LikwidCrosscheck {
  std::string unavailable;  // non-empty: likwid-bench was not run, and why
  std::string version;
  LikwidFigure fp32, read, triad;
};

// Runs the three kernels on `threads` threads (the FP32 peak `fp32_runs` times, the two bandwidth
// kernels `memory_runs` times each, at least `seconds` each) with the vector width `isa`
// ("avx512", "avx" or "sse"); the outputs go to raw_dir/likwid-*.txt.
LikwidCrosscheck run_likwid_crosscheck(int threads, const std::string& isa, size_t stream_bytes, int fp32_runs, int memory_runs,
                                       double seconds, const std::filesystem::path& raw_dir, const OwnMeasures& ours);

// Parses likwid-bench's "MFlops/s:" or "MByte/s:" line into GFLOP/s or GB/s.
std::optional<double> parse_likwid_rate(const std::string& output, const std::string& field);

// Adds kernels.peak.likwid.* and kernels.peak.*_vs_likwid (best of ours interleaved / best of
// likwid's) metrics, or not_measured reasons, to r; `tolerance` (0.05) decides the agreement
// written in params and notes.
void add_likwid_metrics(const LikwidCrosscheck& c, SuiteResult& r, double tolerance = 0.05);

}  // namespace cb::harness
