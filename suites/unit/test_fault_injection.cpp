// Fault injection in the harness: a full disk, a read-only results folder, a suite killed by
// SIGKILL in the middle of writing its result, and a claim set edited during `run --check`. Each
// must end with a clear error, keep the files already written intact and parseable, and never
// leave a partial file where a result is read.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "cb/harness/core/results.h"
#include "test_support.h"

using namespace cb::harness;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

fs::path fault_root() { return cb::test::process_temp_root("fault"); }
fs::path fault_dir(const std::string& name) { return cb::test::fresh_dir(fault_root(), name); }

using cb::test::slurp;

bool has_temp_files(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir))
    if (is_atomic_write_temp(e.path())) return true;
  return false;
}

// Runs fn in a forked child; what it returns (an error message, empty for none) comes back
// through a pipe. The child's limits and identity changes stay in the child.
std::string in_child(const std::function<std::string()>& fn) {
  int fds[2];
  if (::pipe(fds) != 0) return "pipe failed";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    std::string msg;
    try {
      msg = fn();
    } catch (const std::exception& e) {
      msg = std::string("unexpected exception: ") + e.what();
    }
    (void)!::write(fds[1], msg.data(), msg.size());
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string out;
  char buf[1024];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) out.append(buf, size_t(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status)) out += " (child died: status " + std::to_string(status) + ")";
  return out;
}

// The error write_text_atomic gave, or "no error".
std::string write_error(const fs::path& path, const std::string& text) {
  try {
    write_text_atomic(path, text);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no error";
}

TEST(FaultInjection, FullDiskKeepsThePreviousFileAndLeavesNoTempFile) {
  const fs::path dir = fault_dir("full");
  const fs::path file = dir / "manifest.json";
  write_text_atomic(file, "{\"old\": true}\n");
  // A file size limit makes write() fail past 4 KiB (EFBIG), as a full disk does (ENOSPC).
  const std::string err = in_child([&] {
    ::signal(SIGXFSZ, SIG_IGN);
    const rlimit lim{4096, 4096};
    ::setrlimit(RLIMIT_FSIZE, &lim);
    return write_error(file, std::string(100000, 'x'));
  });
  EXPECT_NE(err.find(file.string()), std::string::npos) << err;
  EXPECT_NE(err.find("write failed after"), std::string::npos) << err;
  EXPECT_NE(err.find("File too large"), std::string::npos) << err;
  EXPECT_NE(err.find("previous contents are unchanged"), std::string::npos) << err;
  EXPECT_EQ(slurp(file), "{\"old\": true}\n");
  EXPECT_FALSE(has_temp_files(dir));
  EXPECT_NO_THROW(read_json_file(file));
}

TEST(FaultInjection, RealFullTmpfsWhenMountingIsAllowed) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounting a small tmpfs needs root; the file size limit test covers the path";
  const fs::path dir = fault_dir("tmpfs");
  if (std::system(("mount -t tmpfs -o size=64k tmpfs '" + dir.string() + "' 2>/dev/null").c_str()) != 0)
    GTEST_SKIP() << "this machine does not allow mounting a tmpfs here";
  const fs::path file = dir / "kernels.json";
  write_text_atomic(file, "{\"kept\": 1}\n");
  const std::string err = write_error(file, std::string(200000, 'y'));
  const std::string kept = slurp(file);
  const bool temps = has_temp_files(dir);
  (void)std::system(("umount '" + dir.string() + "'").c_str());
  EXPECT_NE(err.find("No space left on device"), std::string::npos) << err;
  EXPECT_EQ(kept, "{\"kept\": 1}\n");
  EXPECT_FALSE(temps);
}

TEST(FaultInjection, ReadOnlyFolderGivesAClearErrorAndKeepsItsFiles) {
  const fs::path dir = fault_dir("readonly");
  const fs::path file = dir / "claims.json";
  write_text_atomic(file, "{\"a\": 1}\n");
  fs::permissions(dir, fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read | fs::perms::group_exec |
                           fs::perms::others_read | fs::perms::others_exec);
  // root ignores folder permissions: the child drops to nobody first.
  const std::string err = in_child([&] {
    if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) return std::string("cannot drop root");
    return write_error(file, "{\"a\": 2}\n");
  });
  fs::permissions(dir, fs::perms::owner_all, fs::perm_options::add);
  EXPECT_NE(err.find(file.string()), std::string::npos) << err;
  EXPECT_NE(err.find("Permission denied"), std::string::npos) << err;
  EXPECT_EQ(slurp(file), "{\"a\": 1}\n");
  EXPECT_FALSE(has_temp_files(dir));
}

TEST(FaultInjection, TempFileNamesAreRecognized) {
  EXPECT_TRUE(is_atomic_write_temp("run/kernels.json.tmp.1234"));
  EXPECT_FALSE(is_atomic_write_temp("run/kernels.json"));
  EXPECT_FALSE(is_atomic_write_temp("run/kernels.tmp.json"));
  EXPECT_FALSE(is_atomic_write_temp("run/x.tmp."));
}

