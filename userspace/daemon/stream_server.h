// stream_server.h: the part every server inside ballastd's loop shares (the
// control socket, the metrics endpoint): non-blocking sockets on one epoll
// set, one request per connection, answered and closed, each connection
// with its own deadline. No threads, so handlers read live state without
// locks, and no client, however slow or hostile, holds up the loop: a
// client gets its deadline to send a whole request, a request past the
// size limit is answered with an error, and when every slot is taken the
// connection nearest its deadline makes room for the new one.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "fd.h"

namespace ballast {

struct StreamLimits {
  size_t max_request = 8192;  // bytes; past this the rest is read and dropped
  std::chrono::milliseconds request_deadline{5000};  // from accept to a whole request
  std::chrono::milliseconds answer_deadline{30000};  // to write the answer
  size_t max_connections = 64;
};

class StreamServer {
 public:
  // What the client sent so far, and whether it closed its side. Returns
  // the whole answer once a request is complete (a request over the size
  // limit arrives cut to max_request + 1 bytes), or nullopt to wait for more.
  // @fd is the client's socket (for its peer credentials).
  using Respond = std::function<std::optional<std::string>(const std::string& in, bool eof, int fd)>;

  // Takes a listening socket (made non-blocking here). Throws Error.
  StreamServer(UniqueFd listener, StreamLimits limits, Respond respond);
  StreamServer(const StreamServer&) = delete;
  StreamServer& operator=(const StreamServer&) = delete;

  // Readable when serve() has work.
  int fd() const { return epoll_.get(); }
  int listener() const { return listener_.get(); }
  // Accepts, reads, answers and writes whatever is ready; drops clients past
  // their deadline. Never blocks.
  void serve();
  // Connected clients: call serve() now and then even when fd() is quiet,
  // so that one that never sends is dropped at its deadline.
  bool has_clients() const { return !connections_.empty(); }
  size_t clients() const { return connections_.size(); }
  // Connections dropped: past their deadline, or to make room.
  uint64_t timed_out() const { return timed_out_; }
  uint64_t evicted() const { return evicted_; }

 private:
  struct Connection {
    UniqueFd sock;
    std::string in, out;
    bool answered = false;
    size_t sent = 0;
    std::chrono::steady_clock::time_point deadline;
  };
  void accept_all();
  void on_ready(int fd);
  void close_connection(int fd) { connections_.erase(fd); }  // closing takes it off epoll

  StreamLimits limits_;
  Respond respond_;
  UniqueFd epoll_, listener_;
  std::map<int, Connection> connections_;
  uint64_t timed_out_ = 0, evicted_ = 0;
};

}  // namespace ballast
