#include "loader.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>
#include <xdp/libxdp.h>

#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>

#include "balancer.skel.h"
#include "error.h"
#include "fd.h"
#include "log.h"
#include "neighbor.h"

namespace ballast {
namespace {

constexpr const char* kDispatcherName = "xdp_dispatcher";
// The program ballastd attached, pinned beside its maps: a later ballastd
// (a restart, an upgrade) and `--cleanup` know it by this pin, because a
// process without CAP_SYS_ADMIN (ballastd's unit) may neither read an
// attached program's name nor open it by id. Pinned under the second name
// before an attach and renamed over the first after it, so that a crash in
// between leaves one of them naming the attached program.
constexpr const char* kProgramPin = "ballast_xdp";
constexpr const char* kProgramPinNext = "ballast_xdp_next";  // (bpffs names take no dots)
constexpr const char* kBpffs = "/sys/fs/bpf";

// Linux 6.3's flag for a program bound to one device without offload (the
// uapi headers of Debian 12 predate it).
#ifndef BPF_F_XDP_DEV_BOUND_ONLY
#define BPF_F_XDP_DEV_BOUND_ONLY (1U << 6)
#endif

// The program of the object that runs in @mode (balancer.bpf.c): in native
// mode ballast_xdp, bound to @ifindex's device so that its call to the XDP
// metadata kfunc for the VLAN tag (bpf/vlan.h) reads the tag that device
// stripped; in generic mode, which refuses device-bound programs,
// ballast_xdp_any. The other one is not loaded. A bound program attaches to
// its device only: an interface created again gets a program loaded for it
// (Loader::reattach).
bpf_program* choose_program(balancer* skel, AttachMode mode, int ifindex) {
  bpf_program* bound = skel->progs.ballast_xdp;
  bpf_program* any = skel->progs.ballast_xdp_any;
  if (mode != AttachMode::native) {
    bpf_program__set_autoload(bound, false);
    return any;
  }
  bpf_program__set_autoload(any, false);
  bpf_program__set_ifindex(bound, static_cast<__u32>(ifindex));
  bpf_program__set_flags(bound, bpf_program__flags(bound) | BPF_F_XDP_DEV_BOUND_ONLY);
  return bound;
}

bpf_program* loaded_program(balancer* skel, AttachMode mode) {
  return mode == AttachMode::native ? skel->progs.ballast_xdp : skel->progs.ballast_xdp_any;
}

bool is_ballast_program_name(const std::string& name) {
  return name == BALLAST_PROG_BOUND || name == BALLAST_PROG_ANY;
}

bpf_map* map_by_name(balancer* skel, const char* name) {
  bpf_map* m = bpf_object__find_map_by_name(skel->obj, name);
  if (!m) throw Error(std::string("BPF object has no map ") + name);
  return m;
}

uint64_t unix_ms_now() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

__u32 mode_flag(AttachMode mode) {
  return mode == AttachMode::native ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE;
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

// The XDP program on an interface, as netlink reports it: the program
// itself (attached on its own) or libxdp's dispatcher.
//
// Why not libxdp's xdp_multiprog__get_from_ifindex: in libxdp 1.3.1 its
// path for a program attached on its own goes through
// xdp_program__from_id, which duplicates the program's fd and never closes
// the original, one descriptor per call. ballastd asks on every audit, so
// that leak ran it out of descriptors in about a week.
struct AttachedXdp {
  uint32_t id = 0;  // 0: nothing attached (or no such interface)
  __u32 flags = 0;  // XDP_FLAGS_DRV_MODE or XDP_FLAGS_SKB_MODE
  std::string name;
  bool is_dispatcher() const { return name == kDispatcherName; }
};

namespace {

std::string program_name(uint32_t id) {
  UniqueFd fd(bpf_prog_get_fd_by_id(id));
  if (!fd.valid()) return "";
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0) return "";
  return info.name;
}

// A ballast program pinned in a pin directory.
struct PinnedProgram {
  UniqueFd fd;
  uint32_t id = 0;
};

std::vector<PinnedProgram> pinned_programs(const std::string& pin_dir) {
  std::vector<PinnedProgram> out;
  for (const char* name : {kProgramPin, kProgramPinNext}) {
    UniqueFd fd(bpf_obj_get((pin_dir + "/" + name).c_str()));
    if (!fd.valid()) continue;
    bpf_prog_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0) continue;
    out.push_back({std::move(fd), info.id});
  }
  return out;
}

// A ballast program attached on its own, as @now reports it: one pinned in
// @pinned (known without privilege), or one whose name says so (readable
// as root: pins from before programs were pinned). Its fd in @fd.
bool ballast_attached(const AttachedXdp& now, std::vector<PinnedProgram>& pinned, UniqueFd* fd);

AttachedXdp attached_xdp(int ifindex) {
  AttachedXdp out;
  LIBBPF_OPTS(bpf_xdp_query_opts, query);
  if (ifindex <= 0 || bpf_xdp_query(ifindex, 0, &query) != 0) return out;
  if (query.drv_prog_id) {
    out.id = query.drv_prog_id;
    out.flags = XDP_FLAGS_DRV_MODE;
  } else if (query.skb_prog_id) {
    out.id = query.skb_prog_id;
    out.flags = XDP_FLAGS_SKB_MODE;
  }
  if (out.id) out.name = program_name(out.id);
  return out;
}

bool ballast_attached(const AttachedXdp& now, std::vector<PinnedProgram>& pinned, UniqueFd* fd) {
  if (!now.id) return false;
  for (auto& p : pinned)
    if (p.id == now.id) {
      if (fd) *fd = std::move(p.fd);
      return true;
    }
  if (!is_ballast_program_name(now.name)) return false;
  if (fd) *fd = UniqueFd(bpf_prog_get_fd_by_id(now.id));
  return true;
}

// Whether some BPF link runs program @prog_id: how a program joins
// libxdp's dispatcher (an freplace link into one of its slots). Every link
// fd opened here is closed here.
bool program_has_link(uint32_t prog_id) {
  __u32 id = 0;
  while (bpf_link_get_next_id(id, &id) == 0) {
    UniqueFd fd(bpf_link_get_fd_by_id(id));
    if (!fd.valid()) continue;  // gone meanwhile
    bpf_link_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) == 0 && info.prog_id == prog_id) return true;
  }
  return false;
}

