"""ballastd as a systemd service (issue #15). The unit
(scripts/systemd/ballastd.service) passes `systemd-analyze verify` and
scores "OK" or better in `systemd-analyze security --offline=yes`;
ballastd serves traffic as a non-root user holding exactly the
capabilities the unit grants, while without any one of them it fails to
start and leaves nothing behind; and it speaks sd_notify as Type=notify
wants (ready after attach, reload, watchdog, stopping). systemd is not PID
1 on the test machines, so the unit is checked, its capability set proven
with setpriv as the unit would run it, and sd_notify read by a listener of
ours on NOTIFY_SOCKET (notify_listen.py).
"""

import json
import logging
import os
import pathlib
import re
import shutil
import signal
import subprocess
import time

import pytest

from harness.checks import assert_all_ok, wait_until
from harness.configs import VIP_TCP, standard_config
from harness.processes import E2E_DIR, PYTHON, Failure, batch, stop

log = logging.getLogger("e2e")

UNIT = E2E_DIR.parent.parent / "scripts" / "systemd" / "ballastd.service"
NOBODY = 65534
# linux/capability.h, in bit order: CAP_CHOWN is bit 0.
CAPABILITIES = (
    "chown dac_override dac_read_search fowner fsetid kill setgid setuid setpcap "
    "linux_immutable net_bind_service net_broadcast net_admin net_raw ipc_lock ipc_owner "
    "sys_module sys_rawio sys_chroot sys_ptrace sys_pacct sys_admin sys_boot sys_nice "
    "sys_resource sys_time sys_tty_config mknod lease audit_write audit_control setfcap "
    "mac_override mac_admin syslog wake_alarm block_suspend audit_read perfmon bpf "
    "checkpoint_restore").split()
WATCHDOG_USEC = 2_000_000


def unit_text():
    return UNIT.read_text()


def unit_copy(state_dir, build_dir):
    """The unit with ExecStart pointing at this build (verify checks that
    the command exists), in the state dir."""
    path = state_dir / "ballastd.service"
    path.write_text(unit_text().replace("/usr/sbin/ballastd", f"{build_dir}/ballastd"))
    return path


def unit_caps():
    """The unit's CapabilityBoundingSet, lower case without CAP_: ["bpf", ...]."""
    found = re.search(r"^CapabilityBoundingSet=(.*)$", unit_text(), re.M)
    assert found, "no CapabilityBoundingSet in the unit"
    return [c.removeprefix("CAP_").lower() for c in found.group(1).split()]


def cap_mask(caps):
    unknown = [c for c in caps if c not in CAPABILITIES]
    assert not unknown, f"capabilities not in this test's table: {unknown}"
    return sum(1 << CAPABILITIES.index(c) for c in caps)


def needs_systemd_analyze():
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")


def test_unit_verifies(state_dir, build_dir):
    """`systemd-analyze verify` accepts the unit without a word; it is
    Type=notify, reloads with SIGHUP, restarts on failure, and has no
    ExecStop (a stop must leave the program forwarding)."""
    needs_systemd_analyze()
    done = subprocess.run(["systemd-analyze", "verify", str(unit_copy(state_dir, build_dir))],
                          capture_output=True, text=True)
    said = (done.stdout + done.stderr).strip()
    assert done.returncode == 0 and not said, \
        f"systemd-analyze verify: exit {done.returncode}: {said}"
    text = unit_text()
    assert re.search(r"^Type=notify$", text, re.M), "the unit is not Type=notify"
    assert re.search(r"^ExecReload=/bin/kill -HUP \$MAINPID$", text, re.M), \
        "ExecReload is not SIGHUP"
    assert re.search(r"^Restart=on-failure$", text, re.M), "no Restart=on-failure"
    assert not re.search(r"^ExecStop", text, re.M), \
        "an ExecStop would remove what a stop must leave"


def test_unit_exposure(state_dir, build_dir):
    """`systemd-analyze security --offline=yes` rates the unit's exposure
    2.5 or less ("OK" or better)."""
    needs_systemd_analyze()
    done = subprocess.run(["systemd-analyze", "security", "--offline=yes",
                           str(unit_copy(state_dir, build_dir))], capture_output=True, text=True)
    out = done.stdout + done.stderr
    found = re.search(r"Overall exposure level for [^:]*: ([0-9.]+) (\w+)", out)
    assert found, "no exposure level in: " + " | ".join(out.strip().splitlines()[-3:])
    log.info("systemd-analyze security --offline=yes: %s %s", found.group(1), found.group(2))
    assert float(found.group(1)) <= 2.5, \
        f"exposure {found.group(1)} {found.group(2)}, want 2.5 or less (OK)"


