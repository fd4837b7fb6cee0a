// The reference engine's OpenAI-compatible HTTP server (cpp-httplib), usable in-process (tests,
// the load suite) and from `refengine serve`.
//
// Endpoints:
//   POST /v1/completions   OpenAI text completions, JSON or SSE stream (see below)
//   GET  /v1/models        the one served model
//   GET  /health           200 "ok"; 503 "draining" while draining (text/plain, no newline)
//   GET  /metrics          Prometheus text format, names prefixed refengine_
//
// Completions: prompt is a string (byte-level tokens, BOS prepended) or an array of token ids (used
// as is). Supported: max_tokens (default 16), temperature (default 1, 0 = greedy), top_p, top_k
// (-1/0 = off), n, stop (string or up to 4 strings), seed (default 0: runs repeat), stream,
// stream_options.include_usage, ignore_eos (vLLM extension), and the legacy log-probability fields
// (non-streaming only): logprobs (null, or top-N in [0, 20]) and echo (bool) answer
// choices[i].logprobs = {tokens, token_logprobs, top_logprobs, text_offset} as OpenAI and vLLM do;
// with echo the prompt's tokens come first (the first one's logprob null) and its text precedes the
// completion's; max_tokens 0 is allowed with echo only (the prompt's log-probabilities alone). They
// are scored by one teacher-forced forward over prompt + generated tokens on the engine thread
// between steps (sequence_logprobs.h). Accepted only with their neutral value
// (else 400 "unsupported"): best_of=n, presence_penalty=0,
// frequency_penalty=0, logit_bias={}, suffix="". Accepted and ignored: user. Any other top-level field
// is rejected with 400 naming it. `model`, when given, must be the served name (else 404).
// Streams send one `data: {text_completion chunk}` event per batch of new text, then (unless
// stream_options.include_usage is false) a chunk with "choices": [] and "usage", then `data: [DONE]`.
// Stop strings end a sample with finish_reason "stop"; the engine request is aborted once every
// sample has stopped (a stopped sample's later tokens are computed but not sent).
//
// Admission: at most max_queue requests wait (server + engine queue); past it 429 with Retry-After.
// Bodies over max_body_bytes get 413. With api_key set, /v1/* need "Authorization: Bearer KEY"
// (401 otherwise); /health and /metrics stay open for probes and scrapers.
// drain(): new requests get 503, accepted ones finish (streams complete), then the listener stops.
// A client that disconnects mid-stream has its request aborted in the engine (noticed at the next
// write).
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "cb/engine/serving/engine_loop.h"
#include "cb/engine/server/server_metrics.h"

namespace cb::engine {

struct ServerOptions {
  std::filesystem::path model_dir;  // empty: default_model_dir()
  std::string backend = "cpu";
  bool step_graphs = false;  // decode steps replayed from recordings (LoadOptions::step_graphs)
  std::string model_name;           // served name; empty: the model directory's name
  EngineOptions engine;             // record_steps is turned off (memory must not grow with uptime)
  int max_queue = 256;
  size_t max_body_bytes = size_t(1) << 20;
  std::string api_key;              // empty: no authentication
  int http_threads = 0;             // 0: max(max_queue + 64, 1024): each open keep-alive connection holds one
  int retry_after_s = 1;            // Retry-After on 429
  double step_delay_s = 0;          // EngineLoop::set_step_delay: emulate a slower model (tests, demos)
  // A stream with nothing to send for this long (queued, or a slow step) gets an SSE comment line
  // (": keep-alive"), which clients ignore. Writing is the only way httplib shows the server that a
  // client has left, so a queued request whose client hung up leaves the queue instead of being
  // computed; proxies also keep the stream open. 0: never.
  double sse_keepalive_s = 1.0;
  // Rank 0 of a tensor-parallel group (not owned; null = no tensor parallelism). The other ranks
  // run run_tp_follower(); the server releases them when it is destroyed.
  comm::Communicator* tp = nullptr;
};

class Server {
 public:
  // Loads the model and starts the engine thread; throws ModelError / std::invalid_argument.
  explicit Server(ServerOptions opt);
  ~Server();  // stop() if still running
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds (port 0 = any free port) and starts serving on a background thread; returns the bound
  // port. Throws std::runtime_error naming host:port when it cannot bind.
  int start(const std::string& host = "127.0.0.1", int port = 0);
  int port() const;
  std::string url() const;  // http://HOST:PORT
  // Graceful: refuse new requests (503), let accepted ones finish, then stop listening.
  void drain();
  // Immediate: abort everything in flight (clients get 503 / an error event), stop listening.
  void stop();
  // Blocks until the listener has stopped (after drain() or stop() from another thread).
  void wait();
  bool running() const;
  bool draining() const;

  EngineLoop& engine();
  const ServerMetrics& metrics() const;
  const std::string& model_name() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cb::engine
