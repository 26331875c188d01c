// The audit (userspace/core/audit.h): config, live and drift checks on plain
// data, the finding helpers, and BalancerState::expected() / rewrite_all()
// (what the drift check compares against and how `reconcile: true` repairs
// it) against a fake of the pinned maps.
#include "audit.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "api_messages.h"
#include "balancer_state.h"
#include "config.h"
#include "fake_maps.h"
#include "fake_neighbors.h"
#include "skew.h"
#include "state_driver.h"

namespace ballast {
namespace {

using namespace std::chrono_literals;

IpAddress ip(const char* s) { return *IpAddress::parse(s); }

MacAddress mac_of(const char* address) { return MacAddress{2, 0, 0, 0, 0, ip(address).bytes[3]}; }

// ---------------------------------------------------------------------------
// Plain-data builders.

const char* const kVip = "10.0.0.100:80/tcp";

VipConfig vip_config(const char* key, std::vector<std::pair<const char*, uint32_t>> backends) {
  VipConfig vip = empty_vip(VipKey::parse(key));
  for (const auto& [address, weight] : backends)
    vip.backends.push_back(BackendConfig{ip(address), weight, vip.check});
  return vip;
}

Config config_of(std::vector<VipConfig> vips) {
  Config c;
  c.interface = "eth0";
  c.vips = std::move(vips);
  return c;
}

// A backend resolved, up, taking new flows.
BackendView usable(uint32_t id, const char* address, uint32_t weight = 1) {
  return BackendView{id,    ip(address), weight, mac_of(address), Health::up,
                     false, true,        0,      CheckSpec{}};
}

BackendView down(uint32_t id, const char* address, uint32_t weight = 1) {
  BackendView b = usable(id, address, weight);
  b.health = Health::down;
  b.takes_new_flows = false;
  return b;
}

BackendView drained(uint32_t id, const char* address, uint32_t weight = 1) {
  BackendView b = usable(id, address, weight);
  b.drained = true;
  b.takes_new_flows = false;
  return b;
}

VipView vip_view(uint32_t id, const char* key, std::vector<BackendView> backends) {
  return VipView{id, VipKey::parse(key), ForwardMode::dsr, false, false, std::move(backends), nullptr};
}

// A VIP's skew entry whose backends are all exactly as expected (ring skew 1,
// nothing skewed); tests then spoil one field.
VipSkew even_skew(const VipView& vip) {
  VipSkew s;
  s.id = vip.id;
  s.key = vip.key;
  s.window_seconds = 10;
  s.window.new_flows = 1000;
  s.confident = true;
  double weight = 0;
  for (const auto& b : vip.backends)
    if (b.takes_new_flows) weight += b.weight;
  for (const auto& b : vip.backends) {
    BackendSkew bs;
    bs.id = b.id;
    bs.address = b.address;
    bs.expected_share = b.takes_new_flows ? b.weight / weight : 0.0;
    bs.observed_new_flows = bs.expected_share;
    bs.ring_share = bs.expected_share;
    if (bs.expected_share > 0) {
      bs.skew_new_flows = 1.0;
      bs.ring_skew = 1.0;
    }
    s.backends.push_back(bs);
  }
  return s;
}

std::vector<Finding> of_check(const std::vector<Finding>& findings, const std::string& check) {
  std::vector<Finding> out;
  for (const auto& f : findings)
    if (f.check == check) out.push_back(f);
  return out;
}

std::string dump(const std::vector<Finding>& findings) {
  return findings.empty() ? "(no findings)" : findings_text(findings);
}

// ---------------------------------------------------------------------------
// A fake of the pinned maps: writes land in maps as the kernel's would, every
// write is logged, and each write that breaks the ordering rules of
// balancer_state.h is recorded as a violation (so a test asserts none). Its
// snapshot() reads like BpfDataPlane::snapshot(): every VIP, every slot whose
// family != 0, and the tables of the VIPs in the vips map (only those).

std::string key_bytes(const ballast_vip_key& k) {
  return std::string(reinterpret_cast<const char*>(&k), sizeof(k));
}

ballast_vip_key key_from_bytes(const std::string& s) {
  ballast_vip_key k;
  std::memcpy(&k, s.data(), sizeof(k));
  return k;
}

std::string key_text(const ballast_vip_key& k) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%u.%u.%u.%u:%u/%u", k.addr.bytes[0], k.addr.bytes[1],
                k.addr.bytes[2], k.addr.bytes[3], ntohs(k.port), k.proto);
  return buf;
}

std::string slot_describe(const ballast_backend& s) {
  char buf[128];
  std::snprintf(buf, sizeof(buf),
                "family %u addr %u.%u.%u.%u mac %02x:%02x:%02x:%02x:%02x:%02x flags %u vip %u",
                s.family, s.addr.bytes[0], s.addr.bytes[1], s.addr.bytes[2], s.addr.bytes[3],
                s.mac[0], s.mac[1], s.mac[2], s.mac[3], s.mac[4], s.mac[5], s.flags, s.vip_id);
  return buf;
}

class RecordingMaps : public DataPlane {
 public:
  std::map<std::string, ballast_vip_info> vips;  // key bytes -> info
  std::map<uint32_t, ballast_backend> backends;  // the array: freed slots stay, zeroed
  std::map<uint32_t, std::vector<uint32_t>> tables;
  std::map<uint32_t, ballast_egress> egress;  // not logged: the log checks write order
  // BpfDataPlane's mirror of the port entries. snapshot() reports it only
  // when a test asks (mirror_vip_by_id), as BpfDataPlane always does.
  std::map<uint32_t, ballast_vip_entry> vip_by_id;
  bool mirror_vip_by_id = false;
  // The VIP address filter, as BpfDataPlane keeps it: put_vip sets the
  // key's bit. snapshot() reports it only when a test asks.
  std::vector<uint64_t> vip_filter = std::vector<uint64_t>(BALLAST_VIP_FILTER_WORDS, 0);
  bool report_vip_filter = false;
  std::vector<std::string> log;
  std::vector<std::string> violations;

