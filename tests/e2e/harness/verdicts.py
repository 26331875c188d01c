"""A pytest plugin that prints the verdict lines every Ballast suite prints
and tests/run-all.sh counts: "PASS name (Ns)", "FAIL name: why" (followed by
the traceback, captured output and log lines, each indented "    | "),
"SKIP name: why", one per test. A fixture that fails is its test's FAIL
("(in setup)"); a file that cannot be collected is a "FAIL collect" line; a
file that collects no test prints no verdict, which run-all.sh counts as a
failure.

run-all.sh loads it with `-p harness.verdicts` (tests/e2e on PYTHONPATH) and
turns pytest's own terminal output off (`-p no:terminal`); conftest.py loads
it when a suite is run by hand.
"""

import logging
import os
import signal
import sys


def pytest_configure(config):
    # SIGTERM (run-all.sh's timeout, a CI runner) unwinds like Ctrl-C, so
    # every fixture's finalizer runs and no namespace outlives the run.
    def terminate(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt("SIGTERM")
    signal.signal(signal.SIGTERM, terminate)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    # Without the terminal plugin (run-all.sh turns it off: the verdict lines
    # are the output) nobody sets the traceback style: short, as --tb=short.
    # (Nor the verbosity, which assertion messages read.)
    if not hasattr(config.option, "tbstyle") or config.option.tbstyle == "auto":
        config.option.tbstyle = "short"
    if not hasattr(config.option, "verbose"):
        config.option.verbose = 0
    config.pluginmanager.register(VerdictReporter(), "ballast-verdict-lines")


class VerdictReporter:
    """One verdict line per test, in the form run-all.sh counts."""

    def __init__(self):
        self.outcomes = {}

    @staticmethod
    def _out(text):
        sys.__stdout__.write(text + "\n")
        sys.__stdout__.flush()

    def pytest_collectreport(self, report):
        if report.failed:
            self._out(f"FAIL collect {report.nodeid or 'session'}: could not collect")
            self._details(report)

    def pytest_runtest_logreport(self, report):
        seen = self.outcomes.setdefault(report.nodeid, [])
        seen.append(report)

    def pytest_runtest_logfinish(self, nodeid, location):
        reports = self.outcomes.pop(nodeid, [])
        name = nodeid.split("::", 1)[-1]
        failed = [r for r in reports if r.failed]
        skipped = [r for r in reports if r.skipped]
        if failed:
            first = failed[0]
            why = first.longrepr.reprcrash.message if hasattr(first.longrepr, "reprcrash") \
                and first.longrepr.reprcrash else str(first.longrepr).splitlines()[-1]
            phase = "" if first.when == "call" else f" (in {first.when})"
            self._out(f"FAIL {name}{phase}: " + " ".join(why.split())[:300])
            for r in failed:
                self._details(r)
        elif skipped:
            why = skipped[0].longrepr[2] if isinstance(skipped[0].longrepr, tuple) else "skipped"
            self._out(f"SKIP {name}: {why.removeprefix('Skipped: ')}")
        else:
            duration = sum(r.duration for r in reports)
            self._out(f"PASS {name} ({duration:.1f}s)")

    def _details(self, report):
        text = report.longreprtext or ""
        for title, content in report.sections:
            text += f"\n--- {title}\n{content}"
        lines = text.splitlines()
        for line in lines[-int(os.environ.get("E2E_LOG_LINES", "60")):]:
            self._out("    | " + line)
