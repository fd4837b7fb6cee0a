// The HTTP SUT: any OpenAI-compatible server, driven through POST /v1/completions with
// "stream": true. The prompt goes as an array of token ids (so every server sees the same token
// counts), "ignore_eos": true and max_tokens fix the output length (vLLM's extension; servers
// without it may stop early, which the harness counts as a "short" error).
//
// Streaming: Server-Sent Events, one `data: {json}` per chunk, ending with `data: [DONE]`. TTFT is
// taken at the first chunk that carries text or token ids. Tokens per chunk: the length of
// "token_ids" / "logprobs.tokens" when the server sends them, else one per non-empty text chunk;
// a final "usage.completion_tokens" (stream_options.include_usage) corrects the total.
// Errors by kind: connection failures, HTTP 429, other 4xx, 5xx, malformed streams.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "cb/harness/load/sut.h"

namespace cb::harness::load {

// Splits a byte stream into SSE events: lines ending in \n or \r\n; `data:` lines of one event are
// joined with \n; a blank line ends the event; comments (`:`) and other fields are skipped.
class SseParser {
 public:
  explicit SseParser(std::function<void(const std::string& data)> on_event) : on_event_(std::move(on_event)) {}
  void feed(std::string_view bytes);
  void finish();  // dispatches a last event not followed by a blank line

 private:
  void line(std::string_view l);
  std::function<void(const std::string&)> on_event_;
  std::string buf_, data_;
  bool have_data_ = false;
};

// One parsed /v1/completions stream chunk.
struct CompletionChunk {
  int tokens = 0;                    // tokens this chunk carries (see the counting rule above)
  bool has_text = false;             // non-empty text or token ids
  std::string finish_reason;         // "" while streaming
  int usage_completion_tokens = -1;  // from a usage object, when present
  std::string error;                 // a server-sent {"error": ...} object, as text
};
// Throws std::invalid_argument describing what is wrong (bad JSON, no choices, ...).
CompletionChunk parse_completion_chunk(const std::string& json_text);

struct HttpSutOptions {
  std::string base_url;             // http://HOST:PORT
  std::string model;                // "model" field; empty: the first id of GET /v1/models, else "default"
  double connect_timeout_s = 5;
  double read_timeout_s = 300;
  int max_connections = 512;        // worker threads (one connection each); beyond, requests queue here
  // Sent as "Authorization: Bearer KEY" on every request; empty: $OPENAI_API_KEY (the variable
  // OpenAI clients read), else no header. Never written to results.
  std::string api_key;
};

class HttpSut : public Sut {
 public:
  explicit HttpSut(HttpSutOptions opt);  // throws std::invalid_argument for a URL it cannot use
  ~HttpSut() override;
  std::string name() const override { return "http:" + opt_.base_url; }
  nlohmann::json describe() const override;
  void issue(const LoadRequest& req, SutCallbacks cb) override;
  void abort_all() override;

  // A gauge from GET /metrics (Prometheus text), e.g. refengine_busy_fraction; nullopt when the
  // endpoint or the gauge is absent.
  std::optional<double> scrape_gauge(const std::string& name) const;
  const std::string& model() const { return model_; }

 private:
  struct Job {
    LoadRequest req;
    SutCallbacks cb;
  };
  void worker();
  void run_one(void* client, Job& job);

  HttpSutOptions opt_;
  std::string host_;
  int port_ = 80;
  std::string model_;
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  std::vector<std::thread> threads_;
  std::vector<void*> clients_;  // each worker's httplib::Client, for abort_all()
  int idle_ = 0;
  bool stop_ = false;
  std::atomic<uint64_t> generation_{0};  // abort_all() bumps it; older requests cancel their stream
};

// Parses "http://HOST:PORT[/]" into host and port; throws std::invalid_argument naming the URL.
std::pair<std::string, int> parse_http_url(const std::string& url);

// The value of gauge `name` in a Prometheus text exposition (first sample, labels ignored).
std::optional<double> prometheus_gauge(const std::string& text, const std::string& name);

}  // namespace cb::harness::load
