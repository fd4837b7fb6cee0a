// HTTP wiring of the OpenAI-compatible server: routes, auth, admission, streaming, drain.
// Protocol parsing lives in openai_protocol.cpp, metrics in server_metrics.cpp, the engine
// thread in engine_loop.cpp.
#include "cb/engine/server/server.h"

#include <httplib.h>

#include <atomic>
#include <deque>
#include <optional>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <ctime>

#include "cb/engine/model/engine.h"
#include "cb/engine/server/listen_backlog.h"
#include "cb/engine/server/openai_protocol.h"
#include "cb/engine/server/sequence_logprobs.h"

namespace cb::engine {

using nlohmann::json;

namespace {

constexpr int kDefaultMinHttpThreads = 1024;  // see Server::start

void send_error(httplib::Response& res, int status, const std::string& message, const std::string& type,
                const std::string& param, const std::string& code) {
  res.status = status;
  res.set_content(json_text(error_body(message, type, param, code)), "application/json");
}

// The field an engine validation message is about (its messages start with the field name).
std::string param_of(const std::string& msg) {
  if (msg.rfind("prompt (", 0) == 0 || msg.rfind("request needs", 0) == 0) return "max_tokens";
  for (const char* f : {"max_tokens", "prompt", "temperature", "top_k", "top_p", "n"})
    if (msg.rfind(std::string(f) + ":", 0) == 0 || msg.rfind(std::string(f) + " ", 0) == 0) return f;
  return "";
}

bool same_secret(const std::string& a, const std::string& b) {
  // Constant time in the content, so a wrong key does not leak how much of it matched.
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i % (b.empty() ? 1 : b.size())]);
  return diff == 0 && !b.empty();
}

// One completion request as both sides see it: the engine thread appends (on_event, must not
// block), the HTTP thread reads (non-streaming: waits for the end; streaming: sends as it comes).
struct Completion {
  struct Sample {
    std::optional<tok::StreamingDecoder> detok;  // the model's tokenizer, made at the first token
    Utf8Assembler utf8;                          // then invalid bytes become U+FFFD
    StopText text;
    size_t sent = 0;       // bytes of text already streamed
    std::deque<size_t> marks;  // text length after each token not streamed yet: one SSE event per token
    int tokens = 0;
    std::vector<int32_t> ids;  // generated tokens behind the text (EOS excluded), for logprobs
    bool done = false;     // no more text (engine finish or stop string)
    bool final_sent = false;
    std::string reason;    // OpenAI finish reason, or "abort" / "error: ..."
    explicit Sample(const std::vector<std::string>* stops) : text(stops) {}
  };

  std::mutex m;
  std::condition_variable cv;
  CompletionRequest req;
  std::string id, model;
  int64_t created = 0;
  double t_arrival = 0, t_first = -1, t_done = -1;
  int prompt_tokens = 0, completion_tokens = 0;
  int engine_finished = 0, done = 0;
  std::vector<Sample> samples;

  bool all_done() const { return done == int(samples.size()); }
};

