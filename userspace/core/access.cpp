#include "access.h"

#include <algorithm>

namespace ballast {
namespace {

bool in_group(const PeerCred& peer, gid_t group) {
  return peer.gid == group || std::find(peer.groups.begin(), peer.groups.end(), group) !=
                                  peer.groups.end();
}

}  // namespace

bool ControlAccess::may_change(const PeerCred& peer) const {
  return peer.uid == 0 || (admin_group && in_group(peer, *admin_group));
}

bool ControlAccess::may_read(const PeerCred& peer) const {
  return may_change(peer) || (read_group && in_group(peer, *read_group));
}

std::string peer_text(const PeerCred& peer) {
  return "uid " + std::to_string(peer.uid) + " pid " + std::to_string(peer.pid);
}

}  // namespace ballast
