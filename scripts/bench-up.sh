#!/usr/bin/env bash
# Benchmark: stagectl vs docker-compose bringing the demo stack up and down, side by side.
#
#   scripts/bench-up.sh [--runs N] [--lag-runs N] [--keep]
#
# Measures, in one run, on this machine's Docker engine:
#   - cold `up` until every service is ready (fresh volumes), `down` with volumes, and the
#     `up` of an unchanged running stack, for `stagectl` (release build) and for
#     `docker-compose` (v1) on scripts/bench/docker-compose.yml, the same stack;
#     N runs (default 5), alternating which tool goes first;
#   - stagectl's readiness detection lag: how long after a service really accepts work
#     stagectl reports it ready (host-side pollers every 5 ms, and the services' own logs);
#     --lag-runs runs (default: as many as --runs).
# Then rewrites the section between `<!-- bench-up:start -->` and `<!-- bench-up:end -->`
# in BENCHMARKS.md (creating the file if needed) with medians, min/max, ratios, verdicts
# against the targets, where stagectl's time goes, and the machine's facts.
#
# Stack names: `bench` for stagectl (a copy of stack.toml in a temp dir, absolute paths, its
# own host port, api_key=bench, without [fixtures.*], which compose has no equivalent for),
# project `benchc` for compose (another host port). Before measuring, the two are checked to
# be the same stack (scripts/bench/bench.py check). Both stacks are removed on exit, also on
# failure or Ctrl-C; a leftover of either is removed at the start.
# --keep keeps the temp dir (bench manifest, raw results as JSON) and prints its path.
#
# Needs: docker, docker-compose (v1), python3, cargo; root for a first build of the base
# images (scripts/build-images.sh). Not part of the test suite. About 2 minutes for 5 runs
# once everything is built.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=$ROOT/scripts/bench
COMPOSE_FILE=$BENCH_DIR/docker-compose.yml
STACK=bench
PROJECT=benchc
OUT=$ROOT/BENCHMARKS.md
START_MARK='<!-- bench-up:start -->'
END_MARK='<!-- bench-up:end -->'
T0=$SECONDS

BENCH_NAME=bench-up
# shellcheck source=bench/common.sh
source "$ROOT/scripts/bench/common.sh"

RUNS=5
LAG_RUNS=
KEEP=0
ARGS=("$@")
while (($#)); do
	case $1 in
	--runs) RUNS=${2:-}; shift 2 || die "--runs needs a number" ;;
	--runs=*) RUNS=${1#*=}; shift ;;
	--lag-runs) LAG_RUNS=${2:-}; shift 2 || die "--lag-runs needs a number" ;;
	--lag-runs=*) LAG_RUNS=${1#*=}; shift ;;
	--keep) KEEP=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown argument '$1' (try --help)" ;;
	esac
done
LAG_RUNS=${LAG_RUNS:-$RUNS}
require_positive --runs "$RUNS"
[[ $LAG_RUNS =~ ^[0-9]+$ ]] || die "--lag-runs must be a number, not '$LAG_RUNS'"
((LAG_RUNS >= 1)) || die "--lag-runs must be at least 1"

require_tools docker docker-compose python3 cargo flock
expect_compose '1\.' v1

bench_lock

cd "$ROOT"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
STAGECTL=$ROOT/target/release/stagectl
TMP=$(mktemp -d /tmp/stagectl-bench.XXXXXX)

# ------------------------------------------------------------------------------ clean up
compose() { BENCHC_PORT=${COMPOSE_PORT:-18082} BENCHC_API_KEY=bench docker-compose -p "$PROJECT" -f "$COMPOSE_FILE" "$@"; }

remove_bench_stacks() {
	if [[ -x $STAGECTL ]]; then
		"$STAGECTL" down --volumes --stack "$STACK" >/dev/null 2>&1 || true
	fi
	compose down -v --remove-orphans -t 0 >/dev/null 2>&1 || true
	remove_labelled
}

BENCH_LABELS=("label=org.stagectl.stack=$STACK" "label=com.docker.compose.project=$PROJECT")
BENCH_REMOVE=remove_bench_stacks
BENCH_KEPT="bench manifest, raw results"
bench_traps