// Wakes the HTTP threads waiting on completions, off the engine thread. Each wake is a futex
// syscall (under a hypervisor an inter-processor interrupt as well); done on the engine thread, one
// per token, they took as much of its time as the forward pass (perf on a 2-vCPU VM at HTTP
// saturation: futex_wake 869 samples, the kernels 842). The engine thread now hands the completion
// over and wakes this thread at most once per batch of hand-overs.
class Waker {
 public:
  Waker() : thread_([this] { run(); }) {}
  ~Waker() {
    {
      std::lock_guard lk(m_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  Waker(const Waker&) = delete;
  Waker& operator=(const Waker&) = delete;

  void wake(std::shared_ptr<Completion> c) {
    bool notify = false;
    {
      std::lock_guard lk(m_);
      notify = waiting_ && pending_.empty();  // a busy waker drains the list before it waits again
      pending_.push_back(std::move(c));
    }
    if (notify) cv_.notify_one();
  }

 private:
  void run() {
    std::unique_lock lk(m_);
    std::vector<std::shared_ptr<Completion>> batch;
    for (;;) {
      waiting_ = true;
      cv_.wait(lk, [&] { return stop_ || !pending_.empty(); });
      waiting_ = false;
      if (pending_.empty()) return;  // stop_ and nothing left
      batch.swap(pending_);
      lk.unlock();
      for (auto& c : batch) c->cv.notify_all();
      batch.clear();
      lk.lock();
    }
  }

  std::mutex m_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<Completion>> pending_;
  bool waiting_ = false, stop_ = false;
  std::thread thread_;  // last: starts once the members above exist
};

}  // namespace

struct Server::Impl {
  ServerOptions opt;
  std::unique_ptr<LoadedModel> model;
  std::string name;
  int context = 0;
  int64_t started_unix = 0;
  ServerMetrics metrics;             // before `loop`: callbacks run until the loop is destroyed
  // Between `model` and `loop`: destroyed after the loop (no step runs any more) and before the
  // model, it releases a tensor-parallel group's follower ranks.
  struct ReleaseFollowers {
    LoadedModel* model = nullptr;
    ~ReleaseFollowers() {
      if (!model) return;
      try {
        finish_tp_leader(*model);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "server: releasing tensor-parallel followers: %s\n", e.what());
      }
    }
  } release_followers;
  Waker waker;                       // before `loop`: the loop's callbacks hand completions to it
  std::unique_ptr<EngineLoop> loop;
  httplib::Server http;
  cb::net::ListenBacklog backlog{http};  // httplib's 5 would drop SYNs of a connection burst
  std::thread listener;
  std::mutex join_m;                 // one joiner of `listener`
  std::string host;
  int bound_port = -1;
  std::atomic<bool> draining{false};
  std::atomic<int64_t> next_id{1};

  std::mutex life_m;                 // in_flight, http_stopped, listener_done, listener join
  std::condition_variable life_cv;
  int in_flight = 0;
  bool http_stopped = false;
  bool listener_done = false;
  bool started = false;

  void routes();
  bool authorized(const httplib::Request& req, httplib::Response& res) const;
  void completions(const httplib::Request& req, httplib::Response& res);
  void on_event(const std::shared_ptr<Completion>& c, const TokenEvent& e);
  // echo / logprobs: the text of tokens as the choices show them, and choices[i].logprobs for the
  // prompt (echo) and generated tokens, scored on the engine thread between steps.
  std::string tokens_text(const std::vector<int32_t>& ids) const;
  json choice_logprobs(const CompletionRequest& r, const std::vector<int32_t>& generated);
  void prompt_only(const CompletionRequest& r, const std::string& id, httplib::Response& res);
  void stream(const std::shared_ptr<Completion>& c, RequestId id, httplib::Response& res);
  void begin_flight() {
    std::lock_guard lk(life_m);
    ++in_flight;
  }
  void end_flight() {
    std::lock_guard lk(life_m);
    --in_flight;
    life_cv.notify_all();
  }
  void wait_flights(std::chrono::seconds limit) {
    std::unique_lock lk(life_m);
    life_cv.wait_for(lk, limit, [&] { return in_flight == 0; });
  }
  void stop_http() {
    std::lock_guard lk(life_m);
    if (http_stopped) return;
    http_stopped = true;
    http.stop();
  }
};

Server::Server(ServerOptions opt) : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.opt = std::move(opt);
  if (s.opt.max_body_bytes < 64) throw std::invalid_argument("max_body_bytes: must be >= 64");
  if (!(s.opt.sse_keepalive_s >= 0)) throw std::invalid_argument("sse_keepalive_s: must be >= 0 (0: no keep-alive comments)");
  if (s.opt.model_dir.empty()) s.opt.model_dir = default_model_dir();
  LoadOptions load;
  load.step_graphs = s.opt.step_graphs;
  s.model = LoadedModel::open(s.opt.model_dir, s.opt.backend, s.opt.tp, load);
  s.name = s.opt.model_name;
  if (s.name.empty()) {
    s.name = std::filesystem::absolute(s.opt.model_dir).lexically_normal().filename().string();
    if (s.name.empty()) s.name = std::filesystem::absolute(s.opt.model_dir).lexically_normal().parent_path().filename().string();
  }
  s.release_followers.model = s.model.get();
  s.context = s.model->config().max_position_embeddings;
  s.started_unix = int64_t(std::time(nullptr));
  EngineOptions eo = std::move(s.opt.engine);
  eo.record_steps = false;
  s.loop = std::make_unique<EngineLoop>(*s.model, std::move(eo), s.opt.max_queue);
  s.loop->set_step_delay(s.opt.step_delay_s);
  s.routes();
}

