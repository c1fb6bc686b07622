#!/usr/bin/env python3
"""examples/wagtail: stagectl against docker-compose on the same images, in one run.

  python3 scripts/bench/wagtail.py [--stagectl BIN] [--runs N] [--write]

Measures, alternating the tools run by run so both see the same machine load:
  cold up        stagectl `up` with no fixture snapshot of the stack (migrations + masked
                 load + snapshot) | compose `up -d` after `down -v`, until web is healthy;
  warm rebuild   stagectl `rebuild` (down --volumes + up from the snapshot) | compose
                 `down -v` + `up -d` until web is healthy (compose has no snapshot: the same
                 work as its cold up).
Both run the app image built beforehand (stagectl's build and compose's build of app/ are done
once, before the first run, and not timed): the numbers are the stack's work, not the build.
Prints the BENCHMARKS.md section; --write replaces the part between
`<!-- bench-wagtail:start -->` and `<!-- bench-wagtail:end -->` in BENCHMARKS.md.

Names: stack `benchwt` (a copy of the example in a temp dir, web port left to Docker), compose
project `benchwtc` (port 18091). Everything is removed at the end, also on failure: both
stacks, this stack's snapshot images, the compose project's volumes and its app image.
Needs the images of scripts/build-images.sh and scripts/build-wagtail-image.sh.
"""

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (Fail, compose_up_wait, docker_get, label_filter, leftovers, logger, machine_facts,  # noqa: E402
                    machine_lines, med, remove_snapshots, run)

ROOT = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
EXAMPLE = os.path.join(ROOT, "examples", "wagtail")
STACK = "benchwt"
PROJECT = "benchwtc"
COMPOSE_PORT = "18091"
START, END = "<!-- bench-wagtail:start -->", "<!-- bench-wagtail:end -->"

log = logger("bench-wagtail")


def copy_example(work):
    """The example under the bench's stack name, its web port left to Docker."""
    for d in ("app", "fixtures"):
        shutil.copytree(os.path.join(EXAMPLE, d), os.path.join(work, d), ignore=shutil.ignore_patterns("__pycache__"))
    with open(os.path.join(EXAMPLE, "stack.toml")) as fh:
        text = fh.read()
    for old, new in (('name = "wagtail"', f'name = "{STACK}"'), ('ports = ["${WAGTAIL_PORT:-8000}:8000"]', 'ports = ["8000"]')):
        if old not in text:
            raise Fail(f"examples/wagtail/stack.toml no longer has {old!r}")
        text = text.replace(old, new)
    with open(os.path.join(work, "stack.toml"), "w") as fh:
        fh.write(text)
    return os.path.join(work, "stack.toml")


class Bench:
    def __init__(self, a, work):
        self.a = a
        self.st = [a.stagectl, "-f", copy_example(work)]
        self.dc = ["docker-compose", "-p", PROJECT, "-f", os.path.join(EXAMPLE, "docker-compose.yml")]
        self.env = {**os.environ, "WAGTAIL_PORT": COMPOSE_PORT}

    def stagectl(self, cmd, snapshot):
        dt, p = run(self.st + ["--json", cmd])
        report = [line for line in p.stdout.splitlines() if line.startswith("{")]
        got = json.loads(report[-1])
        db = next(s for s in got["services"] if s["service"] == "db")
        if not got.get("ok") or db.get("fixtures", {}).get("snapshot") != snapshot:
            raise Fail(f"stagectl {cmd}: expected snapshot {snapshot}, got {db.get('fixtures')}")
        return dt

    def compose_state(self):
        rows = docker_get("/containers/json", {"all": "1", **label_filter(f"com.docker.compose.project={PROJECT}")}) or []
        out = {}
        for c in rows:
            svc = c["Labels"].get("com.docker.compose.service", "?")
            status = c.get("Status", "")
            code = int(status[len("Exited ("):].split(")")[0]) if status.startswith("Exited (") else None
            out[svc] = (c["State"], code, "(healthy)" in status)
        return out

    def compose_cycle(self):
        """`down -v`, then `up -d` until web is healthy: (seconds of the up, seconds of the down)."""
        t_down, _ = run(self.dc + ["down", "-v"], env=self.env)

        def done(s):
            for job in ("migrate", "seed"):
                if s.get(job, ("", None, False))[1] not in (None, 0):
                    raise Fail(f"compose: {job} exited {s[job][1]}")
            return s.get("web", ("", None, False))[2]

        total, _, _ = compose_up_wait(self.dc, self.compose_state, done, 900, 0.05, "web not healthy", env=self.env)
        return total, t_down

    def go(self):
        log("building the app image for both tools (not timed)")
        run(self.st + ["up"])
        run(self.st + ["down", "--volumes"])
        run(self.dc + ["build", "-q"], env=self.env)
        rows = []
        for i in range(self.a.runs):
            log(f"run {i + 1}/{self.a.runs}: stagectl cold up")
            remove_snapshots(STACK)
            cold = self.stagectl("up", "miss")
            log(f"run {i + 1}: stagectl warm rebuild")
            warm = self.stagectl("rebuild", "hit")
            run(self.st + ["down", "--volumes"])
            log(f"run {i + 1}: compose up (cold), then down -v + up (its rebuild)")
            c_cold, _ = self.compose_cycle()
            c_warm, c_down = self.compose_cycle()
            run(self.dc + ["down", "-v"], env=self.env)
            rows.append({"st_cold": cold, "st_warm": warm, "dc_cold": c_cold, "dc_warm": c_warm, "dc_down": c_down})
            log(f"run {i + 1}: stagectl {cold:.1f} s / {warm:.1f} s, compose {c_cold:.1f} s / {c_warm:.1f} s")
        return rows

    def cleanup(self):
        run(self.st + ["down", "--volumes"], check=False)
        run(self.dc + ["down", "-v", "--rmi", "local"], check=False, env=self.env)
        run(["docker", "rmi", "stagectl-example/wagtail-app:compose"], check=False)
        remove_snapshots(STACK)
        left = leftovers(f"org.stagectl.stack={STACK}") + leftovers(f"com.docker.compose.project={PROJECT}")
        if left:
            log(f"warning: left behind: {left}")


