// Kernel metrics from Google Benchmark output, shared by the kernels suite and the A/B gate: one
// series per benchmark (one sample per repetition), the machine peaks, per-kernel rates with
// roofline fractions against the peaks of the same output, and same-run ratios (cpu vs ref, cpu vs
// oneDNN, int8 / bf16 / 2:4 vs f32) with their headline keys.
#pragma once

#include <filesystem>

#include <nlohmann/json.hpp>

#include "cb/harness/core/results.h"

namespace cb::harness {

// Reads a Google Benchmark JSON file (bare NaN / inf read as null). Throws SchemaError naming the
// file and byte offset.
nlohmann::json read_benchmark_json(const std::filesystem::path& path);

// Adds the metrics and tables of `gb` (Google Benchmark JSON: "context" + "benchmarks") to r.
void add_kernel_metrics(const nlohmann::json& gb, SuiteResult& r);

// Adds the metrics and tables of cb_cuda_bench's JSON (device peaks, the cuda backend's matmul per
// variant / shape / M with f32-relative ratios, the best-cuBLASLt comparison, decode attention) to
// r, with the claims' headline ratios (kernels.matmul.{bf16,int8}_vs_f32.speedup) at q_o M=4096.
void add_cuda_bench_metrics(const nlohmann::json& cb, SuiteResult& r);

}  // namespace cb::harness
