#include "http_server.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "error.h"

namespace ballast {
namespace {

constexpr StreamLimits kLimits{.max_request = 8192,
                               .request_deadline = std::chrono::seconds(5),
                               .answer_deadline = std::chrono::seconds(30),
                               .max_connections = 64};

// The listening socket for @at, and its bound port.
UniqueFd listen_on(const ListenAddress& at, uint16_t& port) {
  const std::string where = at.address.is_v4()
                                ? at.address.str() + ":" + std::to_string(at.port)
                                : "[" + at.address.str() + "]:" + std::to_string(at.port);
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (at.address.is_v4()) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(at.port);
    std::memcpy(&sin->sin_addr, at.address.bytes.data(), 4);
    len = sizeof(*sin);
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(at.port);
    std::memcpy(&sin6->sin6_addr, at.address.bytes.data(), 16);
    len = sizeof(*sin6);
  }
  UniqueFd listener(socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  const int one = 1;
  if (!listener.valid() ||
      setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
      bind(listener.get(), reinterpret_cast<sockaddr*>(&ss), len) < 0 ||
      listen(listener.get(), 64) < 0)
    throw Error(errno_message("metrics: cannot listen on " + where, errno));
  len = sizeof(ss);
  getsockname(listener.get(), reinterpret_cast<sockaddr*>(&ss), &len);
  port = ntohs(ss.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                       : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return listener;
}

}  // namespace

const char* http_reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 431:
      return "Request Header Fields Too Large";
    default:
      return "Internal Server Error";
  }
}

HttpServer::HttpServer(const ListenAddress& at, Handler handler)
    : handler_(std::move(handler)),
      server_(listen_on(at, port_), kLimits,
              [this](const std::string& in, bool eof, int) { return respond(in, eof); }) {}

HttpServer::~HttpServer() = default;

std::optional<std::string> HttpServer::respond(const std::string& in, bool eof) {
  const size_t end = in.find("\r\n\r\n");
  if (end == std::string::npos && in.size() <= kLimits.max_request) {
    (void)eof;  // closed before a whole request: StreamServer drops it
    return std::nullopt;
  }
  HttpResponse response;
  if (end == std::string::npos) {
    response = {431, "text/plain; charset=utf-8", "request headers too large\n"};
  } else {
    // "METHOD PATH VERSION" on the first line.
    const std::string line = in.substr(0, in.find("\r\n"));
    const size_t a = line.find(' '), b = line.find(' ', a == std::string::npos ? a : a + 1);
    if (a == std::string::npos || b == std::string::npos || line.compare(b + 1, 5, "HTTP/") != 0) {
      response = {400, "text/plain; charset=utf-8", "malformed request line\n"};
    } else {
      std::string path = line.substr(a + 1, b - a - 1);
      path = path.substr(0, path.find('?'));
      try {
        response = handler_(line.substr(0, a), path);
      } catch (const std::exception& e) {
        response = {500, "text/plain; charset=utf-8", std::string(e.what()) + "\n"};
      }
    }
  }
  return "HTTP/1.1 " + std::to_string(response.status) + " " + http_reason(response.status) +
         "\r\nContent-Type: " + response.content_type +
         "\r\nContent-Length: " + std::to_string(response.body.size()) +
         "\r\nConnection: close\r\n\r\n" + response.body;
}

}  // namespace ballast
