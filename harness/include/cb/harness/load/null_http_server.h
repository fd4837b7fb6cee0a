// A null OpenAI-compatible HTTP server: it answers POST /v1/completions at once, with no model
// behind it (max_tokens streamed chunks, a finish_reason, the usage chunk and [DONE]; or one JSON
// body without "stream"), plus GET /v1/models, /health and /metrics. Against it, a load
// generator's own ceiling is measured (requests/s, latency) and compared with an HTTP load anchor
// (wrk) on the same requests. Same transport settings as `refengine serve`: TCP_NODELAY,
// keep-alive without a request limit, a thread per open connection.
#pragma once

#include <memory>
#include <string>

namespace cb::harness::load {

class NullHttpServer {
 public:
  explicit NullHttpServer(int threads = 1024);
  ~NullHttpServer();
  NullHttpServer(const NullHttpServer&) = delete;
  NullHttpServer& operator=(const NullHttpServer&) = delete;

  // Binds host:port (0 = any free port), starts serving on its own thread; returns the port.
  // Throws std::runtime_error when it cannot bind.
  int start(const std::string& host = "127.0.0.1", int port = 0);
  void stop();
  std::string url() const;
  long long completions() const;  // POST /v1/completions answered

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cb::harness::load
