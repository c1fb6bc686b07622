#!/usr/bin/env bash
# Benchmark: `stagectl daemon` against the issue's targets — idle RSS ≤ 20 MB, idle CPU < 0.5 %,
# `GET /api/v1/status` p99 ≤ 5 ms at 200 requests/s on loopback, file save → reconcile start
# ≤ 200 ms — with `docker-compose ps` as the peer for "what is running".
#
#   scripts/bench-daemon.sh [--idle-window S] [--duration S] [--saves N] [--keep]
#
# Writes a small stack (stack `benchd`: `db` PostgreSQL 15 with a one-file `[fixtures.db]`,
# `web` a `sleep infinity`) into a temp dir with its own state dir, starts the daemon on it
# (release build, private copy of the binary, a free loopback port, generated token), brings
# the stack up with `POST /api/v1/up`, then (scripts/bench/daemon.py):
#   - idle: 10 s of quiet, then VmRSS/VmHWM and utime+stime over --idle-window s (default 60);
#   - status: open-loop load at 200 requests/s for --duration s (default 20) from the bench
#     process (4 threads, kept-alive connections), latency from each scheduled time; RSS after;
#     peer: `docker-compose -p benchdpeer ps` (same two services running), 20 times;
#   - save → reconcile: --saves times (default 10) append a line to the fixture file and time
#     the watcher's `up` run's queued_at/started_at.
# Then rewrites the section between `<!-- bench-daemon:start -->` and `<!-- bench-daemon:end -->`
# in BENCHMARKS.md (appending it if missing; the rest of the file is left alone).
#
# Removed on exit, also on failure or Ctrl-C: the daemon, stack `benchd` (`stagectl down -v`,
# then whatever still carries its label, and its fixture snapshot images), compose project
# `benchdpeer`, the temp dir. --keep keeps the temp dir (manifest, daemon log, raw JSON).
#
# Needs: docker, docker-compose (v1), python3, cargo; the base images (scripts/build-images.sh).
# Not part of the test suite. About 3 minutes once built.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK=benchd
PROJECT=benchdpeer
OUT=$ROOT/BENCHMARKS.md
START_MARK='<!-- bench-daemon:start -->'
END_MARK='<!-- bench-daemon:end -->'
T0=$SECONDS

BENCH_NAME=bench-daemon
# shellcheck source=bench/common.sh
source "$ROOT/scripts/bench/common.sh"

IDLE_WINDOW=60
DURATION=20
SAVES=10
KEEP=0
ARGS=("$@")
while (($#)); do
	case $1 in
	--idle-window) IDLE_WINDOW=${2:-}; shift 2 || die "--idle-window needs seconds" ;;
	--idle-window=*) IDLE_WINDOW=${1#*=}; shift ;;
	--duration) DURATION=${2:-}; shift 2 || die "--duration needs seconds" ;;
	--duration=*) DURATION=${1#*=}; shift ;;
	--saves) SAVES=${2:-}; shift 2 || die "--saves needs a number" ;;
	--saves=*) SAVES=${1#*=}; shift ;;
	--keep) KEEP=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown argument '$1' (try --help)" ;;
	esac
done
require_positive --idle-window "$IDLE_WINDOW"
require_positive --duration "$DURATION"
require_positive --saves "$SAVES"

require_tools docker docker-compose python3 cargo flock
expect_compose '1\.' v1

bench_lock

cd "$ROOT"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
TMP=$(mktemp -d /tmp/stagectl-bench-daemon.XXXXXX)
# A private copy of the binary: other work may rebuild target/release meanwhile.
STAGECTL=$TMP/stagectl
STACK_DIR=$TMP/stack
MANIFEST=$STACK_DIR/stack.toml
COMPOSE_FILE=$TMP/peer/docker-compose.yml
# The daemon, its history, lock and token live here, away from the user's state.
export STAGECTL_STATE_DIR=$TMP/state
unset STAGECTL_TOKEN STAGECTL_TOKEN_FILE STAGECTL_LOCAL STAGECTL_FILE

# ------------------------------------------------------------------------------ clean up

