#!/usr/bin/env python3
"""Measurement half of scripts/bench-up.sh (run that, not this).

Times `stagectl` against `docker-compose` (v1) on the equivalent demo stack, and measures
how long after a service really accepts work stagectl reports it ready. Writes the raw
results as JSON and the BENCHMARKS.md section as Markdown. Standard library only.

  bench.py check --manifest STACK_TOML --compose-file FILE
  bench.py --stagectl BIN --manifest STACK_TOML --stack NAME --app-port P
           --compose-file FILE --project NAME --compose-port P
           --runs N --lag-runs N --json OUT.json --markdown OUT.md --command "..."

Clocks: durations of commands use time.monotonic(). The readiness-lag runs compare events
from different processes (stagectl's JSON lines, Docker's events and log timestamps, our own
probes), so they use the wall clock (time.time(), CLOCK_REALTIME), which all of them share.
"""

import argparse
import datetime
import http.client
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (Fail, add_output_args, compose_up_wait, docker_get, docker_request, json_lines, label_filter, leftovers,  # noqa: E402
                    logger, machine_facts, machine_section, med, met, mn, mx, run, running_containers, write_outputs)

# The host-side pollers of the lag runs wait this long between attempts.
POLL_INTERVAL = 0.005
# Compose has no --wait in v1: after `up -d` we poll the Docker API this often
# (the same period as stagectl's default probe interval).
COMPOSE_POLL_INTERVAL = 0.020
SERVICES = ["db", "cache", "migrate", "app"]
PROBED = ["db", "cache", "app"]  # long-running services with a readiness probe
# The line each service prints when it starts accepting connections (lag method B).
READY_LOG = {
    "db": re.compile(r"database system is ready to accept connections"),
    "cache": re.compile(r"Ready to accept connections"),
    "app": re.compile(r"shop listening on"),
}


log = logger("bench")


# ------------------------------------------------------------------ equivalence of the stacks
def check_equivalence(manifest_path, compose_path):
    """What differs between the bench manifest's services and the compose file's (a list of
    problems; empty when they are equivalent for this benchmark)."""
    import tomllib

    try:
        import yaml
    except ImportError:
        log("warning: python3 has no PyYAML; cannot check that the compose file matches the manifest")
        return []
    with open(manifest_path, "rb") as fh:
        m = tomllib.load(fh)
    with open(compose_path) as fh:
        c = yaml.safe_load(fh)
    compose_dir = os.path.dirname(os.path.abspath(compose_path))
    problems = []
    p = problems.append
    if "fixtures" in m:
        p("the bench manifest still has [fixtures.*] (compose has no equivalent)")
    ms, cs = m.get("services", {}), dict(c.get("services", {}))
    # stagectl applies [migrations.<db>] itself (no `job`); compose needs a container for that:
    # a `migrate` job on that database, mounting the same directory, is the equivalent work.
    for db, mig in (m.get("migrations") or {}).items():
        if mig.get("job") or "migrate" not in cs or "migrate" in ms:
            continue
        job = cs.pop("migrate")
        mdir = os.path.realpath(os.path.join(os.path.dirname(manifest_path), mig["dir"]))
        mounts = [os.path.realpath(os.path.join(compose_dir, v.split(":")[0])) for v in job.get("volumes", []) or []]
        if mdir not in mounts:
            p(f"compose `migrate` does not mount the manifest's migrations dir {mdir}")
        for svc in cs.values():
            deps = svc.get("depends_on")
            if isinstance(deps, dict) and "migrate" in deps:
                deps = dict(deps)
                del deps["migrate"]
                deps.setdefault(db, {"condition": "service_healthy"})
                svc = svc.update(depends_on=deps)
    if set(ms) != set(cs):
        p(f"services differ: manifest {sorted(ms)}, compose {sorted(cs)}")
    compared = {"image", "build", "env", "volumes", "depends_on", "job", "ready", "entrypoint", "command",
                "ports", "working_dir", "user"}
    for name in sorted(set(ms) & set(cs)):
        s, d = ms[name], cs[name]
        for k in sorted(set(s) - compared):
            p(f"{name}: manifest key `{k}` is not compared by the bench (update bench.py and the compose file)")
        if s.get("image") != d.get("image"):
            p(f"{name}: image {s.get('image')!r} vs {d.get('image')!r}")
        senv, denv = s.get("env", {}), d.get("environment", {}) or {}
        if set(senv) != set(denv):
            p(f"{name}: env keys {sorted(senv)} vs {sorted(denv)}")
        for k, v in senv.items():
            if "${" not in str(v) and k in denv and str(denv[k]) != str(v):
                p(f"{name}: env {k}={v!r} vs {denv[k]!r}")
        for mk, ck in (("entrypoint", "entrypoint"), ("command", "command"), ("working_dir", "working_dir"), ("user", "user")):
            if s.get(mk) != d.get(ck):
                p(f"{name}: {mk} {s.get(mk)!r} vs {d.get(ck)!r}")

        def vol(text, base):
            parts = text.split(":")
            ro = len(parts) > 2 and parts[2] == "ro"
            src = parts[0]
            if src.startswith((".", "/")):
                src = os.path.realpath(os.path.join(base, src))
            return (src, parts[1], ro)

        mv = {vol(v, os.path.dirname(manifest_path)) for v in s.get("volumes", [])}
        dv = {vol(v, compose_dir) for v in d.get("volumes", []) or []}
        if mv != dv:
            p(f"{name}: volumes {sorted(mv)} vs {sorted(dv)}")
        mdeps = set(s.get("depends_on", []))
        ddeps = d.get("depends_on", {}) or {}
        if mdeps != set(ddeps):
            p(f"{name}: depends_on {sorted(mdeps)} vs {sorted(ddeps)}")
        for dep in mdeps & set(ddeps):
            want = "service_completed_successfully" if ms.get(dep, {}).get("job") else "service_healthy"
            got = ddeps[dep].get("condition") if isinstance(ddeps, dict) else None
            if got != want:
                p(f"{name}: depends_on {dep} condition {got!r}, want {want!r}")
        ready = s.get("ready")
        hc = d.get("healthcheck")
        if s.get("job") and hc:
            p(f"{name}: a job has no healthcheck")
        if ready and not hc:
            p(f"{name}: has a readiness probe but no healthcheck")
        if ready and hc and "exec" in ready and hc.get("test") != ["CMD"] + list(ready["exec"]):
            p(f"{name}: exec probe {ready['exec']} vs healthcheck {hc.get('test')}")
        if ready and hc and "http" in ready and ready["http"] not in " ".join(map(str, hc.get("test", []))):
            p(f"{name}: http probe {ready['http']} is not what the healthcheck requests")
        mports = {str(x).rsplit(":", 1)[-1] for x in s.get("ports", [])}
        dports = {str(x).rsplit(":", 1)[-1] for x in d.get("ports", []) or []}
        if mports != dports:
            p(f"{name}: container ports {sorted(mports)} vs {sorted(dports)}")
    return problems


