#!/usr/bin/env bash
# Inbound accept rate, three peers in one run (ports on 127.0.0.1 only):
#   ceiling:  smtp-source -> smtp-sink                 (no MTA in between)
#   sluice:   smtp-source -> sluice (fsync before 250) (embedded store)
#   postfix:  smtp-source -> postfix (its queue)       (../shared/bench/postfix-relay.sh)
# Usage: bench/inbound.sh [MESSAGES] [SESSIONS...]    (default 20000, sessions 20 100)
# Run as root (Postfix is installed and configured by the shared script).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}; shift || true
SESSIONS=("$@"); [ ${#SESSIONS[@]} -gt 0 ] || SESSIONS=(20 100)
SIZE=4096
SINK_PORT=${SINK_PORT:-11025}; SMTP_PORT=${SMTP_PORT:-11026}; WWW_PORT=${WWW_PORT:-11027}

command -v smtp-source >/dev/null || { echo "needs postfix (smtp-source, smtp-sink)"; exit 1; }
# BENCH_BIN=path runs that binary instead (to compare two builds in one sitting).
if [ -z "${BENCH_BIN:-}" ]; then cargo build --release -q; fi
BIN=${BENCH_BIN:-$PWD/target/release/sluice}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT

rate() { python3 -c "import sys; print(f'{int(sys.argv[1])/float(sys.argv[2]):.0f}')" "$1" "$2"; }
timed() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N); python3 -c "print($t1-$t0)"; }

declare -A CEIL SLUICE PF
for S in "${SESSIONS[@]}"; do
  # Ceiling: straight into smtp-sink.
  smtp-sink -u nobody -c 127.0.0.1:$SINK_PORT 1000 >/dev/null 2>&1 &
  SINK=$!; sleep 0.5
  secs=$(timed smtp-source -s "$S" -m "$N" -l $SIZE -f from@bench.test -t to@dest.test 127.0.0.1:$SINK_PORT)
  CEIL[$S]=$(rate "$N" "$secs")
  kill $SINK; wait $SINK 2>/dev/null || true

  # Sluice on a fresh data directory.
  rm -rf "$WORK/data"
  # Receive only: delivery would compete for the CPU and add result copies to the count.
  printf 'smtp-port: %s\nwww-port: %s\ndata-directory: %s\nlog-level: warn\nsmtp-connections: 2000\ndelivery-enabled: false\n' \
    $SMTP_PORT $WWW_PORT "$WORK/data" > "$WORK/config.txt"
  "$BIN" run --config "$WORK/config.txt" 2>"$WORK/sluice.log" &
  SLUICE_PID=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$SMTP_PORT) 2>/dev/null && break; sleep 0.1; done
  secs=$(timed smtp-source -s "$S" -m "$N" -l $SIZE -f from@bench.test -t to@dest.test 127.0.0.1:$SMTP_PORT)
  SLUICE[$S]=$(rate "$N" "$secs")
  stored=$("$BIN" queue stats --config "$WORK/config.txt" | python3 -c 'import sys,json; print(sum(json.loads(l)["ready"] for l in sys.stdin))')
  [ "$stored" = "$N" ] || echo "WARNING: sluice stored $stored of $N"
  kill $SLUICE_PID; wait $SLUICE_PID 2>/dev/null || true

  # Postfix, accept rate into its queue (the shared script also measures its relay).
  out=$(../shared/bench/postfix-relay.sh "$N" "$S" $SIZE)
  PF[$S]=$(echo "$out" | sed -E 's/.*postfix accept: ([0-9]+) msg\/s.*/\1/')
  echo "sessions=$S  ceiling=${CEIL[$S]}  sluice=${SLUICE[$S]}  postfix=${PF[$S]} msg/s"
done

echo
echo "| sessions | smtp-sink (ceiling) | sluice | postfix | sluice/postfix | sluice/ceiling |"
echo "|---:|---:|---:|---:|---:|---:|"
for S in "${SESSIONS[@]}"; do
  python3 -c "
c,s,p=${CEIL[$S]},${SLUICE[$S]},${PF[$S]}
print(f'| $S | {c} | {s} | {p} | {s/p:.1f}x | {s/c*100:.0f}% |')"
done
echo "(messages=$N, size=$SIZE bytes, one message per connection as smtp-source sends by default, $(nproc) cores)"
