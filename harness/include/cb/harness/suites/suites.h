// The suites `claimbench run` knows, and what each needs. A suite runs in its own child process
// (so a crash or a hang becomes an ERROR / TIMEOUT entry and the other suites still run) and
// writes <suite>.json into the run folder.
#pragma once

#include <filesystem>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cb/harness/core/suite.h"

namespace cb::harness {

const std::vector<SuiteInfo>& all_suites();
const SuiteInfo* find_suite(const std::string& name);

// The suites that measure an endpoint or the machine (no engine linked). The engine-side suites
// (engine, accuracy, scaling) are declared in cb/harness/engine/suites.h and reach the registry
// through EngineAccess (cb/harness/core/engine_access.h).
SuiteResult run_kernels_suite(const SuiteContext& ctx);
SuiteResult run_cost_suite(const SuiteContext& ctx);
SuiteResult run_load_suite(const SuiteContext& ctx);
SuiteResult run_transport_suite(const SuiteContext& ctx);  // the HTTP path's own cost
// wrk's console output -> {"requests_per_s", "latency_ms_p50", "latency_ms_p99", "non_2xx",
// "socket_errors"} (keys absent when wrk did not print them).
nlohmann::json parse_wrk_output(const std::string& text);

// Text prompts for servers that take text only: the tokenizer of ctx.tokenizer_dir (else the
// model folder) decodes the seeded ids and counts the text's tokens. Throws
// cb::engine::tok::TokenizerError naming the file when there is no usable tokenizer.
struct TextPrompts {
  std::function<std::string(const std::vector<int32_t>&)> to_text;
  std::function<std::vector<int32_t>(const std::string&)> encode;
  int vocab_size = 0;
  nlohmann::json describe;
};
TextPrompts make_text_prompts(const SuiteContext& ctx);

// Why an engine-side suite (kernels, engine, scaling: they measure our engine on this machine's
// CPU) does not run in this context: --sut http:// at a server that is not refengine serve on
// loopback (the figures would describe this machine, not the server under test). Empty: it runs.
// Asks the server (profile detection) only when --server-profile is not given.
std::string engine_suite_skip_reason(const SuiteContext& ctx);

// Where the Google Benchmark binary is (next to the build's other tools), or empty.
std::filesystem::path kernel_bench_binary();

// --backend cuda: the kernels suite runs cb_cuda_bench (built by the cuda preset; empty path when
// this build has none) and reads its JSON; SKIP with the bench's reason where no GPU is usable.
std::filesystem::path cuda_bench_binary();
SuiteResult run_kernels_suite_cuda(const SuiteContext& ctx);

// A GPU's limits measured on it now (cb_cuda_bench --peaks-only, JSON written to raw_json): the
// load suite's MFU / MBU denominators on the cuda backend. nullopt with `why` when not measured.
struct DevicePeaks {
  double fp32_gflops = 0;  // the op table's f32 matmuls run FP32 cuBLASLt GEMMs
  double bf16_gflops = 0;  // tensor cores, reported beside it
  double copy_gbs = 0;     // device-to-device copy, bytes read + written per second
  std::string source;
};
std::optional<DevicePeaks> measure_cuda_peaks(const std::filesystem::path& raw_json, std::string& why);

}  // namespace cb::harness
