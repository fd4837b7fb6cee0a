// The load suite's Locust driver (harness/src/load/locust.cpp, load/locust_csv.cpp):
//  - Locust CSV parsing against fixtures from a real Locust 2.12 run (suites/unit/data/locust/,
//    made as its README says), including files that must fail with the file, line and column;
//  - the suite result built from those fixtures (which row feeds which load.locust.* metric);
//  - the server lifecycle with a stub server (suites/unit/data/locust/stub_server.py): a server
//    that dies or never listens is reported and killed;
//  - a short real Locust run against the stub (a few seconds), and the full quick suite against
//    it (DISABLED_ here; suites/cmake/locust.cmake runs it under the label "load").
#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <netinet/in.h>
#include <numeric>
#include <optional>
#include <sstream>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "cb/harness/load/locust.h"
#include "test_support.h"

using namespace cb::harness;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const fs::path kData = fs::path(CB_SOURCE_DIR) / "suites" / "unit" / "data" / "locust";
const fs::path kStub = kData / "stub_server.py";
const fs::path kLocustfile = fs::path(CB_SOURCE_DIR) / "workloads" / "locust" / "locustfile.py";

fs::path locust_root() { return cb::test::process_temp_root("locust"); }

fs::path write_file(const std::string& name, const std::string& text) {
  const fs::path p = locust_root() / name;
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

using cb::test::slurp;

// The message of the LocustCsvError that fn throws ("" when it throws nothing).
template <class Fn>
std::string csv_error(Fn&& fn) {
  try {
    fn();
  } catch (const LocustCsvError& e) {
    return e.what();
  }
  return "";
}

const LocustStatsRow& row(const std::vector<LocustStatsRow>& rows, const std::string& type, const std::string& name) {
  for (const auto& r : rows)
    if (r.type == type && r.name == name) return r;
  throw std::runtime_error("no row " + type + " " + name);
}

const std::string kStatsHeader =
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,"
    "Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%\n";
const std::string kPostRow = "POST,/v1/completions,10,1,20,21.5,1.2,53.5,695.0,5.5,0.5,20,21,23,24,42,45,47,49,54,54,54\n";

bool locust_installed() { return access("/usr/bin/locust", X_OK) == 0; }

// Connecting to url ("http://127.0.0.1:PORT") is refused: nothing listens there any more.
bool connection_refused(const std::string& url) {
  const auto colon = url.rfind(':');
  const int port = std::stoi(url.substr(colon + 1));
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const int rc = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  const int err = errno;
  close(fd);
  return rc != 0 && err == ECONNREFUSED;
}

}  // namespace

// ---- CSV parsing -------------------------------------------------------------------------------

// PREFIX_stats_final.csv of a 6 s, 3-user run against the stub failing every 7th request.
TEST(LocustCsv, StatsFixtureFromARealRun) {
  const auto rows = parse_locust_stats(kData / "stub_run_stats_final.csv");
  ASSERT_EQ(rows.size(), 3u);
  const auto& post = row(rows, "POST", "/v1/completions");
  EXPECT_EQ(post.request_count, 804);
  EXPECT_EQ(post.failure_count, 115);  // 804 / 7 = 114.9: the stub's counter also saw the requests cut off at the end
  EXPECT_DOUBLE_EQ(post.median_ms, 20);
  EXPECT_DOUBLE_EQ(post.avg_ms, 21.246896284845487);
  EXPECT_DOUBLE_EQ(post.min_ms, 1.1194550006621284);
  EXPECT_DOUBLE_EQ(post.max_ms, 53.54670800079475);
  EXPECT_DOUBLE_EQ(post.requests_per_s, 139.929096270652);
  EXPECT_DOUBLE_EQ(post.failures_per_s, 20.014733919309673);
  ASSERT_EQ(post.percentiles_ms.size(), 11u);
  EXPECT_DOUBLE_EQ(post.percentiles_ms.at("50%"), 20);
  EXPECT_DOUBLE_EQ(post.percentiles_ms.at("90%"), 42);
  EXPECT_DOUBLE_EQ(post.percentiles_ms.at("99%"), 49);
  EXPECT_DOUBLE_EQ(post.percentiles_ms.at("99.9%"), 54);
  EXPECT_DOUBLE_EQ(post.percentiles_ms.at("100%"), 54);
  const auto& ttft = row(rows, "TTFT", "/v1/completions");
  EXPECT_EQ(ttft.request_count, 689);
  EXPECT_EQ(ttft.failure_count, 0);
  EXPECT_EQ(ttft.request_count, post.request_count - post.failure_count);  // one TTFT per successful stream
  EXPECT_DOUBLE_EQ(ttft.percentiles_ms.at("50%"), 4);
  const auto& agg = row(rows, "", "Aggregated");  // Locust adds the two entries together
  EXPECT_EQ(agg.request_count, post.request_count + ttft.request_count);
}

