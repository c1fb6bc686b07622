"""Part f: a secret canary over every channel.

The stack's one secret is used in a data service's environment (inside a longer value: the db
is snapshotted), in an app's environment (the app prints it alone, JSON-escaped and URL-encoded)
and by a failing check that echoes it. Searched for, in every form (as is, JSON-escaped,
URL-encoded, and its first 9 characters):
  cli       terminal output of up, --json up, rebuild, logs, exec, check (+ JSON, JUnit, Markdown
            reports), --json check, status --json, snapshots ls, fixtures scan
  daemon    the CLI's forwarded up and check (the followed log), and the daemon's open endpoints
            /, /api/v1/status, /api/v1/health, /api/v1/runs, /api/v1/runs/ID, /metrics, plus the
            token-protected /api/v1/runs/ID/log (JSON and ?follow=1, also followed live during a
            rebuild), and the daemon's own stderr
  state     every file under the state directory (history database, WAL, discovery, locks)
  images    `docker image inspect` of every image labelled with the stack: the tagged ones
            (`docker images`) and all of them (`docker images -a`: parents of a snapshot)
"""

import argparse
import socket
import threading
import time
from pathlib import Path

from common import TOKEN, Daemon, Stagectl, docker, images_of, labelled, lines, log, remove_stack, write_result

CANARY = 'Fs!canary"7Yq'
FORMS = [CANARY, "Fs%21canary", 'Fs!canary\\"7Yq', "Fs!canary"]

MANIFEST = r'''# Written by scripts/fault-suite.sh.
[stack]
name = "{stack}"

[services.db]
image = "stagectl/postgres:15"
env = { POSTGRES_DB = "app", APP_DSN = "postgres://app:${secret:pw}@db/app" }
ready = { postgres = 5432, timeout = "90s" }

[services.app]
image = "stagectl/debian:bookworm"
depends_on = ["db"]
env = { DSN = "redis://u:${secret:pw}@cache/0", PW = "${secret:pw}" }
command = ["sh", "-c", "echo \"password is $PW\"; echo \"{\\\"pw\\\":\\\"$PW\\\"}\"; echo \"url=$(printf %s \"$PW\" | sed 's/!/%21/g; s/\\\"/%22/g')\"; sleep infinity"]
ready = { log = "url=", timeout = "30s" }

[fixtures.db]
files = ["seed.sql"]

[[checks.smoke]]
name = "echoes the secret"
exec = { service = "app", command = ["sh", "-c", "echo $PW; echo $DSN"], expect_output = "nothing like it" }
timeout = "1s"
'''


def hits(text):
    return [f for f in FORMS if f in text]


