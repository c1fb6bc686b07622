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

log() { printf 'bench-swarm: %s\n' "$*" >&2; }
die() { printf 'bench-swarm: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

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
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive number, not '$RUNS'"
[[ $PUBLISH == host || $PUBLISH == ingress ]] || die "--publish must be host or ingress, not '$PUBLISH'"
for tool in docker python3 cargo flock; do
	command -v "$tool" >/dev/null || die "$tool not found on PATH"
done
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || die "cannot reach the Docker daemon"

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
	log "cargo build --release -p stagectl"
	cargo build --release -p stagectl
	cp "${CARGO_TARGET_DIR:-$ROOT/target}/release/stagectl" "$STAGECTL"
	KIND="release build"
fi

REV="$(git rev-parse --short HEAD 2>/dev/null || echo '?') ($KIND)"
CMD="scripts/bench-swarm.sh${ARGS[*]:+ ${ARGS[*]}}"
python3 "$ROOT/scripts/bench/swarm.py" --stagectl "$STAGECTL" --work "$TMP" --runs "$RUNS" --publish "$PUBLISH" \
	--port "$PORT" --stack "$STACK" --project "$PROJECT" \
	--json "$TMP/results.json" --markdown "$TMP/section.md" \
	--command "$CMD" --revision "$REV" --load-start "$LOAD_START"

python3 - "$OUT" "$TMP/section.md" "$START_MARK" "$END_MARK" <<'PY'
import sys
out, section, start, end = sys.argv[1:]
body = open(section).read()
text = open(out).read() if __import__("os").path.exists(out) else ""
block = f"{start}\n## Swarm: `stagectl deploy --swarm` vs `docker stack deploy` (`scripts/bench-swarm.sh`)\n\n{body}{end}"
if start in text and end in text:
    text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
else:
    text = text.rstrip("\n") + "\n\n" + block + "\n"
open(out, "w").write(text)
PY
log "wrote the section to BENCHMARKS.md"
cat "$TMP/section.md"
