// loader.h: the balancer program's lifecycle, owned by one RAII object:
// open the skeleton, set load-time knobs, pin maps (reusing the pinned maps
// a previous ballastd left, so flows and counters survive a restart), load,
// attach (atomically replacing a ballast program left attached), and on
// destruction (clean shutdown) detach, unpin and close, in that order.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "address.h"
#include "bpf_dataplane.h"
#include "config.h"

struct balancer;
struct xdp_program;

namespace ballast {

struct LoaderOptions {
  std::string interface;
  AttachMode mode = AttachMode::native;
  std::string pin_dir = "/sys/fs/bpf/ballast";
};

class Loader {
 public:
  // Throws Error naming the step that failed (mount, open, load, attach...).
  explicit Loader(const LoaderOptions& options);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  MapFds map_fds() const;
  int ifindex() const { return ifindex_; }
  uint32_t program_id() const;
  const LoaderOptions& options() const { return options_; }
  // Whether our program is attached to the interface now, on its own or in
  // libxdp's dispatcher (false after someone detached or replaced it).
  bool is_attached() const;
  // True when the maps were pinned by an earlier ballastd and are reused:
  // the caller adopts their state instead of starting from nothing.
  bool adopted() const { return adopted_; }
  // What happened at start, for the log ("adopted pinned maps, replaced
  // program 12 with 57").
  const std::string& story() const { return story_; }

 private:
  // How the program went on: libxdp (fresh) or an atomic replace of a
  // ballast program that was already attached.
  enum class Attach { none, libxdp, replaced };

  void open_and_pin();
  bool load_reusing_pins();
  void remove_pins();
  struct AttachedBallast {
    uint32_t direct_id = 0;      // attached on its own (legacy XDP attach)
    bool in_dispatcher = false;  // one of the programs in libxdp's dispatcher
  };
  AttachedBallast find_attached_ballast() const;
  void detach_old_from_dispatcher();
  void teardown() noexcept;

  LoaderOptions options_;
  int ifindex_ = 0;
  balancer* skel_ = nullptr;
  xdp_program* prog_ = nullptr;
  Attach attach_ = Attach::none;
  bool adopted_ = false;
  std::string story_;
};

// Mounts bpffs on /sys/fs/bpf unless it already is.
void ensure_bpffs_mounted();

// Routes libbpf's and libxdp's messages through our log (warnings and up).
void route_library_logs();

}  // namespace ballast
