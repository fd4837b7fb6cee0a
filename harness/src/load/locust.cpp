// The load suite's Locust driver: an OpenAI-compatible server (started here, or the --sut
// endpoint), Locust headless for a bounded time, its CSVs read back into the suite result.
//
// Process hygiene: the server is a child in this process's group (so a kill of the suite's group
// reaches it) with a parent-death signal (so it goes when this process dies, however it dies), and
// it is stopped by a scope guard on every return and throw. Locust runs through run_process with a
// time limit, also in this group; stop_requested() (Ctrl-C in `claimbench run`) ends both.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include "cb/harness/load/server_process.h"
#include "cb/harness/load/locust.h"
#include "cb/harness/core/process.h"

namespace cb::harness {
namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& a : v) {
    const bool plain = !a.empty() && a.find_first_of(" \t\"'\\$`") == std::string::npos;
    s += (s.empty() ? "" : " ") + (plain ? a : "'" + a + "'");
  }
  return s;
}

// stdout of a short command (no shell): for version queries only.
std::string capture(const std::vector<std::string>& argv) {
  int fds[2];
  if (pipe(fds) != 0) return "";
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return "";
  }
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    const int devnull = open("/dev/null", O_RDWR);
    dup2(devnull, STDIN_FILENO);
    dup2(devnull, STDERR_FILENO);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
    if (n > 0) out.append(buf, size_t(n));
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return out;
}

const LocustStatsRow* find_row(const std::vector<LocustStatsRow>& rows, const std::string& type, const std::string& name) {
  for (const auto& r : rows)
    if (r.type == type && r.name == name) return &r;
  return nullptr;
}

std::string format_seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", s);
  return buf;
}

}  // namespace

std::string locust_version(const std::vector<std::string>& locust_argv) {
  if (locust_argv.empty()) return "";
  auto argv = locust_argv;
  argv.push_back("--version");
  static const std::regex ver(R"(locust\s+([0-9][^\s]*))");
  std::smatch m;
  const std::string out = capture(argv);
  if (std::regex_search(out, m, ver)) return m[1];
  // Debian's python3-locust prints "locust " (its package metadata carries no version).
  const std::string deb = capture({"/usr/bin/dpkg-query", "-W", "-f=${Version}", "python3-locust"});
  return deb.empty() ? "" : deb + " (Debian python3-locust)";
}