Server::~Server() {
  if (impl_) stop();
}

int Server::start(const std::string& host, int port) {
  Impl& s = *impl_;
  if (s.started) throw std::runtime_error("server: already started");
  // A client that disconnects must not kill the process: writes then fail with EPIPE instead.
  std::signal(SIGPIPE, SIG_IGN);
  // cpp-httplib serves a keep-alive connection on one pool thread for as long as it stays open, so
  // the pool must cover the connections clients keep (a load generator's connection cap: 512 for
  // claimbench's HTTP SUT), not only the requests in flight; else a request waits, unseen, for a
  // thread to free up.
  const int threads = s.opt.http_threads > 0 ? s.opt.http_threads : std::max(s.opt.max_queue + 64, kDefaultMinHttpThreads);
  s.http.new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
  s.http.set_payload_max_length(s.opt.max_body_bytes);
  s.http.set_tcp_nodelay(true);  // SSE chunks are small: no Nagle delay on streamed tokens
  // cpp-httplib closes a keep-alive connection after 5 requests by default: a client would then
  // reconnect every 5 requests, and the reconnects would land in measured latency. The idle
  // timeout stays at 5 s: an idle connection also holds up stop() and the SIGTERM drain that long.
  s.http.set_keep_alive_max_count(size_t(1) << 30);
  const int p = port == 0 ? s.http.bind_to_any_port(host) : (s.http.bind_to_port(host, port) ? port : -1);
  if (p <= 0) throw std::runtime_error("server: cannot listen on " + host + ":" + std::to_string(port) + " (address in use or not local?)");
  s.backlog.widen();
  s.host = host;
  s.bound_port = p;
  {
    std::lock_guard lk(s.life_m);
    s.started = true;
  }
  s.listener = std::thread([&s] {
    s.http.listen_after_bind();  // returns once stopped and every worker has finished
    std::lock_guard lk(s.life_m);
    s.listener_done = true;
    s.life_cv.notify_all();
  });
  for (int i = 0; i < 5000 && !s.http.is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (!s.http.is_running()) throw std::runtime_error("server: listener on " + url() + " did not start");
  return p;
}

int Server::port() const { return impl_->bound_port; }
std::string Server::url() const { return "http://" + impl_->host + ":" + std::to_string(impl_->bound_port); }
bool Server::running() const {
  std::lock_guard lk(impl_->life_m);
  return impl_->started && !impl_->listener_done;
}
bool Server::draining() const { return impl_->draining; }
EngineLoop& Server::engine() { return *impl_->loop; }
const ServerMetrics& Server::metrics() const { return impl_->metrics; }
const std::string& Server::model_name() const { return impl_->name; }

void Server::drain() {
  Impl& s = *impl_;
  s.draining = true;
  s.loop->drain();                            // every accepted request has finished in the engine
  s.wait_flights(std::chrono::seconds(30));   // ... and its response or stream is written out
  s.stop_http();
  wait();
}

void Server::stop() {
  Impl& s = *impl_;
  s.draining = true;
  s.loop->stop_accepting();
  s.loop->abort_all();
  s.wait_flights(std::chrono::seconds(5));
  s.stop_http();
  wait();
  std::lock_guard lk(s.join_m);
  if (s.listener.joinable()) s.listener.join();
}

void Server::wait() {
  Impl& s = *impl_;
  std::unique_lock lk(s.life_m);
  if (!s.started) return;
  s.life_cv.wait(lk, [&] { return s.listener_done; });
}

bool Server::Impl::authorized(const httplib::Request& req, httplib::Response& res) const {
  if (opt.api_key.empty()) return true;
  const std::string h = req.get_header_value("Authorization");
  const std::string prefix = "Bearer ";
  if (h.rfind(prefix, 0) == 0 && same_secret(h.substr(prefix.size()), opt.api_key)) return true;
  send_error(res, 401,
             h.empty() ? "missing API key: send the header 'Authorization: Bearer <key>'" : "invalid API key in the Authorization header",
             "invalid_request_error", "", "invalid_api_key");
  res.set_header("WWW-Authenticate", "Bearer");
  return false;
}

void Server::Impl::routes() {
  http.set_logger([this](const httplib::Request& req, const httplib::Response& res) { metrics.count_response(req.path, res.status); });
  // Fills in an OpenAI-style body for errors httplib produces itself (404, 413, ...).
  http.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 413) {
      std::string msg = "request body";
      if (req.has_header("Content-Length")) msg += " of " + req.get_header_value("Content-Length") + " bytes";
      msg += " exceeds the limit of " + std::to_string(opt.max_body_bytes) + " bytes (--max-body-bytes)";
      if (req.get_header_value("Content-Type") == "application/x-www-form-urlencoded")
        msg = "form-encoded bodies are limited to 8192 bytes; send the JSON with 'Content-Type: application/json'";
      send_error(res, 413, msg, "invalid_request_error", "", "request_too_large");
    } else if (res.status == 404) {
      send_error(res, 404, "no route for " + req.method + " " + req.path, "invalid_request_error", "", "not_found");
    } else {
      send_error(res, res.status, "HTTP error " + std::to_string(res.status), "invalid_request_error", "", "");
    }
  });
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, 500, "internal error: " + what, "server_error", "", "internal_error");
  });

  http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (draining) {
      res.status = 503;
      res.set_content("draining", "text/plain");
    } else {
      res.set_content("ok", "text/plain");
    }
  });
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    ServerGauges g;
    g.waiting = loop->waiting();
    g.max_queue = loop->max_queue();
    g.draining = draining;
    g.model = name;
    g.policy = loop->policy().name();
    {
      std::lock_guard lk(life_m);
      g.in_flight = in_flight;
    }
    res.set_content(metrics.render(loop->stats(), g), "text/plain; version=0.0.4; charset=utf-8");
  });
  http.Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    json m = {{"id", name}, {"object", "model"}, {"created", started_unix}, {"owned_by", "refengine"}, {"max_model_len", context}};
    res.set_content(json_text(json{{"object", "list"}, {"data", json::array({m})}}), "application/json");
  });
  http.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) { completions(req, res); });
}

