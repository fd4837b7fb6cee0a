// A deep accept queue for cpp-httplib servers (refengine serve, claimbench's null server).
//
// Debian's cpp-httplib 0.11 listens with a backlog of 5 (CPPHTTPLIB_LISTEN_BACKLOG, fixed when the
// library was compiled). A burst of new connections (a load generator opening its pool, clients
// reconnecting after an abort) overflows that queue; Linux then drops SYNs and handshake ACKs:
// every dropped SYN costs its client a 1 s, 3 s, ... retransmit that lands in measured latency as
// if the server were slow, and a dropped final ACK leaves a client sending into a connection the
// server never accepts (ci/soak.sh: 4-6% of a burst of 600 requests to an idle server got no
// answer within 20 s; /health took 1-2.5 s under the soak; one quick load run: 45 ListenOverflows). So: remember the listening socket when httplib makes it (its socket-options hook runs
// before bind), and after the bind listen on it again with a large backlog (listen() on a
// listening socket only changes its backlog).
//
// Header-only and outside cb::engine on purpose: claimbench-http uses it without linking the engine.
#pragma once

#include <httplib.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

namespace cb::net {

// The backlog asked for; the kernel caps it at net.core.somaxconn.
inline constexpr int kListenBacklog = 4096;

class ListenBacklog {
 public:
  // Installs the hook; call before bind_to_port / bind_to_any_port. Keeps httplib's default options.
  explicit ListenBacklog(httplib::Server& http) : fd_(std::make_shared<int>(-1)) {
    http.set_socket_options([fd = fd_](socket_t sock) {
      httplib::default_socket_options(sock);
      *fd = int(sock);
    });
  }
  // Call after a successful bind: widens the accept queue of the socket httplib listens on.
  void widen() const {
    if (*fd_ < 0) throw std::logic_error("ListenBacklog::widen: no listening socket was made (call it after the bind)");
    if (::listen(*fd_, kListenBacklog) != 0)
      throw std::runtime_error(std::string("listen backlog: listen(") + std::to_string(*fd_) + ", " + std::to_string(kListenBacklog) +
                               ") failed: " + std::strerror(errno));
  }
  int socket() const { return *fd_; }

 private:
  std::shared_ptr<int> fd_;  // shared with the hook, which httplib keeps
};

}  // namespace cb::net
