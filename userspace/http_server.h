// http_server.h: the small HTTP/1.x server behind ballastd's Prometheus
// endpoint. It runs inside the daemon's poll loop (no threads, so the
// handler reads live state without locks): non-blocking sockets on one
// epoll, one request per connection, answered and closed. A client that
// sends more than 8 KiB of headers or stays idle for 10 s is dropped.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "address.h"
#include "fd.h"

namespace ballast {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

class HttpServer {
 public:
  // (method, path) -> response. Called once per complete request.
  using Handler = std::function<HttpResponse(const std::string& method, const std::string& path)>;

  // Listens on @at; throws Error naming the address when it cannot.
  HttpServer(const ListenAddress& at, Handler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Readable when serve() has work.
  int fd() const { return epoll_.get(); }
  // Accepts, reads, answers and writes whatever is ready; drops clients past
  // their deadline. Never blocks.
  void serve();
  uint16_t port() const { return port_; }  // the bound port (useful with port 0)
  // Clients connected: call serve() now and then even when fd() is quiet,
  // so that one that never sends is dropped at its deadline.
  bool has_clients() const { return !connections_.empty(); }

 private:
  struct Connection {
    UniqueFd sock;
    std::string in, out;
    size_t sent = 0;
    std::chrono::steady_clock::time_point deadline;
  };
  void accept_all();
  void on_ready(int fd);
  void close_connection(int fd);

  Handler handler_;
  UniqueFd epoll_, listener_;
  uint16_t port_ = 0;
  std::map<int, Connection> connections_;
};

// The status line's reason phrase for the codes the server uses.
const char* http_reason(int status);

}  // namespace ballast
