#include "loader.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <xdp/libxdp.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "balancer.skel.h"
#include "error.h"
#include "fd.h"
#include "log.h"
#include "neighbor.h"

namespace ballast {
namespace {

constexpr const char* kProgramName = "ballast_xdp";
constexpr const char* kBpffs = "/sys/fs/bpf";

bpf_map* map_by_name(balancer* skel, const char* name) {
  bpf_map* m = bpf_object__find_map_by_name(skel->obj, name);
  if (!m) throw Error(std::string("BPF object has no map ") + name);
  return m;
}

// libbpf's info level is object-parsing chatter; its warnings matter.
int print_libbpf(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (level != LIBBPF_WARN) return 0;
  char buf[1024];
  vsnprintf(buf, sizeof(buf), fmt, args);
  std::string line(buf);
  while (!line.empty() && line.back() == '\n') line.pop_back();
  log_line(LogLevel::warning, line);
  return 0;
}

int print_libxdp(enum libxdp_print_level level, const char* fmt, va_list args) {
  if (level == LIBXDP_DEBUG) return 0;
  char buf[1024];
  vsnprintf(buf, sizeof(buf), fmt, args);
  std::string line(buf);
  while (!line.empty() && line.back() == '\n') line.pop_back();
  log_line(level == LIBXDP_WARN ? LogLevel::warning : LogLevel::info, line);
  return 0;
}

}  // namespace

void route_library_logs() {
  libbpf_set_print(print_libbpf);
  libxdp_set_print(print_libxdp);
}

void ensure_bpffs_mounted() {
  struct statfs st {};
  if (statfs(kBpffs, &st) == 0 && st.f_type == BPF_FS_MAGIC) return;
  std::filesystem::create_directories(kBpffs);
  if (mount("bpf", kBpffs, "bpf", 0, "mode=0700") < 0)
    throw Error(errno_message(std::string("mounting bpffs on ") + kBpffs, errno));
  log_line(LogLevel::info, std::string("mounted bpffs on ") + kBpffs);
}

Loader::Loader(const LoaderOptions& options) : options_(options) {
  ifindex_ = interface_index(options_.interface);
  ensure_bpffs_mounted();
  std::filesystem::create_directories(options_.pin_dir);
  const auto mode = options_.mode == AttachMode::native ? XDP_MODE_NATIVE : XDP_MODE_SKB;
  try {
    const AttachedBallast old = find_attached_ballast();
    const uint32_t old_id = old.direct_id;
    adopted_ = load_reusing_pins();
    BpfDataPlane::prepare_maps(map_fds());
    const int new_fd = bpf_program__fd(skel_->progs.ballast_xdp);

    if (old_id) {
      // A ballastd died and left its program forwarding: swap ours in with
      // one netlink request that names the old program, so no packet meets
      // an interface without a program.
      UniqueFd old_fd(bpf_prog_get_fd_by_id(old_id));
      if (!old_fd.valid()) throw Error(errno_message("opening attached program", errno));
      LIBBPF_OPTS(bpf_xdp_attach_opts, opts, .old_prog_fd = old_fd.get());
      const __u32 flags =
          XDP_FLAGS_REPLACE | (mode == XDP_MODE_NATIVE ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE);
      int err = bpf_xdp_attach(ifindex_, new_fd, flags, &opts);
      if (err)
        throw Error(errno_message("replacing the ballast program attached to " +
                                      options_.interface + " in " +
                                      attach_mode_name(options_.mode) + " mode",
                                  err));
      attach_ = Attach::replaced;
      story_ = "replaced program " + std::to_string(old_id) + " with " +
               std::to_string(program_id()) + " atomically";
    } else {
      // libxdp attaches through its dispatcher where the kernel allows it,
      // so other XDP programs can share the interface.
      prog_ = xdp_program__from_fd(new_fd);
      int err = libxdp_get_error(prog_);
      if (err) {
        prog_ = nullptr;
        throw Error(errno_message("wrapping the program for libxdp", err));
      }
      err = xdp_program__attach(prog_, ifindex_, mode, 0);
      if (err)
        throw Error(errno_message("attaching XDP program to " + options_.interface + " in " +
                                      attach_mode_name(options_.mode) + " mode",
                                  err));
      attach_ = Attach::libxdp;
      story_ = "attached program " + std::to_string(program_id());
      // An old ballast program in libxdp's dispatcher: ours runs beside it
      // now (same maps, same choices); take the old one out.
      if (old.in_dispatcher) {
        detach_old_from_dispatcher();
        story_ += ", detached the previous ballast program from the dispatcher";
      }
    }
    story_ += adopted_ ? ", adopted the pinned maps in " + options_.pin_dir
                       : ", maps pinned in " + options_.pin_dir;
  } catch (...) {
    teardown();
    throw;
  }
}

Loader::~Loader() { teardown(); }

void Loader::open_and_pin() {
  skel_ = balancer::open();
  if (!skel_) throw Error(errno_message("opening BPF object", errno));
  for (const char* name : kPinnedMaps) {
    const std::string path = options_.pin_dir + "/" + name;
    bpf_map* map = map_by_name(skel_, name);
    int err = bpf_map__set_pin_path(map, path.c_str());
    if (err) throw Error(errno_message("setting pin path " + path, err));
    // The kernel adds BPF_F_RDONLY_PROG to every devmap it creates (and
    // refuses it at creation), while libbpf reuses a pinned map only if its
    // flags equal the object's: give a devmap the flags of its pin.
    if (bpf_map__type(map) != BPF_MAP_TYPE_DEVMAP) continue;
    UniqueFd pinned(bpf_obj_get(path.c_str()));
    if (!pinned.valid()) continue;  // no pin yet: created with the object's flags
    bpf_map_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(pinned.get(), &info, &len) == 0)
      bpf_map__set_map_flags(map, info.map_flags);
  }
}

