// Config parsing and validation: every error path names the line, the field
// and the reason, and a bad file yields no config at all.
#include "config.h"

#include <gtest/gtest.h>

#include "error.h"

namespace ballast {
namespace {

const char* kGood = R"(interface: eth0
vips:
  - address: 10.0.0.100
    port: 80
    protocol: tcp
    backends:
      - {address: 10.0.0.11, weight: 1}
      - {address: 10.0.0.12, weight: 1}
      - {address: 10.0.0.13, weight: 2}
)";

// Parses @yaml expecting failure; returns the message.
std::string parse_error(const std::string& yaml) {
  try {
    parse_config(yaml, "test.yaml");
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "config was accepted:\n" << yaml;
  return "";
}

TEST(Config, ParsesTheIssueExample) {
  Config c = parse_config(kGood, "test.yaml");
  EXPECT_EQ(c.interface, "eth0");
  EXPECT_EQ(c.attach_mode, AttachMode::native) << "native is the default";
  ASSERT_EQ(c.vips.size(), 1u);
  EXPECT_EQ(c.vips[0].key.str(), "10.0.0.100:80/tcp");
  ASSERT_EQ(c.vips[0].backends.size(), 3u);
  EXPECT_EQ(c.vips[0].backends[2].address.str(), "10.0.0.13");
  EXPECT_EQ(c.vips[0].backends[2].weight, 2u);
}

TEST(Config, WeightDefaultsToOneAndSkbModeParses) {
  Config c = parse_config(
      "interface: eth1\nattach_mode: skb\nvips:\n  - {address: 10.0.0.1, port: 53, protocol: udp, "
      "backends: [{address: 10.0.0.2}]}\n",
      "t");
  EXPECT_EQ(c.attach_mode, AttachMode::skb);
  EXPECT_EQ(c.vips[0].key.protocol, Protocol::udp);
  EXPECT_EQ(c.vips[0].backends[0].weight, 1u);
}

struct BadCase {
  const char* name;
  std::string yaml;
  std::string expected;  // a substring of the error
};

class ConfigErrors : public ::testing::TestWithParam<BadCase> {};

TEST_P(ConfigErrors, NamesLineFieldAndReason) {
  const auto& c = GetParam();
  const std::string msg = parse_error(c.yaml);
  EXPECT_NE(msg.find(c.expected), std::string::npos)
      << "error for " << c.name << " should contain '" << c.expected << "', got:\n"
      << msg;
}

std::string with(const std::string& from, const std::string& to) {
  std::string s = kGood;
  auto pos = s.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  return s.replace(pos, from.size(), to);
}

TEST(Config, FleetHashSeedDefaultsToZero) {
  EXPECT_EQ(parse_config(kGood, "test.yaml").fleet.hash_seed, 0u);
  const std::string yaml = std::string(kGood) + "fleet: {hash_seed: 4294967295}\n";
  EXPECT_EQ(parse_config(yaml, "test.yaml").fleet.hash_seed, 4294967295u);
}

TEST(Config, FleetAnnounceIsOffUntilAskedForThenDefaultsToTable100AndOneUsable) {
  EXPECT_FALSE(parse_config(kGood, "test.yaml").fleet.announce);
  Config c = parse_config(std::string(kGood) + "fleet: {announce: }\n", "test.yaml");
  ASSERT_TRUE(c.fleet.announce);
  EXPECT_EQ(*c.fleet.announce, (AnnounceSettings{.table = 100, .min_usable = 1}));
  c = parse_config(with("    protocol: tcp\n", "    protocol: tcp\n    min_usable: 2\n") +
                       "fleet: {announce: {table: 4242, min_usable: 0}}\n",
                   "test.yaml");
  EXPECT_EQ(*c.fleet.announce, (AnnounceSettings{.table = 4242, .min_usable = 0}));
  EXPECT_EQ(c.vips[0].min_usable, 2u);
}

TEST(Config, SecondChanceOnGueTcpVipsAndHowLongThePreviousTableIsKept) {
  Config c = parse_config(kGood, "test.yaml");
  EXPECT_FALSE(c.vips[0].second_chance);
  EXPECT_EQ(c.fleet.second_chance_keep, std::chrono::seconds(60));
  c = parse_config(with("    protocol: tcp\n", "    protocol: tcp\n    mode: gue\n"
                                               "    second_chance: true\n") +
                       "fleet: {second_chance_keep: 5m}\n",
                   "test.yaml");
  EXPECT_TRUE(c.vips[0].second_chance);
  EXPECT_EQ(c.fleet.second_chance_keep, std::chrono::seconds(300));
}

TEST(Config, SkewAndMetricsDefaultsAndOverrides) {
  Config c = parse_config(kGood, "test.yaml");
  EXPECT_EQ(c.skew, SkewSettings{});
  EXPECT_EQ(c.skew.window, std::chrono::seconds(10));
  EXPECT_EQ(c.metrics_listen, "127.0.0.1:9469");
  c = parse_config(with("vips:",
                        "skew: {window: 30s, min_new_flows: 50, z_min: 2.5, threshold: 1.5, "
                        "hold: 5s}\nmetrics: {listen: '[::1]:9100'}\nvips:"),
                   "test.yaml");
  EXPECT_EQ(c.skew.window, std::chrono::seconds(30));
  EXPECT_EQ(c.skew.min_new_flows, 50u);
  EXPECT_DOUBLE_EQ(c.skew.z_min, 2.5);
  EXPECT_DOUBLE_EQ(c.skew.threshold, 1.5);
  EXPECT_EQ(c.skew.hold, std::chrono::seconds(5));
  EXPECT_EQ(c.metrics_listen, "[::1]:9100");
  EXPECT_EQ(parse_config(with("vips:", "metrics: {listen: off}\nvips:"), "t").metrics_listen, "");
}

TEST(Config, AuditAndReconcileDefaultsAndOverrides) {
  Config c = parse_config(kGood, "test.yaml");
  EXPECT_EQ(c.audit, AuditSettings{});
  EXPECT_EQ(c.audit.interval, std::chrono::seconds(30));
  EXPECT_DOUBLE_EQ(c.audit.max_share, 0.5);
  EXPECT_FALSE(c.reconcile) << "reconcile is opt-in";
  EXPECT_FALSE(c.vips[0].max_share);
  c = parse_config(with("vips:", "audit: {interval: 5s, max_share: 0.75}\nreconcile: true\nvips:"),
                   "test.yaml");
  EXPECT_EQ(c.audit.interval, std::chrono::seconds(5));
  EXPECT_DOUBLE_EQ(c.audit.max_share, 0.75);
  EXPECT_TRUE(c.reconcile);
  c = parse_config(with("    protocol: tcp", "    protocol: tcp\n    max_share: 0.6"), "t");
  ASSERT_TRUE(c.vips[0].max_share);
  EXPECT_DOUBLE_EQ(*c.vips[0].max_share, 0.6);
}

INSTANTIATE_TEST_SUITE_P(
    Every, ConfigErrors,
    ::testing::Values(
        BadCase{"audit_interval_zero", with("vips:", "audit: {interval: 0s}\nvips:"),
                "test.yaml:2: audit.interval: must be whole seconds from 1s to 3600s, got '0s'"},
        BadCase{"audit_max_share_above_one", with("vips:", "audit: {max_share: 1.5}\nvips:"),
                "test.yaml:2: audit.max_share: must be a number 0.01..1, got '1.5'"},
        BadCase{"vip_max_share_not_number",
                with("    protocol: tcp", "    protocol: tcp\n    max_share: half"),
                "test.yaml:6: vips[0].max_share: must be a number 0.01..1, got 'half'"},
        BadCase{"vip_mode_unknown", with("    protocol: tcp", "    protocol: tcp\n    mode: gre"),
                "test.yaml:6: vips[0].mode: must be dsr, ipip or gue, got 'gre'"},
        BadCase{"gue_port_zero", with("    protocol: tcp", "    protocol: tcp\n    gue_port: 0"),
                "test.yaml:6: vips[0].gue_port: must be an integer 1..65535, got '0'"},
        BadCase{"ignore_source_port_on_tcp",
                with("    protocol: tcp", "    protocol: tcp\n    ignore_source_port: true"),
                "vips[0].ignore_source_port: only for udp VIPs (10.0.0.100:80/tcp is tcp"},
        BadCase{"fragments_twice_for_one_address",
                "interface: eth0\nvips:\n"
                "  - {address: 10.0.0.1, port: 53, protocol: udp, fragments: true}\n"
                "  - {address: 10.0.0.1, port: 5353, protocol: udp, fragments: true}\n",
                "vips[1].fragments: vips[0] already takes the fragments to 10.0.0.1 udp (one VIP "
                "per address and protocol)"},
        BadCase{"encap_v6_prefix_too_short",
                with("vips:", "encap: {source_prefix_v6: 'fd00::/64'}\nvips:"),
                "test.yaml:2: encap.source_prefix_v6: must be /96 or longer"},
        BadCase{
            "encap_prefix_host_bits",
            with("vips:", "encap: {source_prefix_v4: 10.255.0.1/16}\nvips:"),
            "test.yaml:2: encap.source_prefix_v4: must be a prefix ADDRESS/LENGTH with its host "
            "bits zero, got '10.255.0.1/16'"},
        BadCase{"encap_prefix_family",
                with("vips:", "encap: {source_prefix_v4: 'fd00::/96'}\nvips:"),
                "test.yaml:2: encap.source_prefix_v4: must be an IPv4 prefix, got 'fd00::/96'"},
        BadCase{"hash_seed_negative", with("vips:", "fleet: {hash_seed: -1}\nvips:"),
                "test.yaml:2: fleet.hash_seed: must be an integer 0..4294967295, got '-1'"},
        BadCase{"hash_seed_too_big", with("vips:", "fleet: {hash_seed: 4294967296}\nvips:"),
                "test.yaml:2: fleet.hash_seed: must be an integer 0..4294967295, got "
                "'4294967296'"},
        BadCase{"fleet_unknown_field", with("vips:", "fleet: {seed: 3}\nvips:"),
                "test.yaml:2: fleet.seed: unknown field"},
        BadCase{"announce_main_table",
                with("vips:", "fleet: {announce: {table: 254}}\nvips:"),
                "test.yaml:2: fleet.announce.table: must not be one of the kernel's own tables "
                "(0, 252 compat, 253 default, 254 main, 255 local): forwarding uses those; got "
                "254"},
        BadCase{"announce_table_zero", with("vips:", "fleet: {announce: {table: 0}}\nvips:"),
                "test.yaml:2: fleet.announce.table: must be an integer 1..4294967295, got '0'"},
        BadCase{"announce_unknown_field",
                with("vips:", "fleet: {announce: {min_healthy: 2}}\nvips:"),
                "test.yaml:2: fleet.announce.min_healthy: unknown field"},
        BadCase{"min_usable_without_announce",
                with("    protocol: tcp\n", "    protocol: tcp\n    min_usable: 2\n"),
                "vips[0].min_usable: only means something with fleet.announce (ballastd "
                "announces nothing without it)"},
        BadCase{"second_chance_dsr",
                with("    protocol: tcp\n", "    protocol: tcp\n    second_chance: true\n"),
                "vips[0].second_chance: only for tcp VIPs in mode gue (the previous backend "
                "travels in the GUE header; a backend finds a flow by its TCP socket)"},
        BadCase{"second_chance_keep_too_long",
                with("vips:", "fleet: {second_chance_keep: 2h}\nvips:"),
                "test.yaml:2: fleet.second_chance_keep: must be whole seconds from 1s to 3600s, "
                "got '2h'"},
        BadCase{"fleet_not_mapping", with("vips:", "fleet: 3\nvips:"),
                "test.yaml:2: fleet: must be a mapping like {hash_seed: 12345}"},
        BadCase{"reconcile_not_bool", with("vips:", "reconcile: yes please\nvips:"),
                "test.yaml:2: reconcile: must be true or false, got 'yes please'"},
        BadCase{"skew_window_not_seconds", with("vips:", "skew: {window: 1500ms}\nvips:"),
                "test.yaml:2: skew.window: must be whole seconds from 1s to 3600s, got '1500ms'"},
        BadCase{"skew_threshold_below_one", with("vips:", "skew: {threshold: 0.5}\nvips:"),
                "test.yaml:2: skew.threshold: must be a number 1..1000, got '0.5'"},
        BadCase{"skew_unknown_field", with("vips:", "skew: {windw: 10s}\nvips:"),
                "skew.windw: unknown field (known: hold, min_new_flows, threshold, window, z_min)"},
        BadCase{
            "metrics_bad_listen", with("vips:", "metrics: {listen: localhost:9469}\nvips:"),
            "test.yaml:2: metrics.listen: must be ADDRESS:PORT (IPv6 as [ADDRESS]:PORT) or off, "
            "got 'localhost:9469'"},
        BadCase{"negative_weight", with("weight: 2", "weight: -3"),
                "test.yaml:9: vips[0].backends[2].weight: must be an integer 0..65535, got '-3'"},
        BadCase{"weight_too_big", with("weight: 2", "weight: 70000"),
                "vips[0].backends[2].weight: must be an integer 0..65535, got '70000'"},
        BadCase{"weight_not_number", with("weight: 2", "weight: heavy"),
                "vips[0].backends[2].weight: must be an integer"},
        // Edges found by probing (issue #16): each refused with a message
        // and its line, never read as something else.
        BadCase{"weight_hex", with("weight: 2", "weight: 0x10"),
                "test.yaml:9: vips[0].backends[2].weight: must be an integer 0..65535, got '0x10'"},
        BadCase{"weight_exponent", with("weight: 2", "weight: 1e23"),
                "test.yaml:9: vips[0].backends[2].weight: must be an integer 0..65535, got '1e23'"},
        BadCase{"duplicate_key", with("    port: 80\n", "    port: 80\n    port: 8080\n"),
                "test.yaml:5: vips[0].port: given twice (first on line 4)"},
        BadCase{"duplicate_top_key", with("interface: eth0\n", "interface: eth0\ninterface: eth1\n"),
                "test.yaml:2: interface: given twice (first on line 1)"},
        BadCase{"vip_unspecified", with("10.0.0.100", "0.0.0.0"),
                "test.yaml:3: vips[0].address: '0.0.0.0' cannot be a VIP: it is in 0.0.0.0/8, "
                "the unspecified network"},
        BadCase{"vip_broadcast", with("10.0.0.100", "255.255.255.255"),
                "test.yaml:3: vips[0].address: '255.255.255.255' cannot be a VIP: it is the "
                "broadcast address"},
        BadCase{"vip_multicast", with("10.0.0.100", "239.1.2.3"),
                "'239.1.2.3' cannot be a VIP: it is a multicast address (224.0.0.0/4)"},
        BadCase{"vip_loopback", with("10.0.0.100", "127.0.0.53"),
                "'127.0.0.53' cannot be a VIP: it is a loopback address (127.0.0.0/8)"},
        BadCase{"vip_v4_mapped", with("10.0.0.100", "'::ffff:10.0.0.100'"),
                "'::ffff:10.0.0.100' cannot be a VIP: it is an IPv4-mapped IPv6 address "
                "(::ffff:0:0/96); write the IPv4 address"},
        BadCase{"vip_v6_unspecified", with("10.0.0.100", "'::'"),
                "'::' cannot be a VIP: it is the unspecified address (::)"},
        BadCase{"vip_v6_loopback", with("10.0.0.100", "'::1'"),
                "'::1' cannot be a VIP: it is the loopback address (::1)"},
        BadCase{"vip_v6_multicast", with("10.0.0.100", "'ff02::1'"),
                "'ff02::1' cannot be a VIP: it is a multicast address (ff00::/8)"},
        BadCase{"backend_loopback", with("10.0.0.12", "127.0.0.1"),
                "test.yaml:8: vips[0].backends[1].address: '127.0.0.1' cannot be a backend: it is "
                "a loopback address (127.0.0.0/8)"},
        BadCase{"bad_backend_address", with("10.0.0.12", "10.0.0.300"),
                "test.yaml:8: vips[0].backends[1].address: '10.0.0.300' is not an IP address"},
        BadCase{"missing_backend_address", with("{address: 10.0.0.12, weight: 1}", "{weight: 1}"),
                "vips[0].backends[1].address: is required"},
        BadCase{"bad_vip_address", with("10.0.0.100", "ten.0.0.100"),
                "test.yaml:3: vips[0].address: 'ten.0.0.100' is not an IP address"},
        BadCase{"port_zero", with("port: 80", "port: 0"),
                "test.yaml:4: vips[0].port: must be an integer 1..65535"},
        BadCase{"port_too_big", with("port: 80", "port: 65536"),
                "vips[0].port: must be an integer 1..65535"},
        BadCase{"missing_port", with("    port: 80\n", ""), "vips[0].port: is required"},
        BadCase{"bad_protocol", with("protocol: tcp", "protocol: sctp"),
                "test.yaml:5: vips[0].protocol: must be tcp or udp, got 'sctp'"},
        BadCase{"missing_protocol", with("    protocol: tcp\n", ""),
                "vips[0].protocol: is required"},
        BadCase{"missing_interface", with("interface: eth0\n", ""), "interface: is required"},
        BadCase{"long_interface", with("eth0", "a-very-long-interface-name"),
                "interface: 'a-very-long-interface-name' is longer than 15 characters"},
        BadCase{"missing_vips", "interface: eth0\n", "vips: is required"},
        BadCase{"vips_not_list", "interface: eth0\nvips: 3\n", "test.yaml:2: vips: must be a list"},
        BadCase{"backends_not_list", with("    backends:\n", "    backends: 7\n    x:\n"),
                "vips[0].backends: must be a list"},
        BadCase{"unknown_top_field", with("interface: eth0", "interface: eth0\ninterfaces: eth1"),
                "test.yaml:2: interfaces: unknown field"},
        BadCase{"unknown_backend_field", with("weight: 2", "wieght: 2"),
                "vips[0].backends[2].wieght: unknown field (known: address, health_check, weight)"},
        BadCase{"bad_attach_mode", with("interface: eth0", "interface: eth0\nattach_mode: hw"),
                "attach_mode: must be native or skb, got 'hw'"},
        BadCase{
            "duplicate_backend", with("10.0.0.12", "10.0.0.11"),
            "test.yaml:8: vips[0].backends[1].address: duplicate backend 10.0.0.11 (also "
            "vips[0].backends[0])"},
        BadCase{"duplicate_vip",
                std::string(kGood) + "  - {address: 10.0.0.100, port: 80, protocol: tcp}\n",
                "test.yaml:10: vips[1]: duplicate VIP 10.0.0.100:80/tcp (also vips[0])"},
        BadCase{"whole_file_rule_on_line_one", with("interface: eth0\n", ""),
                "test.yaml:1: interface: is required"},
        BadCase{"newline_in_a_value", with("interface: eth0", "interface: eth0\nattach_mode: \"hw\\nx\""),
                "test.yaml:2: attach_mode: must be native or skb, got 'hw\\nx'"},
        BadCase{"family_mismatch_in_dsr", with("10.0.0.13", "'2001:db8::13'"),
                "vips[0].backends[2].address: 2001:db8::13: must be the VIP's address family in "
                "mode dsr"},
        BadCase{"zero_check_interval",
                with("    backends:\n",
                     "    health_check: {type: tcp, interval: 0ms}\n    backends:\n"),
                "test.yaml:6: vips[0].health_check.interval: must be at least 1ms, got 0ms"},
        BadCase{"zero_check_interval_on_one_backend",
                with("{address: 10.0.0.12, weight: 1}",
                     "{address: 10.0.0.12, weight: 1, health_check: {interval: 0ms}}"),
                "test.yaml:8: vips[0].backends[1].health_check.interval: must be at least 1ms, "
                "got 0ms"},
        BadCase{
            "bad_check_type",
            with("    backends:\n", "    health_check: {type: icmp}\n    backends:\n"),
            "test.yaml:6: vips[0].health_check.type: must be none, tcp, http or udp, got 'icmp'"},
        BadCase{
            "bad_check_duration",
            with("    backends:\n", "    health_check: {timeout: soon}\n    backends:\n"),
            "vips[0].health_check.timeout: must be a duration like 500ms, 1s or 2.5s, got 'soon'"},
        BadCase{"bad_fail_open", with("    backends:\n", "    fail_open: maybe\n    backends:\n"),
                "test.yaml:6: vips[0].fail_open: must be true or false, got 'maybe'"},
        BadCase{"not_yaml", "interface: [eth0\n", "test.yaml:2: not valid YAML"},
        BadCase{"not_a_mapping", "- a\n- b\n", "top level must be a mapping"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(Config, Ipv6VipsEncapModesAndOptions) {
  Config c = parse_config(R"(interface: eth0
encap: {source_prefix_v4: 10.255.0.0/16, source_prefix_v6: 'fd00:ff::/96'}
vips:
  - address: 'fd00::100'
    port: 443
    protocol: tcp
    mode: gue
    gue_port: 7777
    backends:
      - {address: 'fd00::11'}
      - {address: 10.0.0.12}
  - address: 10.0.0.53
    port: 53
    protocol: udp
    mode: ipip
    ignore_source_port: true
    fragments: true
    backends:
      - {address: 'fd00::12'}
  - {address: 'fd00::100', port: 80, protocol: tcp, backends: [{address: 'fd00::13'}]}
)",
                          "test.yaml");
  ASSERT_EQ(c.vips.size(), 3u);
  EXPECT_EQ(c.vips[0].key.str(), "[fd00::100]:443/tcp");
  EXPECT_EQ(c.vips[0].mode, ForwardMode::gue);
  EXPECT_EQ(c.vips[0].gue_port, 7777);
  EXPECT_FALSE(c.vips[0].fragments);
  EXPECT_EQ(c.vips[1].mode, ForwardMode::ipip);
  EXPECT_EQ(c.vips[1].gue_port, kDefaultGuePort) << "the default";
  EXPECT_TRUE(c.vips[1].ignore_source_port);
  EXPECT_TRUE(c.vips[1].fragments);
  EXPECT_EQ(c.vips[2].mode, ForwardMode::dsr) << "the default";
  ASSERT_TRUE(c.encap.source_v4 && c.encap.source_v6);
  EXPECT_EQ(c.encap.source_v4->str(), "10.255.0.0/16");
  EXPECT_EQ(c.encap.source_v6->str(), "fd00:ff::/96");
}

TEST(Config, HealthChecksMergeOverTheVipDefault) {
  Config c =
      parse_config(with("    backends:\n",
                        "    health_check: {type: http, path: /healthz, interval: 2s}\n"
                        "    backends:\n") +
                       "      - address: 10.0.0.14\n        health_check: {type: tcp, port: 22}\n",
                   "t");
  const auto& vip = c.vips[0];
  EXPECT_EQ(vip.check.type, CheckType::http);
  EXPECT_EQ(vip.check.port, 80) << "check port defaults to the VIP's";
  EXPECT_EQ(vip.backends[0].check, vip.check) << "no override: the VIP's check";
  const auto& over = vip.backends[3].check;
  EXPECT_EQ(over.type, CheckType::tcp);
  EXPECT_EQ(over.port, 22);
  EXPECT_EQ(over.interval, std::chrono::milliseconds(2000)) << "unset fields come from the VIP";
  EXPECT_FALSE(vip.fail_open) << "fail_open defaults to false";
}

TEST(Config, ListsEveryProblemNotJustTheFirst) {
  std::string yaml = with("weight: 2", "weight: -3");
  yaml.replace(yaml.find("protocol: tcp"), 13, "protocol: icmp");
  const std::string msg = parse_error(yaml);
  EXPECT_NE(msg.find("weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("protocol"), std::string::npos) << msg;
}

TEST(Config, ValidateCatchesEditsTheParserNeverSaw) {
  Config c = parse_config(kGood, "t");
  EXPECT_TRUE(validate_config(c).empty());
  c.vips[0].backends.push_back(c.vips[0].backends[0]);
  auto problems = validate_config(c);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("duplicate backend 10.0.0.11"), std::string::npos) << problems[0];
  EXPECT_THROW(require_valid(c), Error);
}

TEST(VipKey, ParsesAndPrints) {
  EXPECT_EQ(VipKey::parse("10.0.0.100:80/tcp").str(), "10.0.0.100:80/tcp");
  EXPECT_EQ(VipKey::parse("[2001:db8::1]:443/udp").str(), "[2001:db8::1]:443/udp");
  for (const char* bad :
       {"10.0.0.100:80", "10.0.0.100/tcp", "10.0.0.100:0/tcp", "10.0.0.100:99999/tcp",
        "host:80/tcp", "10.0.0.100:80/icmp", "10.0.0.100:8x/tcp"})
    EXPECT_THROW(VipKey::parse(bad), Error) << bad;
}

}  // namespace
}  // namespace ballast
