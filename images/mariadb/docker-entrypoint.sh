#!/bin/sh
# Entrypoint of stagectl/mariadb:10.11 (staging only: no durability).
#
#   docker run -e MARIADB_DATABASE=wiki -e MARIADB_USER=wiki \
#       -e MARIADB_PASSWORD=... -e MARIADB_ROOT_PASSWORD=... stagectl/mariadb:10.11
#
# Environment (each also read under its MYSQL_* name):
#   MARIADB_ROOT_PASSWORD  password of root (from anywhere); empty: no password
#   MARIADB_DATABASE       a database to create (utf8mb4)
#   MARIADB_USER / MARIADB_PASSWORD  a user (from anywhere) with all rights on
#                          MARIADB_DATABASE
# root@localhost also authenticates by unix socket, so `docker exec CONTAINER
# mariadb` as root needs no password.
#
# The image carries a datadir made at build time (`docker-entrypoint.sh
# stagectl-bake`) marked with .stagectl-fresh. The first start hands the
# statements for the users and the database to the server as its
# --init-file, through a named pipe (so no password lands in a file of the
# container's layer, or of a snapshot committed from it); the server runs
# them before it accepts connections, so the database exists once the
# handshake comes. The mark is then dropped. mariadbd is exec'd as PID 1 (as
# the mysql user, it switches itself), so docker stop's SIGTERM is a clean
# shutdown. Other commands (bash, mariadb ...) are exec'd as given.
set -eu

DATADIR=/var/lib/mysql
FRESH=$DATADIR/.stagectl-fresh
RUNDIR=/run/mysqld

: "${MARIADB_ROOT_PASSWORD:=${MYSQL_ROOT_PASSWORD:-}}"
: "${MARIADB_DATABASE:=${MYSQL_DATABASE:-}}"
: "${MARIADB_USER:=${MYSQL_USER:-}}"
: "${MARIADB_PASSWORD:=${MYSQL_PASSWORD:-}}"

log() { echo "stagectl-mariadb: $*" >&2; }

prepare_dirs() {
	mkdir -p "$RUNDIR" "$DATADIR"
	chown mysql:mysql "$RUNDIR"
	if [ "$(stat -c %U "$DATADIR")" != mysql ]; then
		chown -R mysql:mysql "$DATADIR"
	fi
}

init_datadir() {
	log "mariadb-install-db $DATADIR"
	mariadb-install-db --user=mysql --datadir="$DATADIR" --skip-test-db \
		--auth-root-authentication-method=socket --skip-name-resolve >/dev/null
	: >"$FRESH"
}

# SQL string literal / identifier quoting.
lit() { printf "'%s'" "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e "s/'/''/g")"; }
ident() { printf '`%s`' "$(printf '%s' "$1" | sed 's/`/``/g')"; }

first_start_sql() {
	rootpw=$(lit "$MARIADB_ROOT_PASSWORD")
	# root@localhost: unix socket (docker exec) or the password.
	printf "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD(%s);\n" "$rootpw"
	printf "CREATE USER IF NOT EXISTS 'root'@'%%' IDENTIFIED BY %s;\n" "$rootpw"
	printf "GRANT ALL ON *.* TO 'root'@'%%' WITH GRANT OPTION;\n"
	if [ -n "$MARIADB_DATABASE" ]; then
		printf 'CREATE DATABASE IF NOT EXISTS %s CHARACTER SET utf8mb4;\n' "$(ident "$MARIADB_DATABASE")"
	fi
	if [ -n "$MARIADB_USER" ] && [ "$MARIADB_USER" != root ]; then
		printf "CREATE USER IF NOT EXISTS %s@'%%' IDENTIFIED BY %s;\n" \
			"$(lit "$MARIADB_USER")" "$(lit "$MARIADB_PASSWORD")"
		if [ -n "$MARIADB_DATABASE" ]; then
			printf "GRANT ALL ON %s.* TO %s@'%%';\n" \
				"$(ident "$MARIADB_DATABASE")" "$(lit "$MARIADB_USER")"
		fi
	fi
	printf 'FLUSH PRIVILEGES;\n'
}

if [ "$#" -eq 0 ]; then
	set -- mariadbd
fi
case "$1" in
-*) set -- mariadbd "$@" ;; # docker run IMAGE --max-connections=500
esac

if [ "$1" = stagectl-bake ]; then # at image build time, see the Dockerfile
	prepare_dirs
	init_datadir
	exit 0
fi
case "$1" in
mariadbd | mysqld | /usr/sbin/mariadbd | /usr/sbin/mysqld) ;;
*) exec "$@" ;;
esac
server=$1
shift

prepare_dirs
if [ ! -d "$DATADIR/mysql" ]; then
	init_datadir
fi
if [ -f "$FRESH" ]; then
	pipe=$RUNDIR/stagectl-init.sql
	rm -f "$pipe"
	mkfifo -m 600 "$pipe"
	chown mysql:mysql "$pipe"
	# The writer blocks until the server opens the pipe, then removes it.
	(first_start_sql >"$pipe"; rm -f "$pipe") &
	rm -f "$FRESH"
	log "first start: database '${MARIADB_DATABASE}', user '${MARIADB_USER}'"
	set -- "--init-file=$pipe" "$@"
fi

exec "$server" --user=mysql "$@"
