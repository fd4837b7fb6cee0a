// End to end: the real `claimbench` binary runs the self-test suites (a test hook of
// harness/src/suites/suites.cpp, present only with CB_TEST_SUITES=1): a crash, a hang and an
// exception each become one manifest entry and the other suites still run; run folders are never
// reused; an unknown suite fails before anything is written; Ctrl-C keeps what finished and kills
// the running suite; `claimbench check` exit codes on that run.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <set>
#include <spawn.h>
#include <sstream>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <gtest/gtest.h>

#include "cb/harness/verdicts/claims.h"
#include "cb/harness/core/results.h"
#include "cb/kernels/backend.h"
#include "test_support.h"

extern char** environ;

using namespace cb::harness;
namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

using cb::test::claimbench_exe;

#define REQUIRE_CLAIMBENCH()                                                                                  \
  ASSERT_TRUE(fs::exists(claimbench_exe()))                                                                   \
      << "the claimbench binary is missing at " << claimbench_exe()                                           \
      << ": build the claimbench target first (cb_unit_tests depends on it; was it configured without the harness?)"

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Everything this file writes lives under one folder per test process (test_support.h).
fs::path orch_root() { return cb::test::process_temp_root("orch"); }

std::string quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += (c == '\'') ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

using cb::test::slurp;

std::string last_line(const std::string& text) {
  std::string line, last;
  std::istringstream in(text);
  while (std::getline(in, line))
    if (!line.empty()) last = line;
  return last;
}

struct Cmd {
  int rc = -1;
  std::string out, err;
  double seconds = 0;
};

// Runs `claimbench ARGS` through the shell; with test_suites the self-test suites exist.
Cmd claimbench(const std::string& args, bool test_suites = true) {
  static int n = 0;
  const fs::path err = orch_root() / ("stderr." + std::to_string(++n) + ".txt");
  const std::string cmd = std::string(test_suites ? "CB_TEST_SUITES=1 " : "env -u CB_TEST_SUITES ") +
                          quoted(claimbench_exe().string()) + " " + args + " 2>" + quoted(err.string()) + " </dev/null";
  Cmd c;
  const auto t0 = Clock::now();
  std::FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return c;
  char buf[4096];
  size_t got = 0;
  while ((got = std::fread(buf, 1, sizeof buf, p)) > 0) c.out.append(buf, got);
  const int status = ::pclose(p);
  c.seconds = seconds_since(t0);
  c.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  c.err = slurp(err);
  return c;
}

std::string describe(const Cmd& c) {
  return "exit " + std::to_string(c.rc) + "\n--- stdout:\n" + c.out + "\n--- stderr:\n" + c.err;
}

std::vector<fs::path> subdirs(const fs::path& base) {
  std::vector<fs::path> out;
  if (fs::is_directory(base))
    for (const auto& e : fs::directory_iterator(base))
      if (e.is_directory()) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// Run (a), shared by the orchestration and check tests: a crash first, then an ok suite, an
// exception, a hang (3 s limit), and selftest-ok named a second time (deduplicated).
const std::vector<std::string> kSharedOrder = {"selftest-crash", "selftest-ok", "selftest-throw", "selftest-hang"};

struct SharedRun {
  Cmd cmd;
  fs::path out_base, dir;
};

const SharedRun& shared_run() {
  static SharedRun r = [] {
    SharedRun s;
    s.out_base = orch_root() / "shared";
    s.cmd = claimbench("run --suite selftest-crash,selftest-ok,selftest-throw,selftest-hang,selftest-ok --seed 7 --out " +
                       quoted(s.out_base.string()));
    s.dir = last_line(s.cmd.out);
    return s;
  }();
  return r;
}

json manifest_of(const fs::path& dir) { return read_json_file(dir / "manifest.json"); }

}  // namespace

