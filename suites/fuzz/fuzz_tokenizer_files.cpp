// Fuzzes the tokenizer file loaders of cb_tokenizer with the input as
//   A. tokenizer.json alone: load_tokenizer_file() (Hugging Face byte-level BPE, our own parser);
//   B. config.json of a model folder without a tokenizer file: load_tokenizer() (byte tokenizer,
//      vocab and special ids from config.json);
//   C. tokenizer_config.json next to a small fixed tokenizer.json: load_tokenizer() (special
//      tokens named by text).
// A tokenizer that loads encodes and decodes a fixed text. Contract: only TokenizerError escapes
// (UnsupportedTokenizer is one). SentencePiece tokenizer.model files are not fuzzed here: the
// project hands them to Debian's libsentencepiece (not built with the sanitizers) as they are.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "cb/engine/tokenizer/tokenizer.h"
#include "fuzz_input_file.h"

namespace fs = std::filesystem;
namespace tok = cb::engine::tok;

namespace {

// A model folder under the input file's directory, holding the input as NAME.
fs::path folder_with(const char* sub, const uint8_t* data, size_t size, const char* name) {
  static const fs::path base = fuzz_input_file(nullptr, 0, "probe").parent_path();
  const fs::path dir = base / sub;
  static bool made[3] = {};
  const int k = sub[0] - 'a';
  if (!made[k]) {
    fs::create_directories(dir);
    if (k == 2) {  // C: the BPE file whose tokens tokenizer_config.json names
      std::ofstream(dir / "tokenizer.json")
          << R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3}, "merges": ["a b"]},)"
          << R"( "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false},)"
          << R"( "added_tokens": [{"id": 4, "content": "<s>", "special": true}, {"id": 5, "content": "</s>", "special": true}]})";
    }
    made[k] = true;
  }
  std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return dir;
}

void use(const tok::Tokenizer& t) {
  (void)t.describe().dump();
  for (bool bos : {false, true}) {
    const auto ids = t.encode("ab a\xC3\xA9 <s>1234 </s>", bos);
    (void)t.decode(ids);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    use(*tok::load_tokenizer_file(fuzz_input_file(data, size, "tokenizer.json")));
  } catch (const tok::TokenizerError&) {
  }
  try {
    use(*tok::load_tokenizer(folder_with("b", data, size, "config.json")));
  } catch (const tok::TokenizerError&) {
  }
  try {
    use(*tok::load_tokenizer(folder_with("c", data, size, "tokenizer_config.json")));
  } catch (const tok::TokenizerError&) {
  }
  return 0;
}
