#!/usr/bin/env bash
# Benchmark: `stagectl deploy --swarm` vs `docker stack deploy` of an equivalent compose file,
# deploy → ready, side by side on the same one-node swarm.
#
#   scripts/bench-swarm.sh [--runs 3] [--stagectl BIN] [--publish host|ingress] [--keep]
#
# The stack: PostgreSQL 15, Redis 7, the shop's migration job and the shop app (its image
# built once by stagectl and tagged stagectl/shop:bench). Runs alternate; each starts from
# nothing and is removed after. "Ready" for docker stack deploy: the job's task complete, the
# other tasks running, /healthz 200 on the published port and PostgreSQL answering, polled.
# --publish defaults to `ingress`, or `host` when the kernel has no IPVS (no /proc/net/ip_vs:
# Swarm's routing mesh cannot work there). --stagectl uses that binary instead of building
# target/release/stagectl.
#
# The engine is made a one-node swarm if it is not one, and left again at the end only then;
# the lock /tmp/stagectl-swarm-tests.lock is shared with the Swarm tests (one swarm per
# engine). Rewrites the section between `<!-- bench-swarm:start -->` and
# `<!-- bench-swarm:end -->` in BENCHMARKS.md. Names: stack `benchsw`, docker stack `benchswc`,
# host port 18931; the tag stagectl/shop:bench is removed at the end.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK=benchsw
PROJECT=benchswc
PORT=18931
OUT=$ROOT/BENCHMARKS.md
START_MARK='<!-- bench-swarm:start -->'
END_MARK='<!-- bench-swarm:end -->'
T0=$SECONDS

BENCH_NAME=bench-swarm
# shellcheck source=bench/common.sh
source "$ROOT/scripts/bench/common.sh"

RUNS=3
BIN=
KEEP=0
PUBLISH=ingress
[[ -e /proc/net/ip_vs ]] || PUBLISH=host
ARGS=("$@")
while (($#)); do
	case $1 in
	--runs) RUNS=${2:-}; shift 2 || die "--runs needs a number" ;;
	--stagectl) BIN=${2:-}; shift 2 || die "--stagectl needs a path" ;;
	--publish) PUBLISH=${2:-}; shift 2 || die "--publish needs host or ingress" ;;
	--keep) KEEP=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown argument '$1' (try --help)" ;;
	esac
done
require_positive --runs "$RUNS"
[[ $PUBLISH == host || $PUBLISH == ingress ]] || die "--publish must be host or ingress, not '$PUBLISH'"
require_tools docker python3 cargo flock

exec 9>/tmp/stagectl-swarm-tests.lock
flock 9
cd "$ROOT"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
TMP=$(mktemp -d /tmp/stagectl-bench-swarm.XXXXXX)
CREATED=0
GWBRIDGE_CREATED=0

cleanup() {
	[[ -x ${STAGECTL:-} ]] && "$STAGECTL" down --volumes --stack "$STACK" >/dev/null 2>&1 || true
	docker stack rm "$PROJECT" >/dev/null 2>&1 || true
	# The tag this benchmark gave the shop image (the image stays under its stagectl-build tag).
	docker rmi stagectl/shop:bench >/dev/null 2>&1 || true
	if ((CREATED)); then
		sleep 2
		docker swarm leave --force >/dev/null 2>&1 || true
		((GWBRIDGE_CREATED)) && docker network rm docker_gwbridge >/dev/null 2>&1 || true
	fi
	if ((KEEP)); then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ $(docker info --format '{{.Swarm.LocalNodeState}}') != active ]]; then
	log "docker swarm init --advertise-addr 127.0.0.1 (left again at the end)"
	[[ -n $(docker network ls -q --filter name=^docker_gwbridge$) ]] || GWBRIDGE_CREATED=1
	docker swarm init --advertise-addr 127.0.0.1 >/dev/null
	CREATED=1
fi

STAGECTL=$TMP/stagectl-bin
if [[ -n $BIN ]]; then
	cp "$BIN" "$STAGECTL"
	KIND="given binary $BIN"
else
	build_stagectl "$STAGECTL"
	KIND="release build"
fi

REV="$(git rev-parse --short HEAD 2>/dev/null || echo '?') ($KIND)"
CMD=$(bench_command "${ARGS[@]}")
python3 "$ROOT/scripts/bench/swarm.py" --stagectl "$STAGECTL" --work "$TMP" --runs "$RUNS" --publish "$PUBLISH" \
	--port "$PORT" --stack "$STACK" --project "$PROJECT" \
	--json "$TMP/results.json" --markdown "$TMP/section.md" \
	--command "$CMD" --revision "$REV" --load-start "$LOAD_START"

write_section 'Swarm: `stagectl deploy --swarm` vs `docker stack deploy` (`scripts/bench-swarm.sh`)'
cat "$TMP/section.md"
