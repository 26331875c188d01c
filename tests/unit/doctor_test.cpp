// `ballast doctor` (userspace/tools/doctor.h): every check on plain snapshots of
// a backend host and of a balancer host: its severity, that its sentence
// names the thing and the numbers, and the exact fix command; and a clean
// host of each kind with no error.
#include "doctor.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ballast::doctor {
namespace {

IpAddress ip(const char* s) { return *IpAddress::parse(s); }

// The findings of @check, in order.
std::vector<Finding> of(const std::vector<Finding>& findings, const std::string& check) {
  std::vector<Finding> out;
  for (const auto& f : findings)
    if (f.check == check) out.push_back(f);
  return out;
}

// The one finding of @check; fails the test when there is not exactly one.
Finding one(const std::vector<Finding>& findings, const std::string& check) {
  const auto all = of(findings, check);
  EXPECT_EQ(all.size(), 1u) << "findings of " << check << ":\n" << render_text(findings);
  return all.empty() ? Finding{Severity::ok, "(none)", "", ""} : all.front();
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

#define EXPECT_CONTAINS(text, part) \
  EXPECT_TRUE(contains(text, part)) << "\"" << (text) << "\" lacks \"" << (part) << "\""

void expect_all_ok(const std::vector<Finding>& findings) {
  for (const auto& f : findings)
    EXPECT_EQ(f.severity, Severity::ok) << f.check << ": " << f.message;
  EXPECT_FALSE(has_error(findings));
}

// ---------------------------------------------------------------------------
// Backend snapshots.

// A dsr backend set up as README.md says: VIP 10.0.0.100/32 on lo, eth0
// 10.0.0.11/24, arp_ignore 1, arp_announce 2, rp_filter off.
BackendHost dsr_backend() {
  BackendHost h;
  h.interface = "eth0";
  h.interface_exists = true;
  h.mtu = 1500;
  h.addresses = {{ip("127.0.0.1"), 8, "lo", false},
                 {ip("::1"), 128, "lo", false},
                 {ip("10.0.0.100"), 32, "lo", false},
                 {ip("10.0.0.11"), 24, "eth0", false}};
  h.conf_all = {1, 2, 0};
  h.conf_iface = {0, 0, 0};
  h.default_route_interface = "eth0";
  return h;
}

// An ipip backend: the same, with the decap program holding the VIP and
// an MTU with room for the outer header.
BackendHost ipip_backend() {
  BackendHost h = dsr_backend();
  h.conf_all = {0, 0, 0};
  h.mtu = 1520;
  h.xdp = {"native", {"ballast_decap"}, {42}};
  h.decap_program_id = 42;
  h.decap_vips = {ip("10.0.0.100")};
  h.decap_gue_port = 6080;
  return h;
}

BackendOptions opts(ForwardMode mode, std::vector<IpAddress> vips = {}, uint16_t gue_port = 6080) {
  return {mode, std::move(vips), gue_port};
}

TEST(DoctorBackend, CleanDsrHostHasOnlyOks) {
  const auto f = check_backend(dsr_backend(), opts(ForwardMode::dsr));
  expect_all_ok(f);
  EXPECT_CONTAINS(one(f, "vip-on-lo").message, "10.0.0.100/32 is on lo");
  EXPECT_CONTAINS(one(f, "arp-ignore").message, "net.ipv4.conf.all.arp_ignore is 1");
  EXPECT_CONTAINS(one(f, "arp-announce").message, "the kernel uses the larger: 2");
  EXPECT_CONTAINS(one(f, "rp-filter").message, ", off:");
  EXPECT_TRUE(of(f, "decap-attached").empty()) << "dsr needs no decap program";
  EXPECT_TRUE(of(f, "mtu").empty()) << "dsr never grows a packet";
}

TEST(DoctorBackend, ArpIgnoreZeroIsAnErrorNamingBothSysctls) {
  BackendHost h = dsr_backend();
  h.conf_all.arp_ignore = 0;
  const auto f = check_backend(h, opts(ForwardMode::dsr));
  const Finding a = one(f, "arp-ignore");
  EXPECT_EQ(a.severity, Severity::error);
  EXPECT_CONTAINS(a.message, "net.ipv4.conf.all.arp_ignore is 0");
  EXPECT_CONTAINS(a.message, "net.ipv4.conf.eth0.arp_ignore is 0");
  EXPECT_CONTAINS(a.message, "answers ARP for the VIPs on lo (10.0.0.100) on eth0");
  EXPECT_EQ(a.fix, "sysctl -w net.ipv4.conf.all.arp_ignore=1");
  EXPECT_TRUE(has_error(f));
}

TEST(DoctorBackend, ArpIgnoreTakesTheLargerOfAllAndTheInterface) {
  BackendHost h = dsr_backend();
  h.conf_all.arp_ignore = 0;
  h.conf_iface.arp_ignore = 1;
  const Finding a = one(check_backend(h, opts(ForwardMode::dsr)), "arp-ignore");
  EXPECT_EQ(a.severity, Severity::ok);
  EXPECT_CONTAINS(a.message, "the kernel uses the larger: 1");
}

TEST(DoctorBackend, ArpIgnoreEightOnTheInterfaceIsFixedThereToo) {
  BackendHost h = dsr_backend();
  h.conf_all.arp_ignore = 0;
  h.conf_iface.arp_ignore = 8;
  const Finding a = one(check_backend(h, opts(ForwardMode::dsr)), "arp-ignore");
  EXPECT_EQ(a.severity, Severity::error);
  EXPECT_CONTAINS(a.message, "the kernel uses the larger: 8");
  EXPECT_CONTAINS(a.message, "answers no ARP at all");
  EXPECT_EQ(a.fix, "sysctl -w net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.eth0.arp_ignore=1");
}

TEST(DoctorBackend, ArpAnnounceZeroIsAnErrorOneAWarning) {
  BackendHost h = dsr_backend();
  h.conf_all.arp_announce = 0;
  Finding a = one(check_backend(h, opts(ForwardMode::dsr)), "arp-announce");
  EXPECT_EQ(a.severity, Severity::error);
  EXPECT_CONTAINS(a.message, "net.ipv4.conf.all.arp_announce is 0");
  EXPECT_CONTAINS(a.message, "10.0.0.100");
  EXPECT_EQ(a.fix, "sysctl -w net.ipv4.conf.all.arp_announce=2");
  h.conf_all.arp_announce = 1;
  a = one(check_backend(h, opts(ForwardMode::dsr)), "arp-announce");
  EXPECT_EQ(a.severity, Severity::warn);
  EXPECT_EQ(a.fix, "sysctl -w net.ipv4.conf.all.arp_announce=2");
}

TEST(DoctorBackend, UnreadableSysctlIsAWarning) {
  BackendHost h = dsr_backend();
  h.conf_all.arp_ignore.reset();
  const Finding a = one(check_backend(h, opts(ForwardMode::dsr)), "arp-ignore");
  EXPECT_EQ(a.severity, Severity::warn);
  EXPECT_CONTAINS(a.message, "cannot read net.ipv4.conf.all.arp_ignore");
}

TEST(DoctorBackend, StrictRpFilterWithTheDefaultRouteElsewhereIsAnError) {
  BackendHost h = dsr_backend();
  h.conf_all.rp_filter = 1;
  h.default_route_interface = "eth1";
  const Finding r = one(check_backend(h, opts(ForwardMode::dsr)), "rp-filter");
  EXPECT_EQ(r.severity, Severity::error);
  EXPECT_CONTAINS(r.message, "net.ipv4.conf.all.rp_filter is 1");
  EXPECT_CONTAINS(r.message, "(the kernel uses the larger: 1), strict:");
  EXPECT_CONTAINS(r.message, "arrive on eth0 with the client's address as source");
  EXPECT_CONTAINS(r.message, "the default route leaves by eth1");
  EXPECT_EQ(r.fix, "sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.eth0.rp_filter=2");
}

TEST(DoctorBackend, StrictRpFilterWithTheDefaultRouteHereIsAWarning) {
  BackendHost h = ipip_backend();
  h.conf_iface.rp_filter = 1;
  const Finding r = one(check_backend(h, opts(ForwardMode::ipip)), "rp-filter");
  EXPECT_EQ(r.severity, Severity::warn);
  EXPECT_CONTAINS(r.message, "net.ipv4.conf.eth0.rp_filter is 1");
  EXPECT_CONTAINS(r.message, "the decap program unwraps");
  EXPECT_EQ(r.fix, "sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.eth0.rp_filter=2");
}

TEST(DoctorBackend, LooseRpFilterIsOk) {
  BackendHost h = dsr_backend();
  h.conf_all.rp_filter = 2;
  const Finding r = one(check_backend(h, opts(ForwardMode::dsr)), "rp-filter");
  EXPECT_EQ(r.severity, Severity::ok);
  EXPECT_CONTAINS(r.message, "is 0 (the kernel uses the larger: 2), loose:");
}

TEST(DoctorBackend, SysctlNamesWriteAnInterfacesDotsAsSlashes) {
  BackendHost h = dsr_backend();
  h.interface = "eth0.100";
  h.conf_all.rp_filter = 1;
  const Finding r = one(check_backend(h, opts(ForwardMode::dsr)), "rp-filter");
  EXPECT_EQ(r.fix, "sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.eth0/100.rp_filter=2");
}

TEST(DoctorBackend, NoVipAtAllIsAnError) {
  BackendHost h = dsr_backend();
  h.addresses.erase(h.addresses.begin() + 2);  // 10.0.0.100 on lo
  const Finding v = one(check_backend(h, opts(ForwardMode::dsr)), "vips");
  EXPECT_EQ(v.severity, Severity::error);
  EXPECT_CONTAINS(v.message, "lo holds no address but 127.0.0.0/8 and ::1");
  EXPECT_EQ(v.fix, "ip addr add <VIP>/32 dev lo");
}

TEST(DoctorBackend, AVipNotOnLoIsAnErrorWithTheAddCommand) {
  const auto f =
      check_backend(dsr_backend(), opts(ForwardMode::dsr, {ip("10.0.0.100"), ip("10.0.0.200")}));
  const auto v = of(f, "vip-on-lo");
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].severity, Severity::ok);
  EXPECT_EQ(v[1].severity, Severity::error);
  EXPECT_CONTAINS(v[1].message, "10.0.0.200 is not on lo");
  EXPECT_EQ(v[1].fix, "ip addr add 10.0.0.200/32 dev lo");
}

