#!/usr/bin/env bash
# Delivery rate, two measurements in one run (ports on 127.0.0.1 only):
#   (a) preloaded: N outbox messages (4 KB, 100 domains) -> sluice delivery -> smtp-sink
#       (smtp-sink-ip routes every connection there; per-domain queues and limits stay)
#   (b) relay end to end: smtp-source -> sluice (SMTP in, outbox, delivery) -> smtp-sink,
#       against Postfix doing the same relay (../shared/bench/postfix-relay.sh)
# Usage: [QUEUE=rabbitmq] bench/deliver.sh [N_PRELOADED] [N_RELAY] [SESSIONS]   (default 100000 20000 20)
#   QUEUE=rabbitmq: the queues in a private RabbitMQ (persistent, confirmed) instead of the embedded store
#   POLICY_ROWS=N: a settings database with N capacity rows and N/10 flood rules, none for the bench domains
#   SCRAPE=1: GET /metrics every second while sluice runs (as Prometheus would)
#   CONSOLE=1: the web console open in headless Chromium meanwhile (bench/console-open.py);
#   CONSOLE=streams: only what the console asks of Sluice, read by Python (bench/console-streams.py)
# Run as root (Postfix is installed and configured by the shared script).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}; NR=${2:-20000}; S=${3:-20}
SIZE=4096
SINK_PORT=${SINK_PORT:-11025}; SMTP_PORT=${SMTP_PORT:-11026}; WWW_PORT=${WWW_PORT:-11027}

command -v smtp-source >/dev/null || { echo "needs postfix (smtp-source, smtp-sink)"; exit 1; }
# BENCH_BIN=path runs that binary instead (to compare two builds in one sitting).
if [ -z "${BENCH_BIN:-}" ]; then cargo build --release -q; fi
BIN=${BENCH_BIN:-$PWD/target/release/sluice}
WORK=$(mktemp -d)
source scripts/private-rabbitmq.sh
trap 'rabbit_stop; kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
if [ "${QUEUE:-embedded}" = rabbitmq ]; then
  command -v rabbitmq-server >/dev/null || { echo "needs rabbitmq-server"; exit 1; }
  rabbit_start
  echo "queues in RabbitMQ at $RABBIT_ADDRESS"
fi

now() { date +%s.%N; }
if [ -n "${POLICY_ROWS:-}" ]; then
  python3 - "$WORK/settings.db" "$POLICY_ROWS" <<'PY'
import sqlite3, sys
db, n = sqlite3.connect(sys.argv[1]), int(sys.argv[2])
db.executescript("CREATE TABLE capacity (id INTEGER PRIMARY KEY, domain TEXT, message_rate TEXT, connections INTEGER);"
                 "CREATE TABLE flood_responses (id INTEGER PRIMARY KEY, name TEXT, type TEXT, pattern TEXT, pause INTEGER);")
db.executemany("INSERT INTO capacity (domain, message_rate, connections) VALUES (?, '1000/min', 5)",
               [(f"row{i}.unused.example",) for i in range(n)])
