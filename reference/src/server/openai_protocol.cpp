#include "cb/engine/server/openai_protocol.h"

#include <algorithm>
#include <cmath>

namespace cb::engine {

using nlohmann::json;

nlohmann::json error_body(const std::string& message, const std::string& type, const std::string& param,
                          const std::string& code) {
  json e = {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}};
  if (!param.empty()) e["param"] = param;
  if (!code.empty()) e["code"] = code;
  return json{{"error", e}};
}

nlohmann::json error_body(const ProtocolError& e) { return error_body(e.what(), e.type, e.param, e.code); }

const std::vector<std::string>& ignored_completion_fields() {
  static const std::vector<std::string> f = {"user"};
  return f;
}

namespace {

ProtocolError bad(const std::string& param, const std::string& message, const std::string& code = "invalid_value") {
  return ProtocolError(400, param.empty() ? message : param + ": " + message, param, code);
}

std::string type_of(const json& v) {
  if (v.is_number_integer()) return "integer";
  if (v.is_number_float()) return "number";
  return v.type_name();
}

// Records the top-level field whose value is being parsed, so a syntax error inside it (an
// invalid UTF-8 byte in the prompt, say) can name it; cleared once that value is complete.
struct KeyTracker : nlohmann::json_sax<json> {
  int depth = 0;
  std::string top_key;
  bool value() {
    if (depth == 1) top_key.clear();
    return true;
  }
  bool null() override { return value(); }
  bool boolean(bool) override { return value(); }
  bool number_integer(number_integer_t) override { return value(); }
  bool number_unsigned(number_unsigned_t) override { return value(); }
  bool number_float(number_float_t, const string_t&) override { return value(); }
  bool string(string_t&) override { return value(); }
  bool binary(binary_t&) override { return value(); }
  bool start_object(std::size_t) override { return ++depth, true; }
  bool key(string_t& k) override {
    if (depth == 1) top_key = k;
    return true;
  }
  bool end_object() override { return --depth, value(); }
  bool start_array(std::size_t) override { return ++depth, true; }
  bool end_array() override { return --depth, value(); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }
};

ProtocolError malformed(const std::string& body, const json::parse_error& e) {
  KeyTracker t;
  json::sax_parse(body, &t, json::input_format_t::json, false);
  std::string what = e.what();
  if (what.rfind("[json.exception", 0) == 0) what = what.substr(what.find(' ') + 1);
  // "last read" echoes the offending token, which can be most of the body (or invalid UTF-8).
  if (const size_t lr = what.find("; last read:"); lr != std::string::npos) what.resize(lr);
  const bool utf8 = what.find("UTF-8") != std::string::npos || what.find("surrogate") != std::string::npos;
  std::string msg = utf8 ? "invalid UTF-8" : "malformed JSON";
  if (!t.top_key.empty()) msg += " in field '" + t.top_key + "'";
  msg += " at byte " + std::to_string(e.byte) + " of the body: " + what;
  return ProtocolError(400, msg, t.top_key, utf8 ? "invalid_utf8" : "invalid_json");
}

int get_int(const json& v, const std::string& key, int64_t lo, int64_t hi, const std::string& range) {
  if (!v.is_number_integer()) throw bad(key, "must be an integer (got " + type_of(v) + ")", "invalid_type");
  // nlohmann stores non-negative literals as unsigned: check both ends in the matching type.
  const bool out = v.is_number_unsigned() ? (v.get<uint64_t>() > uint64_t(hi) || (lo > 0 && v.get<uint64_t>() < uint64_t(lo)))
                                          : (v.get<int64_t>() < lo || v.get<int64_t>() > hi);
  if (out)
    throw bad(key, "must be " + range + " (got " + v.dump() + ")");
  return int(v.get<int64_t>());
}

double get_number(const json& v, const std::string& key) {
  if (!v.is_number()) throw bad(key, "must be a number (got " + type_of(v) + ")", "invalid_type");
  return v.get<double>();
}

bool get_bool(const json& v, const std::string& key) {
  if (!v.is_boolean()) throw bad(key, "must be a boolean (got " + type_of(v) + ")", "invalid_type");
  return v.get<bool>();
}

std::vector<int32_t> parse_prompt(const json& v, const tok::Tokenizer& tok) {
  if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    if (const size_t bad_at = find_invalid_utf8(s); bad_at != std::string::npos)
      throw bad("prompt", "invalid UTF-8 at byte " + std::to_string(bad_at) + " of the prompt", "invalid_utf8");
    return tok.encode(s, true);
  }
  if (!v.is_array()) throw bad("prompt", "must be a string or an array of token ids (got " + type_of(v) + ")", "invalid_type");
  if (v.empty()) throw bad("prompt", "must not be an empty array");
  std::vector<int32_t> ids;
  ids.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const json& t = v[i];
    const std::string where = "prompt[" + std::to_string(i) + "]";
    if (t.is_string() || t.is_array())
      throw ProtocolError(400, "prompt: a list of prompts is not supported; send one prompt per request", "prompt", "unsupported");
    if (!t.is_number_integer())
      throw ProtocolError(400, where + " must be an integer token id (got " + type_of(t) + ")", "prompt", "invalid_type");
    if (t.is_number_unsigned() ? t.get<uint64_t>() >= uint64_t(tok.vocab_size()) : (t.get<int64_t>() < 0 || t.get<int64_t>() >= tok.vocab_size()))
      throw ProtocolError(400, where + " = " + t.dump() + " is outside the vocabulary [0, " + std::to_string(tok.vocab_size()) + ")",
                          "prompt", "invalid_value");
    ids.push_back(int32_t(t.get<int64_t>()));
  }
  return ids;
}

