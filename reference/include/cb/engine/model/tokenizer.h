// Byte-level tokenizer for the project's own models: ids 0..255 are bytes, then BOS, EOS, PAD.
// Larger vocabularies (e.g. the llama-1b preset's 32000) keep the same first 259 ids; ids past
// them have no text and decode as "<id>".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cb::engine {

class ByteTokenizer {
 public:
  ByteTokenizer(int vocab_size, int bos, int eos, int pad) : vocab_(vocab_size), bos_(bos), eos_(eos), pad_(pad) {}
  std::vector<int32_t> encode(const std::string& text, bool add_bos = true) const;
  std::string decode(const std::vector<int32_t>& ids) const;
  std::string decode_one(int32_t id) const;
  int bos() const { return bos_; }
  int eos() const { return eos_; }
  int pad() const { return pad_; }
  int vocab_size() const { return vocab_; }

 private:
  int vocab_, bos_, eos_, pad_;
};

// Parses "1,2,3" into ids, checking each against the vocabulary; throws std::invalid_argument
// naming the position and the bad item.
std::vector<int32_t> parse_token_ids(const std::string& csv, int vocab_size);

}  // namespace cb::engine