void Server::Impl::completions(const httplib::Request& req, httplib::Response& res) {
  const double t_arrival = steady_seconds();
  if (draining) return send_error(res, 503, "the server is draining and accepts no new requests", "server_error", "", "draining");
  if (!authorized(req, res)) return;
  CompletionRequest cr;
  try {
    cr = parse_completion_request(req.body, model->tokenizer(), context);
  } catch (const ProtocolError& e) {
    res.status = e.status;
    res.set_content(json_text(error_body(e)), "application/json");
    return;
  }
  if (!cr.model.empty() && cr.model != name)
    return send_error(res, 404, "the model '" + cr.model + "' does not exist; this server serves '" + name + "'",
                      "invalid_request_error", "model", "model_not_found");

  if ((cr.echo || cr.wants_logprobs()) && model->tp_comm())
    return send_error(res, 400, std::string(cr.echo ? "echo" : "logprobs") + ": not supported by a tensor-parallel server",
                      "invalid_request_error", cr.echo ? "echo" : "logprobs", "unsupported");
  if (cr.max_tokens == 0) {  // echo = true (checked in parsing): the prompt alone, no generation
    begin_flight();
    struct EndFlight {
      Impl* s;
      ~EndFlight() { s->end_flight(); }
    } end{this};
    return prompt_only(cr, "cmpl-" + std::to_string(started_unix) + "-" + std::to_string(next_id++), res);
  }

  auto c = std::make_shared<Completion>();
  c->req = std::move(cr);
  c->id = "cmpl-" + std::to_string(started_unix) + "-" + std::to_string(next_id++);
  c->model = name;
  c->created = int64_t(std::time(nullptr));
  c->t_arrival = t_arrival;
  c->prompt_tokens = int(c->req.prompt_ids.size());
  c->samples.reserve(c->req.n);
  for (int i = 0; i < c->req.n; ++i) c->samples.emplace_back(&c->req.stop);

  RequestParams p;
  p.prompt = c->req.prompt_ids;
  p.max_tokens = c->req.max_tokens;
  p.n = c->req.n;
  p.stop_at_eos = !c->req.ignore_eos;
  p.sampling.temperature = c->req.temperature;
  p.sampling.top_p = c->req.top_p;
  p.sampling.top_k = c->req.top_k;
  p.sampling.seed = c->req.seed;

  begin_flight();
  struct FlightGuard {
    Impl* s;
    bool armed = true;
    ~FlightGuard() {
      if (armed) s->end_flight();
    }
  } guard{this};
  RequestId id = 0;
  try {
    id = loop->submit(std::move(p), [this, c](const TokenEvent& e) { on_event(c, e); });
  } catch (const QueueFullError& e) {
    res.set_header("Retry-After", std::to_string(opt.retry_after_s));
    return send_error(res, 429, std::string("server busy: ") + e.what() + "; retry later", "rate_limit_error", "", "queue_full");
  } catch (const std::invalid_argument& e) {
    return send_error(res, 400, e.what(), "invalid_request_error", param_of(e.what()), "invalid_value");
  } catch (const std::runtime_error& e) {
    return send_error(res, 503, std::string("the server is draining: ") + e.what(), "server_error", "", "draining");
  }

  if (c->req.stream) {
    guard.armed = false;  // the stream's releaser ends the flight
    return stream(c, id, res);
  }
  std::unique_lock lk(c->m);
  c->cv.wait(lk, [&] { return c->all_done(); });
  std::vector<ChoiceResult> choices;
  std::vector<std::vector<int32_t>> generated;
  for (const auto& s : c->samples) {
    if (s.reason == "abort")
      return send_error(res, 503, "the request was aborted: the server is shutting down", "server_error", "", "aborted");
    if (s.reason.rfind("error", 0) == 0) return send_error(res, 500, "engine " + s.reason, "server_error", "", "engine_error");
    choices.push_back({s.text.text(), s.reason});
    generated.push_back(s.ids);
  }
  lk.unlock();  // the engine thread takes c->m in on_event: never wait for it while holding it
  if (c->req.echo || c->req.wants_logprobs()) {
    const std::string echoed = c->req.echo ? tokens_text(c->req.prompt_ids) : "";
    try {
      for (size_t i = 0; i < choices.size(); ++i) {
        choices[i].text = echoed + choices[i].text;
        if (c->req.wants_logprobs()) choices[i].logprobs = choice_logprobs(c->req, generated[i]);
      }
    } catch (const std::exception& e) {
      return send_error(res, 503, std::string("log-probabilities: ") + e.what(), "server_error", "", "logprobs_failed");
    }
  }
  res.set_content(json_text(completion_response(c->id, c->created, c->model, choices, c->prompt_tokens, c->completion_tokens)),
                  "application/json");
}

