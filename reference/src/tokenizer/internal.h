// cb_tokenizer's internals shared by its files (not installed, not for other libraries).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cb/engine/tokenizer/tokenizer.h"

namespace cb::engine::tok::detail {

// ---- pre-tokenizer split (pretokenize.cpp) ----
// The regex split patterns of the byte-level BPE tokenizers, matched by hand (std::regex has no
// \p{L} / \p{N}). \s is Unicode White_Space; \p{L} and \p{N} come from unicode_tables.inc.
enum class SplitPattern {
  Gpt2,    // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  Llama3,  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  Qwen2,   // as Llama3 with \p{N} (one digit per piece) instead of \p{N}{1,3}
};
// The pattern a regex string from tokenizer.json is, or false when it is none of them.
bool recognise_pattern(const std::string& regex, SplitPattern& out);
const char* pattern_regex(SplitPattern p);
// Splits text into the pieces the pattern matches (every byte lands in exactly one piece; bytes
// that are not valid UTF-8 count as one "other" character each).
std::vector<std::string_view> split_pieces(std::string_view text, SplitPattern p);
bool is_letter(uint32_t cp);
bool is_number(uint32_t cp);
bool is_space(uint32_t cp);

// ---- UTF-8 helpers (streaming.cpp) ----
// Length of the incomplete UTF-8 sequence at the end of s (a valid prefix of a multi-byte
// character cut short), 0 when s ends on a character boundary.
size_t incomplete_utf8_tail(std::string_view s);

// A well-formed tokenizer file of a kind this library does not implement (e.g. a tokenizer.json
// with a WordPiece model or a Metaspace pre-tokenizer): load_tokenizer may then use another file.
struct UnsupportedTokenizer : TokenizerError {
  using TokenizerError::TokenizerError;
};

// ---- implementations ----
// The byte tokenizer over config.json's vocab_size / bos / eos / pad.
// Unicode NFC of UTF-8 text (nfc.cpp); text that is not valid UTF-8 comes back unchanged.
std::string nfc(std::string_view text);

std::unique_ptr<Tokenizer> make_byte_tokenizer(int vocab_size, int bos, int eos, int pad, const std::string& source);
std::unique_ptr<Tokenizer> load_sentencepiece(const std::filesystem::path& file);
std::unique_ptr<Tokenizer> load_bpe_json(const std::filesystem::path& file);

// What the loaders share: the special ids can be overridden (generation_config.json / config.json)
// after loading, and tokenizer_config.json names special tokens by their text.
class TokenizerBase : public Tokenizer {
 public:
  int bos() const override { return bos_; }
  int eos() const override { return eos_; }
  std::vector<int> eos_ids() const override { return eos_ids_.empty() && eos_ >= 0 ? std::vector<int>{eos_} : eos_ids_; }
  void set_bos(int id) { bos_ = id; }
  void set_eos(std::vector<int> ids) {
    eos_ids_ = std::move(ids);
    eos_ = eos_ids_.empty() ? -1 : eos_ids_.front();
  }
  void set_special_source(std::string s) { special_source_ = std::move(s); }
  // The id of a token given by its text, -1 when it has none.
  virtual int token_to_id(const std::string& token) const = 0;
  nlohmann::json describe() const override;

 protected:
  virtual nlohmann::json describe_own() const = 0;  // kind, file, vocab size, ...
  int bos_ = -1, eos_ = -1;
  std::vector<int> eos_ids_;
  std::string special_source_;
};

}  // namespace cb::engine::tok::detail
