// The HTTP SUT: any OpenAI-compatible server, driven through POST /v1/completions with
// "stream": true. What differs between servers comes from its ServerProfile (server_profile.h):
// the prompt goes as an array of token ids where the server takes them (so every server sees the
// same token counts), else as text through HttpSutOptions::prompt_text; the profile's
// fixed_length_fields (e.g. "ignore_eos": true, vLLM's extension) and max_tokens fix the output
// length (servers without such a field may stop early, which the harness counts as a "short"
// error); stream_options.include_usage is sent only to servers that need it for usage; finish
// reasons are mapped per server, and error bodies of every server's shape become readable text.
// Without a profile: refengine/vLLM conventions (default_http_profile()).
//
// Streaming: Server-Sent Events, one `data: {json}` per chunk, ending with `data: [DONE]`. TTFT is
// taken at the first chunk that carries a token. Tokens per chunk: the length of "token_ids" /
// "logprobs.tokens" when the server sends them, else one per chunk that has text or is not the
// closing chunk (a token's text may be empty); a final "usage.completion_tokens"
// (stream_options.include_usage) corrects the total.
// Transport: keep-alive connections with Nagle off (TCP_NODELAY), one per worker thread; prepare()
// opens them before the timed window; connections opened later are counted in describe().
// Errors by kind: connection failures, HTTP 429, other 4xx, 5xx, malformed streams.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "cb/harness/load/server_profile.h"
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
// token_counting: "token_ids" (the default: a chunk's token_ids / logprobs.tokens list when it has
// one, else one per chunk with text or that is not the closing chunk) or "chunks" (lists ignored).
CompletionChunk parse_completion_chunk(const std::string& json_text, const std::string& token_counting = "token_ids");

struct HttpSutOptions {
  std::string base_url;             // http://HOST:PORT
  std::string model;                // "model" field; empty: the first id of GET /v1/models, else "default"
  double connect_timeout_s = 5;
  double read_timeout_s = 300;
  int max_connections = 512;        // worker threads (one connection each); beyond, requests queue here
  // TCP_NODELAY on every connection (default). Off only to measure what Nagle's algorithm costs:
  // a request goes out as two writes (header, body) and the body then waits ~40 ms for an ACK.
  bool tcp_nodelay = true;
  // Sent as "Authorization: Bearer KEY" on every request; empty: $OPENAI_API_KEY (the variable
  // OpenAI clients read), else no header. Never written to results.
  std::string api_key;
  ServerProfile profile = default_http_profile();
  // Token ids -> prompt text, for profiles with token_id_prompts false (the load suite builds it
  // from the tokenizer); such a profile without it: the constructor throws.
  std::function<std::string(const std::vector<int32_t>&)> prompt_text;
};

// The POST /v1/completions body for one request under a profile: model, prompt (token ids, or
// text through prompt_text), max_tokens, stream, temperature 0, the profile's fixed_length_fields
// ("$max_tokens" replaced by max_tokens), stream_options only when streamed_usage is
// "stream_options". Throws std::invalid_argument when text is needed and prompt_text is empty.
nlohmann::json completion_request_body(const ServerProfile& profile, const std::string& model, const LoadRequest& req,
                                       const std::function<std::string(const std::vector<int32_t>&)>& prompt_text);

class HttpSut : public Sut {
 public:
  explicit HttpSut(HttpSutOptions opt);  // throws std::invalid_argument for a URL it cannot use
  ~HttpSut() override;
  std::string name() const override { return "http:" + opt_.base_url; }
  nlohmann::json describe() const override;
  void issue(const LoadRequest& req, SutCallbacks cb) override;
  void prepare(int expected_in_flight) override;
  void abort_all() override;
  // refengine serve's engine counters from GET /metrics (refengine_engine_busy_seconds_total, ...);
  // nullopt for servers without them.
  std::optional<SutCounters> counters() const override;

  // GET /metrics (Prometheus text); nullopt when it does not answer 200.
  std::optional<std::string> scrape_metrics() const;
  // A gauge from GET /metrics, e.g. refengine_queue_length; nullopt when the endpoint or the gauge
  // is absent.
  std::optional<double> scrape_gauge(const std::string& name) const;
  const std::string& model() const { return model_; }

 private:
  struct Job {
    LoadRequest req;
    SutCallbacks cb;
    bool finished = false;  // its last callback (on_complete / on_error) was delivered
  };
  void worker(bool warm);
  // Sends one request and delivers its callbacks; true when it delivered the last one.
  bool run_one(void* client, Job& job);
  // Counts this worker as finishing (see issue()), then delivers the job's last callback; false
  // when it was already delivered.
  bool finish(Job& job, const std::function<void()>& last_callback);
  // A request that threw (a callback, the client): its on_error, unless its last callback was
  // delivered; never throws.
  void fail_thrown(Job& job, std::exception_ptr ep);

  HttpSutOptions opt_;
  std::string host_;
  int port_ = 80;
  std::string model_;
  std::mutex m_;
  std::condition_variable cv_, cv_ready_;
  int ready_ = 0;                     // workers started by prepare() that have tried to connect
  std::atomic<int> prepared_{0};      // connections opened by prepare()
  std::atomic<int> opened_late_{0};   // workers (connections) started during a run
  std::deque<Job> jobs_;
  std::vector<std::thread> threads_;
  std::vector<void*> clients_;  // each worker's httplib::Client, for abort_all()
  int idle_ = 0;
  int finishing_ = 0;  // workers between their job's last callback and taking the next job
  bool stop_ = false;
  std::atomic<uint64_t> generation_{0};  // abort_all() bumps it; older requests cancel their stream
};

// Parses "http://HOST:PORT[/]" into host and port; throws std::invalid_argument naming the URL.
std::pair<std::string, int> parse_http_url(const std::string& url);

// The value of gauge `name` in a Prometheus text exposition (first sample, labels ignored).
std::optional<double> prometheus_gauge(const std::string& text, const std::string& name);

}  // namespace cb::harness::load