std::string Server::Impl::tokens_text(const std::vector<int32_t>& ids) const {
  // Ids past the tokenizer's vocabulary (a model padded beyond it) have no text.
  const auto& tok = model->tokenizer();
  std::vector<int32_t> known;
  for (int32_t id : ids)
    if (id >= 0 && id < tok.vocab_size()) known.push_back(id);
  return tok.decode(known);
}

json Server::Impl::choice_logprobs(const CompletionRequest& r, const std::vector<int32_t>& generated) {
  std::vector<int32_t> seq = r.prompt_ids;
  seq.insert(seq.end(), generated.begin(), generated.end());
  std::vector<PositionLogprobs> lp;
  loop->run_exclusive([&] { lp = sequence_logprobs(*model, seq, r.logprobs); });
  std::vector<TokenLogprob> out;
  for (size_t i = r.echo ? 0 : r.prompt_ids.size(); i < seq.size(); ++i) {
    TokenLogprob t;
    t.token = seq[i];
    if (i > 0) t.logprob = lp[i].logprob, t.top = std::move(lp[i].top);
    out.push_back(std::move(t));
  }
  // Each token's own text (a byte of a multi-byte character stays that byte, as OpenAI's "tokens").
  return logprobs_json(out, [this](int32_t id) { return tokens_text({id}); });
}

