"""Helpers shared by the measurement halves of the benchmarks (bench.py, rebuild.py,
daemon.py; run through scripts/bench-*.sh): commands and waiting loops, the Docker API over
its unix socket, statistics, the machine's facts, and bits of the BENCHMARKS.md sections.
Standard library only. Durations use the monotonic clock (time.monotonic()).

Self-test (no Docker needed): python3 -m unittest discover scripts/bench
"""

import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse

DOCKER_SOCK = "/var/run/docker.sock"


def logger(name):
    """A log function writing `name: msg` lines to stderr."""

    def log(msg):
        print(f"{name}: {msg}", file=sys.stderr, flush=True)

    return log


class Fail(Exception):
    pass


# ----------------------------------------------------------------- commands and waiting
def run(argv, check=True, env=None):
    """Runs a command; returns (seconds, completed process). Timed with the monotonic clock."""
    t0 = time.monotonic()
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    dt = time.monotonic() - t0
    if check and p.returncode != 0:
        raise Fail(f"`{' '.join(argv)}` exited {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return dt, p


def polling(deadline, every):
    """Paces a waiting loop:

        for _ in polling(time.monotonic() + 60, 0.1):
            if <done>:
                break
        else:
            raise Fail("... not done in 60 s")

    runs the body at once, then again every `every` s, until the monotonic clock is past
    `deadline` after an attempt; the loop's `else` then runs (a `break` skips it)."""
    while True:
        yield
        if time.monotonic() > deadline:
            return
        time.sleep(every)


def final_report(lines):
    """The run's report (the last object with `services` and `ok`) among stagectl --json's lines."""
    return next((l for l in reversed(lines) if "services" in l and "ok" in l), None)


def json_lines(text):
    """The JSON objects among the lines of `text` (stagectl --json's output)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


# ----------------------------------------------------------------- Docker API (unix socket)
class _UnixConn(http.client.HTTPConnection):
    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


def docker_get(path, params=None):
    """GET on the Docker API: the decoded JSON, or None for a 404."""
    sock = os.environ.get("DOCKER_HOST", "unix://" + DOCKER_SOCK)
    if not sock.startswith("unix://"):
        raise Fail(f"DOCKER_HOST={sock}: only a unix socket is supported by the bench")
    conn = _UnixConn(sock[len("unix://"):])
    try:
        if params:
            path += "?" + urllib.parse.urlencode(params)
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
        if r.status == 404:
            return None
        if r.status >= 300:
            raise Fail(f"docker API GET {path}: {r.status} {body[:200]!r}")
        return json.loads(body)
    finally:
        conn.close()


def docker_request(method, path, body=None):
    """One Docker API request; returns (HTTP status, seconds)."""
    conn = _UnixConn(DOCKER_SOCK)
    try:
        t0 = time.monotonic()
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        return r.status, time.monotonic() - t0
    finally:
        conn.close()


def running_containers():
    """How many containers are running (other work on the machine, when a benchmark starts)."""
    return len(docker_get("/containers/json") or [])


def label_filter(*labels):
    return {"filters": json.dumps({"label": list(labels)})}


def leftovers(label):
    """Containers, networks and volumes carrying `label`."""
    c = docker_get("/containers/json", {"all": "1", **label_filter(label)}) or []
    n = docker_get("/networks", label_filter(label)) or []
    v = (docker_get("/volumes", label_filter(label)) or {}).get("Volumes") or []
    return [x["Names"][0].lstrip("/") for x in c] + [x["Name"] for x in n] + [x["Name"] for x in v]


def remove_snapshots(stack):
    """Removes stagectl's fixture snapshot images of `stack` only, never other stacks'."""
    for img in docker_get("/images/json", label_filter(f"org.stagectl.stack={stack}", "org.stagectl.snapshot")) or []:
        run(["docker", "rmi", "-f", img["Id"]], check=False)


def compose_up_wait(dc, state, done, timeout, every, what, env=None):
    """`docker-compose ... up -d` (`dc`: the command before `up`), then `state()` polled every
    `every` s until `done(state)` is true (it may raise Fail to give up early); Fail when
    `timeout` s have passed since the command started, naming `what` was not reached.
    Returns (seconds until done, seconds of `up -d` alone, its completed process)."""
    t0 = time.monotonic()
    p = subprocess.run(dc + ["up", "-d"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    t_cmd = time.monotonic() - t0
    if p.returncode != 0:
        raise Fail(f"docker-compose up -d exited {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
    for _ in polling(t0 + timeout, every):
        s = state()
        if done(s):
            break
    else:
        raise Fail(f"compose: {what} after {timeout} s: {s}")
    return time.monotonic() - t0, t_cmd, p


# ------------------------------------------------------------------------------ statistics
# None and NaN (a value not measured) are left out; nothing left gives NaN.
def _measured(xs):
    return [x for x in xs if x is not None and x == x]


def med(xs):
    xs = _measured(xs)
    return statistics.median(xs) if xs else float("nan")


def mn(xs):
    xs = _measured(xs)
    return min(xs) if xs else float("nan")


def mx(xs):
    xs = _measured(xs)
    return max(xs) if xs else float("nan")


def ratio(a, b):
    """a / b, NaN when b is 0 or NaN."""
    return a / b if b else float("nan")


def cell(xs, fmt="{:.2f}", unit=" s"):
    """A table cell: median (min–max) of the measured values (None left out); "–" for none."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return "–"
    if len(xs) == 1:
        return f"{fmt.format(xs[0])}{unit} (1 run)"
    return f"{fmt.format(med(xs))}{unit} ({fmt.format(mn(xs))}–{fmt.format(mx(xs))})"


def pct(sorted_xs, p):
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_xs:
        return float("nan")
    k = max(0, min(len(sorted_xs) - 1, -(-len(sorted_xs) * p // 100) - 1))
    return sorted_xs[int(k)]


# --------------------------------------------------------------------------- the machine
def machine_facts(engine_details=True):
    """CPUs, memory, kernel, Docker and docker-compose versions and the load average. With
    engine_details, `docker` is the engine's version and API version (Docker API), plus its
    storage and cgroup drivers and the CLI's version; without, the engine's version as the
    CLI reports it."""
    f = {"nproc": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as fh:
            f["cpu"] = next((l.split(":", 1)[1].strip() for l in fh if l.startswith("model name")), "?")
    except OSError:
        f["cpu"] = "?"
    try:
        with open("/proc/meminfo") as fh:
            kb = int(next(l for l in fh if l.startswith("MemTotal")).split()[1])
        f["mem"] = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration):
        f["mem"] = "?"
    f["kernel"] = platform.release()
    if engine_details:
        v = docker_get("/version") or {}
        info = docker_get("/info") or {}
        f["docker"] = f"{v.get('Version', '?')} (API {v.get('ApiVersion', '?')})"
        f["storage"] = info.get("Driver", "?")
        f["cgroup"] = f"{info.get('CgroupDriver', '?')}, v{info.get('CgroupVersion', '?')}"
        _, p = run(["docker", "version", "--format", "{{.Client.Version}}"], check=False)
        f["docker_cli"] = p.stdout.strip() or "?"
    else:
        _, p = run(["docker", "version", "--format", "{{.Server.Version}}"], check=False)
        f["docker"] = p.stdout.strip() or "?"
    _, p = run(["docker-compose", "version", "--short"], check=False)
    f["compose"] = p.stdout.strip() or "?"
    f["load"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f


# ------------------------------------------------------------------ BENCHMARKS.md sections
def add_output_args(ap, command):
    """The options every measurement half takes from its scripts/bench-*.sh: where to write
    the raw results (JSON) and the section (Markdown), and what the section says about the
    run (the command line, stagectl's revision, the load average at the start)."""
    ap.add_argument("--json", required=True)
    ap.add_argument("--markdown", required=True)
    ap.add_argument("--command", default=command)
    ap.add_argument("--revision", default="?")
    ap.add_argument("--load-start", default="?")


def measure_sizes(a, size):
    """Measures each of `a.sizes` (comma-separated counts) in turn: `size(a, n)`'s prepare(),
    then go(), whose result is collected. The results so far are written to --json after each
    size, so they survive a later failure (a Fail propagates)."""
    results = []
    for n in [int(x) for x in a.sizes.split(",") if x]:
        s = size(a, n)
        s.prepare()
        results.append(s.go())
        write_json(a.json, {"results": results})
    return results


def write_json(path, data):
    with open(path, "w") as fh:
        json.dump(data, fh, indent=1, default=str)


def write_outputs(a, data, render):
    """The raw results `data` to --json, then the section `render()` returns to --markdown
    (the JSON first: it is kept when rendering fails)."""
    write_json(a.json, data)
    with open(a.markdown, "w") as fh:
        fh.write(render())


def met(ok):
    """The verdict on a target."""
    return "**met**" if ok else "**NOT met**"


def machine_section(a, facts, others):
    """A section's "### Machine" part: the machine's facts (with engine_details), the load
    average at the start (--load-start) and at the end, the `others` containers running at the
    start, and stagectl's revision (--revision)."""
    return [
        "### Machine",
        "",
        *machine_lines(facts),
        f"- Load average at the start: {a.load_start}; at the end: {facts['load']}. Other containers running at the start: {others}.",
        f"- stagectl {a.revision}, release build.",
    ]


def machine_lines(facts):
    """The first two lines of a section's "Machine" list (facts with engine_details)."""
    return [
        f"- {facts['nproc']} CPUs ({facts['cpu']}), {facts['mem']} memory, Linux {facts['kernel']}",
        f"- Docker engine {facts['docker']}, CLI {facts['docker_cli']}, storage driver {facts['storage']}, "
        f"cgroup {facts['cgroup']}; docker-compose {facts['compose']}",
    ]
