// Power sensors: nvidia-smi (GPU board power) and RAPL (CPU package energy counters).
#include "cb/harness/load/power_meter.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "cb/harness/core/process.h"

extern char** environ;

namespace cb::harness::load {
namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

json PowerWindow::to_json() const {
  double peak = 0;
  for (const auto& s : samples) peak = std::max(peak, s.watts);
  return {{"avg_watts", avg_watts}, {"seconds", seconds}, {"samples", samples.size()}, {"peak_watts", peak}};
}

double rapl_delta_uj(double before, double after, double max_range) {
  if (after >= before) return after - before;
  return max_range > 0 ? after + (max_range - before) : 0;  // wrapped once (the sampling interval keeps it to once)
}

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::optional<double> read_number(const fs::path& f) {
  std::ifstream in(f);
  double v = 0;
  if (!(in >> v)) return std::nullopt;
  return v;
}

std::string read_word(const fs::path& f) {
  std::ifstream in(f);
  std::string s;
  std::getline(in, s);
  return s;
}

// ---- RAPL ----------------------------------------------------------------------------------------

struct RaplDomain {
  fs::path dir;
  std::string name;
  double max_range_uj = 0;
  double last_uj = 0;
};

class RaplMeter : public PowerMeter {
 public:
  RaplMeter(std::vector<RaplDomain> d, double interval) : domains_(std::move(d)), interval_(interval) {}
  ~RaplMeter() override { halt(); }
  std::string sensor() const override {
    std::string s = "RAPL energy counters (";
    for (size_t i = 0; i < domains_.size(); ++i) s += (i ? ", " : "") + domains_[i].name;
    return s + ")";
  }
  json describe() const override {
    json d = json::array();
    for (const auto& x : domains_) d.push_back({{"domain", x.dir.filename().string()}, {"name", x.name}});
    return {{"sensor", "rapl"}, {"domains", d}, {"interval_s", interval_},
            {"scope", "CPU package energy (cores, caches, memory controller); DRAM and the rest of the board are not included"}};
  }
  void start() override {
    halt();
    samples_.clear();
    energy_uj_ = 0;
    error_.clear();
    for (auto& d : domains_) d.last_uj = read_number(d.dir / "energy_uj").value_or(0);
    t0_ = last_ = Clock::now();
    stop_ = false;
    thread_ = std::thread([this] { loop(); });
  }
  PowerWindow stop() override {
    halt();
    sample();  // the tail since the last tick
    if (!error_.empty()) throw std::runtime_error(error_);
    PowerWindow w;
    w.seconds = seconds_since(t0_);
    w.avg_watts = w.seconds > 0 ? energy_uj_ * 1e-6 / w.seconds : 0;
    w.samples = samples_;
    return w;
  }