  void put_vip(const ballast_vip_key& key, const ballast_vip_info& info) override {
    if (!tables.count(info.vip_id))
      violations.push_back("VIP " + key_text(key) + " published before its table " +
                           std::to_string(info.vip_id));
    if (key.port != 0) vip_by_id[info.vip_id] = ballast_vip_entry{.key = key, .info = info};
    const uint32_t bit = ballast_vip_filter_bit(&key.addr);
    vip_filter[bit >> 6] |= uint64_t{1} << (bit & 63);
    vips[key_bytes(key)] = info;
    log.push_back("put_vip " + key_text(key) + " " + std::to_string(info.vip_id));
  }
  void delete_vip(const ballast_vip_key& key) override {
    vips.erase(key_bytes(key));
    log.push_back("delete_vip " + key_text(key));
  }
  void put_backend(uint32_t id, const ballast_backend& b) override {
    if (!(b.flags & BALLAST_BACKEND_F_ACTIVE))
      for (const auto& [vip, t] : tables)
        if (std::find(t.begin(), t.end(), id) != t.end()) {
          violations.push_back("slot " + std::to_string(id) + " deactivated while table " +
                               std::to_string(vip) + " names it");
          break;
        }
    backends[id] = b;
    log.push_back("put_backend " + std::to_string(id));
  }
  void install_table(uint32_t vip_id, TablePtr table) override {
    const std::vector<uint32_t>& entries = *table;
    if (entries.size() != BALLAST_MAGLEV_SIZE)
      violations.push_back("table " + std::to_string(vip_id) + " of size " +
                           std::to_string(entries.size()));
    std::set<uint32_t> named(entries.begin(), entries.end());
    for (uint32_t e : named)
      if (e != BALLAST_NO_BACKEND &&
          !(backends.count(e) && (backends[e].flags & BALLAST_BACKEND_F_ACTIVE)))
        violations.push_back("table " + std::to_string(vip_id) + " names slot " +
                             std::to_string(e) + " before it is active");
    tables[vip_id] = entries;
    log.push_back("install_table " + std::to_string(vip_id));
  }
  void remove_table(uint32_t vip_id) override {
    tables.erase(vip_id);
    log.push_back("remove_table " + std::to_string(vip_id));
  }
  void put_egress(uint32_t id, const ballast_egress& e) override { egress[id] = e; }
  ballast_traffic_counters read_counters(CounterMap, uint32_t) override { return {}; }
  void reset_counters(CounterMap, uint32_t) override {}
  ballast_fleet_counters read_fleet_counters(uint32_t) override { return {}; }
  void keep_previous_table(uint32_t) override {}
  void remove_previous_table(uint32_t) override {}
  std::vector<ballast_reason_counters> read_reasons() override {
    return std::vector<ballast_reason_counters>(BALLAST_REASON_COUNT);
  }
  void walk_flows(FlowWalk& walk, size_t, const std::function<void(uint32_t, uint64_t)>&) override {
    walk.done = true;
  }
  uint64_t flow_clock_ns() override { return 0; }
  std::optional<LiveTable> live_table(uint32_t vip_id) override {
    return live_table_in(tables, vip_id);
  }
  LiveSnapshot snapshot() override {
    LiveSnapshot snap;
    for (const auto& [k, info] : vips) snap.vips.emplace_back(key_from_bytes(k), info);
    for (const auto& [id, b] : backends)
      if (b.family != 0) snap.backends[id] = b;
    for (const auto& [k, info] : snap.vips)
      if (auto t = live_table(info.vip_id)) snap.tables[info.vip_id] = *t;
    for (const auto& [id, e] : egress)
      if (e.ifindex != 0) snap.egress[id] = e;
    if (mirror_vip_by_id)
      for (const auto& [k, info] : snap.vips)
        if (k.port != 0) snap.vip_by_id[info.vip_id] = vip_by_id[info.vip_id];
    if (report_vip_filter) snap.vip_filter = vip_filter;
    return snap;
  }
};

// A LiveSnapshot in a form gtest can compare and print readably.
struct Flat {
  std::map<std::string, std::string> vips;   // "a.b.c.d:port/proto" -> "id N flags F"
  std::map<uint32_t, std::string> backends;  // slot id -> description
  std::map<uint32_t, std::vector<uint32_t>> tables;
};

Flat flatten(const LiveSnapshot& s) {
  Flat f;
  for (const auto& [k, info] : s.vips)
    f.vips[key_text(k)] =
        "id " + std::to_string(info.vip_id) + " flags " + std::to_string(info.flags);
  for (const auto& [id, b] : s.backends) f.backends[id] = slot_describe(b);
  for (const auto& [id, t] : s.tables)
    if (t.entries) f.tables[id] = *t.entries;
  return f;
}

// What the fake's maps hold, every table included (not only those a VIP
// names), every slot in use.
Flat flatten_maps(const RecordingMaps& dp) {
  Flat f;
  for (const auto& [k, info] : dp.vips)
    f.vips[key_text(key_from_bytes(k))] =
        "id " + std::to_string(info.vip_id) + " flags " + std::to_string(info.flags);
  for (const auto& [id, b] : dp.backends)
    if (b.family != 0) f.backends[id] = slot_describe(b);
  f.tables = dp.tables;
  return f;
}

// Tables are 65537 entries: compare, and on a difference say how much.
std::string table_diff(const std::map<uint32_t, std::vector<uint32_t>>& a,
                       const std::map<uint32_t, std::vector<uint32_t>>& b) {
  std::string out;
  for (const auto& [id, t] : a) {
    auto it = b.find(id);
    if (it == b.end()) {
      out += "table " + std::to_string(id) + " only on the left; ";
      continue;
    }
    size_t differ = 0;
    for (size_t i = 0; i < std::min(t.size(), it->second.size()); ++i)
      differ += t[i] != it->second[i];
    if (differ || t.size() != it->second.size())
      out += "table " + std::to_string(id) + ": " + std::to_string(differ) + " entries differ; ";
  }
  for (const auto& [id, t] : b)
    if (!a.count(id)) out += "table " + std::to_string(id) + " only on the right; ";
  return out;
}

void expect_same(const Flat& want, const Flat& have, const std::string& what) {
  EXPECT_EQ(want.vips, have.vips) << what << ": vips map";
  EXPECT_EQ(want.backends, have.backends) << what << ": backend slots";
  EXPECT_EQ(table_diff(want.tables, have.tables), "") << what << ": Maglev tables";
}

// ===========================================================================
// audit_config

TEST(AuditConfigTest, CheckIdsAndSeverityNames) {
  EXPECT_EQ(audit_check_ids(),
            (std::vector<std::string>{"share-limit", "single-backend", "duplicate-backend",
                                      "backend-is-vip", "unresolved-backend", "ring-share",
                                      "traffic-skew", "backend-down", "vip-near-down", "drift",
                                      "announce"}))
      << "every check id of audit.h's contract, in its order (metrics export each)";
  EXPECT_EQ(severity_name(Severity::info), "info");
  EXPECT_EQ(severity_name(Severity::warning), "warning");
  EXPECT_EQ(severity_name(Severity::error), "error");
}

TEST(AuditConfigTest, ShareLimitNamesBackendShareWeightsAndLimit) {
  const Config c =
      config_of({vip_config(kVip, {{"10.0.0.11", 100}, {"10.0.0.12", 1}, {"10.0.0.13", 1}})});
  const auto findings = audit_config(c, {});
  ASSERT_EQ(findings.size(), 1u) << "only the 100-weight backend is past the limit: "
                                 << dump(findings);
  const Finding& f = findings[0];
  EXPECT_EQ(f.severity, Severity::error) << "share-limit is an error";
  EXPECT_EQ(f.check, "share-limit");
  EXPECT_EQ(f.vip, "10.0.0.100:80/tcp") << "the VIP, as ADDR:PORT/PROTO";
  EXPECT_EQ(f.backend, "10.0.0.11") << "the backend that gets too much";
  EXPECT_EQ(f.message,
            "Backend 10.0.0.11 would get 98.0% of VIP 10.0.0.100:80/tcp's new flows (weight 100 of "
            "102), above the 50.0% limit, while 2 other backends take traffic.")
      << "what the operator reads when the change is refused";
  EXPECT_EQ(f.hint,
            "lower its weight, or raise max_share for this VIP if the concentration is intended");
}

TEST(AuditConfigTest, ShareLimitBoundaryAndSingularWording) {
  EXPECT_TRUE(
      audit_config(
          config_of({vip_config(kVip, {{"10.0.0.11", 1}, {"10.0.0.12", 1}, {"10.0.0.13", 2}})}), {})
          .empty())
      << "1/1/2: the weight-2 backend gets exactly 50%, which is not above the 50% limit";

  const auto over = audit_config(
      config_of({vip_config(kVip, {{"10.0.0.11", 1}, {"10.0.0.12", 1}, {"10.0.0.13", 3}})}), {});
  ASSERT_EQ(over.size(), 1u) << "1/1/3: 60% is above 50%: " << dump(over);
  EXPECT_EQ(over[0].backend, "10.0.0.13");

  const auto two =
      audit_config(config_of({vip_config(kVip, {{"10.0.0.11", 3}, {"10.0.0.12", 1}})}), {});
  ASSERT_EQ(two.size(), 1u) << dump(two);
  EXPECT_EQ(two[0].message,
            "Backend 10.0.0.11 would get 75.0% of VIP 10.0.0.100:80/tcp's new flows (weight 3 of "
            "4), above the 50.0% limit, while 1 other backend takes traffic.")
      << "one other backend: singular wording";

  EXPECT_TRUE(
      audit_config(config_of({vip_config(kVip, {{"10.0.0.11", 1}, {"10.0.0.12", 1}})}), {}).empty())
      << "1/1: 50% each, nothing to say";
}

