// api_test.cpp: the control socket's framing limits (userspace/daemon/api.cpp).
#include "api.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "error.h"

namespace ballast {
namespace {

std::string socket_path() {
  return "/tmp/ballast-api-test-" + std::to_string(getpid()) + ".sock";
}

// Runs the server's loop on a thread until stopped, as ballastd's loop does.
class Serving {
 public:
  explicit Serving(ApiServer& server) : thread_([this, &server] {
    while (!stop_) {
      server.serve();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }) {}
  ~Serving() {
    stop_ = true;
    thread_.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// An answer far over the request limit (a change log of thousands of
// entries is a few MiB) reaches the client whole.
TEST(ApiTest, AnswersLargerThanARequestArrive) {
  ApiServer server(socket_path());
  const std::string big(3u << 20, 'x');
  server.set_handler([&](const nlohmann::json&, const PeerCred&) { return nlohmann::json(big); });
  Serving serving(server);
  nlohmann::json result;
  EXPECT_NO_THROW(result = api_call(server.path(), {{"command", "log"}}));
  EXPECT_EQ(result.get<std::string>().size(), big.size());
}

// A request over 1 MiB is refused with a message that says why.
TEST(ApiTest, RequestsOverOneMiBAreRefused) {
  ApiServer server(socket_path());
  server.set_handler([](const nlohmann::json&, const PeerCred&) { return nlohmann::json("ok"); });
  Serving serving(server);
  try {
    api_call(server.path(), {{"command", std::string(2u << 20, 'y')}});
    ADD_FAILURE() << "a 2 MiB request was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("message larger than 1 MiB"), std::string::npos)
        << e.what();
  }
}

// A request nested 100,000 levels deep (200 KB, under the size limit) is
// answered with an error before any parser sees it; the server serves on.
TEST(ApiTest, DeepNestingIsRefusedAndTheServerLives) {
  ApiServer server(socket_path());
  server.set_handler([](const nlohmann::json&, const PeerCred&) { return nlohmann::json("ok"); });
  Serving serving(server);
  const std::string deep = "{\"command\": \"status\", \"args\": " + std::string(100000, '[') +
                           std::string(100000, ']') + "}";
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, server.path().c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const std::string line = deep + "\n";
  ASSERT_EQ(send(fd, line.data(), line.size(), MSG_NOSIGNAL), static_cast<ssize_t>(line.size()));
  std::string answer;
  char buf[4096];
  for (ssize_t n; (n = recv(fd, buf, sizeof(buf), 0)) > 0;) answer.append(buf, n);
  close(fd);
  EXPECT_NE(answer.find("nested deeper than 64 levels"), std::string::npos) << answer;
  EXPECT_EQ(api_call(server.path(), {{"command", "status"}}), "ok");
  // Brackets inside strings are not nesting.
  EXPECT_EQ(json_nesting("{\"a\": \"[[[[\\\"[[\"}", 64), 1u);
  EXPECT_EQ(json_nesting("[[[]]]", 64), 3u);
  EXPECT_EQ(json_nesting(std::string(70, '['), 64), 65u);
}

// Clients that connect and send half a request hold neither the loop nor
// another client: a whole request is answered while they wait (well before
// their deadline, which is what a server serving one client at a time
// would make it wait for), the oldest make room when every slot is taken,
// and the rest are dropped at their deadline.
TEST(ApiTest, HalfSentRequestsDelayNobody) {
  const auto deadline = std::chrono::milliseconds(1500);
  ApiServer server(socket_path(), std::nullopt,
                   StreamLimits{.max_request = 1 << 20,
                                .request_deadline = deadline,
                                .answer_deadline = deadline,
                                .max_connections = 8});
  server.set_handler([](const nlohmann::json&, const PeerCred&) { return nlohmann::json("ok"); });
  std::vector<int> drippers;
  std::chrono::steady_clock::duration waited{};
  {
    Serving serving(server);
    for (int i = 0; i < 20; ++i) {
      const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      std::strncpy(addr.sun_path, server.path().c_str(), sizeof(addr.sun_path) - 1);
      ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
      send(fd, "{", 1, MSG_NOSIGNAL);
      drippers.push_back(fd);
    }
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(api_call(server.path(), {{"command", "status"}}), "ok");
    waited = std::chrono::steady_clock::now() - t0;
    std::this_thread::sleep_for(deadline + std::chrono::milliseconds(500));
  }
  for (int fd : drippers) close(fd);
  EXPECT_LT(waited, deadline) << "the answer waited for a half-sent request's deadline";
  EXPECT_EQ(server.clients(), 0u);
  // 20 drippers and the client, 8 slots: 13 made room, the client was
  // answered, the other 7 timed out.
  EXPECT_EQ(server.evicted(), 13u);
  EXPECT_EQ(server.timed_out(), 7u);
}

// --socket naming a file that is not a socket: refused, the file kept.
TEST(ApiTest, APathThatIsNotASocketIsNeverReplaced) {
  const std::string path = socket_path() + ".file";
  {
    FILE* f = std::fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("precious", f);
    std::fclose(f);
  }
  try {
    ApiServer server(path);
    ADD_FAILURE() << "bound over a regular file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is not a socket"), std::string::npos) << e.what();
  }
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0) << "the file is gone";
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_size, 8);
  unlink(path.c_str());
}

// The socket is created with mode 0660 whatever the umask, and a stale
// socket file (nobody listening) is replaced.
TEST(ApiTest, SocketHasItsFinalModeAndReplacesAStaleOne) {
  const mode_t old = umask(0);
  {
    ApiServer first(socket_path());
    struct stat st {};
    ASSERT_EQ(stat(first.path().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0660u);
  }
  umask(old);
  // A stale socket: bound, then its listener closed without unlinking.
  {
    const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, socket_path().c_str(), sizeof(addr.sun_path) - 1);
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    close(fd);
  }
  EXPECT_NO_THROW(ApiServer again(socket_path()));
}

}  // namespace
}  // namespace ballast
