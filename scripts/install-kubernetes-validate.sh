#!/usr/bin/env bash
# Installs PyPI's kubernetes-validate (the Kubernetes OpenAPI schemas of many versions, offline)
# into a cached virtualenv, where stagectl/tests/export_k8s.rs looks for it. Idempotent: a venv
# holding the pinned version is kept. Prints the tool's path.
set -euo pipefail
version=1.37.0
venv="${STAGECTL_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/stagectl}/kubernetes-validate"
tool="$venv/bin/kubernetes-validate"
if [ -x "$tool" ] && "$venv/bin/pip" show kubernetes-validate 2>/dev/null | grep -qx "Version: $version"; then
	echo "$tool"
	exit 0
fi
if ! python3 -m venv "$venv" >&2; then
	# Debian's python3 ships venv separately.
	apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
	python3 -m venv "$venv" >&2
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$version" >&2
echo "$tool"
