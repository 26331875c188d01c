#!/usr/bin/env bash
#
# demo.sh: Ballast in one screen. Builds a private network (a client, the
# balancer and three backends on one bridge, all in network namespaces),
# starts ballastd with weights 1:1:2, sends 1,000 real HTTP requests to the
# VIP and prints, per backend, the weight, the share it should get, the share
# the client saw, and what the balancer itself counted. Then removes
# everything it made.
#
# Usage: scripts/demo.sh [BUILD_DIR]     (as root; BUILD_DIR defaults to build)
set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../tests/e2e/lib.sh"

readonly REQUESTS=1000
readonly WEIGHTS=(1 1 2)
readonly SKEW_WINDOW=60s

# print_table CLIENT_JSON STATS_JSON: the operator's view.
print_table() {
	"$PYTHON" - "$1" "$2" "$VIP1:$HTTP_PORT/tcp" "${BE_NAMES[*]}" "${BE_IPS[*]}" \
		"${WEIGHTS[*]}" <<'PY'
import json, sys
client = json.load(open(sys.argv[1])); stats = json.load(open(sys.argv[2]))
vip = sys.argv[3]
names, addrs, weights = (a.split() for a in sys.argv[4:7])
weights = [int(w) for w in weights]
v = next((v for v in stats["vips"] if v["vip"] == vip), {"backends": [], "new_flows": 0})
lb = {b["address"]: b for b in v["backends"]}
ok = client["ok"]

print(f"\nVIP {vip}: {ok} answered, {client['failed']} failed, "
      f"{client['elapsed_s']:.1f} s\n")
head = (f"{'backend':8} {'address':12} {'weight':>6} {'expected':>9} "
        f"{'client saw':>11} {'ballast new_flows':>18} {'skew':>6}")
print(head)
print("-" * len(head))
for name, addr, w in zip(names, addrs, weights):
    seen = client["by_backend"].get(name, 0)
    b = lb.get(addr, {})
    skew = b.get("skew")
    print(f"{name:8} {addr:12} {w:6} {w / sum(weights):9.1%} "
          f"{seen / ok if ok else 0:11.1%} {b.get('new_flows', '?'):>18} "
          f"{skew if skew is None else format(skew, '.2f'):>6}")
print("-" * len(head))
print(f"{'total':8} {'':12} {sum(weights):6} {1:9.1%} {1 if ok else 0:11.1%} "
      f"{v['new_flows']:>18}")
print("\nexpected = weight / total weight; client saw = answers from that "
      "backend / all answers;\nnew_flows = connections ballast sent there; "
      "skew = its observed share / expected share (1.00 = exact).")
PY
}

main() {
	local build=${1:-build}
	if [[ $EUID -ne 0 ]]; then
		echo "demo.sh: run as root (it creates network namespaces and attaches XDP)" >&2
		exit 1
	fi
	e2e_init "$build"
	e2e_setup
	echo "Network: client $CLIENT_IP -> VIP $VIP1 (routed via the balancer $LB_IP," \
		"XDP, L2 direct server return) -> backends ${BE_IPS[*]}," \
		"which answer the client directly."
	lb_write_config "$STATE_DIR/demo.yaml" "${WEIGHTS[@]}"
	# A window long enough to hold the whole demo's traffic.
	echo "skew: {window: $SKEW_WINDOW}" >>"$STATE_DIR/demo.yaml"
	echo "ballastd config:"
	sed 's/^/  /' "$STATE_DIR/demo.yaml"
	lb_start "$STATE_DIR/demo.yaml"
	client_run "$STATE_DIR/client.json" --vip "$VIP1" --port "$HTTP_PORT" \
		--proto tcp -n "$REQUESTS"
	lb_cli stats -o json >"$STATE_DIR/stats.json"
	print_table "$STATE_DIR/client.json" "$STATE_DIR/stats.json"
	sleep 1.2  # the next skew sample (one a second)
	echo
	echo "\$ ballast skew      (the last ${SKEW_WINDOW} of traffic against the weights)"
	lb_cli skew
	echo
	echo "\$ ballast top -n 1  (the live view; without -n it refreshes until Ctrl-C)"
	lb_cli top -n 1
	echo
	echo "\$ ballast audit     (ballastd checks itself; exit 1 on any error)"
	lb_cli audit || true
	echo
	echo "Prometheus metrics: curl http://127.0.0.1:9469/metrics inside the balancer's namespace:"
	lb_exec curl -s http://127.0.0.1:9469/metrics | grep -E '^ballast_(backend_skew_ratio|vip_skew_ratio)' |
		grep -v 'measure="bytes"' | sed 's/^/  /'
	lb_stop
	# The EXIT trap removes the namespaces, links, pins and processes.
}

main "$@"
