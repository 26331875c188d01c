"""pytest set-up for Ballast's end-to-end suites (tests/e2e/test_*.py).

Run by tests/run-all.sh as `python3 -m pytest -p no:terminal -p
harness.verdicts FILE --build-dir BUILD`: harness/verdicts.py prints the
lines every Ballast suite prints and run-all.sh counts, one per test.

Fixtures:
  build_dir   absolute path of the build (ballastd, ballast, bpf/*.o)
  world       the topology and backend servers, one per test file
              (harness/world.py), torn down on every exit path; a module
              sets its shape with WORLD = {"backends": 4, "ipv6": True}
  lb          a ballastd for one test (harness/processes.py): the test
              starts it with a config; after the test it is stopped and
              Ballast is removed from the interface
"""

import logging
import os
import pathlib
import subprocess
import tempfile

import pytest

from harness.processes import Backends, Ballastd
from harness.world import World

log = logging.getLogger("e2e")


def pytest_addoption(parser):
    parser.addoption("--build-dir", default="build", help="the build directory (make's BUILD)")


def pytest_configure(config):
    # run-all.sh loads the verdict lines with -p harness.verdicts; by hand
    # they come from here.
    if not config.pluginmanager.has_plugin("harness.verdicts"):
        config.pluginmanager.import_plugin("harness.verdicts")


@pytest.fixture(scope="session")
def build_dir(request):
    build = pathlib.Path(request.config.getoption("--build-dir"))
    if not build.is_absolute():
        build = pathlib.Path(request.config.rootpath).parent.parent / build \
            if not build.exists() else build.resolve()
    for needed in ("ballastd", "ballast", "bpf/xdp_pass.bpf.o"):
        if not (build / needed).exists():
            pytest.fail(f"{build / needed} missing (run make first)", pytrace=False)
    return build


@pytest.fixture(scope="module")
def state_dir():
    path = pathlib.Path(tempfile.mkdtemp(prefix="ballast-e2e-"))
    yield path
    if os.environ.get("E2E_KEEP_STATE") == "1":
        log.info("state kept in %s (E2E_KEEP_STATE=1)", path)
    else:
        subprocess.run(["rm", "-rf", str(path)])


@pytest.fixture(scope="module")
def world(request, build_dir, state_dir):
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, XDP)")
    if subprocess.run(["mountpoint", "-q", "/sys/fs/bpf"]).returncode != 0:
        subprocess.run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"], check=True)
    w = World(str(build_dir), **getattr(request.module, "WORLD", {}))
    backends = Backends(w, state_dir)
    try:
        w.build()
        backends.start_all()
        w.backend_servers = backends
        yield w
    finally:
        backends.close()
        w.close()


@pytest.fixture
def lb(world, state_dir, build_dir):
    daemon = Ballastd(world, state_dir, build_dir)
    try:
        yield daemon
    finally:
        daemon.close()
        world.reset_xdp()
        world.backend_servers.restore()
