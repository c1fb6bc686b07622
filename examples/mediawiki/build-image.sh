#!/usr/bin/env bash
# Builds the image of the MediaWiki example, once: an existing tag is kept when
# it was built from the same image/ files (its label org.stagectl.inputs holds
# their hash), unless --force. Needs stagectl/debian:bookworm
# (scripts/build-images.sh).
#
#   examples/mediawiki/build-image.sh [--force]
set -euo pipefail
TAG=stagectl-example/mediawiki:1.39
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HASH=$(cd "$HERE/image" && for f in *; do printf '%s\0' "$f"; cat "$f"; done | sha256sum | cut -c1-16)
current=$(docker image inspect --format '{{ index .Config.Labels "org.stagectl.inputs" }}' "$TAG" 2>/dev/null || true)
if [[ ${1:-} != --force ]] && [[ $current == "$HASH" ]]; then
	echo "build-image: $TAG is up to date (inputs $HASH), skipping (use --force to rebuild)" >&2
	exit 0
fi
docker image inspect stagectl/debian:bookworm >/dev/null 2>&1 ||
	{ echo "build-image: stagectl/debian:bookworm is missing: run scripts/build-images.sh first" >&2; exit 1; }
# The classic builder when BuildKit (buildx) is not available.
if [[ -z ${DOCKER_BUILDKIT:-} ]] && ! docker buildx version >/dev/null 2>&1; then
	export DOCKER_BUILDKIT=0
fi
old_id=$(docker image inspect --format '{{.Id}}' "$TAG" 2>/dev/null || true)
echo "build-image: building $TAG (inputs $HASH${current:+, was $current})" >&2
docker build --label org.stagectl.example=mediawiki --label "org.stagectl.inputs=$HASH" -t "$TAG" "$HERE/image"
new_id=$(docker image inspect --format '{{.Id}}' "$TAG")
if [[ -n $old_id && $old_id != "$new_id" ]]; then
	docker rmi "$old_id" >/dev/null 2>&1 || true
fi
