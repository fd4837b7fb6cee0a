// The accept queue of our HTTP servers: deep enough for a load generator's connection burst.
// cpp-httplib's compiled-in backlog of 5 made Linux drop SYNs when a client opened its pool (each
// drop a 1 s+ retransmit in measured latency). The backlog is read back from the kernel through
// sock_diag (what `ss -ltn` shows as Send-Q), so the test sees what a client would meet.
#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <optional>

#include <gtest/gtest.h>

#include "cb/engine/server/listen_backlog.h"
#include "cb/harness/load/null_http_server.h"
#include "test_server_util.h"

namespace {

// The listen backlog of the TCP socket listening on 127.0.0.1:port, or nullopt if none is found.
std::optional<unsigned> listen_backlog(int port) {
  const int nl = ::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (nl < 0) return std::nullopt;
  struct {
    nlmsghdr nlh;
    inet_diag_req_v2 req;
  } msg{};
  msg.nlh.nlmsg_len = sizeof(msg);
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  msg.req.sdiag_family = AF_INET;
  msg.req.sdiag_protocol = IPPROTO_TCP;
  msg.req.idiag_states = 1u << 10;  // TCP_LISTEN
  std::optional<unsigned> found;
  if (::send(nl, &msg, sizeof(msg), 0) == ssize_t(sizeof(msg))) {
    alignas(nlmsghdr) char buf[16384];
    for (bool done = false; !done;) {
      const ssize_t got = ::recv(nl, buf, sizeof(buf), 0);
      if (got <= 0) break;
      int len = int(got);
      for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
        if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) {
          done = true;
          break;
        }
        const auto* m = static_cast<const inet_diag_msg*>(NLMSG_DATA(h));
        // For a listening socket the kernel reports its backlog limit in idiag_wqueue.
        if (ntohs(m->id.idiag_sport) == port) found = m->idiag_wqueue;
      }
    }
  }
  ::close(nl);
  return found;
}

unsigned expected_backlog() {
  unsigned somaxconn = 4096;
  std::ifstream("/proc/sys/net/core/somaxconn") >> somaxconn;
  return std::min<unsigned>(cb::net::kListenBacklog, somaxconn);
}

TEST(ListenBacklog, EngineServerListensWithADeepAcceptQueue) {
  cb::engine::testing::Running r;
  const auto b = listen_backlog(r.port);
  ASSERT_TRUE(b.has_value()) << "no listening socket on 127.0.0.1:" << r.port << " seen through sock_diag";
  EXPECT_EQ(*b, expected_backlog()) << "httplib's own backlog is 5";
}

TEST(ListenBacklog, NullServerListensWithADeepAcceptQueue) {
  cb::harness::load::NullHttpServer s(4);
  const int port = s.start("127.0.0.1", 0);
  const auto b = listen_backlog(port);
  ASSERT_TRUE(b.has_value()) << "no listening socket on 127.0.0.1:" << port << " seen through sock_diag";
  EXPECT_EQ(*b, expected_backlog());
}

// The reader itself can tell: a plain httplib server without the fix shows the library's 5.
TEST(ListenBacklog, PlainHttplibServerShowsTheLibraryDefault) {
  httplib::Server plain;
  const int port = plain.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  const auto b = listen_backlog(port);
  ASSERT_TRUE(b.has_value());
  EXPECT_LT(*b, expected_backlog());
}

TEST(ListenBacklog, WidenBeforeBindIsAClearError) {
  httplib::Server http;
  cb::net::ListenBacklog backlog(http);
  EXPECT_THROW(backlog.widen(), std::logic_error);
}

}  // namespace