// Loads the object; libbpf reuses every map already pinned at its path when
// its type, sizes and flags match. Pins of another layout (an upgrade that
// changed a map) cannot be reused: they are removed and the load starts
// fresh, which re-hashes established flows. Returns whether pins were reused.
bool Loader::load_reusing_pins() {
  const bool had_pins = std::filesystem::exists(options_.pin_dir + "/conn_table");
  open_and_pin();
  int err = balancer::load(skel_);
  if (err == 0) return had_pins;
  if (!had_pins) throw Error(errno_message("loading the BPF program", err));
  log_line(LogLevel::warning, errno_message("cannot reuse the maps pinned in " + options_.pin_dir +
                                                " (a different layout?); starting with fresh "
                                                "maps: established flows will be re-hashed",
                                            err));
  balancer::destroy(skel_);
  skel_ = nullptr;
  remove_pins();
  open_and_pin();
  err = balancer::load(skel_);
  if (err) throw Error(errno_message("loading the BPF program", err));
  return false;
}

void Loader::remove_pins() {
  for (const char* name : kPinnedMaps) {
    std::error_code ec;
    std::filesystem::remove(options_.pin_dir + "/" + name, ec);
  }
}

// A ballast_xdp program already on our interface: attached directly (its
// id), or inside libxdp's dispatcher. Any other program directly attached
// is refused: replacing it would cut someone else's traffic.
Loader::AttachedBallast Loader::find_attached_ballast() const {
  AttachedBallast out;
  xdp_multiprog* mp = xdp_multiprog__get_from_ifindex(ifindex_);
  if (!mp || libxdp_get_error(mp)) return out;
  if (xdp_multiprog__is_legacy(mp)) {
    xdp_program* p = xdp_multiprog__main_prog(mp);
    if (p && std::strcmp(xdp_program__name(p), kProgramName) == 0) {
      out.direct_id = xdp_program__id(p);
    } else if (p) {
      const std::string name = xdp_program__name(p);
      const uint32_t id = xdp_program__id(p);
      xdp_multiprog__close(mp);
      throw Error("another XDP program (" + name + ", id " + std::to_string(id) +
                  ") is attached to " + options_.interface + "; detach it first");
    }
  } else {
    for (xdp_program* p = xdp_multiprog__next_prog(nullptr, mp); p;
         p = xdp_multiprog__next_prog(p, mp))
      if (std::strcmp(xdp_program__name(p), kProgramName) == 0) out.in_dispatcher = true;
  }
  xdp_multiprog__close(mp);
  return out;
}

