// Power during a load window, from the sensors a machine exposes: NVIDIA GPUs through
// `nvidia-smi --query-gpu=power.draw` (NVML's board power, sampled while the window runs) and CPU
// packages through RAPL (/sys/class/powercap energy counters, read where the kernel lets this user
// read them). Where neither answers, there is no measurement: the caller records NOT MEASURED with
// the reason open_power_meter() gives, or a figure the user supplied, labelled as supplied.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace cb::harness::load {

struct PowerSample {
  double t_s = 0;    // seconds since start()
  double watts = 0;  // total over the sensor's devices / domains
};

struct PowerWindow {
  double avg_watts = 0;  // energy / time over the window (RAPL) or the mean of the samples (GPUs)
  double seconds = 0;
  std::vector<PowerSample> samples;
  nlohmann::json to_json() const;  // avg, seconds, sample count, peak
};

class PowerMeter {
 public:
  virtual ~PowerMeter() = default;
  virtual std::string sensor() const = 0;         // one line: what is read
  virtual nlohmann::json describe() const = 0;    // sensor, devices / domains, interval
  virtual void start() = 0;
  // Ends the window. Throws std::runtime_error when the sensor stopped answering during it.
  virtual PowerWindow stop() = 0;
};

struct PowerMeterOptions {
  std::filesystem::path powercap_root = "/sys/class/powercap";
  std::string nvidia_smi = "nvidia-smi";  // name on PATH or a path
  double interval_s = 0.25;
  // Which sensors may stand for the SUT: "cpu" (RAPL only: an engine on the CPU backend, whose
  // power a GPU's board sensor does not see), "gpu" (nvidia-smi only) or "any" (GPU first).
  std::string devices = "any";
};

// The first sensor that answers now, of those opt.devices allows: GPUs (nvidia-smi reports a
// number for power.draw), then RAPL package domains (top-level intel-rapl:N; psys only when there
// is no package domain). nullptr with `why_not` saying what was tried and why each failed.
std::unique_ptr<PowerMeter> open_power_meter(const PowerMeterOptions& opt, std::string& why_not);

// Energy counter difference with wrap-around at max_range (RAPL counters wrap).
double rapl_delta_uj(double before, double after, double max_range);

}  // namespace cb::harness::load

namespace cb::harness::load {

// The load suite's power record: one sensor for the suite, one window per measured run. Against a
// server on another host the local sensors say nothing about it: no measurement then.
class LoadPower {
 public:
  // sut_is_local: the SUT runs on this machine (in-process, or an endpoint on a loopback address).
  LoadPower(const PowerMeterOptions& opt, bool sut_is_local, double supplied_watts);
  bool measuring() const { return meter_ != nullptr; }
  void begin();
  // The window's average watts; nullopt when not measuring or when the sensor failed (then
  // measuring() turns false and params() says why).
  std::optional<double> end();
  // {"source": "measured" | "supplied" | "none", "sensor", "meter", "why", "watts"}
  nlohmann::json params() const;

 private:
  std::unique_ptr<PowerMeter> meter_;
  std::string why_;
  double supplied_ = 0;
  std::vector<nlohmann::json> windows_;
};

}  // namespace cb::harness::load
