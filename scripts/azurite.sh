#!/usr/bin/env bash
# Local Azure Blob Storage emulator (Azurite) for kassette's tests.
#
#   scripts/azurite.sh install   npm-install Azurite into $KASSETTE_CACHE
#   scripts/azurite.sh start     run its blob service on http://127.0.0.1:10000; idempotent
#   scripts/azurite.sh stop      stop it, keeping the data
#   scripts/azurite.sh clean     stop it and delete its data
#   scripts/azurite.sh status    exit 0 when it is up and answering
#
# Afterwards `source $KASSETTE_RUN/azurite.env` to get KASSETTE_TEST_AZURE_*.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# From the npm registry. 3.35.0 is the newest release whose engines field
# accepts the Node.js 20 this machine has (3.36 needs 21, 3.37 needs 22).
AZURITE_VERSION="3.35.0"
AZURITE_DIR="$KASSETTE_CACHE/azurite-$AZURITE_VERSION"
AZURITE_BIN="$AZURITE_DIR/node_modules/.bin/azurite-blob"

AZURITE_HOST=127.0.0.1
AZURITE_PORT="${KASSETTE_AZURITE_PORT:-10000}"
# A test-only account (the server listens on loopback only) instead of
# Azurite's well-known devstoreaccount1, so nothing can depend on that name.
AZURE_ACCOUNT=kassette
AZURE_KEY="a2Fzc2V0dGUtYXp1cml0ZS10ZXN0LWFjY291bnQta2V5LTY0LWJ5dGVzLWxvbmctIQ=="
ENDPOINT="http://$AZURITE_HOST:$AZURITE_PORT/$AZURE_ACCOUNT"

RUN_DIR="$KASSETTE_RUN/azurite"
DATA_DIR="$RUN_DIR/data"
PID_FILE="$RUN_DIR/azurite.pid"
LOG_FILE="$RUN_DIR/azurite.log"
KEY_FILE="$RUN_DIR/medusa_azure_credentials.json"
CONN_FILE="$RUN_DIR/connection-string"
ENV_FILE="$KASSETTE_RUN/azurite.env"

# Any HTTP answer means the server is up (an anonymous request gets 4xx).
ready() {
  local code
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$ENDPOINT?comp=list" || true)"
  [ "$code" != 000 ]
}

wait_ready() {
  local i
  for ((i = 0; i < $1 * 10; i++)); do
    ready && return 0
    pid_alive "$PID_FILE" || { tail -n 20 "$LOG_FILE" >&2; die "azurite exited during startup"; }
    sleep 0.1
  done
  die "azurite not ready after $1 s (see $LOG_FILE)"
}

install() {
  command -v npm >/dev/null || die "npm is required to install Azurite"
  if [ ! -x "$AZURITE_BIN" ]; then
    log "installing azurite $AZURITE_VERSION from the npm registry"
    mkdir -p "$AZURITE_DIR"
    npm install --prefix "$AZURITE_DIR" --no-audit --no-fund --no-save \
      --cache "$KASSETTE_CACHE/npm" "azurite@$AZURITE_VERSION" >&2
  fi
  log "azurite: $AZURITE_BIN"
}

write_env() {
  # The credentials in the forms kassette accepts: K8ssandra's
  # medusa_azure_credentials.json and a connection string.
  cat >"$KEY_FILE" <<EOF
{"storage_account": "$AZURE_ACCOUNT", "key": "$AZURE_KEY"}
EOF
  printf 'DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;BlobEndpoint=%s;\n' \
    "$AZURE_ACCOUNT" "$AZURE_KEY" "$ENDPOINT" >"$CONN_FILE"
  cat >"$ENV_FILE" <<EOF
export KASSETTE_TEST_AZURE_ENDPOINT=$ENDPOINT
export KASSETTE_TEST_AZURE_ACCOUNT=$AZURE_ACCOUNT
export KASSETTE_TEST_AZURE_KEY=$AZURE_KEY
export KASSETTE_TEST_AZURE_CREDENTIALS_FILE=$KEY_FILE
export KASSETTE_TEST_AZURE_CONNECTION_STRING_FILE=$CONN_FILE
EOF
}

start() {
  [ -x "$AZURITE_BIN" ] || install
  mkdir -p "$DATA_DIR"
  if pid_alive "$PID_FILE"; then
    wait_ready 60
    write_env
    log "azurite already running (pid $(cat "$PID_FILE")) at $ENDPOINT"
    return 0
  fi
  if curl -s -o /dev/null --max-time 2 "http://$AZURITE_HOST:$AZURITE_PORT/"; then
    die "port $AZURITE_PORT is already in use by another process"
  fi
  log "starting azurite at $ENDPOINT"
  # --disableProductStyleUrl: the account is the first path segment (the
  # emulator's addressing), never parsed from the host name.
  # --disableTelemetry: no calls home (offline, and test traffic is no data).
  # --silent: no access log (a benchmark would fill the disk with it).
  # The API version check stays on: kassette's x-ms-version must be one the
  # emulator knows. Data on disk (--location) so objects survive stop/start.
  AZURITE_ACCOUNTS="$AZURE_ACCOUNT:$AZURE_KEY" setsid "$AZURITE_BIN" \
    --blobHost "$AZURITE_HOST" --blobPort "$AZURITE_PORT" \
    --location "$DATA_DIR" --disableProductStyleUrl --disableTelemetry --silent \
    </dev/null >>"$LOG_FILE" 2>&1 &
  echo $! >"$PID_FILE"
  wait_ready 60
  write_env
  log "azurite ready at $ENDPOINT"
}

stop() {
  local pid i
  if pid_alive "$PID_FILE"; then
    pid="$(cat "$PID_FILE")"
    kill -s "${KASSETTE_STOP_SIGNAL:-TERM}" "$pid" 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  stop_pidfile "$PID_FILE"
  log "azurite stopped"
}

clean() {
  stop
  rm -rf "$RUN_DIR" "$ENV_FILE"
  log "azurite data removed"
}

status() {
  if pid_alive "$PID_FILE" && ready; then
    echo "azurite running (pid $(cat "$PID_FILE")) at $ENDPOINT"
  else
    echo "azurite not running"
    return 1
  fi
}

case "${1:-}" in
  install | start | stop | clean | status) "$1" ;;
  *) die "usage: $0 install|start|stop|clean|status" ;;
esac
