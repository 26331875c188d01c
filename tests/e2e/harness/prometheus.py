"""A real Prometheus for the suites: in a namespace of the test's world,
scraping ballastd's /metrics every second and evaluating alert rules (the
shipped docs/prometheus/alerts.yml unless a test gives its own file); its
HTTP API on 127.0.0.1:9090 in that namespace."""

import datetime
import http.client
import json
import pathlib
import re
import subprocess
import urllib.parse

from .checks import wait_until
from .processes import Failure, stop
from .world import inside

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
SHIPPED_RULES = REPO_ROOT / "docs" / "prometheus" / "alerts.yml"
PROMETHEUS_PORT = 9090


def http_get(node, port, path, method="GET"):
    """An HTTP request to 127.0.0.1:@port inside @node's namespace: (status,
    body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    with inside(node.ns):
        conn.connect()       # the socket is the node's namespace's from here on
    try:
        conn.request(method, path)
        reply = conn.getresponse()
        return reply.status, reply.read().decode()
    finally:
        conn.close()


def unix(rfc3339):
    """Prometheus's RFC 3339 time (nanoseconds, Z) as unix seconds."""
    head, _, frac = rfc3339.rstrip("Z").partition(".")
    t = datetime.datetime.fromisoformat(head).replace(tzinfo=datetime.timezone.utc)
    return t.timestamp() + (float("0." + frac) if frac else 0.0)


def shortened_rules(state_dir, fors):
    """The shipped rules with only their timing shortened, so that a test
    sees an alert act in seconds: the group evaluates every 1 s (not 15 s)
    and each alert named in @fors ({alert: "5s"}) holds that `for:` instead
    of its own. Expressions, labels and every other rule are the shipped
    ones; tests/prometheus/alerts_test.yml checks the shipped timings with
    promtool. Written to @state_dir; returns the file."""
    text = SHIPPED_RULES.read_text()
    fast, groups = re.subn(r"(?m)^(    interval: )15s$", r"\g<1>1s", text)
    if groups != 1:
        raise Failure(f"the shipped rules changed shape: {groups} groups with interval 15s")
    for alert, hold in fors.items():
        fast, found = re.subn(r"(- alert: " + alert + r"\n(?:.*\n)*?        for: )\w+",
                              r"\g<1>" + hold, fast)
        if found != 1:
            raise Failure(f"the shipped rules changed shape: no for: of {alert}")
    rules = state_dir / "shortened-alerts.yml"
    rules.write_text(fast)
    return rules


class Prometheus:
    """Prometheus in @node's namespace scraping @targets ("ip:port", job
    "ballast") every second, evaluating @rules (a file)."""

    def __init__(self, node, state_dir, targets, rules=SHIPPED_RULES):
        self.node = node
        self.dir = state_dir / "prom"
        self.dir.mkdir(exist_ok=True)
        listed = ", ".join(f'"{t}"' for t in targets)
        (self.dir / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f'rule_files: ["{rules}"]\n'
            "scrape_configs:\n"
            "  - job_name: ballast\n"
            f"    static_configs: [{{targets: [{listed}]}}]\n")
        self.log_path = self.dir / "prometheus.log"
        with open(self.log_path, "w") as out:
            self.proc = subprocess.Popen(node.exec_argv([
                "prometheus", f"--config.file={self.dir}/prometheus.yml",
                f"--storage.tsdb.path={self.dir}/data",
                f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}"]),
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until("Prometheus ready", self._ready, 30)

    def _ready(self):
        if self.proc.poll() is not None:
            raise Failure(f"prometheus exited {self.proc.returncode}: {self.log_tail()}")
        try:
            return http_get(self.node, PROMETHEUS_PORT, "/-/ready")[0] == 200
        except OSError:
            return False

    def api(self, path):
        status, body = http_get(self.node, PROMETHEUS_PORT, path)
        assert status == 200, f"Prometheus {path}: HTTP {status}: {body[:200]}"
        return json.loads(body)["data"]

    def rule(self, name):
        """The alerting rule @name as Prometheus evaluates it: its state
        (inactive, pending, firing), lastEvaluation and alerts."""
        for group in self.api("/api/v1/rules?type=alert")["groups"]:
            for r in group["rules"]:
                if r["name"] == name:
                    return r
        raise Failure(f"Prometheus has no rule {name}: {self.log_tail()}")

    def alert(self, name, **labels):
        """(state, activeAt as unix seconds) of alert @name whose labels
        include @labels, or (None, None) when it is neither pending nor
        firing."""
        for a in self.rule(name)["alerts"]:
            if all(a["labels"].get(k) == v for k, v in labels.items()):
                return a["state"], unix(a["activeAt"])
        return None, None

    def query(self, expr):
        return self.api("/api/v1/query?query=" + urllib.parse.quote(expr))["result"]

    def log_tail(self):
        return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-3:])

    def close(self):
        stop(self.proc)