void Server::Impl::prompt_only(const CompletionRequest& r, const std::string& id, httplib::Response& res) {
  ChoiceResult choice{tokens_text(r.prompt_ids), "length"};
  if (r.wants_logprobs()) {
    try {
      choice.logprobs = choice_logprobs(r, {});
    } catch (const std::exception& e) {
      return send_error(res, 503, std::string("log-probabilities: ") + e.what(), "server_error", "", "logprobs_failed");
    }
  }
  const std::vector<ChoiceResult> choices(size_t(r.n), choice);
  res.set_content(json_text(completion_response(id, int64_t(std::time(nullptr)), name, choices, int(r.prompt_ids.size()), 0)),
                  "application/json");
}

// Runs on the engine thread: append, detect stop strings, finish; never blocks for long.
void Server::Impl::on_event(const std::shared_ptr<Completion>& c, const TokenEvent& e) {
  bool record = false, abort_engine = false;
  {
    std::lock_guard lk(c->m);
    if (e.finished) ++c->engine_finished;
    if (e.sample < 0 || e.sample >= int(c->samples.size())) return;
    Completion::Sample& s = c->samples[size_t(e.sample)];
    if (s.done) return;  // stopped by a stop string; later tokens are not sent
    bool finish = false;
    std::string reason;
    if (!e.finished) {
      const double t = steady_seconds();
      if (c->t_first < 0) c->t_first = t;
      ++c->completion_tokens;
      ++s.tokens;
      const bool eos = !c->req.ignore_eos && model->config().is_eos(e.token);
      if (!eos) s.ids.push_back(e.token);
      if (!s.detok) s.detok.emplace(model->tokenizer());
      // Ids past the tokenizer's vocabulary (a model padded beyond it) have no text.
      const bool has_text = !eos && e.token >= 0 && e.token < model->tokenizer().vocab_size();
      if (has_text && s.text.append(s.utf8.feed(s.detok->push(e.token)))) finish = true, reason = "stop";
      if (c->req.stream) s.marks.push_back(s.text.text().size());
    } else {
      finish = true;
      reason = e.finish_reason == "abort" || e.finish_reason.rfind("error", 0) == 0 ? e.finish_reason : openai_finish_reason(e.finish_reason);
      if (reason == "stop" || reason == "length")
        if (s.text.append(s.utf8.feed(s.detok ? s.detok->finish() : std::string()) + s.utf8.flush())) reason = "stop";
    }
    if (finish) {
      s.done = true;
      s.reason = reason;
      ++c->done;
      if (c->all_done()) {
        c->t_done = steady_seconds();
        record = true;
        abort_engine = c->engine_finished < int(c->samples.size());  // stop strings ended it early
      }
    }
  }
  // Recorded before the client is woken: once it has its last token, /metrics already counts it.
  if (record) {
    int max_tokens = 0;
    std::vector<std::string> reasons;
    for (const auto& s : c->samples) {
      max_tokens = std::max(max_tokens, s.tokens);
      reasons.push_back(s.reason);
    }
    const double ttft = c->t_first < 0 ? -1 : c->t_first - c->t_arrival;
    const double tpot = max_tokens >= 2 ? (c->t_done - c->t_first) / (max_tokens - 1) : -1;
    metrics.observe_completion(ttft, tpot, c->t_done - c->t_arrival, c->prompt_tokens, c->completion_tokens, reasons);
  }
  waker.wake(c);
  if (abort_engine) loop->abort(e.request);
}

