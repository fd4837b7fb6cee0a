// Hugging Face tokenizer.json, byte-level BPE (GPT-2 family, Llama 3, Qwen): model.type "BPE"
// with vocab and merges, a ByteLevel pre-tokenizer (GPT-2 split) or Sequence[Split(Regex),
// ByteLevel], added tokens matched before the split. Anything else is refused by name.
#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>
#include <unordered_map>

#include "internal.h"

namespace cb::engine::tok::detail {
namespace {
using nlohmann::json;

// GPT-2's bytes_to_unicode(): every byte maps to a printable code point.
std::vector<uint32_t> byte_to_cp() {
  std::vector<uint32_t> m(256, 0);
  std::vector<bool> direct(256, false);
  for (int b = '!'; b <= '~'; ++b) direct[size_t(b)] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) direct[size_t(b)] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) direct[size_t(b)] = true;
  uint32_t n = 0;
  for (int b = 0; b < 256; ++b) m[size_t(b)] = direct[size_t(b)] ? uint32_t(b) : 256 + n++;
  return m;
}

std::string utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += char(cp);
  } else if (cp < 0x800) {
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += char(0xE0 | (cp >> 12));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  } else {
    s += char(0xF0 | (cp >> 18));
    s += char(0x80 | ((cp >> 12) & 0x3F));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  }
  return s;
}

// Token ids above this are refused: the decode table has one entry per id up to the largest, so
// one stray id of 2^31 would ask for 64 GiB. 16 times the largest vocabulary in use (262144).
constexpr int64_t kMaxTokenId = (int64_t(1) << 22) - 1;

struct Added {
  int id;
  std::string content;
  bool special;
};

class BpeTok final : public TokenizerBase {
 public:
  explicit BpeTok(const std::filesystem::path& file) : file_(file.string()) {
    try {
      load();
    } catch (const json::exception& e) {  // a field of a type load() does not check for: still the file's fault
      throw TokenizerError(file_ + ": not a usable tokenizer.json (" + e.what() + ")");
    }
  }

  std::string kind() const override { return "bpe"; }
  int vocab_size() const override { return int(id_bytes_.size()); }

  std::vector<int32_t> encode(std::string_view text, bool add_bos) const override {
    std::vector<int32_t> out;
    if (add_bos && bos_ >= 0) out.push_back(bos_);
    size_t plain = 0, i = 0;
    while (i < text.size()) {
      const Added* hit = match_added(text, i);
      if (!hit) {
        ++i;
        continue;
      }
      encode_plain(text.substr(plain, i - plain), out);
      out.push_back(hit->id);
      i += hit->content.size();
      plain = i;
    }
    encode_plain(text.substr(plain), out);
    return out;
  }

  std::string decode(std::span<const int32_t> ids) const override {
    std::string out;
    for (int32_t id : ids) {
      if (id < 0 || id >= vocab_size())
        throw TokenizerError(file_ + ": token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                             std::to_string(vocab_size()) + ")");
      if (special_[size_t(id)] || id == bos_ || std::find(eos_ids_.begin(), eos_ids_.end(), id) != eos_ids_.end()) continue;
      out += id_bytes_[size_t(id)];
    }
    return out;
  }

  int token_to_id(const std::string& t) const override {
    for (const Added& a : added_)
      if (a.content == t) return a.id;
    auto it = vocab_.find(t);
    return it == vocab_.end() ? -1 : it->second;
  }

 protected:
  nlohmann::json describe_own() const override {
    json special = json::array();
    for (const Added& a : added_)
      if (a.special) special.push_back({{"id", a.id}, {"content", a.content}});
    return {{"kind", "bpe"},
            {"file", file_},
            {"vocab_size", vocab_size()},
            {"merges", ranks_.size()},
            {"pre_tokenizer", has_split_ ? pattern_regex(pattern_) : "none (whole text)"},
            {"add_prefix_space", add_prefix_space_},
            {"ignore_merges", ignore_merges_},
            {"normalizer", nfc_ ? "NFC" : "none"},
            {"special_tokens", special}};
  }

