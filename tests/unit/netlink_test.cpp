// netlink (userspace/host/netlink.h, over libmnl): requests as built, and
// asked of this host's kernel (read-only: links and routes everyone has).
#include "netlink.h"

#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include "error.h"

namespace ballast {
namespace {

TEST(NetlinkTest, ARequestCarriesItsHeaderAndAttributes) {
  netlink::Request req(RTM_GETROUTE, /*dump=*/false);
  req.header<rtmsg>().rtm_family = AF_INET;
  const uint8_t dst[4] = {10, 1, 2, 3};
  req.put(RTA_DST, dst, sizeof(dst));
  const nlmsghdr* nlh = req.message();
  EXPECT_EQ(nlh->nlmsg_type, RTM_GETROUTE);
  EXPECT_EQ(nlh->nlmsg_flags, NLM_F_REQUEST);
  EXPECT_EQ(nlh->nlmsg_len, NLMSG_LENGTH(sizeof(rtmsg)) + RTA_LENGTH(sizeof(dst)));
  const auto* p = static_cast<const char*>(mnl_nlmsg_get_payload(nlh));
  const std::vector<char> payload(p, p + mnl_nlmsg_get_payload_len(nlh));
  const auto attrs = netlink::attributes(payload, sizeof(rtmsg));
  ASSERT_EQ(attrs.count(RTA_DST), 1u);
  EXPECT_EQ(netlink::attr_ip(attrs.at(RTA_DST))->str(), "10.1.2.3");
}

TEST(NetlinkTest, ADumpAndASingleAnswerComeBack) {
  netlink::Request links(RTM_GETLINK, /*dump=*/true);
  links.header<ifinfomsg>().ifi_family = AF_UNSPEC;
  bool lo = false;
  for (const auto& msg : netlink::ask(links, RTM_NEWLINK)) {
    const auto attrs = netlink::attributes(msg, sizeof(ifinfomsg));
    if (auto name = attrs.find(IFLA_IFNAME); name != attrs.end())
      lo = lo || std::string(name->second.data()) == "lo";
  }
  EXPECT_TRUE(lo) << "no lo in the link dump";

  netlink::Request route(RTM_GETROUTE, /*dump=*/false);
  route.header<rtmsg>().rtm_family = AF_INET;
  const uint8_t loopback[4] = {127, 0, 0, 1};
  route.put(RTA_DST, loopback, sizeof(loopback));
  const auto answer = netlink::ask(route, RTM_NEWROUTE);
  ASSERT_EQ(answer.size(), 1u);
  const auto attrs = netlink::attributes(answer[0], sizeof(rtmsg));
  ASSERT_EQ(attrs.count(RTA_OIF), 1u);
  EXPECT_EQ(netlink::attr_as<int>(attrs.at(RTA_OIF)), static_cast<int>(if_nametoindex("lo")));
}

TEST(NetlinkTest, TheKernelsErrorIsThrown) {
  netlink::Request link(RTM_GETLINK, /*dump=*/false);
  link.header<ifinfomsg>().ifi_index = 0x7ffffff0;  // no such interface
  try {
    netlink::ask(link, RTM_NEWLINK);
    FAIL() << "no error for a link that does not exist";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), std::strerror(ENODEV));
  }
}

}  // namespace
}  // namespace ballast
