#!/usr/bin/env python3
"""Measurement half of scripts/bench-daemon.sh (run that, not this).

Starts `stagectl daemon` on the bench stack (a manifest written by the wrapper), brings the
stack up through the API, then measures against the issue's targets:

  1. idle: VmRSS/VmHWM (/proc/PID/status) and CPU (utime+stime of /proc/PID/stat) over an
     idle window, with the stack running and nobody asking for the status;
  2. `GET /api/v1/status` latency under an open-loop load at a fixed rate on loopback
     (latency counted from each request's scheduled time), RSS after it; the peer: how long
     `docker-compose ps` (and `docker ps`, and `stagectl status`) take to say what runs;
  3. file save → reconcile start: append a line to the fixture file, then poll
     `GET /api/v1/runs` until the watcher's `up` run has been queued and started.

Writes the raw results as JSON and the BENCHMARKS.md section as Markdown. Standard library
only.

  daemon.py --stagectl BIN --manifest STACK_TOML --stack NAME --state-dir DIR --fixture F
            --compose-file FILE --project NAME --work DIR --json OUT.json --markdown OUT.md

Clocks: latencies and command durations use time.monotonic(). Save → reconcile compares our
write (time.time(), CLOCK_REALTIME) with the run's `queued_at`/`started_at`, which the daemon
writes from the same clock (RFC 3339, truncated to the millisecond).
"""

