#!/usr/bin/env bash
# Benchmark: stagectl's warm `rebuild` (fixture snapshot hit) against docker-compose
# `down -v` + `up` seeding the same data, and stagectl's cold fixture load against a raw COPY.
#
#   scripts/bench-rebuild.sh [--sizes 40000,400000,4000000] [--runs 3] [--large-runs 1] [--keep]
#
# For each size (rows of a generated `customers` table, scripts/gen-fixtures.py, fixed seed,
# written to a temp dir), measures on this machine's Docker engine:
#   (a) stagectl cold `up`: no snapshot of the bench stack yet, so COPY + snapshot commit;
#   (b) stagectl warm `rebuild` (= down --volumes + up) restoring from that snapshot;
#   (c) docker-compose (v1) `down -v` + `up -d` with a migrate job and a seeding service
#       (`psql -c "\copy ..."`), until the seed exited 0;
#   (d) a raw `\copy` of the same CSV inside a running PostgreSQL container (the floor).
# --runs runs per size (default 3); sizes of 1M rows and more get --large-runs (default 1).
# Then rewrites the section between `<!-- bench-rebuild:start -->` and
# `<!-- bench-rebuild:end -->` in BENCHMARKS.md (appending it if missing; the rest of the file
# is left alone) with medians, ratios, verdicts against the targets and the machine's facts.
#
# Names: stack `benchrb` (stagectl), project `benchrbc` (compose), container `benchrb-raw`; no
# host ports. Removed on exit (also on failure or Ctrl-C): the stacks, the compose volumes,
# the raw container and this benchmark's snapshot images (only those labelled
# org.stagectl.stack=benchrb: never `snapshots prune --all`, other users' snapshots stay).
# --keep keeps the temp dir (generated data, manifests, raw results as JSON).
#
# Needs: docker, docker-compose (v1.29: service_completed_successfully), python3, cargo.
# Disk: about 2.5× the CSV per size at once (CSV + the db container + its snapshot image).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK=benchrb
PROJECT=benchrbc
OUT=$ROOT/BENCHMARKS.md
START_MARK='<!-- bench-rebuild:start -->'
END_MARK='<!-- bench-rebuild:end -->'
T0=$SECONDS

BENCH_NAME=bench-rebuild
# shellcheck source=bench/common.sh
source "$ROOT/scripts/bench/common.sh"

SIZES=40000,400000,4000000
RUNS=3
LARGE_RUNS=1
KEEP=0
ARGS=("$@")
while (($#)); do
	case $1 in
	--sizes) SIZES=${2:-}; shift 2 || die "--sizes needs a list" ;;
	--sizes=*) SIZES=${1#*=}; shift ;;
	--runs) RUNS=${2:-}; shift 2 || die "--runs needs a number" ;;
	--runs=*) RUNS=${1#*=}; shift ;;
	--large-runs) LARGE_RUNS=${2:-}; shift 2 || die "--large-runs needs a number" ;;
	--large-runs=*) LARGE_RUNS=${1#*=}; shift ;;
	--keep) KEEP=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown argument '$1' (try --help)" ;;
	esac
done
[[ $SIZES =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "--sizes must be a comma-separated list of row counts, not '$SIZES'"
require_positive --runs "$RUNS"
require_positive --large-runs "$LARGE_RUNS"

require_tools docker docker-compose python3 cargo flock
expect_compose '1\.29' 1.29

bench_lock

cd "$ROOT"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
TMP=$(mktemp -d /tmp/stagectl-bench-rebuild.XXXXXX)
# A private copy of the binary: other work may rebuild target/release meanwhile.
STAGECTL=$TMP/stagectl

# ------------------------------------------------------------------------------ clean up
remove_everything() {
	if [[ -x $STAGECTL ]]; then
		"$STAGECTL" down --volumes --stack "$STACK" >/dev/null 2>&1 || true
	fi
	local d
	for d in "$TMP"/n*/; do
		[[ -f $d/docker-compose.yml ]] &&
			docker-compose -p "$PROJECT" -f "$d/docker-compose.yml" down -v --remove-orphans -t 0 >/dev/null 2>&1
	done
	docker rm -f "$STACK-raw" >/dev/null 2>&1 || true
	remove_labelled
	remove_snapshots
}

BENCH_LABELS=("label=org.stagectl.stack=$STACK" "label=com.docker.compose.project=$PROJECT" "label=org.stagectl.bench=$STACK")
BENCH_STACK=$STACK
BENCH_REMOVE=remove_everything
BENCH_KEPT="data, manifests, raw results"
bench_traps

# ----------------------------------------------------------------------------- prepare
log "base images (scripts/build-images.sh)"
scripts/build-images.sh
build_stagectl "$STAGECTL"

REV=$(bench_revision)
CMD=$(bench_command "${ARGS[@]}")
log "measuring sizes $SIZES: $RUNS runs each ($LARGE_RUNS from 1M rows)"
python3 "$ROOT/scripts/bench/rebuild.py" \
	--stagectl "$STAGECTL" --work "$TMP" --sizes "$SIZES" --runs "$RUNS" --large-runs "$LARGE_RUNS" \
	--stack "$STACK" --project "$PROJECT" \
	--json "$TMP/results.json" --markdown "$TMP/section.md" \
	--command "$CMD" --revision "$REV" --load-start "$LOAD_START" &
BENCH_PID=$!
wait "$BENCH_PID" || die "measurement failed (see above)"
BENCH_PID=

# --------------------------------------------------------------------- BENCHMARKS.md
write_section 'Fixtures: warm rebuild vs docker-compose seeding, cold load vs raw COPY (`scripts/bench-rebuild.sh`)'