TEST(DoctorBackend, AVipOnTheInterfaceIsAnErrorForDsrAndAWarningForIpip) {
  BackendHost h = dsr_backend();
  h.addresses[2] = {ip("10.0.0.100"), 24, "eth0", false};
  Finding v = one(check_backend(h, opts(ForwardMode::dsr, {ip("10.0.0.100")})), "vip-on-lo");
  EXPECT_EQ(v.severity, Severity::error);
  EXPECT_CONTAINS(v.message, "10.0.0.100 is on eth0, not on lo");
  EXPECT_CONTAINS(v.message, "answers ARP for it");
  EXPECT_EQ(v.fix, "ip addr del 10.0.0.100/24 dev eth0 && ip addr add 10.0.0.100/32 dev lo");
  v = one(check_backend(h, opts(ForwardMode::ipip, {ip("10.0.0.100")})), "vip-on-lo");
  EXPECT_EQ(v.severity, Severity::warn);
}

TEST(DoctorBackend, AWidePrefixOnLoIsAWarning) {
  BackendHost h = dsr_backend();
  h.addresses[2].prefix_len = 24;
  const Finding v = one(check_backend(h, opts(ForwardMode::dsr)), "vip-on-lo");
  EXPECT_EQ(v.severity, Severity::warn);
  EXPECT_CONTAINS(v.message, "10.0.0.100/24 is on lo");
  EXPECT_EQ(v.fix, "ip addr del 10.0.0.100/24 dev lo && ip addr add 10.0.0.100/32 dev lo");
}

