#include "cb/harness/suites/run.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <unistd.h>

#include "cb/harness/core/engine_access.h"
#include "cb/harness/core/environment.h"
#include "cb/harness/core/process.h"

namespace cb::harness {
namespace fs = std::filesystem;
using nlohmann::json;

fs::path default_results_dir() { return fs::path(CB_SOURCE_DIR) / "results" / "runs"; }

namespace {

// Progress: a redrawn bar on a terminal, plain lines in CI logs (or when stderr is redirected).
class Progress {
 public:
  explicit Progress(int total) : total_(total) {
    const char* ci = std::getenv("CI");
    tty_ = ::isatty(STDERR_FILENO) && !(ci && *ci);
  }
  void start(int index, const std::string& suite) {
    index_ = index;
    suite_ = suite;
    std::fprintf(stderr, "%s[%d/%d] %s: running\n", tty_ ? "\r\033[K" : "", index + 1, total_, suite.c_str());
  }
  void tick(double elapsed, const std::string& last_line) {
    if (!tty_) {
      // A plain line every 30 s so CI logs show the run is alive.
      if (elapsed - last_plain_ >= 30) {
        last_plain_ = elapsed;
        std::fprintf(stderr, "[%d/%d] %s: %.0f s elapsed: %s\n", index_ + 1, total_, suite_.c_str(), elapsed, last_line.c_str());
      }
      return;
    }
    const int width = 24;
    const int filled = int(width * double(index_) / total_);
    const char spin = "|/-\\"[int(elapsed * 4) % 4];
    std::string bar(filled, '#');
    bar += spin;
    bar.resize(width, '.');
    std::string line = last_line.substr(0, 60);
    std::fprintf(stderr, "\r\033[K[%s] %d/%d %s %3.0fs  %s", bar.c_str(), index_ + 1, total_, suite_.c_str(), elapsed, line.c_str());
    std::fflush(stderr);
  }
  void finish(const std::string& status, double seconds) {
    std::fprintf(stderr, "%s[%d/%d] %s: %s (%.1f s)\n", tty_ ? "\r\033[K" : "", index_ + 1, total_, suite_.c_str(),
                 status.c_str(), seconds);
    last_plain_ = 0;
  }

