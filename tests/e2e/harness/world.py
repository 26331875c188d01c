"""The world a suite runs in: a private L2 segment of network namespaces.

    netns P-cl   client   eth0 10.231.0.2/24 ---+
    netns P-lb   ballastd eth0 10.231.0.3/24 ---+--- bridge P-br (netns P-sw),
    netns P-be1  backend  eth0 10.231.0.11/24 --+    one veth port per node
    netns P-be2  backend  eth0 10.231.0.12/24 --+    (P-cl, P-lb, P-be1, ...)
    netns P-be3  backend  eth0 10.231.0.13/24 --+
   (netns P-be4  ...      up to 9 backends: World(backends=N))
   (netns P-xx   extra nodes a suite adds: add_node)
   (netns P-yy   a node behind a second interface of the lb, on a veth of
                 its own rather than the bridge: add_routed_node)

With ipv6=True every node also has fd00:231::N/64 next to its IPv4 address
(client ::2, lb ::3, backends ::11...), backends hold VIP6_1 and VIP6_2 on
lo, and the client routes VIP6_RANGE via the lb. A test module picks its
world with a module-level WORLD = {"backends": 4, "ipv6": True}
(conftest.py).

The same plan as tests/e2e/lib.sh, so the two harnesses' tests read alike.
P is a per-run prefix carried by every namespace and link name: concurrent
runs never collide, and teardown deletes exactly what this run made. Every
link is created straight into its namespaces: nothing appears in the root
namespace. Built with pyroute2; the two things it has no call for (an XDP
object file on a link, ethtool offloads) go through ip(8) and ethtool(8).
"""

import contextlib
import logging
import os
import pathlib
import random
import subprocess

from pyroute2 import NetNS, netns
from pyroute2.netlink.rtnl.ndmsg import states as neigh_states

IFA_F_NODAD = 0x02      # (linux/if_addr.h)

log = logging.getLogger("e2e")

SUBNET_LEN = 24
CLIENT_IP = "10.231.0.2"
LB_IP = "10.231.0.3"
VIP_RANGE = "10.231.100.0/24"
VIP1 = "10.231.100.1"
VIP2 = "10.231.100.2"
HTTP_PORT = 80
UDP_PORT = 9000
UDP_CHECK_PORT = 9100      # each backend's UDP health responder, on its own address

SUBNET6_LEN = 64
CLIENT_IP6 = "fd00:231::2"
LB_IP6 = "fd00:231::3"
VIP6_RANGE = "fd00:231:100::/64"
VIP6_1 = "fd00:231:100::1"
VIP6_2 = "fd00:231:100::2"


def backend_ip(i):
    """be1 -> 10.231.0.11 (i counts from 1, as the names do)."""
    return f"10.231.0.1{i}"


def backend_ip6(i):
    """be1 -> fd00:231::11."""
    return f"fd00:231::1{i}"


@contextlib.contextmanager
def inside(ns_name):
    """Runs the block with this thread in namespace @ns_name: a socket
    created there stays in that namespace after the block, and /proc/sys/net
    opened there is that namespace's."""
    netns.pushns(ns_name)
    try:
        yield
    finally:
        netns.popns()


def sysctl(ns_name, values):
    """Sets sysctls inside @ns_name: {"net.ipv4.conf.all.arp_ignore": 1}."""
    with inside(ns_name):
        for key, value in values.items():
            with open("/proc/sys/" + key.replace(".", "/"), "w", encoding="ascii") as f:
                f.write(f"{value}\n")


def run(argv, **kwargs):
    """A command that must succeed; its output is returned."""
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs).stdout


