# Sourced by scripts/test.sh and bench/: a private PostgreSQL cluster (own
# data directory, loopback port, password login). `pg_start` sets PG_ADDRESS
# (postgresql://sluice:PASSWORD@127.0.0.1:PORT/postgres); `pg_stop` stops
# it and removes its data.
source "$(dirname "${BASH_SOURCE[0]}")/peers.sh"
pg_start() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -x "$bin/initdb" ] || { echo "private-postgres.sh: no PostgreSQL server installed" >&2; return 1; }
  pg_bin=$bin
  pg_dir=$(mktemp -d)
  pg_port=$(free_port)
  local password
  password=$(random_hex 12)
  echo "$password" >"$pg_dir/pw"
  # The server refuses to run as root: as the postgres user then.
  pg_as=()
  if [ "$(id -u)" = 0 ]; then
    chown -R postgres "$pg_dir"
    pg_as=(runuser -u postgres --)
  fi
  "${pg_as[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -U sluice --pwfile="$pg_dir/pw" -A scram-sha-256 >"$pg_dir/initdb.out" 2>&1 ||
    { cat "$pg_dir/initdb.out" >&2; return 1; }
  "${pg_as[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $pg_dir -c max_connections=200 -c fsync=off" start >/dev/null ||
    { cat "$pg_dir/server.log" >&2; return 1; }
  PG_ADDRESS="postgresql://sluice:$password@127.0.0.1:$pg_port/postgres"
}

pg_stop() {
  [ -n "${pg_dir:-}" ] || return 0
  "${pg_as[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
  rm -rf "$pg_dir"
  pg_dir=
}
