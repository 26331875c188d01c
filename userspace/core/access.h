// access.h: who may use ballastd's control API. The daemon reads each
// client's credentials from its socket (SO_PEERCRED, SO_PEERGROUPS); this
// decides, from plain data, whether that client may read (status, lists,
// stats, skew, top, log, audit) or change anything. Root may do both; the
// members of the read group may read; the members of the admin group, when
// one is configured, may change too.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace ballast {

// A control client, as the kernel vouches for it.
struct PeerCred {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups
};

struct ControlAccess {
  std::optional<gid_t> read_group;   // ballastd --read-group (default "ballast", when it exists)
  std::optional<gid_t> admin_group;  // ballastd --admin-group (default none: root only)

  bool may_read(const PeerCred& peer) const;
  bool may_change(const PeerCred& peer) const;
};

// Which commands only read (and so need may_read, not may_change):
// api::is_read_only_command (api_messages.h), from each request's type.

// "uid 1000 pid 4242": a peer in a log line or a refusal.
std::string peer_text(const PeerCred& peer);

}  // namespace ballast
