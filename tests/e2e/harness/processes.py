"""Processes an end-to-end test starts, each stopped on every exit path.

Ballastd: the daemon in the lb's namespace (nsenter: bpffs pins stay the
machine's), its config, its CLI, its removal (`ballastd --cleanup`).
ballast(): the CLI as an operator types it (status and text, not JSON).
Backends: tests/e2e/backend_server.py in each backend's namespace.
client(): tests/e2e/client.py in the client's namespace, its JSON report;
batch(): n requests, each a new flow.
Interrupted: SIGTERM or SIGINT turned into an exception, so that a script
on the harness (bench/*.py) tears down its world as on Ctrl-C.
"""

import contextlib
import json
import logging
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

log = logging.getLogger("e2e")

E2E_DIR = pathlib.Path(__file__).resolve().parent.parent
# Debian's interpreter (pytest and pyroute2 come from Debian's packages), the
# one running the suite.
PYTHON = sys.executable
READY_TIMEOUT_S = 30
STOP_TIMEOUT_S = 10
# batch(): after this many failed requests the rest are not sent (a broken
# path would otherwise cost one timeout per request).
GIVE_UP = 50


class Failure(AssertionError):
    """A test's own failure, with a message that says what was wrong."""


def stop(proc, timeout_s=5):
    """SIGTERM, then SIGKILL after @timeout_s; returns the exit status."""
    if proc.poll() is not None:
        return proc.returncode
    proc.terminate()
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        log.info("pid %d ignored SIGTERM for %ss: SIGKILL", proc.pid, timeout_s)
        proc.kill()
        return proc.wait()


def wait_for_line(path, word, proc, timeout_s, what):
    """Waits until the file @path holds the word @word while @proc runs."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = path.read_text(errors="replace") if path.exists() else ""
        if re.search(rf"\b{word}\b", text):
            return
        if proc.poll() is not None:
            raise Failure(f"{what} exited (status {proc.returncode}) before '{word}': "
                          + " | ".join(text.splitlines()[-3:]))
        if time.monotonic() > deadline:
            raise Failure(f"{what} not '{word}' after {timeout_s}s: "
                          + " | ".join(text.splitlines()[-3:]))
        time.sleep(0.05)


class Backends:
    """An HTTP (port 80) and UDP (port 9000, each VIP) server per backend,
    each logging what it served (backend_server.py)."""

    def __init__(self, world, state_dir):
        self.world = world
        self.state_dir = state_dir
        self.procs = {}

    def start_all(self):
        for be in self.world.backends:
            self.spawn(be)
        for be in self.world.backends:
            wait_for_line(self._log(be), "ready", self.procs[be.name], 10, f"backend {be.name}")

    def _log(self, be):
        return self.state_dir / f"{be.name}.server.log"

    def served_log(self, be):
        return self.state_dir / f"{be.name}.served"

    def spawn(self, be):
        """Starts @be's server without waiting for it. Its health path, and its
        UDP health responder on its own address (UDP_CHECK_PORT), answer as
        control(be) says."""
        from .world import VIP1, VIP2, VIP6_1, VIP6_2, HTTP_PORT, UDP_PORT, UDP_CHECK_PORT
        self.served_log(be).write_text("")
        vips = [VIP1, VIP2] + ([VIP6_1, VIP6_2] if self.world.ipv6 else [])
        argv = be.exec_argv([PYTHON, str(E2E_DIR / "backend_server.py"), "--name", be.name,
                             "--http-port", str(HTTP_PORT), "--udp-port", str(UDP_PORT),
                             *[a for v in vips for a in ("--vip", v)],
                             "--udp-check-addr", be.ip, "--udp-check-port", str(UDP_CHECK_PORT),
                             "--served-log", str(self.served_log(be)),
                             "--control", str(self.control(be))])
        with open(self._log(be), "w") as out:
            self.procs[be.name] = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                                   start_new_session=True)

    def start(self, be):
        """Starts @be's server and waits until it serves."""
        self.spawn(be)
        wait_for_line(self._log(be), "ready", self.procs[be.name], 10, f"backend {be.name}")

    def kill(self, be):
        """SIGKILL to @be's server: its ports refuse connections (TCP answers
        RST, UDP port unreachable) from then on."""
        proc = self.procs[be.name]
        proc.kill()
        proc.wait(5)
        log.info("backend %s killed (pid %d)", be.name, proc.pid)

    def alive(self, be):
        proc = self.procs.get(be.name)
        return proc is not None and proc.poll() is None

    def set_health(self, be, word):
        """How @be's health path and UDP health responder answer from their
        next check on: up, sick, flap, silent, closed (backend_server.py);
        VIP traffic is served throughout."""
        tmp = self.control(be).with_suffix(".tmp")
        tmp.write_text(word + "\n")
        tmp.replace(self.control(be))
        log.info("backend %s health path: %s", be.name, word)

    def control(self, be):
        """The file whose word sets @be's health answers (backend_server.py:
        up, sick, flap, ...); absent means up."""
        return self.state_dir / f"{be.name}.control"

    def served(self, be, proto, vip, port):
        """Requests @be served for vip:port/proto since the last reset."""
        prefix = f"{proto} {vip}:{port} "
        return sum(1 for line in self.served_log(be).read_text().splitlines()
                   if line.startswith(prefix))

    def reset_counts(self):
        for be in self.world.backends:
            self.served_log(be).write_text("")

    def restore(self):
        """Every backend's server running, its health answers up again
        (between tests: a test may kill a server or make it sick)."""
        for be in self.world.backends:
            self.control(be).unlink(missing_ok=True)
            if not self.alive(be):
                self.start(be)
                log.info("backend %s restarted", be.name)

    def close(self):
        for proc in self.procs.values():
            stop(proc)


