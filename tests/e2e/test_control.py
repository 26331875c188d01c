"""ballastd's control socket and metrics endpoint against hostile and
unprivileged clients (issue #15), on the real daemon and its real sockets.
Fifty clients that hold the control socket open and drip a byte every
0.9 s delay nothing: a killed backend still leaves rotation within
interval x fall + 1 s and another client's `ballast status` answers at
once; a request nested 100,000 levels deep gets an error and ballastd
lives; a local user outside the read group can neither read nor change, a
read-group member reads but cannot change, and ballastd's refusal is
logged with the peer's uid and pid; holding more metrics connections than
the endpoint has slots does not lock Prometheus out.

What the daemon's code decides without a socket is GoogleTest's: strict
reading of a request's arguments and the CLI's typed replies
(CommandsTest in tests/unit/balancer_state_test.cpp), the socket's framing
limits (ApiTest in tests/unit/api_test.cpp), who may read and change
(ControlAccess in tests/unit/access_test.cpp).
"""

import grp
import json
import logging
import os
import pathlib
import re
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

from harness.checks import wait_until
from harness.configs import VIP_TCP, config, vip
from harness.processes import E2E_DIR, PYTHON, stop
from harness.state import backend_row, down_out_of_table, up_in_table, wait_backend
from harness.world import HTTP_PORT, inside

log = logging.getLogger("e2e")

# interval x fall = 1 s to take a dead backend out.
CHECK = "{type: http, path: /healthz, interval: 500ms, timeout: 300ms, rise: 2, fall: 2}"
NOBODY = 65534
METRICS = ("127.0.0.1", 9469)
METRICS_SLOTS = 64          # userspace/daemon/http_server.h: 64 connections at most
DRIP_DEADLINE_S = 5         # a control client's time to send a whole request (api.cpp)


def checked(world):
    """VIP1:80/tcp over be1..be3, weight 1 each, with a 500 ms x 2 HTTP check."""
    return config(vip(world, HTTP_PORT, check=CHECK))


def raw_request(path, data, timeout_s=10):
    """@data (bytes) sent on a new connection to the control socket: the
    line that comes back, parsed."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        s.connect(path)
        s.sendall(data)
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
    return json.loads(answer)


def test_dripping_clients_delay_nothing(world, state_dir, lb):
    """50 clients each holding a connection to the control socket and
    dripping one byte of a request that never ends every 0.9 s
    (control_drip.py; a connection the server closes is opened again, so 50
    half requests are pending throughout). Meanwhile `ballast status`
    answers ten times in under 1 s each (a server that served one client at
    a time would keep it waiting for a dripper's 5 s deadline), and be2's
    server, killed, is out of rotation (down, no table entries) within
    interval x fall + 1 s = 2 s: the health checks run on the same loop.
    The drippers run past their 5 s deadline, and every one of them must
    have been closed by the server at least once (a server without
    deadlines would hold them forever)."""
    lb.start(checked(world))
    for be in world.backends:
        wait_backend(lb, VIP_TCP, be.ip, "up", up_in_table, within=5)
    ready, stop_file = state_dir / "drip.ready", state_dir / "drip.stop"
    for f in (ready, stop_file):
        f.unlink(missing_ok=True)
    drip = subprocess.Popen([PYTHON, str(E2E_DIR / "control_drip.py"), lb.socket, "50",
                             "--interval", "0.9", "--stop-file", str(stop_file),
                             "--ready-file", str(ready)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        wait_until("the 50 dripping clients connected",
                   lambda: ready.exists() or drip.poll() is not None, 5)
        assert drip.poll() is None, f"control_drip.py exited {drip.returncode}"
        connected = time.monotonic()
        time.sleep(2)
        took = []
        for _ in range(10):
            t0 = time.monotonic()
            lb.cli("status")
            took.append(time.monotonic() - t0)
        log.info("ballast status while 50 clients drip: %s s", " ".join(f"{t:.3f}" for t in took))
        assert max(took) < 1.0, \
            f"ballast status took {max(took):.2f} s while 50 clients drip (want < 1 s): {took}"
        be2 = world.backends[1]
        world.backend_servers.kill(be2)
        wait_backend(lb, VIP_TCP, be2.ip, "down and out of the table", down_out_of_table,
                     within=2.0)
        # On past a dripper's deadline since it connected.
        time.sleep(max(0.0, connected + DRIP_DEADLINE_S + 1.5 - time.monotonic()))
    finally:
        stop_file.write_text("")
        try:
            out, err = drip.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            stop(drip)
            raise
    assert drip.returncode == 0, f"control_drip.py exited {drip.returncode}: {err.strip()[-300:]}"
    report = json.loads(out)
    log.info("drip: %s", report)
    assert report["closed_by_server"] >= 50, \
        f"the dripping clients were not all dropped at their deadline: {report}"
    assert lb.proc.poll() is None, "ballastd died"


def test_deep_nesting_answered(world, lb):
    """A request nested 100,000 levels deep (200 KB, under the 1 MiB limit)
    on ballastd's socket is answered with an error that names the 64-level
    limit, and ballastd goes on answering."""
    lb.start(checked(world))
    deep = b'{"command": "status", "args": ' + b"[" * 100000 + b"]" * 100000 + b"}\n"
    reply = raw_request(lb.socket, deep)
    assert reply.get("ok") is False, f"a 100k-deep request was not refused: {str(reply)[:200]}"
    assert "nested deeper than 64 levels" in reply.get("error", ""), \
        f"the refusal does not say why: {str(reply)[:200]}"
    assert lb.proc.poll() is None, "ballastd died on a deeply nested request"
    assert lb.cli("status")["interface"] == "eth0"


@pytest.fixture
def read_group(world):
    """A host group of this run's own (deleted after the test, after the
    lb fixture has stopped ballastd) and a socket directory anyone may
    traverse (the state directory is root's alone)."""
    name = f"{world.prefix}rd"
    subprocess.run(["groupadd", "--system", name], check=True)
    run_dir = pathlib.Path(f"/run/ballast-e2e-{world.prefix}")
    run_dir.mkdir(parents=True, exist_ok=True)
    run_dir.chmod(0o755)
    try:
        yield name, run_dir
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        subprocess.run(["groupdel", name])


def as_nobody(build_dir, sock, groups, *args):
    """The CLI as user nobody with exactly @groups (setpriv's options): its
    pid (setpriv execs it, so the pid ballastd sees), exit status and
    output."""
    proc = subprocess.Popen(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", *groups,
                             str(build_dir / "ballast"), *args, "--socket", sock],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=30)
    return proc.pid, proc.returncode, out


