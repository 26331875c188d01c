"""A fleet of balancers behind an ECMP router (issue #17): the world of
tests/e2e/test_fleet_ecmp.py.

    netns P-cl   client  eth0 10.232.1.2/24 ---- eth1 10.232.1.1/24  netns P-rt
                                                  router: BIRD, ECMP  eth0 10.231.0.1/24 --+
    netns P-lb1  ballastd + BIRD  eth0 10.231.0.4/24 --------------------------------------+
    netns P-lb2  ballastd + BIRD  eth0 10.231.0.5/24 --------------------------------------+-- bridge P-br
    netns P-lb3  ballastd + BIRD  eth0 10.231.0.6/24 --------------------------------------+   (netns P-sw)
    netns P-be1  backend eth0 10.231.0.11/24, VIPs on lo, default route via the router ----+
    netns P-be2, P-be3 ...                                                                 +

The client reaches the VIPs through the router only (its default route).
Each balancer's BIRD announces VIP1 to the router over eBGP; the router's
BIRD (dynamic neighbours: one config for any number of balancers) merges
the announcements into one multipath kernel route per VIP, and the kernel
spreads flows over the balancers by a layer-4 hash. A balancer sends each
flow on to a backend on the segment (dsr: it only rewrites the MAC); the
backend answers the client straight through the router.

Each balancer's ballastd announces: with `fleet: {announce: {table: 100}}`
it keeps a host route per servable VIP address in kernel table 100 (proto
177, host/kernel_routes.h), which its BIRD learns and exports; it removes
the route to withdraw (fewer than min_usable usable backends, `ballast
fleet leave`, the program detached, `ballastd --cleanup`).

Both BIRD configs are the shipped ones (docs/fleet/bird-*.conf), copied
unchanged next to a site file of `define`s this harness writes.

Names carry World's per-run prefix; FleetWorld.close() (World's) deletes
every namespace and kills what runs in them, on every exit path.
"""

import json
import logging
import pathlib
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request

from pyroute2 import NetNS

from .conntable import flow_ways
from .processes import READY_TIMEOUT_S, Backends, Ballastd, Failure, run_ok, stop, wait_for_line
from .world import HTTP_PORT, VIP1, VIP2, Node, World, inside, sysctl

log = logging.getLogger("e2e")

ROUTER_IP = "10.231.0.1"                 # the router on the shared segment
ROUTER_CLIENT_SIDE_IP = "10.232.1.1"     # the router on the client's own link
FLEET_CLIENT_IP = "10.232.1.2"
CLIENT_LINK_LEN = 24
BALANCER_RANGE = "10.231.0.0/24"         # where the router accepts BGP sessions from
VIP_PREFIXES = "10.231.100.0/24{32,32}"  # what the router accepts as a VIP (host routes)
ROUTER_AS = 65000
BALANCER_AS = 65001
VIP_TABLE = 100          # the kernel table ballastd's VIP routes go to (issue #17)
VIP_ROUTE_PROTO = "177"  # ballastd's routes (host/kernel_routes.h); the shipped BIRD
                         # config does not filter on it: the table is ballastd's alone
HOLD_TIME_S = 3          # BGP hold time of both shipped configs
METRICS_PORT = 9469

BIRD = "/usr/sbin/bird"
BIRDC = "/usr/sbin/birdc"
SHIPPED = pathlib.Path(__file__).resolve().parents[3] / "docs" / "fleet"
SITE_FILE = "ballast-site.conf"          # the name the shipped configs include


def balancer_ip(i):
    """lb1 -> 10.231.0.4 (.2 and .3 are World's client and lb, unused here)."""
    return f"10.231.0.{3 + i}"


# --- The topology ---------------------------------------------------------------


