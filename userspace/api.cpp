#include "api.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "error.h"
#include "log.h"

namespace ballast {
namespace {

// A request is a command and its arguments (a whole config at most); an
// answer may be a whole change log (10,000 entries) or every backend's row.
constexpr size_t kMaxRequest = 1 << 20;
constexpr size_t kMaxAnswer = 64u << 20;

sockaddr_un make_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) throw Error("socket path too long: " + path);
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  return addr;
}

void set_timeout(int fd, int seconds) {
  timeval tv{seconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

// Reads up to the first newline (or EOF), at most @limit bytes. Throws
// Error on timeout, error or a longer message.
std::string read_line(int fd, size_t limit) {
  std::string data;
  char buf[4096];
  while (data.find('\n') == std::string::npos) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(errno_message("reading from control socket", errno));
    }
    if (n == 0) break;
    data.append(buf, n);
    if (data.size() > limit)
      throw Error("message larger than " + std::to_string(limit >> 20) + " MiB");
  }
  if (auto nl = data.find('\n'); nl != std::string::npos) data.resize(nl);
  return data;
}

void write_all(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(errno_message("writing to control socket", errno));
    }
    off += n;
  }
}

}  // namespace

ApiServer::ApiServer(std::string path) : path_(std::move(path)) {
  auto dir = std::filesystem::path(path_).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir);
  sockaddr_un addr = make_address(path_);
  listen_fd_ = UniqueFd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listen_fd_.valid()) throw Error(errno_message("control socket", errno));
  // A socket file left by a daemon that died: replace it, unless a live
  // daemon still answers on it.
  if (std::filesystem::exists(path_)) {
    UniqueFd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0)
      throw Error("another ballastd is serving " + path_);
    std::filesystem::remove(path_);
  }
  if (bind(listen_fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0)
    throw Error(errno_message("binding control socket " + path_, errno));
  if (chmod(path_.c_str(), 0660) < 0) throw Error(errno_message("chmod " + path_, errno));
  if (listen(listen_fd_.get(), 64) < 0) throw Error(errno_message("listen on " + path_, errno));
}

ApiServer::~ApiServer() {
  std::error_code ec;
  std::filesystem::remove(path_, ec);
}

void ApiServer::serve_one(const ApiHandler& handler) {
  UniqueFd conn(accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!conn.valid()) return;
  set_timeout(conn.get(), 1);
  PeerCred peer;
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (getsockopt(conn.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
    peer = PeerCred{cred.pid, cred.uid, cred.gid};

  nlohmann::json response;
  try {
    auto request = nlohmann::json::parse(read_line(conn.get(), kMaxRequest));
    response = {{"ok", true}, {"result", handler(request, peer)}};
  } catch (const nlohmann::json::exception& e) {
    response = {{"ok", false}, {"error", std::string("bad request: ") + e.what()}};
  } catch (const std::exception& e) {
    response = {{"ok", false}, {"error", e.what()}};
  }
  try {
    write_all(conn.get(), response.dump() + "\n");
  } catch (const Error& e) {
    log_line(LogLevel::warning, e.what());
  }
}

nlohmann::json api_call(const std::string& socket_path, const nlohmann::json& request) {
  sockaddr_un addr = make_address(socket_path);
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) throw Error(errno_message("socket", errno));
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0)
    throw Error(errno_message("cannot reach ballastd at " + socket_path, errno));
  set_timeout(fd.get(), 30);
  try {
    write_all(fd.get(), request.dump() + "\n");
  } catch (const Error&) {
    // ballastd stops reading a request over its limit and answers why
    // before it closes: that answer says more than our broken pipe.
    std::string answer;
    try {
      answer = read_line(fd.get(), kMaxAnswer);
    } catch (const Error&) {
    }
    auto response = nlohmann::json::parse(answer, nullptr, false);
    if (response.is_object() && !response.value("ok", true))
      throw Error(response.value("error", "unknown error"));
    throw;
  }
  const std::string line = read_line(fd.get(), kMaxAnswer);
  if (line.empty()) throw Error("ballastd closed the connection without answering");
  auto response = nlohmann::json::parse(line, nullptr, false);
  if (response.is_discarded() || !response.is_object())
    throw Error("ballastd sent a malformed answer");
  if (!response.value("ok", false)) throw Error(response.value("error", "unknown error"));
  return response.value("result", nlohmann::json());
}

}  // namespace ballast
