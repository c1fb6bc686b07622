"""Part b: the Docker engine lost mid-run.

A relay (a Unix socket in the work dir) stands in front of the real Docker socket, like the
Rust test's CuttableDocker; `stagectl up` talks to it through DOCKER_HOST. At a uniform random
time in [0, 0.9 D] after the run is recorded as running (D: the variant's measured duration),
the relay is cut: its socket file disappears and every open connection is shut down. Variants
in turn: up-cold (fixtures changed: load + snapshot commit) and up-warm (snapshot restored).
Expected: exit code 3 whenever the cut hit the run's work (a request unanswered at the cut, or
a warning/failure the run printed); a cut after the run's last call may end 0. No
container of the stack left paused (checked at exit and again once the engine has finished a
commit it had started, which pauses its container; up to 120 s); the next `up` through the
real socket converges; after `down -v` nothing labelled with the stack is left. Also counted:
snapshot debris (a `*-raw` tag or an untagged leaf image labelled with the stack).
"""

import argparse
import os
import socket
import threading
import time

from common import (
    Stagectl,
    all_ready,
    holds,
    log,
    orphans,
    paused,
    remove_debris,
    remove_stack,
    rng_from_env,
    shop_stack,
    snapshot_debris,
    touch_fixtures,
    wait_for_run,
    write_result,
)

VARIANTS = ["up-cold", "up-warm"]