TEST(DoctorBackend, AnIpv6VipHasNoArpButNeedsNodad) {
  BackendHost h = dsr_backend();
  h.addresses[2] = {ip("2001:db8::100"), 128, "lo", false};
  auto f = check_backend(h, opts(ForwardMode::dsr));
  Finding n = one(f, "vip-nodad");
  EXPECT_EQ(n.severity, Severity::warn);
  EXPECT_CONTAINS(n.message, "2001:db8::100 is on lo without nodad");
  EXPECT_EQ(n.fix,
            "ip addr del 2001:db8::100/128 dev lo && ip addr add 2001:db8::100/128 dev lo nodad");
  const Finding a = one(f, "arp-ignore");
  EXPECT_EQ(a.severity, Severity::ok);
  EXPECT_CONTAINS(a.message, "every VIP is IPv6: no ARP");
  EXPECT_TRUE(of(f, "arp-announce").empty());
  EXPECT_TRUE(of(f, "rp-filter").empty()) << "net.ipv4 rp_filter does not filter IPv6";

  h.addresses[2].nodad = true;
  h.conf_all = {0, 0, 1};  // IPv4 sysctls do not matter to an IPv6 VIP
  f = check_backend(h, opts(ForwardMode::dsr));
  n = one(f, "vip-nodad");
  EXPECT_EQ(n.severity, Severity::ok);
  EXPECT_CONTAINS(n.message, "IPv6 has no ARP");
  expect_all_ok(f);
}

