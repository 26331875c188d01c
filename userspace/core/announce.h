// announce.h: route health injection (docs/fleet.md). Which VIP addresses
// this balancer asks the routers in front of it for, and the routes that
// say so: one host route per announced address in a dedicated kernel
// routing table (fleet.announce.table) that no ip rule uses, so forwarding
// is untouched; the routing daemon (BIRD's kernel protocol with `learn`)
// reads that table and announces what is in it over BGP.
//
// An address is announced while the program is attached, the balancer has
// not left the fleet (`ballast fleet leave`), and every VIP at that address
// has at least its min_usable usable backends: a router steers a whole
// address, so a balancer that can serve only some of its ports gives way
// to those that can serve all of them.
//
// No syscalls here: the routes go through RouteSink (host/kernel_routes.h,
// a fake in the unit tests).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "audit.h"
#include "audit_scope.h"
#include "change.h"
#include "config.h"

namespace ballast {

// Backends of @vip that could take a new flow on their own health: up,
// undrained, resolved, weight above 0 (a fail_open VIP sending to down
// backends has none).
uint32_t usable_backends(const VipView& vip);
// @vip's min_usable: its own, else fleet.announce's (0 without announce).
uint32_t min_usable(const Config& config, const VipConfig& vip);

// Whether one address should be announced, and why.
struct AddressVerdict {
  IpAddress address;
  bool announce = false;
  // Announced: "3 of 3 backends usable (min_usable 1)" for its VIP, or the
  // count of VIPs; withdrawn: the first reason (not attached, left, or the
  // first VIP short of backends, with its numbers).
  std::string reason;
  bool operator==(const AddressVerdict&) const = default;
};

// The verdict for every VIP address of @config, by address. @attached: the
// program is on the interface; @left: `ballast fleet leave` is in force.
std::vector<AddressVerdict> judge_addresses(const Config& config, const std::vector<VipView>& vips,
                                            bool attached, bool left);

// The audit's "announce" check: @present (the addresses the sink holds
// now) against @verdicts. An address announced though a VIP at it is
// short of usable backends (error: routers send it traffic it cannot
// serve well), and one withdrawn though it qualifies (warning; info while
// the balancer has left the fleet on purpose).
std::vector<Finding> audit_announcements(const std::vector<AddressVerdict>& verdicts,
                                         const std::vector<IpAddress>& present, bool left,
                                         uint32_t table);

// Where the announced routes live: the kernel (host/kernel_routes.h).
class RouteSink {
 public:
  virtual ~RouteSink() = default;
  // Addresses with a Ballast route in @table.
  virtual std::vector<IpAddress> list(uint32_t table) = 0;
  virtual void add(uint32_t table, const IpAddress& address) = 0;
  // No error when there is no such route.
  virtual void remove(uint32_t table, const IpAddress& address) = 0;
};

// Keeps the routes in @sink equal to the verdicts, and says what it did.
class Announcer {
 public:
  explicit Announcer(RouteSink& sink) : sink_(sink) {}

  // At start: the routes a previous ballastd left in @config's table stay
  // as they are (a restart does not withdraw a VIP the routers use) until
  // the first update() judges them. @left: `ballast fleet leave` was in
  // force when that ballastd stopped.
  void adopt(const Config& config, bool left);

  // Adds and removes routes until @sink holds exactly the addresses judged
  // announceable (in @config's table; a table changed or announce turned
  // off withdraws from the old one). Returns one AnnounceChanged per
  // address announced or withdrawn. A route the sink fails to add or
  // remove is skipped (the next update tries it again) and its error kept
  // in failure(): what did change is still returned, to be recorded.
  std::vector<Change> update(const Config& config, const std::vector<VipView>& vips, bool attached);
  // The errors of the last update() ("" when none), one per line.
  const std::string& failure() const { return failure_; }

  // `ballast fleet leave` / `join`: withdraw everything (and stay
  // withdrawn) / announce again what qualifies. Apply with update().
  void set_left(bool left) { left_ = left; }
  bool left() const { return left_; }

  bool enabled() const { return table_.has_value(); }
  std::optional<uint32_t> table() const { return table_; }
  // The last update's verdicts, by address.
  const std::vector<AddressVerdict>& verdicts() const { return verdicts_; }
  // Whether ballastd holds @address announced (its route installed).
  bool announced(const IpAddress& address) const { return installed_.count(address) != 0; }

 private:
  RouteSink& sink_;
  bool left_ = false;
  std::optional<uint32_t> table_;  // the table installed_ is in; nullopt: announce off
  std::set<IpAddress> installed_;
  std::vector<AddressVerdict> verdicts_;
  std::string failure_;
  // Runs one sink operation; false (its error kept) when it failed.
  template <typename Op>
  bool attempt(Op&& op);
};

}  // namespace ballast
