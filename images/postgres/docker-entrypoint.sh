#!/bin/sh
# Entrypoint of stagectl/postgres:15 (staging only: trust auth, no durability).
#
#   docker run -e POSTGRES_DB=shop stagectl/postgres:15 [postgres] [-c name=value ...]
#
# Environment: PGDATA (default /var/lib/postgresql/data), POSTGRES_USER
# (superuser, default postgres), POSTGRES_DB (default $POSTGRES_USER).
# POSTGRES_PASSWORD is accepted and ignored: every client is trusted.
#
# A data dir without PG_VERSION gets initdb (trust auth, UTF8, C.UTF-8), the
# staging settings appended to postgresql.conf and a trust rule for every
# address appended to pg_hba.conf. initdb takes 1.5-3 s here, so the image
# already carries such a cluster in the default PGDATA, made at build time
# (`docker-entrypoint.sh stagectl-bake`) with superuser postgres and marked
# with .stagectl-fresh: a first start only creates $POSTGRES_DB, in a
# single-user backend before the real start (so the database exists once
# pg_isready says yes), and drops the mark. A POSTGRES_USER other than
# postgres is created there too, as a superuser (postgres remains), and
# owns POSTGRES_DB. (Re-running initdb over the baked files is no option:
# fuse-overlayfs then fails with "could not create file: File exists".)
#
# Then postgres is exec'd as the postgres user (setpriv), so it is PID 1 and
# docker stop's SIGINT is a fast shutdown. Other commands (bash, psql ...)
# are exec'd as given.
set -eu

PG_BIN=/usr/lib/postgresql/15/bin
STAGING_CONF=/usr/local/share/stagectl/postgresql.staging.conf
FRESH=.stagectl-fresh
: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
export PGDATA

log() { echo "stagectl-postgres: $*" >&2; }

if [ "$(id -u)" = 0 ]; then
	AS_PG="setpriv --reuid=postgres --regid=postgres --init-groups --"
else
	AS_PG="" # e.g. docker run --user postgres
fi

prepare_dirs() {
	mkdir -p "$PGDATA"
	if [ -n "$AS_PG" ]; then
		mkdir -p /var/run/postgresql
		chown postgres:postgres /var/run/postgresql
		chmod 2775 /var/run/postgresql
		# A fresh volume or bind mount comes in owned by root.
		if [ "$(stat -c %U "$PGDATA")" != postgres ]; then
			chown -R postgres:postgres "$PGDATA"
		fi
	fi
	chmod 700 "$PGDATA" 2>/dev/null || :
}

init_cluster() { # $1: superuser
	log "initdb $PGDATA (superuser \"$1\")"
	# --no-sync: nothing here is meant to survive a host crash anyway.
	# --wal-segsize=1: 1 MB WAL segments instead of 16 MB, so a fixture snapshot (a docker
	# commit of the container's layer) does not carry a mostly empty 16 MB segment.
	$AS_PG "$PG_BIN/initdb" -D "$PGDATA" --username="$1" \
		--auth=trust --encoding=UTF8 --locale=C.UTF-8 --wal-segsize=1 \
		--no-sync --no-instructions >/dev/null
	cat "$STAGING_CONF" >>"$PGDATA/postgresql.conf"
	cat >>"$PGDATA/pg_hba.conf" <<-'HBA'

	# stagectl staging: trust every client on the (private) container network.
	host    all             all             0.0.0.0/0               trust
	host    all             all             ::/0                    trust
	HBA
	# The mark: never started yet, and whose superuser it has.
	printf '%s\n' "$1" | $AS_PG tee "$PGDATA/$FRESH" >/dev/null
}

quote_ident() { printf '"%s"' "$(printf '%s' "$1" | sed 's/"/""/g')"; }

# SQL for a never-started cluster whose bootstrap superuser is $1.
first_start_sql() {
	if [ "$POSTGRES_USER" != "$1" ]; then
		printf 'CREATE ROLE %s SUPERUSER LOGIN;\n' "$(quote_ident "$POSTGRES_USER")"
	fi
	if [ "$POSTGRES_DB" != postgres ]; then
		printf 'CREATE DATABASE %s OWNER %s;\n' \
			"$(quote_ident "$POSTGRES_DB")" "$(quote_ident "$POSTGRES_USER")"
	fi
}

run_single() { # SQL on stdin, one statement a line
	# Single-user backend: no sockets, no throw-away server start (~0.3 s).
	# It goes on after an SQL error, so look for one in what it printed
	# ("already exists" is fine: a first start that was cut short).
	if ! out=$($AS_PG "$PG_BIN/postgres" --single -D "$PGDATA" postgres 2>&1 >/dev/null) ||
		printf '%s\n' "$out" | grep -E '(^| )(ERROR|FATAL|PANIC): ' | grep -qv 'already exists'; then
		printf '%s\n' "$out" >&2
		log "could not set up role \"$POSTGRES_USER\" / database \"$POSTGRES_DB\""
		exit 1
	fi
}

if [ "$#" -eq 0 ]; then
	set -- postgres
fi
case "$1" in
-*) set -- postgres "$@" ;; # docker run IMAGE -c work_mem=64MB
esac

if [ "$1" = stagectl-bake ]; then # at image build time, see the Dockerfile
	prepare_dirs
	init_cluster postgres
	exit 0
fi
if [ "$1" != postgres ] && [ "$1" != "$PG_BIN/postgres" ]; then
	exec "$@"
fi
shift

prepare_dirs
if [ ! -s "$PGDATA/PG_VERSION" ]; then
	init_cluster "$POSTGRES_USER"
fi
if [ -f "$PGDATA/$FRESH" ]; then
	sql=$(first_start_sql "$(cat "$PGDATA/$FRESH")")
	if [ -n "$sql" ]; then
		printf '%s\n' "$sql" | run_single
		log "first start: $(printf '%s' "$sql" | tr '\n' ' ')"
	fi
	rm -f "$PGDATA/$FRESH"
fi

exec $AS_PG "$PG_BIN/postgres" -D "$PGDATA" "$@"