// Locust 2.12 rewrites PREFIX_stats.csv once a second and not at exit: the same run's file misses
// the last second (699 of 804 requests). This is why the driver reads the locustfile's
// PREFIX_stats_final.csv; the history's last row matches the lagging file.
TEST(LocustCsv, LocustsOwnStatsFileLagsTheFinalSnapshot) {
  const auto lagging = row(parse_locust_stats(kData / "stub_run_stats.csv"), "POST", "/v1/completions");
  const auto final_ = row(parse_locust_stats(kData / "stub_run_stats_final.csv"), "POST", "/v1/completions");
  EXPECT_EQ(lagging.request_count, 699);
  EXPECT_LT(lagging.request_count, final_.request_count);
  const auto history = parse_locust_history(kData / "stub_run_stats_history.csv");
  const LocustHistoryRow* last_post = nullptr;
  for (const auto& h : history)
    if (h.type == "POST") last_post = &h;
  ASSERT_NE(last_post, nullptr);
  EXPECT_EQ(last_post->total_request_count, lagging.request_count);
  EXPECT_EQ(last_post->total_failure_count, lagging.failure_count);
}

TEST(LocustCsv, HistoryFixtureFromARealRun) {
  const auto rows = parse_locust_history(kData / "stub_run_stats_history.csv");
  ASSERT_EQ(rows.size(), 16u);  // t0: Aggregated only; then POST, TTFT, Aggregated each second
  // The first row comes before any request: no users yet, percentiles "N/A" (absent).
  EXPECT_EQ(rows[0].name, "Aggregated");
  EXPECT_EQ(rows[0].type, "");
  EXPECT_EQ(rows[0].user_count, 0);
  EXPECT_TRUE(rows[0].percentiles_ms.empty());
  EXPECT_EQ(rows[0].total_request_count, 0);
  for (size_t i = 1; i < rows.size(); ++i) {
    EXPECT_GE(rows[i].timestamp, rows[i - 1].timestamp) << "row " << i;
    EXPECT_EQ(rows[i].user_count, 3) << "row " << i;
    EXPECT_EQ(rows[i].percentiles_ms.size(), 11u) << "row " << i;
  }
  const auto& last = rows.back();
  EXPECT_EQ(last.name, "Aggregated");
  EXPECT_DOUBLE_EQ(last.requests_per_s, 214.666667);
  EXPECT_EQ(last.total_request_count, 1298);
  EXPECT_EQ(last.total_failure_count, 100);
  EXPECT_DOUBLE_EQ(last.total_avg_ms, 16.836955066279632);
}

TEST(LocustCsv, MalformedFixtureNamesFileLineAndColumn) {
  const std::string msg = csv_error([] { parse_locust_stats(kData / "malformed_stats.csv"); });
  EXPECT_NE(msg.find("malformed_stats.csv:3: column 10 ('Requests/s'): '119.9x' is not a number"), std::string::npos) << msg;
}