def follow(port, path, out, seconds=120):
    """A followed log (`?follow=1`) read to its end."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=seconds) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n".encode())
            buf = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            out.append(buf.decode(errors="replace"))
    except OSError as e:
        out.append(f"[follow failed: {e}]")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stagectl", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--stack", required=True)
    ap.add_argument("--result", required=True)
    a = ap.parse_args()
    P = "f"
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    (work / "stack.toml").write_text(MANIFEST.replace("{stack}", a.stack))
    (work / "seed.sql").write_text("CREATE TABLE t (id int); INSERT INTO t VALUES (1);\n")
    sc = Stagectl(a.stagectl, work, work / "state", {"STAGECTL_SECRET_pw": CANARY})
    remove_stack(a.stagectl, a.stack, sc.state)
    seen = {"cli": [], "daemon": [], "state": [], "images (tagged)": [], "images (all, with parents)": []}
    sizes = {}
    try:
        # ------------------------------------------------------------------ CLI, local
        local = {"STAGECTL_LOCAL": "true"}
        reports = [work / "r.json", work / "r.xml", work / "r.md"]
        for args in (
            ["up"],
            ["--json", "up"],
            ["rebuild"],
            ["logs", "app"],
            ["logs", "db"],
            ["exec", "app", "--", "sh", "-c", "echo $PW; echo $DSN"],
            ["check", "--report", f"json:{reports[0]}", "--report", f"junit:{reports[1]}", "--report", f"markdown:{reports[2]}"],
            ["--json", "check"],
            ["status", "--json"],
            ["snapshots", "ls"],
            ["fixtures", "scan"],
        ):
            code, out, err = sc.run(*args, env=local, timeout=600)
            seen["cli"].append((" ".join(args), out + err))
        for p in reports:
            seen["cli"].append((f"report {p.name}", p.read_text(errors="replace") if p.exists() else ""))
        shown = "".join(t for _, t in seen["cli"])
        masked_seen = "password is ***" in shown

        # ------------------------------------------------------------------ daemon
        d = Daemon(sc, work / "daemon.log", work / "daemon.pid")
        try:
            via = {"STAGECTL_TOKEN": TOKEN}
            for args in (["up"], ["check"]):
                code, out, err = sc.run(*args, env=via, timeout=600)
                seen["daemon"].append((f"CLI via daemon: {' '.join(args)} (exit {code})", out + err))
            # A rebuild followed live.
            code, body = d.json("POST", "/api/v1/rebuild")
            live = []
            if code == 202:
                rid = body["run_id"]
                th = threading.Thread(target=follow, args=(d.port, f"/api/v1/runs/{rid}/log?follow=1", live))
                th.start()
                th.join(300)
            seen["daemon"].append(("followed log of a live rebuild", "".join(live)))
            d.request("GET", "/api/v1/status")
            time.sleep(1.5)
            for path in ("/", "/api/v1/status", "/api/v1/health", "/metrics", "/api/v1/runs?limit=1000"):
                code, body, _ = d.request("GET", path)
                seen["daemon"].append((f"GET {path} ({code})", body.decode(errors="replace")))
            code, runs = d.json("GET", "/api/v1/runs?limit=1000")
            ids = [r["id"] for r in (runs or {}).get("runs", [])]
            for rid in ids:
                for path, token in (
                    (f"/api/v1/runs/{rid}", None),
                    (f"/api/v1/runs/{rid}/log", TOKEN),
                    (f"/api/v1/runs/{rid}/log?follow=1", TOKEN),
                ):
                    code, body, _ = d.request("GET", path, token)
                    seen["daemon"].append((f"GET {path} ({code})", body.decode(errors="replace")))
            sizes["runs"] = len(ids)
        finally:
            d.stop()
        seen["daemon"].append(("daemon stderr", (work / "daemon.log").read_text(errors="replace")))

        # ------------------------------------------------------------------ state files
        for p in sorted(sc.state.rglob("*")):
            if p.is_file():
                seen["state"].append((str(p.relative_to(sc.state)), p.read_bytes().decode("latin-1")))

        # ------------------------------------------------------------------ images
        tagged = lines(docker("images", "-q", "--no-trunc", "--filter", labelled(a.stack)))
        for img in sorted(set(tagged)):
            seen["images (tagged)"].append((img[7:19], docker("image", "inspect", img)))
        for img in images_of(a.stack):
            seen["images (all, with parents)"].append((img[7:19], docker("image", "inspect", img)))
        sizes["images_tagged"] = len(set(tagged))
        sizes["images_all"] = len(images_of(a.stack))
    finally:
        remove_stack(a.stagectl, a.stack, sc.state)
    # What the same images hold once the snapshot is pruned (remove_stack removed them).
    sizes["images_after_prune"] = len(images_of(a.stack))

    found = {}
    for channel, items in seen.items():
        for name, text in items:
            h = hits(text)
            if h:
                found.setdefault(channel, []).append((name, h))
    counts = {k: len(v) for k, v in seen.items()}
    for channel, items in found.items():
        for name, h in items:
            log(P, f"LEAK {channel}: {name}: {h}")
    ok = not found and masked_seen
    write_result(a.result, {"found": found, "counts": counts, "sizes": sizes, "masked_output_seen": masked_seen}, {})
    print(
        f"f secret canary: {'PASS' if ok else 'FAIL'}: outputs searched: cli {counts['cli']}, daemon {counts['daemon']} "
        f"({sizes.get('runs', 0)} runs), state files {counts['state']}, images {counts['images (tagged)']} tagged / "
        f"{counts['images (all, with parents)']} with parents; masked app output seen: {masked_seen}; leaks: "
        + ("none" if not found else "; ".join(f"{c}: {', '.join(n for n, _ in v)}" for c, v in found.items()))
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
