"""Part d: slow and oversized HTTP clients against a running daemon (loopback only).

The daemon serves a one-service stack (never brought up: status, runs and metrics still
answer). Status latency = `GET /api/v1/status` on a fresh connection, sequentially, each with a
10 s timeout; p50/p99 over `--probes` requests. Phases:
  baseline     no attack.
  idle         N connections that announce a 1 MB body (POST, head complete) and never send it,
               plus N that never finish their head: status measured while they are held; then
               how long each kind stays open (the guard's stall limit is 10 s).
  header       one client sends a 50 MB header line; status measured meanwhile; bytes the
               daemon took before closing, its answer, RSS growth.
  over-cap     300 connections opened at once and held idle (the cap is 256): how many were
               refused with 503, what status answers while the cap is full, how fast the API
               recovers once they close; then 300 parallel complete status requests.
  trickle      M clients that send their head one byte every 3 s (each byte within the 10 s
               stall limit): how long the daemon keeps them (observed up to --trickle-window s).
Daemon RSS and threads before and after every phase.
"""

import argparse
import socket
import threading
import time

from common import TOKEN, Daemon, Stagectl, log, percentile, remove_stack, write_result

MANIFEST = """# Written by scripts/fault-suite.sh.
[stack]
name = "{stack}"

[services.web]
image = "stagectl/debian:bookworm"
command = ["sleep", "infinity"]
ready = {{ exec = ["true"] }}
"""


