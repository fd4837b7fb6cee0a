#include "cb/harness/core/environment.h"
#include "cb/harness/core/engine_access.h"
#include "cb/peaks/machine_peaks.h"

#include <array>
#include <cctype>
#include <cstring>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>
#include <unistd.h>

#include <sys/utsname.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace cb::harness {
using nlohmann::json;

namespace {

// Runs a command and returns its stdout (empty when it fails or is absent).
std::string capture(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>/dev/null").c_str(), "r");
  if (!p) return out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  ::pclose(p);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

std::string cpuinfo_field(const std::string& field) {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field, 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  return "";
}

}  // namespace

json build_info() {
  json j;
#ifdef CB_SOURCE_DIR
  const std::string git = "git -C '" + std::string(CB_SOURCE_DIR) + "' ";
#else
  const std::string git = "git ";
#endif
  j["commit"] = capture(git + "rev-parse HEAD");
  if (j["commit"].get<std::string>().empty()) j["commit"] = "unknown";
  j["commit_dirty"] = !capture(git + "status --porcelain --untracked-files=no").empty();
#ifdef NDEBUG
  j["build_type"] = "release";
#else
  j["build_type"] = "debug";
#endif
#if defined(__clang__)
  j["compiler"] = "clang " __clang_version__;
#elif defined(__GNUC__)
  j["compiler"] = "gcc " __VERSION__;
#else
  j["compiler"] = "unknown";
#endif
#ifdef CB_HAVE_CUDA
  j["cuda_built"] = true;
#else
  j["cuda_built"] = false;
#endif
  // Whether this binary has the in-process engine (claimbench) or measures endpoints only
  // (claimbench-http): suites it could not run say "not built" with this as the reason.
  j["engine_linked"] = engine_access() != nullptr;
#if defined(__SANITIZE_ADDRESS__)
  j["sanitizers"] = "address";
#endif
  return j;
}

namespace {

// Physical cores: distinct (package, core) pairs in sysfs; 0 when sysfs does not say.
int physical_cores() {
  std::set<std::pair<std::string, std::string>> seen;
  for (int cpu = 0; cpu < 4096; ++cpu) {
    const std::string dir = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    std::ifstream core(dir + "core_id"), pkg(dir + "physical_package_id");
    if (!core) {
      if (cpu > 0 && !std::ifstream("/sys/devices/system/cpu/cpu" + std::to_string(cpu + 1) + "/topology/core_id")) break;
      continue;  // offline CPU: no topology folder
    }
    std::string c, p;
    core >> c;
    pkg >> p;
    seen.insert({p, c});
  }
  return int(seen.size());
}

// The hypervisor's CPUID signature (leaf 0x40000000: "KVMKVMKVM", "Microsoft Hv", "VMwareVMware",
// "XenVMMXenVMM", ...) when the CPU says it runs under one; "none" on bare metal.
std::string hypervisor_signature(const std::string& flags) {
  if (flags.find(" hypervisor ") == std::string::npos) return "none";
#if defined(__x86_64__) || defined(__i386__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  __cpuid(0x40000000, a, b, c, d);
  char sig[13] = {};
  std::memcpy(sig, &b, 4);
  std::memcpy(sig + 4, &c, 4);
  std::memcpy(sig + 8, &d, 4);
  std::string s;
  for (char ch : std::string(sig))
    if (std::isprint(static_cast<unsigned char>(ch)) && ch != ' ') s += ch;
  if (!s.empty()) return s;
#endif
  return "unknown";
}

}  // namespace

json hardware_info() {
  json hw;
  hw["cpu_model"] = cpuinfo_field("model name");
  hw["cpu_vendor"] = cpuinfo_field("vendor_id");
  hw["cpu_family"] = cpuinfo_field("cpu family");
  hw["cpu_model_id"] = cpuinfo_field("model\t");
  hw["cpu_stepping"] = cpuinfo_field("stepping");
  hw["cpu_microcode"] = cpuinfo_field("microcode");  // empty where the hypervisor hides it
  const std::string flags = " " + cpuinfo_field("flags") + " ";
  json isa = json::array();
  for (const char* f : {"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"})
    if (flags.find(std::string(" ") + f + " ") != std::string::npos) isa.push_back(f);
  hw["cpu_flags"] = isa;
  hw["hypervisor"] = hypervisor_signature(flags);
  hw["threads"] = static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN));  // logical CPUs online
  const int cores = physical_cores();
  hw["cores"] = cores > 0 ? cores : hw["threads"].get<int>();
  hw["memory_bytes"] = static_cast<int64_t>(::sysconf(_SC_PHYS_PAGES)) * ::sysconf(_SC_PAGE_SIZE);
  struct utsname u {};
  if (::uname(&u) == 0) {
    hw["os"] = std::string(u.sysname) + " " + u.release + " " + u.machine;
    hw["hostname"] = u.nodename;
  }
  json gpus = json::array();
  const std::string smi = capture("nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader");
  std::istringstream lines(smi);
  std::string line;
  while (std::getline(lines, line)) {
    std::vector<std::string> parts;
    std::stringstream ls(line);
    std::string part;
    while (std::getline(ls, part, ',')) parts.push_back(part.substr(part.find_first_not_of(' ')));
    if (parts.size() >= 3) {
      gpus.push_back({{"name", parts[0]}, {"memory", parts[1]}});
      hw["driver"] = parts[2];
    }
  }
  hw["gpus"] = gpus;
  const std::string nvcc = capture("/usr/local/cuda/bin/nvcc --version | grep -o 'release [0-9.]*'");
  if (!nvcc.empty()) hw["cuda_version"] = nvcc.substr(8);
  const std::string nccl = capture("grep -m3 -E '#define NCCL_(MAJOR|MINOR|PATCH)' /usr/local/cuda/include/nccl.h | awk '{print $3}' | paste -sd.");
  if (!nccl.empty()) hw["nccl_version"] = nccl;
  // Recorded, not part of the fingerprint (baselines stay keyed by the CPU); compare warns when it
  // differs between two runs of one class.
  if (const size_t llc = cb::bench::last_level_cache_bytes(); llc > 0) hw["llc_bytes"] = llc;
  hw["fingerprint_fields"] = fingerprint_fields(hw);
  hw["fingerprint"] = hardware_fingerprint(hw);
  return hw;
}

