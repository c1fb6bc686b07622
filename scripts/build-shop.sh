#!/usr/bin/env bash
# Builds the shop demo app (release) and installs it at demo/shop/dist/shop.
# The binary is copied only when its content changed, so dist/shop keeps a stable mtime and
# content for content-hashing of the Docker build context.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

cargo build --release -p shop

target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
src="$target_dir/release/shop"
dest="$repo_root/demo/shop/dist/shop"

mkdir -p "$(dirname "$dest")"
if cmp -s "$src" "$dest"; then
    echo "demo/shop/dist/shop is up to date"
else
    install -m 0755 "$src" "$dest"
    echo "installed demo/shop/dist/shop"
fi
