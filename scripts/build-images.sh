#!/usr/bin/env bash
# Build stagectl's base Docker images from Debian packages, with no registry.
#
#   scripts/build-images.sh [--force] [debian|postgres|redis|mariadb|postgres-firststart ...]
#
# Tags built (all labelled org.stagectl.base=1):
#   stagectl/debian:bookworm  minbase bookworm + libssl3 (runtime for Rust binaries)
#   stagectl/postgres:15      PostgreSQL 15, trust auth, fsync off (staging only)
#   stagectl/redis:7          Redis 7.0, no persistence, no protected mode
#   stagectl/mariadb:10.11    MariaDB 10.11, no durability, users/database from env
#   stagectl/postgres-firststart:15
#                             PostgreSQL 15 as the official image behaves: initdb
#                             on first start into a VOLUME, default settings
#                             (benchmarks and tests "as users have it")
#
# Nothing can be pulled on the machines this runs on, so each image starts as a
# `debootstrap --variant=minbase` tree made from the apt mirror this machine
# already uses, trimmed (apt caches and lists, docs, man pages, translations),
# brought in with `docker import`, and finished by `docker build` with the
# Dockerfile in images/NAME/ (FROM the imported tree, passed as ROOTFS).
# A derived image (postgres-firststart) needs no tree of its own: it is a
# plain `docker build` FROM its parent's tag, once the parent exists.
# The trees are built at the same time, in a scratch dir under /tmp (a
# tmpfs when memory allows: dpkg's fsyncs cost nothing there), removed on exit.
#
# Idempotent: an image whose tag already exists is skipped, unless --force.
# Names on the command line restrict the run to those images.
# Needs root (debootstrap) and a running Docker daemon. Installs debootstrap
# with apt-get when it is missing.
#
# Environment:
#   STAGECTL_DEBIAN_MIRROR  mirror URL to use instead of the one apt uses
#   STAGECTL_KEEP_WORK=1    keep the scratch dir (and its logs) for debugging
set -euo pipefail

SUITE=bookworm
ALL_IMAGES=(debian postgres redis mariadb postgres-firststart)
declare -A TAG=(
	[debian]=stagectl/debian:bookworm
	[postgres]=stagectl/postgres:15
	[redis]=stagectl/redis:7
	[mariadb]=stagectl/mariadb:10.11
	[postgres-firststart]=stagectl/postgres-firststart:15
)
# Derived images: built FROM the parent's tag (their Dockerfile says so).
declare -A PARENT=(
	[postgres-firststart]=postgres
)
declare -A INCLUDE=(
	[debian]=libssl3
	[postgres]=postgresql-15
	[redis]=redis-server
	[mariadb]=mariadb-server
)
LABEL=org.stagectl.base=1
ROOTFS_REPO=stagectl/rootfs   # temporary tags, removed when the build is done

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGES_DIR=$REPO_ROOT/images
T0=$SECONDS

log() { printf 'build-images: %s\n' "$*" >&2; }
die() { printf 'build-images: error: %s\n' "$*" >&2; exit 1; }
elapsed() { printf '%ss' "$((SECONDS - T0))"; }

usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

# ---------------------------------------------------------------- arguments
FORCE=0
WANTED=()
for arg in "$@"; do
	case $arg in
	--force | -f) FORCE=1 ;;
	-h | --help) usage; exit 0 ;;
	-*) die "unknown option '$arg' (try --help)" ;;
	*)
		[[ -n ${TAG[$arg]+x} ]] || die "unknown image '$arg' (known: ${ALL_IMAGES[*]})"
		WANTED+=("$arg")
		;;
	esac