TEST(DoctorBackend, NoInterfaceIsAnError) {
  BackendHost h = dsr_backend();
  h.interface = "";
  h.interface_note = "no default route and 2 interfaces up";
  const Finding i = one(check_backend(h, opts(ForwardMode::ipip)), "interface");
  EXPECT_EQ(i.severity, Severity::error);
  EXPECT_CONTAINS(i.message, "no default route and 2 interfaces up");
  EXPECT_EQ(i.fix, "ballast doctor backend --mode ipip --interface <IFACE>");
}

TEST(DoctorBackend, CleanIpipHostHasOnlyOks) {
  const auto f = check_backend(ipip_backend(), opts(ForwardMode::ipip));
  expect_all_ok(f);
  EXPECT_CONTAINS(one(f, "decap-attached").message, "decap program (id 42) is attached to eth0");
  EXPECT_CONTAINS(one(f, "decap-vips").message, "holds all 1 VIP(s): 10.0.0.100");
  EXPECT_CONTAINS(one(f, "mtu").message, "eth0 MTU 1520 leaves room");
  EXPECT_TRUE(of(f, "arp-ignore").empty()) << "ipip: the balancer never ARPs for the VIP here";
}

TEST(DoctorBackend, NoDecapProgramIsAnErrorWithTheAttachCommand) {
  BackendHost h = ipip_backend();
  h.xdp = {};
  h.decap_program_id = 0;
  h.decap_vips.clear();
  const Finding d = one(check_backend(h, opts(ForwardMode::ipip)), "decap-attached");
  EXPECT_EQ(d.severity, Severity::error);
  EXPECT_CONTAINS(d.message, "no decap program is attached to eth0");
  EXPECT_EQ(d.fix, "ballast decap attach eth0 --vip 10.0.0.100");
}

TEST(DoctorBackend, AForeignXdpProgramIsNamed) {
  BackendHost h = ipip_backend();
  h.xdp = {"native", {"xdp_pass"}, {7}};
  h.decap_program_id = 0;
  h.decap_vips.clear();
  const Finding d = one(check_backend(h, opts(ForwardMode::ipip)), "decap-attached");
  EXPECT_EQ(d.severity, Severity::error);
  EXPECT_CONTAINS(d.message, "xdp_pass (id 7)");
  EXPECT_EQ(d.fix, "ip link set dev eth0 xdp off && ballast decap attach eth0 --vip 10.0.0.100");
}

TEST(DoctorBackend, ADecapProgramMissingAVipIsAnError) {
  BackendHost h = ipip_backend();
  h.addresses.push_back({ip("10.0.0.101"), 32, "lo", false});
  const Finding d = one(check_backend(h, opts(ForwardMode::ipip)), "decap-vips");
  EXPECT_EQ(d.severity, Severity::error);
  EXPECT_CONTAINS(d.message, "holds 1 VIP(s) (10.0.0.100) but not 10.0.0.101");
  EXPECT_EQ(d.fix, "ballast decap attach eth0 --vip 10.0.0.100 --vip 10.0.0.101");
}

TEST(DoctorBackend, MtuWithoutHeadroomStatesTheOverhead) {
  BackendHost h = ipip_backend();
  h.mtu = 1500;
  Finding m = one(check_backend(h, opts(ForwardMode::ipip)), "mtu");
  EXPECT_EQ(m.severity, Severity::warn);
  EXPECT_CONTAINS(m.message, "eth0 MTU 1500 leaves no headroom: ipip adds 20 bytes (IPv4 outer");
  EXPECT_CONTAINS(m.message, "client packets over 1480 bytes will be answered with ICMP too big");
  EXPECT_EQ(m.fix, "ip link set dev eth0 mtu 1520");

  h.xdp = {"native", {"ballast_decap"}, {42}};
  h.decap_gue_port = 6080;
  m = one(check_backend(h, opts(ForwardMode::gue, {}, 6080)), "mtu");
  EXPECT_CONTAINS(m.message, "gue adds 28 bytes (IPv4 outer");
  EXPECT_CONTAINS(m.message, "over 1472 bytes");
  EXPECT_EQ(m.fix, "ip link set dev eth0 mtu 1528");

  // A backend reached over IPv6 only: IPv6 outer headers.
  h.addresses[3] = {ip("2001:db8::11"), 64, "eth0", false};
  m = one(check_backend(h, opts(ForwardMode::gue, {}, 6080)), "mtu");
  EXPECT_CONTAINS(m.message, "gue adds 48 bytes (IPv6 outer");
  EXPECT_CONTAINS(m.message, "over 1452 bytes");
  EXPECT_EQ(m.fix, "ip link set dev eth0 mtu 1548");
}

