#!/usr/bin/env bash
# Benchmark on a stack as users have it: stagectl vs docker-compose with a PostgreSQL image
# that initialises its cluster on first start (stagectl/postgres-firststart:15, like the
# official image: VOLUME on PGDATA, default durable settings) and a users/orders schema.
#
#   scripts/bench-realistic.sh [--runs 3] [--huge] [--sizes 40000,400000] [--keep]
#
# Sizes are users (3 orders each): 40k and 400k by default, plus 4M with --huge (or any list
# with --sizes). Per size, in one run and alternating which tool goes first
# (scripts/bench/realistic.py): cold up (compose `up -d` with the data loaded by
# /docker-entrypoint-initdb.d until queryable, vs stagectl `up` with no snapshot yet), rebuild
# (compose `down -v` + `up -d` until queryable, vs stagectl warm `rebuild`), `down` of each, and
# stagectl's restore→ready. After every up and rebuild of both tools the row counts of users
# and orders are checked: a wrong count is written at the top of the section and the script
# exits 1 (after writing BENCHMARKS.md).
# Rewrites the section between `<!-- bench-realistic:start -->` and
# `<!-- bench-realistic:end -->` in BENCHMARKS.md (appended if missing) with medians, ratios,
# verdicts against issue 13's targets and the machine's facts.
#
# Names: stack `benchreal` (stagectl), project `benchrealc` (compose); no host ports. Removed on
# exit (also on failure or Ctrl-C): both stacks, their volumes (also the image's anonymous
# PGDATA volumes, which carry no label: the ones the bench saw are listed in the temp dir) and
# this benchmark's snapshot images (only those labelled org.stagectl.stack=benchreal).
# --keep keeps the temp dir (data, manifests, raw results as JSON).
#
# Needs: docker, docker-compose (v1), python3, cargo. Disk: about 3× the CSVs per size.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK=benchreal
PROJECT=benchrealc
OUT=$ROOT/BENCHMARKS.md
START_MARK='<!-- bench-realistic:start -->'
END_MARK='<!-- bench-realistic:end -->'
T0=$SECONDS

BENCH_NAME=bench-realistic
# shellcheck source=bench/common.sh
source "$ROOT/scripts/bench/common.sh"

SIZES=40000,400000
RUNS=3
KEEP=0
ARGS=("$@")
while (($#)); do
	case $1 in
	--sizes) SIZES=${2:-}; shift 2 || die "--sizes needs a list" ;;
	--sizes=*) SIZES=${1#*=}; shift ;;
	--huge) SIZES=$SIZES,4000000; shift ;;
	--runs) RUNS=${2:-}; shift 2 || die "--runs needs a number" ;;
	--runs=*) RUNS=${1#*=}; shift ;;
	--keep) KEEP=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown argument '$1' (try --help)" ;;
	esac
done
[[ $SIZES =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "--sizes must be a comma-separated list of user counts, not '$SIZES'"
require_positive --runs "$RUNS"

require_tools docker docker-compose python3 cargo flock

bench_lock

cd "$ROOT"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
TMP=$(mktemp -d /tmp/stagectl-bench-realistic.XXXXXX)
# The db container reads the bind-mounted data as user postgres.
chmod 755 "$TMP"
STAGECTL=$TMP/stagectl

# ------------------------------------------------------------------------------ clean up
remove_everything() {
	local d v
	for d in "$TMP"/u*/; do
		[[ -f $d/stack.toml && -x $STAGECTL ]] &&
			"$STAGECTL" -f "$d/stack.toml" down --volumes >/dev/null 2>&1
		[[ -f $d/docker-compose.yml ]] &&
			docker-compose -p "$PROJECT" -f "$d/docker-compose.yml" down -v --remove-orphans -t 0 >/dev/null 2>&1
	done
	remove_labelled
	remove_snapshots
	# The image's anonymous PGDATA volumes have no label: the ones the bench saw, if unused.
	if [[ -f $TMP/volumes.txt ]]; then
		sort -u "$TMP/volumes.txt" | while read -r v; do
			if docker volume inspect "$v" >/dev/null 2>&1; then
				log "removing volume $v (left by a removed container)"
				docker volume rm "$v" >/dev/null 2>&1 || log "warning: volume $v still in use, left"
			fi
		done
	fi
	return 0
}

BENCH_LABELS=("label=org.stagectl.stack=$STACK" "label=com.docker.compose.project=$PROJECT")
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
log "measuring $SIZES users: $RUNS runs each"
status=0
python3 "$ROOT/scripts/bench/realistic.py" \
	--stagectl "$STAGECTL" --work "$TMP" --sizes "$SIZES" --runs "$RUNS" \
	--stack "$STACK" --project "$PROJECT" \
	--json "$TMP/results.json" --markdown "$TMP/section.md" \
	--command "$CMD" --revision "$REV" --load-start "$LOAD_START" &
BENCH_PID=$!
wait "$BENCH_PID" || status=$?
BENCH_PID=
((status == 0 || status == 2)) || die "measurement failed (see above)"

# --------------------------------------------------------------------- BENCHMARKS.md
write_section 'A realistic stack: first-start PostgreSQL image, users + orders (`scripts/bench-realistic.sh`)'
if ((status == 2)); then
	die "DATA CHECK FAILED: a tool's database did not hold the generated rows (listed above and in $OUT)"
fi
