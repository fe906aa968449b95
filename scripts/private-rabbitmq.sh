# Sourced by scripts/test.sh and bench/: a private RabbitMQ (own node name,
# loopback port and data directory). `rabbit_start` sets RABBIT_ADDRESS;
# `rabbit_stop` stops it and removes its data.
rabbit_start() {
  rabbit_dir=$(mktemp -d)
  rabbit_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  rabbit_node="sluice-$$-$rabbit_port@localhost"
  rabbit_env=(RABBITMQ_NODENAME="$rabbit_node" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$rabbit_port"
    RABBITMQ_DIST_PORT=$((rabbit_port < 55000 ? rabbit_port + 10000 : rabbit_port - 10000))
    RABBITMQ_MNESIA_BASE="$rabbit_dir/mnesia" RABBITMQ_LOG_BASE="$rabbit_dir/log"
    RABBITMQ_ENABLED_PLUGINS_FILE="$rabbit_dir/plugins")
  mkdir -p "$rabbit_dir/mnesia" "$rabbit_dir/log" && echo '[].' > "$rabbit_dir/plugins"
  chmod 755 "$rabbit_dir" && chown -R rabbitmq "$rabbit_dir"
  env "${rabbit_env[@]}" rabbitmq-server >"$rabbit_dir/server.out" 2>&1 &
  rabbit_pid=$!
  for _ in $(seq 120); do
    (exec 3<>"/dev/tcp/127.0.0.1/$rabbit_port") 2>/dev/null && break
    sleep 0.5
  done
  RABBIT_ADDRESS="amqp://guest:guest@127.0.0.1:$rabbit_port/%2f"
}

rabbit_stop() {
  [ -n "${rabbit_dir:-}" ] || return 0
  env "${rabbit_env[@]}" rabbitmqctl -n "$rabbit_node" stop >/dev/null 2>&1 || true
  wait "$rabbit_pid" 2>/dev/null || true
  rm -rf "$rabbit_dir"
  rabbit_dir=
}
