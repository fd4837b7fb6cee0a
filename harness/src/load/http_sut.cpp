// The null SUT and the HTTP SUT (OpenAI /v1/completions, streamed).
#include <cstdio>
#include <cstdlib>
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <sstream>
#include <stdexcept>

#include "cb/harness/load/http_sut.h"

namespace cb::harness::load {
using nlohmann::json;

// ---- null ---------------------------------------------------------------------------------------

json NullSut::describe() const {
  return {{"sut", "null"}, {"answers", "synchronously on the issuing thread: max_tokens tokens, then completion"}};
}

void NullSut::issue(const LoadRequest& req, SutCallbacks cb) {
  for (int i = 0; i < req.max_tokens; ++i) cb.on_tokens(1);
  cb.on_complete(-1);
}

// ---- SSE ----------------------------------------------------------------------------------------

void SseParser::feed(std::string_view bytes) {
  buf_.append(bytes);
  size_t start = 0;
  for (;;) {
    const size_t nl = buf_.find('\n', start);
    if (nl == std::string::npos) break;
    std::string_view l(buf_.data() + start, nl - start);
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    line(l);
    start = nl + 1;
  }
  buf_.erase(0, start);
}

void SseParser::finish() {
  if (!buf_.empty()) {
    std::string rest;
    rest.swap(buf_);
    if (!rest.empty() && rest.back() == '\r') rest.pop_back();
    line(rest);
  }
  line("");
}

void SseParser::line(std::string_view l) {
  if (l.empty()) {  // end of event
    if (have_data_) {
      std::string d;
      d.swap(data_);
      have_data_ = false;
      on_event_(d);
    }
    return;
  }
  if (l.front() == ':') return;  // comment
  const size_t colon = l.find(':');
  const std::string_view field = l.substr(0, colon);
  std::string_view value = colon == std::string_view::npos ? std::string_view() : l.substr(colon + 1);
  if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (field != "data") return;  // event:, id:, retry: carry nothing we use
  if (have_data_) data_ += '\n';
  data_.append(value);
  have_data_ = true;
}

CompletionChunk parse_completion_chunk(const std::string& text, const std::string& token_counting) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e400
    throw std::invalid_argument(std::string("chunk is not JSON (") + e.what() + "): " + text.substr(0, 120));
  }
  if (!j.is_object()) throw std::invalid_argument("chunk is not a JSON object: " + text.substr(0, 120));
  CompletionChunk c;
  if (j.contains("error")) {
    c.error = j["error"].is_object() && j["error"].contains("message") ? j["error"]["message"].dump() : j["error"].dump();
    return c;
  }
  if (j.contains("usage") && j["usage"].is_object() && j["usage"].contains("completion_tokens") &&
      j["usage"]["completion_tokens"].is_number_integer())
    c.usage_completion_tokens = j["usage"]["completion_tokens"].get<int>();
  if (!j.contains("choices") || !j["choices"].is_array())
    throw std::invalid_argument("chunk has no \"choices\" array: " + text.substr(0, 120));
  if (j["choices"].empty()) {
    if (c.usage_completion_tokens < 0) throw std::invalid_argument("chunk has empty \"choices\" and no usage: " + text.substr(0, 120));
    return c;  // the usage-only chunk of stream_options.include_usage
  }
  const json& ch = j["choices"][0];
  if (!ch.is_object()) throw std::invalid_argument("choices[0] is not an object: " + text.substr(0, 120));
  if (ch.contains("finish_reason") && ch["finish_reason"].is_string()) c.finish_reason = ch["finish_reason"];
  int ids = -1;
  if (token_counting != "chunks") {  // "chunks": one per chunk, whatever lists a chunk carries
    if (ch.contains("token_ids") && ch["token_ids"].is_array()) ids = int(ch["token_ids"].size());
    else if (j.contains("token_ids") && j["token_ids"].is_array()) ids = int(j["token_ids"].size());
    else if (ch.contains("logprobs") && ch["logprobs"].is_object() && ch["logprobs"].contains("tokens") &&
             ch["logprobs"]["tokens"].is_array())
      ids = int(ch["logprobs"]["tokens"].size());
  }
  const bool text_nonempty = ch.contains("text") && ch["text"].is_string() && !ch["text"].get<std::string>().empty();
  // Without token ids, a chunk is one token when it has text, or when it is not the closing chunk:
  // servers stream one chunk per generated token, and a token's text can be empty (part of a UTF-8
  // character held back, a special token); a closing chunk with a finish_reason and no text (as
  // OpenAI sends) carries none. The final usage object corrects the total either way.
  c.tokens = ids >= 0 ? ids : (text_nonempty || c.finish_reason.empty()) ? 1 : 0;
  c.has_text = c.tokens > 0 || text_nonempty;
  return c;
}

