"""Ballast's end-to-end harness for pytest (tests/e2e/test_*.py).

world.py      the topology: namespaces, bridge, veth links (pyroute2)
processes.py  processes the tests start: ballastd, backend servers, clients
frames.py     raw Ethernet frames: well-formed, tagged and malformed
counters.py   what the tests measure: reason counters, link counters, sniffers
checks.py     assertions shared by the suites (shares, deadlines)
resilience.py test_resilience.py's streams, held flows, backend polls, change log

tests/e2e/conftest.py turns them into fixtures. docs/testing.md says how
the pieces fit and how to add a test.
"""
