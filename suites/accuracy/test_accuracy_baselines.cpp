// Accuracy regression gate: every committed variant of the default model keeps its held-out task
// accuracy within the baseline threshold (suites/accuracy/baselines.json). Regenerate the file
// after retraining with CB_UPDATE_BASELINES=1 (ci/build-model-variants.sh does).
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "cb/engine/model/engine.h"
#include "cb/harness/engine/accuracy.h"
#include "cb/harness/core/results.h"

namespace fs = std::filesystem;
namespace acc = cb::harness::accuracy;

namespace {

std::vector<acc::VariantMeasure> measure_committed(const acc::EvalSettings& s) {
  std::vector<acc::VariantMeasure> out;
  for (const auto& v : acc::default_variants(cb::engine::default_model_dir(), fs::temp_directory_path() / "unused")) {
    if (v.name != "dense" && !v.committed) continue;  // PTQ is rebuilt by the suite; its quality follows dense + kernels
    if (!fs::exists(v.dir / "config.json")) {
      ADD_FAILURE() << v.name << ": committed variant missing at " << v.dir << " (ci/build-model-variants.sh builds it)";
      continue;
    }
    out.push_back(acc::measure_variant(v, s));
  }
  return out;
}

}  // namespace

TEST(AccuracyBaselines, CommittedVariantsStayWithinThreshold) {
  acc::EvalSettings s;
  s.decode_reps = 1;
  s.decode_tokens = 4;
  const auto measured = measure_committed(s);
  const fs::path file = acc::default_baselines_file();
  const char* update = std::getenv("CB_UPDATE_BASELINES");
  if (update && std::string(update) == "1") {
    cb::harness::write_json_atomic(file, acc::baselines_json(measured, s.examples_per_task, 2.0));
    GTEST_SKIP() << "rewrote " << file;
  }
  ASSERT_TRUE(fs::exists(file)) << file << " missing: run CB_UPDATE_BASELINES=1 cb_accuracy_tests";
  const auto rows = acc::check_baselines(measured, file, s.examples_per_task);
  ASSERT_FALSE(rows.empty()) << "no (variant, task) pair of " << file << " was measured";
  for (const auto& r : rows) {
    std::printf("%-13s %-9s baseline %5.1f%%  measured %5.1f%%  drop %+5.1f points (limit %.1f)\n", r.variant.c_str(),
                r.task.c_str(), 100 * r.baseline, 100 * r.measured, r.drop_points, r.threshold_points);
    EXPECT_FALSE(r.regressed) << r.variant << "/" << r.task << ": accuracy " << r.measured << " vs baseline " << r.baseline;
  }
}

// The default model learned every task: clearly above chance on each (issue #6).
TEST(AccuracyBaselines, DefaultModelIsClearlyAboveChanceOnEveryTask) {
  acc::EvalSettings s;
  s.decode_reps = 1;
  s.decode_tokens = 4;
  const auto m = acc::measure_variant({"dense", cb::engine::default_model_dir(), "default", true}, s);
  ASSERT_FALSE(m.tasks.empty());
  for (const auto& [task, t] : m.tasks.items()) {
    const double a = t["accuracy"].get<double>(), chance = t["chance"].get<double>();
    EXPECT_GT(a, chance + 0.2) << task << ": accuracy " << a << " is not clearly above chance " << chance;
  }
}

class ByoAccuracy : public ::testing::Test {
 protected:
  fs::path dir = fs::path(CB_BINARY_DIR) / "accuracy-byo-test";
  void SetUp() override { fs::create_directories(dir); }
  fs::path write(const std::string& name, const std::string& text) {
    std::ofstream(dir / name) << text;
    return dir / name;
  }
};

TEST_F(ByoAccuracy, PerplexityOfATextFileIsFiniteAndWindowed) {
  const auto f = write("text.txt", std::string(3000, 'a') + "add:12+30=42\n");
  const auto r = acc::byo_perplexity(cb::engine::default_model_dir(), f, 1024);
  EXPECT_EQ(r.windows, 3);
  EXPECT_EQ(r.tokens, 3013);  // every byte predicted exactly once (each window starts with BOS)
  EXPECT_GT(r.perplexity, 1.0);
  EXPECT_LT(r.perplexity, 259.0 * 4);
}

TEST_F(ByoAccuracy, ExactMatchCountsAndNamesBadLines) {
  const auto good = write("qa.jsonl", "{\"prompt\": \"copy:abc=\", \"answer\": \"abc\"}\n\n{\"prompt\": \"add:1+1=\", \"answer\": \"2\"}\n");
  const auto r = acc::byo_exact_match(cb::engine::default_model_dir(), good);
  EXPECT_EQ(r.total, 2);
  EXPECT_GE(r.correct, 0);
  EXPECT_LE(r.correct, 2);
  const auto bad = write("bad.jsonl", "{\"prompt\": \"a\", \"answer\": \"b\"}\n{\"prompt\": 3}\n");
  try {
    acc::byo_exact_match(cb::engine::default_model_dir(), bad);
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("bad.jsonl:2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("\"prompt\""), std::string::npos) << e.what();
  }
  const auto notjson = write("notjson.jsonl", "{oops\n");
  EXPECT_THROW(acc::byo_exact_match(cb::engine::default_model_dir(), notjson), std::runtime_error);
}
