#!/usr/bin/env bash
# Peak memory of reception under two hostile loads (issue 10, item 3):
#   rcpts: one SMTP client, 1,000 RCPTs and one 2 MB body
#   http:  eight parallel 300 MB HTTP bodies to /inject
# Reports the daemon's peak RSS (VmHWM) after each. Receive-only, loopback.
# Usage: bench/reception-memory.sh [BINARY]   (default: target/release/sluice, built)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-}
if [ -z "$BIN" ]; then cargo build --release -q; BIN=$PWD/target/release/sluice; fi
SMTP_PORT=${SMTP_PORT:-11036}; WWW_PORT=${WWW_PORT:-11037}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT

start() {
  rm -rf "$WORK/data"
  printf 'smtp-port: %s\nwww-port: %s\ndata-directory: %s\nlog-level: warn\ndelivery-enabled: false\nsmtp-max-recipients: 1000\n' \
    $SMTP_PORT $WWW_PORT "$WORK/data" > "$WORK/config.txt"
  "$BIN" run --config "$WORK/config.txt" 2>"$WORK/sluice.log" &
  PID=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$SMTP_PORT) 2>/dev/null && break; sleep 0.1; done
}
peak() { awk '/VmHWM/ {printf "%.0f MB", $2/1024}' /proc/$PID/status; }

start
python3 - "$SMTP_PORT" <<'PY'
import smtplib, sys
body = "Subject: big\r\n\r\n" + ("x" * 998 + "\r\n") * 2100
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=600)
print(" ", s.sendmail("a@bench.test", [f"r{i}@dest.test" for i in range(1000)], body) or "all 1000 accepted")
s.quit()
PY
echo "rcpts: 1000 x 2 MB: peak RSS $(peak), data directory $(du -sh "$WORK/data" | cut -f1)"
kill $PID; wait $PID 2>/dev/null || true

start
python3 - "$WWW_PORT" <<'PY'
import socket, sys, threading
port = int(sys.argv[1]); size = 300 << 20; chunk = b"x" * (1 << 20); codes = []
def post():
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"POST /inject HTTP/1.1\r\nHost: b\r\nContent-Length: {size}\r\n\r\n".encode())
    try:
        for _ in range(size // len(chunk)):
            s.sendall(chunk)
    except OSError:
        pass  # answered and closed before the body was read
    try:
        codes.append(s.recv(64).split(b" ")[1].decode())
    except (OSError, IndexError) as e:
        codes.append(type(e).__name__)
threads = [threading.Thread(target=post) for _ in range(8)]
[t.start() for t in threads]; [t.join() for t in threads]
print("  answers:", " ".join(sorted(codes)))
PY
echo "http: 8 x 300 MB bodies: peak RSS $(peak)"
kill $PID; wait $PID 2>/dev/null || true