// Detaches every ballast program but @keep_id from libxdp's dispatcher on
// @ifindex. Uses libxdp (the only owner of the dispatcher's layout); runs
// only at start and at --cleanup, never periodically.
uint32_t detach_ballast_from_dispatcher(int ifindex, uint32_t keep_id) {
  xdp_multiprog* mp = xdp_multiprog__get_from_ifindex(ifindex);
  if (!mp || libxdp_get_error(mp)) return 0;
  uint32_t detached = 0;
  for (xdp_program* p = xdp_multiprog__next_prog(nullptr, mp); p;
       p = xdp_multiprog__next_prog(p, mp)) {
    if (!is_ballast_program_name(xdp_program__name(p)) || xdp_program__id(p) == keep_id) continue;
    const uint32_t id = xdp_program__id(p);
    int err = xdp_program__detach(p, ifindex, xdp_multiprog__attach_mode(mp), 0);
    if (err)
      log_line(LogLevel::warning, errno_message("detaching ballast program " + std::to_string(id) +
                                                    " from libxdp's dispatcher",
                                                err));
    else
      detached = id;
    break;
  }
  xdp_multiprog__close(mp);
  return detached;
}

std::string layout_refusal(const std::string& pin_dir, const std::string& what,
                           const std::string& interface) {
  return "cannot adopt the maps pinned in " + pin_dir + ": " + what +
         ". Nothing was changed: the program attached to " + interface +
         " keeps forwarding with them. Start the ballastd release that made them, or remove "
         "Ballast from the interface with `ballastd --cleanup --interface " +
         interface + " --pin-dir " + pin_dir +
         "` (established flows lose their entries) and start this one again";
}