TEST(AuditConfigTest, PerVipMaxShareOverridesTheConfigDefault) {
  VipConfig lenient = vip_config(kVip, {{"10.0.0.11", 100}, {"10.0.0.12", 1}, {"10.0.0.13", 1}});
  lenient.max_share = 0.99;
  VipConfig strict =
      vip_config("10.0.0.101:53/udp", {{"10.0.0.21", 1}, {"10.0.0.22", 1}, {"10.0.0.23", 2}});
  strict.max_share = 0.3;
  VipConfig plain =
      vip_config("10.0.0.102:443/tcp", {{"10.0.0.31", 1}, {"10.0.0.32", 1}, {"10.0.0.33", 3}});
  const auto findings = audit_config(config_of({lenient, strict, plain}), {});
  ASSERT_EQ(findings.size(), 2u) << dump(findings);
  EXPECT_EQ(findings[0].vip, "10.0.0.101:53/udp")
      << "the lenient VIP (max_share 0.99) allows 98%; the strict one (0.3) refuses 50%";
  EXPECT_EQ(findings[0].backend, "10.0.0.23");
  EXPECT_EQ(findings[0].message,
            "Backend 10.0.0.23 would get 50.0% of VIP 10.0.0.101:53/udp's new flows (weight 2 of "
            "4), above the 30.0% limit, while 2 other backends take traffic.")
      << "the limit named is the VIP's own";
  EXPECT_EQ(findings[1].vip, "10.0.0.102:443/tcp")
      << "a VIP without max_share uses audit.max_share";
  EXPECT_NE(findings[1].message.find("above the 50.0% limit"), std::string::npos)
      << findings[1].message;

  Config raised = config_of({plain});
  raised.audit.max_share = 0.6;
  EXPECT_TRUE(audit_config(raised, {}).empty()) << "audit.max_share 0.6 allows 60%";
  raised.audit.max_share = 0.59;
  EXPECT_EQ(audit_config(raised, {}).size(), 1u) << "audit.max_share 0.59 does not";
}

TEST(AuditConfigTest, DownOrDrainedBackendsDoNotCountAsTakingTraffic) {
  const Config equal =
      config_of({vip_config(kVip, {{"10.0.0.11", 1}, {"10.0.0.12", 1}, {"10.0.0.13", 1}})});
  EXPECT_TRUE(audit_config(equal, {vip_view(0, kVip,
                                            {usable(0, "10.0.0.11"), usable(1, "10.0.0.12"),
                                             down(2, "10.0.0.13")})})
                  .empty())
      << "1/1/1 with one down: 50% each of the two left, not above the limit";

  const Config c =
      config_of({vip_config(kVip, {{"10.0.0.11", 1}, {"10.0.0.12", 1}, {"10.0.0.13", 2}})});
  EXPECT_TRUE(audit_config(c, {}).empty()) << "1/1/2, nothing running yet: 50%, allowed";

  const auto with_down = audit_config(
      c, {vip_view(0, kVip,
                   {down(0, "10.0.0.11"), usable(1, "10.0.0.12"), usable(2, "10.0.0.13", 2)})});
  ASSERT_EQ(with_down.size(), 1u) << dump(with_down);
  EXPECT_EQ(with_down[0].check, "share-limit");
  EXPECT_EQ(with_down[0].backend, "10.0.0.13");
  EXPECT_EQ(with_down[0].message,
            "Backend 10.0.0.13 would get 66.7% of VIP 10.0.0.100:80/tcp's new flows (weight 2 of "
            "3), above the 50.0% limit, while 1 other backend takes traffic.")
      << "10.0.0.11 down: its weight no longer dilutes 10.0.0.13's";

  const auto with_drain = audit_config(
      c, {vip_view(0, kVip,
                   {usable(0, "10.0.0.11"), drained(1, "10.0.0.12"), usable(2, "10.0.0.13", 2)})});
  ASSERT_EQ(with_drain.size(), 1u)
      << "a drained backend takes no new flows either: " << dump(with_drain);
  EXPECT_EQ(with_drain[0].backend, "10.0.0.13");

  BackendView unknown = usable(0, "10.0.0.11");
  unknown.health = Health::unknown;
  unknown.takes_new_flows = false;
  EXPECT_TRUE(
      audit_config(
          c, {vip_view(0, kVip, {unknown, usable(1, "10.0.0.12"), usable(2, "10.0.0.13", 2)})})
          .empty())
      << "health not known yet counts as up";

  EXPECT_TRUE(audit_config(c, {vip_view(0, "10.0.0.101:80/tcp", {down(0, "10.0.0.11")})}).empty())
      << "the same address down under another VIP says nothing about this one";
}

TEST(AuditConfigTest, SingleBackend) {
  const auto one = audit_config(config_of({vip_config(kVip, {{"10.0.0.11", 1}})}), {});
  ASSERT_EQ(one.size(), 1u) << dump(one);
  EXPECT_EQ(one[0].severity, Severity::warning) << "one backend configured: a warning";
  EXPECT_EQ(one[0].check, "single-backend");
  EXPECT_EQ(one[0].backend, "10.0.0.11");
  EXPECT_EQ(one[0].message,
            "VIP 10.0.0.100:80/tcp has one backend, 10.0.0.11: all its traffic goes there.");

  const auto one_weighted = audit_config(
      config_of({vip_config(kVip, {{"10.0.0.11", 0}, {"10.0.0.12", 5}, {"10.0.0.13", 0}})}), {});
  ASSERT_EQ(one_weighted.size(), 1u) << "no share-limit on top: one backend is not 'while others "
                                        "take traffic': "
                                     << dump(one_weighted);
  EXPECT_EQ(one_weighted[0].severity, Severity::error)
      << "several configured, one weighted: an error";
  EXPECT_EQ(one_weighted[0].check, "single-backend");
  EXPECT_EQ(one_weighted[0].backend, "10.0.0.12") << "names the one that gets everything";
  EXPECT_EQ(one_weighted[0].message,
            "Only backend 10.0.0.12 of VIP 10.0.0.100:80/tcp's 3 backends has weight > 0: it gets "
            "every new flow.");

  const auto none = audit_config(config_of({vip_config(kVip, {})}), {});
  ASSERT_EQ(none.size(), 1u) << dump(none);
  EXPECT_EQ(none[0].severity, Severity::warning) << "no backends: a warning";
  EXPECT_EQ(none[0].check, "single-backend");
  EXPECT_EQ(none[0].backend, "");
  EXPECT_EQ(none[0].message, "VIP 10.0.0.100:80/tcp has no backends: its new flows are dropped.");

  EXPECT_TRUE(
      audit_config(config_of({vip_config(kVip, {{"10.0.0.11", 1}, {"10.0.0.12", 1}})}), {}).empty())
      << "two weighted backends: no single-backend";

  const auto all_zero =
      audit_config(config_of({vip_config(kVip, {{"10.0.0.11", 0}, {"10.0.0.12", 0}})}), {});
  ASSERT_EQ(all_zero.size(), 1u) << dump(all_zero);
  EXPECT_EQ(all_zero[0].severity, Severity::error) << "every weight 0: new flows dropped";
  EXPECT_EQ(
      all_zero[0].message,
      "None of VIP 10.0.0.100:80/tcp's 2 backends has weight > 0: its new flows are dropped.");
}

