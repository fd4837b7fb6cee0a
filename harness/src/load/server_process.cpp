// A server child for a measurement (see include/cb/harness/load/server_process.h).
#include "cb/harness/load/server_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "cb/harness/core/process.h"

namespace cb::harness::load {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

}  // namespace

ServerProcess::ServerProcess(const std::vector<std::string>& argv, const fs::path& log) : log_(log) {
  const pid_t parent = getpid();
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("cannot start " + argv[0] + ": fork failed");
  if (pid_ == 0) {  // only async-signal-safe calls until exec
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(126);  // the parent died before prctl took effect
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    const int devnull = open("/dev/null", O_RDONLY);
    if (fd < 0 || devnull < 0) _exit(126);
    dup2(devnull, STDIN_FILENO);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    execv(args[0], args.data());
    _exit(127);
  }
}

std::string ServerProcess::wait_listening(double timeout_s) {
  static const std::regex listening(R"(listening on (http://[^\s/]+))");
  const auto t0 = Clock::now();
  while (true) {
    std::smatch m;
    const std::string text = read_text_file(log_);
    if (std::regex_search(text, m, listening)) return m[1];
    if (poll_exited())
      throw std::runtime_error("the server exited before listening (" + exit_text_ + "); last lines of " + log_.string() + ":\n" +
                               tail_lines(log_, 8));
    if (stop_requested()) throw std::runtime_error("interrupted while waiting for the server to listen");
    if (since(t0) > timeout_s)
      throw std::runtime_error("the server did not print 'listening on http://...' within " + std::to_string(int(timeout_s)) +
                               " s; see " + log_.string());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

bool ServerProcess::poll_exited() {
  if (pid_ <= 0) return true;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) != pid_) return false;
  record(status);
  return true;
}

void ServerProcess::stop(double grace_s) {
  if (pid_ <= 0 || poll_exited()) return;
  kill(pid_, SIGTERM);
  const auto t0 = Clock::now();
  while (!poll_exited()) {
    if (since(t0) > grace_s) {
      kill(pid_, SIGKILL);
      int status = 0;
      while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
      record(status);
      exit_text_ += " (SIGKILL after " + std::to_string(int(grace_s)) + " s)";
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void ServerProcess::record(int status) {
  pid_ = -1;
  if (WIFEXITED(status)) exit_text_ = "exit code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) exit_text_ = std::string("killed by signal ") + strsignal(WTERMSIG(status));
}

}  // namespace cb::harness::load
