// Server profiles (workloads/servers/*.json): parsing, lookup, detection, error bodies.
#include "cb/harness/load/server_profile.h"

#include <httplib.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include "cb/harness/load/http_sut.h"

namespace cb::harness::load {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

[[noreturn]] void bad(const std::string& where, const std::string& field, const std::string& what) {
  throw std::runtime_error(where + ": field \"" + field + "\": " + what);
}

std::string get_string(const json& j, const std::string& key, const std::string& where, const std::string& field, bool required) {
  if (!j.contains(key)) {
    if (required) bad(where, field, "missing (expected a string)");
    return "";
  }
  if (!j[key].is_string()) bad(where, field, "expected a string, got " + j[key].dump());
  return j[key].get<std::string>();
}

bool get_bool(const json& j, const std::string& key, const std::string& where, bool def) {
  if (!j.contains(key)) return def;
  if (!j[key].is_boolean()) bad(where, key, "expected true or false, got " + j[key].dump());
  return j[key].get<bool>();
}

std::vector<std::string> get_strings(const json& j, const std::string& key, const std::string& where, const std::string& field) {
  std::vector<std::string> out;
  if (!j.contains(key)) return out;
  if (!j[key].is_array()) bad(where, field, "expected an array of strings, got " + j[key].dump());
  for (const auto& v : j[key]) {
    if (!v.is_string()) bad(where, field, "expected an array of strings, got element " + v.dump());
    out.push_back(v.get<std::string>());
  }
  return out;
}

void check_keys(const json& j, const std::set<std::string>& known, const std::string& where, const std::string& prefix) {
  for (const auto& [k, v] : j.items()) {
    if (!k.empty() && k[0] == '$') continue;
    if (known.count(k)) continue;
    std::string list;
    for (const auto& x : known) list += (list.empty() ? "" : ", ") + x;
    bad(where, prefix + k, "unknown field (expected one of: " + list + ")");
  }
}

fs::path servers_dir() { return fs::path(CB_SOURCE_DIR) / "workloads" / "servers"; }

}  // namespace

ServerProfile default_http_profile() {
  ServerProfile p;
  p.name = "default";
  p.description = "no profile: refengine/vLLM conventions (token-id prompts, ignore_eos, stream_options.include_usage)";
  p.token_id_prompts = true;
  p.fixed_length_fields = {{"ignore_eos", true}};
  p.streamed_usage = "stream_options";
  p.token_counting = "token_ids";
  return p;
}

json profile_to_json(const ServerProfile& p) {
  const ProfileMetrics& m = p.metrics;
  json metrics = {{"path", m.path}};
  for (const auto& [k, v] : {std::pair{"running", m.running}, std::pair{"waiting", m.waiting}, std::pair{"kv_usage", m.kv_usage},
                             std::pair{"kv_usage_capacity", m.kv_usage_capacity}, std::pair{"busy_seconds", m.busy_seconds},
                             std::pair{"prompt_tokens", m.prompt_tokens}, std::pair{"generation_tokens", m.generation_tokens},
                             std::pair{"needs", m.needs}})
    if (!v.empty()) metrics[k] = v;
  if (!m.kv_usage.empty()) metrics["kv_usage_scale"] = m.kv_usage_scale;
  return {{"name", p.name},
          {"file", p.file.string()},
          {"description", p.description},
          {"sources", p.sources},
          {"token_id_prompts", p.token_id_prompts},
          {"fixed_length_fields", p.fixed_length_fields},
          {"streamed_usage", p.streamed_usage},
          {"token_counting", p.token_counting},
          {"finish_reasons", p.finish_reasons},
          {"prompt_logprobs", p.prompt_logprobs},
          {"metrics", metrics}};
}

