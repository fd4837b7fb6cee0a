// `claimbench gate`: baseline mode (fingerprint-matched committed baseline, else SKIP) and A/B mode
// (two builds interleaved on this machine). See include/cb/harness/suites/gate.h.
#include "cb/harness/suites/gate.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <sstream>
#include <stdexcept>

#include "cb/harness/core/environment.h"
#include "cb/harness/suites/kernel_metrics.h"
#include "cb/harness/core/process.h"

namespace cb::harness {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string str_field(const json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
}

std::optional<BaselineEntry> baseline_at(const fs::path& dir) {
  const fs::path m = dir / "manifest.json";
  if (!fs::is_regular_file(m)) return std::nullopt;
  json manifest;
  try {
    manifest = read_json_file(m);
  } catch (const std::exception&) {
    return std::nullopt;  // unreadable: not a usable baseline (compare would name the problem)
  }
  const json hw = manifest.value("hardware", json::object());
  BaselineEntry e;
  e.dir = dir;
  e.fingerprint = str_field(hw, "fingerprint");
  if (e.fingerprint.empty()) return std::nullopt;
  e.machine = hw.contains("fingerprint_fields") ? describe_machine_class(hw) : str_field(hw, "cpu_model") + " (fingerprint from an older claimbench: no CPU family/model/stepping recorded)";
  e.commit = str_field(manifest.value("build", json::object()), "commit");
  e.finished_at = str_field(manifest, "finished_at");
  return e;
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs a shell command line with its output in `log`; throws with the log's tail on failure.
void run_sh(const std::string& cmd, const fs::path& log, double timeout_s, const std::string& what) {
  const ProcessResult pr = run_process({"/bin/sh", "-c", cmd}, timeout_s, log, {}, true);
  if (pr.exit_code != 0)
    throw std::runtime_error(what + " failed (" + pr.describe() + "); last lines of " + log.string() + ":\n" + tail_lines(log, 8));
}

std::string compact_utc() {
  const std::time_t t = std::time(nullptr);
  std::tm tm {};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

}  // namespace

std::vector<BaselineEntry> list_baselines(const fs::path& root, const std::string& name) {
  std::vector<BaselineEntry> out;
  if (!fs::is_directory(root)) return out;
  if (auto e = baseline_at(root / name)) out.push_back(*e);
  for (const auto& entry : fs::directory_iterator(root))
    if (entry.is_directory())
      if (auto e = baseline_at(entry.path() / name)) out.push_back(*e);
  std::sort(out.begin(), out.end(), [](const BaselineEntry& a, const BaselineEntry& b) {
    return a.finished_at != b.finished_at ? a.finished_at > b.finished_at : a.dir < b.dir;
  });
  return out;
}

json GateResult::to_json() const {
  json j = {{"verdict", verdict}, {"exit_code", exit_code}, {"reason", reason}};
  if (!baseline.empty()) j["baseline"] = baseline.string();
  if (comparison) j["comparison"] = cb::harness::to_json(*comparison);
  return j;
}

GateResult gate_against_baselines(const fs::path& root, const std::string& name, const RunData& next, const CompareOptions& options,
                                  const std::string& how_to_make) {
  GateResult g;
  const json hw = next.manifest.value("hardware", json::object());
  const std::string fp = str_field(hw, "fingerprint");
  const std::string here = hw.contains("fingerprint_fields") ? describe_machine_class(hw) : str_field(hw, "cpu_model");
  const auto all = list_baselines(root, name);
  const BaselineEntry* match = nullptr;
  for (const auto& e : all)
    if (!fp.empty() && e.fingerprint == fp) {
      match = &e;
      break;
    }
  if (!match) {
    g.exit_code = kGateSkip;
    g.verdict = "SKIP";
    std::string have;
    for (const auto& e : all) have += "\n  " + e.fingerprint + "  " + e.machine + "  (" + e.dir.string() + ")";
    g.reason = "no '" + name + "' baseline under " + root.string() + " for this machine class (fingerprint " +
               (fp.empty() ? std::string("unknown") : fp) + ": " + here + "); a baseline from another machine class is never used, "
               "because same-run kernel ratios move with the microarchitecture. Baselines present: " +
               (all.empty() ? std::string("none") : have) + "\nMake one for this machine with: " + how_to_make;
    return g;
  }
  g.baseline = match->dir;
  CompareOptions o = options;
  o.allow_hardware_mismatch = false;  // matched by fingerprint: a mismatch now would be a bug
  g.comparison = compare_runs(RunData::load(match->dir), next, o);
  const bool ok = compare_exit_code(*g.comparison) == 0;
  g.exit_code = ok ? kGatePass : kGateFail;
  g.verdict = ok ? "PASS" : "FAIL";
  if (!ok) {
    for (const auto& f : g.comparison->failures) g.reason += (g.reason.empty() ? "" : "; ") + f;
  } else {
    g.reason = "no regression against " + match->dir.string() + " (same machine class " + fp + ")";
  }
  return g;
}

// ---- A/B mode ----------------------------------------------------------------------------------

AbSide resolve_ab_side(const std::string& spec, const fs::path& source_dir, const fs::path& work_dir,
                       const std::function<void(const std::string&)>& say) {
  AbSide side;
  side.label = spec;
  const fs::path p(spec);
  if (fs::is_regular_file(p)) {
    if (::access(p.c_str(), X_OK) != 0) throw std::invalid_argument("'" + spec + "': a file, but not executable (expected cb_kernel_bench)");
    side.bench = fs::absolute(p);
    return side;
  }
  if (fs::is_directory(p)) {
    const fs::path b = p / "kernels" / "bench" / "cb_kernel_bench";
    if (!fs::is_regular_file(b))
      throw std::invalid_argument("'" + spec + "': a folder without kernels/bench/cb_kernel_bench (expected a build folder; build target cb_kernel_bench first)");
    side.bench = fs::absolute(b);
    return side;
  }
  // A git ref: export it and build its benchmark binary.
  const std::string git = find_executable("git");
  if (git.empty()) throw std::invalid_argument("'" + spec + "': not a file or folder, and git is not installed to read it as a ref");
  fs::create_directories(work_dir);
  const fs::path probe = work_dir / "rev-parse.log";
  std::error_code ec;
  fs::remove(probe, ec);
  const ProcessResult pr = run_process({git, "-C", source_dir.string(), "rev-parse", "--verify", "--quiet", spec + "^{commit}"}, 30, probe, {}, true);
  const std::string sha = tail_lines(probe, 1);
  if (pr.exit_code != 0 || sha.size() < 40)
    throw std::invalid_argument("'" + spec + "': not a cb_kernel_bench binary, a build folder, or a commit of " + source_dir.string() +
                                " (a shallow clone may lack it: fetch more history)");
  side.commit = sha.substr(0, 40);
  const fs::path dir = work_dir / side.commit.substr(0, 12);
  const fs::path src = dir / "src", build = dir / "build", log = dir / "build.log";
  side.bench = build / "kernels" / "bench" / "cb_kernel_bench";
  if (fs::is_regular_file(side.bench) && fs::exists(dir / "built")) {
    if (say) say("A/B: reusing the build of " + spec + " (" + side.commit.substr(0, 12) + ") in " + dir.string());
    return side;
  }
  fs::remove_all(dir, ec);
  fs::create_directories(src);
  if (say) say("A/B: building cb_kernel_bench at " + spec + " (" + side.commit.substr(0, 12) + ") in " + dir.string() + " (log: " + log.string() + ")");
  const std::string jobs = std::to_string(std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN)));
  run_sh(shell_quote(git) + " -C " + shell_quote(source_dir.string()) + " archive --format=tar " + side.commit + " | tar -x -C " +
             shell_quote(src.string()),
         log, 300, "exporting " + spec);
  run_sh("cmake -S " + shell_quote(src.string()) + " -B " + shell_quote(build.string()) +
             " -G Ninja -DCMAKE_BUILD_TYPE=Release -DCB_ENABLE_CUDA=OFF",
         log, 600, "configuring " + spec);
  run_sh("cmake --build " + shell_quote(build.string()) + " --target cb_kernel_bench -j " + jobs, log, 3600, "building " + spec);
  if (!fs::is_regular_file(side.bench)) throw std::runtime_error("building " + spec + " produced no " + side.bench.string());
  write_text_atomic(dir / "built", side.commit + "\n");
  return side;
}