json fingerprint_fields(const json& hw) {
  json f = json::object();
  for (const char* k : {"cpu_vendor", "cpu_model", "cpu_family", "cpu_model_id", "cpu_stepping", "cpu_microcode", "cores", "threads",
                        "hypervisor", "cpu_flags"})
    f[k] = hw.contains(k) ? hw[k] : json();
  json g = json::array();
  if (hw.contains("gpus") && hw["gpus"].is_array())
    for (const auto& x : hw["gpus"]) g.push_back(x.value("name", std::string()));
  f["gpus"] = g;
  return f;
}

std::string hardware_fingerprint(const json& hw) {
  // FNV-1a over what decides how fast a kernel runs (not hostname, OS or memory size): a baseline
  // measured on one CPU generation is never used on another, even under the same model name.
  const std::string key = fingerprint_fields(hw).dump();
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : key) h = (h ^ c) * 1099511628211ull;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return std::string(buf, 12);
}

std::string describe_machine_class(const json& hw) {
  auto s = [&](const char* k) {
    if (!hw.contains(k) || hw[k].is_null()) return std::string("?");
    return hw[k].is_string() ? hw[k].get<std::string>() : hw[k].dump();
  };
  std::string d = s("cpu_model") + " (" + s("cpu_vendor") + " family " + s("cpu_family") + " model " + s("cpu_model_id") +
                  " stepping " + s("cpu_stepping");
  if (hw.contains("cpu_microcode") && hw["cpu_microcode"].is_string() && !hw["cpu_microcode"].get<std::string>().empty())
    d += " microcode " + hw["cpu_microcode"].get<std::string>();
  d += "), " + s("cores") + " cores / " + s("threads") + " threads, hypervisor " + s("hypervisor");
  if (hw.contains("gpus") && hw["gpus"].is_array() && !hw["gpus"].empty()) d += ", " + std::to_string(hw["gpus"].size()) + " GPU(s)";
  return d;
}

std::string utc_now_iso() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm {};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace cb::harness