class FleetWorld(World):
    """World's segment and backends, with a router in front of @balancers
    balancer namespaces in place of World's one lb, and the client behind
    the router. self.lb is lb1, for World's methods that want one."""

    def __init__(self, build_dir, backends=3, balancers=3):
        super().__init__(build_dir, backends=backends)
        self.router = Node(self, "rt", ROUTER_IP)
        self.balancers = [Node(self, f"lb{i}", balancer_ip(i)) for i in range(1, balancers + 1)]
        self.lb = self.balancers[0]

    @property
    def nodes(self):
        """The nodes on the bridge (the client is not: it hangs off the
        router)."""
        return [self.router] + self.balancers + self.backends + self.extra

    def build(self):
        self._segment()
        for node in [self.router] + self.balancers + self.backends:
            self._plug(node)
        self._router()
        self._balancers()
        self._backends()
        # A balancer that dies with its link down must be a black hole until
        # the router drops it: with learnt entries the bridge would forget
        # its port and flood its frames to every port, and the other
        # balancers (whose XDP program does not look at the destination MAC)
        # would forward them, hiding what the router's failover does.
        self.static_forwarding()
        log.info("fleet %s up: router %s, balancers %s, backends %s, client %s", self.prefix,
                 ROUTER_IP, " ".join(b.ip for b in self.balancers),
                 " ".join(b.ip for b in self.backends), self.client.ip)
        return self

    def _segment(self):
        """The switch namespace and its bridge, a plain switch (as World's)."""
        self._add_ns(self.sw)
        with NetNS(self.sw) as sw:
            sw.link("add", ifname=self.bridge, kind="bridge")
            sw.link("set", index=sw.link_lookup(ifname=self.bridge)[0], state="up")
        sysctl(self.sw, {"net.bridge.bridge-nf-call-iptables": 0,
                         "net.bridge.bridge-nf-call-arptables": 0})

    def _router(self):
        """Forwarding with layer-4 ECMP hashing (addresses and ports: one
        client's flows spread over the balancers), and the client on a link
        of its own behind it."""
        sysctl(self.router.ns, {"net.ipv4.ip_forward": 1,
                                "net.ipv4.fib_multipath_hash_policy": 1})
        self.client = self.add_routed_node("cl", FLEET_CLIENT_IP, ROUTER_CLIENT_SIDE_IP,
                                           on=self.router, ifname="eth1",
                                           prefixlen=CLIENT_LINK_LEN)
        # veth leaves checksums unfinished with TX offload on, and the
        # balancer's native XDP program loses that state (shared/README.md):
        # off on every veth whose frames reach a balancer: the client's (the
        # router forwards its frames as they came) and the router's segment
        # side (its own BGP to the balancers).
        self.client.run(["ethtool", "-K", "eth0", "tx", "off"])
        self.router.run(["ethtool", "-K", "eth0", "tx", "off"])

    def _balancers(self):
        """Each balancer's bridge port gets a pass program (XDP_TX on veth
        delivers only then, shared/README.md); its own frames (BGP, to the
        router through that program) leave with finished checksums."""
        for node in self.balancers:
            run_ok(["ip", "-n", self.sw, "link", "set", "dev", node.port, "xdpdrv",
                    "obj", f"{self.build_dir}/bpf/xdp_pass.bpf.o", "sec", "xdp"])
            node.run(["ethtool", "-K", "eth0", "tx", "off"])

    def _backends(self):
        """The VIPs on lo, answered for but never ARPed for (as World's),
        and the router as the way back to the client: the answers skip the
        balancers (direct server return). Each backend's bridge port gets a
        pass program too: the decap program's second chance sends frames
        back out with XDP_TX."""
        for be in self.backends:
            run_ok(["ip", "-n", self.sw, "link", "set", "dev", be.port, "xdpdrv",
                    "obj", f"{self.build_dir}/bpf/xdp_pass.bpf.o", "sec", "xdp"])
            with NetNS(be.ns) as ipr:
                lo = ipr.link_lookup(ifname="lo")[0]
                for vip in (VIP1, VIP2):
                    ipr.addr("add", index=lo, address=vip, prefixlen=32)
                ipr.route("add", dst="default", gateway=ROUTER_IP)
            sysctl(be.ns, {"net.ipv4.conf.all.arp_ignore": 1,
                           "net.ipv4.conf.all.arp_announce": 2})

    def reset_xdp(self):
        for node in self.backends + self.balancers:
            subprocess.run(["ip", "-n", node.ns, "link", "set", "dev", "eth0", "xdp", "off"],
                           capture_output=True)