// Removes the map pins but @keep and, when @keep is empty (nothing of an
// earlier ballastd to keep), the program pins.
void remove_pins(const std::string& pin_dir, const std::set<std::string>& keep = {}) {
  for (const char* name : kPinnedMaps) {
    if (keep.count(name)) continue;
    std::error_code ec;
    std::filesystem::remove(pin_dir + "/" + name, ec);
  }
  if (keep.empty())
    for (const char* name : {kProgramPin, kProgramPinNext}) {
      std::error_code ec;
      std::filesystem::remove(pin_dir + "/" + name, ec);
    }
  std::error_code ec;
  std::filesystem::remove(pin_dir, ec);  // only when empty
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

std::optional<ballast_meta> read_pinned_meta(const std::string& pin_dir) {
  const std::string path = pin_dir + "/meta";
  if (!std::filesystem::exists(path)) return std::nullopt;
  UniqueFd fd(bpf_obj_get(path.c_str()));
  if (!fd.valid()) throw Error(errno_message("opening " + path, errno));
  const __u32 key = 0;
  ballast_meta meta{};
  if (bpf_map_lookup_elem(fd.get(), &key, &meta) != 0)
    throw Error(errno_message("reading " + path, errno));
  return meta;
}

Loader::Loader(const LoaderOptions& options) : options_(options) {
  ifindex_ = interface_index(options_.interface);
  ensure_bpffs_mounted();
  // Which layout is pinned, before anything is opened or written: a
  // layout this build cannot read is refused with the pins untouched.
  const bool had_pins = std::filesystem::exists(options_.pin_dir + "/conn_table") ||
                        std::filesystem::exists(options_.pin_dir + "/meta");
  // Pins without a meta map are layout 1 (ballast_abi.h).
  const auto meta = read_pinned_meta(options_.pin_dir);
  const uint32_t pinned_layout = meta ? meta->layout_version : 1;
  if (had_pins && pinned_layout != BALLAST_LAYOUT_VERSION)
    throw Error(layout_refusal(options_.pin_dir,
                               "they have layout " + std::to_string(pinned_layout) +
                                   ", this ballastd reads layout " +
                                   std::to_string(BALLAST_LAYOUT_VERSION),
                               options_.interface));
  if (meta) created_unix_ms_ = meta->created_unix_ms;
  if (!created_unix_ms_) created_unix_ms_ = unix_ms_now();
  std::filesystem::create_directories(options_.pin_dir);
  created_pins_ = !had_pins;
  try {
    load_reusing_pins();
    adopted_ = had_pins;
    BpfDataPlane::prepare_maps(map_fds());
    write_meta(static_cast<uint32_t>(getpid()));
  } catch (...) {
    close_all();
    if (created_pins_) remove_pins(options_.pin_dir);
    throw;
  }
  load_story_ = adopted_ ? "adopted the maps pinned in " + options_.pin_dir
                         : "pinned new maps in " + options_.pin_dir;
}

Loader::~Loader() {
  close_all();
  // Pins we made for a start that never attached feed nothing: leave the
  // machine as we found it.
  if (created_pins_ && !attached_) remove_pins(options_.pin_dir);
}

void Loader::open_and_pin() {
  skel_ = balancer::open();
  if (!skel_) throw Error(errno_message("opening BPF object", errno));
  choose_program(skel_, options_.mode, ifindex_);
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
// its type, sizes and flags match, and pins the ones that are missing. Pins
// it cannot reuse are refused, not replaced: the program attached now still
// forwards with them, and replacing them would lose every established flow.
void Loader::load_reusing_pins() {
  std::set<std::string> existing;
  for (const char* name : kPinnedMaps)
    if (std::filesystem::exists(options_.pin_dir + "/" + name)) existing.insert(name);
  open_and_pin();
  const int err = balancer::load(skel_);
  if (err == 0) return;
  close_all();
  remove_pins(options_.pin_dir, existing);  // what this attempt pinned, if anything
  if (existing.empty()) throw Error(errno_message("loading the BPF program", err));
  throw Error(layout_refusal(options_.pin_dir,
                             errno_message("their types or sizes differ from this build's", err),
                             options_.interface));
}

void Loader::write_meta(uint32_t pid) {
  const __u32 key = 0;
  const ballast_meta meta{.layout_version = BALLAST_LAYOUT_VERSION,
                          .daemon_pid = pid,
                          .heartbeat_unix_ms = unix_ms_now(),
                          .created_unix_ms = created_unix_ms_,
                          .reserved = 0};
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.meta), &key, &meta, BPF_ANY) != 0)
    throw Error(errno_message("writing the meta map", errno));
}

std::vector<std::string> Loader::restore_pins() {
  std::vector<std::string> pinned;
  auto pin_if_missing = [&](int fd, const std::string& path) {
    std::error_code ec;
    if (std::filesystem::exists(path, ec)) return;
    std::filesystem::create_directories(options_.pin_dir, ec);
    if (bpf_obj_pin(fd, path.c_str()) != 0)
      throw Error(errno_message("pinning " + path + " again", errno));
    pinned.push_back(path);
  };
  for (const char* name : kPinnedMaps)
    pin_if_missing(bpf_map__fd(map_by_name(skel_, name)), options_.pin_dir + "/" + name);
  if (attached_) pin_if_missing(program_fd(), options_.pin_dir + "/" + kProgramPin);
  return pinned;
}

