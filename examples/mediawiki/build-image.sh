#!/usr/bin/env bash
# Builds the image of the MediaWiki example, once: an existing tag is kept
# unless --force. Needs stagectl/debian:bookworm (scripts/build-images.sh).
#
#   examples/mediawiki/build-image.sh [--force]
set -euo pipefail
TAG=stagectl-example/mediawiki:1.39
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ ${1:-} != --force ]] && docker image inspect "$TAG" >/dev/null 2>&1; then
	echo "build-image: $TAG exists, skipping (use --force to rebuild)" >&2
	exit 0
fi
docker image inspect stagectl/debian:bookworm >/dev/null 2>&1 ||
	{ echo "build-image: stagectl/debian:bookworm is missing: run scripts/build-images.sh first" >&2; exit 1; }
# The classic builder when BuildKit (buildx) is not available.
if [[ -z ${DOCKER_BUILDKIT:-} ]] && ! docker buildx version >/dev/null 2>&1; then
	export DOCKER_BUILDKIT=0
fi
docker build --label org.stagectl.example=mediawiki -t "$TAG" "$HERE/image"
