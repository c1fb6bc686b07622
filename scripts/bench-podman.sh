#!/usr/bin/env bash
# Benchmark: the same stack's `up` and `down` on Podman (its Docker-compatible API) vs Docker.
#
#   scripts/bench-podman.sh [--runs N] [--stagectl PATH] [--keep]
#
# The stack: PostgreSQL 15 with the demo's migrations and fixtures (masked, snapshotted),
# Redis 7 with fixtures, and the demo app (demo/shop/dist/shop mounted into
# stagectl/debian:bookworm) probed over HTTP: the stack of stagectl/tests/docker/podman.rs.
# Each run, for each engine (alternating which goes first), measures with the real binary:
#   cold `up` (the stack's fixture snapshot removed first: load + commit), `down --volumes`,
#   warm `up` (restored from the snapshot), `down --volumes`.
# Podman runs as its own `podman system service` on a socket in a temp dir (containers.conf
# as the test has it); the base images are copied from Docker into Podman when missing.
# Then rewrites the section between `<!-- bench-podman:start -->` and `<!-- bench-podman:end -->`
# in BENCHMARKS.md with medians, min/max and the Podman/Docker ratios.
#
# Stacks `benchpd` (Docker) and `benchpp` (Podman); both, and their snapshot images, are
# removed on exit, also on failure or Ctrl-C. --stagectl: the binary to measure (default
# target/release/stagectl, built when missing). --keep keeps the temp dir (manifest, raw
# timings). Needs docker, podman, python3, cargo. Not part of the test suite.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/BENCHMARKS.md
START_MARK='<!-- bench-podman:start -->'
END_MARK='<!-- bench-podman:end -->'
T0=$SECONDS

BENCH_NAME=bench-podman
# shellcheck source=bench/common.sh
source "$ROOT/scripts/bench/common.sh"

RUNS=5
STAGECTL=
KEEP=0
ARGS=("$@")
while (($#)); do
	case $1 in
	--runs) RUNS=${2:-}; shift 2 || die "--runs needs a number" ;;
	--runs=*) RUNS=${1#*=}; shift ;;
	--stagectl) STAGECTL=${2:-}; shift 2 || die "--stagectl needs a path" ;;
	--stagectl=*) STAGECTL=${1#*=}; shift ;;
	--keep) KEEP=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown argument '$1' (try --help)" ;;
	esac
done
require_positive --runs "$RUNS"
require_tools docker podman python3 cargo flock

bench_lock

cd "$ROOT"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
if [[ -z $STAGECTL ]]; then
	STAGECTL=${CARGO_TARGET_DIR:-$ROOT/target}/release/stagectl
	build_stagectl
fi
[[ -x $STAGECTL ]] || die "no stagectl binary at $STAGECTL"
[[ -x demo/shop/dist/shop ]] || { log "the shop binary (scripts/build-shop.sh)"; scripts/build-shop.sh >/dev/null; }
TMP=$(mktemp -d /tmp/stagectl-bench-podman.XXXXXX)
PODMAN_SOCK=$TMP/podman.sock
PODMAN_HOST=unix://$PODMAN_SOCK
SERVICE_PID=

# ------------------------------------------------------------------------------ clean up
# common.sh's Docker-only clean-up helpers are replaced here (same names); its write_section
# is used at the end.
# One label filter at a time: Podman ORs several label filters on images.
remove_stack() { # ENGINE_CLI HOST STACK
	local cli=$1 host=$2 stack=$3 f="label=org.stagectl.stack=$3"
	DOCKER_HOST=$host "$STAGECTL" down --volumes --stack "$stack" >/dev/null 2>&1 || true
	"$cli" ps -aq --filter "$f" | xargs -r "$cli" rm -f >/dev/null 2>&1 || true
	"$cli" network ls -q --filter "$f" | xargs -r "$cli" network rm >/dev/null 2>&1 || true
	"$cli" volume ls -q --filter "$f" | xargs -r "$cli" volume rm -f >/dev/null 2>&1 || true
}
remove_snapshots() { # ENGINE_CLI STACK
	"$1" images -q --filter "label=org.stagectl.stack=$2" | sort -u | xargs -r "$1" rmi -f >/dev/null 2>&1 || true
}
leftovers() {
	local f
	for f in docker:benchpd podman:benchpp; do
		"${f%%:*}" ps -aq --filter "label=org.stagectl.stack=${f#*:}"
		"${f%%:*}" network ls -q --filter "label=org.stagectl.stack=${f#*:}"
		"${f%%:*}" volume ls -q --filter "label=org.stagectl.stack=${f#*:}"
		"${f%%:*}" images -q --filter "label=org.stagectl.stack=${f#*:}"
	done
}
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	set +e
	remove_stack docker "unix:///var/run/docker.sock" benchpd
	remove_snapshots docker benchpd
	if [[ -n $SERVICE_PID ]]; then
		remove_stack podman "$PODMAN_HOST" benchpp
		remove_snapshots podman benchpp
		kill "$SERVICE_PID" 2>/dev/null
		wait "$SERVICE_PID" 2>/dev/null
	fi
	if [[ -n $(leftovers) ]]; then
		log "warning: could not remove everything: $(leftovers | tr '\n' ' ')"
		((rc != 0)) || rc=1
	fi
	if ((KEEP)); then log "kept $TMP (manifest, raw timings)"; else rm -rf "$TMP"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ----------------------------------------------------------------------------- prepare