 private:
  [[noreturn]] void fail(const std::string& field, const std::string& what) const {
    throw TokenizerError(file_ + ": field '" + field + "': " + what);
  }
  [[noreturn]] void unsupported(const std::string& field, const std::string& what) const {
    throw UnsupportedTokenizer(file_ + ": field '" + field + "': " + what);
  }
  const json& need(const json& obj, const std::string& key, const std::string& path) const {
    if (!obj.is_object() || !obj.contains(key)) fail(path, "missing");
    return obj.at(key);
  }
  // obj[key] as a string or a bool, dflt when absent or null; obj (at path) must be an object and
  // the value of that type (json::value() would throw its own type_error instead).
  std::string text(const json& obj, const std::string& key, const std::string& path, const std::string& dflt) const {
    if (!obj.is_object()) fail(path, "expected an object, got " + obj.dump());
    const auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return dflt;
    if (!it->is_string()) fail(path + "." + key, "expected a string, got " + it->dump());
    return it->get<std::string>();
  }
  bool flag(const json& obj, const std::string& key, const std::string& path, bool dflt) const {
    if (!obj.is_object()) fail(path, "expected an object, got " + obj.dump());
    const auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return dflt;
    if (!it->is_boolean()) fail(path + "." + key, "expected true or false, got " + it->dump());
    return it->get<bool>();
  }
  // A token id: an integer in [0, kMaxTokenId].
  int token_id(const json& id, const std::string& path, const std::string& what) const {
    if (!id.is_number_integer() || (!id.is_number_unsigned() && id.get<int64_t>() < 0))
      fail(path, what + " has id " + id.dump() + ", not a non-negative integer");
    if (id.is_number_unsigned() ? id.get<uint64_t>() > uint64_t(kMaxTokenId) : id.get<int64_t>() > kMaxTokenId)
      fail(path, what + " has id " + id.dump() + ", above the largest supported id " + std::to_string(kMaxTokenId));
    return int(id.get<int64_t>());
  }

  void load() {
    std::ifstream in(file_, std::ios::binary);
    if (!in) throw TokenizerError(file_ + ": cannot open");
    json j;
    try {
      j = json::parse(in);
    } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e400
      throw TokenizerError(file_ + ": not valid JSON (" + e.what() + ")");
    }
    if (!j.is_object()) throw TokenizerError(file_ + ": not a tokenizer.json (the top level is not an object)");
    const json& model = need(j, "model", "model");
    if (!model.is_object()) fail("model", "expected an object");
    const std::string type = text(model, "type", "model", model.contains("merges") ? "BPE" : "");
    if (type != "BPE")
      unsupported("model.type", "\"" + type + "\" is not supported; only byte-level \"BPE\" (WordPiece, Unigram and WordLevel are not)");
    for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
      if (model.contains(k) && model[k].is_string() && !model[k].get<std::string>().empty())
        unsupported(std::string("model.") + k, "\"" + model[k].get<std::string>() + "\" is not supported (byte-level BPE has none)");
    if (model.contains("byte_fallback") && model["byte_fallback"].is_boolean() && model["byte_fallback"].get<bool>())
      unsupported("model.byte_fallback", "true is not supported (a SentencePiece-style BPE; use its tokenizer.model)");
    if (model.contains("dropout") && model["dropout"].is_number() && model["dropout"].get<double>() > 0)
      unsupported("model.dropout", "BPE dropout is not supported");
    if (model.contains("ignore_merges")) {
      if (!model["ignore_merges"].is_boolean()) fail("model.ignore_merges", "expected true or false");
      ignore_merges_ = model["ignore_merges"].get<bool>();
    }
    if (j.contains("normalizer") && !j["normalizer"].is_null()) {
      const json& n = j["normalizer"];
      const std::string type = n.is_object() ? text(n, "type", "normalizer", "?") : std::string("?");
      if (type != "NFC") unsupported("normalizer", "\"" + type + "\" is not supported (only null and NFC, as Qwen2 uses)");
      nfc_ = true;
    }
    load_pre_tokenizer(j);
    if (j.contains("decoder") && !j["decoder"].is_null()) {
      const std::string type = text(j["decoder"], "type", "decoder", "?");
      if (type != "ByteLevel") unsupported("decoder.type", "\"" + type + "\" is not supported (only ByteLevel)");
    }