# ----------------------------------------------------------------------------- prepare
log "base images (scripts/build-images.sh)"
scripts/build-images.sh
build_stagectl
log "shop binary (scripts/build-shop.sh)"
scripts/build-shop.sh >/dev/null

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("0.0.0.0", 0)); print(s.getsockname()[1])'
}
APP_PORT=$(free_port)
COMPOSE_PORT=$(free_port)
while [[ $COMPOSE_PORT == "$APP_PORT" ]]; do COMPOSE_PORT=$(free_port); done

# The bench copy of stack.toml: stack `bench`, absolute host paths (bind mounts, build
# context and command), the app's host port, its own secrets.env, no [fixtures.*] tables.
MANIFEST=$TMP/stack.toml
awk '/^\[/ { skip = ($0 ~ /^\[fixtures[].]/) } !skip' stack.toml |
	sed -E \
	-e '0,/^name = "[^"]*"/ s//name = "'"$STACK"'"/' \
	-e 's#"\./#"'"$ROOT"'/#g' \
	-e '/^build *=/ s#(context|command) = "([^/"][^"]*)"#\1 = "'"$ROOT"'/\2"#g' \
	-e 's#^dir = "([^/"][^"]*)"#dir = "'"$ROOT"'/\1"#' \
	-e 's#"\$\{SHOP_PORT:-[0-9]+\}:8080"#"'"$APP_PORT"':8080"#' \
	>"$MANIFEST"
(umask 077 && printf 'api_key=bench\n' >"$TMP/secrets.env")
grep -q "^name = \"$STACK\"" "$MANIFEST" || die "could not rename the stack in the bench manifest"
grep -q "\"$APP_PORT:8080\"" "$MANIFEST" || die "could not set the app's host port in the bench manifest"
! grep -qE '"\./|context = "[^/]|command = "[^/]|^dir = "[^/]' "$MANIFEST" || die "relative paths left in the bench manifest"
"$STAGECTL" -f "$MANIFEST" validate >/dev/null || die "the bench manifest is invalid: $MANIFEST"
python3 "$BENCH_DIR/bench.py" check --manifest "$MANIFEST" --compose-file "$COMPOSE_FILE" ||
	die "$COMPOSE_FILE no longer matches stack.toml's services (above); update it first"

# Warm-up: builds/tags stagectl/shop:dev if needed and warms caches, for both tools.
log "warm-up: stagectl up + down --volumes (stack $STACK, app on :$APP_PORT)"
"$STAGECTL" -f "$MANIFEST" up >/dev/null 2>"$TMP/warmup.log" || { cat "$TMP/warmup.log" >&2; die "warm-up stagectl up failed"; }
"$STAGECTL" -f "$MANIFEST" down --volumes >/dev/null 2>&1
docker image inspect stagectl/shop:dev >/dev/null 2>&1 || die "stagectl/shop:dev is missing after the warm-up"
log "warm-up: docker-compose up -d + down -v (project $PROJECT, app on :$COMPOSE_PORT)"
compose up -d >/dev/null 2>"$TMP/warmup-compose.log" || { cat "$TMP/warmup-compose.log" >&2; die "warm-up docker-compose up failed"; }
compose down -v >/dev/null 2>&1

# ------------------------------------------------------------------------------ measure
REV=$(bench_revision)
CMD=$(bench_command "${ARGS[@]}")
log "measuring: $RUNS timing runs, $LAG_RUNS readiness-lag runs"
python3 "$BENCH_DIR/bench.py" \
	--stagectl "$STAGECTL" --manifest "$MANIFEST" --stack "$STACK" --app-port "$APP_PORT" \
	--compose-file "$COMPOSE_FILE" --project "$PROJECT" --compose-port "$COMPOSE_PORT" \
	--runs "$RUNS" --lag-runs "$LAG_RUNS" \
	--json "$TMP/results.json" --markdown "$TMP/section.md" \
	--command "$CMD" --revision "$REV" --load-start "$LOAD_START" &
BENCH_PID=$!
wait "$BENCH_PID" || die "measurement failed (see above)"
BENCH_PID=

# --------------------------------------------------------------------- BENCHMARKS.md
if [[ ! -f $OUT ]]; then
	cat >"$OUT" <<-'EOF'
	# Benchmarks

	How fast stagectl brings a stack up and tears it down, against docker-compose on the same
	stack. The section between the `bench-up` markers is rewritten by `scripts/bench-up.sh`;
	the rest of this file is left alone.

	EOF
fi
write_section 'stagectl vs docker-compose: up, down, readiness (`scripts/bench-up.sh`)'
