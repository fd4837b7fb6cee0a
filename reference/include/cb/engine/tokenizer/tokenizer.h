// Tokenizers for real checkpoints, behind one interface: the project's byte-level tokenizer,
// SentencePiece `tokenizer.model` (Llama 2, TinyLlama, Mistral; through Debian's libsentencepiece
// when the build found it) and Hugging Face `tokenizer.json` byte-level BPE (Llama 3, GPT-2 family,
// Qwen; our own code). The library `cb_tokenizer` depends on nothing in the engine, so the
// endpoint-only harness (claimbench-http) can link it to turn token-id prompts into text.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace cb::engine::tok {

// A tokenizer file that cannot be used; the message names the file and what is wrong.
struct TokenizerError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::string kind() const = 0;  // "byte" | "sentencepiece" | "bpe"
  virtual int vocab_size() const = 0;
  // Text -> ids; add_bos prepends bos() when the tokenizer has one.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_bos) const = 0;
  // Ids -> text; special tokens (BOS/EOS/PAD, added control tokens) decode to nothing. Ids outside
  // the vocabulary throw TokenizerError.
  virtual std::string decode(std::span<const int32_t> ids) const = 0;
  virtual int bos() const = 0;  // -1 when none
  virtual int eos() const = 0;  // -1 when none
  // Every id that ends generation (Llama 3 lists several); eos() is the first. Empty when none.
  virtual std::vector<int> eos_ids() const {
    return eos() >= 0 ? std::vector<int>{eos()} : std::vector<int>{};
  }
  // What it is, for manifests: kind, file, vocab size, special ids.
  virtual nlohmann::json describe() const = 0;
};

// Streams detokenized text: push() returns the text that became final with this token, holding
// back an incomplete UTF-8 sequence (a character split across byte tokens) and whatever the
// tokenizer's decode of the whole sequence would still change (SentencePiece's leading-space
// rule). The concatenation of every push() and finish() equals decode(all ids).
class StreamingDecoder {
 public:
  explicit StreamingDecoder(const Tokenizer& t) : tok_(t) {}
  std::string push(int32_t id);
  std::string finish();  // what is left (an incomplete UTF-8 tail comes out as U+FFFD)

 private:
  const Tokenizer& tok_;
  // A window of the ids pushed so far: it restarts at a token whose own decode is non-empty once
  // everything before it has been returned, so each push decodes a few tokens, not the whole text.
  std::vector<int32_t> ids_;
  size_t emitted_ = 0;  // bytes of decode(ids_) already returned
};

// The tokenizer of a checkpoint folder: tokenizer.json (HF byte-level BPE) or tokenizer.model
// (SentencePiece), else the byte tokenizer for the project's own models (vocab, BOS/EOS/PAD from
// config.json). BOS/EOS come from generation_config.json when present, else config.json, else the
// tokenizer file's own. Throws TokenizerError naming the file on a file it cannot use (and on a
// tokenizer.model when the build has no SentencePiece, saying so).
// A tokenizer.json that is not byte-level BPE (e.g. Llama 2's SentencePiece-converted one with a
// Metaspace pre-tokenizer) is skipped for a tokenizer.model next to it; with none, it is the error.
std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& model_dir);

// One tokenizer file alone, by its name: *.json (HF tokenizer.json) or *.model (SentencePiece);
// special ids are the file's own. For tools and tests.
std::unique_ptr<Tokenizer> load_tokenizer_file(const std::filesystem::path& file);

// Whether this build can read SentencePiece tokenizer.model files.
bool sentencepiece_available();

}  // namespace cb::engine::tok