TEST(DoctorBackend, GuePortIsChecked) {
  BackendHost h = ipip_backend();
  h.mtu = 1600;
  h.decap_gue_port = 6080;
  auto f = check_backend(h, opts(ForwardMode::gue, {}, 6080));
  expect_all_ok(f);
  EXPECT_CONTAINS(one(f, "decap-gue-port").message, "takes GUE on UDP port 6080");

  Finding g = one(check_backend(h, opts(ForwardMode::gue, {}, 5555)), "decap-gue-port");
  EXPECT_EQ(g.severity, Severity::error);
  EXPECT_CONTAINS(g.message, "takes GUE on UDP port 6080, but the VIPs send it to port 5555");
  EXPECT_EQ(g.fix, "ballast decap attach eth0 --vip 10.0.0.100 --gue-port 5555");

  h.decap_gue_port = 0;
  g = one(check_backend(h, opts(ForwardMode::gue, {}, 5555)), "decap-gue-port");
  EXPECT_EQ(g.severity, Severity::error);
  EXPECT_CONTAINS(g.message, "takes no GUE (its port is 0)");
}

// ---------------------------------------------------------------------------
// Balancer snapshots.

BackendPath path(const char* vip, ForwardMode mode, const char* backend, uint32_t mtu = 1500) {
  BackendPath p;
  p.vip = vip;
  p.mode = mode;
  p.backend = ip(backend);
  p.interface = "eth0";
  p.egress_mtu = mtu;
  p.next_hop_mac = MacAddress{2, 0, 0, 0, 0, ip(backend).bytes[3]};
  return p;
}

// ballastd running on a NIC eth0 in native mode, a dsr VIP with an on-link
// backend and an ipip VIP whose egress has room for the outer header.
BalancerHost clean_balancer() {
  BalancerHost h;
  h.bpffs_mounted = true;
  h.interface = "eth0";
  h.interface_exists = true;
  h.mtu = 1600;
  h.xdp = {"native", {"ballast_xdp"}, {300}};
  h.pin_dir = "/sys/fs/bpf/ballast";
  h.pin_dir_exists = true;
  h.pinned = required_pinned_maps();
  h.config_path = "/etc/ballast/ballast.yaml";
  h.paths = {path("10.0.0.100:80/tcp", ForwardMode::dsr, "10.0.0.11", 1600),
             path("10.0.0.101:80/tcp", ForwardMode::ipip, "10.0.0.12", 1600)};
  h.socket = "/run/ballast/ballast.sock";
  h.api_ok = true;
  h.api_interface = "eth0";
  h.api_program_id = 300;
  return h;
}

TEST(DoctorBalancer, CleanHostHasOnlyOks) {
  const auto f = check_balancer(clean_balancer());
  expect_all_ok(f);
  EXPECT_CONTAINS(one(f, "xdp-program").message,
                  "ballast_xdp (id 300) is attached to eth0 in "
                  "native mode");
  EXPECT_CONTAINS(one(f, "pinned-maps").message, "all 12 maps are pinned in /sys/fs/bpf/ballast");
  EXPECT_CONTAINS(one(f, "ballastd-api").message, "program id 300 on eth0");
  EXPECT_EQ(of(f, "route").size(), 2u);
  EXPECT_CONTAINS(of(f, "route")[0].message, "backend 10.0.0.11 is on-link on eth0");
  EXPECT_CONTAINS(of(f, "neighbour")[0].message, "has MAC 02:00:00:00:00:0b on eth0");
  EXPECT_CONTAINS(one(f, "mtu").message,
                  "10.0.0.101:80/tcp (ipip, IPv4 outer, 20 bytes) leaves "
                  "by eth0 with MTU 1600");
  EXPECT_TRUE(of(f, "veth-peer").empty()) << "not a veth";
}

TEST(DoctorBalancer, NoBpffsIsAnError) {
  BalancerHost h = clean_balancer();
  h.bpffs_mounted = false;
  const Finding b = one(check_balancer(h), "bpffs");
  EXPECT_EQ(b.severity, Severity::error);
  EXPECT_EQ(b.fix, "mount -t bpf bpf /sys/fs/bpf");
}

TEST(DoctorBalancer, SkbModeIsAWarning) {
  BalancerHost h = clean_balancer();
  h.xdp.mode = "skb";
  const Finding x = one(check_balancer(h), "xdp-program");
  EXPECT_EQ(x.severity, Severity::warn);
  EXPECT_CONTAINS(x.message, "ballast_xdp (id 300) is attached to eth0 in generic (skb) mode");
  EXPECT_CONTAINS(x.fix, "attach_mode: native/' /etc/ballast/ballast.yaml");
  EXPECT_CONTAINS(x.fix, "ballastd --config /etc/ballast/ballast.yaml");
}

