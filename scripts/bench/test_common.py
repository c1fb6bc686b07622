"""Self-test of common.py's and common.sh's helpers that need no Docker: python3 -m unittest discover scripts/bench"""

import argparse
import contextlib
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402
from common import Fail  # noqa: E402

NAN = float("nan")


class Stats(unittest.TestCase):
    def test_med_mn_mx_leave_out_none_and_nan(self):
        xs = [3.0, None, 1.0, NAN, 2.0, 10.0]
        self.assertEqual(common.med(xs), 2.5)
        self.assertEqual(common.mn(xs), 1.0)
        self.assertEqual(common.mx(xs), 10.0)
        for f in (common.med, common.mn, common.mx):
            self.assertTrue(math.isnan(f([None, NAN])))
            self.assertTrue(math.isnan(f([])))

    def test_ratio_and_cell(self):
        self.assertEqual(common.ratio(3, 2), 1.5)
        self.assertTrue(math.isnan(common.ratio(3, 0)))
        self.assertEqual(common.cell([None]), "–")
        self.assertEqual(common.cell([1.234, None]), "1.23 s (1 run)")
        self.assertEqual(common.cell([3.0, 1.0, 2.0]), "2.00 s (1.00–3.00)")
        self.assertEqual(common.cell([1500, 500], "{:.0f}", " ms"), "1000 ms (500–1500)")

    def test_pct_nearest_rank(self):
        xs = list(range(1, 101))
        self.assertEqual([common.pct(xs, p) for p in (50, 90, 99, 99.9, 100)], [50, 90, 99, 100, 100])
        self.assertEqual(common.pct([7], 99), 7)
        self.assertTrue(math.isnan(common.pct([], 50)))


class Commands(unittest.TestCase):
    def test_run(self):
        dt, p = common.run([sys.executable, "-c", "print('hi')"])
        self.assertEqual(p.stdout, "hi\n")
        self.assertGreater(dt, 0)
        _, p = common.run([sys.executable, "-c", "raise SystemExit(3)"], check=False)
        self.assertEqual(p.returncode, 3)
        with self.assertRaisesRegex(Fail, "exited 3"):
            common.run([sys.executable, "-c", "raise SystemExit(3)"])

    def test_json_lines(self):
        text = 'noise\n {"a": 1}\n{broken\n{"b": [2]}\n'
        self.assertEqual(common.json_lines(text), [{"a": 1}, {"b": [2]}])

    def test_final_report_is_the_last_report_line(self):
        lines = [{"event": "phase"}, {"services": [], "ok": False}, {"services": [1], "ok": True}, {"event": "x"}]
        self.assertEqual(common.final_report(lines), {"services": [1], "ok": True})
        self.assertIsNone(common.final_report([{"event": "phase"}]))

    def test_logger(self):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            common.logger("bench-x")("hello")
        self.assertEqual(err.getvalue(), "bench-x: hello\n")


class Polling(unittest.TestCase):
    def test_stops_at_the_first_success(self):
        n = 0
        for _ in common.polling(time.monotonic() + 5, 0.001):
            n += 1
            if n == 3:
                break
        else:
            self.fail("gave up")
        self.assertEqual(n, 3)

    def test_gives_up_after_the_deadline_having_tried_at_least_once(self):
        tries = 0
        t0 = time.monotonic()
        for _ in common.polling(t0 - 1, 0.001):
            tries += 1
        self.assertEqual(tries, 1)
        tries = 0
        for _ in common.polling(time.monotonic() + 0.05, 0.01):
            tries += 1
        self.assertGreaterEqual(tries, 3)
        self.assertLess(tries, 10)

    def test_compose_up_wait(self):
        states = iter(["starting", "starting", "done"])
        total, t_cmd, p = common.compose_up_wait([sys.executable, "-c", "import sys; print(sys.argv[1:])"],
                                                 lambda: next(states), lambda s: s == "done", 5, 0.001, "not done")
        self.assertEqual(p.stdout, "['up', '-d']\n")
        self.assertGreaterEqual(total, t_cmd)
        with self.assertRaisesRegex(Fail, r"^compose: not done after 0 s: starting$"):
            common.compose_up_wait([sys.executable, "-c", ""], lambda: "starting", lambda s: False, 0, 0.001, "not done")
        with self.assertRaisesRegex(Fail, "^docker-compose up -d exited 1"):
            common.compose_up_wait([sys.executable, "-c", "raise SystemExit(1)"], lambda: "", lambda s: True, 5, 0.001, "x")


