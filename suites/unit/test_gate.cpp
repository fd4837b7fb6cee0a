// The perf gate's baseline mode (fingerprint-matched baselines, SKIP otherwise) and the hardware
// fingerprint it keys on, on run folders written to a temporary directory.
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "cb/harness/core/environment.h"
#include "cb/harness/suites/gate.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace cb::harness;
using nlohmann::json;

namespace {

json machine(const std::string& stepping, const std::string& hypervisor = "KVMKVMKVM") {
  json hw = {{"cpu_model", "AMD EPYC"}, {"cpu_vendor", "AuthenticAMD"}, {"cpu_family", "25"}, {"cpu_model_id", "17"},
             {"cpu_stepping", stepping}, {"cpu_microcode", "0xa101144"}, {"cpu_flags", {"avx2", "fma", "avx512f"}},
             {"cores", 2}, {"threads", 2}, {"hypervisor", hypervisor}, {"gpus", json::array()},
             {"hostname", "ci-runner-1"}, {"memory_bytes", int64_t(24) << 30}, {"os", "Linux 6.1 x86_64"}};
  hw["fingerprint_fields"] = fingerprint_fields(hw);
  hw["fingerprint"] = hardware_fingerprint(hw);
  return hw;
}

// A run folder with one kernels metric (10 samples around `ratio`).
fs::path write_run(const fs::path& dir, const json& hw, double ratio, const std::string& finished = "2026-12-01T00:00:00Z") {
  fs::create_directories(dir);
  SuiteResult s;
  s.suite = "kernels";
  Metric m;
  m.key = "kernels.matmul.cpu_vs_ref.speedup";
  for (int i = 0; i < 10; ++i) m.samples.push_back(ratio * (1.0 + 0.002 * (i - 5)));
  m.value = median(m.samples);
  m.unit = "x";
  m.direction = Direction::HigherIsBetter;
  m.noise = NoiseClass::Ratio;
  s.add(m);
  write_json_atomic(dir / "kernels.json", s.to_json());
  write_json_atomic(dir / "manifest.json", {{"schema", "claimbench.manifest"}, {"schema_version", "1.0"},
                                            {"run_id", dir.filename().string()}, {"hardware", hw}, {"finished_at", finished},
                                            {"build", {{"commit", "abc"}}}, {"suites", {{"kernels", {{"status", "ok"}}}}}});
  return dir;
}

CompareOptions gate_options() {
  CompareOptions o;
  o.threshold = 0.3;
  o.metrics = {"kernels.matmul.cpu_vs_ref.speedup"};
  o.required = o.metrics;
  return o;
}

}  // namespace

TEST(HardwareFingerprint, CoversCpuGenerationHypervisorAndCountsButNotHostOrMemory) {
  const json a = machine("1");
  EXPECT_EQ(a["fingerprint"].get<std::string>().size(), 12u);
  // Same model name, another stepping (or family/model, microcode, hypervisor, counts): another class.
  EXPECT_NE(hardware_fingerprint(machine("2")), hardware_fingerprint(a));
  EXPECT_NE(hardware_fingerprint(machine("1", "Microsoft Hv")), hardware_fingerprint(a));
  for (const auto& [key, value] : std::vector<std::pair<std::string, json>>{
           {"cpu_family", "26"}, {"cpu_model_id", "2"}, {"cpu_microcode", "0xa101148"}, {"cores", 4}, {"threads", 4},
           {"cpu_vendor", "GenuineIntel"}, {"cpu_flags", {"avx2", "fma"}}}) {
    json b = a;
    b[key] = value;
    EXPECT_NE(hardware_fingerprint(b), hardware_fingerprint(a)) << key;
  }
  // Host name, memory size and OS do not decide how fast a kernel runs.
  json c = a;
  c["hostname"] = "ci-runner-2";
  c["memory_bytes"] = int64_t(32) << 30;
  c["os"] = "Linux 6.6 x86_64";
  EXPECT_EQ(hardware_fingerprint(c), hardware_fingerprint(a));
  const std::string d = describe_machine_class(a);
  EXPECT_NE(d.find("family 25 model 17 stepping 1"), std::string::npos) << d;
  EXPECT_NE(d.find("KVMKVMKVM"), std::string::npos) << d;
}

