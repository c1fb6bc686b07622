#!/usr/bin/env bash
# Runs every test: unit tests, the bad-manifest corpus, and the integration tests against the
# real Docker engine. Builds the base images first (idempotent, cached by tag).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/build-images.sh
# The Wagtail example's base image (pip from PyPI; skipped when the tag exists with the same
# inputs). Without it the wagtail test is skipped with a loud banner, so a failure here is not
# fatal.
scripts/build-wagtail-image.sh ||
	echo "test.sh: warning: stagectl/wagtail:7.0 could not be built; the wagtail example's test will be skipped" >&2
# The demo app binary is built once here so parallel tests share it instead of racing for it.
scripts/build-shop.sh
# The MediaWiki example's image (apt in a docker build; skipped when the tag exists).
examples/mediawiki/build-image.sh
# The offline Kubernetes schema validator of tests/export_k8s.rs (a cached venv from PyPI). Without
# it that test skips with a loud banner, or fails under CI / STAGECTL_REQUIRE_DOCKER.
scripts/install-kubernetes-validate.sh >/dev/null ||
	echo "test.sh: warning: kubernetes-validate could not be installed; tests/export_k8s.rs will fail in CI" >&2
# A local registry for tests/docker/registry.rs (`snapshots push`): Debian's docker-registry,
# started by the test itself on a free loopback port. Installed once (about 5 MB); where it
# cannot be, that test fails under STAGECTL_REQUIRE_DOCKER and skips loudly elsewhere.
if ! command -v docker-registry >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry >/dev/null; } ||
		echo "test.sh: warning: docker-registry could not be installed; tests/docker/registry.rs will fail in CI" >&2
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# The Swarm tests last and alone: a swarm (which they create and leave) changes the engine's
# networking for every container while it exists, so no other test runs beside them.
cargo test --workspace --locked "$@" -- --skip swarm:: 2>&1 | tee "$log" || status=$?
# (`--lib` too: the skip above also left out the unit tests of orchestrator::swarm.)
cargo test -p stagectl --locked --lib --test docker -- swarm:: 2>&1 | tee -a "$log" || status=$?
# One closing line over all test binaries.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