TEST(LocustCsv, ErrorsNameWhereTheProblemIs) {
  // A row with a column missing (line 3).
  const fs::path short_row = write_file("short.csv", kStatsHeader + kPostRow + "TTFT,/v1/completions,5,0,4\n");
  std::string msg = csv_error([&] { parse_locust_stats(short_row); });
  EXPECT_NE(msg.find("short.csv:3:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("Too few columns"), std::string::npos) << msg;

  // A header without "Failure Count".
  std::string header = kStatsHeader;
  header.replace(header.find("Failure Count,"), 14, "");
  const fs::path no_col = write_file("no_col.csv", header);
  msg = csv_error([&] { parse_locust_stats(no_col); });
  EXPECT_NE(msg.find("no_col.csv:1:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("Failure Count"), std::string::npos) << msg;

  // Counts must be non-negative integers, and failures cannot exceed requests.
  std::string bad = kPostRow;
  bad.replace(bad.find(",10,1,"), 6, ",10.5,1,");
  msg = csv_error([&] { parse_locust_stats(write_file("frac.csv", kStatsHeader + bad)); });
  EXPECT_NE(msg.find("frac.csv:2: column 3 ('Request Count'): '10.5' is not an integer"), std::string::npos) << msg;
  bad = kPostRow;
  bad.replace(bad.find(",10,1,"), 6, ",10,11,");
  msg = csv_error([&] { parse_locust_stats(write_file("over.csv", kStatsHeader + bad)); });
  EXPECT_NE(msg.find("over.csv:2: column 4 ('Failure Count'): 11 failures exceed the 10 requests"), std::string::npos) << msg;
  bad = kPostRow;
  bad.replace(bad.find(",49,"), 4, ",-49,");
  msg = csv_error([&] { parse_locust_stats(write_file("neg.csv", kStatsHeader + bad)); });
  EXPECT_NE(msg.find("neg.csv:2: column 19 ('99%'): '-49' is negative"), std::string::npos) << msg;

  // An unclosed quote, an empty file, a missing file.
  msg = csv_error([&] { parse_locust_stats(write_file("quote.csv", kStatsHeader + kPostRow + "\"TTFT,x\n")); });
  EXPECT_NE(msg.find("quote.csv:3:"), std::string::npos) << msg;
  msg = csv_error([&] { parse_locust_stats(write_file("empty.csv", "")); });
  EXPECT_NE(msg.find("empty.csv:1: empty file: no header line"), std::string::npos) << msg;
  msg = csv_error([&] { parse_locust_stats(locust_root() / "absent.csv"); });
  EXPECT_NE(msg.find("absent.csv: file does not exist"), std::string::npos) << msg;

  // History: a timestamp that is not an integer, on line 3.
  std::string history = slurp(kData / "stub_run_stats_history.csv");
  const auto line3 = history.find('\n', history.find('\n') + 1) + 1;
  history.replace(line3, 10, "17959477xx");
  msg = csv_error([&] { parse_locust_history(write_file("hist.csv", history)); });
  EXPECT_NE(msg.find("hist.csv:3: column 1 ('Timestamp'): '17959477xx' is not an integer"), std::string::npos) << msg;
}

// Quoted names (Python's csv module quotes commas and quotes) and extra columns of a later Locust.
TEST(LocustCsv, QuotedNamesAndExtraColumns) {
  const std::string text = "Extra," + kStatsHeader + "x,POST,\"/v1/a, \"\"b\"\"\",3,0,1,1,1,1,0,1,0,1,1,1,1,1,1,1,1,1,1,1\n";
  const auto rows = parse_locust_stats(write_file("quoted.csv", text));
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].name, "/v1/a, \"b\"");
  EXPECT_EQ(rows[0].request_count, 3);
}

TEST(LocustCsv, TablesAreFlatRowsWithNullForNA) {
  const json hist = locust_history_table(parse_locust_history(kData / "stub_run_stats_history.csv"));
  ASSERT_EQ(hist.size(), 16u);
  EXPECT_TRUE(hist[0]["p50_ms"].is_null());
  EXPECT_TRUE(hist[0]["p99_9_ms"].is_null());
  EXPECT_EQ(hist[15]["p99_9_ms"], 53);
  EXPECT_EQ(hist[15]["p100_ms"], 54);
  EXPECT_EQ(hist[15]["total_request_count"], 1298);
  for (const auto& r : hist)
    for (const auto& [k, v] : r.items()) EXPECT_FALSE(v.is_object() || v.is_array()) << k;
  const json stats = locust_stats_table(parse_locust_stats(kData / "stub_run_stats_final.csv"));
  ASSERT_EQ(stats.size(), 3u);
  EXPECT_EQ(stats[0]["type"], "POST");
  EXPECT_EQ(stats[0]["p99_ms"], 49);
  EXPECT_EQ(stats[0]["failure_count"], 115);
}

// ---- Suite result ------------------------------------------------------------------------------

TEST(LocustSuiteResult, MetricsComeFromThePostAndTtftRows) {
  LocustRunOptions o;
  o.users = 3;
  o.duration_s = 6;
  LocustRunOutput out;
  out.host = "http://127.0.0.1:1";
  out.locust_version = "2.12.1";
  out.stats = parse_locust_stats(kData / "stub_run_stats_final.csv");
  out.history = parse_locust_history(kData / "stub_run_stats_history.csv");
  const SuiteResult r = locust_suite_result(o, out);
  EXPECT_EQ(r.status, SuiteStatus::Ok) << r.reason;
  auto value = [&](const std::string& key) {
    const Metric* m = r.find(key);
    return m ? m->value : -1.0;
  };
  EXPECT_DOUBLE_EQ(value("load.locust.requests_per_s"), 139.929096270652);  // the POST row, not "Aggregated"
  EXPECT_DOUBLE_EQ(value("load.locust.requests"), 804);
  EXPECT_DOUBLE_EQ(value("load.locust.failures"), 115);
  EXPECT_DOUBLE_EQ(value("load.locust.p50_ms"), 20);
  EXPECT_DOUBLE_EQ(value("load.locust.p90_ms"), 42);
  EXPECT_DOUBLE_EQ(value("load.locust.p99_ms"), 49);
  EXPECT_DOUBLE_EQ(value("load.locust.ttft_p50_ms"), 4);
  EXPECT_DOUBLE_EQ(value("load.locust.ttft_p90_ms"), 43);
  EXPECT_DOUBLE_EQ(value("load.locust.ttft_p99_ms"), 49);
  EXPECT_EQ(r.find("load.throughput.requests_per_s"), nullptr);  // the native generator's keys stay its own
  EXPECT_NE(r.find("load.locust.p99_ms")->note.find("histogram"), std::string::npos);
  EXPECT_EQ(r.tables.at("locust_stats").size(), 3u);
  EXPECT_EQ(r.tables.at("locust_history").size(), 16u);
  EXPECT_EQ(r.params["locust"]["users"], 3);

  // The server died during the run: an error, whatever Locust counted.
  out.server_died = true;
  out.server_exit = "killed by signal Killed (before Locust finished)";
  const SuiteResult died = locust_suite_result(o, out);
  EXPECT_EQ(died.status, SuiteStatus::Error);
  EXPECT_NE(died.reason.find("the server exited while Locust ran (killed by signal Killed"), std::string::npos) << died.reason;
  out.server_died = false;

  // No POST row (nothing completed): an error that says so.
  out.stats.erase(out.stats.begin());
  const SuiteResult none = locust_suite_result(o, out);
  EXPECT_EQ(none.status, SuiteStatus::Error);
  EXPECT_NE(none.reason.find("no requests"), std::string::npos) << none.reason;
}

// ---- Processes ---------------------------------------------------------------------------------

LocustRunOptions stub_options(const std::string& name) {
  LocustRunOptions o;
  o.out_dir = locust_root() / name;
  o.locustfile = kLocustfile;
  o.users = 2;
  o.spawn_rate = 10;
  o.duration_s = 3;
  o.seed = 7;
  o.max_tokens_cap = 8;
  return o;
}

TEST(LocustDriver, ServerThatExitsBeforeListeningIsReported) {
  if (!locust_installed()) GTEST_SKIP() << "Locust is not installed (/usr/bin/locust)";
  LocustRunOptions o = stub_options("dies");
  o.server_argv = {"/usr/bin/python3", "-c", "import sys; print('no model here'); sys.exit(3)"};
  std::string msg;
  try {
    run_locust(o);
  } catch (const std::exception& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("exited before listening (exit code 3)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("no model here"), std::string::npos) << msg;
}

TEST(LocustDriver, ServerThatNeverListensIsKilled) {
  if (!locust_installed()) GTEST_SKIP() << "Locust is not installed (/usr/bin/locust)";
  LocustRunOptions o = stub_options("silent");
  o.server_argv = {"/usr/bin/python3", "-c", "import os, time; print(os.getpid(), flush=True); time.sleep(60)"};
  o.server_start_timeout_s = 1;
  std::string msg;
  try {
    run_locust(o);
  } catch (const std::exception& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("did not print 'listening on http://...' within 1 s"), std::string::npos) << msg;
  const int pid = std::stoi(slurp(o.out_dir / "server.log"));
  EXPECT_NE(::kill(pid, 0), 0) << "server pid " << pid << " still exists";
  EXPECT_EQ(errno, ESRCH);
}

// A real Locust run (3 s, 2 users) against the stub server it starts; the stub fails every 7th
// request, so the failure count is known.
TEST(LocustDriver, ShortRunAgainstStubServer) {
  if (!locust_installed()) GTEST_SKIP() << "Locust is not installed (/usr/bin/locust)";
  LocustRunOptions o = stub_options("stub");
  o.server_argv = {"/usr/bin/python3", kStub.string(), "--port", "0", "--fail-every", "7"};
  const auto t0 = std::chrono::steady_clock::now();
  const LocustRunOutput out = run_locust(o);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(seconds, 20);
  EXPECT_TRUE(out.server_started);
  EXPECT_EQ(out.server_exit, "exit code 0");  // stopped with SIGTERM, drained
  EXPECT_TRUE(connection_refused(out.host)) << out.host << " still accepts connections";
  EXPECT_EQ(out.stats_csv.filename(), "locust_stats_final.csv");
  for (const char* f : {"locust_stats.csv", "locust_stats_final.csv", "locust_stats_history.csv", "locust_failures.csv",
                        "locust.log", "server.log"})
    EXPECT_TRUE(fs::exists(o.out_dir / f)) << f;
  EXPECT_FALSE(fs::exists(kLocustfile.parent_path() / "__pycache__")) << "bytecode written into the source tree";
  EXPECT_NE(slurp(o.out_dir / "locust.log").find("seed 7"), std::string::npos);

  const auto& post = row(out.stats, "POST", "/v1/completions");
  ASSERT_GT(post.request_count, 20);
  // The stub counts requests Locust cut off at the end too (at most one per user).
  EXPECT_GE(post.failure_count, post.request_count / 7 - 1);
  EXPECT_LE(post.failure_count, (post.request_count + o.users) / 7 + 1);
  const auto& ttft = row(out.stats, "TTFT", "/v1/completions");
  EXPECT_GE(ttft.request_count, post.request_count - post.failure_count);
  EXPECT_LE(ttft.request_count, post.request_count - post.failure_count + o.users);
  // Each answered request's TTFT <= its E2E, but the POST row also holds the stub's fast HTTP 500s
  // (1 in 7), which pull its low percentiles down (seen: TTFT p50 47 ms, POST p50 44 ms on a busy
  // machine). With a fraction f of failures below every answer, TTFT's p50 is bounded by POST's
  // quantile 0.5 (1 - f) + f = 0.57 for f = 1/7: its p75 leaves room for Locust's rounding.
  EXPECT_LE(ttft.percentiles_ms.at("50%"), post.percentiles_ms.at("75%"));
  EXPECT_GE(out.history.size(), 4u);
  EXPECT_NE(out.locust_version.find("2."), std::string::npos) << out.locust_version;
  const std::string cmd = std::accumulate(out.command.begin(), out.command.end(), std::string(),
                                          [](std::string a, const std::string& b) { return a + " " + b; });
  EXPECT_NE(cmd.find("/usr/bin/env -i -C " + fs::absolute(o.out_dir).string()), std::string::npos) << cmd;
  EXPECT_NE(cmd.find("CB_LOCUST_SEED=7 CB_LOCUST_MAX_TOKENS_CAP=8 /usr/bin/locust -f " + kLocustfile.string()), std::string::npos) << cmd;
  EXPECT_NE(cmd.find("--headless -u 2 -r 10 -t 3s --host " + out.host), std::string::npos) << cmd;
  EXPECT_NE(cmd.find("--stop-timeout 60 "), std::string::npos) << cmd;
}

// Locust 2.12 killed users mid-stream at the end of the run time, and the kill sometimes deadlocked
// its stop (urllib3 releasing a connection under a gevent lock from a generator the garbage
// collector closed): 9 of 20 runs of 16 users against this stub hung, the users running on until
// the time limit. The driver now stops users between requests (--stop-timeout) and the locustfile
// reads each stream to its end. Four runs here: with the old code at least one hangs ~9 times in 10.
TEST(LocustDriver, StopsOnTimeWithManyStreamsInFlight) {
  if (!locust_installed()) GTEST_SKIP() << "Locust is not installed (/usr/bin/locust)";
  for (int run = 0; run < 4; ++run) {
    LocustRunOptions o = stub_options("many_streams_" + std::to_string(run));
    o.users = 16;
    o.spawn_rate = 16;
    o.server_argv = {"/usr/bin/python3", kStub.string(), "--port", "0"};
    const auto t0 = std::chrono::steady_clock::now();
    const LocustRunOutput out = run_locust(o);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(seconds, o.duration_s + 25.0) << "run " << run;
    EXPECT_FALSE(out.stopped_after_final_stats) << "run " << run << ": Locust did not exit by itself";
    const std::string log = slurp(o.out_dir / "locust.log");
    EXPECT_EQ(log.find("Exception ignored"), std::string::npos) << "run " << run << ":\n" << log;
    // Users stop between requests: every request that started was answered and recorded.
    const auto& post = row(out.stats, "POST", "/v1/completions");
    EXPECT_GT(post.request_count, 16) << "run " << run;
    EXPECT_EQ(post.failure_count, 0) << "run " << run;
  }
}

// ---- run_locust_load ---------------------------------------------------------------------------

struct EnvVar {
  EnvVar(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    setenv(name, value, 1);
  }
  ~EnvVar() {
    if (old_) setenv(name_, old_->c_str(), 1);
    else unsetenv(name_);
  }
  const char* name_;
  std::optional<std::string> old_;
};

TEST(LocustLoad, SkippedWithTheReasonWhenLocustIsMissingOrTheSutIsNull) {
  SuiteContext ctx;
  ctx.run_dir = locust_root() / "skip";
  {
    EnvVar v("CB_LOCUST", "/nonexistent/locust");
    const SuiteResult r = run_locust_load(ctx);
    EXPECT_EQ(r.status, SuiteStatus::Skipped);
    EXPECT_NE(r.reason.find("Locust is not installed (/nonexistent/locust not found"), std::string::npos) << r.reason;
  }
  if (!locust_installed()) return;
  ctx.sut = "null";
  const SuiteResult r = run_locust_load(ctx);
  EXPECT_EQ(r.status, SuiteStatus::Skipped);
  EXPECT_NE(r.reason.find("needs an HTTP endpoint"), std::string::npos) << r.reason;
}

// The whole quick driver against an endpoint given as --sut (about 15 s: Locust's quick run time).
// Disabled in the unit run; suites/cmake/locust.cmake runs it with the label "load".
TEST(LocustLoad, DISABLED_QuickSuiteAgainstExternalEndpoint) {
  if (!locust_installed()) GTEST_SKIP() << "Locust is not installed (/usr/bin/locust)";
  // Start the stub through run_locust's own server handling would hide the --sut path; start it here.
  const fs::path log = locust_root() / "external_stub.log";
  const std::string cmd = "/usr/bin/python3 " + kStub.string() + " --port 0 > " + log.string() + " 2>&1 & echo $!";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  int pid = 0;
  ASSERT_EQ(fscanf(p, "%d", &pid), 1);
  pclose(p);
  struct Kill {
    int pid;
    ~Kill() { ::kill(pid, SIGTERM); }
  } kill_stub{pid};
  std::string url;
  for (int i = 0; i < 100 && url.empty(); ++i) {
    const std::string text = slurp(log);
    if (const auto at = text.find("http://"); at != std::string::npos && text.find('\n', at) != std::string::npos)
      url = text.substr(at, text.find('\n', at) - at);
    else
      usleep(50000);
  }
  ASSERT_FALSE(url.empty()) << slurp(log);

  SuiteContext ctx;
  ctx.run_dir = locust_root() / "quick";
  ctx.sut = url;
  ctx.quick = true;
  ctx.seed = 3;
  const SuiteResult r = run_locust_load(ctx);
  ASSERT_EQ(r.status, SuiteStatus::Ok) << r.reason;
  ASSERT_NE(r.find("load.locust.requests_per_s"), nullptr);
  EXPECT_GT(r.find("load.locust.requests_per_s")->value, 0);
  EXPECT_EQ(r.find("load.locust.failures")->value, 0);
  EXPECT_NE(r.find("load.locust.ttft_p99_ms"), nullptr);
  EXPECT_EQ(r.params["locust"]["host"], url);
  EXPECT_FALSE(r.params["locust"].contains("server_command"));
  EXPECT_TRUE(fs::exists(ctx.run_dir / "raw" / "locust" / "locust_stats_history.csv"));
}
