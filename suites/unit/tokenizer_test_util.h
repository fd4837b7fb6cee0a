// Shared by the test_tokenizer_*.cpp suites: the committed test tokenizers and scratch folders.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "cb/engine/tokenizer/tokenizer.h"

namespace cb::engine::testing {

inline std::filesystem::path tok_data() { return std::filesystem::path(CB_SOURCE_DIR) / "suites/unit/data/tokenizers"; }

inline std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_text(const std::filesystem::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary);
  out << s;
}

// The corpus lines (split on \n only, so a \r stays in its line).
inline std::vector<std::string> corpus_lines() {
  const std::string all = read_text(tok_data() / "corpus.txt");
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < all.size()) {
    size_t nl = all.find('\n', pos);
    if (nl == std::string::npos) nl = all.size();
    out.push_back(all.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return out;
}

// A fresh, empty folder under the temp dir, removed with the object.
struct ScratchDir {
  std::filesystem::path path;
  explicit ScratchDir(const std::string& name) {
    path = std::filesystem::temp_directory_path() / ("cb-tok-" + name + "-" + std::to_string(::getpid()));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~ScratchDir() { std::filesystem::remove_all(path); }
};

// push() every id, then finish(): the streamed text, and each push's piece.
inline std::string stream_all(const tok::Tokenizer& t, const std::vector<int32_t>& ids, std::vector<std::string>* pieces = nullptr) {
  tok::StreamingDecoder d(t);
  std::string out;
  for (int32_t id : ids) {
    std::string p = d.push(id);
    if (pieces) pieces->push_back(p);
    out += p;
  }
  const std::string tail = d.finish();
  if (pieces) pieces->push_back(tail);
  return out + tail;
}

// Whether s is valid UTF-8 (each streamed piece must be: a character never straddles two pushes).
inline bool valid_utf8(const std::string& s) {
  size_t i = 0;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  while (i < s.size()) {
    const unsigned char c = p[i];
    const size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k)
      if ((p[i + k] & 0xC0) != 0x80) return false;
    i += len;
  }
  return true;
}

}  // namespace cb::engine::testing
