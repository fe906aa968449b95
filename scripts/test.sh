#!/usr/bin/env bash
# Runs every test. Installs the real peers the tests talk to when missing:
# swaks, Postfix (smtp-source/smtp-sink, and a private instance as a mailbox),
# dnsmasq (test DNS zones), rabbitmq-server, PostgreSQL, Prometheus, Chromium,
# python3 with dkimpy, aiosmtpd, pika, prometheus_client, playwright, boto3 and
# moto's S3 server, MariaDB. Starts a private RabbitMQ, PostgreSQL, S3 server
# and MariaDB for the run, stopped at the end. Safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."

# Installs without starting the packages' own services (Postfix, RabbitMQ,
# Prometheus would listen on their default ports): the tests start private ones.
no_services() {
  local made=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made=1
  fi
  local status=0
  "$@" || status=$?
  [ -z "$made" ] || rm -f /usr/sbin/policy-rc.d
  return $status
}

need=()
command -v swaks >/dev/null || need+=(swaks)
# swaks needs these for STARTTLS and AUTH; they are only "recommended", so
# --no-install-recommends leaves them out.
perl -MNet::SSLeay -e1 2>/dev/null || need+=(libnet-ssleay-perl)
perl -MIO::Socket::SSL -e1 2>/dev/null || need+=(libio-socket-ssl-perl)
perl -MAuthen::SASL -e1 2>/dev/null || need+=(libauthen-sasl-perl)
perl -MDigest::HMAC_MD5 -e1 2>/dev/null || need+=(libdigest-hmac-perl)
command -v smtp-source >/dev/null || need+=(postfix)
command -v python3 >/dev/null || need+=(python3)
[ -f /usr/include/json-c/json.h ] || need+=(libjson-c-dev)   # plugins that use MQ_json
[ -f /usr/include/ev.h ] || need+=(libev-dev)                   # plugins that use MQ_ev
command -v dnsmasq >/dev/null || need+=(dnsmasq-base)            # the loopback DNS server of delivery tests
command -v openssl >/dev/null || need+=(openssl)                  # certificates for the test Postfix
command -v rabbitmq-server >/dev/null || need+=(rabbitmq-server)  # the RabbitMQ backend's broker
command -v prometheus >/dev/null || need+=(prometheus)            # scrapes /metrics in the metrics tests
command -v chromium >/dev/null || need+=(chromium)                # the console's browser tests (headless)
command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server-core)  # the mysql:// message store's server
command -v mariadb >/dev/null || need+=(mariadb-client)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing test peers: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>/dev/null || true
  apt-get update -q >/dev/null
  no_services apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
# PostgreSQL (the shared settings database's tests): the server only, without
# the cluster Debian would create and start on port 5432; the run starts its own.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "installing test peers: postgresql"
  export DEBIAN_FRONTEND=noninteractive
  [ ${#need[@]} -gt 0 ] || apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends postgresql-common >/dev/null
  sed -ri 's/^#?\s*create_main_cluster\s*=.*$/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf
  no_services apt-get install -y -q --no-install-recommends postgresql postgresql-client >/dev/null
fi

# What the tests rely on the peers for: a missing capability is an install
# error here, not a failing test later.
support=$(swaks --support 2>&1)
for feature in "TLS" "Basic AUTH"; do
  if ! grep -q "=== $feature supported" <<<"$support"; then
    echo "test.sh: swaks lacks $feature support, which the tests need:" >&2
    grep "$feature" <<<"$support" >&2 || true
    exit 1
  fi
done

# Python peers: aiosmtpd (an SMTP server with AUTH and STARTTLS), dkimpy (a DKIM verifier), pika (AMQP),
# prometheus_client (an OpenMetrics parser), playwright (drives the system's chromium;
# its own browser download is not used), moto's S3 server and boto3 (the s3:// message store).
if ! python3 -c "import aiosmtpd, dkim, nacl, pika, prometheus_client, playwright, boto3, moto.server, flask_cors" 2>/dev/null; then
  py=(aiosmtpd dkimpy pynacl pika prometheus_client playwright boto3 "moto[server]")
  python3 -m pip install -q "${py[@]}" 2>/dev/null || python3 -m pip install -q --break-system-packages "${py[@]}"
fi

# A private RabbitMQ for the run, stopped at the end. Tests that stop and
# start a broker start their own.
source scripts/private-rabbitmq.sh
source scripts/private-postgres.sh
source scripts/private-s3.sh
source scripts/private-mysql.sh
trap 'rabbit_stop; pg_stop; s3_stop; mysql_stop' EXIT
rabbit_start
export RABBITMQ_TEST_ADDRESS="$RABBIT_ADDRESS" RABBITMQ_TEST_TLS_ADDRESS="$RABBIT_TLS_ADDRESS" RABBITMQ_TEST_CA="$RABBIT_CA"
pg_start
export POSTGRES_TEST_ADDRESS="$PG_ADDRESS"
s3_start
export S3_TEST_ENDPOINT="$S3_ENDPOINT" S3_TEST_ACCESS_KEY="$S3_ACCESS_KEY" S3_TEST_SECRET_KEY="$S3_SECRET_KEY"
mysql_start
export MYSQL_TEST_ADDRESS="$MYSQL_ADDRESS"

status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast || status=$?
else
  cargo test --workspace --no-fail-fast || status=$?
fi
exit $status