def render(a, facts, rows, started, load_end):
    m = {k: med([r[k] for r in rows]) for k in rows[0]}
    ratio = lambda x, y: f"{x / y:.2f}×" if y else "?"  # noqa: E731
    lines = [
        START,
        "## examples/wagtail: stagectl vs docker-compose, cold up and warm rebuild (`scripts/bench/wagtail.py`)",
        "",
        f"Wagtail 7.0 (Django 5.2) on PostgreSQL 15: {len(rows)} run(s) on {started:%Y-%m-%d %H:%M} UTC, "
        "the tools alternating run by run; medians. Ratio = stagectl ÷ compose (below 1: stagectl is faster).",
        "",
        "| | stagectl | docker-compose | ratio |",
        "|---|---:|---:|---:|",
        f"| cold up (migrations + fixture load, until web is ready) | {m['st_cold']:.1f} s | {m['dc_cold']:.1f} s | {ratio(m['st_cold'], m['dc_cold'])} |",
        f"| warm rebuild (`rebuild` / `down -v` + `up -d`) | {m['st_warm']:.1f} s | {m['dc_warm']:.1f} s | {ratio(m['st_warm'], m['dc_warm'])} |",
        "",
        "Per run (stagectl cold / warm, compose cold / warm): "
        + "; ".join(f"{r['st_cold']:.1f} / {r['st_warm']:.1f}, {r['dc_cold']:.1f} / {r['dc_warm']:.1f} s" for r in rows)
        + ".",
        "",
        "What each side does: stagectl's cold `up` runs Django's ~180 migrations as the `migrate` job, "
        "loads the fixtures masked (4 users, 3 + 200,000 staff rows), commits the snapshot and waits for "
        "`/healthz`; its warm `rebuild` starts the database from that snapshot, so the migrations and the "
        "load are skipped (the job's image, command and env are in the snapshot key). docker-compose "
        "(`examples/wagtail/docker-compose.yml`, same images) runs the migrations and a psql seed of the "
        "same files (unmasked) on every `up` after `down -v`, then waits for web's healthcheck (1 s interval). "
        "The app image is built once before the runs and not timed; stagectl's numbers include its own "
        "`down` inside `rebuild`, compose's warm number excludes its `down -v` "
        f"(median {m['dc_down']:.1f} s).",
        "",
        f"Command: `{a.command}` (stagectl {a.revision}, binary `{os.path.relpath(a.stagectl, ROOT)}`).",
        "",
        "Machine:",
        *machine_lines(facts),
        f"- load average at the start {facts['load']}, at the end {load_end} (other sessions share the machine)",
        END,
    ]
    return "\n".join(lines) + "\n"


def write_section(section):
    path = os.path.join(ROOT, "BENCHMARKS.md")
    with open(path) as fh:
        text = fh.read()
    if START in text and END in text:
        text = text[: text.index(START)] + section + text[text.index(END) + len(END) + 1 :]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(path, "w") as fh:
        fh.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stagectl", default=os.path.join(ROOT, "target", "release", "stagectl"))
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--write", action="store_true", help="replace the section in BENCHMARKS.md")
    ap.add_argument("--command", default="python3 scripts/bench/wagtail.py --write")
    a = ap.parse_args()
    if a.runs < 1:
        ap.error("--runs must be at least 1")
    if not os.access(a.stagectl, os.X_OK):
        ap.error(f"{a.stagectl} is not an executable (cargo build --release -p stagectl, or --stagectl BIN)")
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE, text=True)
    a.revision = rev.stdout.strip() or "?"
    facts = machine_facts()
    started = datetime.datetime.now(datetime.timezone.utc)
    work = tempfile.mkdtemp(prefix="stagectl-bench-wagtail.")
    bench = Bench(a, work)
    try:
        rows = bench.go()
    except Fail as e:
        log(f"error: {e}")
        return 1
    finally:
        bench.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    load_end = " ".join(f"{x:.2f}" for x in os.getloadavg())
    section = render(a, facts, rows, started, load_end)
    print(section)
    if a.write:
        write_section(section)
        log("BENCHMARKS.md updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