void Server::Impl::stream(const std::shared_ptr<Completion>& c, RequestId id, httplib::Response& res) {
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, c, id, last_write = steady_seconds()](size_t, httplib::DataSink& sink) mutable {
        std::string out;
        bool finished = false, failed = false;
        std::string failure;
        {
          std::unique_lock lk(c->m);
          auto news = [&] {
            for (const auto& s : c->samples)
              if ((s.done && !s.final_sent) || s.text.ready(s.done) > s.sent) return true;
            return false;
          };
          // Bounded wait: httplib calls again; a stopped server ends the loop between calls.
          c->cv.wait_for(lk, std::chrono::milliseconds(200), news);
          int finals = 0;
          for (size_t i = 0; i < c->samples.size(); ++i) {
            auto& s = c->samples[i];
            if (s.final_sent) {
              ++finals;
              continue;
            }
            const size_t ready = s.text.ready(s.done);
            const bool end = s.done && (s.reason == "stop" || s.reason == "length");
            if (s.done && !end) {
              failed = true;
              failure = s.reason;
              s.final_sent = true;
              ++finals;
              continue;
            }
            // One event per token, also for a token whose text is empty (part of a UTF-8
            // character held back, or a special token), so that a client can count tokens and
            // time each one from the events alone; the finish_reason then comes in a closing
            // event of its own (as OpenAI sends it), so the count does not depend on whether the
            // finish arrived in the same write as the last token.
            while (!s.marks.empty() && s.marks.front() <= ready) {
              const size_t mark = std::max(s.marks.front(), s.sent);
              s.marks.pop_front();
              out += sse_event(completion_chunk(c->id, c->created, c->model, int(i), s.text.text().substr(s.sent, mark - s.sent), ""));
              s.sent = mark;
            }
            if (end && !s.final_sent) {
              out += sse_event(completion_chunk(c->id, c->created, c->model, int(i), s.text.text().substr(s.sent, ready - s.sent),
                                                s.reason));
              s.sent = ready;
              s.marks.clear();
            }
            if (end) {
              s.final_sent = true;
              ++finals;
            }
          }
          finished = finals == int(c->samples.size());
          if (finished && !failed && c->req.include_usage)
            out += sse_event(usage_chunk(c->id, c->created, c->model, c->prompt_tokens, c->completion_tokens));
        }
        if (failed) {
          const bool aborted = failure == "abort";
          out += sse_event(error_body(aborted ? "the request was aborted: the server is shutting down" : "engine " + failure,
                                      "server_error", "", aborted ? "aborted" : "engine_error"));
          finished = true;
        }
        if (finished) out += "data: [DONE]\n\n";
        const double now = steady_seconds();
        if (out.empty() && opt.sse_keepalive_s > 0 && now - last_write >= opt.sse_keepalive_s) out = ": keep-alive\n\n";
        if (!out.empty()) {
          if (!sink.write(out.data(), out.size())) {
            loop->abort(id);  // the client went away
            return false;
          }
          last_write = now;
        }
        if (finished) sink.done();
        return true;
      },
      [this, c, id](bool success) {
        if (!success) {
          std::lock_guard lk(c->m);
          if (!c->all_done()) loop->abort(id);
        }
        end_flight();
      });
}

}  // namespace cb::engine
