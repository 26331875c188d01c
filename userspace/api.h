// api.h: the control API on a Unix socket. One request per connection: the
// client writes one JSON object and a newline, the server answers one JSON
// object and a newline, then closes.
//   request:  {"command": "backend.set_weight", "args": {...}}
//   response: {"ok": true, "result": ...} or {"ok": false, "error": "..."}
#pragma once

#include <sys/types.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "fd.h"

namespace ballast {

constexpr const char* kDefaultSocket = "/run/ballast/ballast.sock";

struct PeerCred {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};

using ApiHandler = std::function<nlohmann::json(const nlohmann::json& request, const PeerCred&)>;

class ApiServer {
 public:
  // Creates the socket's directory, binds (replacing a stale socket file),
  // sets mode 0660 and listens. Throws Error.
  explicit ApiServer(std::string path);
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  int fd() const { return listen_fd_.get(); }
  const std::string& path() const { return path_; }
  // Accepts one connection and serves its request with @handler. A client
  // that sends nothing within a second is dropped.
  void serve_one(const ApiHandler& handler);

 private:
  std::string path_;
  UniqueFd listen_fd_;
};

// Client side: sends @request, returns the response's "result"; throws Error
// with the server's message when "ok" is false.
nlohmann::json api_call(const std::string& socket_path, const nlohmann::json& request);

}  // namespace ballast