TEST(AuditConfigTest, DuplicateBackendBuiltByHand) {
  const Config c =
      config_of({vip_config(kVip, {{"10.0.0.11", 1}, {"10.0.0.12", 1}, {"10.0.0.11", 1}})});
  EXPECT_FALSE(validate_config(c).empty()) << "the parser would refuse this config";
  const auto dup = of_check(audit_config(c, {}), "duplicate-backend");
  ASSERT_EQ(dup.size(), 1u) << "one finding for the second listing";
  EXPECT_EQ(dup[0].severity, Severity::error);
  EXPECT_EQ(dup[0].vip, "10.0.0.100:80/tcp");
  EXPECT_EQ(dup[0].backend, "10.0.0.11");
  EXPECT_EQ(dup[0].message, "VIP 10.0.0.100:80/tcp lists backend 10.0.0.11 twice.");
  EXPECT_TRUE(of_check(audit_config(
                           config_of({vip_config(kVip, {{"10.0.0.11", 1}, {"10.0.0.12", 1}})}), {}),
                       "duplicate-backend")
                  .empty());
}

TEST(AuditConfigTest, BackendThatIsAnotherVipsAddress) {
  const Config c =
      config_of({vip_config(kVip, {{"10.0.0.11", 1}, {"10.0.0.200", 1}}),
                 vip_config("10.0.0.200:53/udp", {{"10.0.0.21", 1}, {"10.0.0.22", 1}})});
  const auto findings = audit_config(c, {});
  ASSERT_EQ(findings.size(), 1u) << dump(findings);
  EXPECT_EQ(findings[0].severity, Severity::error);
  EXPECT_EQ(findings[0].check, "backend-is-vip");
  EXPECT_EQ(findings[0].vip, "10.0.0.100:80/tcp") << "the VIP whose backend loops";
  EXPECT_EQ(findings[0].backend, "10.0.0.200");
  EXPECT_EQ(findings[0].message,
            "Backend 10.0.0.200 of VIP 10.0.0.100:80/tcp is itself the address of VIP "
            "10.0.0.200:53/udp: its traffic would loop through the balancer.");
}

// ===========================================================================
// audit_live

TEST(AuditLiveTest, AllWellSaysNothing) {
  const auto v = vip_view(
      0, kVip, {usable(0, "10.0.0.11"), usable(1, "10.0.0.12"), usable(2, "10.0.0.13", 2)});
  EXPECT_TRUE(audit_live({v}, {even_skew(v)}, SkewSettings{}).empty())
      << dump(audit_live({v}, {even_skew(v)}, SkewSettings{}));
  EXPECT_TRUE(audit_live({v}, {}, SkewSettings{}).empty()) << "no skew report at all";
}

TEST(AuditLiveTest, UnresolvedBackendIsAnError) {
  BackendView nomac = usable(1, "10.0.0.12");
  nomac.mac = std::nullopt;
  nomac.takes_new_flows = false;
  const auto findings =
      audit_live({vip_view(0, kVip, {usable(0, "10.0.0.11"), nomac, usable(2, "10.0.0.13")})}, {},
                 SkewSettings{});
  ASSERT_EQ(findings.size(), 1u) << dump(findings);
  EXPECT_EQ(findings[0].severity, Severity::error);
  EXPECT_EQ(findings[0].check, "unresolved-backend");
  EXPECT_EQ(findings[0].vip, "10.0.0.100:80/tcp");
  EXPECT_EQ(findings[0].backend, "10.0.0.12");
  EXPECT_EQ(
      findings[0].message,
      "Backend 10.0.0.12 of VIP 10.0.0.100:80/tcp has no MAC address (no neighbour entry): it "
      "takes no traffic.");
}

TEST(AuditLiveTest, BackendDownIsAWarning) {
  BackendView d = down(1, "10.0.0.12");
  d.check.type = CheckType::tcp;
  d.check.port = 80;
  const auto findings = audit_live(
      {vip_view(0, kVip, {usable(0, "10.0.0.11"), d, usable(2, "10.0.0.13")})}, {}, SkewSettings{});
  ASSERT_EQ(findings.size(), 1u) << "two of three usable: no vip-near-down: " << dump(findings);
  EXPECT_EQ(findings[0].severity, Severity::warning);
  EXPECT_EQ(findings[0].check, "backend-down");
  EXPECT_EQ(findings[0].backend, "10.0.0.12");
  EXPECT_EQ(
      findings[0].message,
      "Backend 10.0.0.12 of VIP 10.0.0.100:80/tcp fails its health check (tcp :80 every 1000ms "
      "timeout 500ms rise 2 fall 3).")
      << "names the check that fails";
}

TEST(AuditLiveTest, VipNearDown) {
  auto near_down = [](const std::vector<VipView>& vips) {
    return of_check(audit_live(vips, {}, SkewSettings{}), "vip-near-down");
  };
  const auto none = near_down(
      {vip_view(0, kVip, {down(0, "10.0.0.11"), down(1, "10.0.0.12"), drained(2, "10.0.0.13")})});
  ASSERT_EQ(none.size(), 1u);
  EXPECT_EQ(none[0].severity, Severity::error) << "no usable backend: an error";
  EXPECT_EQ(none[0].vip, "10.0.0.100:80/tcp");
  EXPECT_EQ(none[0].backend, "") << "about the VIP, not one backend";
  EXPECT_EQ(none[0].message,
            "VIP 10.0.0.100:80/tcp has no usable backend of 3: its new flows are dropped.");

  VipView open = vip_view(0, kVip, {down(0, "10.0.0.11"), down(1, "10.0.0.12")});
  open.fail_open = open.failing_open = true;
  for (auto& b : open.backends) b.takes_new_flows = true;
  const auto failing_open = near_down({open});
  ASSERT_EQ(failing_open.size(), 1u);
  EXPECT_EQ(failing_open[0].severity, Severity::error);
  EXPECT_EQ(failing_open[0].message,
            "VIP 10.0.0.100:80/tcp has no usable backend of 2: failing open to all of them.")
      << "failing open: taking flows, but none is healthy";

  const auto one = near_down(
      {vip_view(0, kVip, {down(0, "10.0.0.11"), usable(1, "10.0.0.12"), drained(2, "10.0.0.13")})});
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].severity, Severity::warning) << "one usable of several: a warning";
  EXPECT_EQ(one[0].message, "VIP 10.0.0.100:80/tcp has one usable backend of 3.");

  EXPECT_TRUE(near_down({vip_view(0, kVip, {usable(0, "10.0.0.11")})}).empty())
      << "one backend of one, up: single-backend (config) says it, not vip-near-down";
  EXPECT_TRUE(near_down({vip_view(0, kVip, {})}).empty()) << "no backends: single-backend says it";
}