void Loader::heartbeat(uint32_t pid) { write_meta(pid); }

void Loader::stopped() { write_meta(0); }

balancer* Loader::program_object() const { return program_skel_ ? program_skel_ : skel_; }

int Loader::program_fd() const {
  return bpf_program__fd(loaded_program(program_object(), options_.mode));
}

void Loader::attach() {
  const int new_fd = program_fd();
  const AttachedXdp now = attached_xdp(ifindex_);
  auto pinned = pinned_programs(options_.pin_dir);
  UniqueFd old_fd;
  const bool replacing = ballast_attached(now, pinned, &old_fd);
  // Pinned before it is attached (see kProgramPin).
  const std::string next_pin = options_.pin_dir + "/" + kProgramPinNext;
  std::error_code ec;
  std::filesystem::remove(next_pin, ec);
  if (bpf_obj_pin(new_fd, next_pin.c_str()) != 0)
    throw Error(errno_message("pinning the program at " + next_pin, errno));
  try {
    attach_story_ = attach_program(now, replacing, std::move(old_fd));
  } catch (...) {
    std::filesystem::remove(next_pin, ec);
    throw;
  }
  std::filesystem::rename(next_pin, options_.pin_dir + "/" + kProgramPin, ec);
  if (ec) log_line(LogLevel::warning, "renaming " + next_pin + ": " + ec.message());
  attached_ = true;
}

std::string Loader::attach_program(const AttachedXdp& now, bool replacing, UniqueFd old_fd) {
  const int new_fd = program_fd();
  const auto mode = options_.mode == AttachMode::native ? XDP_MODE_NATIVE : XDP_MODE_SKB;
  std::string what;
  if (replacing) {
    // A ballastd stopped (or died) and left its program forwarding: swap
    // ours in with one netlink request that names the old program, so no
    // packet meets an interface without a program.
    if (!old_fd.valid()) throw Error(errno_message("opening the attached program", errno));
    LIBBPF_OPTS(bpf_xdp_attach_opts, opts, .old_prog_fd = old_fd.get());
    int err = bpf_xdp_attach(ifindex_, new_fd, XDP_FLAGS_REPLACE | mode_flag(options_.mode), &opts);
    if (err)
      throw Error(errno_message("replacing the ballast program attached to " + options_.interface +
                                    " in " + attach_mode_name(options_.mode) + " mode",
                                err));
    what = "replaced program " + std::to_string(now.id) + " with " + std::to_string(program_id()) +
           " atomically";
  } else if (now.id && !now.is_dispatcher()) {
    throw Error(
        "another XDP program (" +
        (now.name.empty() ? std::string("its name unreadable without CAP_SYS_ADMIN") : now.name) +
        ", id " + std::to_string(now.id) + ") is attached to " + options_.interface +
        "; detach it first");
  } else {
    // libxdp attaches through its dispatcher where the kernel allows it,
    // so other XDP programs can share the interface (and falls back to
    // attaching the program on its own where it does not).
    if (!prog_) {
      // Wrapped from the skeleton's object, not from its fd: libxdp's
      // from_fd reads the program's BTF back from the kernel, which needs
      // CAP_SYS_ADMIN (without it libxdp 1.3.1 goes on with a half-filled
      // program and crashes in the attach).
      DECLARE_LIBXDP_OPTS(
          xdp_program_opts, opts, .obj = program_object()->obj,
          .prog_name = bpf_program__name(loaded_program(program_object(), options_.mode)));
      prog_ = xdp_program__create(&opts);
      if (int err = libxdp_get_error(prog_)) {
        prog_ = nullptr;
        throw Error(errno_message("wrapping the program for libxdp", err));
      }
    }
    int err = xdp_program__attach(prog_, ifindex_, mode, 0);
    if (err)
      throw Error(errno_message("attaching XDP program to " + options_.interface + " in " +
                                    attach_mode_name(options_.mode) + " mode",
                                err));
    what = "attached program " + std::to_string(program_id());
    // An old ballast program in libxdp's dispatcher: ours runs beside it
    // now (same maps, same choices); take the old one out.
    if (now.is_dispatcher()) {
      if (uint32_t old = detach_ballast_from_dispatcher(ifindex_, program_id()))
        what += ", detached the previous ballast program " + std::to_string(old) +
                " from the dispatcher";
    }
  }
  return what;
}

