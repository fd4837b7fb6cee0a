// Child processes with a time limit, in their own process group so a kill reaches everything
// they started.
#pragma once

#include <filesystem>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace cb::harness {

struct ProcessResult {
  bool started = false;
  bool timed_out = false;
  bool interrupted = false;  // stop_requested() became true while it ran
  bool stopped_by_caller = false;  // stop_when() said so (the caller decided it had what it needed)
  int exit_code = -1;        // valid when it exited normally
  int signal = 0;            // non-zero when killed by a signal
  double seconds = 0;
  std::string describe() const;  // "exit code 0", "killed by SIGSEGV", "timed out after 600 s"
};

// Runs argv[0] with stdout and stderr appended to `log` (or inherited when log is empty).
// `tick` is called about every 100 ms while it runs (for progress displays).
// own_group: start it in a new process group (what `run` does for each suite, so a kill reaches
// everything the suite started); a suite's own helper processes pass false and stay in the
// suite's group, so killing the suite kills them too.
// stop_when (optional, polled like tick): true stops the child as a timeout would (SIGTERM, then
// SIGKILL), recorded as stopped_by_caller.
ProcessResult run_process(const std::vector<std::string>& argv, double timeout_seconds, const std::filesystem::path& log,
                          const std::function<void(double elapsed)>& tick = {}, bool own_group = true,
                          const std::function<bool()>& stop_when = {});

// Set by SIGINT / SIGTERM once install_stop_handlers() ran; running children are then stopped.
void install_stop_handlers();
bool stop_requested();

// Absolute path of an executable on PATH (posix_spawn does not search PATH); "" when absent.
std::string find_executable(const std::string& name);

// A whole text file ("" when it cannot be read).
std::string read_text_file(const std::filesystem::path& file);

// The last n non-empty lines of a text file from byte `from` on (for error reasons: the part of a
// shared log that one child wrote).
std::string tail_lines(const std::filesystem::path& file, int n, std::uintmax_t from = 0);

}  // namespace cb::harness
