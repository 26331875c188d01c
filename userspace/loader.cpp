#include "loader.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
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

// The maps ballastd pins, by name under the pin dir. .rodata is not pinned:
// it belongs to the loaded program.
constexpr const char* kPinnedMaps[] = {"vips",      "backends",      "maglev_tables", "conn_table",
                                       "vip_stats", "backend_stats", "reason_stats"};

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
  const MacAddress mac = interface_mac(options_.interface);
  ensure_bpffs_mounted();
  try {
    remove_stale_state();
    std::filesystem::create_directories(options_.pin_dir);

    skel_ = balancer::open();
    if (!skel_) throw Error(errno_message("opening BPF object", errno));
    std::memcpy(const_cast<uint8_t*>(skel_->rodata->lb_mac), mac.data(), mac.size());
    for (const char* name : kPinnedMaps) {
      const std::string path = options_.pin_dir + "/" + name;
      int err = bpf_map__set_pin_path(map_by_name(skel_, name), path.c_str());
      if (err) throw Error(errno_message("setting pin path " + path, err));
    }

    // libxdp loads the object (pinning the maps) and attaches it through its
    // dispatcher, so other XDP programs can share the interface.
    DECLARE_LIBXDP_OPTS(xdp_program_opts, xdp_opts, .obj = skel_->obj, .prog_name = kProgramName);
    prog_ = xdp_program__create(&xdp_opts);
    int err = libxdp_get_error(prog_);
    if (err) {
      prog_ = nullptr;
      throw Error(errno_message("creating XDP program", err));
    }
    const auto mode = options_.mode == AttachMode::native ? XDP_MODE_NATIVE : XDP_MODE_SKB;
    err = xdp_program__attach(prog_, ifindex_, mode, 0);
    if (err)
      throw Error(errno_message("attaching XDP program to " + options_.interface + " in " +
                                    attach_mode_name(options_.mode) + " mode",
                                err));
    attached_ = true;
  } catch (...) {
    teardown();
    throw;
  }
}

Loader::~Loader() { teardown(); }

void Loader::teardown() noexcept {
  if (attached_ && prog_) {
    const auto mode = options_.mode == AttachMode::native ? XDP_MODE_NATIVE : XDP_MODE_SKB;
    int err = xdp_program__detach(prog_, ifindex_, mode, 0);
    if (err) log_line(LogLevel::warning, errno_message("detaching XDP program", err));
    attached_ = false;
  }
  if (skel_) {
    for (const char* name : kPinnedMaps) {
      bpf_map* m = bpf_object__find_map_by_name(skel_->obj, name);
      if (m) bpf_map__unpin(m, nullptr);
    }
  }
  std::error_code ec;
  std::filesystem::remove(options_.pin_dir, ec);
  // The xdp_program wraps skel_->obj without owning it; close it first.
  if (prog_) xdp_program__close(prog_);
  prog_ = nullptr;
  if (skel_) balancer::destroy(skel_);
  skel_ = nullptr;
}

// A ballastd that died without cleaning up leaves its program attached and
// its maps pinned. This version starts fresh: detach our program, drop the
// pins. (Adopting the live state instead is issue #3's hitless restart.)
void Loader::remove_stale_state() {
  xdp_multiprog* mp = xdp_multiprog__get_from_ifindex(ifindex_);
  if (mp && !libxdp_get_error(mp)) {
    const auto mode = xdp_multiprog__attach_mode(mp);
    if (xdp_multiprog__is_legacy(mp)) {
      xdp_program* p = xdp_multiprog__main_prog(mp);
      if (p && std::strcmp(xdp_program__name(p), kProgramName) == 0) {
        log_line(LogLevel::warning, "detaching a " + std::string(kProgramName) +
                                        " left attached to " + options_.interface);
        xdp_program__detach(p, ifindex_, mode, 0);
      }
    } else {
      for (xdp_program* p = xdp_multiprog__next_prog(nullptr, mp); p;
           p = xdp_multiprog__next_prog(p, mp)) {
        if (std::strcmp(xdp_program__name(p), kProgramName) != 0) continue;
        log_line(LogLevel::warning, "detaching a " + std::string(kProgramName) +
                                        " left attached to " + options_.interface);
        int err = xdp_program__detach(p, ifindex_, mode, 0);
        if (err) throw Error(errno_message("detaching the stale program", err));
        break;
      }
    }
    xdp_multiprog__close(mp);
  }
  for (const char* name : kPinnedMaps) {
    const std::string path = options_.pin_dir + "/" + name;
    std::error_code ec;
    if (std::filesystem::remove(path, ec))
      log_line(LogLevel::warning, "removed stale pin " + path);
  }
}

MapFds Loader::map_fds() const {
  return MapFds{
      .vips = bpf_map__fd(skel_->maps.vips),
      .backends = bpf_map__fd(skel_->maps.backends),
      .maglev_tables = bpf_map__fd(skel_->maps.maglev_tables),
      .conn_table = bpf_map__fd(skel_->maps.conn_table),
      .vip_stats = bpf_map__fd(skel_->maps.vip_stats),
      .backend_stats = bpf_map__fd(skel_->maps.backend_stats),
      .reason_stats = bpf_map__fd(skel_->maps.reason_stats),
  };
}

uint32_t Loader::program_id() const { return prog_ ? xdp_program__id(prog_) : 0; }

}  // namespace ballast
