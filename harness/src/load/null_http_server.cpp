// The null OpenAI-compatible server (see include/cb/harness/load/null_http_server.h).
#include "cb/harness/load/null_http_server.h"

#include <httplib.h>

#include "cb/engine/server/listen_backlog.h"

#include <atomic>
#include <chrono>
#include <csignal>
#include <stdexcept>
#include <thread>

#include <nlohmann/json.hpp>

namespace cb::harness::load {
using nlohmann::json;

struct NullHttpServer::Impl {
  httplib::Server http;
  cb::net::ListenBacklog backlog{http};  // httplib's 5 would drop SYNs of a connection burst
  std::thread listener;
  std::string host;
  int port = 0;
  std::atomic<long long> completions{0};
};

NullHttpServer::NullHttpServer(int threads) : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.http.new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
  s.http.set_tcp_nodelay(true);
  s.http.set_keep_alive_max_count(size_t(1) << 30);  // idle timeout: httplib's 5 s (it also bounds stop())
  s.http.Get("/health", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok", "text/plain"); });
  s.http.Get("/v1/models", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"object":"list","data":[{"id":"null","object":"model","owned_by":"claimbench"}]})", "application/json");
  });
  s.http.Get("/metrics", [&s](const httplib::Request&, httplib::Response& res) {
    res.set_content("# TYPE null_completions_total counter\nnull_completions_total " + std::to_string(s.completions.load()) + "\n",
                    "text/plain; version=0.0.4");
  });
  s.http.Post("/v1/completions", [&s](const httplib::Request& req, httplib::Response& res) {
    int n = 16;
    bool stream = false;
    try {
      const json body = json::parse(req.body);
      n = std::max(1, body.value("max_tokens", 16));
      stream = body.value("stream", false);
    } catch (const std::exception& e) {
      res.status = 400;
      res.set_content(json{{"error", {{"message", std::string("body is not JSON: ") + e.what()}, {"type", "invalid_request_error"}}}}.dump(),
                      "application/json");
      return;
    }
    ++s.completions;
    if (!stream) {
      res.set_content(json{{"object", "text_completion"},
                           {"model", "null"},
                           {"choices", {{{"index", 0}, {"text", std::string(size_t(n), 'x')}, {"finish_reason", "length"}}}},
                           {"usage", {{"prompt_tokens", 0}, {"completion_tokens", n}, {"total_tokens", n}}}}
                          .dump(),
                      "application/json");
      return;
    }
    // The whole stream in one write: the point is the transport and the client, not pacing.
    std::string out;
    for (int i = 0; i < n; ++i)
      out += std::string("data: {\"object\":\"text_completion\",\"model\":\"null\",\"choices\":[{\"index\":0,\"text\":\"x\",\"finish_reason\":") +
             (i + 1 == n ? "\"length\"" : "null") + "}]}\n\n";
    out += "data: {\"object\":\"text_completion\",\"model\":\"null\",\"choices\":[],\"usage\":{\"prompt_tokens\":0,\"completion_tokens\":" +
           std::to_string(n) + ",\"total_tokens\":" + std::to_string(n) + "}}\n\ndata: [DONE]\n\n";
    res.set_content(out, "text/event-stream");
  });
}

NullHttpServer::~NullHttpServer() { stop(); }

int NullHttpServer::start(const std::string& host, int port) {
  Impl& s = *impl_;
  std::signal(SIGPIPE, SIG_IGN);  // a client that hangs up must not end the process
  const int p = port == 0 ? s.http.bind_to_any_port(host) : (s.http.bind_to_port(host, port) ? port : -1);
  if (p <= 0) throw std::runtime_error("null server: cannot listen on " + host + ":" + std::to_string(port));
  s.backlog.widen();
  s.host = host;
  s.port = p;
  s.listener = std::thread([&s] { s.http.listen_after_bind(); });
  for (int i = 0; i < 5000 && !s.http.is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (!s.http.is_running()) throw std::runtime_error("null server: listener did not start");
  return p;
}

void NullHttpServer::stop() {
  if (!impl_) return;
  if (impl_->http.is_running()) impl_->http.stop();
  if (impl_->listener.joinable()) impl_->listener.join();
}

std::string NullHttpServer::url() const { return "http://" + impl_->host + ":" + std::to_string(impl_->port); }
long long NullHttpServer::completions() const { return impl_->completions.load(); }

}  // namespace cb::harness::load