class AsNobody:
    """ballastd as user nobody with exactly the capabilities it is given
    (setpriv's bounding, inheritable and ambient sets), its pin and run
    directories owned by nobody as the unit's ExecStartPre and
    RuntimeDirectory make them, no read group. The lb fixture's ballastd
    object tracks it (lb.proc), so the fixture stops it after the test."""

    def __init__(self, world, lb, state_dir, build_dir):
        self.world, self.lb, self.build_dir = world, lb, build_dir
        self.run_dir = state_dir / "run-nobody"
        self.config = state_dir / "ballast.yaml"
        lb.socket = str(self.run_dir / "ballast.sock")
        state_dir.chmod(0o755)   # nobody reads the config and reaches the socket

    def start(self, caps, log_path):
        for d in (self.run_dir, pathlib.Path(self.lb.pin_dir)):
            d.mkdir(parents=True, exist_ok=True)
            os.chown(d, NOBODY, NOBODY)
        have = "-all," + ",".join(f"+{c}" for c in caps)
        argv = self.world.lb.exec_argv([
            "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
            f"--bounding-set={have}", f"--inh-caps={have}", f"--ambient-caps={have}",
            str(self.build_dir / "ballastd"), "--config", str(self.config),
            "--socket", self.lb.socket, "--pin-dir", self.lb.pin_dir,
            "--run-dir", str(self.run_dir), "--read-group", ""])
        self.lb.log_path = log_path
        with open(log_path, "w") as out:
            self.lb.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        return self.lb.proc

    def wait_ready(self, timeout_s=10):
        """True once it says "ready"; False when it exits first. Neither
        within @timeout_s: a failure."""
        proc, deadline = self.lb.proc, time.monotonic() + timeout_s
        while True:
            if re.search(r"\bready\b", self.lb.log_text()):
                return True
            if proc.poll() is not None:
                return False
            if time.monotonic() > deadline:
                raise Failure(f"ballastd as nobody neither ready nor gone after {timeout_s} s: "
                              + self.tail())
            time.sleep(0.05)

    def tail(self, n=3):
        return " | ".join(self.lb.log_text().splitlines()[-n:])


def cli_json(lb, build_dir, *args):
    """`ballast ARGS -o json`, parsed, whatever its exit status (audit
    exits non-zero when it finds an error)."""
    done = subprocess.run([str(build_dir / "ballast"), *args, "--socket", lb.socket, "-o", "json"],
                          capture_output=True, text=True)
    try:
        return json.loads(done.stdout)
    except ValueError:
        raise Failure(f"ballast {' '.join(args)} exited {done.returncode} without JSON: "
                      f"{done.stderr.strip()[-300:]}")


def proc_status(pid):
    return dict(line.split(":\t", 1) for line in
                pathlib.Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line)


def test_runs_with_exactly_the_units_capabilities(world, state_dir, lb, build_dir):
    """ballastd as user nobody with exactly the unit's capabilities (checked
    in /proc: every uid nobody, bounding set the unit's, effective set
    within it), with no neighbour entry known (it must solicit the MACs
    itself, unprivileged): it attaches and serves 100 connections, answers
    the CLI, takes a weight change; without CAP_SYS_ADMIN it cannot open a
    map by id, so what it reads back must come from what it installed or
    pinned itself: its audit finds no drift or ring-share problem and its
    loop counts no error. Restarted the same way, it adopts what it pinned
    and serves again. Without any one of the capabilities it fails to
    start (exit status not 0) and leaves no program on the interface and no
    pin behind: each is needed."""
    caps = unit_caps()
    mask = cap_mask(caps)
    nobody = AsNobody(world, lb, state_dir, build_dir)
    lb.write_config(standard_config(world))
    subprocess.run(["ip", "-n", world.lb.ns, "neigh", "flush", "all"], check=True)
    proc = nobody.start(caps, state_dir / "nobody.log")
    assert nobody.wait_ready(), f"ballastd as nobody with {caps}: {nobody.tail()}"
    status = proc_status(proc.pid)
    assert status["Uid"].split() == [str(NOBODY)] * 4, f"ballastd's uids: {status['Uid']}"
    assert int(status["CapBnd"], 16) == mask, \
        f"bounding set {status['CapBnd']}, want the unit's {mask:016x}"
    assert int(status["CapEff"], 16) & ~mask == 0, \
        f"effective set {status['CapEff']} beyond the unit's {mask:016x}"
    log.info("ballastd as uid %d with %s: %s", NOBODY, caps,
             next((line for line in lb.log_text().splitlines()
                   if "attached" in line or "replaced" in line), "?"))
    assert_all_ok(batch(world, 100), 100)
    lb.cli("status")
    lb.cli("backend", "set-weight", VIP_TCP, world.backends[0].ip, "2")
    audit = cli_json(lb, build_dir, "audit")
    time.sleep(2)   # two metrics refreshes and skew samples
    status = lb.cli("status")
    bad = [f"{f['check']}: {f['message']}" for f in audit["findings"]
           if f["check"] in ("drift", "ring-share")]
    bad += [f"{step}: {n} errors" for step, n in status["errors"].items() if n]
    assert not bad, f"as nobody with {caps}: " + "; ".join(bad)
    lb.stop()

    nobody.start(caps, state_dir / "nobody.restart.log")
    assert nobody.wait_ready(), f"a restart as nobody with {caps}: {nobody.tail()}"
    assert "adopt vip" in lb.log_text(), "the restart as nobody adopted nothing"
    assert_all_ok(batch(world, 100), 100)
    lb.stop()
    lb.remove()

    for cap in caps:
        less = [c for c in caps if c != cap]
        proc = nobody.start(less, state_dir / f"without-{cap}.log")
        if nobody.wait_ready():
            lb.stop()
            lb.remove()
            raise Failure(f"ballastd started without {cap}: the unit grants more than it needs")
        log.info("without %s: exit %d: %s", cap, proc.returncode, nobody.tail(1))
        lb.proc = None
        assert proc.returncode != 0, f"ballastd without {cap} exited 0 without being ready"
        assert lb.xdp_id() is None, f"a start that failed without {cap} left a program attached"
        pins = pathlib.Path(lb.pin_dir)
        left = sorted(p.name for p in pins.iterdir()) if pins.exists() else []
        assert not left, f"a start that failed without {cap} left pins: {left}"