TEST(DoctorBalancer, InADispatcherTheProgramIsFound) {
  BalancerHost h = clean_balancer();
  h.xdp = {"native", {"xdp_pass", "ballast_xdp"}, {5, 300}};
  const Finding x = one(check_balancer(h), "xdp-program");
  EXPECT_EQ(x.severity, Severity::ok);
  EXPECT_CONTAINS(x.message, "ballast_xdp (id 300)");
}

TEST(DoctorBalancer, NoProgramOrAForeignOneIsAnError) {
  BalancerHost h = clean_balancer();
  h.xdp = {};
  Finding x = one(check_balancer(h), "xdp-program");
  EXPECT_EQ(x.severity, Severity::error);
  EXPECT_CONTAINS(x.message, "no XDP program is attached to eth0");
  EXPECT_EQ(x.fix, "ballastd --config /etc/ballast/ballast.yaml");
  h.xdp = {"native", {"xdp_pass"}, {5}};
  x = one(check_balancer(h), "xdp-program");
  EXPECT_EQ(x.severity, Severity::error);
  EXPECT_CONTAINS(x.message, "is xdp_pass (id 5), not Ballast's ballast_xdp");
  EXPECT_EQ(x.fix, "ip link set dev eth0 xdp off && ballastd --config /etc/ballast/ballast.yaml");
}

TEST(DoctorBalancer, MissingPinsAreNamed) {
  BalancerHost h = clean_balancer();
  h.pinned = {"vips",      "vip_by_id",     "backends",     "maglev_tables",
              "vip_stats", "backend_stats", "reason_stats", "egress",
              "tx_ports",  "vip_filter",    "conn_stats"};
  Finding p = one(check_balancer(h), "pinned-maps");
  EXPECT_EQ(p.severity, Severity::error);
  EXPECT_CONTAINS(p.message, "1 of the 12 maps are not in /sys/fs/bpf/ballast: conn_table;");
  h.pin_dir_exists = false;
  p = one(check_balancer(h), "pinned-maps");
  EXPECT_EQ(p.severity, Severity::error);
  EXPECT_CONTAINS(p.message, "/sys/fs/bpf/ballast does not exist");
  EXPECT_EQ(p.fix, "ballastd --config /etc/ballast/ballast.yaml");
}

TEST(DoctorBalancer, BallastdNotAnsweringIsAnError) {
  BalancerHost h = clean_balancer();
  h.api_ok = false;
  h.api_error = "connect /run/ballast/ballast.sock: No such file or directory";
  const Finding a = one(check_balancer(h), "ballastd-api");
  EXPECT_EQ(a.severity, Severity::error);
  EXPECT_CONTAINS(a.message, "ballastd does not answer on /run/ballast/ballast.sock (connect");
  EXPECT_EQ(a.fix, "ballastd --config /etc/ballast/ballast.yaml");
}

// The pinned meta map says how long the program has forwarded with nobody
// managing it, and how its last ballastd ended.
TEST(DoctorBalancer, SaysHowLongNoBallastdHasManagedThePins) {
  BalancerHost h = clean_balancer();
  h.api_ok = false;
  h.api_error = "connect: Connection refused";
  h.heartbeat_age_ms = 423'000;
  h.heartbeat_pid = 0;
  Finding a = one(check_balancer(h), "ballastd-api");
  EXPECT_CONTAINS(a.message, "no ballastd has managed the maps in /sys/fs/bpf/ballast for 7 min 3 s "
                             "(the last one was stopped)");
  h.heartbeat_age_ms = 2 * 86400'000 + 3 * 3600'000;
  h.heartbeat_pid = 77;
  a = one(check_balancer(h), "ballastd-api");
  EXPECT_CONTAINS(a.message, "for 2 d 3 h (the last, pid 77, stopped without a word");
  // No meta map (pins of layout 1): nothing said about it.
  h.heartbeat_age_ms = -1;
  a = one(check_balancer(h), "ballastd-api");
  EXPECT_EQ(a.message.find("no ballastd has managed"), std::string::npos) << a.message;
}