TEST(HardwareFingerprint, ThisMachineRecordsEveryField) {
  const json hw = hardware_info();
  for (const char* k : {"cpu_vendor", "cpu_family", "cpu_model_id", "cpu_stepping", "cpu_microcode", "hypervisor", "cores", "threads"})
    EXPECT_TRUE(hw.contains(k)) << k;
  EXPECT_GE(hw["threads"].get<int>(), hw["cores"].get<int>());
  EXPECT_EQ(hw["fingerprint"], hardware_fingerprint(hw));
  // The cache size is recorded beside the class, never in it (compare warns where it differs).
  if (hw.contains("llc_bytes")) {
    EXPECT_GT(hw["llc_bytes"].get<int64_t>(), 0);
    json other = hw;
    other["llc_bytes"] = hw["llc_bytes"].get<int64_t>() * 16;
    EXPECT_EQ(hardware_fingerprint(other), hw["fingerprint"]);
  }
}

TEST(GateBaselineMode, UsesOnlyTheBaselineOfThisMachineClass) {
  cb::test::TempDir tmp("gate");
  const json here = machine("1"), older = machine("0");
  const fs::path root = tmp.path() / "baselines";
  write_run(root / older["fingerprint"].get<std::string>() / "kernels-gate", older, 1.09);
  write_run(root / here["fingerprint"].get<std::string>() / "kernels-gate", here, 0.70);
  const auto list = list_baselines(root, "kernels-gate");
  ASSERT_EQ(list.size(), 2u);

  // 0.69 here against this class's 0.70: pass; against the other class's 1.09 it would fail.
  const RunData ok = RunData::load(write_run(tmp.path() / "new-ok", here, 0.69));
  const GateResult g = gate_against_baselines(root, "kernels-gate", ok, gate_options(), "ci/perf-gate.sh --update");
  EXPECT_EQ(g.exit_code, kGatePass) << g.reason;
  EXPECT_EQ(g.baseline, root / here["fingerprint"].get<std::string>() / "kernels-gate");

  // A real 2x slowdown on this class still fails.
  const RunData slow = RunData::load(write_run(tmp.path() / "new-slow", here, 0.35));
  const GateResult f = gate_against_baselines(root, "kernels-gate", slow, gate_options(), "ci/perf-gate.sh --update");
  EXPECT_EQ(f.exit_code, kGateFail);
  EXPECT_EQ(f.verdict, "FAIL");
  EXPECT_NE(f.reason.find("regression"), std::string::npos) << f.reason;
}

TEST(GateBaselineMode, NoBaselineForThisClassIsSkipWithReasonNeverFailOrPass) {
  cb::test::TempDir tmp("gate");
  const json here = machine("1"), older = machine("0");
  const fs::path root = tmp.path() / "baselines";
  write_run(root / "ci-2core" / "kernels-gate", older, 1.09);
  for (double ratio : {0.69, 0.35, 2.0}) {  // whatever this machine measures
    const RunData next = RunData::load(write_run(tmp.path() / ("new-" + std::to_string(ratio)), here, ratio));
    const GateResult g = gate_against_baselines(root, "kernels-gate", next, gate_options(), "ci/perf-gate.sh --update");
    EXPECT_EQ(g.exit_code, kGateSkip);
    EXPECT_EQ(g.verdict, "SKIP");
    EXPECT_FALSE(g.comparison.has_value());
    EXPECT_NE(g.reason.find(here["fingerprint"].get<std::string>()), std::string::npos) << g.reason;
    EXPECT_NE(g.reason.find(older["fingerprint"].get<std::string>()), std::string::npos) << g.reason;
    EXPECT_NE(g.reason.find("family 25 model 17 stepping 1"), std::string::npos) << g.reason;
    EXPECT_NE(g.reason.find("ci/perf-gate.sh --update"), std::string::npos) << g.reason;
  }
  // No baselines at all: SKIP too.
  const RunData next = RunData::load(write_run(tmp.path() / "alone", here, 1.0));
  EXPECT_EQ(gate_against_baselines(tmp.path() / "empty", "kernels-gate", next, gate_options(), "x").exit_code, kGateSkip);
}

TEST(GateAbMode, SideArgumentsThatAreNothingUsableAreNamed) {
  cb::test::TempDir tmp("gate");
  try {
    resolve_ab_side((tmp.path() / "empty-build").string(), tmp.path(), tmp.path() / "work", {});
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("empty-build"), std::string::npos) << e.what();
  }
  fs::create_directories(tmp.path() / "not-a-build");
  try {
    resolve_ab_side((tmp.path() / "not-a-build").string(), tmp.path(), tmp.path() / "work", {});
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("kernels/bench/cb_kernel_bench"), std::string::npos) << e.what();
  }
}