def test_notifies_the_service_manager(world, state_dir, lb, build_dir, monkeypatch):
    """Type=notify, read by a listener on NOTIFY_SOCKET with WATCHDOG_USEC
    at 2 s: READY=1 only once the program is attached and the control socket
    answers (the listener checks both the moment it arrives); RELOADING=1
    then READY=1 around a SIGHUP; STOPPING=1 on SIGTERM, in exactly that
    order; and watchdog pings no further apart than WATCHDOG_USEC from
    READY to STOPPING (the manager kills a service that misses one)."""
    sock, out = state_dir / "notify.sock", state_dir / "notify.jsonl"
    stop_file = state_dir / "notify.stop"
    for f in (sock, out, stop_file):
        f.unlink(missing_ok=True)
    check = (f"ip -n {world.lb.ns} link show dev eth0 | grep -q xdp && "
             f"{build_dir}/ballast status --socket {lb.socket} >/dev/null")
    listener = subprocess.Popen([PYTHON, str(E2E_DIR / "notify_listen.py"), str(sock), str(out),
                                 check, "--stop-file", str(stop_file)], start_new_session=True)

    def messages():
        return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []

    def said(field):
        return [m for m in messages() if m["fields"].get(field) == "1"]

    try:
        wait_until("the listener's socket", sock.exists, 5)
        with monkeypatch.context() as env:
            env.setenv("NOTIFY_SOCKET", str(sock))
            env.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
            lb.start(standard_config(world))
        time.sleep(2.5)
        os.kill(lb.proc.pid, signal.SIGHUP)
        wait_until("READY=1 again after SIGHUP", lambda: len(said("READY")) >= 2, 5)
        time.sleep(1)
        lb.stop()
        wait_until("STOPPING=1", lambda: said("STOPPING"), 2)
    finally:
        stop_file.write_text("")
        try:
            listener.wait(5)
        except subprocess.TimeoutExpired:
            stop(listener)
    msgs = messages()
    log.info("notifications: %s", " ".join(
        f"{m['unix']:.2f}:{','.join(k for k, v in m['fields'].items() if v == '1')}" for m in msgs))
    seq = [k for m in msgs for k in ("READY", "RELOADING", "STOPPING") if m["fields"].get(k) == "1"]
    assert seq == ["READY", "RELOADING", "READY", "STOPPING"], \
        f"sequence {seq}, want READY RELOADING READY STOPPING"
    first = next(m for m in msgs if m["fields"].get("READY") == "1")
    assert first.get("check_rc") == 0, \
        "at READY=1 the program was not attached or the control socket did not answer"
    stopping = next(m["unix"] for m in msgs if m["fields"].get("STOPPING") == "1")
    times = [first["unix"]] + [m["unix"] for m in msgs if m["fields"].get("WATCHDOG") == "1"
                               and first["unix"] <= m["unix"] <= stopping] + [stopping]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(times) >= 4, f"fewer than 2 watchdog pings between READY and STOPPING: {times}"
    assert max(gaps) < WATCHDOG_USEC / 1e6, \
        f"a watchdog gap of {max(gaps):.2f} s, over WATCHDOG_USEC ({WATCHDOG_USEC / 1e6} s): {gaps}"
