# Sourced by scripts/test.sh: a private MariaDB server (MySQL's protocol) on a
# loopback port with its own data directory, and a password login.
# `mysql_start` sets MYSQL_ADDRESS (mysql://sluice:PASSWORD@127.0.0.1:PORT/sluice);
# `mysql_stop` stops it and removes its data.
source "$(dirname "${BASH_SOURCE[0]}")/peers.sh"
mysql_start() {
  mysql_dir=$(mktemp -d)
  mysql_port=$(free_port)
  local password
  password=$(random_hex 12)
  local as=()
  [ "$(id -u)" = 0 ] && as=(--user=root)   # a private instance: no mysql account needed
  mariadb-install-db --no-defaults --datadir="$mysql_dir/data" "${as[@]}" --skip-test-db \
    --auth-root-authentication-method=socket >"$mysql_dir/install.out" 2>&1 ||
    { cat "$mysql_dir/install.out" >&2; return 1; }
  mariadbd --no-defaults --datadir="$mysql_dir/data" "${as[@]}" --socket="$mysql_dir/sock" \
    --port="$mysql_port" --bind-address=127.0.0.1 --skip-name-resolve --innodb-flush-log-at-trx-commit=2 \
    --log-error="$mysql_dir/server.log" --pid-file="$mysql_dir/pid" &
  mysql_pid=$!
  for _ in $(seq 120); do
    mariadb --no-defaults --socket="$mysql_dir/sock" -u root -e 'SELECT 1' >/dev/null 2>&1 && break
    sleep 0.5
  done
  mariadb --no-defaults --socket="$mysql_dir/sock" -u root -e "
    CREATE USER 'sluice'@'127.0.0.1' IDENTIFIED BY '$password';
    GRANT ALL ON *.* TO 'sluice'@'127.0.0.1';
    CREATE DATABASE sluice;" || { cat "$mysql_dir/server.log" >&2; return 1; }
  MYSQL_ADDRESS="mysql://sluice:$password@127.0.0.1:$mysql_port/sluice"
}

mysql_stop() {
  [ -n "${mysql_dir:-}" ] || return 0
  kill "$mysql_pid" 2>/dev/null || true
  wait "$mysql_pid" 2>/dev/null || true
  rm -rf "$mysql_dir"
  mysql_dir=
}