ServerProfile server_profile_from_json(const json& j, const std::string& where) {
  if (!j.is_object()) throw std::runtime_error(where + ": expected a JSON object");
  check_keys(j,
             {"schema", "name", "description", "sources", "token_id_prompts", "fixed_length_fields", "streamed_usage", "token_counting",
              "finish_reasons", "prompt_logprobs", "prompt_logprobs_reason", "error_shape", "metrics", "detection"},
             where, "");
  if (j.contains("schema") && j["schema"] != "claimbench.server_profile")
    bad(where, "schema", "expected \"claimbench.server_profile\", got " + j["schema"].dump());
  ServerProfile p;
  p.name = get_string(j, "name", where, "name", true);
  if (p.name.empty()) bad(where, "name", "must not be empty");
  p.description = get_string(j, "description", where, "description", false);
  p.sources = get_strings(j, "sources", where, "sources");
  if (p.sources.empty()) bad(where, "sources", "missing or empty: list the documentation the profile was written from");
  p.token_id_prompts = get_bool(j, "token_id_prompts", where, true);
  if (j.contains("fixed_length_fields")) {
    if (!j["fixed_length_fields"].is_object()) bad(where, "fixed_length_fields", "expected an object, got " + j["fixed_length_fields"].dump());
    p.fixed_length_fields = j["fixed_length_fields"];
  }
  p.streamed_usage = j.contains("streamed_usage") ? get_string(j, "streamed_usage", where, "streamed_usage", true) : "stream_options";
  if (p.streamed_usage != "always" && p.streamed_usage != "stream_options" && p.streamed_usage != "never")
    bad(where, "streamed_usage", "expected \"always\", \"stream_options\" or \"never\", got \"" + p.streamed_usage + "\"");
  p.token_counting = j.contains("token_counting") ? get_string(j, "token_counting", where, "token_counting", true) : "chunks";
  if (p.token_counting != "chunks" && p.token_counting != "token_ids")
    bad(where, "token_counting", "expected \"chunks\" or \"token_ids\", got \"" + p.token_counting + "\"");
  if (j.contains("finish_reasons")) {
    if (!j["finish_reasons"].is_object()) bad(where, "finish_reasons", "expected an object, got " + j["finish_reasons"].dump());
    for (const auto& [k, v] : j["finish_reasons"].items()) {
      const std::string s = v.is_string() ? v.get<std::string>() : "";
      if (s != "length" && s != "stop" && s != "abort" && s != "error")
        bad(where, "finish_reasons." + k, "expected \"length\", \"stop\", \"abort\" or \"error\", got " + v.dump());
      p.finish_reasons[k] = s;
    }
  }
  p.prompt_logprobs = get_bool(j, "prompt_logprobs", where, false);
  p.prompt_logprobs_reason = get_string(j, "prompt_logprobs_reason", where, "prompt_logprobs_reason", false);
  p.error_shape = get_string(j, "error_shape", where, "error_shape", false);
  if (j.contains("metrics")) {
    const json& m = j["metrics"];
    if (!m.is_object()) bad(where, "metrics", "expected an object, got " + m.dump());
    check_keys(m, {"path", "running", "waiting", "kv_usage", "kv_usage_scale", "kv_usage_capacity", "busy_seconds", "prompt_tokens",
                   "generation_tokens", "needs"},
               where, "metrics.");
    auto s = [&](const char* k) { return get_string(m, k, where, std::string("metrics.") + k, false); };
    if (m.contains("path")) p.metrics.path = s("path");
    if (p.metrics.path.empty() || p.metrics.path[0] != '/') bad(where, "metrics.path", "expected a path starting with '/'");
    p.metrics.running = s("running");
    p.metrics.waiting = s("waiting");
    p.metrics.kv_usage = s("kv_usage");
    p.metrics.kv_usage_capacity = s("kv_usage_capacity");
    p.metrics.busy_seconds = s("busy_seconds");
    p.metrics.prompt_tokens = s("prompt_tokens");
    p.metrics.generation_tokens = s("generation_tokens");
    p.metrics.needs = s("needs");
    if (m.contains("kv_usage_scale")) {
      if (!m["kv_usage_scale"].is_number() || !(m["kv_usage_scale"].get<double>() > 0))
        bad(where, "metrics.kv_usage_scale", "expected a positive number, got " + m["kv_usage_scale"].dump());
      p.metrics.kv_usage_scale = m["kv_usage_scale"].get<double>();
    }
  }
  if (j.contains("detection")) {
    const json& d = j["detection"];
    if (!d.is_object()) bad(where, "detection", "expected an object, got " + d.dump());
    check_keys(d, {"models_owned_by", "version_path", "version_field", "server_headers"}, where, "detection.");
    p.detection.models_owned_by = get_strings(d, "models_owned_by", where, "detection.models_owned_by");
    p.detection.version_path = get_string(d, "version_path", where, "detection.version_path", false);
    p.detection.version_field = get_string(d, "version_field", where, "detection.version_field", false);
    p.detection.server_headers = get_strings(d, "server_headers", where, "detection.server_headers");
    if (!p.detection.version_path.empty() && p.detection.version_field.empty())
      bad(where, "detection.version_field", "needed with detection.version_path (the field its answer must have)");
  }
  return p;
}

ServerProfile load_server_profile_file(const fs::path& file) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error(file.string() + ": cannot open server profile");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e400
    throw std::runtime_error(file.string() + ": not JSON: " + e.what());
  }
  ServerProfile p = server_profile_from_json(j, file.string());
  p.file = file;
  return p;
}

std::vector<ServerProfile> builtin_server_profiles() {
  std::vector<ServerProfile> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(servers_dir(), ec))
    if (e.path().extension() == ".json") out.push_back(load_server_profile_file(e.path()));
  if (ec) throw std::runtime_error(servers_dir().string() + ": cannot list server profiles: " + ec.message());
  std::sort(out.begin(), out.end(), [](const ServerProfile& a, const ServerProfile& b) { return a.name < b.name; });
  return out;
}

ServerProfile find_server_profile(const std::string& name_or_path) {
  if (name_or_path.find('/') != std::string::npos || (name_or_path.size() > 5 && name_or_path.substr(name_or_path.size() - 5) == ".json"))
    return load_server_profile_file(name_or_path);
  std::string known;
  for (auto& p : builtin_server_profiles()) {
    if (p.name == name_or_path) return p;
    known += (known.empty() ? "" : ", ") + p.name;
  }
  throw std::invalid_argument("--server-profile '" + name_or_path + "': no such profile (known: " + known +
                              "; or pass the path of a JSON file)");
}

