// loader.h: the balancer program's lifecycle, owned by one RAII object.
//
// A start: check the pinned state's layout (refuse one this build cannot
// adopt, before touching anything), open the skeleton, pin its maps (reusing
// the maps a previous ballastd pinned, so flows, ids and counters carry over),
// load, and prepare the maps; the caller then writes its config into them and
// calls attach() last, which replaces a ballast program already attached in
// one netlink request (no packet meets an interface without a program).
//
// Destruction closes our descriptors and nothing else: the program stays
// attached and the maps stay pinned whatever ended the daemon (SIGTERM, an
// error, a failed start after attach). Only pins this object created itself
// and never attached are removed, so a failed first start leaves no trace.
// Removing Ballast from an interface is remove_ballast(), an operator's act
// (`ballastd --cleanup`).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "address.h"
#include "bpf_dataplane.h"
#include "config.h"
#include "fd.h"

struct balancer;
struct xdp_program;

namespace ballast {

struct LoaderOptions {
  std::string interface;
  AttachMode mode = AttachMode::native;
  std::string pin_dir = "/sys/fs/bpf/ballast";
};

struct AttachedXdp;

class Loader {
 public:
  // Throws Error naming the step that failed (mount, layout, open, load...).
  explicit Loader(const LoaderOptions& options);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // Puts the program on the interface: an atomic replace of a ballast
  // program found there, else a fresh attach through libxdp. Throws Error.
  void attach();
  // The interface came back (deleted and created again under its name):
  // attaches to its new index (in native mode a program loaded again for the
  // new device, over the same maps). Throws Error (the old index and program
  // are kept, so the caller tries again later).
  void reattach(int new_ifindex);

  MapFds map_fds() const;
  int ifindex() const { return ifindex_; }
  uint32_t program_id() const;
  const LoaderOptions& options() const { return options_; }
  // Whether our program is attached to the interface now, on its own or in
  // libxdp's dispatcher (false after someone detached or replaced it, or
  // when the interface is gone). Opens no descriptor it does not close.
  bool is_attached() const;
  // True when the maps were pinned by an earlier ballastd and are reused:
  // the caller adopts their state instead of starting from nothing.
  bool adopted() const { return adopted_; }
  // What happened at start, for the log ("adopted the maps pinned in ...,
  // replaced program 12 with 57 atomically"), and what the last attach did.
  std::string story() const { return load_story_ + ", " + attach_story_; }
  const std::string& attach_story() const { return attach_story_; }

  // Pins removed from under a running ballastd (by hand, by a script that
  // cleans bpffs): the maps live on (the attached program and this process
  // hold them), but the next ballastd would find nothing to adopt and start
  // from empty maps, losing every flow. Pins each missing map (and, once
  // attached, the program) again; returns the paths it pinned. Throws Error
  // when a pin cannot be made.
  std::vector<std::string> restore_pins();

  // The pinned meta entry (ballast_abi.h): who manages the maps. heartbeat()
  // says "ballastd @pid is alive now"; stopped() says nobody manages them
  // from now on (the program keeps forwarding).
  void heartbeat(uint32_t pid);
  void stopped();

 private:
  void open_and_pin();
  void load_reusing_pins();
  void write_meta(uint32_t pid);
  void close_all() noexcept;
  balancer* program_object() const;  // program_skel_, else skel_
  int program_fd() const;
  balancer* load_program_for(int ifindex);

  LoaderOptions options_;
  int ifindex_ = 0;
  balancer* skel_ = nullptr;  // the maps, and the program unless reloaded
  // The program loaded again for a re-created interface (reattach), over
  // skel_'s maps; null until then.
  balancer* program_skel_ = nullptr;
  xdp_program* prog_ = nullptr;  // libxdp's handle after a fresh attach
  bool attached_ = false;
  bool adopted_ = false;
  bool created_pins_ = false;  // this object made the pins (nothing was there)
  uint64_t created_unix_ms_ = 0;
  std::string load_story_, attach_story_;

  // attach() once the program is pinned: replaces @now's program (its fd
  // @old_fd) when @replacing, else attaches afresh; returns what it did.
  std::string attach_program(const AttachedXdp& now, bool replacing, UniqueFd old_fd);
};

// What `ballastd --cleanup` did: the program it detached (0: none) and the
// pins it removed.
struct RemoveResult {
  uint32_t detached_program = 0;
  size_t removed_pins = 0;
};

// Removes Ballast from @interface: detaches a ballast program (on its own or
// in libxdp's dispatcher; any other program is left alone) and removes the
// pins under @pin_dir. The caller holds the instance lock. Throws Error.
RemoveResult remove_ballast(const std::string& interface, const std::string& pin_dir);

// The pinned meta entry under @pin_dir, or nullopt when there is none
// (no pins, or pins of layout 1). Throws Error when it cannot be read.
std::optional<ballast_meta> read_pinned_meta(const std::string& pin_dir);

// Mounts bpffs on /sys/fs/bpf unless it already is.
void ensure_bpffs_mounted();

// Routes libbpf's and libxdp's messages through our log (warnings and up).
void route_library_logs();

}  // namespace ballast
