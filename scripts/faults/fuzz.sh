#!/usr/bin/env bash
# Part e of scripts/fault-suite.sh: the manifest generator of stagectl/tests/manifest_fuzz.rs at
# a larger size. Usage: fuzz.sh CASES. Prints one summary line on stdout (the test's output goes
# to stderr); exits non-zero when the test fails.
set -uo pipefail
cases=${1:?cases}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
STAGECTL_FUZZ_CASES=$cases cargo test -p stagectl --test manifest_fuzz -- --nocapture 2>&1 | tee "$out" >&2
rc=${PIPESTATUS[0]}
figures=$(grep -o 'manifest generator: .*' "$out" | tail -n 1 | sed 's/^manifest generator: //')
if ((rc == 0)); then
	echo "e manifest generator: PASS: ${figures:-no figures printed}"
else
	echo "e manifest generator: FAIL (cargo test exit $rc): ${figures:-no figures printed}"
fi
exit "$rc"
