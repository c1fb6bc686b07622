#!/usr/bin/env python3
"""The MediaWiki example (examples/mediawiki) with stagectl and with its docker-compose file,
on the same images: cold `up` (no snapshot: install job, fixture load, snapshot) until the
wiki answers, warm `rebuild` (snapshot hit), and docker-compose `down -v` + `up -d` until
the web service is healthy (compose has no snapshot: every up after a down is cold).
Prints the BENCHMARKS.md section as Markdown on stdout. Standard library only.

  scripts/bench/mediawiki.py --stagectl target/release/stagectl [--runs 3] [--port 18940]

Needs stagectl/mariadb:10.11 and stagectl-example/mediawiki:1.39
(scripts/build-images.sh, examples/mediawiki/build-image.sh).
"""

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (Fail, compose_up_wait, leftovers, logger, machine_facts, machine_lines, med, mn, mx, run)  # noqa: E402

ROOT = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
EXAMPLE = os.path.join(ROOT, "examples", "mediawiki")
log = logger("bench-mediawiki")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stagectl", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--port", type=int, default=18940)
    a = ap.parse_args()
    stagectl = os.path.abspath(a.stagectl)
    stack = f"benchwiki{os.getpid() % 10000}"
    project = f"benchwikic{os.getpid() % 10000}"
    work = tempfile.mkdtemp(prefix="stagectl-bench-wiki-")
    shutil.copytree(os.path.join(EXAMPLE, "fixtures"), os.path.join(work, "fixtures"))
    shutil.copy(os.path.join(EXAMPLE, "docker-compose.yml"), work)
    with open(os.path.join(EXAMPLE, "stack.toml")) as f:
        manifest = f.read().replace('name = "wiki"', f'name = "{stack}"')
    with open(os.path.join(work, "stack.toml"), "w") as f:
        f.write(manifest)
    env = dict(os.environ, WIKI_PORT=str(a.port), NO_COLOR="1")
    st = [stagectl, "-f", os.path.join(work, "stack.toml")]
    dc = ["docker-compose", "-f", os.path.join(work, "docker-compose.yml"), "-p", project]

    def web_healthy():
        p = subprocess.run(["docker", "inspect", "-f", "{{.State.Health.Status}}", f"{project}_web_1"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        return p.stdout.strip()

    rows = []
    try:
        for i in range(a.runs):
            run(st + ["down", "--volumes"], env=env)
            run(st + ["snapshots", "prune", "--all"], env=env)
            cold, _ = run(st + ["up"], env=env)
            warm, _ = run(st + ["rebuild"], env=env)
            run(st + ["down", "--volumes"], env=env)
            run(st + ["snapshots", "prune", "--all"], env=env)
            run(dc + ["down", "-v"], env=env)
            compose, compose_cmd, _ = compose_up_wait(dc, web_healthy, lambda s: s == "healthy", 180, 0.02, "web healthy", env=env)
            run(dc + ["down", "-v"], env=env)
            log(f"run {i + 1}: stagectl cold {cold:.2f} s, warm rebuild {warm:.2f} s; compose {compose:.2f} s")
            rows.append((cold, warm, compose, compose_cmd))
    finally:
        subprocess.run(st + ["down", "--volumes"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(st + ["snapshots", "prune", "--all"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(dc + ["down", "-v"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)
    left = leftovers(f"org.stagectl.stack={stack}") + leftovers(f"com.docker.compose.project={project}")
    if left:
        raise Fail(f"left behind: {left}")

    col = lambda k: [r[k] for r in rows]  # noqa: E731
    cell = lambda xs: f"{med(xs):.2f} s ({mn(xs):.2f}–{mx(xs):.2f})"  # noqa: E731
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "## MediaWiki on MariaDB (examples/mediawiki): stagectl vs docker-compose (`scripts/bench/mediawiki.py`)",
        "",
        f"Measured {when}, {a.runs} runs, `{os.path.relpath(stagectl, ROOT)}`. Median (min–max) until the wiki answers.",
        "",
        "| | stagectl | docker-compose (same images) |",
        "|---|---|---|",
        f"| cold up: install job, fixtures, (stagectl) snapshot | {cell(col(0))} | {cell(col(2))} |",
        f"| warm rebuild (stagectl: from the snapshot; compose: `down -v` + `up -d`, cold again) | {cell(col(1))} | {cell(col(2))} |",
        "",
        f"Compose's `up -d` alone returned after {cell(col(3))}; the rest is the wait for the web healthcheck (1 s interval).",
        "",
    ]
    out += machine_lines(machine_facts())
    print("\n".join(out))


if __name__ == "__main__":
    try:
        main()
    except Fail as e:
        log(f"error: {e}")
        sys.exit(1)
