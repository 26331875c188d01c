// loader.h: the balancer program's lifecycle, owned by one RAII object:
// open the skeleton, set load-time knobs, pin maps, load and attach with
// libxdp, and on destruction detach, unpin and close, in that order.
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

 private:
  void remove_stale_state();
  void teardown() noexcept;

  LoaderOptions options_;
  int ifindex_ = 0;
  balancer* skel_ = nullptr;
  xdp_program* prog_ = nullptr;
  bool attached_ = false;
};

// Mounts bpffs on /sys/fs/bpf unless it already is.
void ensure_bpffs_mounted();

// Routes libbpf's and libxdp's messages through our log (warnings and up).
void route_library_logs();

}  // namespace ballast