def test_readers_and_outsiders(world, read_group, lb, build_dir):
    """ballastd with --read-group G: its socket is mode 660, group G. User
    nobody outside G can neither read (the status) nor change (a weight):
    each is refused with "permission denied". In G, nobody reads the status
    and the backends, and a weight change is refused by ballastd with a
    message naming its uid and pid, logged by ballastd with the same uid
    and pid; the weight is unchanged."""
    group, run_dir = read_group
    lb.socket = str(run_dir / "ballast.sock")
    lb.start(checked(world), "--read-group", group)
    gid = grp.getgrnam(group).gr_gid
    st = os.stat(lb.socket)
    assert (oct(st.st_mode & 0o7777), st.st_gid) == (oct(0o660), gid), \
        f"socket mode {oct(st.st_mode & 0o7777)} group {st.st_gid}, want 0o660 group {gid}"

    outside = ["--clear-groups"]
    for args in (["status"], ["backend", "set-weight", VIP_TCP, world.backends[0].ip, "5"]):
        _, rc, out = as_nobody(build_dir, lb.socket, outside, *args)
        assert rc != 0, f"a user outside {group} ran `ballast {' '.join(args)}`: {out.strip()}"
        assert "permission denied" in out.lower(), \
            f"the outsider's refusal does not say why: {out.strip()}"

    member = [f"--groups={gid}"]
    _, rc, out = as_nobody(build_dir, lb.socket, member, "status", "-o", "json")
    assert rc == 0 and json.loads(out)["interface"] == "eth0", \
        f"a member of {group} could not read the status: {out.strip()}"
    _, rc, out = as_nobody(build_dir, lb.socket, member, "backend", "list", "-o", "json")
    assert rc == 0, f"a member of {group} could not list backends: {out.strip()}"
    assert sorted(b["address"] for b in json.loads(out)) == [be.ip for be in world.backends]

    pid, rc, out = as_nobody(build_dir, lb.socket, member, "backend", "set-weight", VIP_TCP,
                             world.backends[0].ip, "5")
    assert rc != 0, f"a member of {group} changed a weight: {out.strip()}"
    assert f"permission denied: uid {NOBODY} pid {pid} may not change ballastd" in out, \
        f"the reader's refusal does not name its uid {NOBODY} and pid {pid}: {out.strip()}"
    wait_until("the refusal in ballastd's log",
               lambda: f"control: refused 'backend.set_weight' from uid {NOBODY} pid {pid}"
               in lb.log_text(), 2)
    assert backend_row(lb, VIP_TCP, world.backends[0].ip)["weight"] == 1, \
        "the weight changed after a refusal"


def test_metrics_not_starved(world, lb):
    """200 connections to the metrics endpoint, each sending "GET" and no
    more, from the lb's namespace (the endpoint listens on 127.0.0.1): far
    more than its 64 slots. GET /metrics then answers 200 with the metrics,
    five times, each within 2 s (the held connections' 5 s deadline is not
    waited for). The oldest held connections made room: at least 200 - 64
    of them were closed by ballastd, so every slot really was taken."""
    lb.start(checked(world))
    held = []
    try:
        with inside(world.lb.ns):
            for _ in range(200):
                s = socket.create_connection(METRICS, timeout=5)
                s.send(b"GET")
                held.append(s)
            for _ in range(5):
                with urllib.request.urlopen(f"http://{METRICS[0]}:{METRICS[1]}/metrics",
                                            timeout=2) as answer:
                    code, body = answer.status, answer.read().decode(errors="replace")
                assert code == 200, f"GET /metrics answered {code} while 200 connections were held"
                assert re.search(r"^ballast_build_info", body, re.M), \
                    f"no metrics in the answer: {body[:200]}"
        dropped = 0
        for s in held:
            s.setblocking(False)
            try:
                dropped += s.recv(4096) == b""
            except BlockingIOError:
                pass
            except ConnectionResetError:
                dropped += 1
        log.info("%d of 200 held metrics connections closed by ballastd", dropped)
        assert dropped >= 200 - METRICS_SLOTS, \
            f"only {dropped} of 200 held connections were closed: were the slots ever all taken?"
    finally:
        for s in held:
            s.close()
