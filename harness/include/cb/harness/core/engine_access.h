// The one seam between the harness and an engine running in this process.
//
// The harness core, the load generator, the verdicts, the reports and the endpoint-capable suites
// (kernels, load, transport, cost) never include an engine header. What they need from an
// in-process engine they get through EngineAccess, which the engine adapter library
// (cb_harness_engine, harness/src/engine/) installs when the binary links it: `claimbench` does,
// `claimbench-http` does not. Without it, claimbench measures endpoints (--sut http://HOST:PORT,
// null), the engine-side suites (engine, accuracy, scaling) report "not built" with the reason
// (accuracy against --sut http:// runs without the engine: suites/accuracy_http.h),
// and --sut inprocess is an error that says so.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cb/harness/core/suite.h"

namespace cb::harness {
namespace load {
class Sut;
struct InProcessConfig;
}  // namespace load

// What the load suite needs to know about the model an in-process engine serves.
struct ModelFacts {
  std::string name;                  // model folder name
  int bos_token_id = 1;
  int max_context = 0;               // tokens
  int vocab_size = 0;
  double matmul_flops_per_token = 0; // 2 N K per linear layer, lm_head included
  double kv_bytes_per_token = 0;     // K and V of every layer, as the engine stores them
  double weight_bytes = 0;           // read once per forward step
};

// One model opened in this process; every SUT it makes shares its weights.
class InProcessEngine {
 public:
  virtual ~InProcessEngine() = default;
  virtual const ModelFacts& facts() const = 0;
  virtual std::unique_ptr<load::Sut> make_sut(const load::InProcessConfig& cfg) = 0;
};

// The kernels suite's engine section: batch-1 decode and a prefill on one model, each repetition
// paired with its own machine-limit measurement.
struct EngineBenchRequest {
  std::filesystem::path model_dir;
  int prefill_tokens = 128;
  int decode_tokens = 16;
  int repetitions = 3;
  uint64_t seed = 1;
};
struct EngineBenchFigures {
  double weight_bytes = 0;
  std::vector<double> decode_tokens_per_s;   // one per repetition
  std::vector<double> decode_bw_fraction;    // decode bytes/s / bandwidth measured just before
  // Each step's bytes/s over the triad pass run right before it, the median over the steps:
  // steadier than one window before the repetition on a host whose bandwidth jitters.
  std::vector<double> decode_triad_paired_fraction;
  std::vector<double> prefill_gflops;
  std::vector<double> prefill_peak_fraction_samples;  // each over the FMA peak measured right before it
  double decode_tokens_per_s_median = 0, decode_bw_fraction_median = 0, prefill_gflops_median = 0;
  double decode_triad_paired_fraction_median = 0;
  double prefill_peak_fraction = 0;          // median prefill GFLOP/s / peak FP32 FMA
};

struct EngineAccess {
  std::function<std::unique_ptr<InProcessEngine>(const std::filesystem::path& model_dir, const std::string& backend)> open;
  // "" when the named backend can run here, else why not (no GPU, no kernel image, ...); throws
  // std::invalid_argument naming the known backends for a name the engine does not have.
  std::function<std::string(const std::string& backend)> backend_unavailable;
  std::function<EngineBenchFigures(const EngineBenchRequest&, const std::function<void(const std::string&)>& progress)> bench;
  // The block tables the engine's KV allocator gives `sequences` sequences decoding to `context`
  // beside churning short requests (cb/engine/serving/placement_trace.h, seeded), as the kernel
  // bench's --cb_paged_tables file: {"block_size", "context", "pool_blocks", "tables",
  // "mean_run_blocks", "jumps_per_sequence", "source", "trace"}.
  std::function<nlohmann::json(int sequences, int context, int block_size, uint32_t seed)> kv_placement_tables;
  // Planted-defect names from a comma-separated list, validated against the engine's (throws
  // std::invalid_argument naming the unknown one).
  std::function<std::vector<std::string>(const std::string& csv)> parse_defects;
  // The engine-side suites by name (engine, accuracy, scaling); the registry (suites/suites.cpp)
  // holds their descriptions and time limits.
  std::map<std::string, std::function<SuiteResult(const SuiteContext&)>> suites;
};

void install_engine_access(EngineAccess access);
// The installed access, or nullptr in a build without the engine adapter.
const EngineAccess* engine_access();
// The reason an engine-side measurement is missing from this build, for not-built entries.
std::string no_engine_reason();

}  // namespace cb::harness
