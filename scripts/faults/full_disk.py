"""Part c: a full state disk (a 4 MB tmpfs mounted on the state directory; needs root).

Scenarios, each on a fresh tmpfs (stack: one `sleep infinity` service):
  c1 daemon: the daemon runs, the disk fills; POST /api/v1/up must answer 503 and start nothing;
     GET /api/v1/status must still answer 200.
  c2 CLI, history closed: a first `up` creates the history, the disk fills, `--local up` again:
     the operation runs, and the CLI must say the history is unavailable.
  c3 CLI, history open elsewhere: as c2 while the daemon holds the history open (its WAL and
     shared-memory files exist, so the CLI can open the database and only its first write fails).
  c4 CLI, disk fills mid-run: `--local up` of a service whose readiness takes ~4 s; the disk is
     filled once the run is recorded as running. Recorded: the exit code, what the CLI said, and
     the run's status in the history once space is freed.
A scenario passes when the operation's outcome is right (c1: 503 and nothing started; c2-c4: the
stack is up, exit 0) and nothing is silently unrecorded: the run is in the history, or the CLI
printed a warning that it is not.
"""

import argparse
import os
import subprocess
import time
from pathlib import Path

from common import TOKEN, Daemon, Stagectl, log, remove_stack, wait_for_run, write_result

MANIFEST = """# Written by scripts/fault-suite.sh.
[stack]
name = "{stack}"

[services.web]
image = "stagectl/debian:bookworm"
command = ["sleep", "infinity"]
ready = {{ exec = ["{ready}"], timeout = "60s", interval = "200ms" }}
"""


class Tmpfs:
    def __init__(self, path, size="4m"):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.ok = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(self.path)], capture_output=True).returncode == 0

    def fill(self):
        with open(self.path / "filler", "wb") as f:
            block = b"\0" * 65536
            try:
                while True:
                    f.write(block)
            except OSError:
                pass
            try:
                f.flush()
            except OSError:
                pass

    def free(self):
        try:
            os.unlink(self.path / "filler")
        except OSError:
            pass

    def umount(self):
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