class Relay:
    """Unix socket relay to the real engine; `cut()` is the engine dying."""

    def __init__(self, path, real):
        self.path = path
        self.real = real
        self.socks = []
        self.lock = threading.Lock()
        self.cut_done = False
        # Per connection: bytes sent by stagectl that the engine has not answered yet.
        self.awaiting = {}
        self.inflight_at_cut = 0
        if os.path.exists(path):
            os.unlink(path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                engine.connect(self.real)
            except OSError:
                client.close()
                continue
            with self.lock:
                if self.cut_done:
                    client.close()
                    engine.close()
                    continue
                self.socks += [client, engine]
                self.awaiting[client.fileno()] = False
            key = client.fileno()
            threading.Thread(target=self._pipe, args=(client, engine, key, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(engine, client, key, False), daemon=True).start()

    def _pipe(self, src, dst, key, to_engine):
        # EOF is passed on as EOF (a half-close): `docker exec` with stdin ends its input that
        # way and still reads the command's output and exit. Shutting down both directions
        # here would cut every fixture load (COPY FROM STDIN) short.
        how = socket.SHUT_WR
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self.lock:
                    if self.cut_done:
                        break
                    self.awaiting[key] = to_engine
                dst.sendall(data)
        except OSError:
            how = socket.SHUT_RDWR
        if not to_engine:
            with self.lock:
                if not self.cut_done:
                    self.awaiting[key] = False  # the engine closed: nothing left to answer
        try:
            dst.shutdown(how)
        except OSError:
            pass

    def host(self):
        return f"unix://{self.path}"

    def cut(self):
        """The engine dies, as in the Rust test's CuttableDocker: its socket file disappears
        (a later connect fails: no such file) and every open connection is cut."""
        with self.lock:
            self.cut_done = True
            self.inflight_at_cut = sum(self.awaiting.values())
            try:
                os.unlink(self.path)
            except OSError:
                pass
            for s in self.socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.socks = []

    def close(self):
        try:
            os.unlink(self.path)
        except OSError:
            pass
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stagectl", required=True)
    ap.add_argument("--repo", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--stack", required=True)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--result", required=True)
    a = ap.parse_args()
    seed, rng = rng_from_env()
    P = "b"
    host = os.environ.get("DOCKER_HOST", "")
    real = host[len("unix://") :] if host.startswith("unix://") else "/var/run/docker.sock"
    sc = Stagectl(a.stagectl, a.work, f"{a.work}/state", {"STAGECTL_LOCAL": "true"})
    shop_stack(a.stack, a.repo, a.work)
    secret = "fault-canary-db-3Rt8"
    (sc.dir / "secrets.env").write_text(f"api_key=fault-canary-api-5Lm1\ndb_password={secret}\n")
    remove_stack(a.stagectl, a.stack, sc.state)
    log(P, f"seed {seed}; stack {a.stack} in {a.work}; real engine {real}")

    def timed(*args):
        t = time.monotonic()
        code, out, err = sc.run(*args, timeout=600)
        if code != 0:
            raise SystemExit(f"calibration `{' '.join(args)}` failed ({code}):\n{out}\n{err}")
        return time.monotonic() - t

    durations = {}
    touch_fixtures(sc.dir, "calibration")
    durations["up-cold"] = timed("up")
    timed("down", "-v")
    durations["up-warm"] = timed("up")
    timed("down", "-v")
    log(P, "durations: " + ", ".join(f"{k} {v:.1f}s" for k, v in durations.items()))

    sock = f"{a.work}/docker.sock"
    trials = []
    for i in range(a.trials):
        variant = VARIANTS[i % len(VARIANTS)]
        t = {"trial": i + 1, "variant": variant, "attempts": 0}
        retry_span = durations[variant]
        while True:
            t["attempts"] += 1
            if variant == "up-cold":
                touch_fixtures(sc.dir, f"trial-{i + 1}-{t['attempts']}")
            else:
                sc.run("up", timeout=600)
                sc.run("down", "-v", timeout=300)
            remove_debris(a.stack)
            relay = Relay(sock, real)
            # A retry draws within what the run that finished first took; later trials go back
            # to the measured duration (one fast run must not shrink the range for good).
            span = retry_span if t["attempts"] > 1 else durations[variant]
            delay = rng.uniform(0, 0.9 * span)
            t["delay_s"] = round(delay, 2)
            proc = sc.spawn("up", env={"DOCKER_HOST": relay.host()}, out=f"{a.work}/trial-{i + 1}.log")
            row = wait_for_run(sc, proc.pid, within=60, proc=proc)
            t0 = time.monotonic()
            while proc.poll() is None and time.monotonic() - t0 < delay:
                time.sleep(0.005)
            finished_first = proc.poll() is not None
            relay.cut()
            try:
                proc.wait(timeout=120)
            except Exception:
                proc.kill()
                proc.wait()
                t["hung"] = True
            relay.close()
            if finished_first and t["attempts"] < 3:
                retry_span = time.monotonic() - t0
                log(P, f"trial {i + 1}: {variant} finished before the cut at {delay:.1f}s; again within {retry_span:.1f}s")
                sc.run("down", "-v", timeout=300)
                continue
            break
        t["cut"] = not finished_first
        t["exit"] = proc.returncode
        # Was anything of the run's work cut? A request still unanswered at the cut, or a
        # warning or failure the run printed (a call after the cut, or a streamed answer cut
        # half-way). A call after the cut whose error the run ignores goes unseen.
        out = open(f"{a.work}/trial-{i + 1}.log", errors="replace").read()
        t["inflight_at_cut"] = relay.inflight_at_cut
        t["said"] = [l.strip()[:160] for l in out.splitlines() if "warning:" in l or "FAILED" in l or l.startswith("error:")][:3]
        t["work_cut"] = relay.inflight_at_cut > 0 or bool(t["said"])
        t["seconds_to_exit"] = round(time.monotonic() - t0 - delay, 2) if t["cut"] else None
        t["message"] = next((l for l in out.splitlines() if l.startswith("error:")), "")[:160]
        t["run_id"] = row["id"] if row else None
        t["last_log"] = sc.run_log(row["id"], 1)[-1:] if row else []
        t["paused_at_exit"] = paused(a.stack)
        # The engine finishes what it had started (a commit pauses its container): look again.
        waited = time.monotonic()
        while paused(a.stack) and time.monotonic() - waited < 120:
            time.sleep(0.5)
        t["paused_for_s"] = round(time.monotonic() - waited, 1) if t["paused_at_exit"] else 0
        t["paused_after_wait"] = paused(a.stack)
        runs = {r["id"]: r for r in sc.runs()}
        rec = runs.get(t["run_id"]) if t["run_id"] else None
        t["history"] = f"{rec['status']}: {(rec['error'] or '')[:80]}" if rec else "not recorded"

        code, report, err = sc.up_json(timeout=600)
        t["converge_exit"] = code
        t["converged"] = code == 0 and all_ready(report)
        if not t["converged"]:
            t["converge_error"] = err.strip().splitlines()[-5:]
        code, _, _ = sc.run("down", "-v", timeout=300)
        t["down_exit"] = code
        t["orphans"] = orphans(a.stack)
        d = snapshot_debris(a.stack)
        t["debris"] = d["raw_tags"] + d["dangling"]
        t["debris_with_secret"] = [ref for ref in t["debris"] if holds(ref, secret)]
        remove_debris(a.stack)
        # Exit 3 whenever the cut hit the run's work; a cut after its last Docker call may end 0.
        exit_ok = t["exit"] == 3 if t["cut"] and t["work_cut"] else t["exit"] in (0, 3)
        t["core_ok"] = (
            exit_ok
            and t["paused_after_wait"] == 0
            and t["converged"]
            and code == 0
            and sum(t["orphans"].values()) == 0
            and not t.get("hung")
        )
        t["ok"] = t["core_ok"] and not t["debris"]
        trials.append(t)
        o = t["orphans"]
        log(
            P,
            f"trial {i + 1:2}/{a.trials} {variant:8} cut at {delay:5.1f}s{' (finished first)' if finished_first else ''} "
            f"{'' if t['work_cut'] else '(after its last call) '}exit {t['exit']} after {t['seconds_to_exit']}s | paused {t['paused_at_exit']}->{t['paused_after_wait']} | "
            f"history {t['history'][:40]!r} | converge {t['converge_exit']} ready={t['converged']} | "
            f"left: c{o['containers']} n{o['networks']} v{o['volumes']} mcheck{o['mcheck_images']} "
            f"debris {len(t['debris'])} ({len(t['debris_with_secret'])} with the secret){'' if t['ok'] else ' <-- FAIL'}",
        )

    remove_stack(a.stagectl, a.stack, sc.state)
    cut = [t for t in trials if t["cut"]]
    summary = {
        "trials": len(trials),
        "cut": len(cut),
        "finished_before_cut": len(trials) - len(cut),
        "work_cut": sum(t["work_cut"] for t in cut),
        "exit_3": sum(t["exit"] == 3 for t in cut if t["work_cut"]),
        "cut_after_work_exit_0": sum(t["exit"] == 0 for t in cut if not t["work_cut"]),
        "exit_codes": sorted({t["exit"] for t in cut}),
        "paused_at_exit": sum(t["paused_at_exit"] for t in trials),
        "paused_after_wait": sum(t["paused_after_wait"] for t in trials),
        "paused_max_s": max([t["paused_for_s"] for t in trials] or [0]),
        "converged": sum(t["converged"] for t in trials),
        "orphans": sum(sum(t["orphans"].values()) for t in trials),
        "debris_trials": sum(bool(t["debris"]) for t in trials),
        "debris_images": sum(len(t["debris"]) for t in trials),
        "debris_with_secret": sum(len(t["debris_with_secret"]) for t in trials),
        "max_seconds_to_exit": max([t["seconds_to_exit"] for t in cut] or [0]),
        "failed_trials": [t["trial"] for t in trials if not t["core_ok"]],
        "debris_only_trials": [t["trial"] for t in trials if t["core_ok"] and not t["ok"]],
        "seed": seed,
        "durations": {k: round(v, 1) for k, v in durations.items()},
    }
    write_result(a.result, summary, trials)
    verdict = "FAIL" if summary["failed_trials"] else "FAIL (snapshot debris only)" if summary["debris_only_trials"] else "PASS"
    print(
        f"b Docker lost mid-run: {verdict}: {summary['trials']} trials ({summary['cut']} cut, "
        f"{summary['finished_before_cut']} finished first), exit 3 in {summary['exit_3']}/{summary['work_cut']} cuts that hit "
        f"a Docker call ({summary['cut'] - summary['work_cut']} came after the run's last call: exit 0 in "
        f"{summary['cut_after_work_exit_0']}), "
        f"(codes {summary['exit_codes']}, exit within {summary['max_seconds_to_exit']}s of the cut), "
        f"paused at exit {summary['paused_at_exit']} (unpaused within {summary['paused_max_s']} s; still paused {summary['paused_after_wait']}), "
        f"converged {summary['converged']}/{summary['trials']}, orphans {summary['orphans']}, "
        f"snapshot debris in {summary['debris_trials']} trials ({summary['debris_with_secret']} images holding the db secret), seed {seed}"
    )
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