AbResult run_ab(const AbOptions& o, const std::function<void(const std::string&)>& say) {
  if (o.rounds < 2) throw std::invalid_argument("A/B: --rounds must be >= 2 (each side needs repetitions from several rounds)");
  if (o.repetitions < 1) throw std::invalid_argument("A/B: --repetitions must be >= 1");
  const std::string env_bin = find_executable("env");
  if (env_bin.empty()) throw std::runtime_error("A/B: 'env' not found on PATH");
  AbResult res;
  res.dir = create_unique_dir(o.out_dir, compact_utc() + "-ab");
  const fs::path raw = res.dir / "raw";
  fs::create_directories(raw);
  const fs::path log = res.dir / "ab.log";
  const AbSide* sides[2] = {&o.base, &o.candidate};
  const char* names[2] = {"base", "candidate"};
  json merged[2];
  for (int r = 0; r < o.rounds; ++r) {
    // Alternate the order: AB, BA, AB, ... so a drift of the machine (clock, neighbours) within a
    // round favours neither side.
    for (int k = 0; k < 2; ++k) {
      const int s = (r % 2 == 0) ? k : 1 - k;
      const AbSide& side = *sides[s];
      const fs::path out = raw / (std::string(names[s]) + "-round" + std::to_string(r) + ".json");
      std::vector<std::string> argv = {env_bin};
      for (const auto& e : o.env) argv.push_back(e);
      for (const auto& e : side.env) argv.push_back(e);
      argv.insert(argv.end(), {side.bench.string(), "--benchmark_format=console", "--benchmark_out_format=json",
                               "--benchmark_out=" + out.string(), "--benchmark_repetitions=" + std::to_string(o.repetitions),
                               "--benchmark_min_time=" + o.min_time, "--benchmark_enable_random_interleaving=false"});
      if (!o.filter.empty()) argv.push_back("--benchmark_filter=" + o.filter);
      if (say) say("A/B round " + std::to_string(r + 1) + "/" + std::to_string(o.rounds) + ": " + names[s] + " (" + side.label + ")");
      const auto t0 = std::chrono::system_clock::now();
      const ProcessResult pr = run_process(argv, o.timeout_s, log, {}, true);
      res.schedule.push_back({{"round", r}, {"side", names[s]}, {"seconds", pr.seconds},
                              {"started_unix", std::chrono::duration<double>(t0.time_since_epoch()).count()},
                              {"raw", fs::relative(out, res.dir).string()}});
      if (pr.exit_code != 0 || !fs::exists(out))
        throw std::runtime_error("A/B: " + std::string(names[s]) + " (" + side.label + ") round " + std::to_string(r + 1) + ": " +
                                 side.bench.string() + " " + pr.describe() + "; last lines of " + log.string() + ":\n" + tail_lines(log, 6));
      const json gb = read_benchmark_json(out);
      if (merged[s].is_null()) {
        merged[s] = {{"context", gb.value("context", json::object())}, {"benchmarks", json::array()}};
      }
      for (const auto& e : gb.value("benchmarks", json::array())) merged[s]["benchmarks"].push_back(e);
    }
  }

  const json hw = hardware_info();
  for (int s = 0; s < 2; ++s) {
    const AbSide& side = *sides[s];
    const fs::path dir = res.dir / names[s];
    fs::create_directories(dir);
    SuiteResult r;
    r.suite = "kernels";
    add_kernel_metrics(merged[s], r);
    r.params["ab"] = {{"side", names[s]}, {"label", side.label}, {"binary", side.bench.string()}, {"env", side.env},
                      {"rounds", o.rounds}, {"repetitions_per_round", o.repetitions}, {"filter", o.filter}, {"min_time_s", o.min_time}};
    write_suite_csvs(dir, r);
    write_json_atomic(dir / "kernels.json", r.to_json());
    json build = {{"label", side.label}, {"bench_binary", side.bench.string()}};
    if (!side.commit.empty()) build["commit"] = side.commit;
    const json manifest = {{"schema", "claimbench.manifest"},
                           {"schema_version", schema_version_string()},
                           {"run_id", res.dir.filename().string() + "-" + names[s]},
                           {"command", "claimbench gate --ab"},
                           {"build", build},
                           {"hardware", hw},
                           {"finished_at", utc_now_iso()},
                           {"params", {{"suites", {"kernels"}}, {"ab_side", names[s]}, {"env", o.env}}},
                           {"seeds", {{"kernel_inputs", "fixed per benchmark (splitmix64)"}}},
                           {"suites", {{"kernels", {{"status", "ok"}, {"file", "kernels.json"}}}}}};
    write_json_atomic(dir / "manifest.json", manifest);
    (s == 0 ? res.base_run : res.candidate_run) = dir;
  }
  return res;
}

}  // namespace cb::harness
