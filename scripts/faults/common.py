"""Shared by the parts of scripts/fault-suite.sh (standard library only).

Everything here talks to the real `stagectl` binary (a private copy made by the suite), the
Docker CLI and the run history (SQLite, read-only). Every stack the suite creates carries its
own name; everything it leaves is found by the `org.stagectl.stack` label.
"""

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

LABEL = "org.stagectl.stack"
TOKEN = "fault-suite-token-0123456789abcdef"


def log(part, msg):
    print(f"fault-suite {part}: {msg}", file=sys.stderr, flush=True)


def percentile(values, p):
    """Nearest-rank percentile of a list (None when empty)."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


# ------------------------------------------------------------------------------ processes


def run(args, env=None, timeout=300, cwd=None, stdin=subprocess.DEVNULL):
    """Runs a command; returns (code, stdout, stderr). A timeout kills it and gives code None."""
    try:
        p = subprocess.run(args, env=env, cwd=cwd, stdin=stdin, capture_output=True, timeout=timeout)
        return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace")
        err = (e.stderr or b"").decode(errors="replace")
        return None, out, err + f"\n[fault-suite: killed after {timeout}s]"


def docker(*args, timeout=120):
    code, out, _ = run(["docker", *args], timeout=timeout)
    return out if code == 0 else ""


def lines(text):
    return [l for l in text.splitlines() if l.strip()]


class Stagectl:
    """The binary, a stack directory and a state directory of its own."""

    def __init__(self, binary, stack_dir, state_dir, extra_env=None):
        self.binary = str(binary)
        self.dir = Path(stack_dir)
        self.manifest = self.dir / "stack.toml"
        self.state = Path(state_dir)
        self.env = dict(os.environ)
        for k in ("STAGECTL_TOKEN", "STAGECTL_TOKEN_FILE", "STAGECTL_FILE", "STAGECTL_LOCAL", "CI"):
            self.env.pop(k, None)
        self.env.update({"STAGECTL_STATE_DIR": str(self.state), "NO_COLOR": "1"})
        self.env.update(extra_env or {})

    def cmd(self, *args):
        return [self.binary, "-f", str(self.manifest), *args]

    def run(self, *args, env=None, timeout=300):
        e = dict(self.env)
        e.update(env or {})
        return run(self.cmd(*args), env=e, timeout=timeout)

    def spawn(self, *args, env=None, out=None):
        e = dict(self.env)
        e.update(env or {})
        f = open(out, "wb") if out else subprocess.DEVNULL
        return subprocess.Popen(self.cmd(*args), env=e, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)

    def up_json(self, env=None, timeout=300):
        """`--json up`: (code, report or None, stderr)."""
        code, out, err = self.run("--json", "up", env=env, timeout=timeout)
        return code, last_json(out), err

    # -------------------------------------------------------------------- run history

    def runs(self, immutable=False):
        """Rows of the runs table (read-only; [] when there is no database yet). `immutable`
        reads the main file only and creates no -wal/-shm file (right only when no process
        has the database open)."""
        db = self.state / "history.db"
        if not db.exists():
            return []
        mode = "immutable=1" if immutable else "mode=ro"
        for _ in range(50):
            try:
                conn = sqlite3.connect(f"file:{db}?{mode}", uri=True, timeout=5)
                try:
                    conn.row_factory = sqlite3.Row
                    return [dict(r) for r in conn.execute("SELECT * FROM runs ORDER BY id")]
                finally:
                    conn.close()
            except sqlite3.OperationalError as e:
                if "no such table" in str(e):
                    return []
                time.sleep(0.05)
        return []

    def run_log(self, run_id, last=3):
        db = self.state / "history.db"
        try:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
            try:
                rows = conn.execute("SELECT line FROM logs WHERE run_id = ? ORDER BY seq DESC LIMIT ?", (run_id, last)).fetchall()
            finally:
                conn.close()
            return [r[0].strip() for r in reversed(rows)]
        except sqlite3.Error:
            return []


def last_json(text):
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{") or line.startswith("["):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def all_ready(report):
    """Every service of an `up` report ready (jobs completed)."""
    if not report or not report.get("ok"):
        return False
    return all(s.get("outcome") in ("ready", "completed") for s in report.get("services", []))


def wait_for_run(sc, pid, within=60.0, proc=None):
    """Waits until the history has a run owned by `pid` that is running; returns its row."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for r in sc.runs():
            if r["owner_pid"] == pid and r["status"] in ("running", "succeeded", "failed", "cancelled"):
                return r
        if proc is not None and proc.poll() is not None:
            return None
        time.sleep(0.02)
    return None