json ServerIdentity::to_json() const {
  return {{"profile", profile}, {"chosen_by", chosen_by}, {"models", models}, {"version", version}, {"server_header", server_header}};
}

std::string readable_error_body(const std::string& body) {
  auto trim = [](std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
    if (s.size() > 300) s = s.substr(0, 300) + "...";
    return s;
  };
  json j;
  try {
    j = json::parse(body);
  } catch (const std::exception&) {
    return trim(body);
  }
  if (!j.is_object()) return trim(body);
  auto str = [](const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); };
  std::string msg, type;
  if (j.contains("error")) {
    const json& e = j["error"];
    if (e.is_object()) {  // OpenAI, vLLM, llama.cpp
      msg = e.contains("message") ? str(e["message"]) : e.dump();
      if (e.contains("type") && !e["type"].is_null()) type = str(e["type"]);
      else if (e.contains("code") && !e["code"].is_null()) type = str(e["code"]);
    } else {  // TGI
      msg = str(e);
      if (j.contains("error_type")) type = str(j["error_type"]);
    }
  } else if (j.contains("message")) {  // SGLang, older vLLM: {"object": "error", "message", "type", "code"}
    msg = str(j["message"]);
    if (j.contains("type") && !j["type"].is_null()) type = str(j["type"]);
  } else if (j.contains("detail")) {  // FastAPI
    msg = str(j["detail"]);
  } else {
    return trim(body);
  }
  return trim(type.empty() ? msg : msg + " (" + type + ")");
}

bool is_loopback_url(const std::string& base_url) {
  std::string host;
  try {
    host = parse_http_url(base_url).first;
  } catch (const std::exception&) {
    return false;
  }
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "[::1]" || host == "::1";
}

std::pair<ServerProfile, ServerIdentity> detect_server_profile(const std::string& base_url, const std::vector<ServerProfile>& profiles) {
  const auto [host, port] = parse_http_url(base_url);
  httplib::Client c(host, port);
  c.set_connection_timeout(5, 0);
  c.set_read_timeout(10, 0);
  if (const char* key = std::getenv("OPENAI_API_KEY"); key && *key) c.set_bearer_token_auth(key);
  ServerIdentity id;
  auto parse = [](const std::string& s) {
    try {
      return json::parse(s);
    } catch (const std::exception&) {
      return json();
    }
  };
  if (auto r = c.Get("/v1/models")) {
    id.server_header = r->get_header_value("Server");
    if (r->status == 200) id.models = parse(r->body);
  } else {
    throw std::runtime_error("server detection: GET " + base_url + "/v1/models: " + httplib::to_string(r.error()) +
                             " (is the server running? pass --server-profile to skip detection)");
  }
  std::set<std::string> owned;
  if (id.models.is_object() && id.models.contains("data") && id.models["data"].is_array())
    for (const auto& m : id.models["data"])
      if (m.is_object() && m.contains("owned_by") && m["owned_by"].is_string()) owned.insert(m["owned_by"].get<std::string>());
  auto pick = [&](const ServerProfile& p, const std::string& evidence) {
    id.profile = p.name;
    id.chosen_by = "detected: " + evidence;
    return std::make_pair(p, id);
  };
  // Strongest evidence first: what /v1/models says, then the Server header, then a version endpoint.
  for (const auto& p : profiles)
    for (const auto& o : p.detection.models_owned_by)
      if (owned.count(o)) {
        if (!p.detection.version_path.empty())
          if (auto r = c.Get(p.detection.version_path); r && r->status == 200) id.version = parse(r->body);
        return pick(p, "/v1/models owned_by \"" + o + "\"");
      }
  for (const auto& p : profiles)
    for (const auto& h : p.detection.server_headers)
      if (!h.empty() && id.server_header.find(h) != std::string::npos) return pick(p, "Server header \"" + id.server_header + "\"");
  for (const auto& p : profiles) {
    if (p.detection.version_path.empty()) continue;
    auto r = c.Get(p.detection.version_path);
    if (!r || r->status != 200) continue;
    const json v = parse(r->body);
    if (v.is_object() && v.contains(p.detection.version_field)) {
      id.version = v;
      return pick(p, "GET " + p.detection.version_path + " has \"" + p.detection.version_field + "\"");
    }
  }
  for (const auto& p : profiles)
    if (p.name == "openai") {
      id.profile = p.name;
      id.chosen_by = "default: no profile matched (owned_by " + json(std::vector<std::string>(owned.begin(), owned.end())).dump() +
                     ", Server header \"" + id.server_header + "\"); the generic OpenAI profile";
      return {p, id};
    }
  throw std::runtime_error("server detection: no profile matched " + base_url + " and there is no generic \"openai\" profile");
}

}  // namespace cb::harness::load