class Sections(unittest.TestCase):
    def test_met(self):
        self.assertEqual((common.met(True), common.met(False)), ("**met**", "**NOT met**"))

    def test_machine_lines(self):
        facts = {"nproc": 2, "cpu": "C", "mem": "1.0 GiB", "kernel": "6.1", "docker": "20.10 (API 1.41)",
                 "docker_cli": "20.10", "storage": "overlay2", "cgroup": "systemd, v2", "compose": "1.29.2"}
        self.assertEqual(common.machine_lines(facts), [
            "- 2 CPUs (C), 1.0 GiB memory, Linux 6.1",
            "- Docker engine 20.10 (API 1.41), CLI 20.10, storage driver overlay2, cgroup systemd, v2; docker-compose 1.29.2",
        ])

    def test_machine_section(self):
        facts = {"nproc": 2, "cpu": "C", "mem": "1.0 GiB", "kernel": "6.1", "docker": "20.10 (API 1.41)",
                 "docker_cli": "20.10", "storage": "overlay2", "cgroup": "systemd, v2", "compose": "1.29.2", "load": "0.50 0.40 0.30"}
        a = argparse.Namespace(load_start="1.00 0.90 0.80", revision="abc1234")
        self.assertEqual(common.machine_section(a, facts, 3), ["### Machine", ""] + common.machine_lines(facts) + [
            "- Load average at the start: 1.00 0.90 0.80; at the end: 0.50 0.40 0.30. Other containers running at the start: 3.",
            "- stagectl abc1234, release build.",
        ])

    def test_measure_sizes_writes_what_it_has_after_each_size(self):
        class Size:
            def __init__(self, a, n):
                self.n = n

            def prepare(self):
                if self.n == 3:
                    raise Fail("no room for 3")

            def go(self):
                return {"n": self.n}

        with tempfile.TemporaryDirectory() as d:
            a = argparse.Namespace(sizes="1,2,", json=os.path.join(d, "r.json"))
            self.assertEqual(common.measure_sizes(a, Size), [{"n": 1}, {"n": 2}])
            a.sizes = "1,3"
            with self.assertRaisesRegex(Fail, "no room"):
                common.measure_sizes(a, Size)
            with open(a.json) as fh:
                self.assertEqual(json.load(fh), {"results": [{"n": 1}]}, "the sizes measured before the failure")

    def test_outputs(self):
        ap = argparse.ArgumentParser()
        common.add_output_args(ap, "scripts/bench-x.sh")
        with tempfile.TemporaryDirectory() as d:
            a = ap.parse_args(["--json", os.path.join(d, "r.json"), "--markdown", os.path.join(d, "s.md")])
            self.assertEqual((a.command, a.revision, a.load_start), ("scripts/bench-x.sh", "?", "?"))
            common.write_outputs(a, {"x": 1, "t": time}, lambda: "section\n")
            with open(a.json) as fh:
                self.assertEqual(json.load(fh)["x"], 1)
            with open(a.markdown) as fh:
                self.assertEqual(fh.read(), "section\n")
            with self.assertRaises(ZeroDivisionError):
                common.write_outputs(a, {"x": 2}, lambda: str(1 / 0))
            with open(a.json) as fh:
                self.assertEqual(json.load(fh), {"x": 2})


def sh(script, cwd=None):
    """Runs bash `script` after sourcing common.sh as a scripts/bench-*.sh does."""
    prelude = f'set -euo pipefail; ROOT={os.path.dirname(os.path.dirname(HERE))}; BENCH_NAME=bench-x; source "{HERE}/common.sh"; '
    return subprocess.run(["bash", "-c", prelude + script], capture_output=True, text=True, cwd=cwd)


class Shell(unittest.TestCase):
    """common.sh's preamble and section writer (bash)."""

    def test_messages_and_checks(self):
        p = sh("log hello; require_positive --runs 3; require_positive --runs 0; log unreached")
        self.assertEqual((p.returncode, p.stderr), (1, "bench-x: hello\nbench-x: error: --runs must be a positive number, not '0'\n"))
        p = sh("require_tools bash no-such-tool-for-bench-x")
        self.assertEqual((p.returncode, p.stderr), (1, "bench-x: error: no-such-tool-for-bench-x not found on PATH\n"))

    def test_command_and_revision(self):
        p = sh("bench_command; bench_command --runs 3 --keep")
        self.assertEqual(p.stdout, "scripts/bench-x.sh\nscripts/bench-x.sh --runs 3 --keep\n")
        with tempfile.TemporaryDirectory() as d:
            self.assertEqual(sh("bench_revision", cwd=d).stdout, "?\n", "outside a git checkout")

    def test_write_section_replaces_its_own_section_only(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "out.md")
            with open(os.path.join(d, "section.md"), "w") as fh:
                fh.write("one\n")
            write = f'TMP={d}; OUT={out}; START_MARK="<!-- x:start -->"; END_MARK="<!-- x:end -->"; T0=$SECONDS; write_section Title'
            self.assertEqual(sh(write).returncode, 0)
            with open(out, "a") as fh:
                fh.write("\nkept\n")
            with open(os.path.join(d, "section.md"), "w") as fh:
                fh.write("two\n")
            self.assertEqual(sh(write).returncode, 0)
            with open(out) as fh:
                self.assertEqual(fh.read(), "# Benchmarks\n\n\n<!-- x:start -->\n## Title\n\ntwo\n<!-- x:end -->\n\nkept\n")


if __name__ == "__main__":
    unittest.main()
