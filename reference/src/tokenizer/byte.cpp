// The project's byte-level tokenizer (ByteTokenizer, declared in cb/engine/model/tokenizer.h and
// kept there for its callers) and its adapter to the tok::Tokenizer interface.
#include "cb/engine/model/tokenizer.h"

#include <algorithm>
#include <stdexcept>

#include "internal.h"

namespace cb::engine {

std::vector<int32_t> ByteTokenizer::encode(const std::string& text, bool add_bos) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() + 1);
  if (add_bos) ids.push_back(bos_);
  for (unsigned char c : text) ids.push_back(c);
  return ids;
}

std::string ByteTokenizer::decode_one(int32_t id) const {
  if (id >= 0 && id < 256) return std::string(1, static_cast<char>(id));
  if (id == bos_ || id == eos_ || id == pad_) return "";
  std::string s = "<";  // (built in steps: GCC 12 warns falsely on "<" + to_string + ">")
  s += std::to_string(id);
  s += '>';
  return s;
}

std::string ByteTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (int32_t id : ids) out += decode_one(id);
  return out;
}

std::vector<int32_t> parse_token_ids(const std::string& csv, int vocab_size) {
  std::vector<int32_t> ids;
  size_t pos = 0, index = 0;
  while (pos <= csv.size()) {
    size_t comma = csv.find(',', pos);
    if (comma == std::string::npos) comma = csv.size();
    std::string item = csv.substr(pos, comma - pos);
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    const std::string where = "token id #" + std::to_string(index) + " ('" + item + "')";
    if (item.empty()) throw std::invalid_argument(where + ": empty item");
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      throw std::invalid_argument(where + ": not an integer");
    }
    if (used != item.size()) throw std::invalid_argument(where + ": not an integer");
    if (v < 0 || v >= vocab_size)
      throw std::invalid_argument(where + ": outside the vocabulary [0, " + std::to_string(vocab_size) + ")");
    ids.push_back(static_cast<int32_t>(v));
    pos = comma + 1;
    ++index;
  }
  return ids;
}

}  // namespace cb::engine

namespace cb::engine::tok::detail {
namespace {

class ByteTok final : public TokenizerBase {
 public:
  ByteTok(int vocab, int bos, int eos, int pad, std::string source)
      : bt_(vocab, bos, eos, pad), source_(std::move(source)) {
    bos_ = bos;
    set_eos(eos >= 0 ? std::vector<int>{eos} : std::vector<int>{});
  }
  std::string kind() const override { return "byte"; }
  int vocab_size() const override { return bt_.vocab_size(); }
  std::vector<int32_t> encode(std::string_view text, bool add_bos) const override {
    std::vector<int32_t> ids;
    ids.reserve(text.size() + 1);
    if (add_bos && bos_ >= 0) ids.push_back(bos_);
    for (unsigned char c : text) ids.push_back(c);
    return ids;
  }
  std::string decode(std::span<const int32_t> ids) const override {
    std::string out;
    for (int32_t id : ids) {
      if (id < 0 || id >= bt_.vocab_size())
        throw TokenizerError("byte tokenizer (" + source_ + "): token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                             std::to_string(bt_.vocab_size()) + ")");
      if (id == bos_ || id == bt_.pad() || std::find(eos_ids_.begin(), eos_ids_.end(), id) != eos_ids_.end()) continue;
      out += bt_.decode_one(id);
    }
    return out;
  }
  int token_to_id(const std::string& t) const override { return t.size() == 1 ? int(static_cast<unsigned char>(t[0])) : -1; }

 protected:
  nlohmann::json describe_own() const override {
    return {{"kind", "byte"}, {"file", source_}, {"vocab_size", bt_.vocab_size()}, {"pad", bt_.pad()}};
  }

 private:
  ByteTokenizer bt_;
  std::string source_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_byte_tokenizer(int vocab_size, int bos, int eos, int pad, const std::string& source) {
  if (vocab_size <= 0) throw TokenizerError(source + ": vocab_size " + std::to_string(vocab_size) + " must be positive");
  return std::make_unique<ByteTok>(vocab_size, bos, eos, pad, source);
}

}  // namespace cb::engine::tok::detail