def runs_of(sc, immutable=False):
    return [(r["id"], r["operation"], r["status"]) for r in sc.runs(immutable)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stagectl", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--stack", required=True)
    ap.add_argument("--result", required=True)
    a = ap.parse_args()
    P = "c"
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    results = {}

    def fresh(name, ready="true"):
        d = work / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "stack.toml").write_text(MANIFEST.format(stack=a.stack, ready=ready))
        disk = Tmpfs(d / "state")
        sc = Stagectl(a.stagectl, d, d / "state")
        return sc, disk

    def containers():
        from common import docker, labelled, lines

        return len(lines(docker("ps", "-q", "--filter", labelled(a.stack))))

    # c1: the daemon refuses with 503.
    sc, disk = fresh("c1")
    if not disk.ok:
        print("c full state disk: SKIPPED: cannot mount a tmpfs (needs root)")
        write_result(a.result, {"skipped": True}, {})
        return 0
    try:
        remove_stack(a.stagectl, a.stack, sc.state)
        d = Daemon(sc, work / "c1-daemon.log", work / "daemon.pid")
        try:
            before = d.request("GET", "/api/v1/status")[0]
            disk.fill()
            code, body, _ = d.request("POST", "/api/v1/up", TOKEN)
            time.sleep(1)
            status_after = d.request("GET", "/api/v1/status")[0]
            started = containers()
        finally:
            d.stop()
        results["c1"] = {
            "status_before": before,
            "post_up": code,
            "body": body.decode(errors="replace")[:300],
            "status_after": status_after,
            "containers_started": started,
            "ok": code == 503 and started == 0 and status_after == 200,
        }
    finally:
        disk.umount()
    remove_stack(a.stagectl, a.stack, sc.state)

    # c2 / c3: the CLI on a full disk, the history closed / held open by the daemon.
    for name, hold in (("c2", False), ("c3", True)):
        sc, disk = fresh(name)
        try:
            code, out, err = sc.run("--local", "up", timeout=300)
            sc.run("--local", "down", "-v", timeout=300)
            d = Daemon(sc, work / f"{name}-daemon.log", work / "daemon.pid") if hold else None
            try:
                # Without the daemon nothing holds the database: read it without leaving the
                # -wal/-shm files a normal reader would leave behind (that is c3's case).
                runs_before = runs_of(sc, immutable=not hold)
                wal_files = sorted(p.name for p in sc.state.iterdir() if p.name.startswith("history.db-"))
                disk.fill()
                code, out, err = sc.run("--local", "up", timeout=300)
                up = containers()
                disk.free()
                runs_after = runs_of(sc)
            finally:
                if d:
                    d.stop()
            warned = [l for l in (out + err).splitlines() if "warning" in l and "history" in l]
            recorded = len(runs_after) > len(runs_before)
            results[name] = {
                "history_held_open": hold,
                "wal_files_at_fill": wal_files,
                "exit": code,
                "containers": up,
                "warning": warned[:2],
                "recorded": recorded,
                "runs_after": runs_after[-2:],
                "ok": code == 0 and up == 1 and (recorded or bool(warned)),
            }
        finally:
            disk.umount()
        remove_stack(a.stagectl, a.stack, sc.state)

    # c4: the disk fills during a CLI run.
    sc, disk = fresh("c4")
    # Readiness that takes a while: a file the service makes 4 s after it starts.
    (sc.dir / "stack.toml").write_text(
        MANIFEST.format(stack=a.stack, ready="true").replace(
            'command = ["sleep", "infinity"]', 'command = ["sh", "-c", "sleep 4; touch /tmp/ok; exec sleep infinity"]'
        ).replace('exec = ["true"]', 'exec = ["test", "-f", "/tmp/ok"]')
    )
    try:
        code, out, err = sc.run("--local", "up", timeout=300)
        sc.run("--local", "down", "-v", timeout=300)
        proc = subprocess.Popen(sc.cmd("--local", "up"), env=sc.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        row = wait_for_run(sc, proc.pid, within=60, proc=proc)
        disk.fill()
        out, err = proc.communicate(timeout=300)
        code = proc.returncode
        text = out.decode(errors="replace") + err.decode(errors="replace")
        up = containers()
        disk.free()
        # The next operation opens the history, which marks the runs of dead processes.
        sc.run("--local", "up", timeout=300)
        rec = next((r for r in sc.runs() if row and r["id"] == row["id"]), None)
        warned = [l for l in text.splitlines() if "warning" in l and "histor" in l]
        status = rec["status"] if rec else "not recorded"
        results["c4"] = {
            "exit": code,
            "containers": up,
            "history_status": status,
            "history_error": (rec or {}).get("error"),
            "warning": warned[:2],
            "ok": code == 0 and up == 1 and (status == "succeeded" or bool(warned)),
        }
    finally:
        disk.umount()
    remove_stack(a.stagectl, a.stack, sc.state)

    for k, v in results.items():
        log(P, f"{k}: {v}")
    failed = [k for k, v in results.items() if not v["ok"]]
    write_result(a.result, {"failed": failed}, results)
    c1, c2, c3, c4 = (results[k] for k in ("c1", "c2", "c3", "c4"))

    def cli(r):
        said = "warned" if r["warning"] else "no warning"
        return f"exit {r['exit']}, {'recorded' if r.get('recorded') else 'not recorded'}, {said}"

    print(
        f"c full state disk: {'PASS' if not failed else 'FAIL ' + ','.join(failed)}: "
        f"daemon POST up -> {c1['post_up']}, status -> {c1['status_after']}, containers started {c1['containers_started']}; "
        f"CLI, history closed: {cli(c2)}; CLI, history open: {cli(c3)}; "
        f"disk full mid-run: exit {c4['exit']}, run {c4['history_status']}, {'warned' if c4['warning'] else 'no warning'}"
    )
    return 0 if not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
