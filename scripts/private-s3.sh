# Sourced by scripts/test.sh: a private S3-compatible server for the run:
# moto's (from PyPI), in memory on a loopback port, behind
# tests/peers/s3_signed.py, which checks the signature of every presigned
# request against the run's one access key (moto itself checks none).
# `s3_start` sets S3_ENDPOINT, S3_ACCESS_KEY and S3_SECRET_KEY; `s3_stop`
# stops both.
source "$(dirname "${BASH_SOURCE[0]}")/peers.sh"
s3_start() {
  local moto_port front_port
  moto_port=$(free_port)
  front_port=$(free_port)
  S3_ACCESS_KEY="AKIA$(python3 -c 'import secrets; print(secrets.token_hex(8).upper())')"
  S3_SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(30))')
  s3_log=$(mktemp)
  python3 -m moto.server -H 127.0.0.1 -p "$moto_port" >"$s3_log" 2>&1 &
  s3_pids=($!)
  python3 crates/sluice/tests/peers/s3_signed.py "$front_port" "$moto_port" "$S3_ACCESS_KEY" "$S3_SECRET_KEY" >>"$s3_log" 2>&1 &
  s3_pids+=($!)
  local port
  for port in "$moto_port" "$front_port"; do
    wait_port "$port" 30 || { cat "$s3_log" >&2; return 1; }
  done
  S3_ENDPOINT="http://127.0.0.1:$front_port"
}

s3_stop() {
  [ -n "${s3_pids:-}" ] || return 0
  kill "${s3_pids[@]}" 2>/dev/null || true
  wait "${s3_pids[@]}" 2>/dev/null || true
  rm -f "$s3_log"
  s3_pids=
}
