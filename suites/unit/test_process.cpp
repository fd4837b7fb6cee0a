// Child processes with a time limit: exit codes, timeouts, and a caller's early stop (used by the
// Locust driver once the run's results are on disk and the process hangs on exit).
#include <gtest/gtest.h>

#include <chrono>

#include "cb/harness/core/process.h"
#include "test_support.h"

using namespace cb::harness;

TEST(RunProcess, ExitCodeTimeoutAndCallerStop) {
  cb::test::TempDir tmp("proc");
  const auto log = tmp.path() / "log";
  ProcessResult ok = run_process({"/bin/sh", "-c", "echo hello; exit 3"}, 10, log);
  EXPECT_TRUE(ok.started);
  EXPECT_EQ(ok.exit_code, 3);
  EXPECT_EQ(tail_lines(log, 1), "hello");

  ProcessResult slow = run_process({"/bin/sleep", "30"}, 0.3, log);
  EXPECT_TRUE(slow.timed_out);
  EXPECT_FALSE(slow.stopped_by_caller);
  EXPECT_LT(slow.seconds, 10);

  const auto t0 = std::chrono::steady_clock::now();
  auto after_half_a_second = [&] { return std::chrono::steady_clock::now() - t0 > std::chrono::milliseconds(500); };
  ProcessResult stopped = run_process({"/bin/sleep", "30"}, 60, log, {}, true, after_half_a_second);
  EXPECT_TRUE(stopped.stopped_by_caller);
  EXPECT_FALSE(stopped.timed_out);
  EXPECT_FALSE(stopped.interrupted);
  EXPECT_NE(stopped.signal, 0) << "stopped with SIGTERM";
  EXPECT_LT(stopped.seconds, 10);
  EXPECT_NE(stopped.describe().find("stopped by the caller"), std::string::npos) << stopped.describe();
}
