// Fuzzes the HTTP SUT's stream reading: SseParser over the response bytes, and
// parse_completion_chunk() on every event, as HttpSut::run_one does. The input is fed in pieces
// (split points from the input itself) and must give the same events as when fed whole.
// Contract: parse_completion_chunk throws std::invalid_argument on a bad chunk.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "cb/harness/load/http_sut.h"

using cb::harness::load::SseParser;

namespace {
std::vector<std::string> events(std::string_view stream, size_t piece) {
  std::vector<std::string> out;
  SseParser p([&](const std::string& d) { out.push_back(d); });
  for (size_t i = 0; i < stream.size(); i += piece) p.feed(stream.substr(i, piece));
  p.finish();
  return out;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t piece = 1 + data[0] % 16;  // first byte: the read size
  const std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);
  const auto whole = events(stream, stream.size() + 1);
  if (events(stream, piece) != whole) {
    std::fprintf(stderr, "SseParser: %zu-byte pieces give other events than the whole stream\n", piece);
    std::abort();
  }
  for (const std::string& d : whole) {
    if (d == "[DONE]") break;
    for (const char* counting : {"token_ids", "chunks"}) {
      try {
        (void)cb::harness::load::parse_completion_chunk(d, counting);
      } catch (const std::invalid_argument&) {
      }
    }
  }
  return 0;
}
