#!/usr/bin/env bash
# Throttle accuracy (issue 12, benchmark b): configured vs measured rates.
# Three domains with capacity rows of 60/min, 600/min and 6,000/min, each
# with more mail queued than the rate lets through in the window, delivered
# to a receiver (aiosmtpd, tests/peers/recorder.py) that records the arrival
# time of every message. Counts what arrived in the SECONDS after each
# domain's first arrival and the busiest single second. Loopback only.
# Usage: bench/throttle.sh [SECONDS]   (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
if [ -z "${BENCH_BIN:-}" ]; then cargo build --release -q; fi
BIN=${BENCH_BIN:-$PWD/target/release/sluice}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
python3 -c "import aiosmtpd" || { echo "needs python3 aiosmtpd (scripts/test.sh installs it)"; exit 1; }
free() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
RECV_PORT=$(free); SMTP_PORT=$(free); WWW_PORT=$(free)

python3 - "$WORK/settings.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.executescript("""
CREATE TABLE capacity (id INTEGER PRIMARY KEY, domain TEXT, message_rate TEXT);
INSERT INTO capacity (domain, message_rate) VALUES
  ('r60.bench.test', '60/min'), ('r600.bench.test', '600/min'), ('r6000.bench.test', '6000/min');
""")
db.commit()
PY
python3 crates/sluice/tests/peers/recorder.py "$RECV_PORT" "$WORK/arrivals.jsonl" >/dev/null 2>&1 &
# A message tried before the receiver listens would be refused and retried minutes later.
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$RECV_PORT") 2>/dev/null && break; sleep 0.1; done
printf 'smtp-port: %s\nwww-port: %s\ndata-directory: %s\nlog-level: warn\ndelivery-enabled: true\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: %s\ndatabase-address: sqlite://%s\n' \
  "$SMTP_PORT" "$WWW_PORT" "$WORK/data" "$RECV_PORT" "$WORK/settings.db" > "$WORK/config.txt"
"$BIN" run --config "$WORK/config.txt" 2>"$WORK/sluice.log" &
for _ in $(seq 100); do "$BIN" queue stats --config "$WORK/config.txt" >/dev/null 2>&1 && break; sleep 0.1; done
# 25% more than the window lets through, so no queue runs dry.
python3 - "$SECS" > "$WORK/msgs.json" <<'PY'
import json, sys
secs = int(sys.argv[1])
for per_min in (60, 600, 6000):
    for i in range(per_min * secs // 60 * 5 // 4 + 10):
        d = f"r{per_min}.bench.test"
        print(json.dumps({"envelope": "from@bench.test", "recipient": f"to{i}@{d}",
                          "mime": f"From: from@bench.test\r\nSubject: {i}\r\n\r\nbody\r\n"}))
PY
"$BIN" inject "$WORK/msgs.json" --config "$WORK/config.txt" >/dev/null
sleep $((SECS + 5))
python3 - "$WORK/arrivals.jsonl" "$SECS" <<'PY'
import json, sys, collections
secs = int(sys.argv[2])
by = collections.defaultdict(list)
for line in open(sys.argv[1]):
    m = json.loads(line)
    by[m["to"][0].rsplit("@", 1)[1]].append(m["t"])
print(f"| configured | arrived in {secs} s | measured per min | error | busiest second (first / later) | expected per second |")
print("|---:|---:|---:|---:|---:|---:|")
for per_min in (60, 600, 6000):
    t = sorted(by.get(f"r{per_min}.bench.test", []))
    if not t:
        print(f"| {per_min}/min | 0 | - | - | - | - |"); continue
    window = [x for x in t if x < t[0] + secs]
    measured = len(window) * 60 / secs
    seconds = collections.Counter(int(x - t[0]) for x in window)
    later = max((n for s, n in seconds.items() if s > 0), default=0)
    print(f"| {per_min}/min | {len(window)} | {measured:.0f} | {100 * (measured - per_min) / per_min:+.1f}% "
          f"| {seconds[0]} / {later} | {per_min / 60:g} |")
PY
