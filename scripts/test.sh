#!/usr/bin/env bash
# Runs every test: unit tests, the bad-manifest corpus, and the integration tests against the
# real Docker engine. Builds the base images first (idempotent, cached by tag).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/build-images.sh
# The demo app binary is built once here so parallel tests share it instead of racing for it.
scripts/build-shop.sh
cargo test --workspace --locked "$@"
