// api.h: the control API on a Unix socket. One request per connection: the
// client writes one JSON object and a newline, the server answers one JSON
// object and a newline, then closes.
//   request:  {"command": "backend.set_weight", "args": {...}}
//   response: {"ok": true, "result": ...} or {"ok": false, "error": "..."}
//
// The server runs inside ballastd's loop on StreamServer (stream_server.h):
// many clients at once, none able to hold up the loop. A client has 5 s
// from connecting to send its whole request; a request is at most 1 MiB and
// nests at most 64 levels deep (answered with an error otherwise); at most
// 256 clients are connected, the oldest making room for a new one. Each
// request carries its client's credentials, from the kernel.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "access.h"
#include "api_messages.h"
#include "fd.h"
#include "stream_server.h"

namespace ballast {

constexpr const char* kDefaultSocket = "/run/ballast/ballast.sock";
// How deep a request's arrays and objects may nest (a whole config needs 6).
constexpr size_t kMaxRequestNesting = 64;

using ApiHandler = std::function<nlohmann::json(const nlohmann::json& request, const PeerCred&)>;

class ApiServer {
 public:
  // Creates the socket's directory, binds with mode 0660 (group @group when
  // given; replacing a stale socket file, never anything that is not a
  // socket) and listens. Throws Error. @limits: tests shorten the deadlines.
  explicit ApiServer(std::string path, std::optional<gid_t> group = std::nullopt,
                     std::optional<StreamLimits> limits = std::nullopt);
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // Until a handler is set, every request is answered "ballastd is starting".
  void set_handler(ApiHandler handler) { handler_ = std::move(handler); }
  const std::string& path() const { return path_; }

  // Readable when serve() has work; serve() never blocks.
  int fd() const { return server_->fd(); }
  void serve() { server_->serve(); }
  bool has_clients() const { return server_->has_clients(); }
  size_t clients() const { return server_->clients(); }
  uint64_t timed_out() const { return server_->timed_out(); }
  uint64_t evicted() const { return server_->evicted(); }

 private:
  std::optional<std::string> respond(const std::string& in, bool eof, int fd);

  std::string path_;
  bool bound_ = false;  // the socket file is ours to remove
  ApiHandler handler_;
  std::unique_ptr<StreamServer> server_;
};

// How deep @text's arrays and objects nest (strings skipped), counting no
// further than @limit + 1: a check that costs one pass, before any parser
// meets the text.
size_t json_nesting(const std::string& text, size_t limit);

// Client side: sends @request, returns the response's "result"; throws Error
// with the server's message when "ok" is false.
nlohmann::json api_call(const std::string& socket_path, const nlohmann::json& request);

// The same, typed (api_messages.h): the reply decoded.
template <typename Request>
typename Request::Reply call(const std::string& socket_path, const Request& request) {
  return api::decode_reply<Request>(api_call(socket_path, api::envelope(request)));
}

}  // namespace ballast
