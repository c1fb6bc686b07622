#!/bin/sh
# Applies demo/shop/migrations/NNN_name.up.sql in order, once each, recording them in
# schema_migrations. Runs inside the postgres image as the stack's `migrate` job.
set -eu
PSQL="psql -v ON_ERROR_STOP=1 -q -h ${PGHOST:-db} -U ${PGUSER:-postgres} -d ${PGDATABASE:-shop}"
$PSQL -c "CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
for f in /migrations/*.up.sql; do
    name=$(basename "$f" .up.sql)
    done_already=$($PSQL -tA -c "SELECT 1 FROM schema_migrations WHERE name = '$name'")
    if [ -n "$done_already" ]; then
        echo "skip  $name (applied)"
        continue
    fi
    echo "apply $name"
    $PSQL -1 -f "$f" -c "INSERT INTO schema_migrations (name) VALUES ('$name')"
done