TEST(AuditLiveTest, RingShareThresholds) {
  const auto v = vip_view(0, kVip,
                          {usable(0, "10.0.0.11"), usable(1, "10.0.0.12"), usable(2, "10.0.0.13"),
                           usable(3, "10.0.0.14")});
  auto ring = [&](double skew) {
    VipSkew s = even_skew(v);
    s.backends[0].ring_skew = skew;
    s.backends[0].ring_share = 0.25 * skew;
    return of_check(audit_live({v}, {s}, SkewSettings{}), "ring-share");
  };
  const auto three = ring(3);
  ASSERT_EQ(three.size(), 1u);
  EXPECT_EQ(three[0].severity, Severity::error) << "ring skew 3 is past 2x";
  EXPECT_EQ(three[0].backend, "10.0.0.11");
  EXPECT_EQ(three[0].message,
            "Backend 10.0.0.11 holds 75.0% of VIP 10.0.0.100:80/tcp's live Maglev table against an "
            "expected 25.0% (ring skew 3.00).");
  const auto warn = ring(1.15);
  ASSERT_EQ(warn.size(), 1u);
  EXPECT_EQ(warn[0].severity, Severity::warning) << "ring skew 1.15: past 10%, under 2x";
  EXPECT_NE(warn[0].message.find("(ring skew 1.15)"), std::string::npos) << warn[0].message;
  EXPECT_TRUE(ring(1.05).empty()) << "ring skew 1.05: within 10%";
  ASSERT_EQ(ring(0.85).size(), 1u);
  EXPECT_EQ(ring(0.85)[0].severity, Severity::warning) << "15% short: a warning";
  ASSERT_EQ(ring(0.4).size(), 1u);
  EXPECT_EQ(ring(0.4)[0].severity, Severity::error) << "under half its share: an error";

  VipSkew foreign = even_skew(v);
  foreign.ring_foreign_share = 0.5;
  const auto f = of_check(audit_live({v}, {foreign}, SkewSettings{}), "ring-share");
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].severity, Severity::error);
  EXPECT_EQ(f[0].backend, "") << "entries naming no backend of the VIP";
  EXPECT_EQ(f[0].message,
            "50.0% of VIP 10.0.0.100:80/tcp's live Maglev table names no backend of the VIP.");

  VipSkew other = even_skew(v);
  other.id = 7;
  other.ring_foreign_share = 0.5;
  EXPECT_TRUE(audit_live({v}, {other}, SkewSettings{}).empty())
      << "a skew entry is matched to its VIP by id";
}

TEST(AuditLiveTest, RingShareOfABackendThatShouldTakeNothing) {
  const auto v =
      vip_view(0, kVip, {usable(0, "10.0.0.11"), usable(1, "10.0.0.12"), drained(2, "10.0.0.13")});
  VipSkew s = even_skew(v);
  ASSERT_EQ(s.backends[2].expected_share, 0.0);
  EXPECT_TRUE(audit_live({v}, {s}, SkewSettings{}).empty()) << "drained and out of the table: fine";
  s.backends[2].ring_share = 0.2;
  const auto findings = of_check(audit_live({v}, {s}, SkewSettings{}), "ring-share");
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].severity, Severity::error);
  EXPECT_EQ(findings[0].backend, "10.0.0.13");
  EXPECT_EQ(findings[0].message,
            "Backend 10.0.0.13 holds 20.0% of VIP 10.0.0.100:80/tcp's live Maglev table but should "
            "take no new flows (down, drained or weight 0).");

  // Every backend down, no fail-open: the table is all "no backend" by design.
  const auto all_down = vip_view(0, kVip, {down(0, "10.0.0.11"), down(1, "10.0.0.12")});
  VipSkew dropped = even_skew(all_down);
  dropped.ring_foreign_share = 1.0;
  EXPECT_TRUE(of_check(audit_live({all_down}, {dropped}, SkewSettings{}), "ring-share").empty())
      << "nothing expected of anyone: an empty table is what ballastd installed";
}

TEST(AuditLiveTest, TrafficSkewHeldPastTheHold) {
  const auto v = vip_view(0, kVip,
                          {usable(0, "10.0.0.11"), usable(1, "10.0.0.12"), usable(2, "10.0.0.13"),
                           usable(3, "10.0.0.14")});
  SkewSettings settings;
  settings.hold = 30s;
  auto skewed = [&](std::chrono::seconds held) {
    VipSkew s = even_skew(v);
    s.backends[0].observed_new_flows = 0.75;
    s.backends[0].skew_new_flows = 3.0;
    s.backends[0].z = 12.6491;
    s.backends[0].significant = true;
    s.backends[0].skewed_for = held;
    return of_check(audit_live({v}, {s}, settings), "traffic-skew");
  };
  const auto held = skewed(40s);
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(held[0].severity, Severity::error);
  EXPECT_EQ(held[0].vip, "10.0.0.100:80/tcp");
  EXPECT_EQ(held[0].backend, "10.0.0.11");
  EXPECT_EQ(
      held[0].message,
      "Backend 10.0.0.11 got 75.0% of VIP 10.0.0.100:80/tcp's 1000 new flows in the last 10 s "
      "against an expected 25.0% (skew 3.00, z 12.65) for 40 s.")
      << "share, window count, window length, expected share, skew, z and how long";
  EXPECT_EQ(skewed(30s).size(), 1u) << "skewed exactly the hold: reported";
  EXPECT_TRUE(skewed(29s).empty()) << "skewed for less than the hold: not yet";
}

// ===========================================================================
// BalancerState against the fake maps: the fixture shared by the drift and
// reconcile tests. VIP 0 10.0.0.100:80/tcp, tcp checks: 10.0.0.11 (slot 0,
// weight 1), .12 (slot 1, 1), .13 (slot 2, 2), .14 (slot 3, 1, drained).
// VIP 1 10.0.0.101:53/udp, no checks: .15 (slot 4), .16 (slot 5, no MAC).

class StateFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* a : {"10.0.0.11", "10.0.0.12", "10.0.0.13", "10.0.0.14", "10.0.0.15"})
      neighbors.known[ip(a)] = mac_of(a);
    apply(state, config());
    for (uint32_t id : {0u, 1u, 2u, 3u}) set_health(state, id, Health::up, "");
    set_drained(state, VipKey::parse(kVip), ip("10.0.0.14"), true);
    ASSERT_TRUE(dp.violations.empty()) << dp.violations[0];
    dp.log.clear();
  }
  static Config config() {
    VipConfig web =
        vip_config(kVip, {{"10.0.0.11", 1}, {"10.0.0.12", 1}, {"10.0.0.13", 2}, {"10.0.0.14", 1}});
    web.check.type = CheckType::tcp;
    web.check.port = 80;
    for (auto& b : web.backends) b.check = web.check;
    return config_of({web, vip_config("10.0.0.101:53/udp", {{"10.0.0.15", 1}, {"10.0.0.16", 1}})});
  }
  std::vector<Finding> drift(const LiveSnapshot& live, bool attached = true) {
    return audit_drift(state.expected(), live, state.view(), attached, "eth0");
  }
  // @live's table @id, made the test's own to edit.
  static std::vector<uint32_t>& edit_table(LiveSnapshot& live, uint32_t id) {
    auto copy = std::make_shared<std::vector<uint32_t>>(*live.tables.at(id).entries);
    live.tables.at(id).entries = copy;
    return *copy;
  }
  std::map<uint32_t, size_t> entries(const std::vector<uint32_t>& table) {
    std::map<uint32_t, size_t> out;
    for (uint32_t e : table) ++out[e];
    return out;
  }

  RecordingMaps dp;
  FakeNeighbors neighbors;
  BalancerState state{dp, neighbors, 1};
};

// ===========================================================================
// audit_drift

class DriftAuditTest : public StateFixture {};

TEST_F(DriftAuditTest, IdenticalSnapshotsFindNothing) {
  const LiveSnapshot want = state.expected();
  EXPECT_TRUE(audit_drift(want, want, state.view(), true, "eth0").empty());
  EXPECT_TRUE(drift(dp.snapshot()).empty())
      << "the maps as ballastd wrote them are not drift: " << dump(drift(dp.snapshot()));
}

TEST_F(DriftAuditTest, ProgramNotAttached) {
  const auto findings = drift(dp.snapshot(), false);
  ASSERT_EQ(findings.size(), 1u) << dump(findings);
  EXPECT_EQ(findings[0].severity, Severity::error);
  EXPECT_EQ(findings[0].check, "drift");
  EXPECT_EQ(findings[0].message.rfind("ballastd's XDP program is not attached to eth0", 0), 0u)
      << "ballastd's run_audit tells this one from map drift by this prefix: "
      << findings[0].message;
  EXPECT_EQ(findings[0].message,
            "ballastd's XDP program is not attached to eth0: nothing is balanced.");
  EXPECT_EQ(findings[0].hint,
            "restart ballastd; check `ip link show eth0` for another XDP program");
}