# ---------------------------------------------------------------------------- Docker state


def labelled(stack):
    return f"label={LABEL}={stack}"


def orphans(stack):
    """What Docker still holds for the stack: counts by kind (the Docker CLI, not stagectl)."""
    f = labelled(stack)
    images = lines(docker("images", "-a", "--filter", f, "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"))
    tagged = [i for i in images if not i.startswith("<none>")]
    return {
        "containers": len(lines(docker("ps", "-aq", "--filter", f))),
        "networks": len(lines(docker("network", "ls", "-q", "--filter", f))),
        "volumes": len(lines(docker("volume", "ls", "-q", "--filter", f))),
        "mcheck_images": len([i for i in tagged if i.startswith("stagectl-mcheck/")]),
        "paused": paused(stack),
    }


def paused(stack):
    return len(lines(docker("ps", "-q", "--filter", labelled(stack), "--filter", "status=paused")))


def snapshot_debris(stack):
    """Images labelled with the stack that no later `up` can use: `*-raw` tags (a snapshot cut
    between its commit and its rebuild) and untagged leaf images (a build cut half-way)."""
    f = labelled(stack)
    raw = [l.split()[0] for l in lines(docker("images", "--filter", f, "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")) if l.split()[0].endswith("-raw")]
    dangling = lines(docker("images", "-q", "--filter", f, "--filter", "dangling=true"))
    return {"raw_tags": raw, "dangling": sorted(set(dangling))}


def remove_debris(stack):
    d = snapshot_debris(stack)
    for ref in d["raw_tags"] + d["dangling"]:
        docker("rmi", "-f", ref)


def images_of(stack):
    """IDs of every image labelled with the stack, intermediate (parent) images included."""
    return sorted(set(lines(docker("images", "-a", "-q", "--no-trunc", "--filter", labelled(stack)))))


def remove_stack(binary, stack, state_dir, snapshots=True):
    """Belt and braces: stagectl's own `down -v`, then whatever still carries the label."""
    env = dict(os.environ, STAGECTL_STATE_DIR=str(state_dir), STAGECTL_LOCAL="true")
    run([str(binary), "down", "--volumes", "--stack", stack], env=env, timeout=120)
    f = labelled(stack)
    for cid in lines(docker("ps", "-aq", "--filter", f)):
        docker("rm", "-f", "-v", cid)
    for nid in lines(docker("network", "ls", "-q", "--filter", f)):
        docker("network", "rm", nid)
    for vid in lines(docker("volume", "ls", "-q", "--filter", f)):
        docker("volume", "rm", "-f", vid)
    if snapshots:
        # Tagged first (removing one also removes its untagged parents), then what is left.
        for _ in range(3):
            refs = [l.split()[0] for l in lines(docker("images", "--filter", f, "--format", "{{.Repository}}:{{.Tag}}")) if not l.startswith("<none>")]
            refs += lines(docker("images", "-q", "--filter", f, "--filter", "dangling=true"))
            if not refs:
                break
            for ref in refs:
                docker("rmi", "-f", ref)


# ------------------------------------------------------------------------------- manifests