std::vector<std::string> parse_stop(const json& v) {
  std::vector<std::string> out;
  if (v.is_null()) return out;
  if (v.is_string()) {
    out.push_back(v.get<std::string>());
  } else if (v.is_array()) {
    if (v.size() > 4) throw bad("stop", "at most 4 stop strings (got " + std::to_string(v.size()) + ")");
    for (size_t i = 0; i < v.size(); ++i) {
      if (!v[i].is_string())
        throw bad("stop", "stop[" + std::to_string(i) + "] must be a string (got " + type_of(v[i]) + ")", "invalid_type");
      out.push_back(v[i].get<std::string>());
    }
  } else {
    throw bad("stop", "must be a string or an array of strings (got " + type_of(v) + ")", "invalid_type");
  }
  for (size_t i = 0; i < out.size(); ++i)
    if (out[i].empty()) throw bad("stop", "stop[" + std::to_string(i) + "] must not be empty");
  return out;
}

// Fields we accept only with their neutral value: anything else would change results silently.
void check_neutral(const std::string& key, const json& v, int n) {
  auto unsupported = [&](const std::string& what) {
    return ProtocolError(400, key + ": " + what + " is not supported by this server (got " + v.dump() + ")", key, "unsupported");
  };
  if (v.is_null()) return;
  if (key == "best_of") {
    if (get_int(v, key, 1, 128, "an integer in [1, 128]") != n) throw unsupported("best_of other than n");
  } else if (key == "presence_penalty" || key == "frequency_penalty") {
    const double x = get_number(v, key);
    if (x < -2 || x > 2) throw bad(key, "must be in [-2, 2] (got " + v.dump() + ")");
    if (x != 0) throw unsupported("a non-zero penalty");
  } else if (key == "logit_bias") {
    if (!v.is_object()) throw bad(key, "must be an object (got " + type_of(v) + ")", "invalid_type");
    if (!v.empty()) throw unsupported("a non-empty logit_bias");
  } else if (key == "suffix") {
    if (!v.is_string()) throw bad(key, "must be a string (got " + type_of(v) + ")", "invalid_type");
    if (!v.get<std::string>().empty()) throw unsupported("suffix");
  }
}

}  // namespace