    // vocab
    const json& vocab = need(model, "vocab", "model.vocab");
    if (!vocab.is_object() || vocab.empty()) fail("model.vocab", "expected a non-empty object of token -> id");
    int max_id = -1;
    for (const auto& [tok, id] : vocab.items()) {
      vocab_[tok] = token_id(id, "model.vocab", "token \"" + tok + "\"");
      max_id = std::max(max_id, vocab_[tok]);
    }
    // merges
    const json& merges = need(model, "merges", "model.merges");
    if (!merges.is_array()) fail("model.merges", "expected an array");
    for (size_t r = 0; r < merges.size(); ++r) {
      const json& m = merges[r];
      const std::string where = "model.merges[" + std::to_string(r) + "]";
      std::string a, b;
      if (m.is_string()) {
        const std::string s = m.get<std::string>();
        const size_t sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
          fail(where, "\"" + s + "\" is not two tokens separated by one space");
        a = s.substr(0, sp), b = s.substr(sp + 1);
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        a = m[0].get<std::string>(), b = m[1].get<std::string>();
      } else {
        fail(where, "expected \"a b\" or [\"a\", \"b\"], got " + m.dump());
      }
      for (const std::string& t : {a, b, a + b})
        if (!vocab_.count(t)) fail(where, "token \"" + t + "\" is not in model.vocab");
      ranks_.emplace(a + ' ' + b, int(r));  // the first listing of a pair keeps its rank
    }
    // added tokens
    if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
      if (!j["added_tokens"].is_array()) fail("added_tokens", "expected an array");
      for (size_t k = 0; k < j["added_tokens"].size(); ++k) {
        const json& a = j["added_tokens"][k];
        const std::string where = "added_tokens[" + std::to_string(k) + "]";
        if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || !a.contains("content") || !a["content"].is_string())
          fail(where, "expected an object with integer \"id\" and string \"content\"");
        const int id = token_id(a["id"], where + ".id", "the token");
        const std::string content = a["content"].get<std::string>();
        if (content.empty()) fail(where + ".content", "empty");
        added_.push_back({id, content, flag(a, "special", where, false)});
        max_id = std::max(max_id, id);
      }
      // Longest first, so the longest token wins where several match at one position.
      std::stable_sort(added_.begin(), added_.end(), [](const Added& x, const Added& y) { return x.content.size() > y.content.size(); });
    }

    const auto b2c = byte_to_cp();
    std::unordered_map<std::string, unsigned char> c2b;
    for (int b = 0; b < 256; ++b) {
      byte_sym_[size_t(b)] = utf8(b2c[size_t(b)]);
      c2b[byte_sym_[size_t(b)]] = static_cast<unsigned char>(b);
    }
    id_bytes_.assign(size_t(max_id) + 1, std::string());
    special_.assign(size_t(max_id) + 1, false);
    for (const auto& [tok, id] : vocab_) {
      // Back from the byte-level alphabet to bytes; a character outside it stays as it is.
      std::string bytes;
      for (size_t i = 0; i < tok.size();) {
        const unsigned char c = static_cast<unsigned char>(tok[i]);
        const size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : 4;
        const std::string ch = tok.substr(i, len);
        auto it = c2b.find(ch);
        if (it != c2b.end()) bytes += char(it->second);
        else bytes += ch;
        i += len;
      }
      id_bytes_[size_t(id)] = bytes;
    }
    // The file's own BOS/EOS (used when no generation_config.json / config.json /
    // tokenizer_config.json names them): the special tokens the common families use.
    auto special_named = [&](std::initializer_list<const char*> names) {
      for (const char* n : names)
        for (const Added& a : added_)
          if (a.special && a.content == n) return a.id;
      return -1;
    };
    bos_ = special_named({"<|begin_of_text|>", "<s>", "<|startoftext|>", "<|endoftext|>"});
    const int eos = special_named({"<|end_of_text|>", "</s>", "<|endoftext|>"});
    set_eos(eos >= 0 ? std::vector<int>{eos} : std::vector<int>{});
    for (const Added& a : added_) {
      id_bytes_[size_t(a.id)] = a.content;
      special_[size_t(a.id)] = a.special;
      first_byte_[static_cast<unsigned char>(a.content[0])] = true;
    }
  }

  void load_pre_tokenizer(const json& j) {
    if (!j.contains("pre_tokenizer") || j["pre_tokenizer"].is_null())
      unsupported("pre_tokenizer", "null is not supported (byte-level BPE needs a ByteLevel pre-tokenizer)");
    const json& pt = j["pre_tokenizer"];
    auto byte_level = [&](const json& bl, const std::string& path, bool alone) {
      add_prefix_space_ = flag(bl, "add_prefix_space", path, false);
      const bool use_regex = flag(bl, "use_regex", path, true);
      if (use_regex && !alone) unsupported(path + ".use_regex", "true after a Split is not supported");
      // After a Split, ByteLevel would prefix every piece; no family we read does that.
      if (add_prefix_space_ && !alone) unsupported(path + ".add_prefix_space", "true after a Split is not supported");
      if (alone) has_split_ = use_regex, pattern_ = SplitPattern::Gpt2;
    };
    const std::string type = text(pt, "type", "pre_tokenizer", "");
    if (type == "ByteLevel") {
      byte_level(pt, "pre_tokenizer", true);
      return;
    }
    if (type != "Sequence")
      unsupported("pre_tokenizer.type", "\"" + type + "\" is not supported (only ByteLevel and Sequence[Split, ByteLevel])");
    const json& seq = need(pt, "pretokenizers", "pre_tokenizer.pretokenizers");
    auto type_of = [](const json& e) {
      return e.is_object() && e.contains("type") && e["type"].is_string() ? e["type"].get<std::string>() : std::string();
    };
    if (!seq.is_array() || seq.size() != 2 || type_of(seq[0]) != "Split" || type_of(seq[1]) != "ByteLevel")
      unsupported("pre_tokenizer.pretokenizers", "only [Split(Regex), ByteLevel] is supported");
    const json& split = seq[0];
    const std::string sp = "pre_tokenizer.pretokenizers[0]";
    if (!split.contains("pattern") || !split["pattern"].is_object() || !split["pattern"].contains("Regex") ||
        !split["pattern"]["Regex"].is_string())
      unsupported(sp + ".pattern", "only {\"Regex\": ...} is supported");
    if (!recognise_pattern(split["pattern"]["Regex"].get<std::string>(), pattern_))
      unsupported(sp + ".pattern.Regex", "an unknown split pattern; supported: the GPT-2, Llama 3 and Qwen2 patterns");
    if (text(split, "behavior", sp, "Isolated") != "Isolated") unsupported(sp + ".behavior", "only \"Isolated\" is supported");
    if (flag(split, "invert", sp, false)) unsupported(sp + ".invert", "only false is supported");
    has_split_ = true;
    byte_level(seq[1], "pre_tokenizer.pretokenizers[1]", false);
  }

  const Added* match_added(std::string_view text, size_t i) const {
    if (!first_byte_[static_cast<unsigned char>(text[i])]) return nullptr;
    for (const Added& a : added_)
      if (text.compare(i, a.content.size(), a.content) == 0) return &a;
    return nullptr;
  }

  void encode_plain(std::string_view text, std::vector<int32_t>& out) const {
    if (text.empty()) return;
    std::string normalized;
    if (nfc_) {  // the normalizer runs on the text between added tokens, before the pre-tokenizer
      normalized = nfc(text);
      text = normalized;
    }
    std::string buf;
    if (add_prefix_space_ && text.front() != ' ') {
      buf = " ";
      buf += text;
      text = buf;
    }
    if (!has_split_) {
      bpe(text, out);
      return;
    }
    for (std::string_view piece : split_pieces(text, pattern_)) bpe(piece, out);
  }

  // One pre-tokenized piece: its bytes in the byte-level alphabet, merged by rank.
  void bpe(std::string_view piece, std::vector<int32_t>& out) const {
    std::vector<std::string> sym;
    sym.reserve(piece.size());
    std::string whole;
    for (unsigned char c : piece) {
      sym.push_back(byte_sym_[c]);
      whole += byte_sym_[c];
    }
    if (ignore_merges_) {
      if (auto it = vocab_.find(whole); it != vocab_.end()) {
        out.push_back(it->second);
        return;
      }
    }
    while (sym.size() > 1) {
      int best = INT32_MAX;
      size_t at = 0;
      for (size_t i = 0; i + 1 < sym.size(); ++i) {
        auto it = ranks_.find(sym[i] + ' ' + sym[i + 1]);
        if (it != ranks_.end() && it->second < best) best = it->second, at = i;
      }
      if (best == INT32_MAX) break;
      // Merge every occurrence of the best pair, left to right.
      const std::string a = sym[at], b = sym[at + 1];
      std::vector<std::string> next;
      next.reserve(sym.size());
      for (size_t i = 0; i < sym.size();) {
        if (i + 1 < sym.size() && sym[i] == a && sym[i + 1] == b) {
          next.push_back(a + b);
          i += 2;
        } else {
          next.push_back(std::move(sym[i]));
          ++i;
        }
      }
      sym = std::move(next);
    }
    for (const std::string& s : sym) {
      auto it = vocab_.find(s);
      if (it == vocab_.end()) throw TokenizerError(file_ + ": symbol \"" + s + "\" is not in model.vocab (the vocabulary lacks a byte)");
      out.push_back(it->second);
    }
  }

  std::string file_;
  std::unordered_map<std::string, int> vocab_;
  std::unordered_map<std::string, int> ranks_;  // "a b" -> merge rank
  std::vector<Added> added_;
  std::vector<std::string> id_bytes_;  // id -> the bytes it decodes to
  std::vector<bool> special_;
  std::string byte_sym_[256];
  bool first_byte_[256] = {};
  bool has_split_ = false, add_prefix_space_ = false, ignore_merges_ = false, nfc_ = false;
  SplitPattern pattern_ = SplitPattern::Gpt2;
};

}  // namespace

std::unique_ptr<Tokenizer> load_bpe_json(const std::filesystem::path& file) { return std::make_unique<BpeTok>(file); }

}  // namespace cb::engine::tok::detail
