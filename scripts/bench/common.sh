# Shared by scripts/bench-*.sh (sourced, not run; it only defines functions): the preamble
# (messages, --help, checks of the tools, the one-at-a-time lock, building stagectl, the revision
# and command line a section names), removing what a benchmark created, the traps that do it
# even when the benchmark fails or is interrupted, and writing its BENCHMARKS.md section.
#
# The sourcing script sets ROOT (the repository) and BENCH_NAME (its name: bench-up for
# scripts/bench-up.sh) before it calls any of them. For the clean-up it defines TMP, KEEP,
# BENCH_KEPT (what --keep keeps, for the message), BENCH_LABELS (label filters of everything it
# creates), BENCH_REMOVE (a function that removes it all; it may call remove_labelled and
# remove_snapshots), and may set BENCH_PID (a driver process to stop first).

# ------------------------------------------------------------------------------ preamble
log() { printf '%s: %s\n' "$BENCH_NAME" "$*" >&2; }
die() { printf '%s: error: %s\n' "$BENCH_NAME" "$*" >&2; exit 1; }
# The script's header comment (its line 2 up to `set -euo`) is its --help.
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[-1]}"; }

# `require_positive OPTION VALUE`: dies unless VALUE is a whole number from 1.
require_positive() {
	[[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive number, not '$2'"
}

# Dies unless every tool named is on PATH and the Docker daemon answers.
require_tools() {
	local tool
	for tool in "$@"; do
		command -v "$tool" >/dev/null || die "$tool not found on PATH"
	done
	docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || die "cannot reach the Docker daemon"
}

# `expect_compose REGEX WHAT`: warns unless docker-compose's version matches ^REGEX (the
# measurements were made with WHAT).
expect_compose() {
	docker-compose version --short 2>/dev/null | grep -q "^$1" ||
		log "warning: this expects docker-compose $2 (found $(docker-compose version --short 2>/dev/null || echo '?'))"
}

# One run of this benchmark at a time on this machine: two would share the stack names and
# the CPUs. The lock (fd 9) is held until the script exits.
bench_lock() {
	exec 9>"/tmp/stagectl-$BENCH_NAME.lock"
	flock -n 9 || die "another scripts/$BENCH_NAME.sh is running (lock /tmp/stagectl-$BENCH_NAME.lock)"
}

# `build_stagectl [COPY]`: the release build of stagectl, copied to COPY if given (a private
# copy: other work may rebuild target/release while the benchmark runs).
build_stagectl() {
	log "cargo build --release -p stagectl"
	cargo build --release -p stagectl
	if (($#)); then
		cp "${CARGO_TARGET_DIR:-$ROOT/target}/release/stagectl" "$1"
	fi
}

# The revision a section names: the commit, and how many of stagectl's files differ from it.
bench_revision() {
	local rev dirty
	rev=$(git rev-parse --short HEAD 2>/dev/null || echo '?')
	dirty=$({ git status --porcelain -- stagectl Cargo.toml Cargo.lock 2>/dev/null || true; } | wc -l)
	((dirty == 0)) || rev="$rev + uncommitted changes in $dirty files"
	printf '%s\n' "$rev"
}

# `bench_command "${ARGS[@]}"`: the command line a section names, with the script's arguments.
bench_command() {
	local IFS=' '
	printf 'scripts/%s.sh%s\n' "$BENCH_NAME" "${*:+ $*}"
}

# ------------------------------------------------------------------------------ clean up

# Containers, networks and volumes carrying any of BENCH_LABELS, and the fixture snapshot
# images of BENCH_STACK (if set).
leftovers() {
	local f
	for f in "${BENCH_LABELS[@]}"; do
		docker ps -aq --filter "$f"
		docker network ls -q --filter "$f"
		docker volume ls -q --filter "$f"
	done
	if [[ -n ${BENCH_STACK:-} ]]; then
		docker images -q --filter "label=org.stagectl.stack=$BENCH_STACK" --filter label=org.stagectl.snapshot
	fi
}

# Belt and braces after the tools' own teardown: whatever still carries one of the labels.
remove_labelled() {
	local f
	for f in "${BENCH_LABELS[@]}"; do
		docker ps -aq --filter "$f" | xargs -r docker rm -f -v >/dev/null 2>&1 || true
		docker network ls -q --filter "$f" | xargs -r docker network rm >/dev/null 2>&1 || true
		docker volume ls -q --filter "$f" | xargs -r docker volume rm -f >/dev/null 2>&1 || true
	done
}

# Only this benchmark's fixture snapshots, never other stacks'.
remove_snapshots() {
	[[ -n ${BENCH_STACK:-} ]] || return 0
	docker images -q --filter "label=org.stagectl.stack=$BENCH_STACK" --filter label=org.stagectl.snapshot |
		sort -u | xargs -r docker rmi -f >/dev/null 2>&1 || true
}

bench_cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	set +e
	if [[ -n ${BENCH_PID:-} ]] && kill -0 "$BENCH_PID" 2>/dev/null; then
		kill "$BENCH_PID" 2>/dev/null
		wait "$BENCH_PID" 2>/dev/null
	fi
	"$BENCH_REMOVE"
	if [[ -n $(leftovers) ]]; then
		log "warning: could not remove everything: $(leftovers | tr '\n' ' ')"
		((rc != 0)) || rc=1
	fi
	if ((KEEP)); then
		log "kept $TMP ($BENCH_KEPT)"
	else
		rm -rf "$TMP"
	fi
	exit "$rc"
}

# Installs the traps, then removes what an earlier, killed run may have left.
bench_traps() {
	trap bench_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	if [[ -n $(leftovers) ]]; then
		log "removing leftovers of an earlier benchmark"
		"$BENCH_REMOVE"
	fi
}

# ------------------------------------------------------------------------- BENCHMARKS.md
# Puts "$TMP/section.md" under heading $1 between START_MARK and END_MARK in $OUT (replacing
# the previous section, or appended when there is none), then echoes its targets table.
write_section() {
	[[ -f $OUT ]] || printf '# Benchmarks\n\n' >"$OUT"
	{
		printf '%s\n' "$START_MARK"
		printf '## %s\n\n' "$1"
		cat "$TMP/section.md"
		printf '%s\n' "$END_MARK"
	} >"$TMP/section.full"
	if grep -qF -- "$START_MARK" "$OUT" && grep -qF -- "$END_MARK" "$OUT"; then
		awk -v start="$START_MARK" -v end="$END_MARK" -v file="$TMP/section.full" '
			$0 == start { while ((getline line < file) > 0) print line; skip = 1; next }
			$0 == end { skip = 0; next }
			!skip { print }
		' "$OUT" >"$TMP/BENCHMARKS.md"
	else
		{ cat "$OUT"; printf '\n'; cat "$TMP/section.full"; } >"$TMP/BENCHMARKS.md"
	fi
	cat "$TMP/BENCHMARKS.md" >"$OUT"
	log "wrote $OUT in $((SECONDS - T0))s"
	sed -n '/^### Targets/,/^### Results/p' "$TMP/section.full" | sed '$d' >&2
}
