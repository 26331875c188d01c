#!/usr/bin/env bash
#
# test_observability.sh: what Ballast tells an operator about where traffic
# goes (docs/observability.md), with real traffic between network namespaces
# (lib.sh): `ballast skew` against the weights and against what the backends
# counted, the Prometheus endpoint (checked by promtool), `ballast top`, and a
# Maglev table rewritten by hand with bpftool so that one backend owns every
# entry, which skew, ring share and the metrics must all name.
#
# Usage: tests/e2e/test_observability.sh [BUILD_DIR] [test_name...]
#   BUILD_DIR defaults to build; no names runs every test. Needs root.
# Prints PASS/FAIL/SKIP per test; exits 0 when none failed.
#
# Statistics: shares over n flows allow 5 binomial standard deviations,
# sqrt(p(1-p)/n).

# Test functions are called indirectly (run_tests), which shellcheck cannot see.
# shellcheck disable=SC2317
set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly VIP_TCP=$VIP1:$HTTP_PORT/tcp
readonly METRICS=http://127.0.0.1:9469
readonly N=600

# cfg_observed FILE W1 W2 W3 [SKEW]: VIP1:80/tcp over be1..be3 with those
# weights; SKEW is the skew mapping's inside (default: a window long enough
# to hold a whole batch, and a short hold).
cfg_observed() {
	local file=$1 skew=${5:-window: 60s, hold: 2s}
	{
		cfg_head
		echo "  - address: $VIP1"
		echo "    port: $HTTP_PORT"
		echo "    protocol: tcp"
		echo "    backends:"
		echo "      - {address: ${BE_IPS[0]}, weight: $2}"
		echo "      - {address: ${BE_IPS[1]}, weight: $3}"
		echo "      - {address: ${BE_IPS[2]}, weight: $4}"
		echo "skew: {$skew}"
	} >"$file"
}

# skew_json OUT: `ballast skew -o json` once the next sample is in (the
# daemon samples every second).
skew_json() {
	sleep 1.2
	lb_cli_ok skew -o json >"$1"
}

# scrape OUT [PATH]: GET the metrics endpoint from inside the lb namespace
# (it listens on the lb's loopback); prints the HTTP status.
scrape() {
	lb_exec curl -s -o "$1" -w '%{http_code}' "$METRICS${2:-/metrics}"
}

# The skew report matches the weights and the backends' own counts: each
# backend's window count is what it served (new flows may exceed by SYN
# retransmissions, 1%), shares are within 5 sigma of the weights, the
# window is confident and nobody is skewed.
test_skew_matches_weights() {
	cfg_observed "$STATE_DIR/cfg.yaml" 1 1 2
	lb_start "$STATE_DIR/cfg.yaml"
	backends_reset_counts
	tcp_batch "$STATE_DIR/tcp.json" "$N"
	assert_all_ok "$STATE_DIR/tcp.json" "$N"
	skew_json "$STATE_DIR/skew.json"
	local why
	if ! why=$("$PYTHON" - "$STATE_DIR/skew.json" "$VIP_TCP" \
		"$(backend_counts_json tcp "$VIP1" "$HTTP_PORT")" "$N" <<'PY'
import json, math, sys
s = json.load(open(sys.argv[1])); vip = sys.argv[2]
served = json.loads(sys.argv[3]); n = int(sys.argv[4])
v = next(v for v in s["vips"] if v["vip"] == vip)
bad = []
if not v["confident"]:
    bad.append(f"not confident with {v['window']['new_flows']} new flows")
if not n <= v["window"]["new_flows"] <= n * 1.01:
    bad.append(f"window holds {v['window']['new_flows']} new flows, client made {n}")
for b in v["backends"]:
    got, exp = b["window"]["new_flows"], served.get(b["address"], 0)
    if not exp <= got <= exp * 1.01 + 1:
        bad.append(f"{b['address']}: {got} new flows in the window, it served {exp}")
    p = b["expected_share"]; tol = 5 * math.sqrt(p * (1 - p) / n)
    if abs(b["observed_share"]["new_flows"] - p) > tol:
        bad.append(f"{b['address']}: share {b['observed_share']['new_flows']:.3f}, expected {p:.3f} +- {tol:.3f}")
    if b["skewed_seconds"] is not None:
        bad.append(f"{b['address']}: reported skewed ({b['skew']['new_flows']:.2f})")
    if abs(b["ring_share"] - p) > 0.01:
        bad.append(f"{b['address']}: ring share {b['ring_share']:.4f} vs expected {p:.4f}")
if [round(b["expected_share"], 3) for b in v["backends"]] != [0.25, 0.25, 0.5]:
    bad.append(f"expected shares {[b['expected_share'] for b in v['backends']]}")
if bad:
    print("; ".join(bad)); sys.exit(1)
PY
	); then
		fail "$why"
	fi
	# The table names the verdicts an operator reads.
	lb_cli_ok skew >"$STATE_DIR/skew.txt"
	grep -q 'confident' "$STATE_DIR/skew.txt" || fail "no 'confident' in: $(oneline <"$STATE_DIR/skew.txt")"
	[[ $(grep -c ' ok$' "$STATE_DIR/skew.txt") -eq 3 ]] ||
		fail "not every backend ok: $(oneline <"$STATE_DIR/skew.txt")"
}