class Ballastd:
    """One ballastd in the lb's namespace, with this run's pin dir and socket."""

    def __init__(self, world, state_dir, build_dir):
        self.world = world
        self.build_dir = build_dir
        self.state_dir = state_dir
        self.pin_dir = f"/sys/fs/bpf/ballast-{world.prefix}"
        self.socket = str(state_dir / "ballast.sock")
        self.log_path = state_dir / "ballastd.log"
        self.proc = None

    def write_config(self, text):
        path = self.state_dir / "ballast.yaml"
        path.write_text(text)
        return path

    def start(self, config_text, *extra_args):
        config = self.write_config(config_text)
        if self.log_path.exists():   # a restart keeps the earlier log
            with open(self.state_dir / "ballastd.earlier.log", "a") as earlier:
                earlier.write(self.log_path.read_text(errors="replace"))
        with open(self.log_path, "w") as out:
            self.proc = subprocess.Popen(
                self.world.lb.exec_argv([f"{self.build_dir}/ballastd", "--config", str(config),
                                         "--socket", self.socket, "--pin-dir", self.pin_dir,
                                         *extra_args]),
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_line(self.log_path, "ready", self.proc, READY_TIMEOUT_S, "ballastd")
        log.info("ballastd ready (pid %d)", self.proc.pid)

    def stop(self):
        if self.proc is None:
            return None
        rc = stop(self.proc, STOP_TIMEOUT_S)
        self.proc = None
        log.info("ballastd stopped (status %s)", rc)
        return rc

    def remove(self):
        """`ballastd --cleanup`: Ballast off the lb's eth0, its pins gone (a
        stopped ballastd leaves both in place, forwarding)."""
        run_ok(self.world.lb.exec_argv([f"{self.build_dir}/ballastd", "--cleanup", "--interface",
                                        "eth0", "--pin-dir", self.pin_dir]))

    def close(self):
        """After a test, pass or fail: the next starts from a bare interface."""
        self.stop()
        with contextlib.suppress(Failure):
            self.remove()
        if os.path.exists(self.pin_dir):
            log.info("pins left in %s: removing them", self.pin_dir)
            subprocess.run(["rm", "-rf", self.pin_dir])
        for leftover in pathlib.Path("/run/ballast").glob(f"ballastd-pins-*{self.world.prefix}*"):
            leftover.unlink(missing_ok=True)

    def cli(self, *args):
        """`ballast ARGS -o json` against this ballastd: the parsed reply.
        Fails the test, naming the command, when the CLI fails."""
        argv = [f"{self.build_dir}/ballast", *args, "--socket", self.socket, "-o", "json"]
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            raise Failure(f"ballast {' '.join(args)} exited {done.returncode}: "
                          + done.stderr.strip().replace("\n", " | "))
        return json.loads(done.stdout)

    def xdp_id(self):
        """The id of the XDP program on the lb's eth0, or None."""
        out = run_ok(self.world.lb.exec_argv(["ip", "-d", "link", "show", "dev", "eth0"]))
        found = re.search(r"prog/xdp id (\d+)", out)
        return int(found.group(1)) if found else None

    def log_text(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def ballast(lb, *args, timeout_s=120):
    """`ballast ARGS` against @lb as an operator types it, no output format
    added: the finished process (its status, stdout and stderr are what the
    caller checks)."""
    return subprocess.run([f"{lb.build_dir}/ballast", *map(str, args), "--socket", lb.socket],
                          capture_output=True, text=True, timeout=timeout_s)


def sanitized(binary):
    """True when @binary was built with AddressSanitizer (make SANITIZE=1):
    it runs several times slower, which a test that bounds CPU allows for."""
    return "libasan" in subprocess.run(["ldd", str(binary)], capture_output=True,
                                       text=True).stdout


def run_ok(argv):
    """A command that must succeed: its stdout."""
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise Failure(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()[-300:]}")
    return done.stdout


def ballast_on(node, *args):
    """The CLI run inside @node's namespace (decap commands on a backend):
    its stdout, parsed as JSON when it is."""
    out = run_ok(node.exec_argv([f"{node.world.build_dir}/ballast", *map(str, args)]))
    try:
        return json.loads(out)
    except ValueError:
        return out


def decap_attach_all(world, *extra):
    """`ballast decap attach eth0` on every backend; each must then list
    VIP1 (on its lo) among the VIPs it decapsulates for."""
    from .world import VIP1
    for be in world.backends:
        ballast_on(be, "decap", "attach", "eth0", *extra)
        status = ballast_on(be, "decap", "status", "eth0", "-o", "json")
        if VIP1 not in json.dumps(status):
            raise Failure(f"decap status on {be.name} does not list {VIP1}: {status}")


def decapped(node):
    """Packets the decap program on @node's eth0 stripped so far."""
    status = ballast_on(node, "decap", "status", "eth0", "-o", "json")
    return next(c["packets"] for c in status["counters"] if c["reason"] == "decapped")


class SourcePorts:
    """Blocks of source ports for client.py --sport-base, below the kernel's
    ephemeral range (32768 up), so that no request of a batch shares a
    5-tuple with another (the kernel's own choice reuses ports, and a
    reused port is the same flow: the requests would not be independent
    samples of the balancer's distribution). Cycles through 1024..32767."""

    FIRST, END = 1024, 32768

    def __init__(self):
        self.next = self.FIRST

    def block(self, n):
        if self.next + n > self.END:
            self.next = self.FIRST
        base, self.next = self.next, self.next + n
        return base


SOURCE_PORTS = SourcePorts()


def client(world, *args, timeout_s=600):
    """tests/e2e/client.py in the client's namespace, run to its end: its
    JSON report."""
    argv = world.client.exec_argv([PYTHON, str(E2E_DIR / "client.py"), *map(str, args)])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise Failure(f"client.py {' '.join(map(str, args))} exited {done.returncode}: "
                      + done.stderr.strip()[-300:])
    return json.loads(done.stdout)


def batch(world, n, *extra, proto="tcp", address=None, port=None, give_up_after=GIVE_UP):
    """@n requests to @address (VIP1) at @port (HTTP_PORT for tcp, UDP_PORT
    for udp), each from its own source port (SOURCE_PORTS): @n new flows.
    After @give_up_after failures the rest are not sent (None: every one
    is, for a batch that is meant to fail). More client.py arguments in
    @extra ("--timeout", 1): client.py's report."""
    from .world import HTTP_PORT, UDP_PORT, VIP1
    args = ["--vip", address or VIP1, "--port", port or (HTTP_PORT if proto == "tcp" else UDP_PORT),
            "--proto", proto, "-n", n, "--sport-base", SOURCE_PORTS.block(n)]
    if give_up_after is not None:
        args += ["--give-up-after", give_up_after]
    return client(world, *args, *extra)


class BackgroundClient:
    """client.py running while the test does something else: stop() sends it
    SIGTERM (stream and hold modes end cleanly with their report)."""

    def __init__(self, world, *args):
        argv = world.client.exec_argv([PYTHON, str(E2E_DIR / "client.py"), *map(str, args)])
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)

    def stop(self, timeout_s=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=timeout_s)
        if self.proc.returncode != 0:
            raise Failure(f"client.py exited {self.proc.returncode}: {err.strip()[-300:]}")
        return json.loads(out)

    def close(self):
        stop(self.proc)


class Interrupted(BaseException):
    """SIGTERM or SIGINT: unwinds like Ctrl-C (past `except Exception`), so
    that every teardown runs."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def interrupted(signum, frame):
    """The signal handler that raises Interrupted (signal.signal(SIGTERM,
    interrupted))."""
    raise Interrupted(signum)