void Loader::reattach(int new_ifindex) {
  if (options_.mode != AttachMode::native) {
    const int old = ifindex_;
    ifindex_ = new_ifindex;
    try {
      attach();
    } catch (...) {
      ifindex_ = old;
      throw;
    }
    return;
  }
  // Our program is bound to the device that went away: load the program
  // again, bound to the new one, over the very same maps (every flow, id and
  // counter carries over), and attach that.
  balancer* loaded = load_program_for(new_ifindex);
  balancer* previous = program_skel_;
  const int old = ifindex_;
  program_skel_ = loaded;
  ifindex_ = new_ifindex;
  if (prog_) xdp_program__close(prog_);  // libxdp's handle wraps the old object
  prog_ = nullptr;
  try {
    attach();
  } catch (...) {
    if (prog_) xdp_program__close(prog_);
    prog_ = nullptr;
    program_skel_ = previous;
    ifindex_ = old;
    balancer::destroy(loaded);
    throw;
  }
  if (previous) balancer::destroy(previous);
}

// A second copy of the object whose maps are this one's (by descriptor, so
// nothing is created or pinned) and whose program is bound to @ifindex.
balancer* Loader::load_program_for(int ifindex) {
  balancer* next = balancer::open();
  if (!next) throw Error(errno_message("opening BPF object", errno));
  try {
    bpf_map* map;
    bpf_object__for_each_map(map, next->obj) {
      if (bpf_map__is_internal(map)) continue;  // .rodata: the same defaults
      const int fd = bpf_map__fd(map_by_name(skel_, bpf_map__name(map)));
      if (int err = bpf_map__reuse_fd(map, fd))
        throw Error(errno_message(std::string("reusing map ") + bpf_map__name(map), err));
    }
    choose_program(next, options_.mode, ifindex);
    if (int err = balancer::load(next))
      throw Error(errno_message(
          "loading the BPF program for interface index " + std::to_string(ifindex), err));
  } catch (...) {
    balancer::destroy(next);
    throw;
  }
  return next;
}

bool Loader::is_attached() const {
  const AttachedXdp now = attached_xdp(ifindex_);
  if (!now.id) return false;
  const uint32_t ours = program_id();
  if (now.id == ours) return true;
  return now.is_dispatcher() && program_has_link(ours);
}

void Loader::close_all() noexcept {
  if (prog_) xdp_program__close(prog_);  // its own dup of the program fd
  prog_ = nullptr;
  if (program_skel_) balancer::destroy(program_skel_);
  program_skel_ = nullptr;
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
      .vip_fleet_stats = bpf_map__fd(skel_->maps.vip_fleet_stats),
      .maglev_prev_tables = bpf_map__fd(skel_->maps.maglev_prev_tables),
      .conn_stats = bpf_map__fd(skel_->maps.conn_stats),
  };
}

uint32_t Loader::program_id() const {
  if (!skel_) return 0;
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(program_fd(), &info, &len)) return 0;
  return info.id;
}

RemoveResult remove_ballast(const std::string& interface, const std::string& pin_dir) {
  RemoveResult result;
  int ifindex = 0;
  try {
    ifindex = interface_index(interface);
  } catch (const Error&) {
    // The interface is gone, and its program with it: only pins remain.
  }
  const AttachedXdp now = attached_xdp(ifindex);
  auto pinned = pinned_programs(pin_dir);
  UniqueFd fd;
  if (ballast_attached(now, pinned, &fd)) {
    LIBBPF_OPTS(bpf_xdp_attach_opts, opts, .old_prog_fd = fd.get());
    if (int err = bpf_xdp_detach(ifindex, XDP_FLAGS_REPLACE | now.flags, &opts))
      throw Error(errno_message(
          "detaching ballast program " + std::to_string(now.id) + " from " + interface, err));
    result.detached_program = now.id;
  } else if (now.is_dispatcher()) {
    result.detached_program = detach_ballast_from_dispatcher(ifindex, 0);
  }
  for (const char* name : kPinnedMaps)
    if (std::filesystem::exists(pin_dir + "/" + name)) ++result.removed_pins;
  remove_pins(pin_dir);
  return result;
}

}  // namespace ballast
