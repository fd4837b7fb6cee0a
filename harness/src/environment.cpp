#include "cb/harness/environment.h"

#include <array>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>
#include <unistd.h>

#include <sys/utsname.h>

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
#if defined(__SANITIZE_ADDRESS__)
  j["sanitizers"] = "address";
#endif
  return j;
}

json hardware_info() {
  json hw;
  hw["cpu_model"] = cpuinfo_field("model name");
  const std::string flags = " " + cpuinfo_field("flags") + " ";
  json isa = json::array();
  for (const char* f : {"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"})
    if (flags.find(std::string(" ") + f + " ") != std::string::npos) isa.push_back(f);
  hw["cpu_flags"] = isa;
  hw["threads"] = std::thread::hardware_concurrency();
  hw["cores"] = static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN));
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
  hw["fingerprint"] = hardware_fingerprint(hw);
  return hw;
}

std::string hardware_fingerprint(const json& hw) {
  // FNV-1a over the fields that define a machine class (not hostname or OS).
  std::string key = hw.value("cpu_model", std::string()) + "|" + std::to_string(hw.value("cores", 0)) + "|" +
                    std::to_string(hw.value("memory_bytes", int64_t(0)) >> 30) + "|";
  if (hw.contains("gpus"))
    for (const auto& g : hw["gpus"]) key += g.value("name", std::string()) + ";";
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : key) h = (h ^ c) * 1099511628211ull;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return std::string(buf, 12);
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
