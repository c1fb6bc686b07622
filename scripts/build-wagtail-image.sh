#!/usr/bin/env bash
# Build the Wagtail base image of examples/wagtail without a registry.
#
#   scripts/build-wagtail-image.sh [--force]
#
# Tag: stagectl/wagtail:7.0 (FROM stagectl/debian:bookworm, which
# scripts/build-images.sh builds). Python 3.11 comes from Debian; Wagtail, Django,
# psycopg and gunicorn from PyPI, pinned in examples/wagtail/image/requirements.txt;
# the starter project is made by `wagtail start` during the build.
#
# pip inside `docker build` reaches PyPI only through this machine's CA bundle:
# the script copies it into a scratch build context as pip-ca.crt, and the
# Dockerfile points PIP_CERT at it for the pip step alone (the file is removed
# in the same step). The application knows nothing of it.
#
# Cached by tag: the image carries a label org.stagectl.inputs with a hash of
# the Dockerfile and requirements.txt; when the tag exists with the same hash,
# nothing is built. --force rebuilds anyway.
#
# Environment:
#   STAGECTL_CA_BUNDLE  CA bundle to copy (default /etc/ssl/certs/ca-certificates.crt)
set -euo pipefail

TAG=stagectl/wagtail:7.0
BASE=stagectl/debian:bookworm
LABEL_KEY=org.stagectl.inputs
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC=$REPO_ROOT/examples/wagtail/image
CA=${STAGECTL_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
T0=$SECONDS

log() { printf 'build-wagtail-image: %s\n' "$*" >&2; }
die() { printf 'build-wagtail-image: error: %s\n' "$*" >&2; exit 1; }

FORCE=0
for arg in "$@"; do
	case $arg in
	--force | -f) FORCE=1 ;;
	-h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
	*) die "unknown argument '$arg' (try --help)" ;;
	esac
done

command -v docker >/dev/null || die "docker CLI not found"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
	die "cannot reach the Docker daemon (is it running? are you allowed to use it?)"
for f in Dockerfile requirements.txt; do
	[[ -f $SRC/$f ]] || die "missing $SRC/$f"
done

# The inputs' hash: file names and contents, in a fixed order (the CA bundle
# is the machine's, not an input of the image's content).
HASH=$(cd "$SRC" && for f in Dockerfile requirements.txt; do printf '%s\0' "$f"; cat "$f"; done |
	sha256sum | cut -c1-16)

current=$(docker image inspect --format "{{ index .Config.Labels \"$LABEL_KEY\" }}" "$TAG" 2>/dev/null || true)
if ((!FORCE)) && [[ $current == "$HASH" ]]; then
	log "$TAG is up to date (inputs $HASH), skipping (use --force to rebuild)"
	exit 0
fi
docker image inspect "$BASE" >/dev/null 2>&1 ||
	die "$BASE is missing: run scripts/build-images.sh debian first"
[[ -r $CA ]] || die "CA bundle $CA not readable (set STAGECTL_CA_BUNDLE)"

# The classic builder when BuildKit (the buildx plugin) is not available.
if [[ -z ${DOCKER_BUILDKIT:-} ]] && ! docker buildx version >/dev/null 2>&1; then
	export DOCKER_BUILDKIT=0
fi

CTX=$(mktemp -d /tmp/stagectl-wagtail.XXXXXX)
trap 'rm -rf "$CTX"' EXIT
cp "$SRC/Dockerfile" "$SRC/requirements.txt" "$CTX/"
cp "$CA" "$CTX/pip-ca.crt"

old_id=$(docker image inspect --format '{{.Id}}' "$TAG" 2>/dev/null || true)
log "building $TAG (inputs $HASH${current:+, was $current})"
if ! docker build --force-rm --label "$LABEL_KEY=$HASH" --label org.stagectl.example=wagtail \
	-t "$TAG" "$CTX" >"$CTX/build.log" 2>&1; then
	tail -n 30 "$CTX/build.log" >&2
	die "docker build failed (last lines above)"
fi
new_id=$(docker image inspect --format '{{.Id}}' "$TAG")
if [[ -n $old_id && $old_id != "$new_id" ]]; then
	docker rmi "$old_id" >/dev/null 2>&1 || true
fi
size=$(docker image inspect --format '{{.Size}}' "$TAG")
log "built $TAG ($((size / 1000000)) MB) in $((SECONDS - T0))s"