// ---- The claimbench binary ----------------------------------------------------------------------

using cb::test::claimbench_exe;

struct Cmd {
  int rc = -1;
  std::string out, err;
};

Cmd claimbench(const std::string& env_and_args, const fs::path& scratch) {
  const fs::path err = scratch / "stderr.txt";
  const std::string cmd = "CB_TEST_SUITES=1 " + env_and_args.substr(0, env_and_args.find("@@")) + "'" +
                          claimbench_exe().string() + "' " + env_and_args.substr(env_and_args.find("@@") + 2) + " 2>'" +
                          err.string() + "' </dev/null";
  Cmd c;
  std::FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return c;
  char buf[4096];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, p)) > 0) c.out.append(buf, got);
  const int status = ::pclose(p);
  c.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  c.err = slurp(err);
  return c;
}

std::string run_dir_of(const Cmd& c) {
  std::istringstream in(c.out);
  std::string line;
  while (std::getline(in, line))
    if (line.find("/20") != std::string::npos && fs::is_directory(line)) return line;
  return "";
}

TEST(FaultInjection, SuiteKilledMidWriteIsRecordedAndItsPartialFileRemoved) {
  ASSERT_TRUE(fs::exists(claimbench_exe())) << claimbench_exe();
  const fs::path base = fault_dir("killed");
  const Cmd c = claimbench("CB_FAULT_KILL_MID_WRITE=selftest-ok.json @@run --suite selftest-ok,selftest-throw --out '" +
                               base.string() + "'",
                           base);
  const fs::path dir = run_dir_of(c);
  ASSERT_FALSE(dir.empty()) << c.out << c.err;
  EXPECT_FALSE(has_temp_files(dir)) << "a partly written file was left in the run folder";
  const json m = read_json_file(dir / "manifest.json");
  const json ok = m["suites"]["selftest-ok"];
  EXPECT_EQ(ok.value("status", ""), "error") << m.dump(2);
  const std::string reason = ok.value("reason", "");
  EXPECT_NE(reason.find("signal 9"), std::string::npos) << reason;
  EXPECT_NE(reason.find("removed its partly written file(s): selftest-ok.json.tmp."), std::string::npos) << reason;
  EXPECT_EQ(m["suites"]["selftest-throw"].value("status", ""), "error") << "the next suite still ran";
  const RunData run = RunData::load(dir);  // every file left parses
  EXPECT_EQ(run.suites.count("selftest-ok"), 1u);
  EXPECT_EQ(run.suites.at("selftest-ok").metrics.size(), 0u) << "no half-written metric is presented as a result";
}

TEST(FaultInjection, ClaimSetEditedDuringRunChecksTheSnapshotAndSaysSo) {
  ASSERT_TRUE(fs::exists(claimbench_exe())) << claimbench_exe();
  const fs::path base = fault_dir("edited");
  const fs::path claims = base / "claims.json";
  fs::copy_file(fs::path(CB_SOURCE_DIR) / "suites" / "claims" / "deepseek-article.json", claims);
  const std::string original = slurp(claims);
  // selftest-hang runs ~3 s (its limit): the edit lands while it runs.
  std::thread editor([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    std::ofstream(claims, std::ios::trunc) << "{ not json";
  });
  const Cmd c = claimbench("@@run --suite selftest-ok,selftest-hang --check --claims '" + claims.string() + "' --out '" +
                               (base / "runs").string() + "'",
                           base);
  editor.join();
  EXPECT_EQ(c.rc, 2) << c.out << c.err;
  EXPECT_NE(c.err.find("changed during the run"), std::string::npos) << c.err;
  EXPECT_NE(c.out.find("claim set: claims.json"), std::string::npos) << "the verdicts of the snapshot are printed\n" << c.out;
  const fs::path dir = run_dir_of(c);
  ASSERT_FALSE(dir.empty()) << c.out;
  EXPECT_EQ(slurp(dir / "claim-set.json"), original);
  EXPECT_NO_THROW(read_json_file(dir / "claims.json"));
  EXPECT_NO_THROW(RunData::load(dir));
}

TEST(FaultInjection, BrokenClaimSetFailsBeforeAnySuiteRuns) {
  ASSERT_TRUE(fs::exists(claimbench_exe())) << claimbench_exe();
  const fs::path base = fault_dir("broken");
  std::ofstream(base / "claims.json") << "{ \"name\": ";
  const Cmd c = claimbench("@@run --suite selftest-ok --check --claims '" + (base / "claims.json").string() + "' --out '" +
                               (base / "runs").string() + "'",
                           base);
  EXPECT_EQ(c.rc, 2) << c.out << c.err;
  EXPECT_NE(c.err.find("claims.json"), std::string::npos) << c.err;
  EXPECT_FALSE(fs::exists(base / "runs")) << "no run folder before the claim set is known to be valid";
}

}  // namespace