import argparse
import datetime
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Fail, add_output_args, logger, machine_facts, med, met, pct, polling, run, write_outputs  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
# The client floor's server: one write per response, no Nagle, its own process.
FLOOR_SERVER = r"""
import socket, socketserver
BODY = b'{"ok":true}'
RESP = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
class H(socketserver.StreamRequestHandler):
    disable_nagle_algorithm = True
    def handle(self):
        while True:
            line = self.rfile.readline()
            if not line:
                return
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            self.wfile.write(RESP)
class S(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
s = S(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""
PAGE = os.sysconf("SC_PAGE_SIZE")


log = logger("bench-daemon")


# ------------------------------------------------------------------------------- helpers
def parse_ts(s):
    """RFC 3339 UTC with ms (`2026-11-23T21:07:01.123Z`) → Unix seconds."""
    if s is None:
        return None
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def proc_status(pid):
    """VmRSS and VmHWM in kB."""
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "Threads"):
                out[k] = int(v.split()[0])
    return out


def proc_cpu_ticks(pid):
    """utime + stime of the process (all its threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as fh:
        text = fh.read()
    fields = text[text.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return int(fields[11]) + int(fields[12])


def cpu_times():
    """The machine's `cpu` line of /proc/stat: (total, steal, busy) in ticks."""
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    total = sum(f[:8])  # user nice system idle iowait irq softirq steal (guest is in user)
    return total, f[7] if len(f) > 7 else 0, total - f[3] - f[4]


def cpu_share(t0, t1):
    """Machine-wide busy and steal %, between two cpu_times()."""
    d = t1[0] - t0[0]
    return (100.0 * (t1[2] - t0[2]) / d, 100.0 * (t1[1] - t0[1]) / d) if d > 0 else (float("nan"), float("nan"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ------------------------------------------------------------------------------ the API
class Api:
    def __init__(self, port, token=None):
        self.port = port
        self.token = token
        self.conn = None

    def request(self, method, path, auth=False, timeout=10):
        """One request on a kept-alive connection (re-opened once if the server closed it)."""
        headers = {}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            try:
                self.conn.request(method, path, headers=headers)
                r = self.conn.getresponse()
                body = r.read()
                return r.status, body
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def json(self, method, path, auth=False, expect=(200,)):
        code, body = self.request(method, path, auth)
        if code not in expect:
            raise Fail(f"{method} {path}: HTTP {code}: {body[:300]!r}")
        return json.loads(body)

    def runs(self, limit=20):
        return self.json("GET", f"/api/v1/runs?limit={limit}")["runs"]

    def run_row(self, run_id):
        return self.json("GET", f"/api/v1/runs/{run_id}")["run"]

    def log_text(self, run_id):
        try:
            lines = self.json("GET", f"/api/v1/runs/{run_id}/log", auth=True)
            return "\n".join(l["line"] for l in lines)
        except Exception as e:  # noqa: BLE001 - only for an error message
            return f"(log unavailable: {e})"

    def wait_finished(self, run_id, timeout, every=0.1):
        for _ in polling(time.monotonic() + timeout, every):
            r = self.run_row(run_id)
            if r["status"] not in ("queued", "running"):
                return r
        raise Fail(f"run {run_id} did not finish within {timeout:.0f} s")


# ---------------------------------------------------------------------------- the bench
class Bench:
    def __init__(self, a):
        self.a = a
        self.env = dict(os.environ, STAGECTL_STATE_DIR=a.state_dir)
        self.env.pop("STAGECTL_TOKEN", None)
        self.env.pop("STAGECTL_TOKEN_FILE", None)
        self.daemon = None
        self.port = None
        self.api = None

    # --------------------------------------------------------------------- daemon process
    def start_daemon(self):
        a = self.a
        self.port = free_port()
        self.daemon_log = os.path.join(a.work, "daemon.log")
        argv = [a.stagectl, "-f", a.manifest, "daemon", "--listen", f"127.0.0.1:{self.port}"]
        log(f"starting `{' '.join(argv)}` (state dir {a.state_dir})")
        with open(self.daemon_log, "w") as err:
            self.daemon = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                           env=self.env, start_new_session=True)
        with open(os.path.join(a.work, "daemon.pid"), "w") as fh:
            fh.write(f"{self.daemon.pid}\n")
        t0 = time.monotonic()
        for _ in polling(t0 + 30, 0.02):
            with open(self.daemon_log) as fh:
                text = fh.read()
            if "stagectl daemon for stack" in text:
                break
            if self.daemon.poll() is not None:
                raise Fail(f"the daemon exited {self.daemon.returncode} before listening:\n{text[-2000:]}")
        else:
            raise Fail(f"the daemon did not say it listens within 30 s:\n{text[-2000:]}")
        self.startup_s = time.monotonic() - t0
        token_file = os.path.join(a.state_dir, "daemons", f"{a.stack}.token")
        mode = os.stat(token_file).st_mode & 0o777
        with open(token_file) as fh:
            token = fh.read().strip()
        self.token_mode = f"{mode:o}"
        self.api = Api(self.port, token)
        log(f"daemon pid {self.daemon.pid} listening on 127.0.0.1:{self.port} after {self.startup_s:.2f} s "
            f"(token file mode {self.token_mode})")

    def stop_daemon(self):
        if self.daemon is None or self.daemon.poll() is not None:
            return None
        t0 = time.monotonic()
        self.daemon.send_signal(signal.SIGTERM)
        try:
            rc = self.daemon.wait(15)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            self.daemon.wait()
            raise Fail("the daemon did not exit within 15 s of SIGTERM (killed)")
        return {"rc": rc, "seconds": time.monotonic() - t0}

    def mem(self):
        s = proc_status(self.daemon.pid)
        return {"rss_kb": s["VmRSS"], "hwm_kb": s["VmHWM"], "threads": s["Threads"]}

    # ----------------------------------------------------------------------- 1. stack up
    def bring_up(self):
        t0 = time.monotonic()
        r = self.api.json("POST", "/api/v1/up", auth=True, expect=(202,))
        run_id = r["run_id"]
        row = self.api.wait_finished(run_id, timeout=300, every=0.2)
        if row["status"] != "succeeded":
            raise Fail(f"up through the daemon (run {run_id}) {row['status']}: {row.get('error')}\n"
                       f"{self.api.log_text(run_id)[-3000:]}")
        log(f"stack up through the daemon: run {run_id} in {row['seconds']:.2f} s")
        return {"run_id": run_id, "seconds": row["seconds"], "wall_s": time.monotonic() - t0}

    # ---------------------------------------------------------------------------- 2. idle
    def idle(self):
        a = self.a
        log(f"idle: waiting {a.idle_wait:.0f} s, then measuring for {a.idle_window:.0f} s (nobody polls)")
        before_runs = self.api.runs(5)
        self.api.conn.close()
        self.api.conn = None
        time.sleep(a.idle_wait)
        pid = self.daemon.pid
        samples = []
        t0, c0, mt0 = time.monotonic(), proc_cpu_ticks(pid), cpu_times()
        m0 = self.mem()
        samples.append(m0["rss_kb"])
        end = t0 + a.idle_window
        while time.monotonic() < end:
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            samples.append(proc_status(pid)["VmRSS"])
        t1, c1, mt1 = time.monotonic(), proc_cpu_ticks(pid), cpu_times()
        machine_busy, _ = cpu_share(mt0, mt1)
        m1 = self.mem()
        cpu_s = (c1 - c0) / CLK_TCK
        wall = t1 - t0
        after_runs = self.api.runs(5)
        new_runs = [r for r in after_runs if r["id"] > (before_runs[0]["id"] if before_runs else 0)]
        res = {
            "window_s": wall,
            "cpu_s": cpu_s,
            "cpu_percent": 100.0 * cpu_s / wall,
            "rss_kb_start": m0["rss_kb"],
            "rss_kb_end": m1["rss_kb"],
            "rss_kb_max": max(samples),
            "hwm_kb": m1["hwm_kb"],
            "threads": m1["threads"],
            "runs_during_idle": len(new_runs),
            "machine_busy_percent": machine_busy,
        }
        log(f"idle: RSS {res['rss_kb_max'] / 1000:.1f} MB (max of {len(samples)} samples), HWM "
            f"{res['hwm_kb'] / 1000:.1f} MB, CPU {res['cpu_percent']:.3f}% ({cpu_s:.2f} s in {wall:.1f} s)")
        return res

    # ------------------------------------------------------------------ 3. status latency
    def status_load(self):
        a = self.a
        # The daemon's first status request ever refreshes the cache synchronously (Docker
        # calls in the request); it is reported on its own, not in the load.
        cold = Api(self.port)
        t0 = time.monotonic()
        code, body = cold.request("GET", "/api/v1/status")
        cold_ms = (time.monotonic() - t0) * 1e3
        if code != 200:
            raise Fail(f"GET /api/v1/status: HTTP {code}: {body[:300]!r}")
        doc = json.loads(body)
        services = {s.get("service"): s for s in doc.get("services", [])}
        time.sleep(1.5)  # let the 1-s refresher take over, as for any watcher of the page
        code, body = cold.request("GET", "/api/v1/status")
        doc = json.loads(body)
        cold.conn.close()

        log(f"status load: {a.rate:.0f} requests/s for {a.duration:.0f} s, open loop, {a.threads} threads "
            f"with kept-alive connections")
        mem_before = self.mem()
        c0, m0 = proc_cpu_ticks(self.daemon.pid), cpu_times()
        load = self.open_loop(self.port, a.rate, a.duration, "/api/v1/status")
        c1, m1 = proc_cpu_ticks(self.daemon.pid), cpu_times()
        machine_busy, machine_steal = cpu_share(m0, m1)
        ms, span, errors, slow = load["ms"], load["span"], load["errors"], load["slow"]
        body = load["body"]
        res = {
            "cold_first_ms": cold_ms,
            "requests": load["requests"],
            "completed": len(ms),
            "errors": len(errors),
            "error_kinds": sorted(set(errors)),
            "achieved_rps": len(ms) / span if span > 0 else float("nan"),
            "span_s": span,
            "p50_ms": pct(ms, 50),
            "p90_ms": pct(ms, 90),
            "p95_ms": pct(ms, 95),
            "p99_ms": pct(ms, 99),
            "p999_ms": pct(ms, 99.9),
            "max_ms": ms[-1] if ms else float("nan"),
            "min_ms": ms[0] if ms else float("nan"),
            "over5": sum(1 for x in ms if x > 5.0),
            "service_p50_ms": pct(load["service_ms"], 50),
            "service_p99_ms": pct(load["service_ms"], 99),
            "service_max_ms": load["service_ms"][-1],
            # (s after the load's start, ms) of every request over 5 ms: periodic or not?
            "slow": slow,
            "daemon_cpu_percent": 100.0 * (c1 - c0) / CLK_TCK / span,
            "machine_busy_percent": machine_busy,
            "machine_steal_percent": machine_steal,
            "mem_before": mem_before,
            "mem_after": self.mem(),
            "body_bytes": len(body),
            "services": {k: {"state": v.get("state"), "ready": v.get("ready")} for k, v in services.items()},
            "status_keys": sorted(doc.keys()),
        }
        log(f"status: p50 {res['p50_ms']:.2f} ms, p95 {res['p95_ms']:.2f}, p99 {res['p99_ms']:.2f}, max "
            f"{res['max_ms']:.1f} ms at {res['achieved_rps']:.1f} req/s, {res['errors']} errors; RSS after "
            f"{res['mem_after']['rss_kb'] / 1000:.1f} MB")
        # The client's own floor: the same loop against a minimal HTTP server (another process).
        res["client_floor"] = self.client_floor()
        return res

    def client_floor(self):
        """p50/p99 of the same client and load against a minimal keep-alive HTTP server in
        another Python process: how much of the measured latency is the client itself (GIL,
        threads, scheduling on this machine)."""
        a = self.a
        srv = subprocess.Popen([sys.executable, "-c", FLOOR_SERVER], stdout=subprocess.PIPE, text=True)
        try:
            port = int(srv.stdout.readline())
            res = self.open_loop(port, a.rate, 5.0)
        finally:
            srv.terminate()
            srv.wait()
        ms = res["ms"]
        sv = res["service_ms"]
        return {"requests": len(ms), "p50_ms": pct(ms, 50), "p99_ms": pct(ms, 99), "max_ms": ms[-1],
                "service_p50_ms": pct(sv, 50), "service_p99_ms": pct(sv, 99), "errors": res["errors"]}

    def open_loop(self, port, rate, duration, path="/"):
        """GETs `path` at a fixed `rate` for `duration` s from a few threads on kept-alive
        connections; each request is sent at its scheduled time (or as soon as a thread is
        free) and its latency counts from that time."""
        a = self.a
        total = int(rate * duration)
        lat = [None] * total
        errors = []
        last_body = [b""]
        lock = threading.Lock()
        counter = iter(range(total))
        start = time.monotonic() + 0.2

        def worker():
            api = Api(port)
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    break
                due = start + i / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                sent = time.monotonic()
                try:
                    code, body = api.request("GET", path, timeout=5)
                    done = time.monotonic()
                    if code != 200 or not body.startswith(b"{"):
                        errors.append(f"HTTP {code}")
                    last_body[0] = body
                except (OSError, http.client.HTTPException) as e:
                    done = time.monotonic()
                    errors.append(type(e).__name__)
                lat[i] = (done - due, done, due - start, done - sent)
            if api.conn:
                api.conn.close()

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(a.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done_l = [x for x in lat if x is not None]
        return {
            "requests": total,
            "ms": sorted(x[0] * 1e3 for x in done_l),
            # From our send to the end of the response: without our own lateness in sending.
            "service_ms": sorted(x[3] * 1e3 for x in done_l),
            "span": max(x[1] for x in done_l) - start,
            "errors": errors,
            "slow": [(round(x[2], 3), round(x[0] * 1e3, 2)) for x in done_l if x[0] > 0.005],
            "body": last_body[0],
        }

    def status_wrk(self):
        """The same rate from wrk (a C client; closed loop, each of 4 connections paced by a
        fixed delay after every response), when wrk is installed: its own overhead is far
        below the Python client's, so its p99 is the daemon's rather than the client's."""
        import shutil
        if not shutil.which("wrk"):
            return None
        conns = 4
        delay_ms = max(1, int(1000 * conns / self.a.rate) - 1)
        script = os.path.join(self.a.work, "pace.lua")
        with open(script, "w") as fh:
            fh.write(f"function delay()\n  return {delay_ms}\nend\n")
        out = run(["wrk", "-t2", f"-c{conns}", f"-d{self.a.duration:.0f}s", "--latency", "-s", script,
                   f"http://127.0.0.1:{self.port}/api/v1/status"])[1].stdout
        res = {"connections": conns, "delay_ms": delay_ms}
        unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] in ("50%", "75%", "90%", "99%"):
                num = parts[1].rstrip("usm")
                suffix = parts[1][len(num):]
                res[f"p{parts[0][:-1]}_ms"] = float(num) * unit[suffix]
            elif line.startswith("Requests/sec:"):
                res["rps"] = float(parts[1])
            elif "Latency" in line and len(parts) >= 4 and parts[0] == "Latency":
                num = parts[3].rstrip("usm")
                res["max_ms"] = float(num) * unit[parts[3][len(num):]]
            elif "Non-2xx" in line or "Socket errors" in line:
                res["errors"] = line.strip()
        log(f"wrk: p99 {res.get('p99_ms')} ms at {res.get('rps')} req/s")
        return res

    def sizes(self):
        """Latency of sequential GETs on one kept-alive connection, by response size: tiny_http
        writes through a 1024-byte buffer without TCP_NODELAY, so a response of more than one
        buffer meets Nagle's algorithm and the client's delayed ACK."""
        api = Api(self.port, self.api.token)
        out = []
        for path in ("/api/v1/health", "/api/v1/status", "/api/v1/runs?limit=1", "/api/v1/runs?limit=10", "/metrics", "/"):
            api.request("GET", path)
            ds = []
            for _ in range(20):
                t0 = time.monotonic()
                code, body = api.request("GET", path)
                ds.append((time.monotonic() - t0) * 1e3)
            out.append({"path": path, "bytes": len(body), "code": code, "median_ms": med(ds), "max_ms": max(ds)})
        api.conn.close()
        for x in out:
            log(f"kept-alive GET {x['path']}: {x['bytes']} bytes, median {x['median_ms']:.2f} ms")
        return out

    # --------------------------------------------------------------------------- 3b. peer
    def peer(self):
        a = self.a
        n = a.peer_runs
        compose = ["docker-compose", "-p", a.project, "-f", a.compose_file]
        log(f"peer: docker-compose -p {a.project} up -d (the same two services), then {n}× `ps`")
        run(compose + ["up", "-d"])
        try:
            # Both containers must be running, as the bench stack's are.
            for _ in polling(time.monotonic() + 60, 0.2):
                _, p = run(["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={a.project}"])
                if len(p.stdout.split()) == 2:
                    break
            else:
                raise Fail(f"compose project {a.project}: not both containers running after 60 s")
            run(compose + ["ps"])  # warm (page cache, Docker)
            compose_ps = []
            for _ in range(n):
                dt, p = run(compose + ["ps"])
                compose_ps.append(dt)
            compose_out = p.stdout
        finally:
            run(compose + ["down", "-v", "-t", "0"], check=False)
        docker_ps = []
        argv = ["docker", "ps", "--filter", f"label=org.stagectl.stack={a.stack}"]
        run(argv)
        for _ in range(n):
            dt, p = run(argv)
            docker_ps.append(dt)
        docker_rows = len(p.stdout.strip().splitlines()) - 1
        # stagectl's own CLI, without the daemon's cache: the uncached equivalent.
        st = []
        argv = [a.stagectl, "-f", a.manifest, "status"]
        run(argv, env=self.env)
        for _ in range(n):
            dt, p = run(argv, env=self.env)
            st.append(dt)
        res = {
            "compose_ps_s": compose_ps,
            "compose_rows": len([l for l in compose_out.splitlines()[2:] if l.strip()]),
            "docker_ps_s": docker_ps,
            "docker_rows": docker_rows,
            "stagectl_status_s": st,
        }
        log(f"peer: docker-compose ps median {med(compose_ps) * 1e3:.0f} ms, docker ps {med(docker_ps) * 1e3:.0f} ms, "
            f"stagectl status {med(st) * 1e3:.0f} ms")
        return res

    # ---------------------------------------------------------------- 4. save → reconcile
    def saves(self):
        a = self.a
        api = self.api
        last_id = max((r["id"] for r in api.runs(5)), default=0)
        out = []
        for n in range(1, a.saves + 1):
            time.sleep(a.settle)
            t_save = time.time()
            with open(a.fixture, "a") as fh:
                fh.write(f"-- bench-daemon save {n} at {t_save:.6f}\n")
            seen_queued = None
            row = None
            polls = 0
            for _ in polling(time.monotonic() + 10, 0.005):
                # limit=2 keeps the response under 1 KB: larger ones take ~40 ms each on a
                # kept-alive connection (see sizes()), which would make this poll every 45 ms.
                runs = api.runs(2)
                polls += 1
                watch = [r for r in runs if r["id"] > last_id and r["trigger"] == "watch"]
                if watch:
                    r = min(watch, key=lambda r: r["id"])
                    if seen_queued is None:
                        seen_queued = time.time()
                    if r["started_at"]:
                        row = r
                        break
            if row is None:
                raise Fail(f"save {n}: no `watch` run started within 10 s of the write (runs: {runs[:3]})")
            t_seen_started = time.time()
            q = parse_ts(row["queued_at"])
            s = parse_ts(row["started_at"])
            fin = api.wait_finished(row["id"], timeout=180)
            # Anything else the watcher queued for this one save (or for stagectl's own run)?
            time.sleep(0.5)
            later = [r for r in api.runs(20) if r["id"] > row["id"]]
            last_id = max([row["id"]] + [r["id"] for r in later])
            for r in later:
                if r["status"] in ("queued", "running"):
                    api.wait_finished(r["id"], timeout=180)
            rec = {
                "n": n,
                "run_id": row["id"],
                "save_to_queued_ms": (q - t_save) * 1e3,
                "save_to_started_ms": (s - t_save) * 1e3,
                "save_to_seen_queued_ms": (seen_queued - t_save) * 1e3,
                "save_to_seen_started_ms": (t_seen_started - t_save) * 1e3,
                "polls": polls,
                "status": fin["status"],
                "run_seconds": fin["seconds"],
                "snapshot": fin.get("snapshot"),
                "detail": fin.get("detail"),
                "error": fin.get("error"),
                "extra_runs": [{"id": r["id"], "operation": r["operation"], "trigger": r["trigger"],
                                "detail": r.get("detail")} for r in later],
            }
            log(f"save {n}: queued +{rec['save_to_queued_ms']:.0f} ms, started +{rec['save_to_started_ms']:.0f} ms "
                f"(run {row['id']} {fin['status']} in {fin['seconds'] or 0:.2f} s, snapshot {rec['snapshot']}, "
                f"detail {rec['detail']!r}){' extra runs: ' + str(rec['extra_runs']) if later else ''}")
            out.append(rec)
        return out


# ----------------------------------------------------------------------------- render
def render(a, facts, r, started, finished):
    L = []
    w = L.append
    idle, st, peer, saves = r["idle"], r["status"], r["peer"], r["saves"]

    def mb(kb):
        return f"{kb / 1000:.1f} MB"

    q = [s["save_to_queued_ms"] for s in saves]
    s_ = [s["save_to_started_ms"] for s in saves]
    compose_med = med(peer["compose_ps_s"]) * 1e3
    w(f"Measured {finished:%Y-%m-%d %H:%M} UTC by `{a.command}` ({(finished - started).total_seconds():.0f} s) on "
      f"{facts['nproc']} CPUs, Docker {facts['docker']}; stagectl {a.revision}, release build.")
    w("")
    w("### Targets")
    w("")
    w("| target | measured | verdict |")
    w("|---|---|---|")
    w(f"| idle RSS ≤ 20 MB | {mb(idle['rss_kb_max'])} (max of 1-s samples over {idle['window_s']:.0f} s; "
      f"peak since start {mb(idle['hwm_kb'])}) | {met(idle['rss_kb_max'] <= 20000)} |")
    w(f"| idle CPU < 0.5 % | {idle['cpu_percent']:.3f} % of one core ({idle['cpu_s']:.2f} s CPU in "
      f"{idle['window_s']:.0f} s) | {met(idle['cpu_percent'] < 0.5)} |")
    ok_rate = st["achieved_rps"] >= 0.98 * a.rate and st["errors"] == 0
    cf = st["client_floor"]
    verdict = met(st["p99_ms"] <= 5 and ok_rate)
    if ok_rate and st["p99_ms"] > 5 and cf["p99_ms"] > 5:
        verdict += (f" as measured; inconclusive: the client alone, against a trivial server, has p99 "
                    f"{cf['p99_ms']:.2f} ms here")
    w(f"| `GET /api/v1/status` p99 ≤ 5 ms at {a.rate:.0f} req/s (Python, open loop) | p99 **{st['p99_ms']:.2f} ms** (p50 "
      f"{st['p50_ms']:.2f}, max {st['max_ms']:.1f}) at {st['achieved_rps']:.1f} req/s, {st['errors']} errors; "
      f"status document {st['body_bytes']} bytes | {verdict} |")
    wk = r.get("status_wrk")
    if wk:
        w(f"| `GET /api/v1/status` p99 ≤ 5 ms at {a.rate:.0f} req/s (wrk, paced) | p99 **{wk['p99_ms']:.2f} ms** "
          f"(p50 {wk['p50_ms']:.2f}, p90 {wk['p90_ms']:.2f}, max {wk.get('max_ms', float('nan')):.1f}) at "
          f"{wk['rps']:.1f} req/s, {wk['connections']} connections, {wk['delay_ms']} ms pause after each response"
          f"{'; ' + wk['errors'] if 'errors' in wk else ''} | {met(wk['p99_ms'] <= 5)} |")
    w(f"| file save → reconcile start ≤ 200 ms | save → started: median **{med(s_):.0f} ms**, max {max(s_):.0f} ms "
      f"(save → queued: median {med(q):.0f}, max {max(q):.0f}) | "
      f"{met(max(s_) <= 200) if max(s_) <= 200 or med(s_) > 200 else 'met by the median, **NOT met** by the max'} |")
    w("")
    w("### Results")
    w("")
    w(f"**Idle** (stack `{a.stack}` running, watcher on, no client for {a.idle_wait:.0f} s before and during the "
      f"{idle['window_s']:.0f}-s window): RSS {mb(idle['rss_kb_start'])} at the start, {mb(idle['rss_kb_end'])} at "
      f"the end, VmHWM {mb(idle['hwm_kb'])} (after the `up` run); {idle['threads']} threads; "
      f"{idle['runs_during_idle']} runs during the window. The machine's CPUs were {idle['machine_busy_percent']:.0f} % "
      f"busy meanwhile (all processes).")
    w("")
    w(f"**Status latency**: {st['requests']} requests scheduled at a fixed {a.rate:.0f}/s for {a.duration:.0f} s from "
      f"{a.threads} Python threads on kept-alive connections; latency from each request's scheduled time to the end "
      f"of its response (so a slow response delays, and is charged to, the requests behind it).")
    w("")
    w("| p50 | p90 | p95 | p99 | p99.9 | max | achieved rate | errors | over 5 ms |")
    w("|---|---|---|---|---|---|---|---|---|")
    over5 = "–"
    if "over5" in st:
        over5 = str(st["over5"])
    w(f"| {st['p50_ms']:.2f} ms | {st['p90_ms']:.2f} ms | {st['p95_ms']:.2f} ms | {st['p99_ms']:.2f} ms | "
      f"{st['p999_ms']:.2f} ms | {st['max_ms']:.1f} ms | {st['achieved_rps']:.1f} req/s | {st['errors']} | {over5} |")
    w("")
    cf = st["client_floor"]
    w(f"- Counted from our send instead of the scheduled time (i.e. without the client's own lateness): p50 "
      f"{st['service_p50_ms']:.2f} ms, p99 {st['service_p99_ms']:.2f} ms, max {st['service_max_ms']:.1f} ms.")
    w(f"- The first status request, after the idle window, took {st['cold_first_ms']:.1f} ms: the daemon's first "
      f"status request ever refreshes the cache (Docker calls) inside the request; the load started 1.5 s later, "
      f"with the 1-s background refresher running.")
    w(f"- The client's own floor, the same client and rate for 5 s against a minimal HTTP server (another Python "
      f"process, one write per response): p50 {cf['p50_ms']:.2f} ms, p99 {cf['p99_ms']:.2f} ms, "
      f"max {cf['max_ms']:.1f} ms (from our send: p50 {cf['service_p50_ms']:.2f}, p99 {cf['service_p99_ms']:.2f} ms).")
    slow = st["slow"]
    if slow:
        shown = ", ".join(f"{t:.2f} s ({v:.1f} ms)" for t, v in slow[:10])
        w(f"- The {len(slow)} requests over 5 ms, by scheduled time after the load's start: {shown}"
          f"{' …' if len(slow) > 10 else ''}.")
    w(f"- During the load the machine's CPUs were {st['machine_busy_percent']:.0f} % busy (all processes, the "
      f"client included), steal {st['machine_steal_percent']:.1f} %.")
    w(f"- The daemon used {st['daemon_cpu_percent']:.1f} % of one core during the load; response body "
      f"{st['body_bytes']} bytes. RSS {mb(st['mem_before']['rss_kb'])} before, "
      f"{mb(st['mem_after']['rss_kb'])} after the load (VmHWM {mb(st['mem_after']['hwm_kb'])}).")
    w("")
    w(f"**Peer**: docker-compose has no daemon and no status API, so there is no like-for-like. The comparison is "
      f"\"how long does asking what runs take\": `docker-compose -p {a.project} ps` on a compose project with the "
      f"same two services running (a fresh Python process, then Docker API calls, each time), against one "
      f"`GET /api/v1/status` (a cached document). Median of {a.peer_runs} runs each, after one untimed:")
    w("")
    w("| asking what runs | median | min–max | status p50 / this |")
    w("|---|---|---|---|")
    for name, xs in (("`GET /api/v1/status` (daemon, p50 under load)", None),
                     (f"`docker-compose -p {a.project} ps`", peer["compose_ps_s"]),
                     (f"`docker ps --filter label=org.stagectl.stack={a.stack}`", peer["docker_ps_s"]),
                     (f"`stagectl -f … status` (CLI, no cache)", peer["stagectl_status_s"])):
        if xs is None:
            w(f"| {name} | {st['p50_ms']:.2f} ms | {st['min_ms']:.2f}–{st['max_ms']:.1f} ms | – |")
        else:
            m = med(xs) * 1e3
            w(f"| {name} | {m:.0f} ms | {min(xs) * 1e3:.0f}–{max(xs) * 1e3:.0f} ms | {st['p50_ms'] / m:.4f} |")
    w("")
    w(f"Status p50 / compose median = {st['p50_ms']:.2f} / {compose_med:.0f} = **{st['p50_ms'] / compose_med:.4f}**.")
    w("")
    w(f"**Save → reconcile start**: {len(saves)} times, a comment line appended to the fixture file "
      f"(`fixtures/seed.sql`, `[fixtures.db]`), our wall clock read just before the write; the watcher's `up` run "
      f"found by polling `GET /api/v1/runs?limit=2` every 5 ms; deltas from the run's own `queued_at`/`started_at` "
      f"(daemon's clock, truncated to the ms). Each run finished before the next save ({a.settle:.1f} s pause).")
    w("")
    w("| save | → queued | → started | poller saw it started | run | status | run time | snapshot |")
    w("|---|---|---|---|---|---|---|---|")
    for x in saves:
        w(f"| {x['n']} | {x['save_to_queued_ms']:.0f} ms | {x['save_to_started_ms']:.0f} ms | "
          f"{x['save_to_seen_started_ms']:.0f} ms | {x['run_id']} | {x['status']} | "
          f"{(x['run_seconds'] or 0):.2f} s | {x['snapshot'] or '–'} |")
    w(f"| **median (max)** | **{med(q):.0f} ({max(q):.0f}) ms** | **{med(s_):.0f} ({max(s_):.0f}) ms** | "
      f"{med([x['save_to_seen_started_ms'] for x in saves]):.0f} ms | | | "
      f"{med([x['run_seconds'] for x in saves]):.2f} s | |")
    w("")
    extra = sum(len(x["extra_runs"]) for x in saves)
    failed = [x for x in saves if x["status"] != "succeeded"]
    failed_text = "; ".join(f"run {x['run_id']}: {x['error']}" for x in failed)
    w(f"- Every run's detail: `{saves[0]['detail']}`. Runs the watcher queued beyond one per save: {extra}. "
      f"Runs not succeeded: {len(failed)}{' (' + failed_text + ')' if failed else ''}. RSS after the "
      f"{len(saves)} runs {mb(r['final_mem']['rss_kb'])}, VmHWM {mb(r['final_mem']['hwm_kb'])}.")
    w(f"- The watcher batches events for 60 ms before queuing (`stagectl/src/daemon/watch.rs`, `WINDOW`), which is "
      f"most of save → queued. A fixture change makes a new snapshot key, so each run recreates `db` and reloads the "
      f"fixtures (run time above); the target is about the start.")
    w("")
    w("**Response size** (20 sequential GETs on one kept-alive connection each, after the saves; median):")
    w("")
    w("| request | response body | median | max |")
    w("|---|---|---|---|")
    for x in r["sizes"]:
        w(f"| `GET {x['path']}` | {x['bytes']} bytes | {x['median_ms']:.2f} ms | {x['max_ms']:.1f} ms |")
    w("")
    slow_sizes = [x for x in r["sizes"] if x["median_ms"] > 20]
    if slow_sizes:
        small = max((x["bytes"] for x in r["sizes"] if x["median_ms"] <= 20), default=0)
        big = min(x["bytes"] for x in slow_sizes)
        w(f"Responses of {big} bytes and more take about 40 ms more than those of {small} bytes and less: tiny_http "
          f"writes a response through a 1024-byte buffer on a socket without `TCP_NODELAY`, so the part after the "
          f"first kilobyte waits for the client's delayed ACK (Nagle). The status document of this two-service "
          f"stack without checks is {st['body_bytes']} bytes, under that line; a larger stack's (more services, "
          f"check results) is not, and its `GET /api/v1/status` would take about 40 ms on a kept-alive connection.")
        w("")
    w("### Method")
    w("")
    w(f"- The bench stack (temp dir): `[stack] name = \"{a.stack}\"`; `db` = `stagectl/postgres:15`, "
      f"`ready = {{ postgres = 5432, timeout = \"30s\" }}`; `web` = `stagectl/debian:bookworm`, "
      f"`command = [\"sleep\", \"infinity\"]`, `ready = {{ exec = [\"true\"] }}`; "
      f"`[fixtures.db] files = [\"fixtures/*.sql\"]` (one small `.sql` file). Own state dir "
      f"(`STAGECTL_STATE_DIR`), generated token (file mode {r['token_mode']}).")
    w(f"- `stagectl -f stack.toml daemon --listen 127.0.0.1:PORT` from a private copy of the release binary; the stack "
      f"brought up once with `POST /api/v1/up` (run {r['up']['run_id']}, {r['up']['seconds']:.2f} s), the run "
      f"awaited by polling `GET /api/v1/runs/ID`; then the steps above in this order: idle, status load, peer, "
      f"saves. Stopped with SIGTERM (exit {r['stop']['rc'] if r.get('stop') else '?'} after "
      f"{r['stop']['seconds'] if r.get('stop') else float('nan'):.2f} s).")
    w("- Idle: `/proc/PID/status` VmRSS every second and VmHWM; CPU = Δ(utime+stime) of `/proc/PID/stat` (all "
      f"threads; clock tick {1000 // CLK_TCK} ms) over the window's monotonic wall time, in % of one core. MB = 10⁶ bytes.")
    w("- Percentiles are nearest-rank over all requests.")
    w(f"- Machine: {facts['nproc']} CPUs ({facts['cpu']}), {facts['mem']}, Linux {facts['kernel']}; Docker engine "
      f"{facts['docker']}; docker-compose {facts['compose']}. Load average at the start {a.load_start}, at the end "
      f"{facts['load']}. Other work may have been running on the machine (shared 2-CPU VM).")
    return "\n".join(L) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stagectl", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--stack", required=True)
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--fixture", required=True)
    ap.add_argument("--compose-file", required=True)
    ap.add_argument("--project", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--idle-wait", type=float, default=10)
    ap.add_argument("--idle-window", type=float, default=60)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--peer-runs", type=int, default=20)
    ap.add_argument("--saves", type=int, default=10)
    ap.add_argument("--settle", type=float, default=1.0, help="pause before each save (s)")
    add_output_args(ap, "scripts/bench-daemon.sh")
    a = ap.parse_args()
    sys.setswitchinterval(0.0005)  # keep GIL hand-offs short between the load threads

    started = datetime.datetime.now(datetime.timezone.utc)
    b = Bench(a)
    r = {}
    try:
        b.start_daemon()
        r["token_mode"] = b.token_mode
        r["startup_s"] = b.startup_s
        r["up"] = b.bring_up()
        r["idle"] = b.idle()
        r["status"] = b.status_load()
        r["status_wrk"] = b.status_wrk()
        r["peer"] = b.peer()
        r["saves"] = b.saves()
        r["sizes"] = b.sizes()
        r["final_mem"] = b.mem()
        r["stop"] = b.stop_daemon()
    except Fail as e:
        log(f"error: {e}")
        return 1
    finally:
        try:
            b.stop_daemon()
        except Fail as e:
            log(f"error: {e}")
    finished = datetime.datetime.now(datetime.timezone.utc)
    facts = machine_facts(engine_details=False)
    write_outputs(a, {"results": r, "facts": facts}, lambda: render(a, facts, r, started, finished))
    return 0


if __name__ == "__main__":
    sys.exit(main())