# The endpoint serves the exposition format (promtool agrees), its counters
# equal the backends' counts, and other paths get the right status.
test_metrics_endpoint() {
	command -v promtool >/dev/null || skip "promtool not installed"
	cfg_observed "$STATE_DIR/cfg.yaml" 1 1 2
	lb_start "$STATE_DIR/cfg.yaml"
	backends_reset_counts
	tcp_batch "$STATE_DIR/tcp.json" 300
	assert_all_ok "$STATE_DIR/tcp.json" 300
	sleep 1.2
	local code
	code=$(scrape "$STATE_DIR/metrics.txt")
	[[ $code == 200 ]] || fail "GET /metrics: HTTP $code"
	if ! promtool check metrics <"$STATE_DIR/metrics.txt" >"$STATE_DIR/promtool.txt" 2>&1; then
		fail "promtool check metrics: $(oneline <"$STATE_DIR/promtool.txt")"
	fi
	local why
	if ! why=$("$PYTHON" - "$STATE_DIR/metrics.txt" "$VIP_TCP" \
		"$(backend_counts_json tcp "$VIP1" "$HTTP_PORT")" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read(); vip = sys.argv[2]; served = json.loads(sys.argv[3])
def value(name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(name + "{" + want + "}") or (not labels and line.startswith(name + " ")):
            return float(line.rsplit(" ", 1)[1])
    return None
bad = []
for addr in ("10.231.0.11", "10.231.0.12", "10.231.0.13"):
    got = value("ballast_backend_new_flows_total", vip=vip, backend=addr)
    exp = served.get(addr, 0)
    if got is None or not exp <= got <= exp * 1.01 + 1:
        bad.append(f"{addr}: new_flows_total {got}, served {exp}")
    if value("ballast_backend_health", vip=vip, backend=addr, state="up") != 1:
        bad.append(f"{addr}: health up not 1")
for name in ("ballast_build_info", "ballast_vip_skew_ratio", "ballast_backend_skew_ratio",
             "ballast_backend_ring_share_ratio", "ballast_xdp_packets_total",
             "ballast_audit_findings"):
    if f"\n# TYPE {name} " not in text:
        bad.append(f"no {name} family")
attached = [l for l in text.splitlines() if l.startswith("ballast_xdp_program_attached{")]
if not attached or not attached[0].endswith(" 1"):
    bad.append(f"program attached: {attached}")
if value("ballast_audit_findings", check="drift", severity="error") != 0:
    bad.append("drift findings on a clean start")
if value("ballast_vip_backends_usable", vip=vip) != 3:
    bad.append("usable backends not 3")
if bad:
    print("; ".join(bad)); sys.exit(1)
PY
	); then
		fail "$why"
	fi
	code=$(scrape "$STATE_DIR/nope.txt" /nope)
	[[ $code == 404 ]] || fail "GET /nope: HTTP $code, want 404"
	code=$(lb_exec curl -s -o /dev/null -w '%{http_code}' -X POST "$METRICS/metrics")
	[[ $code == 405 ]] || fail "POST /metrics: HTTP $code, want 405"
}

# `ballast top` prints one line per backend with a share bar and the skew.
test_top_frames() {
	cfg_observed "$STATE_DIR/cfg.yaml" 1 1 2
	lb_start "$STATE_DIR/cfg.yaml"
	tcp_batch "$STATE_DIR/tcp.json" 200
	sleep 1.2
	lb_cli_ok top -n 2 -i 200ms >"$STATE_DIR/top.txt"
	[[ $(grep -c '^ballast top ' "$STATE_DIR/top.txt") -eq 2 ]] ||
		fail "not 2 frames: $(oneline <"$STATE_DIR/top.txt")"
	local addr
	for addr in "${BE_IPS[@]}"; do
		[[ $(grep -cE "^  $addr +\[[# |]{30}\] " "$STATE_DIR/top.txt") -eq 2 ]] ||
			fail "no bar line for $addr in each frame: $(oneline <"$STATE_DIR/top.txt")"
	done
}

# rewrite_table VIP_ID BACKEND_ID: the VIP's live Maglev table replaced,
# with bpftool and behind ballastd's back, by one whose every entry is
# one backend slot. The table ballastd installed is frozen: writing it in
# place must fail, so the edit swaps in a map of its own.
rewrite_table() {
	local vip_id=$1 backend_id=$2 inner key value made=$PIN_DIR/handmade_table
	key=$(printf '%02x %02x %02x %02x' $((vip_id & 255)) $(((vip_id >> 8) & 255)) \
		$(((vip_id >> 16) & 255)) $((vip_id >> 24)))
	inner=$(bpftool -j map lookup pinned "$PIN_DIR/maglev_tables" key hex $key |
		"$PYTHON" -c '
import json, sys
v = json.load(sys.stdin)["value"]  # the inner map id: an integer, or its bytes (little endian)
print(v if isinstance(v, int) else int.from_bytes(bytes(int(x, 16) for x in v), "little"))')
	value=$(printf '%d %d %d %d' $((backend_id & 255)) $(((backend_id >> 8) & 255)) \
		$(((backend_id >> 16) & 255)) $((backend_id >> 24)))
	if bpftool map update id "$inner" key 0 0 0 0 value $value 2>/dev/null; then
		fail "ballastd's Maglev table (map id $inner) could be written in place: it is not frozen"
	fi
	bpftool map create "$made" type array key 4 value 4 entries 65537 name handmade ||
		fail "bpftool could not create a table"
	"$PYTHON" - "$made" "$value" >"$STATE_DIR/batch.txt" <<'PY'
import sys
made, value = sys.argv[1], sys.argv[2]
for i in range(65537):
    print(f"map update pinned {made} key {i & 255} {(i >> 8) & 255} {(i >> 16) & 255} 0 value {value}")
PY
	bpftool batch file "$STATE_DIR/batch.txt" >/dev/null
	bpftool map update pinned "$PIN_DIR/maglev_tables" key hex $key value pinned "$made" ||
		fail "bpftool could not swap the table in"
	rm -f "$made"
}

# A table rewritten by hand so that be1 owns every entry: ring share says so
# at once; once traffic flows, be1's new-flow skew is about 3, significant,
# and reported as skewed after the hold; the metrics carry the same numbers.
test_hand_edited_table_shows_as_skew() {
	cfg_observed "$STATE_DIR/cfg.yaml" 1 1 1 "window: 10s, hold: 2s"
	lb_start "$STATE_DIR/cfg.yaml"
	local vip_id be1_id
	lb_cli_ok backend list -o json >"$STATE_DIR/backends.json"
	vip_id=$(lb_cli_ok vip list -o json | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
	be1_id=$("$PYTHON" -c 'import json,sys; print(next(b["id"] for b in json.load(open(sys.argv[1])) if b["address"] == sys.argv[2]))' \
		"$STATE_DIR/backends.json" "${BE_IPS[0]}")
	rewrite_table "$vip_id" "$be1_id"
	backends_reset_counts
	tcp_batch "$STATE_DIR/tcp1.json" 300
	assert_all_ok "$STATE_DIR/tcp1.json" 300
	[[ $(backend_count be1 tcp "$VIP1" "$HTTP_PORT") -eq 300 ]] ||
		fail "be1 served $(backend_count be1 tcp "$VIP1" "$HTTP_PORT") of 300: the rewrite did not take"
	sleep 3  # past the 2 s hold
	tcp_batch "$STATE_DIR/tcp2.json" 100
	skew_json "$STATE_DIR/skew.json"
	scrape "$STATE_DIR/metrics.txt" >/dev/null
	local why
	if ! why=$("$PYTHON" - "$STATE_DIR/skew.json" "$STATE_DIR/metrics.txt" "$VIP_TCP" "${BE_IPS[0]}" <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); text = open(sys.argv[2]).read(); vip, be1 = sys.argv[3], sys.argv[4]
v = next(v for v in s["vips"] if v["vip"] == vip)
b = {x["address"]: x for x in v["backends"]}
bad = []
if not (v["skew"] and v["skew"] > 2.9): bad.append(f"VIP skew {v['skew']}")
if not v["confident"]: bad.append("not confident")
x = b[be1]
if not (x["skew"]["new_flows"] and x["skew"]["new_flows"] > 2.9): bad.append(f"be1 skew {x['skew']}")
if not x["significant"]: bad.append("be1 not significant")
if x["skewed_seconds"] is None: bad.append("be1 not reported skewed after the hold")
if abs(x["ring_share"] - 1) > 1e-9 or abs(x["ring_skew"] - 3) > 1e-6:
    bad.append(f"be1 ring share {x['ring_share']} ring skew {x['ring_skew']}")
for addr, o in b.items():
    if addr != be1 and (o["ring_share"] != 0 or o["window"]["new_flows"] != 0):
        bad.append(f"{addr}: ring {o['ring_share']} new flows {o['window']['new_flows']}")
line = f'ballast_backend_skew_ratio{{vip="{vip}",backend="{be1}",measure="new_flows"}} '
vals = [float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(line)]
if not vals or vals[0] <= 2: bad.append(f"metric {line.strip()} = {vals}")
if bad:
    print("; ".join(bad)); sys.exit(1)
PY
	); then
		fail "$why"
	fi
	lb_cli_ok skew >"$STATE_DIR/skew.txt"
	grep -qE "$(ere_quote "${BE_IPS[0]}") .*SKEWED [0-9]+s$" "$STATE_DIR/skew.txt" ||
		fail "the table does not say SKEWED for be1: $(oneline <"$STATE_DIR/skew.txt")"
}

# ere_quote TEXT: TEXT as an extended regex matching it literally.
ere_quote() {
	sed 's/[][\.*^$+?(){}|]/\\&/g' <<<"$1"
}

# cfg_replay FILE W1 W2 W3 RECONCILE: the outage replay's config: one VIP
# over be1..be3, a 5 s skew window, audits every 2 s.
cfg_replay() {
	cfg_observed "$1" "$2" "$3" "$4" "window: 5s, hold: 2s"
	{
		echo "audit: {interval: 2s}"
		echo "reconcile: $5"
	} >>"$1"
}

# prometheus_start DIR: a real Prometheus in the lb namespace scraping
# ballastd every second and evaluating the shipped alert rules; its API on
# 127.0.0.1:9090 there.
prometheus_start() {
	local dir=$1
	mkdir -p "$dir"
	cat >"$dir/prometheus.yml" <<-EOF
		global: {scrape_interval: 1s, evaluation_interval: 1s}
		rule_files: ["$REPO_ROOT/docs/prometheus/alerts.yml"]
		scrape_configs:
		  - job_name: ballast
		    static_configs: [{targets: ["127.0.0.1:9469"]}]
	EOF
	lb_exec prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
		--web.listen-address=127.0.0.1:9090 >"$dir/prometheus.log" 2>&1 &
	track_pid prometheus $!
}

# alert_state NAME BACKEND: the state (pending, firing) of alert NAME for
# BACKEND in the running Prometheus, or nothing.
alert_state() {
	lb_exec curl -s http://127.0.0.1:9090/api/v1/alerts | "$PYTHON" -c '
import json, sys
name, backend = sys.argv[1], sys.argv[2]
for a in json.load(sys.stdin)["data"]["alerts"]:
    if a["labels"].get("alertname") == name and a["labels"].get("backend") == backend:
        print(a["state"])
' "$1" "$2" 2>/dev/null || true
}

# The outage Ballast exists for, replayed: (a) a config sending nearly
# everything to one backend is refused, and applied only with --force;
# (b) a table rewritten by hand with bpftool so that be1 owns every entry:
# `ballast audit` names the drift and the ring skew of be1 (exit 1), be1's
# skew metric passes 2 within one window, and a real Prometheus with the
# shipped rules has BallastBackendSkewed pending or firing for be1;
# (c) with reconcile: true the maps are rewritten by ballastd itself and the
# backends' own counts are back to a third each.
test_outage_replay() {
	command -v prometheus >/dev/null || skip "prometheus not installed"
	local cfg=$STATE_DIR/cfg.yaml risky=$STATE_DIR/risky.yaml rc
	cfg_replay "$cfg" 1 1 1 false
	lb_start "$cfg"
	prometheus_start "$STATE_DIR/prom"
	tcp_batch "$STATE_DIR/warm.json" 300
	assert_all_ok "$STATE_DIR/warm.json" 300

	# (a) The pre-apply audit.
	cfg_replay "$risky" 100 1 1 false
	rc=0
	lb_cli apply -f "$risky" >"$STATE_DIR/a.out" 2>"$STATE_DIR/a.err" || rc=$?
	((rc == 1)) || fail "apply of weights 100/1/1 exited $rc, want 1 (refused)"
	grep -q "refused by the pre-apply audit" "$STATE_DIR/a.err" &&
		grep -qF "error share-limit: Backend ${BE_IPS[0]} would get 98.0% of VIP $VIP_TCP's new flows (weight 100 of 102)" "$STATE_DIR/a.err" ||
		fail "the refusal does not name the backend and numbers: $(oneline <"$STATE_DIR/a.err")"
	lb_cli_ok backend list -o json >"$STATE_DIR/list.json"
	[[ $("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["weight"])' "$STATE_DIR/list.json") == 1 ]] ||
		fail "a refused apply changed be1's weight"
	rc=0
	lb_cli apply -f "$risky" --dry-run >"$STATE_DIR/dry.out" 2>&1 || rc=$?
	((rc == 1)) && grep -q '^ERROR   share-limit' "$STATE_DIR/dry.out" ||
		fail "dry run: exit $rc, want 1 with the share-limit error: $(oneline <"$STATE_DIR/dry.out")"
	lb_cli_ok apply -f "$risky" --force >"$STATE_DIR/forced.out"
	grep -q "backend set-weight $VIP_TCP ${BE_IPS[0]} 1 -> 100" "$STATE_DIR/forced.out" ||
		fail "--force did not apply: $(oneline <"$STATE_DIR/forced.out")"
	lb_cli_ok log -o json | grep -q '(forced)' || fail "the change log does not say forced"
	lb_cli_ok apply -f "$cfg" >/dev/null  # back to 1/1/1: no new finding, no --force

	# (b) A hand-edited table.
	local vip_id be1_id
	vip_id=$(lb_cli_ok vip list -o json | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
	be1_id=$(lb_cli_ok backend list -o json | "$PYTHON" -c 'import json,sys; print(next(b["id"] for b in json.load(sys.stdin) if b["address"] == sys.argv[1]))' "${BE_IPS[0]}")
	rewrite_table "$vip_id" "$be1_id"
	local t_edit
	t_edit=$(now)
	rc=0
	lb_cli audit >"$STATE_DIR/audit.txt" || rc=$?
	((rc == 1)) || fail "ballast audit exited $rc after the edit, want 1"
	grep -qE "^ERROR +drift +[0-9]+ of VIP $(ere_quote "$VIP_TCP")'s 65537 Maglev table entries differ .* backend $(ere_quote "${BE_IPS[0]}") now holds [0-9]+ of them" "$STATE_DIR/audit.txt" ||
		fail "no drift finding naming be1: $(oneline <"$STATE_DIR/audit.txt")"
	grep -qE "^ERROR +ring-share +Backend $(ere_quote "${BE_IPS[0]}") holds 100\.0% of VIP .* \(ring skew 3\.00\)" "$STATE_DIR/audit.txt" ||
		fail "no ring-share finding naming be1: $(oneline <"$STATE_DIR/audit.txt")"
	# Traffic goes on; within one window (5 s, plus the 1 s sampling) of the
	# edit be1's skew metric must pass 2. The metric is absent while the
	# window holds no new flow (a sample may not have been taken since the
	# traffic): that is "not yet", so the loop goes on until the deadline.
	local skew=0 elapsed=0
	while :; do
		tcp_batch "$STATE_DIR/skewed.json" 100 >/dev/null
		skew=$(lb_exec curl -s "$METRICS/metrics" |
			awk -v want="ballast_backend_skew_ratio{vip=\"$VIP_TCP\",backend=\"${BE_IPS[0]}\",measure=\"new_flows\"}" \
				'$1 == want { print $2 }')
		elapsed=$(awk -v a="$(now)" -v b="$t_edit" 'BEGIN { printf "%.1f", a - b }')
		awk -v s="${skew:-0}" 'BEGIN { exit !(s > 2) }' && break
		awk -v e="$elapsed" 'BEGIN { exit !(e > 6) }' &&
			fail "be1's skew metric is '$skew' ${elapsed} s after the edit, want > 2 within one window (5 s)"
		sleep 0.3
	done
	e2e_log "be1 new-flow skew $skew, ${elapsed} s after the edit"
	# The shipped rule on the scraped values: pending at its first
	# evaluation (group interval 15 s), firing after its for: 30s.
	local state='' give_up=$((SECONDS + 40))
	while ((SECONDS < give_up)); do
		tcp_batch "$STATE_DIR/keep.json" 50 >/dev/null 2>&1 || true
		state=$(alert_state BallastBackendSkewed "${BE_IPS[0]}")
		[[ -z $state ]] || break
		sleep 1
	done
	[[ $state == pending || $state == firing ]] ||
		fail "Prometheus has no BallastBackendSkewed for be1 (log: $(tail -n 3 "$STATE_DIR/prom/prometheus.log" | oneline))"
	e2e_log "BallastBackendSkewed for be1: $state"

	# (c) Reconcile.
	cfg_replay "$cfg" 1 1 1 true
	lb_cli_ok apply -f "$cfg" >/dev/null
	local give=$((SECONDS + 10))
	until lb_cli_ok log -o json | grep -q '"actor": *"reconcile"'; do
		((SECONDS < give)) || fail "no reconcile entry in the change log within 10 s"
		sleep 0.5
	done
	rc=0
	lb_cli audit >"$STATE_DIR/audit2.txt" || rc=$?
	grep -qE '^ERROR +(drift|ring-share)' "$STATE_DIR/audit2.txt" &&
		fail "drift or ring-share left after reconcile: $(oneline <"$STATE_DIR/audit2.txt")"
	backends_reset_counts
	tcp_batch "$STATE_DIR/after.json" "$N"
	assert_all_ok "$STATE_DIR/after.json" "$N"
	assert_shares "$STATE_DIR/after.json" 10 be1=1 be2=1 be3=1
}

E2E_TESTS=(
	test_skew_matches_weights
	test_metrics_endpoint
	test_top_frames
	test_hand_edited_table_shows_as_skew
	test_outage_replay
)

e2e_main "$@"