TEST(RunOrchestration, CrashThrowHangAreRecordedAndTheOtherSuitesStillRun) {
  REQUIRE_CLAIMBENCH();
  const SharedRun& r = shared_run();
  ASSERT_EQ(r.cmd.rc, 0) << describe(r.cmd);
  std::printf("[ info     ] run of 4 self-test suites took %.1f s\n", r.cmd.seconds);
  EXPECT_LT(r.cmd.seconds, 25) << "the hang's limit is 3 s";
  ASSERT_TRUE(fs::is_directory(r.dir)) << "the last line of stdout is the run folder\n" << describe(r.cmd);
  EXPECT_EQ(r.dir.parent_path().string(), r.out_base.string());
  const json m = manifest_of(r.dir);

  // Each suite once, in the order given; the duplicate selftest-ok is dropped.
  EXPECT_EQ(m["params"]["suites"], json(kSharedOrder));
  ASSERT_TRUE(m["suites"].is_object());
  EXPECT_EQ(m["suites"].size(), kSharedOrder.size()) << m["suites"].dump(2);
  const std::string log = slurp(r.dir / "run.log");
  size_t headers = 0;
  for (size_t p = log.find("==== suite selftest-ok "); p != std::string::npos; p = log.find("==== suite selftest-ok ", p + 1)) ++headers;
  EXPECT_EQ(headers, 1u) << log;

  const json& crash = m["suites"]["selftest-crash"];
  EXPECT_EQ(crash["status"], "error") << crash.dump(2);
  const std::string crash_reason = crash.value("reason", "");
  EXPECT_TRUE(crash_reason.find("SIGABRT") != std::string::npos || crash_reason.find("Aborted") != std::string::npos)
      << crash_reason;
  EXPECT_NE(crash_reason.find("selftest-crash: about to abort"), std::string::npos) << "the reason carries the last log lines\n"
                                                                                  << crash_reason;

  const json& ok = m["suites"]["selftest-ok"];
  EXPECT_EQ(ok["status"], "ok") << ok.dump(2);
  EXPECT_EQ(ok["file"], "selftest-ok.json");
  EXPECT_FALSE(ok.contains("reason"));

  const json& thr = m["suites"]["selftest-throw"];
  EXPECT_EQ(thr["status"], "error") << thr.dump(2);
  EXPECT_EQ(thr.value("reason", ""), "planted failure");

  const json& hang = m["suites"]["selftest-hang"];
  EXPECT_EQ(hang["status"], "timeout") << hang.dump(2);
  EXPECT_NE(hang.value("reason", "").find("timed out after 3 s"), std::string::npos) << hang.dump(2);
  EXPECT_GE(hang.value("seconds", 0.0), 3.0);
  EXPECT_LT(hang.value("seconds", 99.0), 10.0) << "SIGTERM should end a sleeping child at once";

  // Run-level fields.
  EXPECT_TRUE(m["finished_at"].is_string()) << m.dump(2);
  EXPECT_TRUE(m["started_at"].is_string());
  EXPECT_FALSE(m.contains("interrupted"));
  EXPECT_EQ(m["run_id"], r.dir.filename().string());
  EXPECT_EQ(m["schema"], "claimbench.manifest");
  EXPECT_EQ(m["schema_version"], "1.0");
  ASSERT_TRUE(m["build"].is_object());
  EXPECT_TRUE(m["build"]["commit"].is_string()) << m["build"].dump();
  EXPECT_FALSE(m["build"].value("commit", "").empty());
  ASSERT_TRUE(m["hardware"].is_object());
  EXPECT_FALSE(m["hardware"].value("fingerprint", "").empty()) << m["hardware"].dump();
  EXPECT_NE(r.dir.filename().string().find(m["hardware"].value("fingerprint", "?")), std::string::npos);
  ASSERT_TRUE(m["params"].is_object());
  EXPECT_EQ(m["params"]["quick"], false);
  EXPECT_EQ(m["params"]["sut"], "inprocess");
  EXPECT_TRUE(m["params"].contains("model_dir"));
  ASSERT_TRUE(m["seeds"].is_object());
  EXPECT_EQ(m["seeds"]["run"], 7);
}

