// Fuzzes the /v1/completions body parser parse_completion_request(), with the byte tokenizer of
// the committed default model (what `refengine serve` uses without --model). Contract:
// ProtocolError (a 400 naming the field) on any bad body.
#include <cstdint>
#include <memory>
#include <string>

#include "cb/engine/server/openai_protocol.h"
#include "cb/engine/tokenizer/tokenizer.h"

namespace {
const cb::engine::tok::Tokenizer& tokenizer() {
  static const std::unique_ptr<cb::engine::tok::Tokenizer> t =
      cb::engine::tok::load_tokenizer(CB_SOURCE_DIR "/reference/models/default");
  return *t;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  try {
    (void)cb::engine::parse_completion_request(body, tokenizer(), 16384);
  } catch (const cb::engine::ProtocolError&) {
  }
  return 0;
}
