#!/bin/sh
# First start: initdb with the configured superuser and password (from a file, never on a command
# line), password authentication for every remote address, the database created. Then PostgreSQL
# itself, as the postgres user.
set -eu
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}"
user=${POSTGRES_USER:-postgres}
database=${POSTGRES_DB:-$user}
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

mkdir -p "$PGDATA" /run/postgresql
chown postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
  chown postgres "$pwfile"
  # shellcheck disable=SC2086 # the arguments are a list
  as_postgres initdb --username="$user" --pwfile="$pwfile" ${POSTGRES_INITDB_ARGS:-}
  rm -f "$pwfile"
  echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  if [ "$database" != "postgres" ]; then
    as_postgres pg_ctl --wait --options="-c listen_addresses=''" start
    as_postgres psql --no-psqlrc --set=ON_ERROR_STOP=1 --username="$user" --dbname=postgres \
      --command="CREATE DATABASE \"$database\""
    as_postgres pg_ctl --wait --mode=fast stop
  fi
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups postgres "$@"