bool Loader::is_attached() const {
  xdp_multiprog* mp = xdp_multiprog__get_from_ifindex(ifindex_);
  if (!mp || libxdp_get_error(mp)) return false;
  const uint32_t ours = program_id();
  bool found = false;
  if (xdp_multiprog__is_legacy(mp)) {
    xdp_program* p = xdp_multiprog__main_prog(mp);
    found = p && xdp_program__id(p) == ours;
  } else {
    for (xdp_program* p = xdp_multiprog__next_prog(nullptr, mp); p && !found;
         p = xdp_multiprog__next_prog(p, mp))
      found = xdp_program__id(p) == ours;
  }
  xdp_multiprog__close(mp);
  return found;
}

void Loader::detach_old_from_dispatcher() {
  xdp_multiprog* mp = xdp_multiprog__get_from_ifindex(ifindex_);
  if (!mp || libxdp_get_error(mp)) return;
  const uint32_t ours = program_id();
  for (xdp_program* p = xdp_multiprog__next_prog(nullptr, mp); p;
       p = xdp_multiprog__next_prog(p, mp)) {
    if (std::strcmp(xdp_program__name(p), kProgramName) != 0 || xdp_program__id(p) == ours)
      continue;
    int err = xdp_program__detach(p, ifindex_, xdp_multiprog__attach_mode(mp), 0);
    if (err) log_line(LogLevel::warning, errno_message("detaching the previous program", err));
    break;
  }
  xdp_multiprog__close(mp);
}

void Loader::teardown() noexcept {
  const auto mode = options_.mode == AttachMode::native ? XDP_MODE_NATIVE : XDP_MODE_SKB;
  if (attach_ == Attach::libxdp && prog_) {
    int err = xdp_program__detach(prog_, ifindex_, mode, 0);
    if (err) log_line(LogLevel::warning, errno_message("detaching XDP program", err));
  } else if (attach_ == Attach::replaced && skel_) {
    LIBBPF_OPTS(bpf_xdp_attach_opts, opts,
                .old_prog_fd = bpf_program__fd(skel_->progs.ballast_xdp));
    const __u32 flags =
        XDP_FLAGS_REPLACE | (mode == XDP_MODE_NATIVE ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE);
    int err = bpf_xdp_detach(ifindex_, flags, &opts);
    if (err) log_line(LogLevel::warning, errno_message("detaching XDP program", err));
  }
  // Pins go only with a program we detached: after a failed start the maps
  // may still feed a program another daemon left attached.
  if (attach_ != Attach::none) remove_pins();
  std::error_code ec;
  std::filesystem::remove(options_.pin_dir, ec);  // only when empty
  attach_ = Attach::none;
  if (prog_) xdp_program__close(prog_);
  prog_ = nullptr;
  if (skel_) balancer::destroy(skel_);
  skel_ = nullptr;
}

MapFds Loader::map_fds() const {
  return MapFds{
      .vips = bpf_map__fd(skel_->maps.vips),
      .vip_by_id = bpf_map__fd(skel_->maps.vip_by_id),
      .backends = bpf_map__fd(skel_->maps.backends),
      .maglev_tables = bpf_map__fd(skel_->maps.maglev_tables),
      .conn_table = bpf_map__fd(skel_->maps.conn_table),
      .vip_stats = bpf_map__fd(skel_->maps.vip_stats),
      .backend_stats = bpf_map__fd(skel_->maps.backend_stats),
      .reason_stats = bpf_map__fd(skel_->maps.reason_stats),
      .egress = bpf_map__fd(skel_->maps.egress),
      .tx_ports = bpf_map__fd(skel_->maps.tx_ports),
      .vip_filter = bpf_map__fd(skel_->maps.vip_filter),
  };
}

uint32_t Loader::program_id() const {
  if (!skel_) return 0;
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(bpf_program__fd(skel_->progs.ballast_xdp), &info, &len)) return 0;
  return info.id;
}

}  // namespace ballast
