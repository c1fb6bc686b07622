#!/usr/bin/env bash
# Benchmark: carrying fixture snapshots to an engine that lacks them.
#
#   scripts/bench-snapshots.sh [ROWS] [STAGECTL]      (default 40000 rows, target/release or debug binary)
#
# Stack `benchsnap` (a PostgreSQL `db` with a migrate job and ROWS generated customers,
# scripts/gen-fixtures.py, as scripts/bench-rebuild.sh has it, plus a Redis `cache` with
# fixtures). Measures, once each, on this machine's engine:
#   cold `up` (no snapshot: load + commit), `snapshots export` (time, archive size),
#   then `down --volumes`, the stack's snapshot images removed (a runner without them),
#   `snapshots import` (time), and `up` after the import (must report `hit` for db).
# Prints a Markdown table row. Removes the stack, its snapshot images and the temp dir on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROWS=${1:-40000}
BIN=${2:-}
if [[ -z $BIN ]]; then
	for b in "${CARGO_TARGET_DIR:-$ROOT/target}/release/stagectl" "${CARGO_TARGET_DIR:-$ROOT/target}/debug/stagectl"; do
		[[ -x $b ]] && BIN=$b && break
	done
fi
[[ -x $BIN ]] || { echo "bench-snapshots: build stagectl first" >&2; exit 1; }
STACK=benchsnap
DIR=$(mktemp -d)
cleanup() {
	"$BIN" down --volumes --stack "$STACK" >/dev/null 2>&1 || true
	docker images -q --filter "label=org.stagectl.stack=$STACK" --filter label=org.stagectl.snapshot | sort -u | xargs -r docker rmi -f >/dev/null 2>&1 || true
	rm -rf "$DIR"
}
trap cleanup EXIT
cleanup_snapshots() {
	docker images --format '{{.Repository}}:{{.Tag}}' --filter "label=org.stagectl.stack=$STACK" --filter label=org.stagectl.snapshot | xargs -r docker rmi -f >/dev/null
}

python3 "$ROOT/scripts/gen-fixtures.py" "$ROWS" "$DIR" >/dev/null
mkdir -p "$DIR/cache"
echo 'SET greeting hello' >"$DIR/cache/warm.redis"
cat >"$DIR/stack.toml" <<TOML
[stack]
name = "$STACK"
snapshot_budget = "1000GB"

[services.db]
image = "stagectl/postgres:15"
env = { POSTGRES_DB = "bench" }
ready = { postgres = 5432, timeout = "60s" }

[services.migrate]
image = "stagectl/postgres:15"
job = true
depends_on = ["db"]
entrypoint = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "db", "-U", "postgres", "-d", "bench", "-f", "/schema.sql"]
volumes = ["$DIR/schema.sql:/schema.sql:ro"]

[services.cache]
image = "stagectl/redis:7"
ready = { tcp = 6379 }

[fixtures.db]
files = ["data/*.csv"]

[fixtures.cache]
loader = "redis"
files = ["cache/*.redis"]
TOML

s() { "$BIN" -f "$DIR/stack.toml" "$@"; }
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }

cleanup_snapshots
t0=$(now); s --json up >"$DIR/cold.json"; t1=$(now)
cold=$(secs "$t0" "$t1")
t0=$(now); s snapshots export "$DIR/snapshots.tar" >&2; t1=$(now)
export_s=$(secs "$t0" "$t1")
size=$(stat -c %s "$DIR/snapshots.tar")
s down --volumes >/dev/null
cleanup_snapshots
t0=$(now); s snapshots import "$DIR/snapshots.tar" >&2; t1=$(now)
import_s=$(secs "$t0" "$t1")
t0=$(now); s --json up >"$DIR/warm.json"; t1=$(now)
warm=$(secs "$t0" "$t1")
hit=$(python3 -c "import json,sys; r=json.loads(open('$DIR/warm.json').read().strip().splitlines()[-1]); print(','.join(s['service']+'='+s['fixtures']['snapshot'] for s in r['services'] if s.get('fixtures')))")
echo "| $ROWS | $cold | $export_s | $(python3 -c "print(f'{$size/1e6:.0f} MB')") | $import_s | $warm | $hit |"
