# Sourced by scripts/test.sh: a private S3-compatible server for the run:
# moto's (from PyPI), in memory on a loopback port, behind
# tests/peers/s3_signed.py, which checks the signature of every presigned
# request against the run's one access key (moto itself checks none).
# `s3_start` sets S3_ENDPOINT, S3_ACCESS_KEY and S3_SECRET_KEY; `s3_stop`
# stops both.
s3_start() {
  local free='import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
  local moto_port front_port
  moto_port=$(python3 -c "$free")
  front_port=$(python3 -c "$free")
  S3_ACCESS_KEY="AKIA$(python3 -c 'import secrets; print(secrets.token_hex(8).upper())')"
  S3_SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(30))')
  s3_log=$(mktemp)
  python3 -m moto.server -H 127.0.0.1 -p "$moto_port" >"$s3_log" 2>&1 &
  s3_pids=($!)
  python3 crates/sluice/tests/peers/s3_signed.py "$front_port" "$moto_port" "$S3_ACCESS_KEY" "$S3_SECRET_KEY" >>"$s3_log" 2>&1 &
  s3_pids+=($!)
  local port
  for port in "$moto_port" "$front_port"; do
    for _ in $(seq 120); do
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
      sleep 0.25
    done
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