TEST_F(DriftAuditTest, MissingVip) {
  LiveSnapshot live = state.expected();
  ASSERT_EQ(live.vips.size(), 2u);
  live.vips.erase(live.vips.begin());  // 10.0.0.100:80/tcp, written first
  const auto findings = drift(live);
  ASSERT_EQ(findings.size(), 1u) << dump(findings);
  EXPECT_EQ(findings[0].severity, Severity::error);
  EXPECT_EQ(findings[0].check, "drift");
  EXPECT_EQ(findings[0].vip, "10.0.0.100:80/tcp");
  EXPECT_EQ(findings[0].message, "VIP 10.0.0.100:80/tcp is missing from the vips map.");
  EXPECT_EQ(findings[0].hint,
            "something other than ballastd wrote the maps; set reconcile: true or restart ballastd "
            "to rewrite them");
}

TEST_F(DriftAuditTest, VipPointingAtAnotherTable) {
  LiveSnapshot live = state.expected();
  live.vips[0].second.vip_id = 7;
  const auto findings = drift(live);
  ASSERT_EQ(findings.size(), 1u) << dump(findings);
  EXPECT_EQ(findings[0].vip, "10.0.0.100:80/tcp");
  EXPECT_EQ(findings[0].message, "VIP 10.0.0.100:80/tcp points at table 7 in the vips map, not 0.");
}

TEST_F(DriftAuditTest, StrayVip) {
  LiveSnapshot live = state.expected();
  live.vips.emplace_back(VipKey::parse("10.0.0.200:80/tcp").to_abi(), ballast_vip_info{0, 0, 0, 0});
  const auto findings = drift(live);
  ASSERT_EQ(findings.size(), 1u) << dump(findings);
  EXPECT_EQ(findings[0].severity, Severity::error);
  EXPECT_EQ(findings[0].vip, "10.0.0.200:80/tcp") << "named by its key, though not ballastd's";
  EXPECT_EQ(findings[0].message,
            "The vips map holds VIP 10.0.0.200:80/tcp, which ballastd did not write (table id 0).");
}

TEST_F(DriftAuditTest, SlotWhoseFlagsDiffer) {
  LiveSnapshot live = state.expected();
  ASSERT_EQ(live.backends.at(1).flags, uint32_t(BALLAST_BACKEND_F_ACTIVE));
  live.backends.at(1).flags = 0;  // someone deactivated 10.0.0.12
  const auto findings = drift(live);
  ASSERT_EQ(findings.size(), 1u) << dump(findings);
  EXPECT_EQ(findings[0].severity, Severity::error);
  EXPECT_EQ(findings[0].vip, "10.0.0.100:80/tcp") << "the VIP the slot serves";
  EXPECT_EQ(findings[0].message,
            "Backend slot 1 of VIP 10.0.0.100:80/tcp holds 10.0.0.12 mac 02:00:00:00:00:0c flags 0 "
            "vip id 0; ballastd wrote 10.0.0.12 mac 02:00:00:00:00:0c flags 1 vip id 0.")
      << "both versions of the slot, field by field";
}

TEST_F(DriftAuditTest, EmptiedSlot) {
  LiveSnapshot live = state.expected();
  live.backends.erase(4);
  const auto findings = drift(live);
  ASSERT_EQ(findings.size(), 1u) << dump(findings);
  EXPECT_EQ(findings[0].vip, "10.0.0.101:53/udp");
  EXPECT_EQ(findings[0].message,
            "Backend slot 4 of VIP 10.0.0.101:53/udp is empty in the map; ballastd wrote 10.0.0.15 "
            "mac 02:00:00:00:00:0f flags 1 vip id 1.");
}

TEST_F(DriftAuditTest, StraySlot) {
  LiveSnapshot live = state.expected();
  ballast_backend stray = live.backends.at(0);
  stray.addr = ip("10.0.0.99").to_abi();
  stray.mac[5] = 0x63;
  live.backends[7] = stray;
  const auto findings = drift(live);
  ASSERT_EQ(findings.size(), 1u) << dump(findings);
  EXPECT_EQ(findings[0].vip, "");
  EXPECT_EQ(findings[0].message,
            "Backend slot 7 holds 10.0.0.99 mac 02:00:00:00:00:63 flags 1 vip id 0, which ballastd "
            "did not write.");
}

TEST_F(DriftAuditTest, TableRewrittenToOneBackend) {
  LiveSnapshot live = state.expected();
  ASSERT_EQ(entries(*live.tables.at(0).entries).count(3), 0u) << "10.0.0.14 (slot 3) is drained: no entries";
  edit_table(live, 0).assign(BALLAST_MAGLEV_SIZE, 3);
  const auto findings = drift(live);
  ASSERT_EQ(findings.size(), 1u) << dump(findings);
  EXPECT_EQ(findings[0].severity, Severity::error);
  EXPECT_EQ(findings[0].check, "drift");
  EXPECT_EQ(findings[0].vip, "10.0.0.100:80/tcp");
  EXPECT_EQ(findings[0].backend, "10.0.0.14") << "the backend the edit sends everything to";
  EXPECT_EQ(findings[0].message,
            "65537 of VIP 10.0.0.100:80/tcp's 65537 Maglev table entries differ from the table "
            "ballastd installed; backend 10.0.0.14 now holds 65537 of them.");

  edit_table(live, 0).assign(BALLAST_MAGLEV_SIZE, 9);  // a slot that is no backend
  const auto stranger = drift(live);
  ASSERT_EQ(stranger.size(), 1u) << dump(stranger);
  EXPECT_EQ(stranger[0].backend, "");
  EXPECT_EQ(stranger[0].message,
            "65537 of VIP 10.0.0.100:80/tcp's 65537 Maglev table entries differ from the table "
            "ballastd installed; slot 9 now holds 65537 of them.");

  live.tables.erase(0);
  const auto gone = drift(live);
  ASSERT_EQ(gone.size(), 1u) << dump(gone);
  EXPECT_EQ(gone[0].message, "VIP 10.0.0.100:80/tcp has no Maglev table in the map.");
}

TEST_F(DriftAuditTest, PartlyRewrittenTableNamesTheBackendThatGained) {
  LiveSnapshot live = state.expected();
  size_t moved = 0;
  for (auto& e : edit_table(live, 0))
    if (e == 0 && moved < 1000) {
      e = 1;  // 1000 of 10.0.0.11's entries handed to 10.0.0.12
      ++moved;
    }
  ASSERT_EQ(moved, 1000u);
  const auto findings = drift(live);
  ASSERT_EQ(findings.size(), 1u) << dump(findings);
  EXPECT_EQ(findings[0].backend, "10.0.0.12") << "the backend that gained the entries";
  EXPECT_EQ(findings[0].message,
            "1000 of VIP 10.0.0.100:80/tcp's 65537 Maglev table entries differ from the table "
            "ballastd installed; backend 10.0.0.12 now holds 1000 of them.");
}

TEST_F(DriftAuditTest, UnknownVipIdIsNamedById) {
  LiveSnapshot live = state.expected();
  live.backends.at(0).flags = 0;
  const auto findings = audit_drift(state.expected(), live, {}, true, "eth0");
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].vip, "vip id 0") << "no VipView to name it by";
}

// ===========================================================================
// new_findings, has_errors, findings on the wire (api_messages.h), findings_text

Finding make(Severity s, const char* check, const char* vip, const char* backend,
             const char* message = "m", const char* hint = "h") {
  return Finding{s, check, vip, backend, message, hint};
}