TEST(RunOrchestration, EverySuiteFileParsesAndTheOkSuiteHasItsMetric) {
  REQUIRE_CLAIMBENCH();
  const SharedRun& r = shared_run();
  ASSERT_EQ(r.cmd.rc, 0) << describe(r.cmd);
  std::set<std::string> seen;
  for (const auto& e : fs::directory_iterator(r.dir)) {
    const fs::path p = e.path();
    EXPECT_EQ(p.filename().string().find(".tmp."), std::string::npos) << "left behind: " << p;
    if (p.extension() != ".json" || p.filename() == "manifest.json" || p.filename() == "claims.json") continue;
    SuiteResult s;
    ASSERT_NO_THROW(s = SuiteResult::from_json(read_json_file(p), p.string())) << p;
    EXPECT_EQ(s.suite + ".json", p.filename().string());
    seen.insert(s.suite);
  }
  EXPECT_EQ(seen, std::set<std::string>(kSharedOrder.begin(), kSharedOrder.end()));

  const SuiteResult ok = SuiteResult::from_json(read_json_file(r.dir / "selftest-ok.json"), "selftest-ok.json");
  EXPECT_EQ(ok.status, SuiteStatus::Ok);
  const Metric* v = ok.find("selftest_ok.value");
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v->value, 42);
  EXPECT_EQ(v->noise, NoiseClass::Exact);
  EXPECT_EQ(v->direction, Direction::HigherIsBetter);
  EXPECT_FALSE(v->samples.empty());
  EXPECT_EQ(ok.tables.size(), 1u);
  EXPECT_TRUE(fs::exists(r.dir / "selftest-ok.csv"));
  EXPECT_TRUE(fs::exists(r.dir / ("selftest-ok." + ok.tables.begin()->first + ".csv")));
  EXPECT_NE(slurp(r.dir / "selftest-ok.csv").find("selftest_ok.value,42"), std::string::npos);

  // The child of selftest-throw wrote its own file (and CSV); the parent wrote those of the crash
  // and the hang, with no CSV.
  const SuiteResult thr = SuiteResult::from_json(read_json_file(r.dir / "selftest-throw.json"), "selftest-throw.json");
  EXPECT_EQ(thr.status, SuiteStatus::Error);
  EXPECT_EQ(thr.reason, "planted failure");
  EXPECT_TRUE(fs::exists(r.dir / "selftest-throw.csv"));
  const SuiteResult crash = SuiteResult::from_json(read_json_file(r.dir / "selftest-crash.json"), "selftest-crash.json");
  EXPECT_EQ(crash.status, SuiteStatus::Error);
  EXPECT_TRUE(crash.metrics.empty());
  EXPECT_FALSE(fs::exists(r.dir / "selftest-crash.csv"));
  const SuiteResult hang = SuiteResult::from_json(read_json_file(r.dir / "selftest-hang.json"), "selftest-hang.json");
  EXPECT_EQ(hang.status, SuiteStatus::Timeout);
  EXPECT_FALSE(fs::exists(r.dir / "selftest-hang.csv"));

  // The whole folder reads back.
  const RunData run = RunData::load(r.dir);
  EXPECT_EQ(run.suites.size(), kSharedOrder.size());
  ASSERT_NE(run.find_metric("selftest_ok.value"), nullptr);
}

TEST(RunOrchestration, TwoRunsIntoTheSameOutNeverShareAFolder) {
  REQUIRE_CLAIMBENCH();
  const fs::path base = orch_root() / "twice";
  const Cmd a = claimbench("run --suite selftest-ok --out " + quoted(base.string()));
  const Cmd b = claimbench("run --suite selftest-ok --out " + quoted(base.string()));
  ASSERT_EQ(a.rc, 0) << describe(a);
  ASSERT_EQ(b.rc, 0) << describe(b);
  const std::string da = last_line(a.out), db = last_line(b.out);
  EXPECT_NE(da, db);
  std::vector<std::string> found;
  for (const auto& d : subdirs(base)) found.push_back(d.string());
  EXPECT_EQ(found, (std::vector<std::string>{std::min(da, db), std::max(da, db)}));
  for (const fs::path d : {da, db}) {
    const json m = manifest_of(d);
    EXPECT_EQ(m["run_id"], d.filename().string());
    EXPECT_EQ(m["suites"]["selftest-ok"]["status"], "ok");
    EXPECT_TRUE(fs::exists(d / "selftest-ok.json"));
  }
  fs::remove_all(base);
}

