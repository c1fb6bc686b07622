#!/bin/sh
# Entrypoint of stagectl/postgres-firststart:15: a cluster made on first start.
#
#   docker run -e POSTGRES_PASSWORD=secret stagectl/postgres-firststart:15 [postgres] [-c name=value ...]
#
# On a start whose PGDATA has no PG_VERSION (a new volume):
#   1. initdb: superuser $POSTGRES_USER (default postgres) with
#      $POSTGRES_PASSWORD, UTF8, plus $POSTGRES_INITDB_ARGS; initdb's own
#      pg_hba.conf (trust on the unix socket and loopback) is kept, and one
#      rule for every other address is added: scram-sha-256 when a password
#      is set, trust when POSTGRES_HOST_AUTH_METHOD=trust (or whatever method
#      that variable names). Neither set: refuse to start, saying why.
#   2. listen_addresses = '*' in postgresql.conf; everything else default.
#   3. a temporary server on the unix socket only (no TCP, so nothing outside
#      sees a half-initialised database) creates $POSTGRES_DB and runs
#      /docker-entrypoint-initdb.d/* in name order: *.sql and *.sql.gz with
#      psql (stop at the first error), *.sh sourced (or run when executable);
#      then it is stopped (fast, with a checkpoint).
# Then, and on every later start, postgres is exec'd as user postgres (PID 1,
# so docker stop's SIGINT is a fast shutdown). Other commands are exec'd as
# given. A failed first start leaves PG_VERSION behind, as initdb wrote it:
# remove the volume to start over.
set -eu

PG_BIN=/usr/lib/postgresql/15/bin
INITDB_DIR=/docker-entrypoint-initdb.d
: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${POSTGRES_PASSWORD:=}"
: "${POSTGRES_HOST_AUTH_METHOD:=}"
: "${POSTGRES_INITDB_ARGS:=}"
export PGDATA POSTGRES_USER POSTGRES_DB

say() { echo "postgres-firststart: $*" >&2; }
die() { say "error: $*"; exit 1; }

if [ "$#" -eq 0 ]; then
	set -- postgres
fi
case "$1" in
-*) set -- postgres "$@" ;; # docker run IMAGE -c work_mem=64MB
esac
if [ "$1" != postgres ] && [ "$1" != "$PG_BIN/postgres" ]; then
	exec "$@"
fi
shift

# As root: directories owned by postgres (a fresh volume or bind mount may
# come in owned by root), then the rest of this script again as postgres.
if [ "$(id -u)" = 0 ]; then
	mkdir -p "$PGDATA" /var/run/postgresql
	chown postgres:postgres /var/run/postgresql
	chmod 2775 /var/run/postgresql
	if [ "$(stat -c %u "$PGDATA")" != "$(id -u postgres)" ]; then
		chown -R postgres:postgres "$PGDATA"
	fi
	chmod 700 "$PGDATA"
	exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$0" postgres "$@"
fi

host_auth_method() {
	if [ -n "$POSTGRES_HOST_AUTH_METHOD" ]; then
		printf '%s\n' "$POSTGRES_HOST_AUTH_METHOD"
	elif [ -n "$POSTGRES_PASSWORD" ]; then
		printf 'scram-sha-256\n'
	else
		die "the database is uninitialised and no superuser password is set.
  Set POSTGRES_PASSWORD (clients on the network then log in with it), or
  POSTGRES_HOST_AUTH_METHOD=trust to let every client in without one."
	fi
}

run_initdb() {
	auth=$(host_auth_method)
	say "first start: initdb $PGDATA (superuser \"$POSTGRES_USER\", network auth $auth)"
	pwfile=""
	if [ -n "$POSTGRES_PASSWORD" ]; then
		pwfile=$(mktemp)
		printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
	fi
	# shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of words
	if ! "$PG_BIN/initdb" -D "$PGDATA" --username="$POSTGRES_USER" --encoding=UTF8 \
		--locale=C.UTF-8 ${pwfile:+--pwfile="$pwfile"} --no-instructions \
		$POSTGRES_INITDB_ARGS >/dev/null; then
		[ -z "$pwfile" ] || rm -f "$pwfile"
		die "initdb failed (see above)"
	fi
	[ -z "$pwfile" ] || rm -f "$pwfile"
	printf "\n# postgres-firststart: accept connections on every address.\nlisten_addresses = '*'\n" \
		>>"$PGDATA/postgresql.conf"
	printf '\n# postgres-firststart: every other client.\nhost all all all %s\n' "$auth" \
		>>"$PGDATA/pg_hba.conf"
}

quote_ident() { printf '"%s"' "$(printf '%s' "$1" | sed 's/"/""/g')"; }

psql_run() { # psql on the temporary server, stop at the first error
	"$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 --no-password \
		--username="$POSTGRES_USER" --host=/var/run/postgresql "$@"
}

first_start_scripts() {
	# Only the unix socket: clients that poll over TCP wait for the real start.
	"$PG_BIN/pg_ctl" -D "$PGDATA" -w -t 120 \
		-o "-c listen_addresses='' -c unix_socket_directories=/var/run/postgresql" start >&2 ||
		die "the temporary server for the first-start scripts did not start"
	if [ "$POSTGRES_DB" != postgres ]; then
		say "creating database \"$POSTGRES_DB\""
		psql_run --dbname=postgres -c "CREATE DATABASE $(quote_ident "$POSTGRES_DB")" >/dev/null
	fi
	if [ -d "$INITDB_DIR" ] && { [ ! -r "$INITDB_DIR" ] || [ ! -x "$INITDB_DIR" ]; }; then
		die "$INITDB_DIR is not readable by user postgres (uid $(id -u)): its scripts cannot run.
  Make the mounted directory and its files world-readable (chmod a+rX)."
	fi
	# For the scripts' own psql calls (and sourced ones), then gone again.
	export PGHOST=/var/run/postgresql PGUSER="$POSTGRES_USER" PGDATABASE="$POSTGRES_DB"
	for f in "$INITDB_DIR"/*; do
		[ -e "$f" ] || continue
		case "$f" in
		*.sql) say "running $f"; psql_run --dbname="$POSTGRES_DB" -f "$f" ;;
		*.sql.gz) say "running $f"; gzip -dc "$f" | psql_run --dbname="$POSTGRES_DB" ;;
		*.sh)
			if [ -x "$f" ]; then
				say "running $f"
				"$f"
			else
				say "sourcing $f"
				# shellcheck disable=SC1090
				. "$f"
			fi
			;;
		*) say "ignoring $f (not .sql, .sql.gz or .sh)" ;;
		esac
	done
	unset PGHOST PGUSER PGDATABASE
	"$PG_BIN/pg_ctl" -D "$PGDATA" -w -t 300 -m fast stop >/dev/null ||
		die "the temporary server did not stop"
	say "first start done; starting postgres"
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	run_initdb
	first_start_scripts
fi

exec "$PG_BIN/postgres" -D "$PGDATA" "$@"