def connect(port, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return s


def peek(s):
    """'open' (nothing to read), 'answer' (bytes waiting) or 'closed' (EOF or error)."""
    try:
        s.setblocking(False)
        data = s.recv(1, socket.MSG_PEEK)
        return "answer" if data else "closed"
    except BlockingIOError:
        return "open"
    except OSError:
        return "closed"
    finally:
        try:
            s.setblocking(True)
        except OSError:
            pass


def is_open(s):
    """True until the daemon closes the connection (an answer followed by EOF is closed)."""
    state = peek(s)
    if state != "answer":
        return state == "open"
    # Bytes waiting: drain them and look again.
    try:
        s.setblocking(False)
        while True:
            if not s.recv(65536):
                return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        try:
            s.setblocking(True)
        except OSError:
            pass


def read_answer(s, limit=2.0):
    s.settimeout(limit)
    buf = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            if b"\r\n\r\n" in buf:
                break
    except OSError:
        pass
    return buf.split(b"\r\n", 1)[0].decode(errors="replace")


def measure(d, n):
    times, codes = [], {}
    for _ in range(n):
        code, _, secs = d.request("GET", "/api/v1/status", timeout=10)
        times.append(secs * 1000)
        codes[code] = codes.get(code, 0) + 1
    return {
        "n": n,
        "p50_ms": round(percentile(times, 50), 1),
        "p99_ms": round(percentile(times, 99), 1),
        "max_ms": round(max(times), 1),
        "codes": codes,
    }


def mem(d):
    return {"rss_mib": round(d.rss_kib() / 1024, 1), "threads": d.threads()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stagectl", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--stack", required=True)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--probes", type=int, default=200)
    ap.add_argument("--trickle", type=int, default=20)
    ap.add_argument("--trickle-window", type=int, default=45)
    ap.add_argument("--result", required=True)
    a = ap.parse_args()
    P = "d"
    from pathlib import Path

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    (work / "stack.toml").write_text(MANIFEST.format(stack=a.stack))
    sc = Stagectl(a.stagectl, work, work / "state")
    remove_stack(a.stagectl, a.stack, sc.state)
    d = Daemon(sc, work / "daemon.log", work / "daemon.pid")
    r = {"clients": a.clients, "probes": a.probes}
    checks = {}
    try:
        time.sleep(1)
        d.request("GET", "/api/v1/status")
        r["mem_start"] = mem(d)
        r["baseline"] = measure(d, a.probes)
        log(P, f"baseline {r['baseline']} {r['mem_start']}")

        # -------------------------------------------------------------- idle clients
        bodies, heads = [], []
        for i in range(a.clients):
            s = connect(d.port)
            s.sendall(f"POST /api/v1/rebuild HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 1000000\r\n\r\n".encode())
            bodies.append(s)
            s = connect(d.port)
            s.sendall(f"GET /api/v1/status?{i} HTTP/1.1\r\nHost: x\r\nX-Slow: ".encode())
            heads.append(s)
        opened = time.monotonic()
        r["idle"] = measure(d, a.probes)
        r["idle_body_answer"] = read_answer(bodies[0], 2) if bodies else ""
        r["mem_idle"] = mem(d)
        # How long each kind is kept.
        closed_at = {"bodies": [], "heads": []}
        pending = {"bodies": list(bodies), "heads": list(heads)}
        while time.monotonic() - opened < 135 and (pending["heads"] or pending["bodies"]):
            for k in pending:
                still = []
                for s in pending[k]:
                    if is_open(s):
                        still.append(s)
                    else:
                        closed_at[k].append(time.monotonic() - opened)
                pending[k] = still
            time.sleep(0.25)
        r["idle_kept"] = {
            k: {"closed": len(closed_at[k]), "still_open": len(pending[k]), "closed_by_s": round(max(closed_at[k] or [0]), 1)}
            for k in closed_at
        }
        for s in bodies + heads:
            s.close()
        log(P, f"idle: {r['idle']} kept {r['idle_kept']} body answer {r['idle_body_answer']!r} {r['mem_idle']}")

        # -------------------------------------------------------------- 50 MB header
        time.sleep(1)
        before = d.rss_kib()
        sent = [0]
        answer = [""]

        def big():
            s = connect(d.port, timeout=30)
            chunk = b"a" * 65536
            try:
                s.sendall(b"GET /api/v1/status HTTP/1.1\r\nX-Big: ")
                while sent[0] < 50 * 1024 * 1024:
                    s.sendall(chunk)
                    sent[0] += len(chunk)
            except OSError:
                pass
            answer[0] = read_answer(s, 5)
            s.close()

        th = threading.Thread(target=big)
        th.start()
        r["header"] = measure(d, a.probes)
        th.join(60)
        r["header_bytes_sent_mib"] = round(sent[0] / 2**20, 2)
        r["header_answer"] = answer[0]
        r["header_rss_growth_mib"] = round((d.rss_kib() - before) / 1024, 1)
        r["mem_header"] = mem(d)
        log(P, f"header: sent {r['header_bytes_sent_mib']} MiB, answer {answer[0]!r}, RSS +{r['header_rss_growth_mib']} MiB, status {r['header']}")

        # -------------------------------------------------------------- over the cap
        time.sleep(1)
        conns, refused = [], 0
        for _ in range(300):
            try:
                conns.append(connect(d.port))
            except OSError:
                refused += 1
        time.sleep(2)
        answers = {}
        held = []
        for s in conns:
            if peek(s) == "open":
                held.append(s)
            else:
                line = read_answer(s, 0.2) or "closed without an answer"
                answers[line] = answers.get(line, 0) + 1
        r["over_cap"] = {"opened": len(conns), "connect_failed": refused, "held": len(held), "closed_with": answers}
        r["over_cap_status"] = measure(d, min(a.probes, 50))
        r["mem_over_cap"] = mem(d)
        for s in conns:
            s.close()
        released = time.monotonic()
        recovered = None
        while time.monotonic() - released < 10:
            if d.request("GET", "/api/v1/status", timeout=5)[0] == 200:
                recovered = round(time.monotonic() - released, 2)
                break
            time.sleep(0.05)
        r["over_cap_recovered_s"] = recovered
        # 300 complete requests at once.
        results = []
        lock = threading.Lock()

        def one():
            code, _, secs = d.request("GET", "/api/v1/status", timeout=30)
            with lock:
                results.append((code, secs * 1000))

        ths = [threading.Thread(target=one) for _ in range(300)]
        for t in ths:
            t.start()
        for t in ths:
            t.join(60)
        codes = {}
        for c, _ in results:
            codes[c] = codes.get(c, 0) + 1
        lat = [ms for _, ms in results]
        r["parallel_300"] = {"answered": len(results), "codes": codes, "p50_ms": round(percentile(lat, 50), 1), "p99_ms": round(percentile(lat, 99), 1)}
        r["mem_parallel"] = mem(d)
        log(P, f"over cap: {r['over_cap']}, status meanwhile {r['over_cap_status']}, recovered in {recovered}s; 300 parallel: {r['parallel_300']}")

        # -------------------------------------------------------------- trickled heads
        time.sleep(1)
        head = b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nX-Trickle: " + b"t" * 4096
        tconns = [connect(d.port) for _ in range(a.trickle)]
        started = time.monotonic()
        pos = 0
        timeline = []
        while time.monotonic() - started < a.trickle_window:
            alive = 0
            for s in tconns:
                try:
                    s.sendall(head[pos : pos + 1])
                    alive += is_open(s)
                except OSError:
                    pass
            pos += 1
            timeline.append((round(time.monotonic() - started), alive))
            if alive == 0:
                break
            time.sleep(3)
        r["trickle"] = {"clients": a.trickle, "bytes_each": pos, "open_over_time": timeline, "open_at_end": timeline[-1][1] if timeline else 0}
        r["trickle_status"] = measure(d, min(a.probes, 50))
        for s in tconns:
            s.close()
        log(P, f"trickle: {r['trickle']}")
        time.sleep(2)
        r["mem_end"] = mem(d)
    finally:
        d.stop()
        remove_stack(a.stagectl, a.stack, sc.state)

    # ------------------------------------------------------------------ verdicts
    def fast(m, limit_ms=1000, want=(200,)):
        return m["p99_ms"] < limit_ms and all(c in want for c in m["codes"])

    checks["status under idle clients: all 200, p99 < 1 s"] = fast(r["idle"])
    checks["unfinished heads closed within 15 s"] = r["idle_kept"]["heads"]["still_open"] == 0 and r["idle_kept"]["heads"]["closed_by_s"] <= 15
    checks["body-announcing clients answered 413 and closed within 135 s"] = (
        " 413 " in r["idle_body_answer"] and r["idle_kept"]["bodies"]["still_open"] == 0
    )
    checks["status during a 50 MB header: all 200, p99 < 1 s"] = fast(r["header"])
    checks["50 MB header refused before 16 MiB, RSS +< 32 MiB"] = r["header_bytes_sent_mib"] < 16 and r["header_rss_growth_mib"] < 32
    # Refused over the cap: a 503 the client can read (the guard reads the request before it
    # answers and closes; a reset here was finding 8 of RELIABILITY.md).
    checks["over the cap: status answered or refused (200 or 503), p99 < 1 s"] = fast(r["over_cap_status"], want=(200, 503))
    checks["over the cap: recovers within 2 s of release"] = r["over_cap_recovered_s"] is not None and r["over_cap_recovered_s"] <= 2
    checks["300 parallel requests: all answered (200 or 503)"] = r["parallel_300"]["answered"] == 300 and all(c in (200, 503) for c in r["parallel_300"]["codes"])
    checks["trickled heads closed within 30 s"] = any(t <= 30 and n == 0 for t, n in r["trickle"]["open_over_time"])
    checks["RSS at the end < start + 32 MiB"] = r["mem_end"]["rss_mib"] < r["mem_start"]["rss_mib"] + 32
    failed = [k for k, ok in checks.items() if not ok]
    r["checks"] = checks
    write_result(a.result, {"failed": failed}, r)
    for k, ok in checks.items():
        log(P, f"{'ok  ' if ok else 'FAIL'} {k}")
    b, i, h, o = r["baseline"], r["idle"], r["header"], r["over_cap_status"]
    print(
        f"d slow/oversized clients: {'PASS' if not failed else 'FAIL (' + '; '.join(failed) + ')'}: "
        f"status p50/p99 ms: baseline {b['p50_ms']}/{b['p99_ms']}, {a.clients}+{a.clients} idle {i['p50_ms']}/{i['p99_ms']}, "
        f"50 MB header {h['p50_ms']}/{h['p99_ms']} (taken {r['header_bytes_sent_mib']} MiB, {r['header_answer'] or 'closed'}), "
        f"cap full {o['p50_ms']}/{o['p99_ms']} {', '.join(f'{n}x ' + (str(c) if c else 'reset') for c, n in o['codes'].items())}; 300 conns: {r['over_cap']['held']} held, "
        f"{sum(r['over_cap']['closed_with'].values())} refused; trickled heads open after {r['trickle']['open_over_time'][-1][0]} s: "
        f"{r['trickle']['open_at_end']}/{a.trickle}; RSS {r['mem_start']['rss_mib']} -> {r['mem_end']['rss_mib']} MiB"
    )
    return 0 if not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
