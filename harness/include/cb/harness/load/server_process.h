// A server child for a measurement (refengine serve, the null HTTP server): started in this
// process's group with stdout+stderr to a log, killed when this process dies (PR_SET_PDEATHSIG)
// and by the destructor otherwise; its URL read from the "listening on http://..." line it prints.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <vector>

namespace cb::harness::load {

class ServerProcess {
 public:
  // argv[0]: an absolute path. Throws std::runtime_error when it cannot fork.
  ServerProcess(const std::vector<std::string>& argv, const std::filesystem::path& log);
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;
  ~ServerProcess() { stop(); }

  // Waits for "listening on http://..." in the log; returns the URL. Throws when the server exits
  // first, the time runs out or a stop is requested.
  std::string wait_listening(double timeout_s);
  bool poll_exited();
  // SIGTERM (the server drains), SIGKILL after grace_s; idempotent.
  void stop(double grace_s = 10);
  const std::string& exit_text() const { return exit_text_; }

 private:
  void record(int status);
  std::filesystem::path log_;
  pid_t pid_ = -1;
  std::string exit_text_ = "running";
};

}  // namespace cb::harness::load