TEST(DoctorBalancer, ADsrBackendBehindAGatewayIsAnError) {
  BalancerHost h = clean_balancer();
  h.paths[0].gateway = ip("10.0.0.1");
  const auto f = check_balancer(h);
  const Finding l = one(f, "backend-l2");
  EXPECT_EQ(l.severity, Severity::error);
  EXPECT_CONTAINS(l.message,
                  "10.0.0.100:80/tcp is dsr, but its backend 10.0.0.11 is reached via "
                  "gateway 10.0.0.1 on eth0");
  EXPECT_EQ(l.fix,
            "ballast apply -f /etc/ballast/ballast.yaml  # after setting mode: ipip (or gue) on "
            "10.0.0.100:80/tcp in /etc/ballast/ballast.yaml");
  // The MAC that matters is the gateway's.
  EXPECT_CONTAINS(of(f, "neighbour")[0].message, "next hop 10.0.0.1 of backend 10.0.0.11");
}

TEST(DoctorBalancer, AnIpipBackendBehindAGatewayIsFine) {
  BalancerHost h = clean_balancer();
  h.paths[1].gateway = ip("10.0.0.1");
  const auto f = check_balancer(h);
  EXPECT_TRUE(of(f, "backend-l2").empty());
  EXPECT_CONTAINS(of(f, "route")[1].message, "backend 10.0.0.12 is via 10.0.0.1 on eth0");
}

TEST(DoctorBalancer, NoNeighbourEntryIsAnErrorWithACommandThatAsksForIt) {
  BalancerHost h = clean_balancer();
  h.paths[0].next_hop_mac.reset();
  const auto n = of(check_balancer(h), "neighbour");
  ASSERT_EQ(n.size(), 2u);
  EXPECT_EQ(n[0].severity, Severity::error);
  EXPECT_CONTAINS(n[0].message,
                  "the kernel has no MAC for next hop 10.0.0.11 of backend "
                  "10.0.0.11 on eth0");
  EXPECT_EQ(n[0].fix, "ping -c 1 -W 1 -I eth0 10.0.0.11");
}

TEST(DoctorBalancer, NoRouteIsAnErrorOncePerBackend) {
  BalancerHost h = clean_balancer();
  BackendPath p = path("10.0.0.102:53/udp", ForwardMode::dsr, "192.0.2.9");
  p.route_error = "Network is unreachable";
  h.paths.push_back(p);
  p.vip = "10.0.0.102:80/tcp";
  h.paths.push_back(p);
  const auto r = of(check_balancer(h), "route");
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[2].severity, Severity::error);
  EXPECT_CONTAINS(r[2].message,
                  "no route to backend 192.0.2.9 of 10.0.0.102:53/udp: Network is "
                  "unreachable");
  EXPECT_EQ(r[2].fix, "ip route add 192.0.2.9/32 via <GATEWAY> dev eth0");
}

TEST(DoctorBalancer, EncapsulationOverTheMtuWarnsWithTheLargestPacket) {
  BalancerHost h = clean_balancer();
  h.paths[1].egress_mtu = 1500;
  Finding m = one(check_balancer(h), "mtu");
  EXPECT_EQ(m.severity, Severity::warn);
  EXPECT_CONTAINS(m.message,
                  "(ipip, IPv4 outer, 20 bytes) leaves by eth0 with MTU 1500: packets "
                  "over 1480 bytes will be answered with ICMP too big");
  EXPECT_EQ(m.fix, "ip link set dev eth0 mtu 1520");

  h.paths[1] = path("[2001:db8::100]:80/tcp", ForwardMode::gue, "2001:db8::12", 1500);
  m = one(check_balancer(h), "mtu");
  EXPECT_CONTAINS(m.message,
                  "(gue, IPv6 outer, 48 bytes) leaves by eth0 with MTU 1500: packets "
                  "over 1452 bytes");
  EXPECT_EQ(m.fix, "ip link set dev eth0 mtu 1548");
}

TEST(DoctorBalancer, EncapsulationWithoutASourceAddressIsAnError) {
  BalancerHost h = clean_balancer();
  h.paths[1].egress_has_source = false;
  const Finding s = one(check_balancer(h), "encap-source");
  EXPECT_EQ(s.severity, Severity::error);
  EXPECT_CONTAINS(s.message, "eth0 has no IPv4 address to send ipip from");
}