# ------------------------------------------------------------------------------- commands
def http_status(port, path="/healthz"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


class Bench:
    def __init__(self, a):
        self.a = a
        self.st = [a.stagectl, "-f", a.manifest, "--json"]
        self.dc = ["docker-compose", "-p", a.project, "-f", a.compose_file]
        self.stack_label = f"org.stagectl.stack={a.stack}"
        self.compose_label = f"com.docker.compose.project={a.project}"

    # ------------------------------------------------------------------------- stagectl
    def st_up(self, expect_changed):
        dt, p = run(self.st + ["up"], check=False)
        lines = json_lines(p.stdout)
        report = next((l for l in lines if "services" in l and "ok" in l), None)
        if p.returncode != 0 or not report or not report["ok"]:
            raise Fail(f"stagectl up failed (exit {p.returncode})\n{p.stdout[-3000:]}\n{p.stderr[-2000:]}")
        if report["changed"] != expect_changed:
            raise Fail(f"stagectl up: changed={report['changed']}, expected {expect_changed}")
        events = [l for l in lines if l.get("event") == "phase"]
        return dt, {"report": report, "events": events}

    def st_down(self):
        dt, p = run(self.st + ["down", "--volumes"])
        return dt, json_lines(p.stdout)

    # -------------------------------------------------------------------------- compose
    def compose_state(self):
        """{service: (state, health or '', exit code or None)} from one list call."""
        rows = docker_get("/containers/json", {"all": "1", **label_filter(self.compose_label)}) or []
        out = {}
        for c in rows:
            svc = c["Labels"].get("com.docker.compose.service", "?")
            status = c.get("Status", "")
            health = ""
            m = re.search(r"\((healthy|unhealthy|health: starting)\)", status)
            if m:
                health = m.group(1)
            code = None
            m = re.match(r"Exited \((-?\d+)\)", status)
            if m:
                code = int(m.group(1))
            out[svc] = (c["State"], health, code)
        return out

    def compose_all_ready(self, s):
        return (
            all(s.get(x, ("", "", None))[:2] == ("running", "healthy") for x in PROBED)
            and s.get("migrate", ("", "", None))[0] == "exited"
            and s.get("migrate")[2] == 0
        )

    def compose_up(self, expect_noop=False):
        """`up -d`, then poll until every service is healthy and the job exited 0.
        Returns (total seconds, seconds of `up -d` alone)."""
        env = dict(os.environ, BENCHC_PORT=str(self.a.compose_port), BENCHC_API_KEY="bench")

        def done(s):
            if self.compose_all_ready(s):
                return True
            if s.get("migrate", ("", "", None))[2] not in (None, 0):
                raise Fail(f"compose: migrate exited {s['migrate'][2]}")
            if any(s.get(x, ("", "", None))[1] == "unhealthy" for x in PROBED):
                raise Fail(f"compose: a service is unhealthy: {s}")
            return False

        total, t_cmd, p = compose_up_wait(self.dc, self.compose_state, done, 90, COMPOSE_POLL_INTERVAL, "not ready", env=env)
        if expect_noop and ("Creating" in p.stderr or "Recreating" in p.stderr):
            raise Fail(f"compose no-op up recreated something:\n{p.stderr}")
        return total, t_cmd

    def compose_down(self):
        env = dict(os.environ, BENCHC_PORT=str(self.a.compose_port), BENCHC_API_KEY="bench")
        dt, _ = run(self.dc + ["down", "-v"], env=env)
        return dt

    def check_clean(self, label):
        left = leftovers(label)
        if left:
            raise Fail(f"left behind after down ({label}): {left}")

    # ------------------------------------------------------------------------ the runs
    def timing_runs(self):
        runs = []
        for i in range(self.a.runs):
            order = ["stagectl", "compose"] if i % 2 == 0 else ["compose", "stagectl"]
            r = {"run": i + 1, "order": order}
            for tool in order:
                time.sleep(self.a.settle)
                if tool == "stagectl":
                    r["st_up"], up = self.st_up(expect_changed=True)
                    r["st_events"] = up["events"]
                    r["st_report"] = up["report"]
                    if http_status(self.a.app_port) != 200:
                        raise Fail("stagectl: app /healthz is not 200 after up")
                    r["st_noop"], noop = self.st_up(expect_changed=False)
                    r["st_noop_events"] = noop["events"]
                    r["st_down"], r["st_down_lines"] = self.st_down()
                    self.check_clean(self.stack_label)
                else:
                    r["dc_up"], r["dc_up_cmd"] = self.compose_up()
                    if http_status(self.a.compose_port) != 200:
                        raise Fail("compose: app /healthz is not 200 after up")
                    r["dc_noop"], _ = self.compose_up(expect_noop=True)
                    r["dc_down"] = self.compose_down()
                    self.check_clean(self.compose_label)
            log(
                f"run {r['run']}/{self.a.runs} ({' first, '.join(order)} second): "
                f"up {r['st_up']:.2f}s vs {r['dc_up']:.2f}s, down {r['st_down']:.2f}s vs {r['dc_down']:.2f}s, "
                f"stagectl no-op up {r['st_noop']:.2f}s"
            )
            runs.append(r)
        return runs

    def lag_runs(self):
        out = []
        for i in range(self.a.lag_runs):
            time.sleep(self.a.settle)
            r = LagRun(self).go()
            self.st_down()
            self.check_clean(self.stack_label)
            summary = ", ".join(
                f"{s} {r['services'][s]['lag_lo_ms']:.1f}..{r['services'][s]['lag_hi_ms']:.1f} ms"
                for s in PROBED
                if r["services"][s].get("lag_lo_ms") is not None
            )
            log(f"lag run {i + 1}/{self.a.lag_runs}: {summary}")
            out.append(r)
        return out


def docker_floor(stack, reps=3):
    """What Docker itself takes here for the steps every tool must do: network and volume
    create/remove (labelled with the bench stack, so the script's cleanup covers them)."""
    out = {"net_create": [], "net_rm": [], "vol_create": [], "vol_rm": [], "ctr_create": [], "ctr_start": [], "ctr_rm": []}
    labels = {"org.stagectl.stack": stack}
    name = f"{stack}-floor"
    for _ in range(reps):
        out["net_create"].append(docker_request("POST", "/networks/create", {"Name": f"{name}-net", "Driver": "bridge", "Labels": labels})[1])
        out["vol_create"].append(docker_request("POST", "/volumes/create", {"Name": f"{name}-vol", "Labels": labels})[1])
        # A container on that network (image of the app, a sleep as PID 1): create, start, force-remove.
        st, dt = docker_request("POST", f"/containers/create?name={name}-ctr", {
            "Image": "stagectl/debian:bookworm", "Cmd": ["sleep", "60"], "Labels": labels,
            "HostConfig": {"NetworkMode": f"{name}-net"}})
        out["ctr_create"].append(dt)
        if st == 201:
            out["ctr_start"].append(docker_request("POST", f"/containers/{name}-ctr/start")[1])
            out["ctr_rm"].append(docker_request("DELETE", f"/containers/{name}-ctr?force=1")[1])
        out["net_rm"].append(docker_request("DELETE", f"/networks/{name}-net")[1])
        out["vol_rm"].append(docker_request("DELETE", f"/volumes/{name}-vol")[1])
    return out


# ------------------------------------------------------------------ readiness-lag measurement
def pg_attempt(ip):
    """Like pg_isready: a startup packet; 'R' (authentication request/ok) means accepting."""
    s = socket.create_connection((ip, 5432), timeout=0.5)
    t_conn = time.time()
    try:
        params = b"user\0postgres\0database\0shop\0\0"
        s.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
        b = s.recv(1)
        if b == b"R":
            try:
                s.sendall(b"X\0\0\0\4")
            except OSError:
                pass
            return True, t_conn, ""
        rest = s.recv(512)
        return False, t_conn, "57P03 starting up" if b"57P03" in rest else f"reply {b!r}"
    finally:
        s.close()


def redis_attempt(ip):
    s = socket.create_connection((ip, 6379), timeout=0.5)
    t_conn = time.time()
    try:
        s.sendall(b"PING\r\n")
        reply = s.recv(64)
        return reply.startswith(b"+PONG"), t_conn, reply[:30].decode(errors="replace")
    finally:
        s.close()


def http_attempt(ip):
    s = socket.create_connection((ip, 8080), timeout=0.5)
    t_conn = time.time()
    try:
        s.sendall(b"GET /healthz HTTP/1.0\r\nHost: bench\r\n\r\n")
        head = s.recv(64)
        ok = head.startswith(b"HTTP/1.") and head[9:12] == b"200"
        return ok, t_conn, head[:15].decode(errors="replace")
    finally:
        s.close()


ATTEMPT = {"db": pg_attempt, "cache": redis_attempt, "app": http_attempt}


def parse_docker_time(ts):
    """RFC 3339 with nanoseconds (Docker's log timestamps) -> epoch seconds (float)."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$", ts)
    if not m:
        raise ValueError(ts)
    whole = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return whole.timestamp() + float("0." + (m.group(2) or "0"))


class LagRun:
    """One cold `stagectl --json up` watched from outside.

    - stagectl's JSON lines are read as they come and stamped with the wall clock.
    - `docker events` (replayed from just before the launch, so nothing is missed) tells
      when each container started and when the job died.
    - On a container's start event a poller thread looks up its address on the stack network
      and probes it from the host every 5 ms (PostgreSQL startup packet / Redis PING / GET
      /healthz) until it first succeeds.
    - Afterwards, each service's own "ready" log line is read with Docker's timestamps.
    """

    def __init__(self, bench):
        self.b = bench
        self.lock = threading.Lock()
        self.polls = {}
        self.threads = []
        self.stop = threading.Event()
        self.container_start = {}
        self.job_die = None

    def poller(self, svc, name):
        info = docker_get(f"/containers/{name}/json") or {}
        nets = (info.get("NetworkSettings") or {}).get("Networks") or {}
        ip = (nets.get(f"{self.b.a.stack}-net") or {}).get("IPAddress")
        t_ip = time.time()
        res = {"ip": ip, "t_ip": t_ip, "attempts": 0, "ok": False}
        if not ip:
            res["error"] = "no address"
        else:
            last_fail_start = None
            last_err = ""
            deadline = time.time() + 30
            while not self.stop.is_set() and time.time() < deadline:
                t_a = time.time()
                try:
                    ok, t_conn, detail = ATTEMPT[svc](ip)
                except OSError as e:
                    ok, t_conn, detail = False, None, type(e).__name__
                res["attempts"] += 1
                if ok:
                    res.update(ok=True, t_ok_conn=t_conn, t_last_fail_start=last_fail_start, last_error=last_err)
                    break
                last_fail_start, last_err = t_a, detail
                time.sleep(POLL_INTERVAL)
        with self.lock:
            self.polls[svc] = res

    def go(self):
        a = self.b.a
        since = time.time() - 0.5
        ev = subprocess.Popen(
            ["docker", "events", "--since", f"{since:.3f}", "--format", "{{json .}}",
             "--filter", "type=container", "--filter", f"label={self.b.stack_label}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )

        def read_events():
            for line in ev.stdout:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                name = e.get("Actor", {}).get("Attributes", {}).get("name", "")
                svc = e.get("Actor", {}).get("Attributes", {}).get("org.stagectl.service", "")
                t = e.get("timeNano", 0) / 1e9
                if e.get("status") == "start":
                    self.container_start[svc] = t
                    if svc in ATTEMPT:
                        th = threading.Thread(target=self.poller, args=(svc, name), daemon=True)
                        th.start()
                        self.threads.append(th)
                elif e.get("status") == "die" and svc == "migrate":
                    self.job_die = t

        evt = threading.Thread(target=read_events, daemon=True)
        evt.start()

        lines = []  # (arrival wall time, parsed line)
        t_launch = time.time()
        p = subprocess.Popen(self.b.st + ["up"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for line in p.stdout:
            now = time.time()
            if line.startswith("{"):
                lines.append((now, json.loads(line)))
        err = p.stderr.read()
        rc = p.wait()
        if rc != 0:
            self.stop.set()
            ev.kill()
            raise Fail(f"stagectl up (lag run) exited {rc}\n{err[-2000:]}")
        for th in list(self.threads):
            th.join(35)
        self.stop.set()
        ev.kill()
        ev.wait()

        events = [(w, l) for w, l in lines if l.get("event") == "phase"]
        # stagectl's `t` counts from its own start. Wall time of an event = offset + t, where
        # offset is the smallest (arrival - t): a line can only arrive after it was written,
        # and the reader is idle most of the time, so the minimum is within a fraction of a ms.
        offset = min(w - l["t"] for w, l in events)
        ev_time = {}
        for _, l in events:
            ev_time.setdefault((l["service"], l["phase"]), offset + l["t"])

        out = {"t_launch": t_launch, "offset_minus_launch_ms": (offset - t_launch) * 1e3, "services": {}}
        for svc in PROBED:
            # Detection is the first event after the probe passed: `ready`, or for a database
            # whose migrations stagectl applies, `migrating` (they run before it is announced
            # ready to its dependents; compose runs them in a separate job the same way).
            ready = min((t for t in (ev_time.get((svc, "migrating")), ev_time.get((svc, "ready"))) if t is not None), default=None)
            probing = ev_time.get((svc, "probing"))
            poll = self.polls.get(svc, {})
            s = {"t_ready": ready, "t_probing": probing, "t_start_event": self.container_start.get(svc), "poll": poll}
            if ready and poll.get("ok"):
                s["lag_lo_ms"] = (ready - poll["t_ok_conn"]) * 1e3
                # The service was not accepting at some moment of the last failed attempt.
                if poll.get("t_last_fail_start"):
                    s["lag_hi_ms"] = (ready - poll["t_last_fail_start"]) * 1e3
                    s["censored"] = False
                else:
                    # The very first attempt succeeded: it was ready before we could look.
                    s["lag_hi_ms"] = float("nan")
                    s["censored"] = True
                s["resolution_ms"] = (poll["t_ok_conn"] - poll["t_last_fail_start"]) * 1e3 if poll.get("t_last_fail_start") else None
            # Method B: the service's own "accepting connections" log line, stamped by dockerd.
            _, lp = run(["docker", "logs", "--timestamps", f"{a.stack}-{svc}"], check=False)
            t_log = None
            for line in (lp.stdout + lp.stderr).splitlines():
                ts, _, msg = line.partition(" ")
                if READY_LOG[svc].search(msg):
                    try:
                        t_log = parse_docker_time(ts)
                    except ValueError:
                        continue
                    if t_log is not None:
                        break
            s["t_log"] = t_log
            if ready and t_log:
                s["log_lag_ms"] = (ready - t_log) * 1e3
            out["services"][svc] = s
        done = ev_time.get(("migrate", "completed"))
        out["job"] = {"t_die": self.job_die, "t_completed": done,
                      "lag_ms": (done - self.job_die) * 1e3 if done and self.job_die else None}
        return out


# ------------------------------------------------------------------------------ reporting
METHOD = """
**The stacks.** stagectl runs a copy of `stack.toml` (stack `bench`, absolute host paths, its
own host port, `secrets.env` with `api_key=bench`). docker-compose runs
[`scripts/bench/docker-compose.yml`](scripts/bench/docker-compose.yml) (project `benchc`): the
same images, environment, volumes, entrypoints and migrate job, with `depends_on`
conditions `service_healthy` (db, cache) and `service_completed_successfully` (migrate), and
healthchecks every 1 s that check what stagectl's probes check (`pg_isready`,
`redis-cli ping`, `GET /healthz` = 200 through bash's `/dev/tcp`: the shop image has no
curl and its `/bin/sh` is dash). One difference is kept on purpose: stagectl's app keeps
its `build` (each `up` runs the host command `scripts/build-shop.sh`, tars and hashes the
context and finds the cached image), compose uses the prebuilt `stagectl/shop:dev`.
`stack.toml`'s `[fixtures.*]` are left out of the bench copy: compose has nothing like them
(fixture loading and snapshots need a benchmark of their own). `bench.py check` compares the
two stacks before anything is measured and stops the benchmark when they differ.