 private:
  void halt() {
    {
      std::lock_guard lk(m_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  void loop() {
    std::unique_lock lk(m_);
    while (!cv_.wait_for(lk, std::chrono::duration<double>(interval_), [&] { return stop_; })) sample();
  }
  void sample() {
    const auto now = Clock::now();
    double du = 0;
    for (auto& d : domains_) {
      const auto v = read_number(d.dir / "energy_uj");
      if (!v) {
        error_ = "RAPL: " + (d.dir / "energy_uj").string() + " stopped answering during the window";
        return;
      }
      du += rapl_delta_uj(d.last_uj, *v, d.max_range_uj);
      d.last_uj = *v;
    }
    const double dt = std::chrono::duration<double>(now - last_).count();
    last_ = now;
    energy_uj_ += du;
    if (dt > 0) samples_.push_back({std::chrono::duration<double>(now - t0_).count(), du * 1e-6 / dt});
  }

  std::vector<RaplDomain> domains_;
  double interval_;
  std::mutex m_;
  std::condition_variable cv_;
  bool stop_ = true;
  std::thread thread_;
  Clock::time_point t0_, last_;
  double energy_uj_ = 0;
  std::vector<PowerSample> samples_;
  std::string error_;
};

std::unique_ptr<PowerMeter> open_rapl(const PowerMeterOptions& o, std::string& why) {
  std::error_code ec;
  if (!fs::is_directory(o.powercap_root, ec)) {
    why = "no RAPL: " + o.powercap_root.string() + " does not exist (no powercap driver, or a VM that hides it)";
    return nullptr;
  }
  std::vector<RaplDomain> packages, psys;
  std::string unreadable;
  for (const auto& e : fs::directory_iterator(o.powercap_root, ec)) {
    const std::string n = e.path().filename().string();
    // Top-level zones only (intel-rapl:0); sub-zones (intel-rapl:0:0, cores / dram) are inside them.
    if (n.rfind("intel-rapl:", 0) != 0 || std::count(n.begin(), n.end(), ':') != 1) continue;
    RaplDomain d{e.path(), read_word(e.path() / "name")};
    const auto v = read_number(e.path() / "energy_uj");
    if (!v) {
      unreadable += (unreadable.empty() ? "" : ", ") + (e.path() / "energy_uj").string();
      continue;
    }
    d.max_range_uj = read_number(e.path() / "max_energy_range_uj").value_or(0);
    (d.name == "psys" ? psys : packages).push_back(d);
  }
  auto& use = packages.empty() ? psys : packages;
  if (use.empty()) {
    why = unreadable.empty() ? "no RAPL: " + o.powercap_root.string() + " has no intel-rapl:N zone"
                             : "no RAPL: " + unreadable + " not readable by this user (the kernel restricts energy_uj to root)";
    return nullptr;
  }
  std::sort(use.begin(), use.end(), [](const RaplDomain& a, const RaplDomain& b) { return a.dir < b.dir; });
  return std::make_unique<RaplMeter>(use, o.interval_s);
}

// ---- nvidia-smi ---------------------------------------------------------------------------------

// "0, 71.24" -> {0, 71.24}; nullopt for "[N/A]", "[Not Supported]" or anything else.
std::optional<std::pair<int, double>> parse_smi_line(const std::string& l) {
  const size_t c = l.find(',');
  if (c == std::string::npos) return std::nullopt;
  try {
    size_t used = 0;
    const int idx = std::stoi(l.substr(0, c));
    const std::string w = l.substr(c + 1);
    const double watts = std::stod(w, &used);
    if (!std::isfinite(watts) || watts < 0) return std::nullopt;
    return std::make_pair(idx, watts);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

class NvidiaSmiMeter : public PowerMeter {
 public:
  NvidiaSmiMeter(std::string exe, int gpus, double interval) : exe_(std::move(exe)), gpus_(gpus), interval_(interval) {}
  ~NvidiaSmiMeter() override { halt(); }
  std::string sensor() const override { return "nvidia-smi power.draw (" + std::to_string(gpus_) + " GPU(s), board power)"; }
  json describe() const override {
    return {{"sensor", "nvidia-smi"}, {"query", "power.draw"}, {"gpus", gpus_}, {"interval_s", interval_},
            {"scope", "GPU board power of every GPU on this machine; the host CPU, memory and network are not included"}};
  }
  void start() override {
    halt();
    samples_.clear();
    error_.clear();
    const int ms = std::max(100, int(interval_ * 1000));
    std::vector<std::string> args = {exe_, "--query-gpu=index,power.draw", "--format=csv,noheader,nounits", "-lms", std::to_string(ms)};
    int fds[2];
    if (::pipe(fds) != 0) throw std::runtime_error("nvidia-smi: pipe() failed");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    t0_ = Clock::now();
    const int rc = posix_spawn(&pid_, exe_.c_str(), &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(fds[1]);
    if (rc != 0) {
      ::close(fds[0]);
      pid_ = -1;
      throw std::runtime_error("nvidia-smi: could not start " + exe_);
    }
    fd_ = fds[0];
    reader_ = std::thread([this] { read_loop(); });
  }
  PowerWindow stop() override {
    halt();
    std::lock_guard lk(m_);
    if (!error_.empty()) throw std::runtime_error(error_);
    PowerWindow w;
    w.seconds = seconds_since(t0_);
    w.samples = samples_;
    if (samples_.empty()) throw std::runtime_error("nvidia-smi gave no power sample in the " + std::to_string(w.seconds) + " s window");
    double sum = 0;
    for (const auto& s : samples_) sum += s.watts;
    w.avg_watts = sum / double(samples_.size());
    return w;
  }

 private:
  void halt() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int st = 0;
      ::waitpid(pid_, &st, 0);
      pid_ = -1;
    }
    if (reader_.joinable()) reader_.join();  // EOF once the child is gone
    if (fd_ >= 0) ::close(fd_), fd_ = -1;
  }
  void read_loop() {
    std::string buf;
    std::map<int, double> row;  // the current period: one line per GPU
    char tmp[4096];
    for (;;) {
      const ssize_t n = ::read(fd_, tmp, sizeof tmp);
      if (n <= 0) break;
      buf.append(tmp, size_t(n));
      size_t nl;
      while ((nl = buf.find('\n')) != std::string::npos) {
        const std::string l = buf.substr(0, nl);
        buf.erase(0, nl + 1);
        const auto v = parse_smi_line(l);
        std::lock_guard lk(m_);
        if (!v) {
          if (error_.empty() && !l.empty()) error_ = "nvidia-smi printed a line without a power figure: '" + l + "'";
          continue;
        }
        if (row.count(v->first)) row.clear();  // a new period began
        row[v->first] = v->second;
        if (int(row.size()) == gpus_) {
          double total = 0;
          for (auto& [i, w] : row) total += w;
          samples_.push_back({seconds_since(t0_), total});
          row.clear();
        }
      }
    }
  }

  std::string exe_;
  int gpus_;
  double interval_;
  pid_t pid_ = -1;
  int fd_ = -1;
  std::thread reader_;
  std::mutex m_;
  Clock::time_point t0_;
  std::vector<PowerSample> samples_;
  std::string error_;
};

std::unique_ptr<PowerMeter> open_nvidia_smi(const PowerMeterOptions& o, std::string& why) {
  const std::string exe = o.nvidia_smi.find('/') != std::string::npos ? o.nvidia_smi : find_executable(o.nvidia_smi);
  if (exe.empty() || ::access(exe.c_str(), X_OK) != 0) {
    why = "no GPU power: " + o.nvidia_smi + " not found";
    return nullptr;
  }
  // One query first: how many GPUs, and whether power.draw is a number on them.
  const fs::path tmp = fs::temp_directory_path() / ("cb-smi-" + std::to_string(::getpid()) + ".txt");
  const ProcessResult r =
      run_process({exe, "--query-gpu=index,power.draw", "--format=csv,noheader,nounits"}, 20, tmp, {}, false);
  std::istringstream in(read_text_file(tmp));
  std::error_code ec;
  fs::remove(tmp, ec);
  if (!r.started || r.exit_code != 0) {
    why = "no GPU power: " + exe + " " + r.describe();
    return nullptr;
  }
  int gpus = 0;
  std::string l, bad;
  while (std::getline(in, l)) {
    if (l.empty()) continue;
    if (parse_smi_line(l)) ++gpus;
    else if (bad.empty()) bad = l;
  }
  if (!bad.empty() || gpus == 0) {
    why = "no GPU power: nvidia-smi power.draw answered '" + (bad.empty() ? std::string("nothing") : bad) + "'";
    return nullptr;
  }
  return std::make_unique<NvidiaSmiMeter>(exe, gpus, o.interval_s);
}

}  // namespace

std::unique_ptr<PowerMeter> open_power_meter(const PowerMeterOptions& opt, std::string& why_not) {
  if (opt.devices != "any" && opt.devices != "cpu" && opt.devices != "gpu")
    throw std::invalid_argument("power meter: devices '" + opt.devices + "': expected any, cpu or gpu");
  std::string gpu_why = "GPU sensors not used: the SUT runs on the CPU", rapl_why = "CPU sensors not used: the SUT runs on GPUs";
  if (opt.devices != "cpu")
    if (auto m = open_nvidia_smi(opt, gpu_why)) return m;
  if (opt.devices != "gpu")
    if (auto m = open_rapl(opt, rapl_why)) return m;
  why_not = gpu_why + "; " + rapl_why;
  return nullptr;
}

LoadPower::LoadPower(const PowerMeterOptions& opt, bool sut_is_local, double supplied_watts) : supplied_(supplied_watts) {
  if (!sut_is_local) {
    why_ = "the server is on another host: this machine's sensors do not see it";
    return;
  }
  meter_ = open_power_meter(opt, why_);
}

void LoadPower::begin() {
  if (!meter_) return;
  try {
    meter_->start();
  } catch (const std::exception& e) {
    why_ = std::string("power sensor failed to start: ") + e.what();
    meter_.reset();
  }
}

std::optional<double> LoadPower::end() {
  if (!meter_) return std::nullopt;
  try {
    const PowerWindow w = meter_->stop();
    windows_.push_back(w.to_json());
    return w.avg_watts;
  } catch (const std::exception& e) {
    why_ = std::string("power sensor failed during a window: ") + e.what();
    meter_.reset();
    return std::nullopt;
  }
}

json LoadPower::params() const {
  json p;
  if (meter_) {
    p = {{"source", "measured"}, {"sensor", meter_->sensor()}, {"meter", meter_->describe()}, {"windows", windows_}};
    return p;
  }
  p = {{"source", supplied_ > 0 ? "supplied" : "none"}, {"why", why_}};
  if (supplied_ > 0) p["watts"] = supplied_;
  return p;
}

}  // namespace cb::harness::load