LocustRunOutput run_locust(const LocustRunOptions& o) {
  if (o.out_dir.empty()) throw std::runtime_error("Locust driver: no output folder");
  if (o.duration_s <= 0 || o.users <= 0 || o.spawn_rate <= 0 || o.stop_timeout_s < 0)
    throw std::runtime_error("Locust driver: users, spawn rate and duration must be positive, the stop timeout not negative");
  if (!fs::exists(o.locustfile)) throw std::runtime_error("Locust driver: locustfile " + o.locustfile.string() + " does not exist");
  if (!o.workload.empty() && !fs::exists(o.workload))
    throw std::runtime_error("Locust driver: workload " + o.workload.string() + " does not exist");
  fs::create_directories(o.out_dir);
  const fs::path out_dir = fs::absolute(o.out_dir);
  LocustRunOutput out;

  std::optional<load::ServerProcess> server;
  if (!o.server_argv.empty()) {
    server.emplace(o.server_argv, out_dir / "server.log");
    out.server_started = true;
    out.host = server->wait_listening(o.server_start_timeout_s);
  } else {
    out.host = o.host;
  }
  if (out.host.rfind("http://", 0) != 0) throw std::runtime_error("Locust driver: endpoint '" + out.host + "' is not http://HOST:PORT");
  out.locust_version = locust_version(o.locust_argv);

  // A clean environment and working folder: only what is set here reaches Locust (no LOCUST_*
  // variables, no ~/.locust.conf or ./locust.conf from the user, no pyenv shims, no bytecode
  // written next to the locustfile in the source tree).
  std::vector<std::string> argv = {"/usr/bin/env", "-i", "-C", out_dir.string(), "PATH=/usr/bin:/bin",
                                   "HOME=" + out_dir.string(), "PYTHONDONTWRITEBYTECODE=1",
                                   "CB_LOCUST_SEED=" + std::to_string(o.seed),
                                   "CB_LOCUST_MAX_TOKENS_CAP=" + std::to_string(o.max_tokens_cap)};
  if (!o.workload.empty()) argv.push_back("CB_LOCUST_WORKLOAD=" + fs::absolute(o.workload).string());
  if (o.quick) argv.push_back("CB_LOCUST_QUICK=1");
  std::string api_key_arg;  // passed to Locust, left out of the recorded command
  if (const char* key = std::getenv("OPENAI_API_KEY"); key && *key) api_key_arg = std::string("OPENAI_API_KEY=") + key;
  argv.insert(argv.end(), o.locust_argv.begin(), o.locust_argv.end());
  const fs::path prefix = out_dir / "locust";
  for (const auto& a : std::vector<std::string>{"-f", fs::absolute(o.locustfile).string(), "--headless", "-u",
                                                std::to_string(o.users), "-r", format_seconds(o.spawn_rate), "-t",
                                                std::to_string(o.duration_s) + "s", "--host", out.host, "--csv",
                                                prefix.string(), "--csv-full-history", "--only-summary",
                                                "--stop-timeout", std::to_string(o.stop_timeout_s), "--exit-code-on-error", "0"})
    argv.push_back(a);
  out.command = argv;
  if (!api_key_arg.empty()) {
    argv.insert(argv.begin() + 7, api_key_arg);  // after env's fixed settings
    out.command.insert(out.command.begin() + 7, "OPENAI_API_KEY=<set, not recorded>");
  }

  // Locust's start-up (gevent, imports) takes a few seconds on a loaded machine; a run that has not
  // ended a minute past its run time and the stop timeout is hung.
  const fs::path log = out_dir / "locust.log";
  // Locust's interpreter teardown sometimes hangs after the run (gevent); the locustfile writes
  // PREFIX_stats_final.csv once every result is flushed, so 15 s after that file appears the run
  // is over whatever the process does: stop it then rather than waiting for the time limit.
  const fs::path final_csv = prefix.string() + "_stats_final.csv";
  std::optional<Clock::time_point> final_seen;
  auto hung_after_final = [&] {
    if (!final_seen && fs::exists(final_csv)) final_seen = Clock::now();
    return final_seen && std::chrono::duration<double>(Clock::now() - *final_seen).count() > 15.0;
  };
  const ProcessResult pr = run_process(argv, o.duration_s + o.stop_timeout_s + 60.0, log, {}, /*own_group=*/false, hung_after_final);
  out.stopped_after_final_stats = pr.stopped_by_caller;
  if (server) {
    out.server_died = server->poll_exited();
    server->stop();
    out.server_exit = server->exit_text() + (out.server_died ? " (before Locust finished)" : "");
  }
  if (!pr.started) throw std::runtime_error("could not start " + argv[0]);
  if (pr.timed_out || pr.interrupted || (pr.exit_code != 0 && !pr.stopped_by_caller))
    throw std::runtime_error("Locust " + pr.describe() + "; last lines of " + log.string() + ":\n" + tail_lines(log, 10));

  out.failures_csv = prefix.string() + "_failures.csv";
  out.history_csv = prefix.string() + "_stats_history.csv";
  // The locustfile's snapshot after the users stopped; Locust's own PREFIX_stats.csv lags by up to
  // a second (see workloads/locust/locustfile.py).
  out.stats_csv = prefix.string() + "_stats_final.csv";
  if (!fs::exists(out.stats_csv)) out.stats_csv = prefix.string() + "_stats.csv";
  out.stats = parse_locust_stats(out.stats_csv);
  out.history = parse_locust_history(out.history_csv);
  return out;
}

