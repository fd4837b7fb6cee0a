// Helpers the test suites share: a substring expectation, the message of an expected ModelError,
// per-test and per-process temporary directories, whole-file byte I/O, the claimbench binary.
#pragma once

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "cb/engine/model/errors.h"

// EXPECT that `haystack` (anything std::string takes) contains `needle`; prints the haystack when not.
#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "message: " << (haystack)

namespace cb::test {

// The ModelError message f throws, or "" (and a test failure) when it throws none.
template <class F>
std::string model_error(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const cb::engine::ModelError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a ModelError";
  return "";
}

// The element of `rs` whose .id is `id` (a claim result, a metric); throws when there is none.
template <class R>
const R& by_id(const std::vector<R>& rs, const std::string& id) {
  for (const auto& r : rs)
    if (r.id == id) return r;
  throw std::runtime_error("no result " + id);
}

// The message of the std::exception f throws, or "" when it throws none.
template <class F>
std::string error_of(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// The whole file, byte for byte, or "" when it cannot be read (for output that may be missing).
inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The whole file, byte for byte. Throws std::runtime_error when it cannot be opened.
inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error(p.string() + ": cannot open for reading");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Replaces the file with `bytes`, byte for byte. Throws std::runtime_error when that fails.
inline void write_file(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << bytes;
  out.close();
  if (!out) throw std::runtime_error(p.string() + ": cannot write");
}

// A fresh directory under the system temp directory, named `<tag>-<test name>-<random>`, removed
// with everything in it on destruction. Made as a fixture member it lives for exactly one test.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "cb-test") {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string test = info != nullptr ? info->name() : "no-test";
    for (char& c : test)  // parameterized names hold '/'
      if (std::isalnum(static_cast<unsigned char>(c)) == 0 && c != '-' && c != '_') c = '_';
    std::random_device rd;
    for (int attempt = 0;; ++attempt) {
      const std::filesystem::path p =
          std::filesystem::temp_directory_path() / (tag + "-" + test + "-" + std::to_string(rd()));
      if (std::filesystem::create_directories(p)) {
        path_ = p;
        return;
      }
      if (attempt == 100) throw std::runtime_error(p.string() + ": no unused temporary directory name");
    }
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// One folder per test process and tag, <tmp>/cb_test_<tag>_<pid>, made empty on first use and
// removed at exit when every test of the process passed (kept for a look otherwise).
inline std::filesystem::path process_temp_root(const std::string& tag) {
  struct Roots {
    // Constructing gtest's UnitTest singleton first makes it outlive this object, whose
    // destructor asks it whether every test passed.
    Roots() { (void)::testing::UnitTest::GetInstance(); }
    ~Roots() {
      std::error_code ec;
      if (::testing::UnitTest::GetInstance()->Passed())
        for (const auto& p : made) std::filesystem::remove_all(p, ec);
    }
    std::vector<std::filesystem::path> made;
  };
  static Roots roots;
  const std::filesystem::path p = std::filesystem::temp_directory_path() / ("cb_test_" + tag + "_" + std::to_string(::getpid()));
  if (std::find(roots.made.begin(), roots.made.end(), p) == roots.made.end()) {
    std::filesystem::remove_all(p);
    std::filesystem::create_directories(p);
    roots.made.push_back(p);
  }
  return p;
}

// root/name, emptied (made when missing).
inline std::filesystem::path fresh_dir(const std::filesystem::path& root, const std::string& name) {
  const std::filesystem::path p = root / name;
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}

#ifdef CB_BINARY_DIR
// The claimbench binary of this build (tests that run it end to end).
inline std::filesystem::path claimbench_exe() { return std::filesystem::path(CB_BINARY_DIR) / "harness" / "claimbench"; }
#endif

}  // namespace cb::test
