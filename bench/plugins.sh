#!/usr/bin/env bash
# SMTP accept rate with 0 vs 10 no-op plugins that implement every inbound hook
# (bench/plugins/noop.c), alternating the two configurations ROUNDS times in
# one run. Usage: bench/plugins.sh [MESSAGES] [SESSIONS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}; S=${2:-20}; ROUNDS=${3:-3}
SMTP_PORT=${SMTP_PORT:-11126}; WWW_PORT=${WWW_PORT:-11127}
command -v smtp-source >/dev/null || { echo "needs postfix (smtp-source)"; exit 1; }
cargo build --release -q
BIN=$PWD/target/release/sluice
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/plugins"
for i in $(seq -w 0 9); do
  cc -O2 -shared -fPIC -fvisibility=hidden -Icrates/plugin/include -o "$WORK/plugins/$i-noop.so" bench/plugins/noop.c
done

run() { # $1 = extra config line
  rm -rf "$WORK/data"
  printf 'smtp-port: %s\nwww-port: %s\ndata-directory: %s\nlog-level: warn\n%s\n' \
    $SMTP_PORT $WWW_PORT "$WORK/data" "$1" > "$WORK/config.txt"
  "$BIN" run --config "$WORK/config.txt" 2>"$WORK/sluice.log" &
  local pid=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$WWW_PORT) 2>/dev/null && break; sleep 0.1; done
  local t0 t1; t0=$(date +%s.%N)
  smtp-source -s "$S" -m "$N" -l 4096 -f from@bench.test -t to@dest.test 127.0.0.1:$SMTP_PORT
  t1=$(date +%s.%N)
  kill $pid; wait $pid 2>/dev/null || true
  python3 -c "print(int($N/($t1-$t0)))"
}

echo "| round | 0 plugins | 10 no-op plugins | change |"
echo "|---:|---:|---:|---:|"
for r in $(seq "$ROUNDS"); do
  a=$(run "")
  b=$(run "plugin-directory: $WORK/plugins")
  python3 -c "print(f'| $r | $a | $b | {($b-$a)/$a*100:+.1f}% |')"
done
echo "(messages=$N, sessions=$S, 4 KB, msg/s, $(nproc) cores)"