// ---- HTTP ---------------------------------------------------------------------------------------

json completion_request_body(const ServerProfile& profile, const std::string& model, const LoadRequest& req,
                             const std::function<std::string(const std::vector<int32_t>&)>& prompt_text) {
  json body = {{"model", model}, {"max_tokens", req.max_tokens}, {"stream", true}, {"temperature", 0}};
  if (profile.token_id_prompts) {
    body["prompt"] = req.prompt;
  } else if (!req.text.empty()) {  // built with the plan by the tokenizer (PlanOptions::to_text)
    body["prompt"] = req.text;
  } else {
    if (!prompt_text)
      throw std::invalid_argument("server profile '" + profile.name +
                                  "' takes text prompts only: the token-id prompts need a tokenizer to become text (pass --tokenizer DIR)");
    body["prompt"] = prompt_text(req.prompt);
  }
  for (const auto& [k, v] : profile.fixed_length_fields.items())
    body[k] = v.is_string() && v.get<std::string>() == "$max_tokens" ? json(req.max_tokens) : v;
  if (profile.streamed_usage == "stream_options") body["stream_options"] = {{"include_usage", true}};
  return body;
}

std::pair<std::string, int> parse_http_url(const std::string& url) {
  const std::string pre = "http://";
  if (url.rfind(pre, 0) != 0) throw std::invalid_argument("SUT URL '" + url + "': expected http://HOST:PORT");
  std::string rest = url.substr(pre.size());
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  if (rest.find('/') != std::string::npos)
    throw std::invalid_argument("SUT URL '" + url + "': expected http://HOST:PORT without a path (the API paths are fixed)");
  const size_t colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    if (rest.empty()) throw std::invalid_argument("SUT URL '" + url + "': no host");
    return {rest, 80};
  }
  const std::string host = rest.substr(0, colon), port = rest.substr(colon + 1);
  int p = 0;
  try {
    size_t used = 0;
    p = std::stoi(port, &used);
    if (used != port.size()) throw std::invalid_argument("trailing");
  } catch (const std::exception&) {
    throw std::invalid_argument("SUT URL '" + url + "': port '" + port + "' is not a number");
  }
  if (p < 1 || p > 65535) throw std::invalid_argument("SUT URL '" + url + "': port " + port + " outside 1..65535");
  return {host, p};
}

std::optional<double> prometheus_gauge(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  std::string l;
  while (std::getline(in, l)) {
    if (l.empty() || l[0] == '#' || l.rfind(name, 0) != 0) continue;
    size_t i = name.size();
    if (i < l.size() && l[i] != ' ' && l[i] != '{') continue;  // a longer name with this prefix
    if (i < l.size() && l[i] == '{') {
      i = l.find('}', i);
      if (i == std::string::npos) continue;
      ++i;
    }
    try {
      return std::stod(l.substr(i));
    } catch (const std::exception&) {
      return std::nullopt;
    }
  }
  return std::nullopt;
}

namespace {
void configure(httplib::Client& c, const HttpSutOptions& o) {
  c.set_keep_alive(true);
  // Nagle off: a request goes out as header + body writes, and with Nagle the body waits for the
  // ACK of the header (delayed ACK: ~40 ms on Linux). Every measured request would carry it.
  c.set_tcp_nodelay(o.tcp_nodelay);
  const auto secs = [](double s) { return std::make_pair(time_t(s), time_t(std::fmod(s, 1.0) * 1e6)); };
  const auto [cs, cu] = secs(o.connect_timeout_s);
  const auto [rs, ru] = secs(o.read_timeout_s);
  c.set_connection_timeout(cs, cu);
  c.set_read_timeout(rs, ru);
  c.set_write_timeout(rs, ru);
  if (!o.api_key.empty()) c.set_bearer_token_auth(o.api_key);
}
}  // namespace

