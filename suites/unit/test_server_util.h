// Helpers for the server tests: an in-process Server on 127.0.0.1 (port 0) with a client, JSON
// posts, and an SSE reader.
#pragma once

#include <httplib.h>

#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cb/engine/server/server.h"

namespace cb::engine::testing {

using nlohmann::json;

inline ServerOptions small_options() {
  ServerOptions o;
  o.engine.num_blocks = 256;
  o.engine.block_size = 16;
  o.max_queue = 16;
  o.http_threads = 16;  // the default (max_queue + 64) is more than these tests need
  return o;
}

struct Running {
  std::unique_ptr<Server> server;
  int port = 0;
  explicit Running(ServerOptions o = small_options()) {
    server = std::make_unique<Server>(std::move(o));
    port = server->start("127.0.0.1", 0);
  }
  std::unique_ptr<httplib::Client> client() const {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", port);
    c->set_read_timeout(60, 0);
    c->set_write_timeout(60, 0);
    return c;
  }
  // POST /v1/completions; returns {status, parsed body (null when not JSON)}.
  std::pair<int, json> complete(const std::string& body, const httplib::Headers& h = {}) const {
    auto c = client();
    auto r = c->Post("/v1/completions", h, body, "application/json");
    if (!r) return {-1, json()};
    return {r->status, json::parse(r->body, nullptr, false)};
  }
};

// A streamed completion: the SSE `data:` payloads in order and how many reads delivered them.
struct Stream {
  int status = -1;
  std::vector<std::string> events;  // payloads after "data: "
  int comments = 0;                  // SSE comment lines (": keep-alive" while nothing is ready)
  int reads = 0;
  std::string raw;
};

// Reads the SSE stream; `on_read` may return false to hang up (client disconnect).
inline Stream stream_completion(const Running& r, const std::string& body,
                                const std::function<bool(const Stream&)>& on_read = {}) {
  Stream s;
  auto c = r.client();
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = body;
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    s.raw.append(data, n);
    ++s.reads;
    size_t pos;
    while ((pos = s.raw.find("\n\n")) != std::string::npos) {
      std::string ev = s.raw.substr(0, pos);
      s.raw.erase(0, pos + 2);
      if (ev.rfind("data: ", 0) == 0) s.events.push_back(ev.substr(6));
      else if (ev.rfind(':', 0) == 0) ++s.comments;
      else ADD_FAILURE() << "not an SSE data event: " << ev;
    }
    return on_read ? on_read(s) : true;
  };
  auto res = c->send(req);
  if (res) s.status = res->status;
  return s;
}

}  // namespace cb::engine::testing