CompletionRequest parse_completion_request(const std::string& body, const tok::Tokenizer& tok, int context) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::parse_error& e) {
    throw malformed(body, e);
  } catch (const json::out_of_range& e) {  // a number no double holds (1e400): nlohmann's 406
    std::string what = e.what();
    if (what.rfind("[json.exception", 0) == 0) what = what.substr(what.find(' ') + 1);
    throw ProtocolError(400, "malformed JSON: " + what.substr(0, 200), "", "invalid_json");
  }
  if (!j.is_object())
    throw ProtocolError(400, "the request body must be a JSON object (got " + type_of(j) + ")", "", "invalid_type");
  static const std::vector<std::string> handled = {"model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "n",
                                                   "stop", "seed", "stream", "stream_options", "ignore_eos",
                                                   "echo", "logprobs"};
  static const std::vector<std::string> neutral = {"best_of", "presence_penalty", "frequency_penalty",
                                                   "logit_bias", "suffix"};
  const auto& ignored = ignored_completion_fields();
  auto in = [](const std::vector<std::string>& v, const std::string& k) { return std::find(v.begin(), v.end(), k) != v.end(); };
  for (const auto& [key, v] : j.items())
    if (!in(handled, key) && !in(neutral, key) && !in(ignored, key))
      throw ProtocolError(400, "unknown field '" + key + "'", key, "unknown_field");

  CompletionRequest r;
  if (j.contains("model") && !j["model"].is_null()) {
    if (!j["model"].is_string()) throw bad("model", "must be a string (got " + type_of(j["model"]) + ")", "invalid_type");
    r.model = j["model"].get<std::string>();
  }
  if (!j.contains("prompt") || j["prompt"].is_null()) throw bad("prompt", "is required", "missing_field");
  r.prompt_ids = parse_prompt(j["prompt"], tok);
  auto present = [&](const char* k) { return j.contains(k) && !j[k].is_null(); };
  if (present("echo")) r.echo = get_bool(j["echo"], "echo");
  if (present("logprobs"))
    r.logprobs = get_int(j["logprobs"], "logprobs", 0, kMaxLogprobs, "an integer in [0, " + std::to_string(kMaxLogprobs) + "]");
  if (present("max_tokens")) {
    r.max_tokens = get_int(j["max_tokens"], "max_tokens", 0, INT32_MAX, ">= 1 (or 0 with echo = true)");
    if (r.max_tokens == 0 && !r.echo)
      throw bad("max_tokens", "must be >= 1 (got 0); 0 is allowed only with echo = true, for the prompt's log-probabilities alone");
  }
  if (present("n")) r.n = get_int(j["n"], "n", 1, 128, "an integer in [1, 128]");
  if (present("temperature")) {
    const double t = get_number(j["temperature"], "temperature");
    if (!(t >= 0 && t <= 2)) throw bad("temperature", "must be in [0, 2] (got " + j["temperature"].dump() + ")");
    r.temperature = float(t);
  }
  if (present("top_p")) {
    const double p = get_number(j["top_p"], "top_p");
    if (!(p > 0 && p <= 1)) throw bad("top_p", "must be in (0, 1] (got " + j["top_p"].dump() + ")");
    r.top_p = float(p);
  }
  if (present("top_k")) {
    r.top_k = get_int(j["top_k"], "top_k", -1, INT32_MAX, ">= -1 (-1 or 0 = off)");
    if (r.top_k < 0) r.top_k = 0;
  }
  if (present("seed")) {
    const json& s = j["seed"];
    if (!s.is_number_integer()) throw bad("seed", "must be an integer (got " + type_of(s) + ")", "invalid_type");
    r.seed = s.is_number_unsigned() ? s.get<uint64_t>() : uint64_t(s.get<int64_t>());
  }
  if (j.contains("stop")) r.stop = parse_stop(j["stop"]);
  if (present("stream")) r.stream = get_bool(j["stream"], "stream");
  if (present("stream_options")) {
    const json& so = j["stream_options"];
    if (!so.is_object()) throw bad("stream_options", "must be an object (got " + type_of(so) + ")", "invalid_type");
    for (const auto& [k, v] : so.items()) {
      if (k != "include_usage")
        throw ProtocolError(400, "stream_options: unknown field '" + k + "'", "stream_options." + k, "unknown_field");
      if (!v.is_null()) r.include_usage = get_bool(v, "stream_options.include_usage");
    }
  }
  if (present("ignore_eos")) r.ignore_eos = get_bool(j["ignore_eos"], "ignore_eos");
  if (r.stream && (r.echo || r.wants_logprobs())) {
    const std::string f = r.echo ? "echo" : "logprobs";
    throw ProtocolError(400, f + ": not supported with stream = true by this server; send a non-streaming request", f,
                        "unsupported");
  }
  for (const auto& k : neutral)
    if (j.contains(k)) check_neutral(k, j[k], r.n);

  const int64_t plen = int64_t(r.prompt_ids.size());
  if (r.max_tokens == 0 && plen > context)
    throw bad("prompt", "the prompt has " + std::to_string(plen) + " tokens; the model's context is " + std::to_string(context),
              "context_length_exceeded");
  if (r.max_tokens > 0 && plen >= context)
    throw bad("prompt", "the prompt has " + std::to_string(plen) + " tokens; the model's context is " + std::to_string(context) +
                            " (room for at least one generated token is needed)", "context_length_exceeded");
  if (plen + r.max_tokens > context)
    throw bad("max_tokens", "prompt (" + std::to_string(plen) + " tokens) + max_tokens (" + std::to_string(r.max_tokens) +
                                ") exceeds the model's context of " + std::to_string(context) + " tokens",
              "context_length_exceeded");
  return r;
}

namespace {
// Classifies the UTF-8 sequence at p (avail bytes): its length when valid and complete, 0 when it
// is a valid but incomplete prefix, -1 when invalid.
int utf8_seq(const unsigned char* p, size_t avail) {
  const unsigned c = p[0];
  int len;
  unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) len = 2;
  else if (c >= 0xE0 && c <= 0xEF) len = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
  else if (c >= 0xF0 && c <= 0xF4) len = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
  else return -1;
  for (int k = 1; k < len; ++k) {
    if (size_t(k) >= avail) return 0;
    const unsigned b = p[k];
    if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return -1;
  }
  return len;
}
const std::string kReplacement = "\xEF\xBF\xBD";  // U+FFFD
}  // namespace