**Timing runs ({runs}).** Each run does, for both tools and alternating which goes first:
cold `up` (the previous run's `down` removed the volumes), the `up` of the unchanged running
stack, then `down` with volumes. Wall time of each command with a monotonic clock, {settle} s
pause before each cold up; one warm-up up/down of each tool before the first run. After
each `up` the app's `/healthz` is checked through the published port, after each `down`
that nothing labelled with the stack is left (both outside the timings).
- stagectl: `stagectl --json up` (returns when every service is ready or the job exited 0),
  `stagectl --json down --volumes` (kills at once: the data is discarded anyway).
- docker-compose 1.29 has no `up --wait`, so its cold up is `docker-compose up -d` (which
  itself waits for db and cache healthy and the job done before starting the app, because of
  the `depends_on` conditions) followed by polling the Docker API every {compose_poll_ms:.0f} ms
  until db, cache and app are `healthy` and migrate exited 0; the time until then counts.
  Its down is `docker-compose down -v` (graceful stop, 10 s timeout; all three services exit
  promptly on their stop signals). Its no-op up is `up -d` + the same check.
- Cold does not mean initdb: `stagectl/postgres:15` carries a cluster initialised at image
  build, so a new db container (or a new named volume, which Docker fills from the image)
  only creates the `shop` database at its first start, for both tools alike.

**Readiness lag runs ({lag_runs}).** Separate cold ups (`stagectl --json up`), watched from
outside:
- Each JSON line of stagectl is stamped with the wall clock when read; the wall time of an
  event is `offset + t`, with `offset` the smallest `arrival - t` of the run (a line cannot
  arrive before it was written; the reader idles, so the minimum is within a fraction of a ms).
- `docker events` (replayed from just before the launch, so none is missed) gives each
  container's `start`; a poller thread then inspects the container for its address on the
  stack network and probes it directly from the host every {interval_ms:.0f} ms until the first
  success: a PostgreSQL startup packet answered with `R` (what `pg_isready` accepts), `PING`
  answered `+PONG`, `GET /healthz` answered 200. The service accepted work at some moment
  after the start of the last failed attempt and by the time the successful attempt's
  connection was accepted: the lag is between `ready − that connection` (lower bound) and
  `ready − last failed attempt` (upper bound). The difference, the poller's resolution, is
  about the poll interval plus one attempt. A negative lower bound means stagectl's own probe
  got through before the poller's next attempt. If the very first attempt already succeeded, the
  service was ready before the poller could look, only the lower bound is known and the run
  counts as "first attempt already ok".
- Cross-check without any polling: the service's own "accepting connections" log line
  (`database system is ready to accept connections`, `Ready to accept connections`,
  `shop listening on`), stamped by dockerd as it reads the line (`docker logs --timestamps`).
  For the app this is `listen()`, a little before its first 200 (which needs its first
  PostgreSQL and Redis connections).
- The pollers add load (a 2-CPU machine is shared with stagectl, dockerd and the services),
  so the lag runs are separate from the timing runs.
"""


def stat_cell(xs, unit="s", fmt="{:.2f}"):
    return f"{fmt.format(med(xs))} {unit} ({fmt.format(mn(xs))}–{fmt.format(mx(xs))})"


def timeline(runs, key="st_events"):
    """Median, over runs, of the time of each (service, phase) event in stagectl's JSON output."""
    per = {}
    for r in runs:
        seen = set()
        for e in r[key]:
            k = (e["service"], e["phase"])
            if k in seen:
                continue
            seen.add(k)
            per.setdefault(k, []).append(e["t"])
    return {k: med(v) for k, v in per.items()}


def render(a, facts, runs, lags, floor, started, finished, other_containers):
    L = []
    w = L.append
    st_up = [r["st_up"] for r in runs]
    dc_up = [r["dc_up"] for r in runs]
    st_down = [r["st_down"] for r in runs]
    dc_down = [r["dc_down"] for r in runs]
    st_noop = [r["st_noop"] for r in runs]
    dc_noop = [r["dc_noop"] for r in runs]
    up_ratio = med(st_up) / med(dc_up)
    down_ratio = med(st_down) / med(dc_down)

    # Readiness lag, per service: conservative (upper) bound, median and worst over runs.
    lag_hi = {s: [l["services"][s].get("lag_hi_ms") for l in lags] for s in PROBED}
    lag_lo = {s: [l["services"][s].get("lag_lo_ms") for l in lags] for s in PROBED}
    log_lag = {s: [l["services"][s].get("log_lag_ms") for l in lags] for s in PROBED}
    censored = {s: sum(1 for l in lags if l["services"][s].get("censored")) for s in PROBED}
    # Per run, the lag is taken as the largest of the two methods' values (the poller's upper
    # bound, or its lower bound when censored, and the log line's); a run is over the target
    # when that is above 50 ms.
    per_run = {s: [mx([l["services"][s].get(k) for k in ("lag_lo_ms", "lag_hi_ms", "log_lag_ms")]) for l in lags] for s in PROBED}
    worst = {s: mx(per_run[s]) for s in PROBED}
    over = {s: sum(1 for x in per_run[s] if x == x and x > 50) for s in PROBED}

    w(f"Measured {finished:%Y-%m-%d %H:%M} UTC by `{a.command}`: {a.runs} timing runs and {a.lag_runs} "
      f"readiness-lag runs ({(finished - started).total_seconds():.0f} s, after the builds and warm-ups).")
    w("")
    w("### Targets")
    w("")
    w("| target | measured (median) | verdict |")
    w("|---|---|---|")
    w(f"| cold `up` ≤ 0.6 × compose | {med(st_up):.2f} s / {med(dc_up):.2f} s = **{up_ratio:.2f}×** | {met(up_ratio <= 0.6)} |")
    w(f"| teardown ≤ 0.4 × compose | {med(st_down):.2f} s / {med(dc_down):.2f} s = **{down_ratio:.2f}×** | {met(down_ratio <= 0.4)} |")
    for s in PROBED:
        if over[s] == 0:
            verdict = "**met** in every run"
        elif med(per_run[s]) <= 50:
            verdict = f"met by the median, **NOT met** in {over[s]} of {len(lags)} runs"
        else:
            verdict = f"**NOT met** ({over[s]} of {len(lags)} runs over)"
        w(f"| readiness detected ≤ 50 ms after `{s}` accepts work | median between {med(lag_lo[s]):.0f} and "
          f"{med(lag_hi[s]):.0f} ms, worst {worst[s]:.0f} ms | {verdict} |")
    w("")
    w("### Results")
    w("")
    w("Median (min–max) wall time of the command, over the runs:")
    w("")
    w("| | stagectl | docker-compose | ratio |")
    w("|---|---|---|---|")
    w(f"| cold up, until every service is ready | {stat_cell(st_up)} | {stat_cell(dc_up)} | {up_ratio:.2f} |")
    w(f"| down, volumes included | {stat_cell(st_down)} | {stat_cell(dc_down)} | {down_ratio:.2f} |")
    w(f"| up of the unchanged running stack (no-op) | {stat_cell(st_noop)} | {stat_cell(dc_noop)} | {med(st_noop) / med(dc_noop):.2f} |")
    w("")
    w(f"Compose's cold up splits into `docker-compose up -d` {stat_cell([r['dc_up_cmd'] for r in runs])} "
      f"and the wait for the app's healthcheck after it returned.")
    w("")
    w("| run | order | stagectl up | compose up | stagectl down | compose down | stagectl no-op | compose no-op |")
    w("|---|---|---|---|---|---|---|---|")
    for r in runs:
        w(f"| {r['run']} | {r['order'][0]} first | {r['st_up']:.2f} | {r['dc_up']:.2f} | {r['st_down']:.3f} | "
          f"{r['dc_down']:.3f} | {r['st_noop']:.3f} | {r['dc_noop']:.2f} |")
    w("")
    w("#### Readiness detection lag (stagectl)")
    w("")
    w("Milliseconds from the moment the service accepts work to stagectl's `ready` event; "
      "median (min–max) over the lag runs:")
    w("")
    w("| service | probe | host poller: lower–upper bound | service's own log line | poller's resolution | first attempt already ok |")
    w("|---|---|---|---|---|---|")
    probe = {"db": "exec `pg_isready` (docker exec)", "cache": "tcp :6379", "app": "http `/healthz` → 200"}
    for s in PROBED:
        res = [l["services"][s].get("resolution_ms") for l in lags]
        w(f"| {s} | {probe[s]} | {stat_cell(lag_lo[s], 'ms', '{:.1f}')} – {stat_cell(lag_hi[s], 'ms', '{:.1f}')} | "
          f"{stat_cell(log_lag[s], 'ms', '{:.1f}')} | {med(res):.1f} ms | {censored[s]}/{len(lags)} |")
    jl = [l["job"]["lag_ms"] for l in lags]
    w("")
    w(f"The migrate job: {stat_cell(jl, 'ms', '{:.1f}')} from the container's `die` event (Docker's timestamp) "
      f"to stagectl's `completed` event.")
    w("")
    w("#### Where stagectl's cold up goes")
    w("")
    w("Median time (s since stagectl started) of each event in `stagectl --json up`, over the timing runs; "
      "the columns after it are the medians of the steps' durations:")
    w("")
    tl = timeline(runs)
    phases = ["image_ready", "waiting", "creating", "starting", "probing", "ready", "completed"]
    w("| service | " + " | ".join(phases) + " | create | start | probe/run |")
    w("|---|" + "---|" * (len(phases) + 3))

    def dur(svc, p0, p1):
        xs = []
        for r in runs:
            t = {}
            for e in r["st_events"]:
                t.setdefault((e["service"], e["phase"]), e["t"])
            if (svc, p0) in t and (svc, p1) in t:
                xs.append(t[(svc, p1)] - t[(svc, p0)])
        return f"{med(xs):.3f}" if xs else "–"

    for s in SERVICES:
        cells = [f"{tl[(s, p)]:.3f}" if (s, p) in tl else "–" for p in phases]
        end = "completed" if s == "migrate" else "ready"
        w(f"| {s} | " + " | ".join(cells) + f" | {dur(s, 'creating', 'starting')} | {dur(s, 'starting', 'probing')} | {dur(s, 'probing', end)} |")
    app_build = [next((e["t"] for e in r["st_events"] if e["service"] == "app" and e["phase"] == "image_ready"), None)
                 for r in runs]
    first_ev = [min(e["t"] for e in r["st_events"]) for r in runs]
    rep = [r["st_report"]["seconds"] for r in runs]
    w("")
    w(f"- Before the first event (Docker connect, container list, port preflight, network and volume): "
      f"{stat_cell(first_ev, 's', '{:.3f}')}.")
    w(f"- Engine time in the final report {stat_cell(rep)} vs the command's wall time {stat_cell(st_up)}.")
    w("- `start` is Docker's start call; db's probe time is PostgreSQL's first start (it creates the `shop` "
      "database, then starts the server); migrate's is the migrations running.")
    w(f"- The app's image step (host build command `build-shop.sh` = `cargo build --release -p shop`, context tar, "
      f"hash, cache check) ends at {stat_cell(app_build, 's', '{:.3f}')}, in parallel with db/cache/migrate.")
    noop_app = [next((e["t"] for e in r["st_noop_events"] if e["service"] == "app" and e["phase"] == "image_ready"), None)
                for r in runs]
    w(f"- In the no-op up ({stat_cell(st_noop, 's', '{:.3f}')}), the app's image step ends at "
      f"{stat_cell(noop_app, 's', '{:.3f}')}: most of it.")
    removed = []
    after = []
    for r in runs:
        evs = [l for l in r["st_down_lines"] if l.get("event") == "phase" and l.get("phase") == "removed"]
        rep_ = next((l for l in r["st_down_lines"] if "containers" in l and "seconds" in l), None)
        if evs and rep_:
            removed.append(max(e["t"] for e in evs))
            after.append(rep_["seconds"] - max(e["t"] for e in evs))
    w(f"- `down --volumes` ({stat_cell(st_down, 's', '{:.3f}')}): the four containers are force-removed in parallel "
      f"by {stat_cell(removed, 's', '{:.3f}')}; the network (then any volumes) take another "
      f"{stat_cell(after, 's', '{:.3f}')}.")
    f = {k: [x * 1e3 for x in v] for k, v in floor.items()}
    w(f"- Docker's own cost here, API calls timed directly after the runs (median of {len(floor['net_rm'])}): "
      f"network create {med(f['net_create']):.0f} ms, remove {med(f['net_rm']):.0f} ms; container create "
      f"{med(f['ctr_create']):.0f} ms, start {med(f['ctr_start']):.0f} ms, force-remove (running) "
      f"{med(f['ctr_rm']):.0f} ms (a `sleep` in `stagectl/debian:bookworm`); volume create "
      f"{med(f['vol_create']):.0f} ms, remove {med(f['vol_rm']):.0f} ms (empty). Every tool pays these; a "
      f"dependency chain pays a container start per level, and a network can only be removed once its "
      f"containers are gone.")
    w("")
    w("### Method")
    w("")
    w(METHOD.format(runs=a.runs, lag_runs=a.lag_runs, interval_ms=POLL_INTERVAL * 1e3,
                    compose_poll_ms=COMPOSE_POLL_INTERVAL * 1e3, settle=a.settle).strip())
    w("")
    L.extend(machine_section(a, facts, other_containers))
    return "\n".join(L) + "\n"


def main():
    if sys.argv[1:2] == ["check"]:
        ap = argparse.ArgumentParser(prog="bench.py check", description="Is the compose file equivalent to the manifest?")
        ap.add_argument("--manifest", required=True)
        ap.add_argument("--compose-file", required=True)
        a = ap.parse_args(sys.argv[2:])
        problems = check_equivalence(a.manifest, a.compose_file)
        for x in problems:
            log(f"not equivalent: {x}")
        return 1 if problems else 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stagectl", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--stack", required=True)
    ap.add_argument("--app-port", type=int, required=True)
    ap.add_argument("--compose-file", required=True)
    ap.add_argument("--project", required=True)
    ap.add_argument("--compose-port", type=int, required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--lag-runs", type=int, default=5)
    ap.add_argument("--settle", type=float, default=0.5, help="pause before each measured up (s)")
    add_output_args(ap, "scripts/bench-up.sh")
    a = ap.parse_args()
    sys.setswitchinterval(0.0005)  # pollers and readers: keep GIL hand-offs short

    started = datetime.datetime.now(datetime.timezone.utc)
    others = running_containers()
    b = Bench(a)
    try:
        runs = b.timing_runs()
        lags = b.lag_runs()
        floor = docker_floor(a.stack)
        b.check_clean(b.stack_label)
    except Fail as e:
        log(f"error: {e}")
        return 1
    finished = datetime.datetime.now(datetime.timezone.utc)
    facts = machine_facts()
    write_outputs(a, {"runs": runs, "lag_runs": lags, "facts": facts, "docker_floor": floor},
                  lambda: render(a, facts, runs, lags, floor, started, finished, others))
    return 0


if __name__ == "__main__":
    sys.exit(main())
