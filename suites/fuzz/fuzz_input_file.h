// For parsers whose entry point takes a path (libfccp reads files): the input is written to one
// file per process, overwritten each run, under $TMPDIR (ci/fuzz.sh points it at its scratch dir).
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

// This process's scratch folder: $TMPDIR/cb-fuzz-PID.
inline const std::filesystem::path& fuzz_scratch_dir() {
  static const std::filesystem::path dir = [] {
    const char* t = std::getenv("TMPDIR");
    auto d = std::filesystem::path(t && *t ? t : "/tmp") / ("cb-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

inline std::filesystem::path fuzz_input_file(const uint8_t* data, size_t size, const std::string& name) {
  const auto path = fuzz_scratch_dir() / name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!out.flush()) {
    std::fprintf(stderr, "fuzz_input_file: cannot write %s\n", path.c_str());
    std::abort();  // not a finding in the parser, but nothing would be tested
  }
  return path;
}
