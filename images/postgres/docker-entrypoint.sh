#!/bin/sh
# Entrypoint of stagectl/postgres:15 (staging only: trust auth, no durability).
#
#   docker run -e POSTGRES_DB=shop stagectl/postgres:15 [postgres] [-c name=value ...]
#
# On first start (no PG_VERSION in $PGDATA) it runs initdb with trust auth and
# UTF8, appends the staging settings to postgresql.conf and a trust rule for
# every address to pg_hba.conf, creates $POSTGRES_DB in single-user mode (no
# throw-away server start), then execs postgres as the postgres user, so that
# postgres is PID 1 and docker stop's SIGINT is a fast shutdown.
# Any other command (e.g. `bash`) is exec'd as is.
#
# Environment: PGDATA (default /var/lib/postgresql/data), POSTGRES_USER
# (superuser created by initdb, default postgres), POSTGRES_DB (default
# $POSTGRES_USER). POSTGRES_PASSWORD is accepted and ignored (trust auth).
set -eu

PG_BIN=/usr/lib/postgresql/15/bin
STAGING_CONF=/usr/local/share/stagectl/postgresql.staging.conf
: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
export PGDATA

log() { echo "stagectl-postgres: $*" >&2; }

if [ "$#" -eq 0 ]; then
	set -- postgres
fi
case "$1" in
-*) set -- postgres "$@" ;;  # `docker run IMAGE -c work_mem=64MB`
esac
if [ "$1" != postgres ] && [ "$1" != "$PG_BIN/postgres" ]; then
	exec "$@"
fi
shift

if [ "$(id -u)" = 0 ]; then
	AS_PG="setpriv --reuid=postgres --regid=postgres --init-groups --"
	mkdir -p "$PGDATA" /var/run/postgresql
	chown postgres:postgres /var/run/postgresql
	chmod 2775 /var/run/postgresql
	# A fresh volume or bind mount comes in owned by root.
	find "$PGDATA" ! -user postgres -exec chown postgres:postgres {} +
	chmod 700 "$PGDATA"
else
	AS_PG=""   # e.g. `docker run --user postgres`
	mkdir -p "$PGDATA"
	chmod 700 "$PGDATA" 2>/dev/null || :
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	log "initialising $PGDATA (superuser \"$POSTGRES_USER\", database \"$POSTGRES_DB\")"
	# --no-sync: nothing here is meant to survive a host crash anyway.
	$AS_PG "$PG_BIN/initdb" -D "$PGDATA" --username="$POSTGRES_USER" \
		--auth=trust --encoding=UTF8 --locale=C.UTF-8 \
		--no-sync --no-instructions >/dev/null
	cat "$STAGING_CONF" >>"$PGDATA/postgresql.conf"
	cat >>"$PGDATA/pg_hba.conf" <<-'HBA'

	# stagectl staging: trust every client on the (private) container network.
	host    all             all             0.0.0.0/0               trust
	host    all             all             ::/0                    trust
	HBA

	if [ "$POSTGRES_DB" != postgres ]; then
		# Single-user backend: no sockets, no second start, ~0.1 s. It keeps
		# going after an SQL error, so look for one in what it printed.
		ident=$(printf '%s' "$POSTGRES_DB" | sed 's/"/""/g')
		if ! out=$(printf 'CREATE DATABASE "%s";\n' "$ident" |
			$AS_PG "$PG_BIN/postgres" --single -D "$PGDATA" postgres 2>&1 >/dev/null) ||
			printf '%s\n' "$out" | grep -Eq '^(ERROR|FATAL|PANIC):'; then
			printf '%s\n' "$out" >&2
			log "could not create database \"$POSTGRES_DB\""
			exit 1
		fi
	fi
	log "initialised; starting postgres"
fi

exec $AS_PG "$PG_BIN/postgres" -D "$PGDATA" "$@"