done
((${#WANTED[@]})) || WANTED=("${ALL_IMAGES[@]}")

# ------------------------------------------------------ what is left to build
command -v docker >/dev/null || die "docker CLI not found"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
	die "cannot reach the Docker daemon (is it running? are you allowed to use it?)"

TODO=()         # debootstrapped
TODO_DERIVED=() # built FROM a parent tag, after the others
for name in "${WANTED[@]}"; do
	if ((!FORCE)) && docker image inspect "${TAG[$name]}" >/dev/null 2>&1; then
		log "${TAG[$name]} exists, skipping (use --force to rebuild)"
	elif [[ -n ${PARENT[$name]+x} ]]; then
		TODO_DERIVED+=("$name")
	else
		TODO+=("$name")
	fi
done
# A derived image whose parent is missing needs the parent built first.
for name in "${TODO_DERIVED[@]}"; do
	parent=${PARENT[$name]}
	if ! docker image inspect "${TAG[$parent]}" >/dev/null 2>&1 && [[ " ${TODO[*]} " != *" $parent "* ]]; then
		log "${TAG[$name]} needs ${TAG[$parent]}: building that too"
		TODO+=("$parent")
	fi
done

# Derived images: a `docker build` FROM the parent's tag (no debootstrap, no root).
build_derived() {
	local name=$1 t0=$SECONDS tag=${TAG[$1]} old_id out
	[[ -f $IMAGES_DIR/$name/Dockerfile ]] || die "missing $IMAGES_DIR/$name/Dockerfile"
	[[ -n ${DOCKER_BUILDKIT:-} ]] || docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0
	old_id=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
	log "[$name] docker build $tag (FROM ${TAG[${PARENT[$name]}]})"
	if ! out=$(docker build --label "$LABEL" --force-rm -t "$tag" "$IMAGES_DIR/$name" 2>&1); then
		printf '%s\n' "$out" | tail -n 20 | sed "s/^/[$name] /" >&2
		log "[$name] docker build failed"
		return 1
	fi
	if [[ -n $old_id && $old_id != "$(docker image inspect --format '{{.Id}}' "$tag")" ]]; then
		docker rmi "$old_id" >/dev/null 2>&1 || true
	fi
	log "[$name] built $tag in $((SECONDS - t0))s"
}
build_all_derived() {
	local name failed=()
	for name in "${TODO_DERIVED[@]}"; do
		build_derived "$name" || failed+=("$name")
	done
	((${#failed[@]} == 0)) || die "failed to build: ${failed[*]} (after $(elapsed))"
}

if ((${#TODO[@]} == 0)); then
	if ((${#TODO_DERIVED[@]} == 0)); then
		log "nothing to do"
		exit 0
	fi
	build_all_derived
	log "done in $(elapsed)"
	exit 0
fi

# ------------------------------------------------------------ prerequisites
((EUID == 0)) || die "must run as root (debootstrap needs it)"
for name in "${TODO[@]}"; do
	[[ -f $IMAGES_DIR/$name/Dockerfile ]] || die "missing $IMAGES_DIR/$name/Dockerfile"
done

if ! command -v debootstrap >/dev/null; then
	log "installing debootstrap with apt-get"
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y -qq debootstrap >/dev/null 2>&1; then
		apt-get update -qq >/dev/null || die "apt-get update failed"
		apt-get install -y -qq debootstrap >/dev/null || die "could not install debootstrap"
	fi
	command -v debootstrap >/dev/null || die "debootstrap still not on PATH after installing it"
fi

# The Debian mirror this machine's apt already uses (never a hard-coded host).
detect_mirror() {
	local uri=""
	if [[ -n ${STAGECTL_DEBIAN_MIRROR:-} ]]; then
		uri=$STAGECTL_DEBIAN_MIRROR
	fi
	if [[ -z $uri && -r /etc/apt/sources.list.d/debian.sources ]]; then
		# deb822: the first URIs: value that is not the security archive.
		uri=$(awk 'tolower($1) == "uris:" {
				for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit }
			}' /etc/apt/sources.list.d/debian.sources)
	fi
	if [[ -z $uri && -r /etc/apt/sources.list ]]; then
		# one-line style: deb [options] URI suite components
		uri=$(awk '$1 == "deb" {
				i = 2
				if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
				if (i <= NF && $i !~ /security/) { print $i; exit }
			}' /etc/apt/sources.list)
	fi
	[[ -n $uri ]] || die "no Debian mirror found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list (set STAGECTL_DEBIAN_MIRROR)"
	[[ $uri =~ ^(https?|ftp|file):// ]] || die "unsupported mirror URI '$uri' (set STAGECTL_DEBIAN_MIRROR to an http:// mirror)"
	printf '%s\n' "${uri%/}"
}
MIRROR=$(detect_mirror)

# The classic builder when BuildKit (the buildx plugin) is not available, as
# with Debian's docker.io 20.10 and a newer CLI without buildx.
if [[ -z ${DOCKER_BUILDKIT:-} ]] && ! docker buildx version >/dev/null 2>&1; then
	export DOCKER_BUILDKIT=0
fi

# --------------------------------------------------------------- scratch dir
WORK=$(mktemp -d /tmp/stagectl-images.XXXXXX)
WORK_TMPFS=0
JOB_PIDS=()
BUILD_SUFFIX="build$$"

kill_tree() { # kill a job we started, then everything under it, by pid
	local pid=$1 child children
	children=$(pgrep -P "$pid" 2>/dev/null || true)
	kill "$pid" 2>/dev/null || true
	for child in $children; do
		kill_tree "$child"
	done
}

cleanup() {
	local rc=$? pid
	trap - EXIT INT TERM
	set +e # best effort from here on; keep the original exit status
	for pid in "${JOB_PIDS[@]}"; do
		kill -0 "$pid" 2>/dev/null && kill_tree "$pid"
	done
	wait 2>/dev/null || true
	# temporary rootfs tags of this run (the layers stay under the final images)
	docker image ls --format '{{.Repository}}:{{.Tag}}' "$ROOTFS_REPO" 2>/dev/null |
		grep -- "-$BUILD_SUFFIX\$" | xargs -r docker rmi >/dev/null 2>&1 || true
	if [[ ${STAGECTL_KEEP_WORK:-0} == 1 ]]; then
		log "kept scratch dir $WORK"
		exit "$rc"
	fi
	# Anything a killed debootstrap left mounted (proc, sys) goes first, so
	# that rm never walks into it.
	findmnt -rn -o TARGET | grep -- "^$WORK/" | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null || true; done
	if ((WORK_TMPFS)); then
		umount -l "$WORK" 2>/dev/null || true
	fi
	if findmnt -rn -o TARGET | grep -q -- "^$WORK\(/\|\$\)"; then
		log "warning: $WORK still has mounts, leaving it"
	else
		rm -rf --one-file-system "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# dpkg's fsyncs dominate debootstrap on a disk; a tmpfs makes them free.
# The trees need ~1.3 GB together, so only when memory is plentiful.
mem_avail_kb=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo 2>/dev/null || echo 0)
if ((mem_avail_kb > 6 * 1024 * 1024)) && mount -t tmpfs -o size=4g,mode=0700 stagectl-images "$WORK" 2>/dev/null; then
	WORK_TMPFS=1
fi

log "building ${TODO[*]} from $MIRROR ($SUITE) in $WORK$( ((WORK_TMPFS)) && echo ' (tmpfs)')"

# ------------------------------------------------------------------ helpers
# Remove from a debootstrapped tree what an image does not need: apt caches
# and lists, docs (but the copyright files), man/info pages, translations,
# logs, host files debootstrap copied in, device nodes (docker provides /dev).
trim_rootfs() {
	local root=$1 m
	[[ $root == "$WORK"/* ]] || return 1
	m=$(findmnt -rn -o TARGET | grep -- "^$root/" || true)
	[[ -z $m ]] || { log "still mounted in $root: $m"; return 1; }

	rm -rf "${root:?}"/var/cache/apt/archives/*.deb "${root:?}"/var/cache/apt/*.bin \
		"${root:?}"/var/lib/apt/lists/* \
		"${root:?}"/usr/share/man/* "${root:?}"/usr/share/info/* "${root:?}"/usr/share/locale/* \
		"${root:?}"/usr/share/groff/* "${root:?}"/usr/share/lintian/* "${root:?}"/usr/share/linda/* \
		"${root:?}"/var/cache/debconf/*-old "${root:?}"/var/lib/dpkg/*-old \
		"${root:?}"/tmp/* "${root:?}"/var/tmp/* "${root:?}"/run/adduser \
		"${root:?}"/dev/* "${root:?}"/proc/* "${root:?}"/sys/* \
		"${root:?}"/etc/hostname "${root:?}"/etc/resolv.conf
	mkdir -p "${root:?}"/var/lib/apt/lists/partial
	if [[ -d $root/usr/share/doc ]]; then
		find "${root:?}"/usr/share/doc -mindepth 1 ! -type d ! -name copyright -delete
		find "${root:?}"/usr/share/doc -mindepth 1 -type d -empty -delete
	fi
	find "${root:?}"/var/log -type f -delete

	# Keep it that way for images built FROM these (same as Debian's slim images).
	cat >"${root:?}"/etc/dpkg/dpkg.cfg.d/stagectl-slim <<-'EOF'
	# stagectl base images: no docs, man pages or translations.
	path-exclude /usr/share/doc/*
	path-include /usr/share/doc/*/copyright
	path-exclude /usr/share/man/*
	path-exclude /usr/share/groff/*
	path-exclude /usr/share/info/*
	path-exclude /usr/share/lintian/*
	path-exclude /usr/share/linda/*
	path-exclude /usr/share/locale/*
	EOF
	cat >"${root:?}"/etc/apt/apt.conf.d/stagectl-clean <<-'EOF'
	# stagectl base images: do not keep downloaded .debs.
	DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
	APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
	Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
	EOF
}

trim_postgres() {
	local root=$1
	# The package's postinst made a default cluster (15/main); the entrypoint
	# runs its own initdb.
	rm -rf "${root:?}"/etc/postgresql/15/main "${root:?}"/var/lib/postgresql/15
	# LLVM is only used by the JIT provider (llvmjit.so): ~155 MB for nothing
	# in staging, so the files go (jit = off in staging.conf). dpkg still
	# lists the packages as installed, as with a path-exclude.
	rm -rf "${root:?}"/usr/lib/x86_64-linux-gnu/libLLVM-* "${root:?}"/usr/lib/x86_64-linux-gnu/libz3.so.* \
		"${root:?}"/usr/lib/postgresql/15/lib/llvmjit* "${root:?}"/usr/lib/postgresql/15/lib/bitcode
}

trim_mariadb() {
	local root=$1
	# The package's postinst made a datadir; the image bakes its own (with
	# the staging settings, e.g. the small redo log).
	rm -rf "${root:?}"/var/lib/mysql/*
}

# One image, start to end: debootstrap, trim, import, build. Runs as a
# background job; its detailed output goes to $WORK/NAME.log.
build_one() {
	local name=$1 t0=$SECONDS
	local root=$WORK/$name/rootfs logf=$WORK/$name.log
	local tmp_tag=$ROOTFS_REPO:$name-$BUILD_SUFFIX tag=${TAG[$name]} old_id size
	mkdir -p "$WORK/$name"

	log "[$name] debootstrap minbase + ${INCLUDE[$name]}"
	if ! debootstrap --variant=minbase --components=main --include="${INCLUDE[$name]}" \
		"$SUITE" "$root" "$MIRROR" >"$logf" 2>&1; then
		tail -n 15 "$logf" | sed "s/^/[$name] /" >&2
		log "[$name] debootstrap failed (see above)"
		return 1
	fi

	trim_rootfs "$root"
	[[ $name != postgres ]] || trim_postgres "$root"
	[[ $name != mariadb ]] || trim_mariadb "$root"
	size=$(du -sm "$root" | cut -f1)

	log "[$name] importing rootfs (${size} MB) after $((SECONDS - t0))s"
	if ! tar --numeric-owner --xattrs -C "$root" -cf - . |
		docker import --change "LABEL $LABEL" - "$tmp_tag" >>"$logf" 2>&1; then
		tail -n 5 "$logf" | sed "s/^/[$name] /" >&2
		log "[$name] docker import failed"
		return 1
	fi

	old_id=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
	log "[$name] docker build $tag"
	if ! docker build --build-arg "ROOTFS=$tmp_tag" --label "$LABEL" --force-rm \
		-t "$tag" "$IMAGES_DIR/$name" >>"$logf" 2>&1; then
		tail -n 20 "$logf" | sed "s/^/[$name] /" >&2
		log "[$name] docker build failed"
		return 1
	fi
	docker rmi "$tmp_tag" >/dev/null 2>&1 || true
	# With --force, drop the image the tag pointed at before (if now unused).
	if [[ -n $old_id && $old_id != "$(docker image inspect --format '{{.Id}}' "$tag")" ]]; then
		docker rmi "$old_id" >/dev/null 2>&1 || true
	fi
	log "[$name] built $tag in $((SECONDS - t0))s"
}

# -------------------------------------------------------------------- build
declare -A PID_OF=()
for name in "${TODO[@]}"; do
	build_one "$name" &
	PID_OF[$name]=$!
	JOB_PIDS+=($!)
done

FAILED=()
for name in "${TODO[@]}"; do
	wait "${PID_OF[$name]}" || FAILED+=("$name")
done
JOB_PIDS=()

for name in "${TODO[@]}"; do
	[[ " ${FAILED[*]} " == *" $name "* ]] && continue
	size=$(docker image inspect --format '{{.Size}}' "${TAG[$name]}")
	log "$(printf '%-28s %4d MB' "${TAG[$name]}" "$((size / 1000000))")"
done
((${#FAILED[@]} == 0)) || die "failed to build: ${FAILED[*]} (after $(elapsed))"
build_all_derived
log "done in $(elapsed)"