class Node:
    """One namespace with its eth0 on the bridge."""

    def __init__(self, world, name, ip, ip6=None):
        self.world = world
        self.name = name          # short: cl, lb, be1
        self.ns = f"{world.prefix}-{name}"
        self.port = f"{world.prefix}-{name}"   # its veth port on the bridge
        self.ip = ip
        self.ip6 = ip6            # only in a world with ipv6=True
        self.mac = None
        self.behind = None        # (node, ifname) it hangs off: add_routed_node

    def exec_argv(self, argv):
        """@argv run inside this node's namespace (network only: nsenter
        leaves /sys and bpffs alone, so pins made inside are the machine's)."""
        return ["nsenter", f"--net=/run/netns/{self.ns}", "--"] + list(argv)

    def run(self, argv, **kwargs):
        return run(self.exec_argv(argv), **kwargs)

    def link_stats(self, ifname="eth0"):
        """rx/tx packet counters of one of this node's links."""
        with NetNS(self.ns) as ipr:
            link = ipr.get_links(ipr.link_lookup(ifname=ifname)[0])[0]
            stats = link.get_attr("IFLA_STATS64")
            return {"rx_packets": stats["rx_packets"], "tx_packets": stats["tx_packets"],
                    "rx_dropped": stats["rx_dropped"], "tx_dropped": stats["tx_dropped"]}


