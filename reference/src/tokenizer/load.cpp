// load_tokenizer(): which file a checkpoint's tokenizer comes from, and where BOS/EOS come from.
#include <fstream>
#include <optional>

#include "internal.h"

namespace cb::engine::tok {
namespace fs = std::filesystem;
using nlohmann::json;

namespace detail {

json TokenizerBase::describe() const {
  json d = describe_own();
  d["bos"] = bos_;
  d["eos"] = eos_;
  d["eos_ids"] = eos_ids();
  d["special_ids_from"] = special_source_.empty() ? "the tokenizer file" : special_source_;
  return d;
}

}  // namespace detail

namespace {

std::optional<json> read_json(const fs::path& file) {
  if (!fs::exists(file)) return std::nullopt;
  std::ifstream in(file, std::ios::binary);
  if (!in) throw TokenizerError(file.string() + ": cannot open");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e400
    throw TokenizerError(file.string() + ": not valid JSON (" + e.what() + ")");
  }
}

// An id key: an integer or a list of integers (Llama 3's eos_token_id); nullopt when absent or null.
std::optional<std::vector<int>> id_list(const json& j, const char* key, const fs::path& file) {
  if (!j.is_object() || !j.contains(key) || j[key].is_null()) return std::nullopt;
  const json& v = j[key];
  std::vector<int> ids;
  auto one = [&](const json& e) {
    if (!e.is_number_integer() || e.get<int64_t>() < 0 || e.get<int64_t>() > INT32_MAX)
      throw TokenizerError(file.string() + ": key '" + key + "': expected a token id or a list of them, got " + v.dump());
    ids.push_back(int(e.get<int64_t>()));
  };
  if (v.is_array()) {
    if (v.empty()) throw TokenizerError(file.string() + ": key '" + key + "': empty list");
    for (const json& e : v) one(e);
  } else {
    one(v);
  }
  return ids;
}

// tokenizer_config.json names special tokens by text: "bos_token": "<s>" or {"content": "<s>", ...}.
std::optional<std::vector<int>> named_token(const json& j, const char* key, const detail::TokenizerBase& t, const fs::path& file) {
  if (!j.is_object() || !j.contains(key) || j[key].is_null()) return std::nullopt;
  const json& v = j[key];
  std::string text;
  if (v.is_string()) text = v.get<std::string>();
  else if (v.is_object() && v.contains("content") && v["content"].is_string()) text = v["content"].get<std::string>();
  else throw TokenizerError(file.string() + ": key '" + key + "': expected a token string or {\"content\": ...}, got " + v.dump());
  const int id = t.token_to_id(text);
  if (id < 0) throw TokenizerError(file.string() + ": key '" + key + "': token \"" + text + "\" is not in the tokenizer's vocabulary");
  return std::vector<int>{id};
}

void resolve_specials(detail::TokenizerBase& t, const fs::path& dir) {
  struct Source {
    fs::path file;
    std::optional<json> j;
  };
  std::vector<Source> by_id;
  for (const char* name : {"generation_config.json", "config.json"}) by_id.push_back({dir / name, read_json(dir / name)});
  const Source tc{dir / "tokenizer_config.json", read_json(dir / "tokenizer_config.json")};
  std::vector<std::string> used;
  auto pick = [&](const char* id_key, const char* name_key) -> std::optional<std::vector<int>> {
    for (const Source& s : by_id)
      if (s.j)
        if (auto ids = id_list(*s.j, id_key, s.file)) {
          used.push_back(s.file.filename().string() + ":" + id_key);
          return ids;
        }
    if (tc.j)
      if (auto ids = named_token(*tc.j, name_key, t, tc.file)) {
        used.push_back(tc.file.filename().string() + ":" + name_key);
        return ids;
      }
    return std::nullopt;
  };
  if (auto b = pick("bos_token_id", "bos_token")) t.set_bos(b->front());
  if (auto e = pick("eos_token_id", "eos_token")) t.set_eos(*e);
  std::string src;
  for (const auto& u : used) src += (src.empty() ? "" : ", ") + u;
  t.set_special_source(src);
  const int v = t.vocab_size();
  auto check = [&](int id, const char* what) {
    if (id >= v)
      throw TokenizerError((dir / src.substr(0, src.find(':'))).string() + ": " + what + " id " + std::to_string(id) +
                           " is outside the tokenizer's vocabulary [0, " + std::to_string(v) + ")");
  };
  check(t.bos(), "bos");
  for (int id : t.eos_ids()) check(id, "eos");
}

detail::TokenizerBase& base(Tokenizer& t) { return static_cast<detail::TokenizerBase&>(t); }

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer_file(const fs::path& file) {
  if (!fs::exists(file)) throw TokenizerError(file.string() + ": no such file");
  if (file.extension() == ".json") return detail::load_bpe_json(file);
  if (file.extension() == ".model") return detail::load_sentencepiece(file);
  throw TokenizerError(file.string() + ": not a tokenizer file (expected tokenizer.json or tokenizer.model)");
}

std::unique_ptr<Tokenizer> load_tokenizer(const fs::path& dir) {
  if (!fs::is_directory(dir)) throw TokenizerError(dir.string() + ": model directory does not exist");
  std::unique_ptr<Tokenizer> t;
  const fs::path js = dir / "tokenizer.json", sp = dir / "tokenizer.model";
  if (fs::exists(js)) {
    try {
      t = detail::load_bpe_json(js);
    } catch (const detail::UnsupportedTokenizer& e) {
      if (!fs::exists(sp)) throw;
      t = detail::load_sentencepiece(sp);  // e.g. Llama 2: a Metaspace tokenizer.json next to the model
    }
  } else if (fs::exists(sp)) {
    t = detail::load_sentencepiece(sp);
  } else {
    // The project's own models: the byte tokenizer over config.json (defaults as ModelConfig's).
    const fs::path cfg = dir / "config.json";
    const auto j = read_json(cfg);
    if (!j) throw TokenizerError(dir.string() + ": no tokenizer.json, tokenizer.model or config.json");
    auto get = [&](const char* key, int dflt) {
      const auto ids = id_list(*j, key, cfg);
      return ids ? ids->front() : dflt;
    };
    const auto vocab = id_list(*j, "vocab_size", cfg);
    if (!vocab) throw TokenizerError(cfg.string() + ": key 'vocab_size': missing");
    // pad_token_id may be -1, the conventional "no padding token".
    const int pad = j->contains("pad_token_id") && (*j)["pad_token_id"] == -1 ? -1 : get("pad_token_id", 258);
    t = detail::make_byte_tokenizer(vocab->front(), get("bos_token_id", 256), get("eos_token_id", 257), pad, cfg.string());
  }
  resolve_specials(base(*t), dir);
  return t;
}

}  // namespace cb::engine::tok
