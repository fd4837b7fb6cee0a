// Power sensors against fake ones: a powercap tree written by the test (RAPL counters, wrap-around,
// sub-zones and psys ignored) and a fake nvidia-smi script (board power of two GPUs).
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "cb/harness/load/power_meter.h"

namespace fs = std::filesystem;
using namespace cb::harness::load;

namespace {

fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("cb-power-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Atomically (temp file + rename): the meter's sampling thread reads these files while a test
// changes them, and a real sysfs counter is never seen half-written.
void write(const fs::path& f, const std::string& text) {
  fs::create_directories(f.parent_path());
  const fs::path tmp = f.string() + ".tmp";
  std::ofstream(tmp) << text << "\n";
  fs::rename(tmp, f);
}

void zone(const fs::path& root, const std::string& dir, const std::string& name, double uj, double max_range) {
  write(root / dir / "name", name);
  write(root / dir / "energy_uj", std::to_string(int64_t(uj)));
  write(root / dir / "max_energy_range_uj", std::to_string(int64_t(max_range)));
}

void script(const fs::path& f, const std::string& body) {
  write(f, "#!/bin/sh\n" + body);
  fs::permissions(f, fs::perms::owner_all);
}

}  // namespace

TEST(PowerMeter, RaplDeltaHandlesWrapAround) {
  EXPECT_DOUBLE_EQ(rapl_delta_uj(100, 350, 1000), 250);
  EXPECT_DOUBLE_EQ(rapl_delta_uj(900, 100, 1000), 200);  // 900 -> 1000 wraps to 0 -> 100
}

TEST(PowerMeter, RaplPackagesOnlyAndEnergyOverTime) {
  const fs::path root = fresh_dir("rapl");
  const double range = 262143328850;
  zone(root, "intel-rapl:0", "package-0", range - 2e6, range);  // wraps during the window
  zone(root, "intel-rapl:0:0", "core", 0, range);               // inside package-0: not counted again
  zone(root, "intel-rapl:1", "package-1", 5e6, range);
  zone(root, "intel-rapl:2", "psys", 0, range);                  // whole platform: not beside packages
  PowerMeterOptions o;
  o.powercap_root = root;
  o.nvidia_smi = (root / "no-such-nvidia-smi").string();
  o.interval_s = 0.05;
  std::string why;
  auto m = open_power_meter(o, why);
  ASSERT_TRUE(m) << why;
  EXPECT_EQ(m->sensor(), "RAPL energy counters (package-0, package-1)");
  m->start();
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  // 3 J on package-0 (across the wrap) and 2 J on package-1 during the window.
  write(root / "intel-rapl:0" / "energy_uj", std::to_string(int64_t(1e6)));
  write(root / "intel-rapl:0:0" / "energy_uj", std::to_string(int64_t(9e9)));
  write(root / "intel-rapl:1" / "energy_uj", std::to_string(int64_t(7e6)));
  write(root / "intel-rapl:2" / "energy_uj", std::to_string(int64_t(9e9)));
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  const PowerWindow w = m->stop();
  ASSERT_GT(w.seconds, 0.25);
  EXPECT_NEAR(w.avg_watts * w.seconds, 5.0, 1e-9);  // every joule counted once, none twice
  ASSERT_FALSE(w.samples.empty());
  double energy = 0, prev = 0;
  for (const auto& s : w.samples) energy += s.watts * (s.t_s - prev), prev = s.t_s;
  EXPECT_NEAR(energy, 5.0, 1e-6);  // the samples are the same energy, spread over time
  fs::remove_all(root);
}

TEST(PowerMeter, RaplUnreadableOrAbsentSaysWhy) {
  const fs::path root = fresh_dir("rapl-none");
  PowerMeterOptions o;
  o.powercap_root = root / "missing";
  o.nvidia_smi = (root / "no-such-nvidia-smi").string();
  std::string why;
  EXPECT_FALSE(open_power_meter(o, why));
  EXPECT_NE(why.find("not found"), std::string::npos) << why;
  EXPECT_NE(why.find("does not exist"), std::string::npos) << why;
  fs::create_directories(root / "intel-rapl:0");
  write(root / "intel-rapl:0" / "name", "package-0");  // no energy_uj: as if unreadable
  o.powercap_root = root;
  EXPECT_FALSE(open_power_meter(o, why));
  EXPECT_NE(why.find("not readable"), std::string::npos) << why;
  fs::remove_all(root);
}

TEST(PowerMeter, NvidiaSmiSumsGpusPerPeriod) {
  const fs::path root = fresh_dir("smi");
  const fs::path smi = root / "nvidia-smi";
  // One query without -lms; a loop with it (as nvidia-smi -lms does), until killed.
  script(smi,
         "case \"$*\" in *-lms*) while true; do printf '0, 100.5\\n1, 50.25\\n'; sleep 0.05; done;;\n"
         "*) printf '0, 100.5\\n1, 50.25\\n';; esac\n");
  PowerMeterOptions o;
  o.powercap_root = root / "missing";
  o.nvidia_smi = smi.string();
  o.interval_s = 0.1;
  std::string why;
  auto m = open_power_meter(o, why);
  ASSERT_TRUE(m) << why;
  EXPECT_NE(m->sensor().find("2 GPU(s)"), std::string::npos) << m->sensor();
  m->start();
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  const PowerWindow w = m->stop();
  ASSERT_GE(w.samples.size(), 2u);
  EXPECT_DOUBLE_EQ(w.avg_watts, 150.75);
  fs::remove_all(root);
}

TEST(PowerMeter, NvidiaSmiWithoutPowerFigureIsNoSensor) {
  const fs::path root = fresh_dir("smi-na");
  const fs::path smi = root / "nvidia-smi";
  script(smi, "printf '0, [N/A]\\n'\n");
  PowerMeterOptions o;
  o.powercap_root = root / "missing";
  o.nvidia_smi = smi.string();
  std::string why;
  EXPECT_FALSE(open_power_meter(o, why));
  EXPECT_NE(why.find("[N/A]"), std::string::npos) << why;
  fs::remove_all(root);
}

TEST(PowerMeter, LoadPowerRecordsSourceAndReason) {
  const fs::path root = fresh_dir("load-power");
  PowerMeterOptions o;
  o.powercap_root = root;
  o.nvidia_smi = (root / "no-such-nvidia-smi").string();
  o.interval_s = 0.05;
  zone(root, "intel-rapl:0", "package-0", 1e6, 1e12);
  // A remote server: the local sensor exists but says nothing about it.
  LoadPower remote(o, false, 0);
  EXPECT_FALSE(remote.measuring());
  EXPECT_EQ(remote.params()["source"], "none");
  EXPECT_NE(remote.params()["why"].get<std::string>().find("another host"), std::string::npos);
  // Supplied: labelled, with the watts and why nothing was measured.
  LoadPower supplied(o, false, 350);
  EXPECT_EQ(supplied.params()["source"], "supplied");
  EXPECT_EQ(supplied.params()["watts"], 350.0);
  // Local: measured windows.
  LoadPower local(o, true, 350);
  ASSERT_TRUE(local.measuring());
  local.begin();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  write(root / "intel-rapl:0" / "energy_uj", std::to_string(int64_t(3e6)));  // 2 J
  const auto w = local.end();
  ASSERT_TRUE(w.has_value());
  EXPECT_GT(*w, 0);
  EXPECT_EQ(local.params()["source"], "measured");
  EXPECT_EQ(local.params()["windows"].size(), 1u);
  // The counter disappears mid-run: the window fails, and the reason is kept.
  local.begin();
  fs::remove(root / "intel-rapl:0" / "energy_uj");
  EXPECT_FALSE(local.end().has_value());
  EXPECT_FALSE(local.measuring());
  EXPECT_NE(local.params()["why"].get<std::string>().find("stopped answering"), std::string::npos) << local.params().dump();
  fs::remove_all(root);
}

TEST(PowerMeter, DevicesChooseTheSensorThatSeesTheSut) {
  // Both sensors present: "any" takes the GPU, "cpu" (an in-process CPU engine) takes RAPL, "gpu"
  // never falls back to RAPL.
  const fs::path root = fresh_dir("devices");
  zone(root, "intel-rapl:0", "package-0", 1e6, 1e12);
  const fs::path smi = root / "nvidia-smi";
  script(smi, "printf '0, 100.5\\n'\n");
  PowerMeterOptions o;
  o.powercap_root = root;
  o.nvidia_smi = smi.string();
  std::string why;
  auto any = open_power_meter(o, why);
  ASSERT_TRUE(any) << why;
  EXPECT_NE(any->sensor().find("nvidia-smi"), std::string::npos) << any->sensor();
  o.devices = "cpu";
  auto cpu = open_power_meter(o, why);
  ASSERT_TRUE(cpu) << why;
  EXPECT_NE(cpu->sensor().find("RAPL"), std::string::npos) << cpu->sensor();
  o.devices = "gpu";
  o.nvidia_smi = (root / "missing-smi").string();
  EXPECT_FALSE(open_power_meter(o, why));
  EXPECT_NE(why.find("CPU sensors not used"), std::string::npos) << why;
  o.devices = "tpu";
  EXPECT_THROW(open_power_meter(o, why), std::invalid_argument);
  fs::remove_all(root);
}
