"""Part a: kill -9 of `stagectl up` / `rebuild` at random points.

Stack: scripts/faults/common.py `shop_stack` (db with fixtures + snapshot, redis, a migrate job,
the shop app). Four variants in turn, so the kills fall in every phase:
  up-cold       from nothing, fixtures changed (load + snapshot commit)
  up-warm       from nothing, snapshot present (restore)
  rebuild-warm  from a running stack, snapshot present (down -v, then restore)
  rebuild-cold  from a running stack, fixtures changed (down -v, load, snapshot)
Each variant's duration D is measured once; a trial kills the process (SIGKILL) at a uniform
random time in [0, 0.9 D] after its run is recorded as running (a run that ends before its kill
is tried again, up to 3 times, within the time that run took). Then:
  - `up` must converge (exit 0, every service ready / job completed); when it does not, one
    more `up` 5 s later says whether the failure was transient (the trial fails either way),
  - the killed run must be `interrupted` in the history (read with sqlite3, read-only),
  - after `down -v`: no container, network, volume, stagectl-mcheck/* image labelled with the
    stack, no paused container; also counted: snapshot debris (a `*-raw` tag or an untagged
    leaf image labelled with the stack), removed before the next trial.
"""

import argparse
import time

from common import (
    holds,
    Stagectl,
    all_ready,
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

VARIANTS = ["up-cold", "up-warm", "rebuild-warm", "rebuild-cold"]


def prepare(sc, variant, i, t):
    """Every trial starts from `down -v`. cold = fixture content without a snapshot; warm = an
    `up` from nothing first (it takes the snapshot if it is missing)."""
    if variant == "up-cold":
        touch_fixtures(sc.dir, f"trial-{i + 1}-{t['attempts']}")
        return
    code, report, _ = sc.up_json(timeout=600)
    snap = next(((s.get("fixtures") or {}) for s in (report or {}).get("services", []) if s["service"] == "db"), {})
    t["prep"] = f"up {code}, snapshot {snap.get('snapshot')}"
    if variant == "up-warm":
        sc.run("down", "-v", timeout=300)
    if variant == "rebuild-cold":
        touch_fixtures(sc.dir, f"trial-{i + 1}-{t['attempts']}")


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
    P = "a"
    sc = Stagectl(a.stagectl, a.work, f"{a.work}/state", {"STAGECTL_LOCAL": "true"})
    shop_stack(a.stack, a.repo, a.work)
    (sc.dir / "secrets.env").write_text("api_key=fault-canary-api-7Hq2\ndb_password=fault-canary-db-9Wz4\n")
    remove_stack(a.stagectl, a.stack, sc.state)
    log(P, f"seed {seed}; stack {a.stack} in {a.work}")

    # ------------------------------------------------------------------ calibration
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
    durations["rebuild-warm"] = timed("rebuild")
    touch_fixtures(sc.dir, "calibration-2")
    durations["rebuild-cold"] = timed("rebuild")
    timed("down", "-v")
    remove_debris(a.stack)
    log(P, "durations: " + ", ".join(f"{k} {v:.1f}s" for k, v in durations.items()))

    trials = []
    for i in range(a.trials):
        variant = VARIANTS[i % len(VARIANTS)]
        op = variant.split("-")[0]
        t = {"trial": i + 1, "variant": variant, "attempts": 0}
        retry_span = durations[variant]
        # A kill that comes after the run finished tests nothing: try again (up to 3 times)
        # with the variant's duration lowered to what this run took.
        while True:
            t["attempts"] += 1
            prepare(sc, variant, i, t)
            remove_debris(a.stack)
            # A retry draws within what the run that finished first took; later trials go back
            # to the measured duration (one fast run must not shrink the range for good).
            span = retry_span if t["attempts"] > 1 else durations[variant]
            delay = rng.uniform(0, 0.9 * span)
            t["delay_s"] = round(delay, 2)
            proc = sc.spawn(op, out=f"{a.work}/trial-{i + 1}.log")
            row = wait_for_run(sc, proc.pid, within=60, proc=proc)
            t0 = time.monotonic()
            while proc.poll() is None and time.monotonic() - t0 < delay:
                time.sleep(0.005)
            finished_first = proc.poll() is not None
            if not finished_first:
                proc.kill()
            proc.wait()
            if finished_first and t["attempts"] < 3:
                retry_span = time.monotonic() - t0
                log(P, f"trial {i + 1}: {variant} finished before the kill at {delay:.1f}s; again within {retry_span:.1f}s")
                sc.run("down", "-v", timeout=300)
                continue
            break
        t["killed"] = not finished_first
        t["exit"] = proc.returncode
        t["paused_at_kill"] = paused(a.stack)
        t["run_id"] = row["id"] if row else None
        t["last_log"] = sc.run_log(row["id"], 1)[-1:] if row else []
        # A commit the engine had started goes on without its client and pauses its container
        # until it ends: let it end (the time is recorded), as a person re-running would.
        waited = time.monotonic()
        while paused(a.stack) and time.monotonic() - waited < 120:
            time.sleep(0.5)
        t["paused_for_s"] = round(time.monotonic() - waited, 1) if t["paused_at_kill"] else 0
        t["paused_after_wait"] = paused(a.stack)

        # The next `up` converges.
        code, report, err = sc.up_json(timeout=600)
        t["converge_exit"] = code
        t["converged"] = code == 0 and all_ready(report)
        if not t["converged"]:
            t["converge_error"] = err.strip().splitlines()[-5:]
            # Is it transient? One more `up`, 5 s later (recorded; the trial still fails).
            time.sleep(5)
            code2, report2, _ = sc.up_json(timeout=600)
            t["second_up_converged"] = code2 == 0 and all_ready(report2)
        # The history shows the killed run as interrupted.
        runs = {r["id"]: r for r in sc.runs()}
        killed = runs.get(t["run_id"]) if t["run_id"] else None
        t["history_status"] = killed["status"] if killed else "not recorded"
        t["still_active"] = [r["id"] for r in runs.values() if r["status"] in ("queued", "running")]
        # down -v leaves nothing.
        code, _, err = sc.run("down", "-v", timeout=300)
        t["down_exit"] = code
        t["orphans"] = orphans(a.stack)
        d = snapshot_debris(a.stack)
        t["debris"] = d["raw_tags"] + d["dangling"]
        t["debris_with_secret"] = [ref for ref in t["debris"] if holds(ref, "fault-canary-db-9Wz4")]
        remove_debris(a.stack)

        ok_hist = t["history_status"] == "interrupted" if t["killed"] else t["history_status"] in ("succeeded", "failed")
        t["core_ok"] = (
            t["converged"]
            and ok_hist
            and not t["still_active"]
            and code == 0
            and sum(t["orphans"].values()) == 0
            and t["paused_after_wait"] == 0
        )
        t["ok"] = t["core_ok"] and not t["debris"]
        trials.append(t)
        o = t["orphans"]
        log(
            P,
            f"trial {i + 1:2}/{a.trials} {variant:12} kill at {delay:5.1f}s "
            f"{'(finished first)' if finished_first else ''}last: {(t['last_log'] or ['-'])[0][:60]!r} | "
            f"converge {t['converge_exit']} ready={t['converged']}"
            f"{'' if t['converged'] else ' (second up 5 s later: ' + ('converged' if t.get('second_up_converged') else 'failed too') + ')'} | "
            f"history {t['history_status']} | "
            f"left: c{o['containers']} n{o['networks']} v{o['volumes']} mcheck{o['mcheck_images']} paused{o['paused']} "
            f"debris {len(t['debris'])} ({len(t['debris_with_secret'])} with the secret){'' if t['ok'] else ' <-- FAIL'}",
        )

    remove_stack(a.stagectl, a.stack, sc.state)
    killed = [t for t in trials if t["killed"]]
    summary = {
        "trials": len(trials),
        "killed": len(killed),
        "finished_before_kill": len(trials) - len(killed),
        "converged": sum(t["converged"] for t in trials),
        "converged_on_second_up": sum(bool(t.get("second_up_converged")) for t in trials),
        "interrupted": sum(t["history_status"] == "interrupted" for t in killed),
        "orphans": sum(sum(t["orphans"].values()) for t in trials),
        "paused_at_kill": sum(t["paused_at_kill"] for t in trials),
        "paused_max_s": max([t["paused_for_s"] for t in trials] or [0]),
        "paused_after_wait": sum(t["paused_after_wait"] for t in trials),
        "debris_trials": sum(bool(t["debris"]) for t in trials),
        "debris_images": sum(len(t["debris"]) for t in trials),
        "debris_with_secret": sum(len(t["debris_with_secret"]) for t in trials),
        "failed_trials": [t["trial"] for t in trials if not t["core_ok"]],
        "debris_only_trials": [t["trial"] for t in trials if t["core_ok"] and not t["ok"]],
        "seed": seed,
        "durations": {k: round(v, 1) for k, v in durations.items()},
    }
    write_result(a.result, summary, trials)
    verdict = "FAIL" if summary["failed_trials"] else "FAIL (snapshot debris only)" if summary["debris_only_trials"] else "PASS"
    print(
        f"a kill -9 up/rebuild: {verdict}: {summary['trials']} trials ({summary['killed']} killed, "
        f"{summary['finished_before_kill']} finished first), converged {summary['converged']}/{summary['trials']} "
        f"(+{summary['converged_on_second_up']} on a second up 5 s later), "
        f"interrupted {summary['interrupted']}/{summary['killed']}, orphans {summary['orphans']}, "
        f"paused at kill {summary['paused_at_kill']} (unpaused by the engine within {summary['paused_max_s']} s, "
        f"still paused {summary['paused_after_wait']}), snapshot debris in {summary['debris_trials']} trials "
        f"({summary['debris_images']} images, {summary['debris_with_secret']} holding the db secret), seed {seed}"
    )
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