TEST(RunOrchestration, UnknownSuiteFailsBeforeCreatingAnyFolder) {
  REQUIRE_CLAIMBENCH();
  const fs::path base = orch_root() / "never";
  const Cmd c = claimbench("run --suite selftest-ok,no-such-suite --out " + quoted(base.string()));
  EXPECT_EQ(c.rc, 2) << describe(c);
  EXPECT_NE(c.err.find("unknown suite 'no-such-suite'"), std::string::npos) << describe(c);
  EXPECT_FALSE(fs::exists(base)) << "nothing may be written for a run that cannot start";
  EXPECT_EQ(c.out, "");

  // Without the test hook, the self-test suites do not exist and are not listed.
  const Cmd d = claimbench("run --suite selftest-ok --out " + quoted(base.string()), /*test_suites=*/false);
  EXPECT_EQ(d.rc, 2) << describe(d);
  EXPECT_NE(d.err.find("unknown suite 'selftest-ok'"), std::string::npos) << describe(d);
  EXPECT_NE(d.err.find("known: "), std::string::npos) << describe(d);
  EXPECT_EQ(d.err.find("selftest-crash"), std::string::npos) << "test suites listed without the hook:\n" << d.err;
  EXPECT_FALSE(fs::exists(base));
}

// --backend: an unknown name or one that cannot apply (an external SUT) stops the run before any
// folder exists; a known backend that cannot run on this machine leaves a run whose engine-side
// suites are skipped with that reason, and whose kernels suite says why cb_cuda_bench cannot run.
TEST(RunOrchestration, BackendIsCheckedUpFrontAndSkipsWithTheReason) {
  REQUIRE_CLAIMBENCH();
  const fs::path base = orch_root() / "backend";
  Cmd c = claimbench("run --suite engine --backend tpu --out " + quoted(base.string()));
  EXPECT_EQ(c.rc, 2) << describe(c);
  EXPECT_NE(c.err.find("unknown backend 'tpu' (known: ref, cpu, cuda)"), std::string::npos) << describe(c);
  c = claimbench("run --suite load --backend ref --sut http://127.0.0.1:9 --out " + quoted(base.string()));
  EXPECT_EQ(c.rc, 2) << describe(c);
  EXPECT_NE(c.err.find("--backend ref applies to the engine in this process"), std::string::npos) << describe(c);
  EXPECT_FALSE(fs::exists(base)) << "nothing may be written for a run that cannot start";

  const std::string why = cb::kernels::backend_unavailable_reason("cuda");
  if (why.empty()) GTEST_SKIP() << "a usable GPU is present: a cuda run here would measure, not skip";
  c = claimbench("run --quick --suite engine,kernels,accuracy --backend cuda --out " + quoted(base.string()));
  ASSERT_EQ(c.rc, 0) << describe(c);
  const auto dirs = subdirs(base);
  ASSERT_EQ(dirs.size(), 1u);
  const json m = manifest_of(dirs[0]);
  EXPECT_EQ(m["params"]["backend"], "cuda");
  for (const char* engine_side : {"engine", "accuracy"}) {
    const SuiteResult r = SuiteResult::from_json(read_json_file(dirs[0] / (std::string(engine_side) + ".json")), engine_side);
    EXPECT_EQ(r.status, SuiteStatus::Skipped) << engine_side;
    EXPECT_EQ(r.reason, "--backend cuda cannot run here: " + why) << engine_side;
    EXPECT_TRUE(r.metrics.empty()) << engine_side;
  }
  const SuiteResult k = SuiteResult::from_json(read_json_file(dirs[0] / "kernels.json"), "kernels");
  // The kernels suite measures cuda through cb_cuda_bench: not in a build without the cuda preset,
  // and where it is built it cannot run without a GPU; SKIP either way, with that reason.
  EXPECT_EQ(k.status, SuiteStatus::Skipped);
  EXPECT_TRUE(k.reason.find("cb_cuda_bench is not in this build") != std::string::npos ||
              k.reason.find("cb_cuda_bench cannot run here") != std::string::npos)
      << k.reason;
  EXPECT_TRUE(k.metrics.empty());
  EXPECT_EQ(m["suites"]["engine"]["status"], "skipped");
}

