"""Ballast's end-to-end harness for pytest (tests/e2e/test_*.py).

world.py      the topology: namespaces, bridge, veth links (pyroute2)
fleet.py      a fleet of balancers behind an ECMP router, each with BIRD
              (the shipped docs/fleet/ configs): test_fleet_ecmp.py's world
processes.py  processes the tests start: ballastd and its CLI, backend servers,
              clients (batch(): n new flows)
configs.py    ballastd configs from a few facts; VIP names (vip_key, VIP_TCP)
state.py      ballastd's state read back: backend rows and polls with
              deadlines, `ballast stats` rows, the change log
continuity.py traffic and watches that must not notice an event: held flows,
              streams, the XDP program id, what a restart must adopt
frames.py     raw Ethernet frames: well-formed, tagged and malformed
counters.py   what the tests measure: reason counters, link counters, sniffers
checks.py     assertions shared by the suites (shares, counters, wait_until)
api.py        the control API spoken directly, for loops of requests
maps.py       pinned maps read and written through bpftool
verdicts.py   the PASS/FAIL/SKIP lines tests/run-all.sh counts

tests/e2e/conftest.py turns them into fixtures. docs/testing.md says how
the pieces fit and how to add a test.
"""