TEST(AuditFindingsTest, NewFindingsAreKeyedByCheckVipBackendAndSeverity) {
  const std::vector<Finding> before = {
      make(Severity::error, "share-limit", kVip, "10.0.0.11", "60%"),
      make(Severity::warning, "single-backend", "10.0.0.101:53/udp", "10.0.0.21")};
  const std::vector<Finding> after = {
      make(Severity::error, "share-limit", kVip, "10.0.0.11", "90%"),  // same key, new numbers
      make(Severity::error, "share-limit", kVip, "10.0.0.12"),         // another backend
      make(Severity::error, "share-limit", "10.0.0.101:53/udp", "10.0.0.11"),  // another VIP
      make(Severity::error, "backend-is-vip", kVip, "10.0.0.11"),              // another check
      make(Severity::error, "single-backend", "10.0.0.101:53/udp",
           "10.0.0.21"),  // warning -> error
      make(Severity::error, "drift", "", "",
           "program detached"),  // about neither a VIP nor a backend
  };
  const auto added = new_findings(before, after);
  ASSERT_EQ(added.size(), 5u) << dump(added);
  EXPECT_EQ(added[0], after[1]) << "a new backend is a new finding";
  EXPECT_EQ(added[1], after[2]) << "a new VIP is a new finding";
  EXPECT_EQ(added[2], after[3]) << "a new check is a new finding";
  EXPECT_EQ(added[3], after[4]) << "a warning that became an error is a new finding";
  EXPECT_EQ(added[4], after[5]);
  EXPECT_TRUE(new_findings({make(Severity::error, "drift", "", "", "program detached")},
                           {make(Severity::error, "drift", "", "", "program detached")})
                  .empty());
  EXPECT_EQ(new_findings({make(Severity::error, "drift", "", "", "program detached")},
                         {make(Severity::error, "drift", "", "", "stray slot 7")})
                .size(),
            1u)
      << "findings about neither a VIP nor a backend are told apart by their sentence";
  EXPECT_TRUE(new_findings(after, after).empty()) << "nothing new against itself";
  EXPECT_EQ(new_findings({}, after), after) << "everything is new against nothing";
  EXPECT_TRUE(new_findings(after, {}).empty()) << "findings that cleared are not new";
}

TEST(AuditFindingsTest, HasErrors) {
  EXPECT_FALSE(has_errors({}));
  EXPECT_FALSE(has_errors({make(Severity::warning, "backend-down", kVip, "10.0.0.11"),
                           make(Severity::info, "drift", "", "")}))
      << "warnings and info are not errors";
  EXPECT_TRUE(has_errors({make(Severity::warning, "backend-down", kVip, "10.0.0.11"),
                          make(Severity::error, "drift", "", "")}));
}

TEST(AuditFindingsTest, Json) {
  using Findings = std::vector<Finding>;
  EXPECT_TRUE(nlohmann::json(Findings{}).is_array()) << "no findings: [], not null";
  EXPECT_TRUE(nlohmann::json(Findings{}).empty());
  const Findings findings = {make(Severity::error, "share-limit", kVip, "10.0.0.11", "msg", "fix"),
                             make(Severity::warning, "single-backend", kVip, "")};
  const nlohmann::json j = findings;
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0], (nlohmann::json{{"severity", "error"},
                                  {"check", "share-limit"},
                                  {"vip", "10.0.0.100:80/tcp"},
                                  {"backend", "10.0.0.11"},
                                  {"message", "msg"},
                                  {"hint", "fix"}}))
      << "every field, severity by name";
  EXPECT_EQ(j[1]["severity"], "warning");
  EXPECT_EQ(j[1]["backend"], "") << "an empty backend is an empty string, not absent";
  EXPECT_EQ(j.get<Findings>(), findings) << "decoded as sent";
}

TEST(AuditFindingsTest, Text) {
  EXPECT_EQ(findings_text({}), "");
  EXPECT_EQ(
      findings_text(
          {make(Severity::error, "share-limit", kVip, "10.0.0.11", "Too much.", "lower it"),
           make(Severity::warning, "backend-down", kVip, "10.0.0.12", "Down.", "look")}),
      "error share-limit: Too much. (hint: lower it)\nwarning backend-down: Down. (hint: look)")
      << "one line each, no trailing newline";
}

// ===========================================================================
// BalancerState::expected() and rewrite_all()

class ReconcileTest : public StateFixture {};

TEST_F(ReconcileTest, ExpectedIsWhatApplyWrote) {
  const LiveSnapshot want = state.expected();
  expect_same(flatten(want), flatten_maps(dp), "expected() against the fake's maps");

  ASSERT_EQ(want.vips.size(), 2u);
  EXPECT_EQ(key_text(want.vips[0].first), "10.0.0.100:80/6");
  EXPECT_EQ(want.vips[0].second.vip_id, 0u);
  EXPECT_EQ(key_text(want.vips[1].first), "10.0.0.101:53/17");
  EXPECT_EQ(want.vips[1].second.vip_id, 1u);
  EXPECT_EQ(want.backends.size(), 6u) << "every slot, the unresolved one (no MAC, inactive) too";
  EXPECT_EQ(want.backends.at(3).flags,
            uint32_t(BALLAST_BACKEND_F_ACTIVE | BALLAST_BACKEND_F_DRAINED))
      << "drained: flows kept, flag recorded";
  EXPECT_EQ(want.backends.at(5).flags, 0u) << "10.0.0.16 has no MAC: not active";
  EXPECT_EQ(want.tables.size(), 2u);
  EXPECT_TRUE(*want.tables.at(0).entries == dp.tables.at(0)) << "table as installed";
  EXPECT_EQ(entries(*want.tables.at(0).entries).count(3), 0u) << "drained: no entries";

  // Health, drains and removals move expected() along with the maps.
  set_health(state, 1, Health::down, "3 failures");
  set_drained(state, VipKey::parse(kVip), ip("10.0.0.14"), false);
  Config smaller = config();
  smaller.vips[0].backends.erase(smaller.vips[0].backends.begin() + 2);  // 10.0.0.13
  smaller.vips.pop_back();                                               // 10.0.0.101:53/udp
  apply(state, smaller);
  ASSERT_TRUE(dp.violations.empty()) << dp.violations[0];
  const LiveSnapshot after = state.expected();
  expect_same(flatten(after), flatten_maps(dp), "after down, undrain, removals");
  EXPECT_EQ(after.vips.size(), 1u);
  EXPECT_EQ(after.backends.count(2), 0u) << "a freed slot (zeroed in the map) is not expected";
  EXPECT_EQ(after.backends.count(4), 0u) << "nor the slots of a removed VIP";
  EXPECT_EQ(after.tables.count(1), 0u) << "nor its table";
  EXPECT_EQ(after.backends.at(1).flags, uint32_t(BALLAST_BACKEND_F_DOWN))
      << "down: inactive, flagged";
  EXPECT_TRUE(drift(dp.snapshot()).empty()) << dump(drift(dp.snapshot()));
}

TEST_F(ReconcileTest, NothingDriftedWritesNothing) {
  EXPECT_TRUE(repair(state, dp.snapshot()).empty()) << "no repair lines";
  EXPECT_TRUE(dp.log.empty()) << "no writes at all";
}