// "all" never includes the self-test suites, even with the hook on; a suite named again after
// "all" runs once. The real suites are cut short by a tiny time limit: only the list matters here.
TEST(RunOrchestration, AllExcludesTestSuitesAndDuplicatesRunOnce) {
  REQUIRE_CLAIMBENCH();
  const fs::path base = orch_root() / "all";
  const Cmd c = claimbench("run --suite all,selftest-ok,cost --timeout-scale 0.0001 --out " + quoted(base.string()));
  ASSERT_EQ(c.rc, 0) << describe(c);
  const fs::path dir = last_line(c.out);
  const json m = manifest_of(dir);
  const json expected = {"kernels", "engine", "accuracy", "load", "scaling", "transport", "cost", "selftest-ok"};
  EXPECT_EQ(m["params"]["suites"], expected) << m.dump(2);
  std::set<std::string> keys;
  for (const auto& [k, v] : m["suites"].items()) keys.insert(k);
  EXPECT_EQ(keys, (std::set<std::string>{"kernels", "engine", "accuracy", "load", "scaling", "transport", "cost", "selftest-ok"}));
  EXPECT_TRUE(m["finished_at"].is_string());
  // The kernels suite timed out at once; the benchmark it had started must be gone with it (it
  // writes into the run folder, so its command line names the folder).
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  std::string leftover;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string pid = e.path().filename().string();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(e.path() / "cmdline", std::ios::binary);  // empty for zombies: those are dead
    std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmd.find(dir.string()) != std::string::npos) leftover += pid + " ";
  }
  EXPECT_TRUE(leftover.empty()) << "processes of the timed-out suite outlived it: " << leftover;
  fs::remove_all(base);
}

