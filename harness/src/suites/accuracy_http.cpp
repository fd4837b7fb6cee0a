// The accuracy suite against an HTTP endpoint: exact match and perplexity through
// /v1/completions (see cb/harness/suites/accuracy_http.h for the method).
#include "cb/harness/suites/accuracy_http.h"
#include "cb/harness/load/server_profile.h"

#include <httplib.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

#include "cb/harness/load/http_sut.h"

namespace cb::harness::accuracy_http {
namespace fs = std::filesystem;
using nlohmann::json;

fs::path default_qa_file() { return fs::path(CB_SOURCE_DIR) / "workloads" / "accuracy" / "default-qa.jsonl"; }

std::vector<QaExample> read_qa_jsonl(const fs::path& file) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error(file.string() + ": cannot open");
  std::vector<QaExample> out;
  std::string line;
  for (int lineno = 1; std::getline(in, line); ++lineno) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = file.string() + ":" + std::to_string(lineno);
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e400
      throw std::runtime_error(where + ": not JSON (" + e.what() + ")");
    }
    if (!j.is_object() || !j.contains("prompt") || !j["prompt"].is_string() || !j.contains("answer") || !j["answer"].is_string())
      throw std::runtime_error(where + ": expected an object with string fields \"prompt\" and \"answer\"");
    QaExample e{lineno, j["prompt"], j["answer"], ""};
    if (e.prompt.empty()) throw std::runtime_error(where + ": \"prompt\" is empty");
    if (j.contains("task") && j["task"].is_string()) e.task = j["task"];
    out.push_back(std::move(e));
  }
  if (out.empty()) throw std::runtime_error(file.string() + ": no prompt/answer lines");
  return out;
}

namespace {

json parse_body(const std::string& body, const std::string& where) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e400
    throw std::runtime_error(where + ": the answer is not JSON (" + std::string(e.what()) + "): " + body.substr(0, 200));
  }
  if (!j.is_object()) throw std::runtime_error(where + ": the answer is not a JSON object: " + body.substr(0, 200));
  if (j.contains("error")) throw std::runtime_error(where + ": the server answered an error: " + j["error"].dump().substr(0, 300));
  if (!j.contains("choices") || !j["choices"].is_array() || j["choices"].empty() || !j["choices"][0].is_object())
    throw std::runtime_error(where + ": the answer has no choices[0] object: " + body.substr(0, 200));
  return j;
}

int usage_field(const json& j, const char* k) {
  if (j.contains("usage") && j["usage"].is_object() && j["usage"].contains(k) && j["usage"][k].is_number_integer())
    return j["usage"][k].get<int>();
  return -1;
}

}  // namespace

CompletionAnswer parse_completion_answer(const std::string& body, const std::string& where) {
  const json j = parse_body(body, where);
  const json& c = j["choices"][0];
  CompletionAnswer a;
  if (!c.contains("text") || !c["text"].is_string())
    throw std::runtime_error(where + ": choices[0].text is missing or not a string: " + c.dump().substr(0, 200));
  a.text = c["text"];
  if (c.contains("finish_reason") && c["finish_reason"].is_string()) a.finish_reason = c["finish_reason"];
  a.prompt_tokens = usage_field(j, "prompt_tokens");
  a.completion_tokens = usage_field(j, "completion_tokens");
  return a;
}

double PromptLogprobs::nll() const {
  double s = 0;
  for (const auto& v : token_logprobs)
    if (v) s -= *v;
  return s;
}

int64_t PromptLogprobs::scored() const {
  int64_t n = 0;
  for (const auto& v : token_logprobs) n += v.has_value();
  return n;
}

std::optional<PromptLogprobs> parse_prompt_logprobs(const std::string& body, const std::string& where, std::string& why) {
  const json j = parse_body(body, where);
  const json& c = j["choices"][0];
  PromptLogprobs p;
  p.prompt_tokens = usage_field(j, "prompt_tokens");
  if (!c.contains("logprobs") || c["logprobs"].is_null()) {
    why = "the answer has no choices[0].logprobs (the server ignores logprobs)";
    return std::nullopt;
  }
  const json& lp = c["logprobs"];
  if (!lp.is_object() || !lp.contains("token_logprobs") || !lp["token_logprobs"].is_array()) {
    why = "choices[0].logprobs has no token_logprobs array (not the legacy completions shape): " + lp.dump().substr(0, 200);
    return std::nullopt;
  }
  const json& t = lp["token_logprobs"];
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i].is_null()) {
      p.token_logprobs.emplace_back();
      continue;
    }
    if (!t[i].is_number())
      throw std::runtime_error(where + ": token_logprobs[" + std::to_string(i) + "] is " + t[i].dump() + ", not a number or null");
    const double v = t[i].get<double>();
    if (!std::isfinite(v) || v > 1e-9)
      throw std::runtime_error(where + ": token_logprobs[" + std::to_string(i) + "] = " + t[i].dump() +
                               " is not a log-probability (finite, <= 0)");
    p.token_logprobs.emplace_back(v);
  }
  if (p.prompt_tokens > 0 && int(t.size()) < p.prompt_tokens) {
    why = "the answer scores " + std::to_string(t.size()) + " tokens but the prompt has " + std::to_string(p.prompt_tokens) +
          " (usage.prompt_tokens): the server does not echo the prompt's log-probabilities";
    return std::nullopt;
  }
  if (p.scored() == 0) {
    why = "the answer has no prompt log-probabilities (every token_logprob null or none): echo ignored";
    return std::nullopt;
  }
  return p;
}

