# Sourced by scripts/private-*.sh: what starting a private peer needs.

# A loopback TCP port free right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A random hex string of $1 bytes (passwords of the private peers).
random_hex() {
  python3 -c "import secrets; print(secrets.token_hex($1))"
}

# Waits up to $2 seconds for 127.0.0.1:$1 to accept; says so and fails if it never does.
wait_port() {
  local port=$1 tries=$(($2 * 4))
  for _ in $(seq "$tries"); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.25
  done
  echo "peers.sh: nothing listens on 127.0.0.1:$port after $2 s" >&2
  return 1
}
