#!/usr/bin/env bash
# Start a throw-away PostgreSQL cluster on loopback for the test suite and print its URL.
#
#   export TRACKER_TEST_POSTGRES="$(scripts/test_postgres.sh)"
#
# Uses Debian's postgresql package (apt-get install postgresql). initdb refuses to
# run as root, so as root the cluster belongs to the 'postgres' user. Exits non-zero,
# with the server log on stderr, if the server does not come up.
set -euo pipefail

port="${PGPORT_TEST:-54329}"
bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
if [[ -z "$bin" || ! -x "$bin/initdb" ]]; then
    echo "test_postgres.sh: no PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql)" >&2
    exit 1
fi
dir="$(mktemp -d /tmp/tracker-pg.XXXXXX)"
as_owner=()
if [[ "$(id -u)" == 0 ]]; then
    chown postgres: "$dir"
    as_owner=(runuser -u postgres --)
fi
"${as_owner[@]}" "$bin/initdb" --pgdata="$dir/data" --auth=trust --username=postgres --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
# fsync stays on: the crash tests need real durability on this server too.
"${as_owner[@]}" "$bin/pg_ctl" --pgdata="$dir/data" --log="$dir/server.log" --wait --timeout=60 \
    -o "-p $port -c listen_addresses=127.0.0.1 -k $dir -c max_connections=200" start >/dev/null \
    || { cat "$dir/server.log" >&2; exit 1; }
echo "postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