stop_daemon() { # only the daemon this run started (its pid, written by daemon.py)
	local pid
	pid=$(cat "$TMP/daemon.pid" 2>/dev/null) || return 0
	[[ $pid =~ ^[0-9]+$ ]] || return 0
	# Still ours? (the pid may have been reused)
	{ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "$STAGECTL -f $MANIFEST daemon" || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	local i
	for i in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	log "the daemon (pid $pid) did not stop on SIGTERM; killing it"
	kill -KILL "$pid" 2>/dev/null || true
}

remove_everything() {
	stop_daemon
	if [[ -x $STAGECTL && -f $MANIFEST ]]; then
		"$STAGECTL" --local -f "$MANIFEST" down -v >/dev/null 2>&1 ||
			"$STAGECTL" --local down -v --stack "$STACK" >/dev/null 2>&1 || true
	fi
	if [[ -f $COMPOSE_FILE ]]; then
		docker-compose -p "$PROJECT" -f "$COMPOSE_FILE" down -v --remove-orphans -t 0 >/dev/null 2>&1 || true
	fi
	remove_labelled
	remove_snapshots
}

BENCH_LABELS=("label=org.stagectl.stack=$STACK" "label=com.docker.compose.project=$PROJECT")
BENCH_STACK=$STACK
BENCH_REMOVE=remove_everything
BENCH_KEPT="manifest, daemon log, raw results"
bench_traps

# ----------------------------------------------------------------------------- prepare
if ! docker image inspect stagectl/postgres:15 stagectl/debian:bookworm >/dev/null 2>&1; then
	log "base images (scripts/build-images.sh)"
	scripts/build-images.sh
fi
build_stagectl "$STAGECTL"

mkdir -p "$STACK_DIR/fixtures" "$(dirname "$COMPOSE_FILE")"
cat >"$MANIFEST" <<EOF
# The bench stack of scripts/bench-daemon.sh.
[stack]
name = "$STACK"

[services.db]
image = "stagectl/postgres:15"
ready = { postgres = 5432, timeout = "30s" }

[services.web]
image = "stagectl/debian:bookworm"
command = ["sleep", "infinity"]
ready = { exec = ["true"] }

[fixtures.db]
files = ["fixtures/*.sql"]
EOF
cat >"$STACK_DIR/fixtures/seed.sql" <<'EOF'
CREATE TABLE bench (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO bench VALUES (1, 'one'), (2, 'two'), (3, 'three');
EOF
# The peer: the same two services for docker-compose (v1), with the probes as healthchecks so
# that `ps` reports the same state (running, healthy).
cat >"$COMPOSE_FILE" <<'EOF'
version: "2.4"
services:
  db:
    image: stagectl/postgres:15
    healthcheck:
      test: ["CMD", "pg_isready", "-h", "127.0.0.1"]
      interval: 1s
  web:
    image: stagectl/debian:bookworm
    command: ["sleep", "infinity"]
    healthcheck:
      test: ["CMD", "true"]
      interval: 1s
EOF
"$STAGECTL" -f "$MANIFEST" validate >/dev/null || die "the bench manifest is invalid: $MANIFEST"

# ------------------------------------------------------------------------------ measure
REV=$(bench_revision)
CMD=$(bench_command "${ARGS[@]}")
log "measuring: idle ${IDLE_WINDOW}s, status load ${DURATION}s at 200/s, $SAVES saves"
python3 "$ROOT/scripts/bench/daemon.py" \
	--stagectl "$STAGECTL" --manifest "$MANIFEST" --stack "$STACK" --state-dir "$STAGECTL_STATE_DIR" \
	--fixture "$STACK_DIR/fixtures/seed.sql" --compose-file "$COMPOSE_FILE" --project "$PROJECT" \
	--work "$TMP" --idle-window "$IDLE_WINDOW" --duration "$DURATION" --saves "$SAVES" \
	--json "$TMP/results.json" --markdown "$TMP/section.md" \
	--command "$CMD" --revision "$REV" --load-start "$LOAD_START" &
BENCH_PID=$!
wait "$BENCH_PID" || {
	[[ -f $TMP/daemon.log ]] && { log "daemon log (last lines):"; tail -n 20 "$TMP/daemon.log" >&2; }
	die "measurement failed (see above)"
}
BENCH_PID=

# --------------------------------------------------------------------- BENCHMARKS.md
write_section 'The daemon: idle cost, status latency, save → reconcile (`scripts/bench-daemon.sh`)'