def shop_stack(stack, repo, directory):
    """The demo's shape with a job: PostgreSQL (fixtures from fixtures/shop, masked, snapshot; a
    secret in its environment), Redis, the demo's `migrate` job, and the shop app built from
    demo/shop (its binary prebuilt in demo/shop/dist). No host port."""
    d = Path(directory)
    (d / "fixtures").mkdir(parents=True, exist_ok=True)
    for f in sorted((Path(repo) / "fixtures" / "shop").iterdir()):
        (d / "fixtures" / f.name).write_bytes(f.read_bytes())
    (d / "stack.toml").write_text(
        f"""# Written by scripts/fault-suite.sh.
[stack]
name = "{stack}"

[services.db]
image = "stagectl/postgres:15"
env = {{ POSTGRES_DB = "shop", APP_PASSWORD = "${{secret:db_password}}" }}
ready = {{ postgres = 5432, timeout = "90s" }}

[services.cache]
image = "stagectl/redis:7"
ready = {{ tcp = 6379, timeout = "60s" }}

[services.migrate]
image = "stagectl/postgres:15"
job = true
depends_on = ["db"]
entrypoint = ["/bin/sh", "/migrate.sh"]
volumes = ["{repo}/demo/shop/migrate.sh:/migrate.sh:ro", "{repo}/demo/shop/migrations:/migrations:ro"]

[services.app]
build = {{ context = "{repo}/demo/shop" }}
depends_on = ["migrate", "cache"]
env = {{ DATABASE_URL = "postgres://postgres@db:5432/shop", REDIS_URL = "redis://cache:6379/", API_KEY = "${{secret:api_key}}" }}
ready = {{ http = "/healthz", port = 8080, timeout = "90s" }}

[fixtures.db]
files = ["fixtures/*.csv", "fixtures/*.sql"]
mask = {{ "customers.email" = "email", "customers.name" = "name", "customers.phone" = "phone", "reviews.customer_email" = "email" }}
sensitive = ["customers.email", "customers.name", "customers.phone", "reviews.customer_email"]
"""
    )
    return d / "stack.toml"


def touch_fixtures(directory, tag):
    """A new fixture input (a comment line), so the next load misses every snapshot."""
    p = Path(directory) / "fixtures" / "04_orders.sql"
    text = p.read_text().split("\n-- fault-suite ")[0].rstrip("\n")
    p.write_text(f"{text}\n-- fault-suite {tag}\n")


# ---------------------------------------------------------------------------------- daemon


class Daemon:
    """`stagectl daemon` on 127.0.0.1 (a free port), its pid written to `pid_file` so the
    suite's trap can stop it; stderr to `log_file`."""

    def __init__(self, sc, log_file, pid_file, extra=("--no-watch",)):
        self.sc = sc
        self.log_file = Path(log_file)
        env = dict(sc.env, STAGECTL_TOKEN=TOKEN)
        self.errf = open(self.log_file, "wb")
        self.proc = subprocess.Popen(
            sc.cmd("daemon", "--listen", "127.0.0.1:0", *extra), env=env, stdin=subprocess.DEVNULL, stdout=self.errf, stderr=self.errf
        )
        Path(pid_file).write_text(str(self.proc.pid))
        self.port = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.port is None:
            text = self.log_file.read_text(errors="replace")
            if "http://127.0.0.1:" in text:
                tail = text.split("http://127.0.0.1:", 1)[1]
                self.port = int("".join(ch for ch in tail[:6] if ch.isdigit()) or "0") or None
            elif self.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited ({self.proc.returncode}): {text}")
            time.sleep(0.05)
        if self.port is None:
            raise RuntimeError("the daemon did not say where it listens")

    @property
    def pid(self):
        return self.proc.pid

    def rss_kib(self):
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def threads(self):
        try:
            return len(os.listdir(f"/proc/{self.pid}/task"))
        except OSError:
            return 0

    def request(self, method, path, token=None, timeout=30):
        """(status, body bytes, seconds); status 0 when the connection failed."""
        import socket

        started = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
                auth = f"Authorization: Bearer {token}\r\n" if token else ""
                s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n".encode())
                buf = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
        except OSError:
            return 0, b"", time.monotonic() - started
        head, _, body = buf.partition(b"\r\n\r\n")
        try:
            code = int(head.split()[1])
        except (IndexError, ValueError):
            code = 0
        return code, body, time.monotonic() - started

    def json(self, method, path, token=TOKEN):
        code, body, _ = self.request(method, path, token)
        try:
            return code, json.loads(body or b"null")
        except ValueError:
            return code, None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.errf.close()


def rng_from_env():
    seed = int(os.environ.get("FAULT_SEED", "0") or "0") or random.SystemRandom().randrange(1, 2**31)
    return seed, random.Random(seed)


def write_result(path, summary, detail):
    Path(path).write_text(json.dumps({"summary": summary, "detail": detail}, indent=2, default=str))


def holds(image, needle):
    """Whether `docker image inspect` of an image shows `needle`."""
    return needle in docker("image", "inspect", image)
