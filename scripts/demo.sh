#!/usr/bin/env bash
# The main job on a fresh machine: build what is needed, bring the demo stack up (fixtures
# loaded) and run its checks.
#   base images (Debian packages, cached by tag) → stagectl (release) → `stagectl up` → `stagectl check`
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/build-images.sh
cargo build --release --locked -p stagectl
# The demo's API key is a secret: generate one locally, never commit it.
if [ ! -f secrets.env ]; then
    umask 077
    printf 'api_key=%s\n' "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" > secrets.env
fi
./target/release/stagectl up
port="${SHOP_PORT:-8080}"
echo "shop answers on http://127.0.0.1:${port}:"
curl -fsS "http://127.0.0.1:${port}/healthz"; echo
./target/release/stagectl status
./target/release/stagectl check