std::vector<std::string> text_windows(const std::string& text, size_t max_bytes) {
  if (max_bytes == 0) throw std::invalid_argument("text_windows: max_bytes must be > 0");
  std::vector<std::string> out;
  size_t at = 0;
  while (at < text.size()) {
    size_t end = std::min(text.size(), at + max_bytes);
    if (end < text.size()) {
      size_t cut = end;
      // Back off continuation bytes (10xxxxxx): the window then ends before a character starts.
      while (cut > at && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
      if (cut > at) end = cut;
    }
    out.push_back(text.substr(at, end - at));
    at = end;
  }
  return out;
}

std::string pair_key(const std::vector<std::string>& parts) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](unsigned char b) {
    h ^= b;
    h *= 1099511628211ull;
  };
  for (const auto& p : parts) {
    for (unsigned char b : p) mix(b);
    mix(0);
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

namespace {

struct Endpoint {
  std::string url, host, model, api_key;
  int port = 0;
  int max_model_len = 0;  // 0: not reported
  double timeout_s = 300;

  std::unique_ptr<httplib::Client> client() const {
    auto c = std::make_unique<httplib::Client>(host, port);
    c->set_keep_alive(true);
    c->set_connection_timeout(10, 0);
    c->set_read_timeout(time_t(timeout_s), 0);
    c->set_write_timeout(time_t(timeout_s), 0);
    if (!api_key.empty()) c->set_bearer_token_auth(api_key);
    return c;
  }
};

Endpoint open_endpoint(const Options& o) {
  Endpoint e;
  e.url = o.base_url;
  std::tie(e.host, e.port) = load::parse_http_url(o.base_url);
  e.api_key = o.api_key;
  if (e.api_key.empty())
    if (const char* env = std::getenv("OPENAI_API_KEY")) e.api_key = env;
  e.timeout_s = o.timeout_s;
  e.model = o.model;
  auto c = e.client();
  c->set_read_timeout(10, 0);
  auto r = c->Get("/v1/models");
  if (!r) throw std::runtime_error(o.base_url + ": GET /v1/models: " + httplib::to_string(r.error()) + " (is the server up?)");
  if (r->status == 200) {
    const json j = json::parse(r->body, nullptr, false);
    if (j.is_object() && j.contains("data") && j["data"].is_array() && !j["data"].empty() && j["data"][0].is_object()) {
      const json& m = j["data"][0];
      if (e.model.empty() && m.contains("id") && m["id"].is_string()) e.model = m["id"];
      if (m.contains("max_model_len") && m["max_model_len"].is_number_integer()) e.max_model_len = m["max_model_len"];
    }
  }
  return e;
}

struct Post {
  int status = -1;  // -1: no answer (connection)
  std::string body, error;
};

Post post(httplib::Client& c, const Endpoint& e, json body) {
  if (!e.model.empty()) body["model"] = e.model;
  Post p;
  auto r = c.Post("/v1/completions", body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
  if (!r) {
    p.error = httplib::to_string(r.error());
    return p;
  }
  p.status = r->status;
  p.body = r->body;
  return p;
}

std::string error_message(const std::string& body) {
  const json j = json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("error")) {
    const json& e = j["error"];
    if (e.is_object() && e.contains("message") && e["message"].is_string()) return e["message"];
    return e.dump().substr(0, 300);
  }
  return body.substr(0, 300);
}

void exact_match(SuiteResult& r, const Options& o, const Endpoint& e, json& not_measured) {
  const fs::path file = o.qa_jsonl.empty() ? default_qa_file() : o.qa_jsonl;
  std::vector<QaExample> ex = read_qa_jsonl(file);
  if (o.max_examples > 0 && int(ex.size()) > o.max_examples) ex.resize(size_t(o.max_examples));
  if (o.progress) o.progress("accuracy (http): exact match, " + std::to_string(ex.size()) + " examples from " + file.string());
  auto c = e.client();
  std::vector<double> samples;
  std::vector<std::string> key_parts;
  json rows = json::array(), failures = json::array();
  std::map<std::string, std::pair<int, int>> per_task;  // task -> (correct, total)
  int correct = 0;
  int64_t prompt_tokens = 0;
  int missing_usage = 0;
  for (const QaExample& q : ex) {
    const std::string where = file.string() + ":" + std::to_string(q.line);
    const json body = {{"prompt", q.prompt}, {"max_tokens", int(q.answer.size()) + o.answer_margin_tokens},
                       {"temperature", 0}, {"stream", false}};
    const Post p = post(*c, e, body);
    if (p.status < 0) throw std::runtime_error(where + ": POST /v1/completions to " + e.url + ": " + p.error);
    if (p.status != 200)
      throw std::runtime_error(where + ": POST /v1/completions answered HTTP " + std::to_string(p.status) + ": " + error_message(p.body));
    const CompletionAnswer a = parse_completion_answer(p.body, where);
    const bool ok = a.text == q.answer;
    correct += ok;
    samples.push_back(ok ? 1.0 : 0.0);
    key_parts.push_back(q.prompt);
    key_parts.push_back(q.answer);
    if (a.prompt_tokens >= 0) prompt_tokens += a.prompt_tokens;
    else ++missing_usage;
    rows.push_back({{"line", q.line}, {"task", q.task}, {"correct", ok}, {"prompt_tokens", a.prompt_tokens},
                    {"completion_tokens", a.completion_tokens}, {"finish_reason", a.finish_reason}});
    if (!ok && failures.size() < 20) failures.push_back({{"line", q.line}, {"expected", q.answer}, {"got", a.text}});
    if (!q.task.empty()) {
      per_task[q.task].first += ok;
      ++per_task[q.task].second;
    }
  }
  json tasks = json::object();
  for (const auto& [t, ct] : per_task)
    tasks[t] = {{"correct", ct.first}, {"total", ct.second}, {"accuracy", double(ct.first) / ct.second}};
  const int total = int(ex.size());
  r.add({"accuracy.http.exact_match", double(correct) / total, "fraction", Direction::HigherIsBetter, NoiseClass::Exact, samples,
         {{"file", file.string()}, {"correct", correct}, {"total", total}, {"model", e.model}, {"endpoint", e.url},
          {"prompt_tokens", prompt_tokens}, {"examples_without_usage", missing_usage}, {"per_task", tasks},
          {"max_tokens", "answer bytes + " + std::to_string(o.answer_margin_tokens)}, {"pair_key", pair_key(key_parts)},
          {"pairing", "per example, file order"}},
         "greedy (temperature 0) non-streaming completion of each prompt equals the expected answer exactly; samples: 1/0 per "
         "example in file order"});
  r.tables["http_qa"] = rows;
  r.tables["http_qa_failures"] = failures;
  std::printf("accuracy (http): exact match %d/%d = %.1f%% (%s)\n", correct, total, 100.0 * correct / total, file.string().c_str());
  std::fflush(stdout);
  (void)not_measured;
}

void perplexity(SuiteResult& r, const Options& o, const Endpoint& e, json& not_measured) {
  const std::string key = "accuracy.http.perplexity";
  if (o.ppl_text.empty()) {
    not_measured[key] = "no --ppl-text given";
    return;
  }
  std::ifstream in(o.ppl_text, std::ios::binary);
  if (!in) throw std::runtime_error(o.ppl_text.string() + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  if (text.empty()) throw std::runtime_error(o.ppl_text.string() + ": empty");
  if (!o.prompt_logprobs) {
    not_measured[key] = "SKIP: the server profile" + (o.server_profile.empty() ? "" : " '" + o.server_profile + "'") +
                        " says the server gives no prompt log-probabilities" +
                        (o.prompt_logprobs_reason.empty() ? "" : ": " + o.prompt_logprobs_reason);
    return;
  }
  size_t window = size_t(std::max(1, o.window_bytes));
  if (e.max_model_len > 1) window = std::min(window, size_t(e.max_model_len - 1));
  const std::vector<std::string> windows = text_windows(text, window);
  if (o.progress) o.progress("accuracy (http): perplexity, " + std::to_string(windows.size()) + " windows of " + o.ppl_text.string());
  auto c = e.client();
  std::vector<double> samples;
  json rows = json::array();
  double nll = 0;
  int64_t tokens = 0, prompt_tokens = 0;
  size_t offset = 0;
  for (size_t w = 0; w < windows.size(); ++w) {
    const std::string where = o.ppl_text.string() + " window " + std::to_string(w) + " (from byte " + std::to_string(offset) + ")";
    offset += windows[w].size();
    const json body = {{"prompt", windows[w]}, {"max_tokens", 0}, {"echo", true}, {"logprobs", 0}, {"temperature", 0}, {"stream", false}};
    const Post p = post(*c, e, body);
    if (p.status < 0) throw std::runtime_error(where + ": POST /v1/completions to " + e.url + ": " + p.error);
    if (p.status >= 400 && p.status < 500) {
      not_measured[key] = "SKIP: the server refused an echo + logprobs + max_tokens 0 request (HTTP " + std::to_string(p.status) +
                          "): " + error_message(p.body);
      return;
    }
    if (p.status != 200)
      throw std::runtime_error(where + ": POST /v1/completions answered HTTP " + std::to_string(p.status) + ": " + error_message(p.body));
    std::string why;
    const auto lp = parse_prompt_logprobs(p.body, where, why);
    if (!lp) {
      not_measured[key] = "SKIP: " + why;
      return;
    }
    const double wn = lp->nll();
    const int64_t wt = lp->scored();
    nll += wn;
    tokens += wt;
    if (lp->prompt_tokens >= 0) prompt_tokens += lp->prompt_tokens;
    samples.push_back(std::exp(wn / double(wt)));
    rows.push_back({{"window", w}, {"bytes", windows[w].size()}, {"prompt_tokens", lp->prompt_tokens}, {"scored_tokens", wt},
                    {"nll", wn}, {"perplexity", samples.back()}});
  }
  const double ppl = std::exp(nll / double(tokens));
  r.add({key, ppl, "ppl", Direction::LowerIsBetter, NoiseClass::Exact, samples,
         {{"text", o.ppl_text.string()}, {"windows", windows.size()}, {"window_bytes", window}, {"scored_tokens", tokens},
          {"prompt_tokens", prompt_tokens}, {"model", e.model}, {"endpoint", e.url}, {"pair_key", pair_key(windows)},
          {"pairing", "per window, text order"}},
         "exp(sum of -token_logprobs / scored tokens) from echo + logprobs + max_tokens 0 over windows of the text (the endpoint "
         "tokenizes and adds its BOS; its first token is not scored); samples: per-window perplexity"});
  r.tables["http_ppl_windows"] = rows;
  std::printf("accuracy (http): perplexity %.4f over %lld tokens in %zu windows (%s)\n", ppl, static_cast<long long>(tokens),
              windows.size(), o.ppl_text.string().c_str());
  std::fflush(stdout);
}

}  // namespace

SuiteResult run(const Options& o) {
  SuiteResult r;
  r.suite = "accuracy";
  const Endpoint e = open_endpoint(o);
  json not_measured = json::object();
  exact_match(r, o, e, not_measured);
  perplexity(r, o, e, not_measured);
  r.params = {{"sut", o.base_url}, {"model", e.model}, {"max_model_len", e.max_model_len}, {"server_profile", o.server_profile},
              {"qa_jsonl", (o.qa_jsonl.empty() ? default_qa_file() : o.qa_jsonl).string()}, {"ppl_text", o.ppl_text.string()},
              {"not_measured", not_measured}, {"path", "http"}};
  for (const auto& [k, why] : not_measured.items()) std::printf("accuracy (http): %s not measured: %s\n", k.c_str(), why.get<std::string>().c_str());
  return r;
}

}  // namespace cb::harness::accuracy_http

namespace cb::harness {

SuiteResult run_accuracy_http_suite(const SuiteContext& ctx) {
  accuracy_http::Options o;
  o.base_url = ctx.sut;
  o.qa_jsonl = ctx.qa_jsonl;
  o.ppl_text = ctx.ppl_text;
  o.progress = ctx.progress;
  // The server's profile (--server-profile, else detected) says whether it gives prompt
  // log-probabilities; where it says no, perplexity is SKIP with the profile's reason, unasked.
  auto [detected, identity] = load::detect_server_profile(ctx.sut, load::builtin_server_profiles());
  load::ServerProfile profile = detected;
  if (!ctx.server_profile.empty()) {
    profile = load::find_server_profile(ctx.server_profile);
    identity.chosen_by = "--server-profile " + ctx.server_profile + " (detection said " + detected.name + ": " + identity.chosen_by + ")";
    identity.profile = profile.name;
  }
  o.server_profile = profile.name;
  o.prompt_logprobs = profile.prompt_logprobs;
  o.prompt_logprobs_reason = profile.prompt_logprobs_reason;
  SuiteResult r = accuracy_http::run(o);
  nlohmann::json server = identity.to_json();
  server["base_url"] = ctx.sut;
  r.params["server"] = server;
  return r;
}

}  // namespace cb::harness