// Ctrl-C while a suite runs: the parent stops that suite's process group, records it, marks the
// run interrupted and finished, and keeps what finished before.
TEST(RunOrchestration, InterruptKeepsFinishedSuitesAndKillsTheRunningOne) {
  REQUIRE_CLAIMBENCH();
  const fs::path base = orch_root() / "interrupt";
  fs::create_directories(base);
  const fs::path out_file = orch_root() / "interrupt.stdout", err_file = orch_root() / "interrupt.stderr";

  std::vector<std::string> env_s;
  for (char** e = environ; *e; ++e)
    if (std::string(*e).rfind("CB_TEST_SUITES=", 0) != 0) env_s.push_back(*e);
  env_s.push_back("CB_TEST_SUITES=1");
  std::vector<char*> envp;
  for (auto& s : env_s) envp.push_back(s.data());
  envp.push_back(nullptr);
  // --timeout-scale 5: the hang's limit becomes 15 s, so the interrupt, not the limit, ends it.
  std::vector<std::string> args = {claimbench_exe().string(), "run", "--suite", "selftest-ok,selftest-hang",
                                   "--timeout-scale", "5", "--out", base.string()};
  std::vector<char*> argv;
  for (auto& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t parent = 0;
  const int rc = posix_spawn(&parent, argv[0], &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  ASSERT_EQ(rc, 0) << "posix_spawn " << argv[0] << ": " << std::strerror(rc);

  // Wait until selftest-ok has finished and the hang child has said its pid.
  fs::path dir;
  pid_t hang_pid = 0;
  const auto t0 = Clock::now();
  int status = 0;
  bool exited_early = false;
  while (seconds_since(t0) < 30) {
    if (::waitpid(parent, &status, WNOHANG) == parent) {
      exited_early = true;
      break;
    }
    const auto dirs = subdirs(base);
    if (dirs.size() == 1 && fs::exists(dirs[0] / "selftest-ok.json")) {
      dir = dirs[0];
      const std::string log = slurp(dir / "run.log");
      const std::string tag = "selftest-hang: pid ";
      if (const auto p = log.find(tag); p != std::string::npos) {
        hang_pid = pid_t(std::atoi(log.c_str() + p + tag.size()));
        if (hang_pid > 0) break;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (exited_early || hang_pid <= 0) {
    if (!exited_early) {
      ::kill(parent, SIGKILL);
      ::waitpid(parent, &status, 0);
    }
    if (hang_pid > 0) ::kill(-hang_pid, SIGKILL);
    FAIL() << "the run did not reach selftest-hang within 30 s (exited early: " << exited_early << ")\n--- stderr:\n"
           << slurp(err_file) << "\n--- run.log:\n" << (dir.empty() ? std::string() : slurp(dir / "run.log"));
  }
  ASSERT_EQ(::kill(hang_pid, 0), 0) << "the hang child " << hang_pid << " should be running before the interrupt";

  // Ctrl-C, to the claimbench parent only (as a terminal would send it to the foreground group, but
  // the suite runs in its own group, so this also checks that the parent passes the stop on).
  ASSERT_EQ(::kill(parent, SIGINT), 0);
  const auto t1 = Clock::now();
  bool exited = false;
  while (seconds_since(t1) < 15) {
    if (::waitpid(parent, &status, WNOHANG) == parent) {
      exited = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const double stop_s = seconds_since(t1);
  if (!exited) {
    ::kill(parent, SIGKILL);
    ::waitpid(parent, &status, 0);
    ::kill(-hang_pid, SIGKILL);
    FAIL() << "claimbench did not exit within 15 s of SIGINT\n--- stderr:\n" << slurp(err_file);
  }
  std::printf("[ info     ] claimbench exited %.2f s after SIGINT (exit code %d)\n", stop_s,
              WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  EXPECT_LT(stop_s, 5) << "SIGTERM to the suite's group should end the sleeping child at once";
  EXPECT_TRUE(WIFEXITED(status)) << "claimbench itself should exit, not die of the signal";
  EXPECT_EQ(WIFEXITED(status) ? WEXITSTATUS(status) : -1, 130) << "an interrupted run exits 130, like other interrupted commands";
  const int alive = ::kill(hang_pid, 0);
  const int kill_errno = errno;
  EXPECT_EQ(alive, -1) << "the hang child " << hang_pid << " is still alive";
  EXPECT_EQ(kill_errno, ESRCH);
  if (alive == 0) ::kill(-hang_pid, SIGKILL);

  EXPECT_EQ(last_line(slurp(out_file)), dir.string()) << "an interrupted run still prints its folder";
  const json m = manifest_of(dir);
  EXPECT_EQ(m.value("interrupted", false), true) << m.dump(2);
  EXPECT_TRUE(m["finished_at"].is_string()) << m.dump(2);
  EXPECT_EQ(m["suites"]["selftest-ok"]["status"], "ok");
  EXPECT_EQ(m["suites"]["selftest-hang"]["status"], "error") << m["suites"].dump(2);
  EXPECT_NE(m["suites"]["selftest-hang"].value("reason", "").find("interrupted"), std::string::npos) << m["suites"].dump(2);
  ASSERT_TRUE(fs::exists(dir / "selftest-ok.json"));
  const RunData run = RunData::load(dir);
  ASSERT_NE(run.find_metric("selftest_ok.value"), nullptr);
  EXPECT_EQ(run.find_metric("selftest_ok.value")->value, 42);
  fs::remove_all(base);
}

// ---- claimbench check on run (a) ---------------------------------------------------------------

namespace {

json claim(const std::string& id, const std::string& suite, const std::string& metric, const std::string& cmp, double threshold) {
  return {{"id", id}, {"claim", "self-test claim " + id}, {"figure", cmp + " " + std::to_string(threshold)}, {"suite", suite},
          {"unit", "x"}, {"scope", "self-test suites"}, {"metric", metric}, {"comparator", cmp}, {"threshold", threshold}};
}

fs::path write_claim_set(const std::string& name, const std::vector<json>& claims) {
  const fs::path p = orch_root() / (name + ".claims.json");
  write_json_atomic(p, {{"$comment", "written by test_run_orchestration.cpp"}, {"schema", "claimbench.claimset"},
                        {"schema_version", "1.0"}, {"name", name}, {"source", "test_run_orchestration.cpp"}, {"claims", claims}});
  return p;
}

const json kPass = claim("value-high", "selftest-ok", "selftest_ok.value", ">=", 40);
const json kFail = claim("value-low", "selftest-ok", "selftest_ok.value", "<=", 10);
const json kError = claim("crashed", "selftest-crash", "selftest.crash.value", ">=", 0);

Cmd check(const fs::path& dir, const fs::path& claims, const std::string& extra = "") {
  return claimbench("check " + quoted(dir.string()) + " --claims " + quoted(claims.string()) + extra);
}

}  // namespace

TEST(RunOrchestrationCheck, PassFailErrorExitsTwoPrintsTableWritesClaimsJson) {
  REQUIRE_CLAIMBENCH();
  const SharedRun& r = shared_run();
  ASSERT_EQ(r.cmd.rc, 0) << describe(r.cmd);
  const fs::path set = write_claim_set("all3", {kPass, kFail, kError});
  fs::remove(r.dir / "claims.json");
  const Cmd c = check(r.dir, set);
  EXPECT_EQ(c.rc, 2) << describe(c);
  for (const char* s : {"value-high", "value-low", "crashed", "PASS", "FAIL", "ERROR", "selftest-crash",
                        "1 PASS, 1 FAIL, 0 INCONCLUSIVE, 0 INVALID, 0 SKIP, 0 NOT MEASURED, 1 ERROR"})
    EXPECT_NE(c.out.find(s), std::string::npos) << "missing '" << s << "' in\n" << c.out;

  ASSERT_TRUE(fs::exists(r.dir / "claims.json")) << describe(c);
  const ClaimsReport rep = load_claims_json(r.dir / "claims.json");
  ASSERT_EQ(rep.results.size(), 3u);
  EXPECT_EQ(rep.results[0].id, "value-high");
  EXPECT_EQ(rep.results[0].verdict, Verdict::Pass);
  ASSERT_TRUE(rep.results[0].measured.has_value());
  EXPECT_EQ(*rep.results[0].measured, 42);
  EXPECT_EQ(rep.results[1].verdict, Verdict::Fail);
  EXPECT_EQ(rep.results[2].verdict, Verdict::Error);
  EXPECT_NE(rep.results[2].reason.find("selftest-crash"), std::string::npos) << rep.results[2].reason;
  EXPECT_NE(rep.results[2].reason.find("error"), std::string::npos) << rep.results[2].reason;
  EXPECT_EQ(rep.counts.at("PASS"), 1);
  EXPECT_EQ(rep.counts.at("FAIL"), 1);
  EXPECT_EQ(rep.counts.at("ERROR"), 1);
  EXPECT_EQ(rep.counts.at("SKIP"), 0);
  EXPECT_EQ(rep.counts.at("NOT MEASURED"), 0);
  EXPECT_EQ(rep.claim_set, set.string());

  // An ERROR is never allowed.
  const Cmd allowed = check(r.dir, set, " --allow-fail");
  EXPECT_EQ(allowed.rc, 2) << describe(allowed);
}

TEST(RunOrchestrationCheck, ExitCodesForPassAndFail) {
  REQUIRE_CLAIMBENCH();
  const SharedRun& r = shared_run();
  ASSERT_EQ(r.cmd.rc, 0) << describe(r.cmd);
  const Cmd pass = check(r.dir, write_claim_set("pass", {kPass}));
  EXPECT_EQ(pass.rc, 0) << describe(pass);
  EXPECT_NE(pass.out.find("1 PASS, 0 FAIL, 0 INCONCLUSIVE, 0 INVALID, 0 SKIP, 0 NOT MEASURED, 0 ERROR"), std::string::npos) << pass.out;
  EXPECT_EQ(load_claims_json(r.dir / "claims.json").results.size(), 1u) << "claims.json is rewritten by each check";

  const fs::path pf = write_claim_set("pass-fail", {kPass, kFail});
  const Cmd fail = check(r.dir, pf);
  EXPECT_EQ(fail.rc, 1) << describe(fail);
  const Cmd allowed = check(r.dir, pf, " --allow-fail");
  EXPECT_EQ(allowed.rc, 0) << describe(allowed);
  EXPECT_NE(allowed.out.find("1 PASS, 1 FAIL"), std::string::npos) << allowed.out;

  // A claim set that cannot be read is an error (exit 2) that names the file.
  const fs::path bad = orch_root() / "bad.claims.json";
  write_json_atomic(bad, {{"schema", "claimbench.claimset"}, {"schema_version", "1.0"}, {"name", "bad"}, {"source", "t"},
                          {"claims", json::array({claim("x", "selftest-ok", "selftest_ok.value", "=>", 1)})}});
  const Cmd broken = check(r.dir, bad);
  EXPECT_EQ(broken.rc, 2) << describe(broken);
  EXPECT_NE(broken.err.find("bad.claims.json"), std::string::npos) << describe(broken);
}
