#!/usr/bin/env bash
# Medusa (cassandra-medusa from PyPI), the reference kassette is measured
# against, set up for the local test cluster and MinIO.
#
#   scripts/medusa.sh install                 venv in $KASSETTE_CACHE (pinned)
#   scripts/medusa.sh config N BUCKET DIR     write DIR/medusa-N.ini for node N
#   scripts/medusa.sh bin                     print the medusa command path
#
# Medusa runs one process per node (`backup-node`), as its gRPC sidecars do
# in K8ssandra; here each is pointed at its node's cassandra.yaml, JMX port
# and loopback address.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MEDUSA_VERSION="0.31.0"
VENV="$KASSETTE_CACHE/medusa-$MEDUSA_VERSION"

install() {
  if [ ! -x "$VENV/bin/medusa" ]; then
    log "installing cassandra-medusa $MEDUSA_VERSION from PyPI"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "cassandra-medusa==$MEDUSA_VERSION"
  fi
  "$VENV/bin/medusa" --version >/dev/null
}

config() {
  local n="$1" bucket="$2" dir="$3"
  # shellcheck disable=SC1091
  source "$KASSETTE_RUN/cassandra.env"
  # shellcheck disable=SC1091
  source "$KASSETTE_RUN/minio.env"
  local jmx_var="KASSETTE_TEST_CASSANDRA_JMX_$n" dir_var="KASSETTE_TEST_CASSANDRA_DIR_$n"
  mkdir -p "$dir"
  cat >"$dir/medusa-$n.ini" <<INI
[cassandra]
config_file = ${!dir_var}/conf/cassandra.yaml
nodetool_executable = $KASSETTE_REPO/scripts/nodetool
nodetool_flags =
nodetool_host = 127.0.0.1
nodetool_port = ${!jmx_var##*:}
use_sudo = False
resolve_ip_addresses = False
check_running = true

[storage]
storage_provider = s3_compatible
bucket_name = $bucket
key_file = $KASSETTE_TEST_S3_CREDENTIALS_FILE
host = 127.0.0.1
port = ${KASSETTE_TEST_S3_ENDPOINT##*:}
secure = False
ssl_verify = False
region = $KASSETTE_TEST_S3_REGION
fqdn = 127.0.0.$n
concurrent_transfers = ${KASSETTE_CONCURRENCY:-8}
transfer_max_bandwidth = 10000MB/s
use_sudo_for_restore = False

[logging]
enabled = false
INI
}

case "${1:-}" in
  install) install ;;
  config) shift; config "$@" ;;
  bin) echo "$VENV/bin/medusa" ;;
  *) die "usage: $0 install | config N BUCKET DIR | bin" ;;
esac
