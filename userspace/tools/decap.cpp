#include "decap.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <netinet/in.h>

#include <cerrno>
#include <cstring>

#include "decap.skel.h"
#include "error.h"
#include "fd.h"
#include "neighbor.h"

namespace ballast {
namespace {

constexpr const char* kProgramName = "ballast_decap";

int ifindex_of(const std::string& interface) {
  const unsigned idx = if_nametoindex(interface.c_str());
  if (idx == 0) throw Error(errno_message("interface " + interface, errno));
  return static_cast<int>(idx);
}

// The id of the XDP program attached to @ifindex (any mode), 0 if none.
uint32_t attached_id(int ifindex) {
  LIBBPF_OPTS(bpf_xdp_query_opts, q);
  if (bpf_xdp_query(ifindex, 0, &q) < 0) return 0;
  return q.prog_id;
}

std::string program_name(uint32_t id) {
  UniqueFd fd(bpf_prog_get_fd_by_id(id));
  if (!fd.valid()) return "";
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) < 0) return "";
  return info.name;
}

// The map named @name that program @id uses, as an fd.
UniqueFd program_map(uint32_t id, const std::string& name) {
  UniqueFd prog(bpf_prog_get_fd_by_id(id));
  if (!prog.valid()) throw Error(errno_message("program " + std::to_string(id), errno));
  uint32_t map_ids[16] = {};
  bpf_prog_info info{};
  info.nr_map_ids = 16;
  info.map_ids = reinterpret_cast<uint64_t>(map_ids);
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(prog.get(), &info, &len) < 0)
    throw Error(errno_message("program info", errno));
  for (uint32_t i = 0; i < info.nr_map_ids && i < 16; ++i) {
    UniqueFd map(bpf_map_get_fd_by_id(map_ids[i]));
    if (!map.valid()) continue;
    bpf_map_info minfo{};
    uint32_t mlen = sizeof(minfo);
    if (bpf_obj_get_info_by_fd(map.get(), &minfo, &mlen) == 0 && name == minfo.name) return map;
  }
  throw Error("program " + std::to_string(id) + " has no map " + name);
}

}  // namespace

std::vector<IpAddress> local_vips() {
  std::vector<IpAddress> out;
  for (const auto& ip : interface_addresses("lo")) {
    if (ip.is_v4() && ip.bytes[0] == 127) continue;
    if (!ip.is_v4() &&
        (ip == *IpAddress::parse("::1") || (ip.bytes[0] == 0xfe && (ip.bytes[1] & 0xc0) == 0x80)))
      continue;
    out.push_back(ip);
  }
  return out;
}

uint32_t decap_attach(const std::string& interface, const std::vector<IpAddress>& vips,
                      AttachMode mode, uint16_t gue_port) {
  const int ifindex = ifindex_of(interface);
  if (vips.empty())
    throw Error(
        "no VIPs to decapsulate for: put the VIPs on lo (ip addr add VIP/32 dev lo) or "
        "name them with --vip");
  const uint32_t old = attached_id(ifindex);
  if (old && program_name(old) != kProgramName)
    throw Error("another XDP program (" + program_name(old) + ", id " + std::to_string(old) +
                ") is attached to " + interface + "; detach it first");
  decap* skel = decap::open_and_load();
  if (!skel) throw Error(errno_message("loading the decap program", errno));
  struct Guard {
    decap* s;
    ~Guard() { decap::destroy(s); }
  } guard{skel};
  for (const auto& v : vips) {
    ballast_decap_vip key{};
    key.addr = v.to_abi();
    key.family = v.family;
    const uint8_t one = 1;
    if (bpf_map_update_elem(bpf_map__fd(skel->maps.decap_vips), &key, &one, BPF_ANY) < 0)
      throw Error(errno_message("decap_vips: " + v.str(), errno));
  }
  ballast_decap_config cfg{};
  cfg.gue_port = htons(gue_port);
  const uint32_t zero = 0;
  if (bpf_map_update_elem(bpf_map__fd(skel->maps.decap_config), &zero, &cfg, BPF_ANY) < 0)
    throw Error(errno_message("decap_config", errno));
  const int fd = bpf_program__fd(skel->progs.ballast_decap);
  uint32_t flags = mode == AttachMode::native ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE;
  LIBBPF_OPTS(bpf_xdp_attach_opts, opts);
  UniqueFd old_fd;
  if (old) {
    // Atomic: packets see the old program or the new one, never none.
    old_fd = UniqueFd(bpf_prog_get_fd_by_id(old));
    if (!old_fd.valid()) throw Error(errno_message("the attached decap program", errno));
    opts.old_prog_fd = old_fd.get();
    flags |= XDP_FLAGS_REPLACE;
  } else {
    flags |= XDP_FLAGS_UPDATE_IF_NOEXIST;
  }
  if (const int err = bpf_xdp_attach(ifindex, fd, flags, &opts); err < 0)
    throw Error(errno_message(
        "attaching the decap program to " + interface + " (" + attach_mode_name(mode) + ")", err));
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  bpf_obj_get_info_by_fd(fd, &info, &len);
  return info.id;
}

void decap_detach(const std::string& interface) {
  const int ifindex = ifindex_of(interface);
  const uint32_t id = attached_id(ifindex);
  if (!id) throw Error("no XDP program is attached to " + interface);
  if (program_name(id) != kProgramName)
    throw Error("the XDP program on " + interface + " is " + program_name(id) + " (id " +
                std::to_string(id) + "), not Ballast's decap program; left alone");
  LIBBPF_OPTS(bpf_xdp_query_opts, q);
  bpf_xdp_query(ifindex, 0, &q);
  const uint32_t mode = q.attach_mode == XDP_ATTACHED_SKB ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE;
  if (const int err = bpf_xdp_detach(ifindex, mode, nullptr); err < 0)
    throw Error(errno_message("detaching from " + interface, err));
}

DecapStatus decap_status(const std::string& interface) {
  DecapStatus out;
  const uint32_t id = attached_id(ifindex_of(interface));
  if (!id || program_name(id) != kProgramName) return out;
  out.program_id = id;
  UniqueFd vips = program_map(id, "decap_vips");
  ballast_decap_vip key{}, next{};
  ballast_decap_vip* prev = nullptr;
  while (bpf_map_get_next_key(vips.get(), prev, &next) == 0) {
    out.vips.push_back(IpAddress::from_abi(next.addr, next.family));
    key = next;
    prev = &key;
  }
  UniqueFd config = program_map(id, "decap_config");
  ballast_decap_config cfg{};
  const uint32_t zero = 0;
  if (bpf_map_lookup_elem(config.get(), &zero, &cfg) == 0) out.gue_port = ntohs(cfg.gue_port);
  UniqueFd stats = program_map(id, "decap_stats");
  const int ncpus = libbpf_num_possible_cpus();
  std::vector<ballast_reason_counters> per_cpu(static_cast<size_t>(ncpus > 0 ? ncpus : 1));
#define BALLAST_DECAP_NAME(name, str) str,
  const char* names[] = {BALLAST_DECAP_REASONS(BALLAST_DECAP_NAME)};
#undef BALLAST_DECAP_NAME
  for (uint32_t r = 0; r < BALLAST_DECAP_REASON_COUNT; ++r) {
    uint64_t packets = 0, bytes = 0;
    if (bpf_map_lookup_elem(stats.get(), &r, per_cpu.data()) == 0)
      for (const auto& c : per_cpu) {
        packets += c.packets;
        bytes += c.bytes;
      }
    out.counters.push_back({names[r], {packets, bytes}});
  }
  return out;
}

}  // namespace ballast
