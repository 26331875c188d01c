// api_messages.h: the control API's requests and replies, one struct each,
// shared by ballastd (commands.h serves them) and its clients (cli/, the
// doctor). A request names its command, whether it only reads, and the
// type of its reply; api_messages.cpp holds the JSON codecs, which are the
// wire format (docs/operations.md, "The control API"):
//   {"command": "backend.set_weight", "args": {"vip": ..., "address": ..., "weight": 2}}
// Decoding a request is strict: a missing field, a field of the wrong type
// or out of range, and a field the request does not know are each an Error
// naming it (a newer client's argument is never silently ignored). Decoding
// a reply ignores fields it does not know, so a newer daemon's additions do
// not break an older client.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "address.h"
#include "audit.h"
#include "forward_mode.h"
#include "health_model.h"
#include "skew.h"

namespace ballast::api {

// ---- Replies ----

struct StatusReply {
  std::string interface;
  int ifindex = 0;
  std::string attach_mode;  // "native", "skb"
  uint32_t program_id = 0;
  std::string pin_dir, config;
  uint64_t vips = 0, backends = 0;
  std::vector<std::string> unresolved_backends;
  std::string version;
  std::string metrics;                     // the URL, "" with no listener
  std::map<std::string, uint64_t> errors;  // per loop step, caught and survived
  int64_t uptime_seconds = 0;
  // Route health injection (docs/fleet.md): the table, nullopt when
  // fleet.announce is off; whether `ballast fleet leave` is in force; the
  // VIP addresses announced now.
  std::optional<uint32_t> announce_table;
  bool fleet_left = false;
  std::vector<std::string> announced;
  bool operator==(const StatusReply&) const = default;
};

// What a change did: what it changed (describe()'s text), the audit of the
// state after it (all findings, and those the change added), and whether it
// was applied (false: a dry run).
struct ChangeReply {
  std::vector<std::string> changes;
  std::vector<Finding> findings, new_findings;
  bool applied = true;
  bool operator==(const ChangeReply&) const = default;
};

struct AuditReply {
  std::vector<Finding> findings;
  uint64_t errors = 0, warnings = 0;
  static AuditReply of(std::vector<Finding> findings);  // counts them
  bool operator==(const AuditReply&) const = default;
};

struct BackendEntry {
  VipKey vip;
  IpAddress address;
  uint32_t weight = 0;
  uint32_t id = 0;  // the backend's slot in the maps
  std::optional<std::string> mac;  // nullopt: unresolved
  Health health = Health::unknown;
  bool drained = false;
  bool takes_new_flows = false;
  uint64_t table_entries = 0;  // of the VIP's live Maglev table
  std::string check;           // check_description()
  std::string last_check;      // "ok 1.2 ms", "" before the first
  bool operator==(const BackendEntry&) const = default;
};

struct VipEntry {
  VipKey vip;
  uint32_t id = 0;
  bool fail_open = false, failing_open = false;
  std::vector<BackendEntry> backends;
  // The live table's fleet digest (maglev::table_digest, 16 hex digits; ""
  // without a table), with what it was built with: balancers that agree on
  // every flow of this VIP show the same three (docs/fleet.md).
  std::string table_digest;
  uint32_t hash_seed = 0;
  uint32_t table_format = 0;
  // Whether its address is announced to the routers (nullopt: announce is
  // off), and why (announce.h's verdict for the address).
  std::optional<bool> announced;
  std::string announce_reason;
  bool operator==(const VipEntry&) const = default;
};

struct LogEntry {
  int64_t unix_ms = 0;
  std::string actor, change;
  bool operator==(const LogEntry&) const = default;
};

struct FlowsReply {
  // Active flows from the last finished walk of the connection table;
  // nullopt while the first one runs (ask again).
  std::optional<uint64_t> flows;
  uint64_t idle_ms = 0;
  std::optional<int64_t> counted_ms_ago;
  bool operator==(const FlowsReply&) const = default;
};

// `ballast stats`: counters since the program was loaded.
struct StatsReply {
  struct Backend {
    IpAddress address;
    uint32_t weight = 0;
    bool resolved = false;
    Health health = Health::unknown;
    bool drained = false;
    TrafficCounts counts;
    double expected_share = 0, observed_share = 0;
    std::optional<double> skew;  // nullopt when nothing is expected of it
    bool operator==(const Backend&) const = default;
  };
  struct Vip {
    VipKey vip;
    ForwardMode mode = ForwardMode::dsr;
    TrafficCounts counts;
    // Mid-flow pick-ups (TCP without SYN, no connection-table entry: moved
    // here from another balancer, or an entry lost), among counts.new_flows.
    uint64_t pickups = 0;
    // Packets sent with the flow's previous backend (second chance).
    uint64_t second_chance = 0;
    std::vector<Backend> backends;
    bool operator==(const Vip&) const = default;
  };
  struct Reason {
    std::string reason, verdict;
    uint64_t packets = 0, bytes = 0;
    bool operator==(const Reason&) const = default;
  };
  // Where new flows' connection-table entries went (bpf/conn_table.h):
  // the SYN-flood guard's work shows as unrecorded flows, never as
  // replaced confirmed ones.
  struct ConnTable {
    uint64_t capacity = 0;  // ways (flows it can hold)
    uint64_t recorded = 0, replaced_embryonic = 0, replaced_idle = 0, unrecorded = 0;
    bool operator==(const ConnTable&) const = default;
  };
  std::vector<Vip> vips;
  std::vector<Reason> reasons;
  ConnTable conn_table;
  bool operator==(const StatsReply&) const = default;
};

// `ballast skew` and `top`: the sliding window (skew.h).
struct SkewReply {
  struct Shares {
    double new_flows = 0, packets = 0, bytes = 0;
    bool operator==(const Shares&) const = default;
  };
  struct Skews {
    std::optional<double> new_flows, packets, bytes;
    bool operator==(const Skews&) const = default;
  };
  struct Backend {
    IpAddress address;
    uint32_t weight = 0;
    Health health = Health::unknown;
    bool drained = false, takes_new_flows = false;
    TrafficCounts window;
    double pps = 0, expected_share = 0;
    Shares observed_share;
    Skews skew;
    double z = 0;
    bool significant = false;
    std::optional<int64_t> skewed_seconds;
    double ring_share = 0;
    std::optional<double> ring_skew;
    bool operator==(const Backend&) const = default;
  };
  struct Vip {
    VipKey vip;
    double window_seconds = 0;
    TrafficCounts window;
    double pps = 0;
    bool confident = false;
    std::optional<double> skew;
    double ring_foreign_share = 0;
    std::vector<Backend> backends;
    bool operator==(const Vip&) const = default;
  };
  SkewSettings settings;
  std::vector<Vip> vips;
  bool operator==(const SkewReply&) const = default;
};

// ---- Requests ----

template <const char* Name, bool ReadOnly, typename ReplyType>
struct RequestTraits {
  static constexpr std::string_view kCommand = Name;
  static constexpr bool kReadOnly = ReadOnly;
  using Reply = ReplyType;
  bool operator==(const RequestTraits&) const = default;
};

inline constexpr char kStatus[] = "status", kStats[] = "stats", kAudit[] = "audit",
                      kSkew[] = "skew", kVipList[] = "vip.list", kBackendList[] = "backend.list",
                      kBackendFlows[] = "backend.flows", kLog[] = "log", kApply[] = "apply",
                      kVipAdd[] = "vip.add", kVipDel[] = "vip.del", kBackendAdd[] = "backend.add",
                      kBackendDel[] = "backend.del", kBackendSetWeight[] = "backend.set_weight",
                      kBackendDrain[] = "backend.drain", kBackendUndrain[] = "backend.undrain",
                      kFleetLeave[] = "fleet.leave", kFleetJoin[] = "fleet.join";

struct Status : RequestTraits<kStatus, true, StatusReply> {
  bool operator==(const Status&) const = default;
};
struct Stats : RequestTraits<kStats, true, StatsReply> {
  bool operator==(const Stats&) const = default;
};
struct Audit : RequestTraits<kAudit, true, AuditReply> {
  bool operator==(const Audit&) const = default;
};
struct Skew : RequestTraits<kSkew, true, SkewReply> {
  bool operator==(const Skew&) const = default;
};
struct VipList : RequestTraits<kVipList, true, std::vector<VipEntry>> {
  bool operator==(const VipList&) const = default;
};
struct BackendList : RequestTraits<kBackendList, true, std::vector<BackendEntry>> {
  std::optional<VipKey> vip;  // nullopt: every VIP's
  bool operator==(const BackendList&) const = default;
};
struct BackendFlows : RequestTraits<kBackendFlows, true, FlowsReply> {
  VipKey vip;
  IpAddress address;
  uint64_t idle_ms = 5000;  // a flow with no packet for this long is over
  bool operator==(const BackendFlows&) const = default;
};
struct Log : RequestTraits<kLog, true, std::vector<LogEntry>> {
  uint64_t since_unix_ms = 0;
  bool operator==(const Log&) const = default;
};

// Changes: each may be refused by the pre-apply audit unless forced.
struct Apply : RequestTraits<kApply, false, ChangeReply> {
  std::string config;  // the YAML text
  std::string source = "apply";  // the file's name, for messages and the change log
  bool dry_run = false, force = false;
  bool operator==(const Apply&) const = default;
};
struct VipAdd : RequestTraits<kVipAdd, false, ChangeReply> {
  VipKey vip;
  bool force = false;
  bool operator==(const VipAdd&) const = default;
};
struct VipDel : RequestTraits<kVipDel, false, ChangeReply> {
  VipKey vip;
  bool force = false;
  bool operator==(const VipDel&) const = default;
};
struct BackendAdd : RequestTraits<kBackendAdd, false, ChangeReply> {
  VipKey vip;
  IpAddress address;
  uint32_t weight = 1;
  bool force = false;
  bool operator==(const BackendAdd&) const = default;
};
struct BackendDel : RequestTraits<kBackendDel, false, ChangeReply> {
  VipKey vip;
  IpAddress address;
  bool force = false;
  bool operator==(const BackendDel&) const = default;
};
struct BackendSetWeight : RequestTraits<kBackendSetWeight, false, ChangeReply> {
  VipKey vip;
  IpAddress address;
  uint32_t weight = 0;  // required on the wire
  bool force = false;
  bool operator==(const BackendSetWeight&) const = default;
};
struct BackendDrain : RequestTraits<kBackendDrain, false, ChangeReply> {
  VipKey vip;
  IpAddress address;
  bool force = false;
  bool operator==(const BackendDrain&) const = default;
};
struct BackendUndrain : RequestTraits<kBackendUndrain, false, ChangeReply> {
  VipKey vip;
  IpAddress address;
  bool force = false;
  bool operator==(const BackendUndrain&) const = default;
};

// `ballast fleet leave`: withdraw every VIP address from the routers and
// keep them withdrawn (forwarding goes on for what still arrives) until
// `fleet join`; kept across restarts of ballastd.
struct FleetLeave : RequestTraits<kFleetLeave, false, ChangeReply> {
  bool operator==(const FleetLeave&) const = default;
};
struct FleetJoin : RequestTraits<kFleetJoin, false, ChangeReply> {
  bool operator==(const FleetJoin&) const = default;
};

// Every request, for dispatch tables and tests.
template <typename F>
void for_each_request(F&& f) {
  (f(Status{}), f(Stats{}), f(Audit{}), f(Skew{}), f(VipList{}), f(BackendList{}),
   f(BackendFlows{}), f(Log{}), f(Apply{}), f(VipAdd{}), f(VipDel{}), f(BackendAdd{}),
   f(BackendDel{}), f(BackendSetWeight{}), f(BackendDrain{}), f(BackendUndrain{}),
   f(FleetLeave{}), f(FleetJoin{}));
}

// True for a command that changes nothing (readers may send it); false for
// changes and unknown commands.
bool is_read_only_command(std::string_view command);

// ---- Codecs (nlohmann's to_json/from_json, found by argument lookup) ----

#define BALLAST_API_CODEC(T)                   \
  void to_json(nlohmann::json& j, const T& v); \
  void from_json(const nlohmann::json& j, T& v);
BALLAST_API_CODEC(StatusReply)
BALLAST_API_CODEC(ChangeReply)
BALLAST_API_CODEC(AuditReply)
BALLAST_API_CODEC(BackendEntry)
BALLAST_API_CODEC(VipEntry)
BALLAST_API_CODEC(LogEntry)
BALLAST_API_CODEC(FlowsReply)
BALLAST_API_CODEC(StatsReply)
BALLAST_API_CODEC(SkewReply)
BALLAST_API_CODEC(Status)
BALLAST_API_CODEC(Stats)
BALLAST_API_CODEC(Audit)
BALLAST_API_CODEC(Skew)
BALLAST_API_CODEC(VipList)
BALLAST_API_CODEC(BackendList)
BALLAST_API_CODEC(BackendFlows)
BALLAST_API_CODEC(Log)
BALLAST_API_CODEC(Apply)
BALLAST_API_CODEC(VipAdd)
BALLAST_API_CODEC(VipDel)
BALLAST_API_CODEC(BackendAdd)
BALLAST_API_CODEC(BackendDel)
BALLAST_API_CODEC(BackendSetWeight)
BALLAST_API_CODEC(BackendDrain)
BALLAST_API_CODEC(BackendUndrain)
BALLAST_API_CODEC(FleetLeave)
BALLAST_API_CODEC(FleetJoin)
#undef BALLAST_API_CODEC

// The request as sent: {"command": ..., "args": {...}}.
template <typename Request>
nlohmann::json envelope(const Request& request) {
  return {{"command", std::string(Request::kCommand)}, {"args", nlohmann::json(request)}};
}

// A request's args decoded, or an Error that says what is wrong ("missing
// argument 'address'", "unknown argument 'wieght' for backend.add (it takes
// vip, address, force, weight)").
template <typename Request>
Request decode_request(const nlohmann::json& args) {
  return args.get<Request>();
}

// A reply decoded, or an Error ("reply: missing field 'flows'").
template <typename Request>
typename Request::Reply decode_reply(const nlohmann::json& result) {
  return result.get<typename Request::Reply>();
}

}  // namespace ballast::api

namespace ballast {
// A finding on the wire: severity, check, vip, backend, message, hint (the
// repair is the daemon's own business and does not travel).
void to_json(nlohmann::json& j, const Finding& f);
void from_json(const nlohmann::json& j, Finding& f);
}  // namespace ballast