TEST_F(ReconcileTest, RewriteAllRepairsEveryKindOfDrift) {
  const LiveSnapshot want = state.expected();
  // Someone edits the pinned maps by hand:
  //  - adds backend slot 7 (10.0.0.99) and hands it 5000 of VIP 0's entries,
  //  - clears 10.0.0.12's ACTIVE flag (slot 1),
  //  - aliases VIP 0's table under a new VIP 10.0.0.200:80/tcp,
  //  - deletes VIP 1 (10.0.0.101:53/udp) from the vips map.
  ballast_backend stray = dp.backends.at(0);
  stray.addr = ip("10.0.0.99").to_abi();
  dp.backends[7] = stray;
  for (size_t i = 0; i < 5000; ++i) dp.tables.at(0)[i] = 7;
  dp.backends.at(1).flags = 0;
  dp.vips[key_bytes(VipKey::parse("10.0.0.200:80/tcp").to_abi())] = ballast_vip_info{0, 0, 0, 0};
  dp.vips.erase(key_bytes(VipKey::parse("10.0.0.101:53/udp").to_abi()));

  const auto before = drift(dp.snapshot());
  EXPECT_EQ(before.size(), 6u) << "slot 1, stray slot 7, table 0, VIP 1 missing, its table unread, "
                                  "stray VIP: "
                               << dump(before);
  EXPECT_TRUE(has_errors(before));

  const auto repairs = repair(state, dp.snapshot());
  EXPECT_EQ(repairs, (std::vector<std::string>{
                         "repair backend slot 1",
                         "repair Maglev table of vip id 0",
                         // The snapshot (like BpfDataPlane's) reads only the tables of
                         // VIPs in the vips map: VIP 1's table looks missing, so it is
                         // rewritten (with what it already held).
                         "repair Maglev table of vip id 1",
                         "repair vip 10.0.0.101:53/udp",
                         "remove stray vip 10.0.0.200:80/tcp",
                         "clear stray backend slot 7",
                     }))
      << "one line per write, slots then tables then VIPs, strays last";
  EXPECT_EQ(dp.log, (std::vector<std::string>{"put_backend 1", "install_table 0", "install_table 1",
                                              "put_vip 10.0.0.101:53/17 1",
                                              "delete_vip 10.0.0.200:80/6", "put_backend 7"}))
      << "each repair is one write, in that order";
  EXPECT_TRUE(dp.violations.empty())
      << "the repair kept the ordering rules (stray slot cleared only once no table names it): "
      << dp.violations[0];
  expect_same(flatten(want), flatten_maps(dp), "maps after rewrite_all against expected()");
  EXPECT_EQ(dp.backends.at(7).family, 0) << "the stray slot is zeroed, freed";
  EXPECT_TRUE(drift(dp.snapshot()).empty()) << dump(drift(dp.snapshot()));

  dp.log.clear();
  EXPECT_TRUE(repair(state, dp.snapshot()).empty()) << "repaired: a second pass finds nothing";
  EXPECT_TRUE(dp.log.empty());
}

TEST_F(ReconcileTest, RewriteAllRestoresVipIdAndEmptiedSlot) {
  const LiveSnapshot want = state.expected();
  dp.vips[key_bytes(VipKey::parse(kVip).to_abi())].vip_id = 1;  // VIP 0 now uses VIP 1's table
  dp.backends.at(4) = ballast_backend{};                        // 10.0.0.15's slot zeroed
  const auto repairs = repair(state, dp.snapshot());
  EXPECT_EQ(repairs, (std::vector<std::string>{"repair backend slot 4",
                                               // No VIP names table 0 in the map any more,
                                               // so the snapshot does not read it.
                                               "repair Maglev table of vip id 0",
                                               "repair vip 10.0.0.100:80/tcp"}))
      << "the emptied slot, the unread table, the VIP's id";
  EXPECT_TRUE(dp.violations.empty()) << dp.violations[0];
  expect_same(flatten(want), flatten_maps(dp), "after rewrite_all");
}

TEST_F(ReconcileTest, RewriteAllRepairsAWholeTableHandedToADrainedBackend) {
  const LiveSnapshot want = state.expected();
  dp.tables.at(0).assign(BALLAST_MAGLEV_SIZE, 3);  // everything to drained 10.0.0.14
  const auto found = drift(dp.snapshot());
  ASSERT_EQ(found.size(), 1u) << dump(found);
  EXPECT_EQ(found[0].backend, "10.0.0.14");
  EXPECT_EQ(repair(state, dp.snapshot()),
            std::vector<std::string>{"repair Maglev table of vip id 0"});
  EXPECT_TRUE(dp.violations.empty()) << dp.violations[0];
  EXPECT_TRUE(dp.tables.at(0) == *want.tables.at(0).entries) << "the installed table is back";
}

// vip_by_id (established flows' view of their VIP) drifting from vips is
// drift, and rewrite_all repairs it with one put_vip.
TEST_F(ReconcileTest, VipByIdDriftIsFoundAndRepaired) {
  dp.mirror_vip_by_id = true;
  EXPECT_TRUE(drift(dp.snapshot()).empty()) << dump(drift(dp.snapshot()));
  dp.vip_by_id.at(0).info.flags |= BALLAST_VIP_F_ENCAP_GUE;

  const auto before = drift(dp.snapshot());
  ASSERT_EQ(before.size(), 1u) << dump(before);
  EXPECT_EQ(before[0].severity, Severity::error);
  EXPECT_NE(before[0].message.find("vip_by_id entry (id 0) does not match the vips map"),
            std::string::npos)
      << before[0].message;

  const auto repairs = repair(state, dp.snapshot());
  ASSERT_EQ(repairs.size(), 1u) << "one repair";
  EXPECT_EQ(repairs[0].rfind("repair vip ", 0), 0u) << repairs[0];
  EXPECT_TRUE(drift(dp.snapshot()).empty()) << dump(drift(dp.snapshot()));
}

// A VIP whose address lost its bit in the VIP filter has its packets passed
// to the host: drift, which rewrite_all repairs with one put_vip.
TEST_F(ReconcileTest, VipFilterBitMissingIsFoundAndRepaired) {
  dp.report_vip_filter = true;
  EXPECT_TRUE(drift(dp.snapshot()).empty()) << dump(drift(dp.snapshot()));
  const ballast_addr addr = ip("10.0.0.101").to_abi();
  const uint32_t bit = ballast_vip_filter_bit(&addr);
  dp.vip_filter[bit >> 6] &= ~(uint64_t{1} << (bit & 63));

  const auto before = drift(dp.snapshot());
  ASSERT_EQ(before.size(), 1u) << dump(before);
  EXPECT_EQ(before[0].severity, Severity::error);
  EXPECT_NE(before[0].message.find("VIP 10.0.0.101:53/udp's address has no bit in the vip_filter "
                                   "map: its packets are passed to this host"),
            std::string::npos)
      << before[0].message;

  const auto repairs = repair(state, dp.snapshot());
  EXPECT_EQ(repairs, std::vector<std::string>{"repair vip 10.0.0.101:53/udp"});
  EXPECT_TRUE(drift(dp.snapshot()).empty()) << dump(drift(dp.snapshot()));
}

// Tables are compared by pointer first (the one ballastd installed is
// frozen, and the data plane gives it back), by content only when another
// map was swapped in; one that ballastd may not read is drift, named by
// its map id.
TEST(TableDrift, ComparedByPointerAndUnreadableIsDrift) {
  LiveSnapshot expected, live;
  expected.tables[0] =
      LiveTable{0, std::make_shared<const std::vector<uint32_t>>(BALLAST_MAGLEV_SIZE, 1)};
  live.tables[0] = LiveTable{5, expected.tables[0].entries};
  EXPECT_TRUE(audit_drift(expected, live, {}, true, "eth0").empty());
  live.tables[0] =
      LiveTable{6, std::make_shared<const std::vector<uint32_t>>(BALLAST_MAGLEV_SIZE, 1)};
  EXPECT_TRUE(audit_drift(expected, live, {}, true, "eth0").empty()) << "equal entries";
  live.tables[0] = LiveTable{77, nullptr};
  const auto findings = audit_drift(expected, live, {}, true, "eth0");
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_NE(findings[0].message.find("map id 77"), std::string::npos) << findings[0].message;
  EXPECT_EQ(findings[0].repair, Repair::rewrite_maps);
}

}  // namespace
}  // namespace ballast
