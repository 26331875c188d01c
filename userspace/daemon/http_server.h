// http_server.h: the small HTTP/1.x server behind ballastd's Prometheus
// endpoint, on StreamServer (stream_server.h): inside the daemon's loop,
// one request per connection, answered and closed. Headers over 8 KiB are
// answered 431; a client gets 5 s to send its request; 64 connections at
// most, the oldest making room for a new one (so nobody can lock
// Prometheus out by holding connections).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "address.h"
#include "fd.h"
#include "stream_server.h"

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
  int fd() const { return server_.fd(); }
  // Accepts, reads, answers and writes whatever is ready; drops clients past
  // their deadline. Never blocks.
  void serve() { server_.serve(); }
  uint16_t port() const { return port_; }  // the bound port (useful with port 0)
  // Clients connected: call serve() now and then even when fd() is quiet,
  // so that one that never sends is dropped at its deadline.
  bool has_clients() const { return server_.has_clients(); }
  uint64_t evicted() const { return server_.evicted(); }

 private:
  std::optional<std::string> respond(const std::string& in, bool eof);

  Handler handler_;
  uint16_t port_ = 0;
  StreamServer server_;
};

// The status line's reason phrase for the codes the server uses.
const char* http_reason(int status);

}  // namespace ballast