 private:
  int total_, index_ = 0;
  bool tty_;
  std::string suite_;
  double last_plain_ = 0;
};

std::string compact_time() {
  std::string t = utc_now_iso();  // 2026-11-29T07:20:00Z -> 20261129T072000Z
  std::string out;
  for (char c : t)
    if (c != '-' && c != ':') out += c;
  return out;
}

}  // namespace

fs::path execute_run(const RunOptions& opt, const fs::path& self_exe) {
  // Validate everything before writing anything. A suite named twice (or also covered by "all")
  // runs once, at its first position: the manifest has one entry per suite.
  std::vector<std::string> names;
  auto add = [&](const std::string& n) {
    if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
  };
  for (const auto& s : opt.suites) {
    if (s == "all") {
      for (const auto& info : all_suites())
        if (!info.test_only) add(info.name);  // self-test suites are never part of "all"
    } else if (find_suite(s)) {
      add(s);
    } else {
      std::string known;
      for (const auto& info : all_suites()) known += info.name + ", ";
      throw std::invalid_argument("unknown suite '" + s + "' (known: " + known + "all)");
    }
  }
  if (names.empty()) throw std::invalid_argument("no suite selected");
  const fs::path model = opt.model_dir.empty() ? default_model_dir() : opt.model_dir;
  if (!fs::exists(model / "config.json"))
    throw std::invalid_argument("--model " + model.string() + ": not a model directory (no config.json)");
  if (opt.sut != "inprocess" && opt.sut != "null" && opt.sut.rfind("http://", 0) != 0)
    throw std::invalid_argument("--sut '" + opt.sut + "': expected 'inprocess', 'null' or http://HOST:PORT");

  // The load suite's default SUT is the engine in this process; a build without it says so up
  // front instead of leaving an errored suite behind.
  if (opt.sut == "inprocess" && !engine_access() && std::find(names.begin(), names.end(), "load") != names.end())
    throw std::invalid_argument("--sut inprocess (the default) for the load suite: " + no_engine_reason() +
                                "; pass --sut http://HOST:PORT");

  // --backend: a name the engine knows, for the engine in this process only. Whether it can run
  // on this machine is each suite's question (it skips with the reason), so a run asked for cuda
  // on a host without a GPU still leaves a folder that says why nothing was measured on it.
  if (opt.backend != "cpu") {
    if (opt.sut != "inprocess")
      throw std::invalid_argument("--backend " + opt.backend + " applies to the engine in this process; with --sut " + opt.sut +
                                  " the server under test runs on its own backend");
    if (!engine_access()) throw std::invalid_argument("--backend " + opt.backend + ": " + no_engine_reason());
    (void)engine_access()->backend_unavailable(opt.backend);  // throws std::invalid_argument for an unknown name
  }

  // Planted defects (compliance tests): from --plant-defect and CB_PLANT_DEFECTS, validated before
  // anything runs, handed to every suite process through the environment, named in the manifest.
  std::vector<std::string> defects;
  const EngineAccess* access = engine_access();
  const char* env = std::getenv("CB_PLANT_DEFECTS");
  if ((env && *env) || !opt.planted_defects.empty()) {
    // Planted defects live in the reference engine: a build without it cannot plant them.
    if (!access) throw std::invalid_argument("--plant-defect / CB_PLANT_DEFECTS: " + no_engine_reason());
  }
  if (env && *env) defects = access->parse_defects(env);
  for (const auto& d : opt.planted_defects)
    for (const auto& n : access->parse_defects(d))
      if (std::find(defects.begin(), defects.end(), n) == defects.end()) defects.push_back(n);
  if (!defects.empty()) {
    std::string csv;
    for (const auto& d : defects) csv += (csv.empty() ? "" : ",") + d;
    ::setenv("CB_PLANT_DEFECTS", csv.c_str(), 1);
    std::fprintf(stderr, "claimbench run: PLANTED DEFECTS %s: a compliance test of the harness, not a measurement of the engine\n",
                 csv.c_str());
  }

  const json hw = hardware_info();
  const fs::path base = opt.out_base.empty() ? default_results_dir() : opt.out_base;
  const fs::path dir = create_unique_dir(base, compact_time() + "-" + hw.value("fingerprint", std::string("hw")));
  const fs::path log = dir / "run.log";

  json manifest = {{"schema", "claimbench.manifest"},
                   {"schema_version", schema_version_string()},
                   {"run_id", dir.filename().string()},
                   {"command", opt.command_line},
                   {"build", build_info()},
                   {"hardware", hw},
                   {"started_at", utc_now_iso()},
                   {"params", {{"suites", names}, {"quick", opt.quick}, {"sut", opt.sut}, {"backend", opt.backend}, {"driver", opt.driver}, {"model_dir", fs::absolute(model).string()},
                               {"timeout_scale", opt.timeout_scale}, {"bench_filter", opt.bench_filter}, {"repetitions", opt.repetitions}, {"ppl_text", opt.ppl_text.string()}, {"qa_jsonl", opt.qa_jsonl.string()}, {"server_profile", opt.server_profile}, {"tokenizer_dir", opt.tokenizer_dir.string()}, {"power_watts_supplied", opt.power_watts > 0 ? json(opt.power_watts) : json()}, {"cost_defaults", opt.cost_defaults.string()}, {"planted_defects", defects},
                               {"omp_num_threads", std::getenv("OMP_NUM_THREADS") ? json(std::getenv("OMP_NUM_THREADS")) : json()}}},
                   {"seeds", {{"run", opt.seed}, {"prompts", opt.seed}, {"kernel_inputs", "fixed per benchmark (splitmix64)"}}},
                   {"suites", json::object()}};
  write_json_atomic(dir / "manifest.json", manifest);
  std::fprintf(stderr, "claimbench run: %s\n", dir.c_str());

  install_stop_handlers();
  Progress progress(int(names.size()));
  for (size_t i = 0; i < names.size() && !stop_requested(); ++i) {
    const SuiteInfo& info = *find_suite(names[i]);
    progress.start(int(i), info.name);
    std::vector<std::string> argv = {self_exe.string(), "run-suite", "--suite", info.name, "--run-dir", dir.string(),
                                     "--model", model.string(), "--sut", opt.sut, "--seed", std::to_string(opt.seed)};
    if (opt.quick) argv.push_back("--quick");
    if (opt.driver != "native") { argv.push_back("--driver"); argv.push_back(opt.driver); }
    if (opt.backend != "cpu") { argv.push_back("--backend"); argv.push_back(opt.backend); }
    if (opt.repetitions > 0) {
      argv.push_back("--repetitions");
      argv.push_back(std::to_string(opt.repetitions));
    }
    if (opt.power_watts > 0) {
      argv.push_back("--power-watts");
      argv.push_back(std::to_string(opt.power_watts));
    }
    if (!opt.server_profile.empty()) {
      argv.push_back("--server-profile");
      argv.push_back(opt.server_profile);
    }
    for (const auto& [flag, path] : {std::pair{"--ppl-text", opt.ppl_text}, std::pair{"--qa-jsonl", opt.qa_jsonl},
                                        std::pair{"--cost-defaults", opt.cost_defaults}, std::pair{"--tokenizer", opt.tokenizer_dir}})
      if (!path.empty()) {
        argv.push_back(flag);
        argv.push_back(fs::absolute(path).string());
      }
    if (!opt.bench_filter.empty()) {
      argv.push_back("--bench-filter");
      argv.push_back(opt.bench_filter);
    }
    const double timeout = (opt.quick ? info.timeout_seconds_quick : info.timeout_seconds_full) * opt.timeout_scale;
    {
      std::FILE* f = std::fopen(log.c_str(), "a");
      if (f) {
        std::fprintf(f, "==== suite %s (%s) ====\n", info.name.c_str(), utc_now_iso().c_str());
        std::fclose(f);
      }
    }
    std::error_code size_ec;
    const std::uintmax_t log_from = fs::exists(log) ? fs::file_size(log, size_ec) : 0;
    const ProcessResult pr = run_process(argv, timeout, log, [&](double e) { progress.tick(e, tail_lines(log, 1, log_from)); });
    const fs::path file = dir / (info.name + ".json");
    // A child killed while writing leaves its temp file (NAME.tmp.PID) behind: never a result,
    // so it goes, and the suite's record names it.
    std::string removed;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file() && is_atomic_write_temp(e.path())) {
        removed += (removed.empty() ? "" : ", ") + e.path().filename().string();
        std::error_code ec;
        fs::remove(e.path(), ec);
      }
    SuiteResult result;
    bool have = false;
    if (pr.exit_code == 0 && fs::exists(file)) {
      try {
        result = SuiteResult::from_json(read_json_file(file), file.string());
        have = true;
      } catch (const std::exception& e) {
        result.reason = std::string("suite wrote an unreadable result: ") + e.what();
      }
    }
    if (!have) {
      // The child crashed, hung or failed: record that, keep going with the other suites.
      result.suite = info.name;
      result.status = pr.timed_out ? SuiteStatus::Timeout : SuiteStatus::Error;
      if (result.reason.empty()) result.reason = "suite process " + pr.describe() + "; last log lines:\n" + tail_lines(log, 5, log_from);
      if (!removed.empty()) result.reason += "\nremoved its partly written file(s): " + removed;
      result.seconds = pr.seconds;
      write_json_atomic(file, result.to_json());
    }
    manifest["suites"][info.name] = {{"status", to_string(result.status)}, {"seconds", pr.seconds}, {"file", file.filename().string()}};
    // The server under test, as the load suite identified it (profile, how it was chosen, its
    // /v1/models and version answers): the first suite that recorded one names it for the run.
    if (have && result.params.contains("server") && result.params["server"].is_object() && !manifest.contains("server"))
      manifest["server"] = result.params["server"];
    if (!result.reason.empty()) manifest["suites"][info.name]["reason"] = result.reason;
    write_json_atomic(dir / "manifest.json", manifest);
    progress.finish(to_string(result.status), pr.seconds);
  }
  if (stop_requested()) manifest["interrupted"] = true;
  manifest["finished_at"] = utc_now_iso();
  write_json_atomic(dir / "manifest.json", manifest);
  return dir;
}

int run_suite_child(const std::string& suite, const SuiteContext& ctx) {
  const SuiteInfo* info = find_suite(suite);
  if (!info) {
    std::fprintf(stderr, "run-suite: unknown suite '%s'\n", suite.c_str());
    return 2;
  }
  const auto t0 = std::chrono::steady_clock::now();
  if (const char* f = std::getenv("CB_FAULT_KILL_MID_WRITE")) set_fault_kill_mid_write(f);  // tests only
  SuiteResult r;
  try {
    r = info->run(ctx);
  } catch (const std::exception& e) {
    r = SuiteResult{};
    r.suite = suite;
    r.status = SuiteStatus::Error;
    r.reason = e.what();
    std::fprintf(stderr, "suite %s: error: %s\n", suite.c_str(), e.what());
  }
  r.suite = suite;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  write_suite_csvs(ctx.run_dir, r);
  write_json_atomic(ctx.run_dir / (suite + ".json"), r.to_json());  // last: its presence means "finished"
  return 0;
}

}  // namespace cb::harness
