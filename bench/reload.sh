#!/usr/bin/env bash
# Reload time of a large settings database (issue 12, benchmark c):
# 100,000 rows (60,000 capacity, 10,000 flood rules of which 1,000 regexes,
# 20,000 suppressions, 10,000 pauses) in SQLite and in a private PostgreSQL
# (scripts/private-postgres.sh). Reports `sluice database check`'s read time
# (open, migrate, read and check every row) and the daemon's own reload time
# (read, check, and swap into the shaper; database-ttl: 1, five reloads).
# Usage: bench/reload.sh [ROWS_SCALE]   (default 1 = 100,000 rows)
set -euo pipefail
cd "$(dirname "$0")/.."
K=${1:-1}
if [ -z "${BENCH_BIN:-}" ]; then cargo build --release -q; fi
BIN=${BENCH_BIN:-$PWD/target/release/sluice}
WORK=$(mktemp -d)
source scripts/private-postgres.sh
trap 'pg_stop; kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
free() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# The rows, as SQL both databases take (the daemon creates the tables first).
python3 - "$K" > "$WORK/rows.sql" <<'PY'
import sys
k = int(sys.argv[1])
out = ["BEGIN;"]
def insert(table, columns, rows):
    for i in range(0, len(rows), 1000):
        values = ",".join("(" + ",".join(v) + ")" for v in rows[i:i + 1000])
        out.append(f"INSERT INTO {table} ({columns}) VALUES {values};")
insert("capacity", "localip, domain, message_rate, connections",
       [(f"'10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}'" if i % 3 == 0 else "''", f"'d{i}.reload.example'", "'1000/min'", "5")
        for i in range(60000 * k)])
insert("flood_responses", "name, type, pattern, pause",
       [(f"'rule {i}'", "'regex'" if i % 10 == 0 else "'substr'", f"'no such reply {i}'", "60") for i in range(10000 * k)])
insert("suppressions", "type, value", [("'address'", f"'user{i}@gone.example'") for i in range(20000 * k)])
insert("paused", "domain, reason", [(f"'p{i}.reload.example'", "'bench'") for i in range(10000 * k)])
out.append("COMMIT;")
print("\n".join(out))
PY

measure() { # $1 = database-address, $2 = label
  local port=$(free) www=$(free)
  printf 'smtp-port: %s\nwww-port: %s\ndata-directory: %s\nlog-level: debug\ndatabase-address: %s\ndatabase-ttl: 1\n' \
    "$port" "$www" "$WORK/data-$2" "$1" > "$WORK/config-$2.txt"
  local check
  check=$("$BIN" database check --config "$WORK/config-$2.txt" 2>/dev/null | head -1 || true)
  echo "$2 check: $check"
  RUST_LOG=sluice=debug "$BIN" run --config "$WORK/config-$2.txt" 2>"$WORK/log-$2" &
  local pid=$!
  for _ in $(seq 300); do [ "$(grep -c 'settings database reloaded' "$WORK/log-$2" || true)" -ge 5 ] && break; sleep 0.2; done
  kill $pid; wait $pid 2>/dev/null || true
  grep 'settings database reloaded' "$WORK/log-$2" | sed -E 's/.*elapsed_ms=([0-9]+).*/\1/' | sort -n | tr '\n' ' ' |
    awk -v l="$2" '{ printf "%s daemon reloads (ms, sorted): %s  median %s\n", l, $0, $3 }'
}

# SQLite: the daemon's check creates the tables, then the rows go in with sqlite3.
printf 'data-directory: %s\ndatabase-address: sqlite://%s\n' "$WORK/d" "$WORK/settings.db" > "$WORK/init.txt"
"$BIN" database check --config "$WORK/init.txt" >/dev/null
python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.executescript(open(sys.argv[2]).read())" "$WORK/settings.db" "$WORK/rows.sql"
measure "sqlite://$WORK/settings.db" sqlite

pg_start
printf 'data-directory: %s\ndatabase-address: %s\n' "$WORK/d" "$PG_ADDRESS" > "$WORK/init.txt"
"$BIN" database check --config "$WORK/init.txt" >/dev/null
psql "$PG_ADDRESS" -q -v ON_ERROR_STOP=1 -f "$WORK/rows.sql"
measure "$PG_ADDRESS" postgresql
