#!/usr/bin/env bash
# Soak test: N consecutive `stagectl verify` runs (rebuild + every check) of the demo stack,
# counting passes and failures; prints each failing run's failed checks and, at the end, the
# first failure's message. Exit 0 only when every run passed.
#
#   scripts/soak-verify.sh [RUNS]          (default 50)
#
# The demo's stack.toml runs under its own stack name (`soak<pid>`, or $SOAK_STACK) so other
# users of the machine are not disturbed: a copy of the manifest beside stack.toml (relative
# paths stay valid) with that name and the app's port left to Docker. Runs use their own state
# dir (history, locks) unless $STAGECTL_STATE_DIR is set, and a generated API key unless
# secrets.env or $STAGECTL_SECRET_API_KEY provides one.
# On exit (also on failure or Ctrl-C): `down --volumes` of the soak stack, its fixture
# snapshots, the manifest copy and the temp dir are removed.
#
# Binary: $STAGECTL, else $CARGO_TARGET_DIR/debug/stagectl (or target/debug), built if missing.
# Per-run JSON reports and logs: kept in $SOAK_KEEP (a directory) when it is set.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${1:-50}
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "usage: scripts/soak-verify.sh [RUNS]" >&2; exit 2; }
STACK=${SOAK_STACK:-soak$$}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${STAGECTL:-$TARGET_DIR/debug/stagectl}

log() { printf 'soak-verify: %s\n' "$*" >&2; }

if [[ ! -x $BIN ]]; then
	log "building $BIN"
	(cd "$ROOT" && cargo build -q -p stagectl)
fi

TMP=$(mktemp -d)
MANIFEST=$ROOT/.soak-verify-$STACK.toml
export STAGECTL_STATE_DIR=${STAGECTL_STATE_DIR:-$TMP/state}
export STAGECTL_LOCAL=true # no daemon serves the soak stack; never look for one
if [[ ! -f $ROOT/secrets.env && -z ${STAGECTL_SECRET_API_KEY:-} ]]; then
	STAGECTL_SECRET_API_KEY=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
	export STAGECTL_SECRET_API_KEY
fi

cleanup() {
	local status=$?
	trap - EXIT INT TERM
	if [[ -f $MANIFEST ]]; then
		"$BIN" -f "$MANIFEST" down --volumes >/dev/null 2>&1 || log "warning: down --volumes of $STACK failed"
		"$BIN" -f "$MANIFEST" snapshots prune --all >/dev/null 2>&1 || true
	fi
	rm -f "$MANIFEST"
	if [[ -n ${SOAK_KEEP:-} ]]; then
		mkdir -p "$SOAK_KEEP" && cp -r "$TMP"/run-* "$SOAK_KEEP"/ 2>/dev/null || true
	fi
	rm -rf "$TMP"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The demo manifest under the soak stack's name; the app's host port is left to Docker (the
# checks reach the app on the stack network, not through the published port).
sed -e "s/^name = \"shop\"$/name = \"$STACK\"/" \
	-e 's/^ports = \["\${SHOP_PORT:-8080}:8080"\]$/ports = ["8080"]/' \
	"$ROOT/stack.toml" >"$MANIFEST"
grep -q "^name = \"$STACK\"$" "$MANIFEST" || { log "error: cannot rename the stack in stack.toml"; exit 2; }
grep -q '^ports = \["8080"\]$' "$MANIFEST" || { log "error: cannot unpublish the app's port in stack.toml"; exit 2; }

log "$RUNS runs of \`verify\` on stack $STACK with $BIN"
passed=0
failed=0
first_failure=""
start=$SECONDS
for ((i = 1; i <= RUNS; i++)); do
	run_start=$SECONDS
	out=$TMP/run-$i.log
	report=$TMP/run-$i.json
	code=0
	"$BIN" -f "$MANIFEST" verify --report "json:$report" >"$out" 2>&1 || code=$?
	took=$((SECONDS - run_start))
	if ((code == 0)); then
		passed=$((passed + 1))
		printf 'run %d/%d: ok (%ds)\n' "$i" "$RUNS" "$took"
		continue
	fi
	failed=$((failed + 1))
	# The failed checks (`✗ name (kind, s): message`), else the end of the output.
	why=$(grep '^✗ ' "$out" || true)
	[[ -n $why ]] || why=$(tail -n 5 "$out")
	printf 'run %d/%d: FAILED (exit %d, %ds)\n%s\n' "$i" "$RUNS" "$code" "$took" "$why"
	[[ -n $first_failure ]] || first_failure="run $i: $why"
	((code == 130)) && exit 130
	((code == 2)) && { log "error: invalid manifest or command line: not a flake, stopping"; exit 2; }
done

minutes=$(awk -v s=$((SECONDS - start)) 'BEGIN { printf "%.1f", s / 60 }')
echo "soak-verify: $RUNS runs, $passed passed, $failed failed in $minutes min (stack $STACK)"
if ((failed > 0)); then
	echo "first failure: $first_failure"
	exit 1
fi
