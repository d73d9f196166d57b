#!/usr/bin/env bash
# The fleet through a real PostgreSQL (Debian's postgresql, root): a temporary server
# (initdb and pg_ctl as the postgres user in a temporary directory, unix socket only),
# examples/fleet_bench.rs against it, the server stopped and removed at the end.
#
#   bash bench/fleet.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --example fleet_bench
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
dir=$(mktemp -d /tmp/saslguard-pgbench.XXXXXX)
chmod 755 "$dir"; mkdir "$dir/sock"; chown -R postgres:postgres "$dir"
cleanup() { runuser -u postgres -- "$bin/pg_ctl" -w -m fast -D "$dir/data" stop >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT
runuser -u postgres -- "$bin/initdb" --auth=trust -U postgres -D "$dir/data" >/dev/null
runuser -u postgres -- "$bin/pg_ctl" -w -l "$dir/log" -o "-k $dir/sock -c listen_addresses=" -D "$dir/data" start >/dev/null
runuser -u postgres -- psql -q -h "$dir/sock" -U postgres -c "CREATE DATABASE saslguard"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $("$bin/postgres" --version)"
target/release/examples/fleet_bench "host=$dir/sock dbname=saslguard user=postgres"
