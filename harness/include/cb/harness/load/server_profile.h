// Server profiles: what differs between OpenAI-compatible servers (vLLM, SGLang, TGI, llama.cpp's
// server, refengine serve, ...) as far as the harness is concerned. One JSON file per server under
// workloads/servers/, written from the server's documentation; chosen with --server-profile NAME
// (or a path to a JSON file) or detected from GET /v1/models, the version endpoint and response
// headers.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace cb::harness::load {

// Prometheus series (names as the server exposes them on /metrics) the load suite samples during
// a run; empty: the server has no such series.
struct ProfileMetrics {
  std::string path = "/metrics";
  std::string running;        // gauge: requests being decoded now
  std::string waiting;        // gauge: requests queued
  std::string kv_usage;       // gauge: KV-cache usage
  double kv_usage_scale = 1;  // multiplies kv_usage into a 0..1 fraction (e.g. 0.01 for a percent)
  std::string kv_usage_capacity;  // gauge to divide kv_usage by (refengine: blocks used / blocks capacity); empty: none
  std::string busy_seconds;   // counter: seconds the engine spent computing (busy fraction)
  std::string prompt_tokens;  // counter: prompt tokens processed
  std::string generation_tokens;  // counter: tokens generated
  std::string needs;          // what the server must be started with to expose them ("--metrics")
};

// How the server is recognized (any one match is enough; the first profile that matches wins).
struct ProfileDetection {
  std::vector<std::string> models_owned_by;  // /v1/models data[].owned_by values
  std::string version_path;                  // GET path that answers with the version ("/version")
  std::string version_field;                 // JSON field of that answer that must exist
  std::vector<std::string> server_headers;   // substrings of the "Server" response header
};

struct ServerProfile {
  std::string name;          // refengine | vllm | sglang | tgi | llamacpp | openai
  std::string description;   // one line
  std::vector<std::string> sources;  // documentation the profile was written from
  std::filesystem::path file;

  // Request shape.
  bool token_id_prompts = true;  // "prompt" may be an array of token ids; else text through the tokenizer
  // Fields merged into every completion request so that exactly max_tokens come back (EOS
  // ignored), e.g. {"ignore_eos": true}; "$max_tokens" in a value is replaced by max_tokens
  // (min_tokens = max_tokens). Empty: the server cannot fix the output length, so a request that
  // stops early counts as "short".
  nlohmann::json fixed_length_fields = nlohmann::json::object();
  // Streamed usage: "always" (a usage object in the last chunk), "stream_options" (only with
  // stream_options.include_usage), "never".
  std::string streamed_usage = "stream_options";
  // Output tokens when no usage comes: "chunks" (one token per streamed chunk with text or that
  // is not the closing chunk; token id lists ignored), "token_ids" (length of the chunk's
  // token_ids / logprobs.tokens list when it has one, else as "chunks").
  std::string token_counting = "chunks";
  // The server's finish_reason values -> "length" (max_tokens reached), "stop" (EOS or a stop
  // string: an early stop), "abort" or "error" (the request failed). A value not in the map fails
  // the request with a message naming it; an empty map accepts any value.
  std::map<std::string, std::string> finish_reasons;
  std::string error_shape;  // the documented error body, for messages (informational)
  // echo + logprobs on /v1/completions give prompt log-probabilities (perplexity over HTTP).
  bool prompt_logprobs = false;
  std::string prompt_logprobs_reason;  // why not, when false (for the SKIP reason)
  ProfileMetrics metrics;
  ProfileDetection detection;
};

// The HTTP SUT's behaviour without a profile (refengine/vLLM conventions: token-id prompts,
// ignore_eos, stream_options.include_usage, token ids counted when a chunk has them).
ServerProfile default_http_profile();
// Everything a run records about the profile (name, file, request shape, metrics, sources).
nlohmann::json profile_to_json(const ServerProfile& p);
// Parses a profile from JSON; `where` names the file in errors.
ServerProfile server_profile_from_json(const nlohmann::json& j, const std::string& where);
// Parses one profile file; throws std::runtime_error naming the file and the field.
ServerProfile load_server_profile_file(const std::filesystem::path& file);
// The committed profiles (workloads/servers/*.json), sorted by name.
std::vector<ServerProfile> builtin_server_profiles();
// A profile by name (a committed one) or by path to a JSON file; throws naming the known names.
ServerProfile find_server_profile(const std::string& name_or_path);

// What a server said about itself, recorded in the manifest of a run against it.
struct ServerIdentity {
  std::string profile;        // the profile used
  std::string chosen_by;      // "--server-profile" | "detected: <evidence>" | "default: <why>"
  nlohmann::json models;      // GET /v1/models answer (null when it did not answer)
  nlohmann::json version;     // version endpoint answer, when the profile has one
  std::string server_header;  // "Server" response header
  nlohmann::json to_json() const;
};

// A readable message from an error response body of any server's shape: {"error": {"message"}}
// (OpenAI, vLLM, llama.cpp), {"error": "...", "error_type": "..."} (TGI), {"object": "error",
// "message"} (SGLang, older vLLM), {"detail": ...} (FastAPI); else the body itself, trimmed.
std::string readable_error_body(const std::string& body);

// True for http://127.0.0.1, localhost, [::1] (an engine-side suite may measure this machine).
bool is_loopback_url(const std::string& base_url);

// Asks the server (GET /v1/models, each profile's version path, the Server header) and picks the
// first profile that matches, else the generic "openai" profile. Outside any timed window.
std::pair<ServerProfile, ServerIdentity> detect_server_profile(const std::string& base_url,
                                                               const std::vector<ServerProfile>& profiles);

}  // namespace cb::harness::load