SuiteResult locust_suite_result(const LocustRunOptions& o, const LocustRunOutput& out) {
  SuiteResult r;
  r.suite = "load";
  json params = {{"driver", "locust"},
                 {"users", o.users},
                 {"spawn_rate", o.spawn_rate},
                 {"duration_s", o.duration_s},
                 {"stop_timeout_s", o.stop_timeout_s},
                 {"seed", o.seed},
                 {"quick_mix", o.quick},
                 {"max_tokens_cap", o.max_tokens_cap},
                 {"workload", o.workload.empty() ? "locustfile default mix" : o.workload.string()},
                 {"locust_version", out.locust_version},
                 {"locust_command", join(out.command)},
                 {"host", out.host},
                 {"stats_csv", out.stats_csv.filename().string()}};
  if (out.stopped_after_final_stats)
    params["locust_exit"] = "stopped 15 s after it wrote its final stats (its interpreter teardown hung); the stats are complete";
  if (out.server_started) {
    params["server_command"] = join(o.server_argv);
    params["server_exit"] = out.server_exit;
  }
  r.params["locust"] = params;
  r.tables["locust_stats"] = locust_stats_table(out.stats);
  r.tables["locust_history"] = locust_history_table(out.history);

  const LocustStatsRow* post = find_row(out.stats, "POST", "/v1/completions");
  const LocustStatsRow* ttft = find_row(out.stats, "TTFT", "/v1/completions");
  if (!post || post->request_count == 0) {
    r.status = SuiteStatus::Error;
    r.reason = "Locust made no requests to " + out.host + " in " + std::to_string(o.duration_s) + " s (see raw/locust/locust.log)";
    return r;
  }
  const json mp = {{"users", o.users}, {"duration_s", o.duration_s}, {"host", out.host}};
  const std::string how = "Locust " + out.locust_version + ", " + std::to_string(o.users) + " closed-loop users, " +
                          std::to_string(o.duration_s) + " s; ";
  auto pct = [](const LocustStatsRow& row, const std::string& col) -> std::optional<double> {
    const auto it = row.percentiles_ms.find(col);
    return it == row.percentiles_ms.end() ? std::nullopt : std::optional<double>(it->second);
  };
  r.add({"load.locust.requests_per_s", post->requests_per_s, "req/s", Direction::HigherIsBetter, NoiseClass::Timing, {}, mp,
         how + "Locust's own rate: all streamed completions (failed ones too) / time from start to the last request"});
  r.add({"load.locust.requests", double(post->request_count), "requests", Direction::Neutral, NoiseClass::Timing, {}, mp,
         how + "completions issued and ended (Locust does not count requests cut off at the end of the run)"});
  r.add({"load.locust.failures", double(post->failure_count), "requests", Direction::LowerIsBetter, NoiseClass::Exact, {}, mp,
         how + "HTTP errors, broken streams, streams without [DONE] or text; messages in raw/locust/locust_failures.csv"});
  const std::string bucketed = "Locust's own percentile, read off its histogram of rounded times (1 ms under 100 ms, "
                               "10 ms under 1 s, 100 ms under 10 s, 1 s above), not a measured sample";
  for (const auto& [col, key] : {std::pair{"50%", "p50_ms"}, std::pair{"90%", "p90_ms"}, std::pair{"99%", "p99_ms"}}) {
    if (const auto v = pct(*post, col))
      r.add({std::string("load.locust.") + key, *v, "ms", Direction::LowerIsBetter, NoiseClass::Timing, {}, mp,
             how + "end-to-end streamed completion time; " + bucketed});
    if (ttft)
      if (const auto v = pct(*ttft, col))
        r.add({std::string("load.locust.ttft_") + key, *v, "ms", Direction::LowerIsBetter, NoiseClass::Timing, {}, mp,
               how + "time to the first event carrying text; " + bucketed});
  }
  if (out.server_died) {
    r.status = SuiteStatus::Error;
    r.reason = "the server exited while Locust ran (" + out.server_exit + "; see raw/locust/server.log)";
  } else if (post->failure_count == post->request_count) {
    r.status = SuiteStatus::Error;
    r.reason = "every one of Locust's " + std::to_string(post->request_count) + " requests to " + out.host +
               " failed (see raw/locust/locust_failures.csv)";
  }
  return r;
}

SuiteResult run_locust_load(const SuiteContext& ctx) {
  SuiteResult skipped;
  skipped.suite = "load";
  LocustRunOptions o;
  // CB_LOCUST names another Locust executable (e.g. a pip install); default Debian's.
  if (const char* alt = std::getenv("CB_LOCUST"); alt && *alt) o.locust_argv = {alt};
  if (access(o.locust_argv[0].c_str(), X_OK) != 0) {
    skipped.status = SuiteStatus::Skipped;
    skipped.reason = "Locust is not installed (" + o.locust_argv[0] + " not found; apt install python3-locust, or set CB_LOCUST)";
    return skipped;
  }
  if (ctx.sut == "null") {
    skipped.status = SuiteStatus::Skipped;
    skipped.reason = "the Locust driver needs an HTTP endpoint; --sut null measures the native generator only";
    return skipped;
  }
  if (ctx.run_dir.empty()) throw std::runtime_error("Locust driver: no run folder");
  o.out_dir = ctx.run_dir / "raw" / "locust";
  o.locustfile = fs::path(CB_SOURCE_DIR) / "workloads" / "locust" / "locustfile.py";
  if (const fs::path chat = fs::path(CB_SOURCE_DIR) / "workloads" / "chat.json"; fs::exists(chat)) o.workload = chat;
  o.seed = ctx.seed;
  // Quick: a bounded smoke run for CI.
  o.users = ctx.quick ? 4 : 16;
  o.spawn_rate = 4;
  o.duration_s = ctx.quick ? 12 : 60;
  o.quick = ctx.quick;  // the workload's quick lengths (chat: outputs 8..48 tokens)
  if (ctx.sut.rfind("http://", 0) == 0) {
    o.host = ctx.sut;
  } else if (ctx.sut == "inprocess") {
#ifdef CB_REFENGINE_PATH
    o.server_argv = {CB_REFENGINE_PATH, "serve", "--model", fs::absolute(ctx.model_dir).string(), "--host", "127.0.0.1", "--port", "0"};
#else
    return not_built_suite("load", "the Locust driver serves with refengine, which this build does not have; pass --sut http://HOST:PORT");
#endif
  } else {
    throw std::runtime_error("Locust driver: --sut '" + ctx.sut + "' is neither inprocess nor http://HOST:PORT");
  }
  if (ctx.progress)
    ctx.progress(o.server_argv.empty() ? "Locust: " + std::to_string(o.users) + " users for " + std::to_string(o.duration_s) + " s against " + o.host
                                       : "Locust: starting refengine serve, then " + std::to_string(o.users) + " users for " +
                                             std::to_string(o.duration_s) + " s");
  const LocustRunOutput out = run_locust(o);
  return locust_suite_result(o, out);
}

}  // namespace cb::harness