size_t find_invalid_utf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  for (size_t i = 0; i < s.size();) {
    const int len = utf8_seq(p + i, s.size() - i);
    if (len <= 0) return i;
    i += size_t(len);
  }
  return std::string::npos;
}

std::string Utf8Assembler::feed(const std::string& bytes) {
  held_ += bytes;
  std::string out;
  const auto* p = reinterpret_cast<const unsigned char*>(held_.data());
  size_t i = 0;
  while (i < held_.size()) {
    const int len = utf8_seq(p + i, held_.size() - i);
    if (len == 0) break;  // wait for the rest of this character
    if (len < 0) {
      out += kReplacement;
      ++i;
    } else {
      out.append(held_, i, size_t(len));
      i += size_t(len);
    }
  }
  held_.erase(0, i);
  return out;
}

std::string Utf8Assembler::flush() {
  std::string out = held_.empty() ? "" : kReplacement;
  held_.clear();
  return out;
}

bool StopText::append(const std::string& text) {
  const size_t old = text_.size();
  text_ += text;
  if (!stops_ || stops_->empty()) return false;
  size_t cut = std::string::npos;
  for (const auto& s : *stops_) {
    // Only matches that end in the new text are new.
    const size_t from = old >= s.size() - 1 ? old - (s.size() - 1) : 0;
    const size_t pos = text_.find(s, from);
    if (pos != std::string::npos) cut = std::min(cut, pos);
  }
  if (cut == std::string::npos) return false;
  text_.resize(cut);
  return true;
}

size_t StopText::ready(bool final) const {
  if (final || !stops_ || stops_->empty()) return text_.size();
  size_t hold = 0;
  for (const auto& s : *stops_)
    for (size_t k = std::min(s.size() - 1, text_.size()); k > hold; --k)
      if (text_.compare(text_.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
  return text_.size() - hold;
}

std::string openai_finish_reason(const std::string& r) {
  if (r == "eos" || r == "stop") return "stop";
  if (r == "length" || r == "context") return "length";
  return r;
}

nlohmann::json completion_response(const std::string& id, int64_t created, const std::string& model,
                                   const std::vector<ChoiceResult>& choices, int prompt_tokens, int completion_tokens) {
  json cs = json::array();
  for (size_t i = 0; i < choices.size(); ++i)
    cs.push_back({{"index", i}, {"text", choices[i].text}, {"finish_reason", choices[i].finish_reason}, {"logprobs", choices[i].logprobs}});
  return {{"id", id},
          {"object", "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", cs},
          {"usage", {{"prompt_tokens", prompt_tokens}, {"completion_tokens", completion_tokens}, {"total_tokens", prompt_tokens + completion_tokens}}}};
}

nlohmann::json logprobs_json(const std::vector<TokenLogprob>& tokens, const std::function<std::string(int32_t)>& token_text,
                             size_t offset0) {
  json toks = json::array(), lps = json::array(), tops = json::array(), offs = json::array();
  size_t off = offset0;
  for (const TokenLogprob& t : tokens) {
    const std::string text = token_text(t.token);
    toks.push_back(text);
    offs.push_back(off);
    off += text.size();
    if (!t.logprob) {
      lps.push_back(nullptr);
      tops.push_back(nullptr);
      continue;
    }
    lps.push_back(*t.logprob);
    json top = json::object();
    for (const auto& [id, lp] : t.top) {
      const std::string k = token_text(id);
      if (!top.contains(k)) top[k] = lp;  // two ids with one text: the more likely one (listed first)
    }
    if (const std::string k = text; !top.contains(k)) top[k] = *t.logprob;
    tops.push_back(top);
  }
  return {{"tokens", toks}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offs}};
}

nlohmann::json completion_chunk(const std::string& id, int64_t created, const std::string& model, int index,
                                const std::string& text, const std::string& finish_reason) {
  json c = {{"index", index}, {"text", text}, {"finish_reason", nullptr}, {"logprobs", nullptr}};
  if (!finish_reason.empty()) c["finish_reason"] = finish_reason;
  return {{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", model}, {"choices", json::array({c})}};
}

nlohmann::json usage_chunk(const std::string& id, int64_t created, const std::string& model, int prompt_tokens,
                           int completion_tokens) {
  return {{"id", id},
          {"object", "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", json::array()},
          {"usage", {{"prompt_tokens", prompt_tokens}, {"completion_tokens", completion_tokens}, {"total_tokens", prompt_tokens + completion_tokens}}}};
}

std::string json_text(const nlohmann::json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string sse_event(const nlohmann::json& j) { return "data: " + json_text(j) + "\n\n"; }

}  // namespace cb::engine