TEST(DoctorBalancer, AVethPeerNeedsAnXdpProgram) {
  BalancerHost h = clean_balancer();
  h.kind = "veth";
  h.peer_visible = true;
  h.peer_name = "veth-lb";
  Finding v = one(check_balancer(h), "veth-peer");
  EXPECT_EQ(v.severity, Severity::error);
  EXPECT_CONTAINS(v.message, "eth0 is a veth whose peer veth-lb has no XDP program");
  EXPECT_CONTAINS(v.message, "rx_queue_0_xdp_tx_errors");
  EXPECT_EQ(v.fix, "ip link set dev veth-lb xdpdrv obj <xdp_pass.bpf.o> sec xdp");

  h.peer_xdp = {"native", {"xdp_pass"}, {9}};
  v = one(check_balancer(h), "veth-peer");
  EXPECT_EQ(v.severity, Severity::ok);
  EXPECT_CONTAINS(v.message, "veth-lb has XDP program xdp_pass (id 9)");

  // In another namespace: cannot be seen, so a warning, not an error.
  h.peer_visible = false;
  v = one(check_balancer(h), "veth-peer");
  EXPECT_EQ(v.severity, Severity::warn);
  EXPECT_CONTAINS(v.message, "peer is in another network namespace");
}

TEST(DoctorBalancer, ABadOrMissingConfigIsReported) {
  BalancerHost h = clean_balancer();
  h.config_error = "ballast.yaml:9: vips[0].backends[2].weight: must be an integer 0..65535";
  Finding c = one(check_balancer(h), "config");
  EXPECT_EQ(c.severity, Severity::error);
  EXPECT_EQ(c.message, h.config_error);
  h.config_error.clear();
  h.config_path.clear();
  h.paths.clear();
  const auto f = check_balancer(h);
  c = one(f, "config");
  EXPECT_EQ(c.severity, Severity::warn);
  EXPECT_CONTAINS(c.message, "backends not checked");
  EXPECT_EQ(one(f, "xdp-program").fix, "") << "ok findings carry no fix";
}

TEST(DoctorBalancer, NoInterfaceIsAnError) {
  BalancerHost h = clean_balancer();
  h.interface = "";
  const Finding i = one(check_balancer(h), "interface");
  EXPECT_EQ(i.severity, Severity::error);
  EXPECT_EQ(i.fix, "ballast doctor balancer --interface <IFACE>");
  h.interface = "eth9";
  h.interface_exists = false;
  EXPECT_CONTAINS(one(check_balancer(h), "interface").message, "there is no interface eth9");
}

// ---------------------------------------------------------------------------
// Modes and output.

TEST(DoctorOutput, EncapOverheads) {
  EXPECT_EQ(encap_overhead(ForwardMode::dsr, false), 0u);
  EXPECT_EQ(encap_overhead(ForwardMode::ipip, false), 20u);
  EXPECT_EQ(encap_overhead(ForwardMode::ipip, true), 40u);
  EXPECT_EQ(encap_overhead(ForwardMode::gue, false), 28u);
  EXPECT_EQ(encap_overhead(ForwardMode::gue, true), 48u);
  EXPECT_EQ(parse_forward_mode("gue"), ForwardMode::gue);
  EXPECT_FALSE(parse_forward_mode("vxlan"));
}

TEST(DoctorOutput, TextHasOneLinePerFindingTheFixAndACount) {
  const std::vector<Finding> f = {
      {Severity::ok, "vip-on-lo", "10.0.0.100/32 is on lo", ""},
      {Severity::error, "arp-ignore", "net.ipv4.conf.all.arp_ignore is 0: ...",
       "sysctl -w net.ipv4.conf.all.arp_ignore=1"},
      {Severity::warn, "mtu", "eth0 MTU 1500 ...", "ip link set dev eth0 mtu 1520"}};
  EXPECT_EQ(render_text(f),
            "OK    vip-on-lo       10.0.0.100/32 is on lo\n"
            "ERROR arp-ignore      net.ipv4.conf.all.arp_ignore is 0: ...\n"
            "      fix: sysctl -w net.ipv4.conf.all.arp_ignore=1\n"
            "WARN  mtu             eth0 MTU 1500 ...\n"
            "      fix: ip link set dev eth0 mtu 1520\n"
            "1 error(s), 1 warning(s)\n");
  const auto j = nlohmann::json::parse(render_json("backend", f));
  EXPECT_EQ(j["role"], "backend");
  EXPECT_EQ(j["errors"], 1);
  EXPECT_EQ(j["warnings"], 1);
  ASSERT_EQ(j["findings"].size(), 3u);
  EXPECT_EQ(j["findings"][1]["severity"], "error");
  EXPECT_EQ(j["findings"][1]["check"], "arp-ignore");
  EXPECT_EQ(j["findings"][1]["fix"], "sysctl -w net.ipv4.conf.all.arp_ignore=1");
  EXPECT_TRUE(has_error(f));
  EXPECT_FALSE(has_error({f[0], f[2]}));
}

}  // namespace
}  // namespace ballast::doctor
