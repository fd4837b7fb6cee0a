// Accuracy regression: the model variants the accuracy suite measures (dense, PTQ-INT8, QAT-INT8,
// 2:4, structured), how each is measured (held-out task accuracy, answer perplexity, model bytes,
// decode tokens/s, FLOPs/token), and the check against committed golden baselines. Shared by the
// `accuracy` suite and the accuracy gtests, so both judge the same numbers the same way.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace cb::harness::accuracy {

// One variant of a model. `dir` may not exist yet: `build` says how the suite makes it (at run
// time from the dense model, or committed by ci/build-model-variants.sh).
struct Variant {
  std::string name;             // dense | ptq-int8 | qat-int8 | sparse24 | structured60
  std::filesystem::path dir;
  std::string provenance;       // how the variant was made, for reports
  bool committed = false;       // a committed model (else built at run time)
};

// The variants of the embedded default model: dense is `dense_dir`, ptq-int8 is built at run
// time under `work_dir`, the fine-tuned ones are committed next to the default model.
std::vector<Variant> default_variants(const std::filesystem::path& dense_dir, const std::filesystem::path& work_dir);
// True when `dir` is the embedded default model (the committed variants derive from it).
bool is_default_model(const std::filesystem::path& dir);

struct EvalSettings {
  int examples_per_task = 200;  // held-out examples per task
  int decode_prompt_tokens = 64;
  int decode_tokens = 64;
  int decode_reps = 3;
  int flops_context = 128;      // context length at which FLOPs/token are counted
  std::string backend = "cpu";  // the engine backend the variants run on
};

struct VariantMeasure {
  Variant variant;
  nlohmann::json tasks;           // {task: {correct, total, accuracy, chance}}
  double mean_accuracy = 0;
  double answer_perplexity = 0;
  uint64_t model_bytes = 0;       // config.json + safetensors files
  std::vector<double> decode_tps; // one per repetition
  double decode_tps_median = 0;
  int64_t flops_per_token = 0;    // planned: matmul + attention at EvalSettings::flops_context, from config.json
  // Executed: FLOPs the model counted while it ran the decode measurement (Model::executed_flops),
  // per processed token (prompt + generated) of one repetition.
  double executed_flops_per_token = 0;
  nlohmann::json config;          // the variant's config.json
};

// Loads the variant on the cpu backend and measures it. Throws (ModelError etc.) when the model
// cannot be opened.
VariantMeasure measure_variant(const Variant& v, const EvalSettings& s);

// Baselines: suites/accuracy/baselines.json.
struct BaselineCheckRow {
  std::string variant, task;
  double baseline = 0, measured = 0, drop_points = 0, threshold_points = 0;
  bool regressed = false;
};
std::filesystem::path default_baselines_file();
// Compares measured task accuracies with the baseline file; rows for every (variant, task) the
// file lists and the measurement has. Throws std::runtime_error naming the file on a bad file.
std::vector<BaselineCheckRow> check_baselines(const std::vector<VariantMeasure>& measured, const std::filesystem::path& file,
                                              int examples_per_task);
// The baseline file content for these measurements (CB_UPDATE_BASELINES=1 in the gtest).
nlohmann::json baselines_json(const std::vector<VariantMeasure>& measured, int examples_per_task, double threshold_points);

// Bring your own: perplexity of a text file (bytes tokenized, windows of at most the model's
// context), exact-match accuracy of a JSONL file of {"prompt": ..., "answer": ...} lines (greedy,
// answer compared after stripping EOS). Errors name the file and line.
struct ByoText { double perplexity = 0; int64_t tokens = 0; int windows = 0; };
ByoText byo_perplexity(const std::filesystem::path& model_dir, const std::filesystem::path& text_file, int window = 1024,
                       const std::string& backend = "cpu");
struct ByoQa { int correct = 0, total = 0; nlohmann::json failures; double accuracy() const { return total ? double(correct) / total : 0; } };
ByoQa byo_exact_match(const std::filesystem::path& model_dir, const std::filesystem::path& jsonl_file,
                      const std::string& backend = "cpu");

}  // namespace cb::harness::accuracy
