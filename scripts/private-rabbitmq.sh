# Sourced by scripts/test.sh and bench/: a private RabbitMQ (own node name,
# loopback port and data directory), with a TLS listener on a second port
# whose certificate (for 127.0.0.1 and localhost) an own CA signed.
# `rabbit_start` sets RABBIT_ADDRESS, RABBIT_TLS_ADDRESS (amqps://) and
# RABBIT_CA (the CA's PEM file); `rabbit_stop` stops it and removes its data.
source "$(dirname "${BASH_SOURCE[0]}")/peers.sh"
rabbit_start() {
  rabbit_dir=$(mktemp -d)
  rabbit_port=$(free_port)
  rabbit_node="sluice-$$-$rabbit_port@localhost"
  rabbit_env=(RABBITMQ_NODENAME="$rabbit_node" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$rabbit_port"
    RABBITMQ_DIST_PORT=$((rabbit_port < 55000 ? rabbit_port + 10000 : rabbit_port - 10000))
    RABBITMQ_MNESIA_BASE="$rabbit_dir/mnesia" RABBITMQ_LOG_BASE="$rabbit_dir/log"
    RABBITMQ_ENABLED_PLUGINS_FILE="$rabbit_dir/plugins")
  rabbit_tls_port=$(free_port)
  local tls="$rabbit_dir/tls"
  mkdir -p "$tls"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tls/ca.key" -out "$tls/ca.pem" -days 3 \
    -subj "/CN=Sluice test CA" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout "$tls/server.key" -out "$tls/server.csr" -subj "/CN=localhost" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$tls/ext"
  openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
    -out "$tls/server.pem" -days 3 -extfile "$tls/ext" 2>/dev/null
  cat >"$rabbit_dir/rabbitmq.conf" <<CONF
listeners.ssl.default = 127.0.0.1:$rabbit_tls_port
ssl_options.cacertfile = $tls/ca.pem
ssl_options.certfile = $tls/server.pem
ssl_options.keyfile = $tls/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
CONF
  rabbit_env+=(RABBITMQ_CONFIG_FILE="$rabbit_dir/rabbitmq.conf")
  mkdir -p "$rabbit_dir/mnesia" "$rabbit_dir/log" && echo '[].' > "$rabbit_dir/plugins"
  chmod 755 "$rabbit_dir" && chown -R rabbitmq "$rabbit_dir"
  env "${rabbit_env[@]}" rabbitmq-server >"$rabbit_dir/server.out" 2>&1 &
  rabbit_pid=$!
  wait_port "$rabbit_port" 60 && wait_port "$rabbit_tls_port" 30 || { cat "$rabbit_dir/server.out" >&2; return 1; }
  RABBIT_ADDRESS="amqp://guest:guest@127.0.0.1:$rabbit_port/%2f"
  RABBIT_TLS_ADDRESS="amqps://guest:guest@127.0.0.1:$rabbit_tls_port/%2f"
  RABBIT_CA="$tls/ca.pem"
}

rabbit_stop() {
  [ -n "${rabbit_dir:-}" ] || return 0
  env "${rabbit_env[@]}" rabbitmqctl -n "$rabbit_node" stop >/dev/null 2>&1 || true
  wait "$rabbit_pid" 2>/dev/null || true
  rm -rf "$rabbit_dir"
  rabbit_dir=
}