class World:
    """Namespaces, bridge and links; torn down by close() on every exit path
    (the fixture's finalizer, which pytest runs after a failure, a Ctrl-C or
    the SIGTERM the conftest turns into one)."""

    def __init__(self, build_dir, backends=3, ipv6=False):
        if not 1 <= backends <= 9:
            raise ValueError(f"backends={backends}: 1 to 9 (addresses 10.231.0.11 to .19)")
        self.build_dir = build_dir
        self.ipv6 = ipv6
        self.prefix = self._free_prefix()
        self.sw = f"{self.prefix}-sw"
        self.bridge = f"{self.prefix}-br"
        six = (lambda a: a) if ipv6 else (lambda a: None)
        self.client = Node(self, "cl", CLIENT_IP, six(CLIENT_IP6))
        self.lb = Node(self, "lb", LB_IP, six(LB_IP6))
        self.backends = [Node(self, f"be{i}", backend_ip(i), six(backend_ip6(i)))
                         for i in range(1, backends + 1)]
        self.extra = []
        self.namespaces = []

    @staticmethod
    def _free_prefix():
        # Short: link names are "P-be1" and must fit IFNAMSIZ (15).
        while True:
            prefix = "bp%05x" % random.getrandbits(20)
            if not os.path.exists(f"/run/netns/{prefix}-sw"):
                return prefix

    @property
    def nodes(self):
        return [self.client, self.lb] + self.backends + self.extra

    def _add_ns(self, name):
        netns.create(name)
        self.namespaces.append(name)
        if self.ipv6:
            # IPv6, but quiet: no router solicitations, no DAD (addresses
            # usable at once), no router advertisements taken. Set before
            # eth0 exists, so that it inherits the defaults.
            sysctl(name, {f"net.ipv6.conf.{c}.{k}": 0 for c in ("all", "default")
                          for k in ("accept_ra", "router_solicitations", "accept_dad",
                                    "dad_transmits")})
        else:
            # Quiet: no IPv6 (router solicitations, DAD) to add noise to the
            # balancer's counters.
            sysctl(name, {"net.ipv6.conf.all.disable_ipv6": 1,
                          "net.ipv6.conf.default.disable_ipv6": 1})

    def build(self):
        self._add_ns(self.sw)
        with NetNS(self.sw) as sw:
            # With IPv6: neighbour discovery is multicast, and the bridge
            # floods it to every port rather than follow what MLD snooping
            # learnt (or failed to).
            sw.link("add", ifname=self.bridge, kind="bridge",
                    **({"br_mcast_snooping": 0} if self.ipv6 else {}))
            sw.link("set", index=sw.link_lookup(ifname=self.bridge)[0], state="up")
        # The bridge's netfilter hook (built into this kernel, on by default)
        # validates IPv4 headers and drops what it dislikes: a malformed
        # frame sent at the balancer must reach it, so the segment is a
        # plain switch.
        sysctl(self.sw, {"net.bridge.bridge-nf-call-iptables": 0,
                         "net.bridge.bridge-nf-call-ip6tables": 0,
                         "net.bridge.bridge-nf-call-arptables": 0})
        for node in [self.client, self.lb] + self.backends:
            self._plug(node)
        self.pass_on_lb_port()
        # veth leaves checksums unfinished with TX offload on, and a native
        # XDP program on the way loses that state (shared/README.md): the
        # client's frames cross one.
        self.client.run(["ethtool", "-K", "eth0", "tx", "off"])
        with NetNS(self.client.ns) as cl:
            cl.route("add", dst=VIP_RANGE, gateway=LB_IP)
            if self.ipv6:
                cl.route("add", dst=VIP6_RANGE, gateway=LB_IP6)
        for be in self.backends:
            with NetNS(be.ns) as ipr:
                lo = ipr.link_lookup(ifname="lo")[0]
                for vip in (VIP1, VIP2):
                    ipr.addr("add", index=lo, address=vip, prefixlen=32)
                # An address on lo is never answered for in neighbour
                # discovery on eth0: IPv6 needs no arp_ignore.
                for vip in ((VIP6_1, VIP6_2) if self.ipv6 else ()):
                    ipr.addr("add", index=lo, address=vip, prefixlen=128,
                             flags=IFA_F_NODAD)
            # Answer for the VIPs, never ARP for them.
            sysctl(be.ns, {"net.ipv4.conf.all.arp_ignore": 1,
                           "net.ipv4.conf.all.arp_announce": 2})
        log.info("world %s up: client %s, lb %s, backends %s", self.prefix, CLIENT_IP, LB_IP,
                 " ".join(b.ip for b in self.backends))
        return self

    def pass_on_lb_port(self):
        """XDP_TX on veth only delivers when the peer runs an XDP program
        (shared/README.md): the lb's bridge port gets a pass program."""
        run(["ip", "-n", self.sw, "link", "set", "dev", self.lb.port, "xdpdrv",
             "obj", f"{self.build_dir}/bpf/xdp_pass.bpf.o", "sec", "xdp"])

    def _plug(self, node):
        self._add_ns(node.ns)
        self.plug_eth0(node)

    def plug_eth0(self, node, mac=None):
        """@node's eth0 and its bridge port, made straight in the switch's and
        the node's namespaces (so close() removes them with the namespaces),
        with the node's addresses; hardware address @mac when given (an
        interface made again keeps its own), else the kernel's."""
        with NetNS(self.sw) as sw:
            sw.link("add", ifname=node.port, kind="veth",
                    peer={"ifname": "eth0", "net_ns_fd": node.ns})
            port = sw.link_lookup(ifname=node.port)[0]
            sw.link("set", index=port, master=sw.link_lookup(ifname=self.bridge)[0])
            sw.link("set", index=port, state="up")
        with NetNS(node.ns) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            eth0 = ipr.link_lookup(ifname="eth0")[0]
            if mac:
                ipr.link("set", index=eth0, address=mac)
            if node.ip:
                ipr.addr("add", index=eth0, address=node.ip, prefixlen=SUBNET_LEN)
            if node.ip6:
                ipr.addr("add", index=eth0, address=node.ip6, prefixlen=SUBNET6_LEN,
                         flags=IFA_F_NODAD)
            ipr.link("set", index=eth0, state="up")
            node.mac = ipr.get_links(eth0)[0].get_attr("IFLA_ADDRESS")

    def add_node(self, name, ip=None, ip6=None):
        """One more namespace on the bridge (a traffic source of a suite's
        own); torn down with the rest."""
        node = Node(self, name, ip, ip6)
        self.extra.append(node)
        self._plug(node)
        return node

    def add_routed_node(self, name, ip, gateway_ip, on=None, ifname="eth1", prefixlen=SUBNET_LEN):
        """One more namespace, off the bridge: its eth0 is a veth straight to
        a new interface @ifname of @on (default: the lb), a host behind a
        second interface of it. @on's end gets @gateway_ip, the node's eth0
        @ip and a default route via @gateway_ip. Not in self.nodes (no bridge
        port); torn down with the rest, or before by remove_routed_node()."""
        on = on or self.lb
        node = Node(self, name, ip)
        node.port = None
        node.behind = (on, ifname)
        self._add_ns(node.ns)
        with NetNS(on.ns) as ipr:
            ipr.link("add", ifname=ifname, kind="veth",
                     peer={"ifname": "eth0", "net_ns_fd": node.ns})
            link = ipr.link_lookup(ifname=ifname)[0]
            ipr.addr("add", index=link, address=gateway_ip, prefixlen=prefixlen)
            ipr.link("set", index=link, state="up")
        with NetNS(node.ns) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            eth0 = ipr.link_lookup(ifname="eth0")[0]
            ipr.addr("add", index=eth0, address=ip, prefixlen=prefixlen)
            ipr.link("set", index=eth0, state="up")
            ipr.route("add", dst="default", gateway=gateway_ip)
            node.mac = ipr.get_links(eth0)[0].get_attr("IFLA_ADDRESS")
        return node

    def remove_routed_node(self, node):
        """Deletes a node add_routed_node made, with its link on the other
        side (at once: a namespace's devices outlive `netns.remove` by a
        moment), after killing what runs in it."""
        on, ifname = node.behind
        with NetNS(on.ns) as ipr:
            for index in ipr.link_lookup(ifname=ifname):
                ipr.link("del", index=index)
        for pid in subprocess.run(["ip", "netns", "pids", node.ns], capture_output=True,
                                  text=True).stdout.split():
            log.info("process %s left in %s: killing it", pid, node.ns)
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), 9)
        netns.remove(node.ns)
        self.namespaces.remove(node.ns)

    def static_neighbours(self):
        """Every node learns every other's MAC now, permanently: no ARP on
        the segment from here on (a test that counts every frame the
        balancer sees wants no frame it did not send)."""
        for node in self.nodes:
            with NetNS(node.ns) as ipr:
                eth0 = ipr.link_lookup(ifname="eth0")[0]
                for other in self.nodes:
                    if other is node or not other.ip:
                        continue
                    ipr.neigh("replace", dst=other.ip, lladdr=other.mac, ifindex=eth0,
                              state=neigh_states["permanent"])

    def reset_xdp(self):
        """Between tests: no decap program left on a backend, nothing left
        on the lb's eth0 (a test that failed with ballastd stopped would
        leave its program there)."""
        for node in self.backends + [self.lb]:
            subprocess.run(["ip", "-n", node.ns, "link", "set", "dev", "eth0", "xdp", "off"],
                           capture_output=True)

    def static_forwarding(self):
        """The bridge knows every node's port now, permanently: a unicast
        frame never floods to the other ports, even to a node that has not
        sent anything yet."""
        for node in self.nodes:
            run(["bridge", "-n", self.sw, "fdb", "replace", node.mac, "dev", node.port,
                 "master", "static"])

    def close(self):
        # ballastd's interface locks are named by the lb namespace's inode.
        with contextlib.suppress(OSError):
            ino = os.stat(f"/run/netns/{self.lb.ns}").st_ino
            for lock in pathlib.Path("/run/ballast").glob(f"ballastd-net{ino}-*.lock"):
                lock.unlink(missing_ok=True)
        for name in reversed(self.namespaces):
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                                  text=True).stdout.split()
            for pid in pids:
                # A process left inside would keep the namespace alive.
                log.info("process %s left in %s: killing it", pid, name)
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
            with contextlib.suppress(Exception):
                netns.remove(name)
        self.namespaces = []
