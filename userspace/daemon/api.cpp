#include "api.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
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

ApiServer::ApiServer(std::string path, std::optional<gid_t> group,
                     std::optional<StreamLimits> limits)
    : path_(std::move(path)) {
  auto dir = std::filesystem::path(path_).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir);
  sockaddr_un addr = make_address(path_);
  UniqueFd listener(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!listener.valid()) throw Error(errno_message("control socket", errno));
  // A socket file left by a daemon that died: replace it, unless a live
  // daemon still answers on it. Anything else at that path (a file, a
  // directory, a link) is not ours to delete.
  struct stat st {};
  if (lstat(path_.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      throw Error("control socket path " + path_ +
                  " exists and is not a socket; refusing to replace it");
    UniqueFd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0)
      throw Error("another ballastd is serving " + path_);
    std::filesystem::remove(path_);
  }
  // Created with its final mode (0660): no moment at 0777 & ~umask.
  const mode_t old_umask = umask(0117);
  const int bound = bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  const int bind_errno = errno;
  umask(old_umask);
  if (bound < 0) throw Error(errno_message("binding control socket " + path_, bind_errno));
  bound_ = true;
  if (group && chown(path_.c_str(), static_cast<uid_t>(-1), *group) < 0)
    throw Error(errno_message("giving " + path_ + " to group " + std::to_string(*group), errno));
  if (listen(listener.get(), 256) < 0) throw Error(errno_message("listen on " + path_, errno));
  const StreamLimits l = limits ? *limits
                                : StreamLimits{.max_request = kMaxRequest,
                                               .request_deadline = std::chrono::seconds(5),
                                               .answer_deadline = std::chrono::seconds(30),
                                               .max_connections = 256};
  server_ = std::make_unique<StreamServer>(
      std::move(listener), l,
      [this](const std::string& in, bool eof, int fd) { return respond(in, eof, fd); });
}

ApiServer::~ApiServer() {
  server_.reset();
  if (!bound_) return;
  std::error_code ec;
  std::filesystem::remove(path_, ec);
}

size_t json_nesting(const std::string& text, size_t limit) {
  size_t depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) return deepest;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

std::optional<std::string> ApiServer::respond(const std::string& in, bool eof, int fd) {
  const size_t nl = in.find('\n');
  nlohmann::json response;
  if (nl == std::string::npos && in.size() > kMaxRequest) {
    response = {{"ok", false},
                {"error", "message larger than " + std::to_string(kMaxRequest >> 20) + " MiB"}};
  } else if (nl == std::string::npos && !(eof && !in.empty())) {
    return std::nullopt;  // more to come (or closed before a request)
  } else {
    const std::string line = in.substr(0, nl);
    PeerCred peer;
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
      peer = PeerCred{cred.pid, cred.uid, cred.gid, {}};
    gid_t groups[256];
    len = sizeof(groups);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0)
      peer.groups.assign(groups, groups + len / sizeof(gid_t));
    try {
      if (json_nesting(line, kMaxRequestNesting) > kMaxRequestNesting)
        throw Error("bad request: nested deeper than " + std::to_string(kMaxRequestNesting) +
                    " levels");
      const auto request = nlohmann::json::parse(line);
      if (!handler_) throw Error("ballastd is starting; try again in a moment");
      response = {{"ok", true}, {"result", handler_(request, peer)}};
    } catch (const nlohmann::json::exception& e) {
      response = {{"ok", false}, {"error", std::string("bad request: ") + e.what()}};
    } catch (const std::exception& e) {
      response = {{"ok", false}, {"error", e.what()}};
    }
  }
  return response.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
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