HttpSut::HttpSut(HttpSutOptions opt) : opt_(std::move(opt)) {
  std::tie(host_, port_) = parse_http_url(opt_.base_url);
  if (opt_.max_connections < 1) throw std::invalid_argument("max_connections: must be >= 1");
  if (!opt_.profile.token_id_prompts && !opt_.prompt_text)
    throw std::invalid_argument("server profile '" + opt_.profile.name +
                                "' takes text prompts only: the token-id prompts need a tokenizer to become text (pass --tokenizer DIR)");
  if (opt_.api_key.empty())
    if (const char* env = std::getenv("OPENAI_API_KEY")) opt_.api_key = env;
  model_ = opt_.model;
  if (model_.empty()) {
    // Outside any timed region: which model name the server wants.
    httplib::Client c(host_, port_);
    configure(c, opt_);
    c.set_read_timeout(10, 0);
    if (auto r = c.Get("/v1/models"); r && r->status == 200) {
      try {
        const json j = json::parse(r->body);
        if (j.contains("data") && j["data"].is_array() && !j["data"].empty() && j["data"][0].contains("id"))
          model_ = j["data"][0]["id"].get<std::string>();
      } catch (const std::exception&) {
      }
    }
    if (model_.empty()) model_ = "default";
  }
}

HttpSut::~HttpSut() {
  {
    std::lock_guard lk(m_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

json HttpSut::describe() const {
  const ServerProfile& p = opt_.profile;
  std::string endpoint = std::string("/v1/completions (stream, prompt as ") + (p.token_id_prompts ? "token ids" : "text") + ", " +
                         (p.fixed_length_fields.empty() ? "output length not fixed" : "fixed length: " + p.fixed_length_fields.dump()) +
                         ", usage " + p.streamed_usage + ")";
  return {{"sut", "http"},
          {"base_url", opt_.base_url},
          {"endpoint", endpoint},
          {"server_profile", {{"name", p.name}, {"file", p.file.string()}, {"token_id_prompts", p.token_id_prompts},
                              {"fixed_length_fields", p.fixed_length_fields}, {"streamed_usage", p.streamed_usage},
                              {"token_counting", p.token_counting}}},
          {"model", model_},
          {"max_connections", opt_.max_connections},
          {"connect_timeout_s", opt_.connect_timeout_s},
          {"read_timeout_s", opt_.read_timeout_s},
          {"tcp_nodelay", opt_.tcp_nodelay},
          {"keep_alive", true},
          {"connections_prepared", prepared_.load()},
          {"connections_opened_after_prepare", opened_late_.load()},
          {"authorization", opt_.api_key.empty() ? "none" : "bearer token (value not recorded)"}};
}

void HttpSut::issue(const LoadRequest& req, SutCallbacks cb) {
  std::lock_guard lk(m_);
  jobs_.push_back({req, std::move(cb)});
  // One connection per worker: start another while every worker is busy, up to the cap.
  // Workers that delivered their last callback (finishing_) are about to take the next job: a
  // closed loop issues from inside that callback, and must not open a connection for it.
  if (idle_ + finishing_ < int(jobs_.size()) && int(threads_.size()) < opt_.max_connections) {
    threads_.emplace_back([this] { worker(false); });
    ++opened_late_;
  }
  cv_.notify_one();
}

void HttpSut::prepare(int expected_in_flight) {
  const int want = std::min(std::max(1, expected_in_flight), opt_.max_connections);
  std::unique_lock lk(m_);
  const int have = int(threads_.size());
  for (int i = have; i < want; ++i) threads_.emplace_back([this] { worker(true); });
  // Wait until each new worker has its connection open (or failed to open it).
  cv_ready_.wait_for(lk, std::chrono::duration<double>(opt_.connect_timeout_s + 1), [&] { return ready_ >= want - have; });
  ready_ = 0;
}

void HttpSut::abort_all() {
  ++generation_;
  std::lock_guard lk(m_);
  for (auto& j : jobs_) j.cb.on_error(ErrorKind::Timeout, "aborted before it was sent");
  jobs_.clear();
  // Requests still waiting for response headers see no content callback: shut their sockets.
  for (void* c : clients_) static_cast<httplib::Client*>(c)->stop();
}

void HttpSut::worker(bool warm) {
  auto client = std::make_unique<httplib::Client>(host_, port_);
  configure(*client, opt_);
  // Open the keep-alive connection now, outside the timed window: any answer will do (GET
  // /v1/models is part of every OpenAI-compatible server).
  const bool connected = warm && bool(client->Get("/v1/models"));
  std::unique_lock lk(m_);
  if (connected) ++prepared_;
  clients_.push_back(client.get());
  // abort_all() walks clients_ under m_: erase under m_ too, also on a path that left lk unlocked.
  struct Unregister {
    std::unique_lock<std::mutex>& lk;
    std::vector<void*>& v;
    std::unique_ptr<httplib::Client>& c;
    ~Unregister() {
      if (!lk.owns_lock()) lk.lock();
      v.erase(std::find(v.begin(), v.end(), c.get()));
    }
  } unregister{lk, clients_, client};
  for (;;) {
    ++idle_;
    if (warm) {  // prepare() returns once every new worker is idle, so the first jobs find them
      warm = false;
      ++ready_;
      cv_ready_.notify_all();
    }
    cv_.wait(lk, [&] { return stop_ || !jobs_.empty(); });
    --idle_;
    if (jobs_.empty()) return;  // stop_ and nothing left
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    lk.unlock();
    try {
      run_one(client.get(), job);
    } catch (...) {  // a callback or the client threw: report it, keep the worker
      // The response was left half read on this connection: go on with a new one.
      auto fresh = std::make_unique<httplib::Client>(host_, port_);
      configure(*fresh, opt_);
      {
        std::lock_guard g(m_);
        *std::find(clients_.begin(), clients_.end(), client.get()) = fresh.get();
      }
      client.swap(fresh);
      fail_thrown(job, std::current_exception());
    }
    lk.lock();
    // finish() counted the job as finishing when it marked it finished, even if its callback threw.
    if (job.finished) --finishing_;
  }
}
void HttpSut::fail_thrown(Job& job, std::exception_ptr ep) {
  std::string what = "unknown exception";
  try {
    std::rethrow_exception(ep);
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
  }
  // An exception must not leave the worker thread (std::terminate); a throwing on_error is only logged.
  try {
    if (!finish(job, [&] { job.cb.on_error(ErrorKind::Protocol, "request failed: " + what); }))
      std::fprintf(stderr, "http sut: a callback threw after its request had ended: %s\n", what.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "http sut: on_error threw while reporting '%s': %s\n", what.c_str(), e.what());
  } catch (...) {
    std::fprintf(stderr, "http sut: on_error threw while reporting '%s'\n", what.c_str());
  }
}

bool HttpSut::finish(Job& job, const std::function<void()>& last_callback) {
  if (job.finished) return false;
  {
    std::lock_guard lk(m_);
    ++finishing_;
  }
  job.finished = true;
  last_callback();
  return true;
}

bool HttpSut::run_one(void* client_ptr, Job& job) {
  auto& client = *static_cast<httplib::Client*>(client_ptr);
  const uint64_t gen = generation_.load();
  // Text prompts are decoded here, before on_sent (inside the from-scheduled latency, outside the
  // from-send one).
  const json body = completion_request_body(opt_.profile, model_, job.req, opt_.prompt_text);
  const ServerProfile& profile = opt_.profile;
  httplib::Request rq;
  rq.method = "POST";
  rq.path = "/v1/completions";
  rq.headers = {{"Accept", "text/event-stream"}};
  rq.set_header("Content-Type", "application/json");
  // A text prompt may hold bytes that are not UTF-8 (a byte-level decode): sent as U+FFFD.
  rq.body = body.dump(-1, ' ', false, json::error_handler_t::replace);

  int status = 0;
  std::string error_body;
  bool done_marker = false, failed = false;
  std::string finish_reason;
  int usage = -1, seen = 0;
  SutCallbacks& cb = job.cb;
  auto fail = [&](ErrorKind k, const std::string& msg) {
    if (failed) return;
    failed = true;
    finish(job, [&] { cb.on_error(k, msg); });
  };
  SseParser sse([&](const std::string& data) {
    if (failed || done_marker) return;
    if (data == "[DONE]") {
      done_marker = true;
      return;
    }
    try {
      const CompletionChunk c = parse_completion_chunk(data, profile.token_counting);
      if (!c.error.empty()) return fail(ErrorKind::Protocol, "server sent an error event: " + c.error);
      if (c.usage_completion_tokens >= 0) usage = c.usage_completion_tokens;
      if (!c.finish_reason.empty()) finish_reason = c.finish_reason;
      if (c.tokens > 0) {
        seen += c.tokens;
        cb.on_tokens(c.tokens);
      }
    } catch (const std::invalid_argument& e) {
      fail(ErrorKind::Protocol, e.what());
    }
  });
  rq.response_handler = [&](const httplib::Response& r) {
    status = r.status;
    return true;
  };
  rq.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    if (generation_.load() != gen) return false;  // aborted: close the stream
    if (status != 200) {
      if (error_body.size() < 512) error_body.append(data, std::min<size_t>(n, 512 - error_body.size()));
      return true;
    }
    sse.feed(std::string_view(data, n));
    return !failed;
  };
  httplib::Response res;
  httplib::Error err = httplib::Error::Success;
  if (cb.on_sent) cb.on_sent();
  const bool ok = client.send(rq, res, err);
  if (generation_.load() != gen) return job.finished;  // the run already recorded this request as timed out
  if (failed) return job.finished;
  if (!ok) {
    fail(ErrorKind::Connection, std::string("POST /v1/completions: ") + httplib::to_string(err));
    return job.finished;
  }
  if (status != 200) {
    const ErrorKind k = status == 429 ? ErrorKind::Http429 : status >= 500 ? ErrorKind::Http5xx : ErrorKind::Http4xx;
    fail(k, "HTTP " + std::to_string(status) + ": " + readable_error_body(error_body) + " [server profile " + profile.name + "]");
    return job.finished;
  }
  sse.finish();
  if (failed) return job.finished;
  if (!done_marker && finish_reason.empty()) {
    fail(ErrorKind::Protocol, "stream ended without a finish_reason or data: [DONE] after " + std::to_string(seen) + " tokens");
    return job.finished;
  }
  if (!finish_reason.empty() && !profile.finish_reasons.empty()) {
    const auto it = profile.finish_reasons.find(finish_reason);
    if (it == profile.finish_reasons.end() && finish_reason.rfind("error", 0) == 0) {  // refengine: "error: ..."
      fail(ErrorKind::Engine, "the server ended the request with finish_reason \"" + finish_reason + "\"");
      return job.finished;
    }
    if (it == profile.finish_reasons.end()) {
      std::string known;
      for (const auto& [k, v] : profile.finish_reasons) known += (known.empty() ? "" : ", ") + k;
      fail(ErrorKind::Protocol, "finish_reason \"" + finish_reason + "\" is not one server profile " + profile.name + " knows (" + known +
                                    "): wrong --server-profile?");
      return job.finished;
    }
    if (it->second == "abort" || it->second == "error") {
      fail(ErrorKind::Engine, "the server ended the request with finish_reason \"" + finish_reason + "\" after " + std::to_string(seen) + " tokens");
      return job.finished;
    }
  }
  finish(job, [&] { cb.on_complete(usage); });
  return job.finished;
}

std::optional<std::string> HttpSut::scrape_metrics() const {
  httplib::Client c(host_, port_);
  configure(c, opt_);
  c.set_read_timeout(10, 0);
  auto r = c.Get("/metrics");
  if (!r || r->status != 200) return std::nullopt;
  return r->body;
}

std::optional<double> HttpSut::scrape_gauge(const std::string& name) const {
  const auto text = scrape_metrics();
  return text ? prometheus_gauge(*text, name) : std::nullopt;
}

std::optional<SutCounters> HttpSut::counters() const {
  // refengine serve's engine counters (the ones the in-process SUT reads): the steady
  // window's busy fraction then means over HTTP what it means in-process. Other servers: none.
  const auto text = scrape_metrics();
  if (!text) return std::nullopt;
  const auto busy = prometheus_gauge(*text, "refengine_engine_busy_seconds_total");
  if (!busy) return std::nullopt;
  SutCounters c;
  c.busy_seconds = *busy;
  c.steps = int64_t(prometheus_gauge(*text, "refengine_engine_steps_total").value_or(0));
  c.prefill_tokens = int64_t(prometheus_gauge(*text, "refengine_engine_prefill_tokens_total").value_or(0));
  c.decode_tokens = int64_t(prometheus_gauge(*text, "refengine_engine_decode_tokens_total").value_or(0));
  c.preemptions = int64_t(prometheus_gauge(*text, "refengine_engine_preemptions_total").value_or(0));
  // Only a server on a device backend times its work on the device (CUDA events); else NaN, as
  // the in-process SUT reports a host backend.
  c.device_busy_seconds = prometheus_gauge(*text, "refengine_device_busy_seconds_total").value_or(NAN);
  return c;
}

}  // namespace cb::harness::load