# --- BIRD --------------------------------------------------------------------------


def site_file(constants):
    """BIRD `define`s, one per line: {"BALLAST_LOCAL_AS": 65001} ->
    'define BALLAST_LOCAL_AS = 65001;'."""
    return "".join(f"define {name} = {value};\n" for name, value in constants.items())


class Bird:
    """One BIRD in @node's namespace, in the foreground (its pid is ours to
    kill), with the shipped config @shipped copied unchanged into @conf_dir
    next to the site file of @constants. Its log goes to its stderr (bird -d:
    the shipped configs log nowhere else, and turn on no protocol debug), kept
    in conf_dir/bird.log."""

    def __init__(self, node, conf_dir, shipped, constants):
        self.node = node
        self.dir = pathlib.Path(conf_dir)
        self.shipped = pathlib.Path(shipped)
        self.constants = constants
        self.config = self.dir / self.shipped.name
        self.socket = self.dir / "bird.ctl"
        self.log_path = self.dir / "bird.log"
        self.proc = None

    def write_config(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.shipped, self.config)
        (self.dir / SITE_FILE).write_text(site_file(self.constants))
        # Parsed only: a constant the config needs and the site file lacks
        # (or one BIRD rejects where it is used) fails here, by name.
        run_ok([BIRD, "-p", "-c", str(self.config)])

    def start(self):
        self.write_config()
        self.socket.unlink(missing_ok=True)
        with open(self.log_path, "a") as out:
            self.proc = subprocess.Popen(
                self.node.exec_argv([BIRD, "-d", "-c", str(self.config), "-s", str(self.socket),
                                     "-P", str(self.dir / "bird.pid")]),
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while "Daemon is up and running" not in self._status():
            if self.proc.poll() is not None:
                raise Failure(f"BIRD in {self.node.name} exited {self.proc.returncode}: "
                              + self.log_tail())
            if time.monotonic() > deadline:
                raise Failure(f"BIRD in {self.node.name} not up after {READY_TIMEOUT_S} s")
            time.sleep(0.05)
        log.info("BIRD up in %s (pid %d)", self.node.name, self.proc.pid)

    def _status(self):
        if not self.socket.exists():
            return ""
        return subprocess.run([BIRDC, "-s", str(self.socket), "show", "status"],
                              capture_output=True, text=True).stdout

    def birdc(self, *command):
        """A birdc command's output ("" when BIRD is not running)."""
        if self.proc is None or self.proc.poll() is not None:
            return ""
        return subprocess.run([BIRDC, "-s", str(self.socket), *command], capture_output=True,
                              text=True, timeout=10).stdout

    def kill(self):
        """SIGKILL: no BGP notification, nothing cleaned up."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
            log.info("BIRD in %s killed (pid %d)", self.node.name, self.proc.pid)

    def stop(self):
        """SIGTERM: BIRD closes its sessions with a notification (the peer
        drops the routes at once) and exits."""
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def log_tail(self, lines=5):
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return " | ".join(text.splitlines()[-lines:])


class Frr:
    """FRR (zebra and bgpd, in the foreground: their pids are ours to kill)
    as a balancer's BGP speaker instead of BIRD, in @node's namespace, with
    the shipped docs/fleet/frr-balancer.conf whose capitalised placeholders
    are replaced by @values (FRR has no include or constants). Runs as user
    frr (its vty sockets need group frrvty), so its files are in a directory
    of its own under /tmp that frr may enter (the suite's state dir is
    root's alone); its log is copied to @log_path when it stops."""

    FRR_DIR = "/usr/lib/frr"

    def __init__(self, node, log_path, values):
        self.node = node
        self.dir = None
        self.values = values
        self.log_path = pathlib.Path(log_path)
        self.procs = []

    def write_config(self):
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix=f"ballast-frr-{self.node.name}-"))
        self.dir.chmod(0o755)
        self.config = self.dir / "frr.conf"
        text = (SHIPPED / "frr-balancer.conf").read_text()
        for name, value in self.values.items():
            text = text.replace(name, str(value))
        left = sorted(set(re.findall(r"\bBALLAST_[A-Z_]+\b", text)))
        if left:
            raise Failure(f"frr-balancer.conf placeholders without a value: {left}")
        self.config.write_text(text)
        shutil.chown(self.dir, "frr", "frr")

    def start(self):
        self.write_config()
        common = ["-f", str(self.config), "-z", str(self.dir / "zserv.api"),
                  "--vty_socket", str(self.dir), "-u", "frr", "-g", "frr"]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a") as out:
            for daemon, extra in (("zebra", []), ("bgpd", ["-p", "179"])):
                self.procs.append(subprocess.Popen(
                    self.node.exec_argv([f"{self.FRR_DIR}/{daemon}", *common, *extra,
                                         "-i", str(self.dir / f"{daemon}.pid")]),
                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
                # bgpd talks to zebra through its socket: zebra first.
                deadline = time.monotonic() + READY_TIMEOUT_S
                while not (self.dir / f"{daemon}.vty").exists():
                    if self.procs[-1].poll() is not None or time.monotonic() > deadline:
                        raise Failure(f"FRR {daemon} in {self.node.name} did not come up: "
                                      + self.log_tail())
                    time.sleep(0.05)
        log.info("FRR up in %s (pids %s)", self.node.name, [p.pid for p in self.procs])

    def summary(self):
        """bgpd's session states, for a failure message."""
        if not self.procs:
            return ""
        done = subprocess.run(self.node.exec_argv(["vtysh", "--vty_socket", str(self.dir), "-c",
                                                   "show bgp summary"]),
                              capture_output=True, text=True, timeout=10)
        return " ".join(done.stdout.split())[-300:]

    def kill(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait(5)

    def stop(self):
        """SIGTERM: bgpd closes its session with a notification, then exits;
        its directory goes."""
        for p in reversed(self.procs):
            stop(p)
        self.procs = []
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def log_tail(self, lines=5):
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return " | ".join(text.splitlines()[-lines:])


# --- A balancer ----------------------------------------------------------------


class BalancerDaemon(Ballastd):
    """processes.Ballastd for one balancer of the fleet: in its namespace,
    with its own state dir (config, log, control socket, lock files: --run-dir)
    and its own pin dir; `ballast ... -o json` through cli() as for the lb."""

    def __init__(self, world, node, state_dir, build_dir):
        state_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(world, state_dir, build_dir)
        self.node = node
        self.pin_dir = f"/sys/fs/bpf/ballast-{world.prefix}-{node.name}"
        self.run_dir = str(state_dir)

    def start(self, config_text, *extra_args):
        config = self.write_config(config_text)
        if self.log_path.exists():   # a restart keeps the earlier log, as Ballastd's
            with open(self.state_dir / "ballastd.earlier.log", "a") as earlier:
                earlier.write(self.log_path.read_text(errors="replace"))
        with open(self.log_path, "w") as out:
            self.proc = subprocess.Popen(
                self.node.exec_argv([f"{self.build_dir}/ballastd", "--config", str(config),
                                     "--socket", self.socket, "--pin-dir", self.pin_dir,
                                     "--run-dir", self.run_dir, *extra_args]),
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_line(self.log_path, "ready", self.proc, READY_TIMEOUT_S,
                      f"ballastd in {self.node.name}")
        log.info("ballastd ready in %s (pid %d)", self.node.name, self.proc.pid)

    def kill(self):
        """SIGKILL: the XDP program and the pinned maps stay (forwarding)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            log.info("ballastd in %s killed (pid %d)", self.node.name, self.proc.pid)
            self.proc = None

    def remove(self):
        run_ok(self.node.exec_argv([f"{self.build_dir}/ballastd", "--cleanup", "--interface",
                                    "eth0", "--pin-dir", self.pin_dir,
                                    "--run-dir", self.run_dir]))

    def xdp_id(self):
        out = run_ok(self.node.exec_argv(["ip", "-d", "link", "show", "dev", "eth0"]))
        found = re.search(r"prog/xdp id (\d+)", out)
        return int(found.group(1)) if found else None


def vip_flows(pin_dir, client, vip=VIP1, port=HTTP_PORT, sports=range(1024, 65536)):
    """{client source port: backend id} of the TCP flows from @client (any
    of @sports) to @vip:@port that have a way in the table pinned under
    @pin_dir. The table keeps no keys: each candidate flow is looked up
    (harness/conntable.py)."""
    return {sport: way.backend_id
            for sport, way in flow_ways(pin_dir, client, sports, vip, port).items()}


class Balancer:
    """One balancer: its namespace (node), its ballastd (daemon) and its
    BIRD (bird), started and stopped together; crash() takes it away as a
    dead host would go."""

    def __init__(self, world, node, state_dir, build_dir):
        self.node = node
        self.name = node.name
        self.ip = node.ip
        self.daemon = BalancerDaemon(world, node, state_dir / node.name, build_dir)
        # Its BGP speaker: BIRD, or FRR after use_frr().
        self.bird = Bird(node, state_dir / node.name / "bird", SHIPPED / "bird-balancer.conf", {
            "BALLAST_ROUTER_ID": node.ip,
            "BALLAST_LOCAL_ADDRESS": node.ip,
            "BALLAST_LOCAL_AS": BALANCER_AS,
            "BALLAST_ROUTER_ADDRESS": ROUTER_IP,
            "BALLAST_ROUTER_AS": ROUTER_AS,
            "BALLAST_VIP_TABLE": VIP_TABLE,
            "BALLAST_VIPS": f"[ {VIP_PREFIXES} ]",
        })
        self.backend_ids = {}
        self.state_dir = state_dir

    def use_frr(self):
        """FRR (docs/fleet/frr-balancer.conf) speaks BGP for this balancer
        from its next start; returns the BIRD it replaces (to put back)."""
        bird = self.bird
        self.bird = Frr(self.node, self.state_dir / self.name / "frr.log", {
            "BALLAST_ROUTER_ID": self.ip,
            "BALLAST_LOCAL_AS": BALANCER_AS,
            "BALLAST_ROUTER_ADDRESS": ROUTER_IP,
            "BALLAST_ROUTER_AS": ROUTER_AS,
            "BALLAST_VIP_TABLE": VIP_TABLE,
            "BALLAST_VIP_RANGE": VIP_PREFIXES.split("{")[0],
        })
        return bird

    def config(self, vips_text, min_usable=1):
        """A ballastd config: @vips_text (harness.configs.config()) with the
        metrics on this balancer's own address, announcing into VIP_TABLE."""
        return (vips_text + f"metrics: {{listen: {self.ip}:{METRICS_PORT}}}\n"
                f"fleet: {{announce: {{table: {VIP_TABLE}, min_usable: {min_usable}}}}}\n")

    def start(self, vips_text, vips=(VIP1,), min_usable=1):
        """ballastd with @vips_text, announcing; once it has announced
        @vips, BIRD (which connects to the router and exports them)."""
        self.daemon.start(self.config(vips_text, min_usable))
        # Every backend's MAC resolved before BIRD draws traffic here: a
        # table built while one was missing would place the first flows
        # by a table that changes a moment later (a change of its own,
        # which the tests of moves and second chance must not meet).
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not all(b["mac"] for b in self.cli("backend", "list")):
            if time.monotonic() > deadline:
                raise Failure(f"{self.name}: backends without a MAC after {READY_TIMEOUT_S} s: "
                              f"{self.cli('backend', 'list')}")
            time.sleep(0.1)
        # Read now: flows() maps the connection table's ids to addresses
        # after a crash too, when there is no ballastd to ask.
        self.backend_ids = {b["id"]: b["address"] for b in self.cli("backend", "list")
                            if b["vip"] == f"{VIP1}:{HTTP_PORT}/tcp"}
        self.wait_routes(sorted(vips), "ballastd's first announce")
        self.bird.start()

    def routes(self):
        """Destinations of ballastd's routes in VIP_TABLE: what BIRD exports."""
        out = self.node.run(["ip", "-j", "route", "show", "table", str(VIP_TABLE)])
        return sorted(r["dst"] for r in json.loads(out or "[]")
                      if str(r.get("protocol")) == VIP_ROUTE_PROTO)

    def wait_routes(self, want, what, timeout_s=10):
        """Waits until routes() is @want (ballastd looks every second)."""
        deadline = time.monotonic() + timeout_s
        while True:
            late = time.monotonic() > deadline
            have = self.routes()
            if have == want:
                return
            if late:
                raise Failure(f"{self.name}: routes {have} in table {VIP_TABLE}, not {want} "
                              f"({what}); ballastd: {self.daemon.log_text()[-400:]}")
            time.sleep(0.1)

    def link_down(self):
        """eth0 down: nothing in or out any more, not even the frames its
        XDP program would still forward (ballastd never detaches it)."""
        self.node.run(["ip", "link", "set", "dev", "eth0", "down"])

    def link_up(self):
        self.node.run(["ip", "link", "set", "dev", "eth0", "up"])

    def crash(self):
        """As a host that dies: its link goes (no word to the router, which
        waits out the BGP hold time), then ballastd and BIRD are killed -9."""
        self.link_down()
        self.daemon.kill()
        self.bird.kill()
        log.info("%s crashed: link down, ballastd and BIRD killed -9", self.name)

    def cli(self, *args):
        """`ballast ARGS -o json` against this balancer's ballastd."""
        return self.daemon.cli(*args)

    def metrics(self):
        """This balancer's /metrics, at its own address (fetched from inside
        its namespace)."""
        with inside(self.node.ns):
            url = f"http://{self.ip}:{METRICS_PORT}/metrics"
            return urllib.request.urlopen(url, timeout=10).read().decode()

    def flows(self):
        """{client source port: backend address} of this balancer's
        connection-table entries for VIP1:80/tcp (readable after a crash:
        the pins outlive ballastd)."""
        return {sport: self.backend_ids.get(bid, f"id {bid}")
                for sport, bid in vip_flows(self.daemon.pin_dir, FLEET_CLIENT_IP).items()}

    def close(self):
        """After a test, pass or fail: BIRD and ballastd stopped, Ballast off
        eth0, its pins and announced routes gone (`ballastd --cleanup`),
        eth0 up again."""
        try:
            self.bird.stop()
        finally:
            try:
                self.daemon.close()
            finally:
                self.link_up()


# --- The fleet -------------------------------------------------------------------


class Fleet:
    """The world (FleetWorld), the backend servers, the router's BIRD and a
    Balancer per balancer namespace. build() and close() are the module's;
    start() and stop_balancers() each test's."""

    def __init__(self, build_dir, state_dir, backends=3, balancers=3):
        self.world = FleetWorld(str(build_dir), backends=backends, balancers=balancers)
        self.state_dir = state_dir
        self.servers = Backends(self.world, state_dir)
        self.world.backend_servers = self.servers
        self.router_bird = Bird(self.world.router, state_dir / "rt" / "bird",
                                SHIPPED / "bird-router.conf", {
                                    "BALLAST_ROUTER_ID": ROUTER_IP,
                                    "BALLAST_LOCAL_ADDRESS": ROUTER_IP,
                                    "BALLAST_LOCAL_AS": ROUTER_AS,
                                    "BALLAST_BALANCERS": BALANCER_RANGE,
                                    "BALLAST_BALANCER_AS": BALANCER_AS,
                                    "BALLAST_VIPS": f"[ {VIP_PREFIXES} ]",
                                })
        self.balancers = [Balancer(self.world, node, state_dir, build_dir)
                          for node in self.world.balancers]

    def build(self):
        self.world.build()
        self.servers.start_all()
        self.router_bird.start()
        return self

    def balancer(self, name):
        return next(b for b in self.balancers if b.name == name)

    def start(self, vips_text, vips=(VIP1,), min_usable=1):
        """Every balancer started with @vips_text (one text for all, or
        {name: text}) announcing with @min_usable; returns once the router
        spreads each of @vips over all of them."""
        for b in self.balancers:
            b.start(vips_text[b.name] if isinstance(vips_text, dict) else vips_text, vips,
                    min_usable)
        for vip in vips:
            took = self.wait_next_hops(vip, [b.ip for b in self.balancers], time.monotonic(),
                                       timeout_s=30)
            log.info("router: %s over %d balancers %.2f s after the last BIRD started", vip,
                     len(self.balancers), took)

    def stop_balancers(self):
        """Every balancer closed (Balancer.close), even when one fails to;
        then the test fails naming what did."""
        errors = []
        for b in self.balancers:
            try:
                b.close()
            except Exception as exc:  # pylint: disable=broad-except
                errors.append(f"{b.name}: {exc}")
        self.world.reset_xdp()
        self.servers.restore()
        if errors:
            raise Failure("stopping the balancers: " + "; ".join(errors))

    def next_hops(self, vip):
        """The router's next hops for @vip/32 (gateway addresses, sorted),
        from `ip -j route show`: [] without a route, one for a plain route,
        one per `nexthop via` of a multipath route."""
        out = self.world.router.run(["ip", "-j", "route", "show", f"{vip}/32"])
        hops = []
        for route in json.loads(out or "[]"):
            if "nexthops" in route:
                hops += [h["gateway"] for h in route["nexthops"] if "gateway" in h]
            elif "gateway" in route:
                hops.append(route["gateway"])
        return sorted(hops)

    def wait_next_hops(self, vip, want, since, timeout_s, step_s=0.05):
        """Polls next_hops(@vip) every @step_s until it is @want (a list of
        addresses, or a count); returns the seconds from @since
        (time.monotonic()) to the start of the poll that saw it. One poll
        always starts after the deadline (since + @timeout_s), so a state
        reached in time is seen however late this thread ran; none that
        sees it: the test fails, with what the router and the BIRDs say."""
        matches = (lambda h: len(h) == want) if isinstance(want, int) else \
            (lambda h: h == sorted(want))
        deadline = since + timeout_s
        while True:
            started = time.monotonic()
            hops = self.next_hops(vip)
            if matches(hops):
                return started - since
            if started > deadline:
                raise Failure(f"router: {vip} via {hops or 'nothing'}, not {want}, "
                              f"{started - since:.2f} s after the event (limit {timeout_s} s); "
                              + self.bgp_summary())
            time.sleep(step_s)

    def bgp_summary(self):
        """What each BIRD says of its BGP sessions, for a failure message."""
        parts = []
        for name, bird in [("rt", self.router_bird)] + [(b.name, b.bird) for b in self.balancers]:
            if isinstance(bird, Frr):
                parts.append(f"{name}: FRR {bird.summary()}")
                continue
            rows = [line for line in bird.birdc("show", "protocols").splitlines()
                    if " BGP " in line]
            parts.append(f"{name}: " + ("; ".join(" ".join(r.split()) for r in rows)
                                        or "no BIRD / no session"))
        return " | ".join(parts)

    def flows(self, balancers=None):
        """{balancer name: {client source port: backend address}}."""
        return {b.name: b.flows() for b in balancers or self.balancers}

    def close(self):
        """Everything gone, whatever fails on the way: the namespaces last
        (World.close kills any process left in them)."""
        try:
            for b in self.balancers:
                try:
                    b.close()
                except Exception as exc:  # pylint: disable=broad-except
                    log.info("%s close: %s", b.name, exc)
            self.router_bird.stop()
            self.servers.close()
        finally:
            self.world.close()


def moved_flows(before, after):
    """Flows a balancer holds @after (Fleet.flows) that another held
    @before: {sport: (from, to)}. A flow in no table before is not counted
    (it was never placed), nor one still on its first balancer."""
    first = {sport: name for name, flows in before.items() for sport in flows}
    return {sport: (first[sport], name) for name, flows in after.items() for sport in flows
            if sport in first and first[sport] != name}

