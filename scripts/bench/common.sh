# Shared by scripts/bench-*.sh (sourced, not run): removing what a benchmark created, and the
# traps that do it even when the benchmark fails or is interrupted.
#
# The sourcing script defines: log, TMP, KEEP, BENCH_KEPT (what --keep keeps, for the
# message), BENCH_LABELS (label filters of everything it creates), BENCH_REMOVE (a function
# that removes it all; it may call remove_labelled and remove_snapshots), and may set
# BENCH_PID (a driver process to stop first).

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
