#include "cb/engine/model/tokenizer.h"

#include <stdexcept>

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
  return "<" + std::to_string(id) + ">";
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