db.executemany("INSERT INTO flood_responses (name, type, pattern, pause) VALUES (?, 'regex', ?, 60)",
               [(f"rule {i}", f"^4\\d\\d .*no such reply {i}$") for i in range(n // 10)])
db.commit()
PY
  echo "settings database: $POLICY_ROWS capacity rows, $((POLICY_ROWS / 10)) flood rules (none for the bench domains)"
fi
rate() { python3 -c "import sys; print(f'{int(sys.argv[1])/(float(sys.argv[3])-float(sys.argv[2])):.0f}')" "$@"; }
config() { # $1 = delivery-enabled
  printf 'smtp-port: %s\nwww-port: %s\ndata-directory: %s\nlog-level: warn\nsmtp-connections: 2000\n' \
    $SMTP_PORT $WWW_PORT "$WORK/data" > "$WORK/config.txt"
  printf 'delivery-enabled: %s\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: %s\n' "$1" $SINK_PORT >> "$WORK/config.txt"
  if [ -n "${POLICY_ROWS:-}" ]; then
    printf 'database-address: sqlite://%s\n' "$WORK/settings.db" >> "$WORK/config.txt"
  fi
  if [ -n "${RABBIT_ADDRESS:-}" ]; then
    # The broker outlives a data directory: each part gets queues of its own.
    printf 'rabbitmq-address: %s\n' "$RABBIT_ADDRESS" >> "$WORK/config.txt"
    for q in outbox results success failure retry; do printf 'rabbitmq-%s: %s-%s\n' $q "$PART" $q >> "$WORK/config.txt"; done
  fi
}
scrape() { while sleep 1; do
    (exec 3<>"/dev/tcp/127.0.0.1/$WWW_PORT" && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && cat <&3 >/dev/null) 2>/dev/null || true
  done; }
start() { "$BIN" run --config "$WORK/config.txt" 2>>"$WORK/sluice.log" & SLUICE_PID=$!
  for _ in $(seq 100); do "$BIN" queue stats --config "$WORK/config.txt" >/dev/null 2>&1 && break; sleep 0.1; done
  "$BIN" queue stats --config "$WORK/config.txt" >/dev/null 2>&1 || { echo "sluice did not start"; cat "$WORK/sluice.log"; exit 1; }
  if [ -n "${SCRAPE:-}" ]; then scrape & SCRAPER=$!; fi
  if [ -n "${CONSOLE:-}" ]; then
    reader=bench/console-open.py; [ "$CONSOLE" != streams ] || reader=bench/console-streams.py
    python3 -u "$reader" "http://127.0.0.1:$WWW_PORT" >>"$WORK/console.log" 2>&1 & CONSOLE_PID=$!
    for _ in $(seq 100); do grep -q "console open" "$WORK/console.log" 2>/dev/null && break; sleep 0.2; done
  fi; }
stop() { [ -z "${SCRAPER:-}" ] || { kill $SCRAPER 2>/dev/null; wait $SCRAPER 2>/dev/null || true; SCRAPER=; }
  [ -z "${CONSOLE_PID:-}" ] || { kill $CONSOLE_PID 2>/dev/null; wait $CONSOLE_PID 2>/dev/null || true; CONSOLE_PID=; tail -1 "$WORK/console.log"; }
  kill $SLUICE_PID; wait $SLUICE_PID 2>/dev/null || true; }
# Waits for smtp-sink's port: a message refused at connect would wait out
# the 300 s retry and ruin the timing (it happened once on a cold machine).
sink_ready() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$SINK_PORT") 2>/dev/null && return; sleep 0.1; done
  echo "smtp-sink did not start"; exit 1; }
# Messages of queue $1 still present (ready + delayed + leased).
left() { local name=$1; [ -z "${RABBIT_ADDRESS:-}" ] || name="$PART-$1"
  "$BIN" queue stats --config "$WORK/config.txt" | python3 -c "
import sys,json
print(sum(q['ready']+q['delayed']+q['leased'] for q in map(json.loads, sys.stdin) if q['name']=='$name'))"; }
wait_empty() { while [ "$(left outbox)" != 0 ]; do sleep 0.1; done; }

# ---- (a) preloaded outbox -------------------------------------------------
PART=a
rm -rf "$WORK/data"; config false; start
python3 - "$N" "$SIZE" "$WORK/msgs" <<'PY'
import json, sys, os
n, size, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
os.makedirs(out, exist_ok=True)
body = ("x" * 76 + "\r\n") * (size // 78)
chunk = 5000
for c in range(0, n, chunk):
    with open(f"{out}/{c:08d}.json", "w") as f:
        for i in range(c, min(n, c + chunk)):
            d = f"d{i % 100}.bench.test"
            mime = f"From: from@bench.test\r\nTo: to{i}@{d}\r\nSubject: bench {i}\r\n\r\n{body}"
            f.write(json.dumps({"envelope": "from@bench.test", "recipient": f"to{i}@{d}", "mime": mime}) + "\n")
PY
t0=$(now)
for f in "$WORK"/msgs/*.json; do "$BIN" inject "$f" --config "$WORK/config.txt" >/dev/null; done
t1=$(now)
echo "(a) preload: $N messages injected over HTTP (stored, fsync'd or confirmed) at $(rate "$N" "$t0" "$t1") msg/s"
rm -rf "$WORK/msgs"
[ "$(left outbox)" = "$N" ] || { echo "preload failed: $(left outbox) of $N in the outbox"; exit 1; }
stop
smtp-sink -u nobody -m 1000 -c 127.0.0.1:$SINK_PORT 1024 >"$WORK/sink.out" 2>&1 & SINK=$!
sink_ready
config true
t0=$(now); start; wait_empty; t1=$(now)
results=$(left results); failures=$(left failure)
stop; kill $SINK; wait $SINK 2>/dev/null || true
A=$(rate "$N" "$t0" "$t1")
echo "(a) preloaded: $N messages delivered in $(python3 -c "print(f'{$t1-$t0:.1f}')") s = $A msg/s (results=$results failures=$failures)"

# ---- (b) relay end to end, sluice then postfix ------------------------------
PART=b
rm -rf "$WORK/data"; config true
smtp-sink -u nobody -m 1000 -c 127.0.0.1:$SINK_PORT 1024 >"$WORK/sink.out" 2>&1 & SINK=$!
sink_ready; start
t0=$(now)
smtp-source -s "$S" -m "$NR" -l $SIZE -f from@bench.test -t to@dest.test 127.0.0.1:$SMTP_PORT
t1=$(now); wait_empty; t2=$(now)
results=$(left results); failures=$(left failure)
stop; kill $SINK; wait $SINK 2>/dev/null || true
B_ACCEPT=$(rate "$NR" "$t0" "$t1"); B=$(rate "$NR" "$t0" "$t2")
echo "(b) sluice relay: accept $B_ACCEPT msg/s, end-to-end $B msg/s (results=$results failures=$failures)"
out=$(../shared/bench/postfix-relay.sh "$NR" "$S" $SIZE)
echo "(b) $out"
PF=$(echo "$out" | sed -E 's/.*end-to-end: ([0-9]+) msg\/s.*/\1/')
python3 -c "print(f'(b) sluice/postfix end to end: {$B/$PF:.1f}x  (sessions=$S, size=$SIZE, $(nproc) cores)')"
