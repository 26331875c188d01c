#!/usr/bin/env bash
# Installs the Debian 12 packages Ballast builds, tests and demos with.
# Idempotent: packages already present are not fetched again, and apt is not
# touched at all when everything is installed.
set -euo pipefail

PACKAGES=(
  # build
  make g++ pkg-config clang-14 llvm-14 libbpf-dev libxdp-dev bpftool
  libelf-dev zlib1g-dev linux-libc-dev
  # tests/fuzz: clang-14's libFuzzer and sanitizer runtimes
  libclang-rt-14-dev
  # userspace libraries
  libcli11-dev libyaml-cpp-dev nlohmann-json3-dev libgtest-dev libsystemd-dev libmnl-dev
  # run, test and demo (systemd: systemd-analyze checks the unit; util-linux:
  # setpriv runs ballastd with the unit's capabilities)
  iproute2 ethtool xdp-tools python3 curl procps systemd util-linux passwd
  # end-to-end suites written in pytest, their topology built with pyroute2
  python3-pytest python3-pyroute2
  # metrics and alert rules: promtool (make test checks both)
  prometheus
  # the fleet suite (tests/e2e/test_fleet_ecmp.py): BIRD 2 speaks BGP for
  # each balancer and for the ECMP router, with docs/fleet/bird-*.conf; one
  # balancer speaks it with FRR instead (docs/fleet/frr-balancer.conf)
  bird2 frr
  # make bench: the balancers compared against, load generators, plots
  haproxy nginx libnginx-mod-stream wrk iperf3 python3-matplotlib
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]} (run as root to install them)" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# haproxy, nginx, bird2 and frr are only run by the benches and tests, in their own
# namespaces: keep their packages from starting system services on the host
# (port 80, BGP) while they install, unless the machine already has its own
# policy.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