for image in stagectl/postgres:15 stagectl/redis:7 stagectl/debian:bookworm; do
	docker image inspect "$image" >/dev/null 2>&1 || { log "base images (scripts/build-images.sh)"; scripts/build-images.sh; break; }
done
missing=()
for image in stagectl/postgres:15 stagectl/redis:7 stagectl/debian:bookworm; do
	podman image exists "$image" || missing+=("$image")
done
if ((${#missing[@]})); then
	log "copying ${missing[*]} from Docker into Podman"
	docker save "${missing[@]}" | podman load -q >/dev/null
fi

# Podman's default container limits need CAP_SYS_RESOURCE; use this shell's (as the test).
pid_max=$(cat /proc/sys/kernel/pid_max)
nofile=$(ulimit -Hn); [[ $nofile == unlimited || $nofile -gt 1048576 ]] && nofile=1048576
nproc=$(ulimit -Hu); [[ $nproc == unlimited || $nproc -gt $pid_max ]] && nproc=$pid_max
printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=%s:%s"]\n' "$nofile" "$nofile" "$nproc" "$nproc" >"$TMP/containers.conf"
CONTAINERS_CONF=$TMP/containers.conf podman system service --time=0 "$PODMAN_HOST" 2>"$TMP/podman-service.log" &
SERVICE_PID=$!
for _ in $(seq 1 100); do [[ -S $PODMAN_SOCK ]] && break; sleep 0.1; done
[[ -S $PODMAN_SOCK ]] || die "podman system service did not start: $(tail -5 "$TMP/podman-service.log")"
remove_stack docker "unix:///var/run/docker.sock" benchpd
remove_snapshots docker benchpd
remove_stack podman "$PODMAN_HOST" benchpp
remove_snapshots podman benchpp

manifest() { # STACK
	cat <<-TOML
	[stack]
	name = "$1"

	[services.db]
	image = "stagectl/postgres:15"
	env = { POSTGRES_DB = "shop" }
	ready = { postgres = 5432, timeout = "60s" }

	[services.cache]
	image = "stagectl/redis:7"
	ready = { tcp = 6379, timeout = "30s" }

	[services.app]
	image = "stagectl/debian:bookworm"
	command = ["/usr/local/bin/shop"]
	volumes = ["$ROOT/demo/shop/dist/shop:/usr/local/bin/shop:ro"]
	ports = ["8080"]
	depends_on = ["db", "cache"]
	env = { PORT = "8080", DATABASE_URL = "postgres://postgres@db:5432/shop", REDIS_URL = "redis://cache:6379/", API_KEY = "\${secret:api_key}" }
	ready = { http = "/healthz", port = 8080, timeout = "60s" }

	[fixtures.db]
	files = ["$ROOT/fixtures/shop/*.csv", "$ROOT/fixtures/shop/*.sql"]
	mask = { "customers.email" = "email", "customers.name" = "name" }

	[fixtures.cache]
	loader = "redis"
	files = ["$ROOT/fixtures/cache/*.redis"]

	[migrations.db]
	dir = "$ROOT/demo/shop/migrations"
	TOML
}
for stack in benchpd benchpp; do
	mkdir -p "$TMP/$stack"
	manifest "$stack" >"$TMP/$stack/stack.toml"
	(umask 077 && printf 'api_key=bench\n' >"$TMP/$stack/secrets.env")
done

# timed ENGINE STACK HOST WHAT ARGS...: runs stagectl, appends "engine what seconds" to results.
timed() {
	local engine=$1 stack=$2 host=$3 what=$4
	shift 4
	local t0 t1
	t0=$(date +%s.%N)
	DOCKER_HOST=$host STAGECTL_LOCAL=true "$STAGECTL" -f "$TMP/$stack/stack.toml" "$@" >"$TMP/last.out" 2>&1 ||
		{ tail -20 "$TMP/last.out" >&2; die "$engine: stagectl $* failed"; }
	t1=$(date +%s.%N)
	echo "$engine $what $(python3 -c "print(f'{$t1 - $t0:.3f}')")" >>"$TMP/results.txt"
}
one_engine() { # ENGINE
	local engine=$1 stack host cli
	case $engine in
	docker) stack=benchpd host=unix:///var/run/docker.sock cli=docker ;;
	podman) stack=benchpp host=$PODMAN_HOST cli=podman ;;
	esac
	remove_snapshots "$cli" "$stack"
	timed "$engine" "$stack" "$host" cold_up up
	grep -q 'snapshot saved' "$TMP/last.out" || die "$engine: the cold up took no snapshot"
	timed "$engine" "$stack" "$host" down down --volumes
	timed "$engine" "$stack" "$host" warm_up up
	grep -q 'restored from snapshot' "$TMP/last.out" || die "$engine: the warm up did not restore the snapshot"
	timed "$engine" "$stack" "$host" warm_down down --volumes
}

log "warm-up: one untimed run per engine"
one_engine docker
one_engine podman
: >"$TMP/results.txt"
for run in $(seq 1 "$RUNS"); do
	if ((run % 2)); then order=(docker podman); else order=(podman docker); fi
	log "run $run/$RUNS: ${order[*]}"
	for engine in "${order[@]}"; do one_engine "$engine"; done
done

# --------------------------------------------------------------------- BENCHMARKS.md
REV=$(bench_revision)
python3 - "$TMP/results.txt" "$TMP/section.md" <<PY
import statistics, sys, subprocess, os, datetime
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
t = {}
for engine, what, secs in rows:
    t.setdefault((engine, what), []).append(float(secs))
def v(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip() or "?"
    except OSError:
        return "?"
names = {"cold_up": "cold \`up\` (fixtures loaded, snapshot committed)", "down": "\`down --volumes\` after it",
         "warm_up": "warm \`up\` (restored from the snapshot)", "warm_down": "\`down --volumes\` after it"}
out = []
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
out.append(f"Measured {now} by \`scripts/bench-podman.sh ${ARGS[*]}\` ({$RUNS} runs per engine, alternating which goes first; stagectl {os.path.basename('$STAGECTL')} at $REV). "
           "The stack: PostgreSQL 15 with migrations and masked fixtures (snapshotted), Redis 7 with fixtures, the demo app probed over HTTP. "
           "The machine is shared and noisy (other builds and tests run on it): treat ratios within ~15 % of 1 as noise.")
out.append("")
out.append("| step | Docker median (min–max) | Podman median (min–max) | Podman / Docker |")
out.append("|---|---|---|---|")
for k in ["cold_up", "down", "warm_up", "warm_down"]:
    d, p = t.get(("docker", k), []), t.get(("podman", k), [])
    if not d or not p:
        continue
    md, mp = statistics.median(d), statistics.median(p)
    out.append(f"| {names[k]} | {md:.2f} s ({min(d):.2f}–{max(d):.2f}) | {mp:.2f} s ({min(p):.2f}–{max(p):.2f}) | **{mp / md:.2f}x** |")
out.append("")
out.append("Machine:")
out.append(f"- {os.cpu_count()} CPUs, Linux {os.uname().release}; load average at the start $LOAD_START, at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
out.append(f"- Docker {v(['docker', 'version', '--format', '{{.Server.Version}}'])}, storage driver {v(['docker', 'info', '--format', '{{.Driver}}'])}; "
           f"Podman {v(['podman', 'version', '--format', '{{.Server.Version}}'])}, storage driver {v(['podman', 'info', '--format', '{{.Store.GraphDriverName}}'])}, "
           f"network backend {v(['podman', 'info', '--format', '{{.Host.NetworkBackend}}'])}")
out.append("")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
PY
write_section 'Podman vs Docker: the same stack up and down (`scripts/bench-podman.sh`)'
sed -n '/^| step/,/^$/p' "$TMP/section.md" >&2
