#!/usr/bin/env bash
# Start a throw-away PostgreSQL cluster on loopback for the test suite and print its URL.
#
#   export TRACKER_TEST_POSTGRES="$(scripts/test_postgres.sh)"
#
# Uses Debian's postgresql package (apt-get install postgresql). initdb refuses to
# run as root, so as root the cluster belongs to the 'postgres' user. Every run makes
# a new cluster in a new folder under /tmp. Exits non-zero, with the server log on
# stderr, if the server does not come up.
#
# The server checks passwords (scram-sha-256, over TCP and the socket alike), as a
# real one does: a server that accepts any password hides a password that tracker
# mangles. The URL printed holds the postgres user's password, random per cluster.
set -euo pipefail

port="${PGPORT_TEST:-54329}"
bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
if [[ -z "$bin" || ! -x "$bin/initdb" ]]; then
    echo "test_postgres.sh: no PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql)" >&2
    exit 1
fi
dir="$(mktemp -d /tmp/tracker-pg.XXXXXX)"
# A caller that stops and restarts the server itself (the outage tests) learns its folder here.
[[ -n "${PG_TEST_DIR_FILE:-}" ]] && printf '%s\n' "$dir" >"$PG_TEST_DIR_FILE"
password="$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
(umask 077 && printf '%s\n' "$password" >"$dir/pwfile")
as_owner=()
if [[ "$(id -u)" == 0 ]]; then
    chown -R postgres: "$dir"
    as_owner=(runuser -u postgres --)
fi
"${as_owner[@]}" "$bin/initdb" --pgdata="$dir/data" --auth=scram-sha-256 --pwfile="$dir/pwfile" \
    --username=postgres --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
rm "$dir/pwfile"
# fsync stays on: the crash tests need real durability on this server too.
"${as_owner[@]}" "$bin/pg_ctl" --pgdata="$dir/data" --log="$dir/server.log" --wait --timeout=60 \
    -o "-p $port -c listen_addresses=127.0.0.1 -k $dir -c max_connections=200" start >/dev/null \
    || { cat "$dir/server.log" >&2; exit 1; }
echo "postgresql+psycopg://postgres:$password@127.0.0.1:$port/postgres"
