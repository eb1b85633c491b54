#!/usr/bin/env bash
# Local S3-compatible object store (MinIO) for kassette's tests and demo.
#
#   scripts/minio.sh install   build minio (and mc with KASSETTE_WITH_MC=1) into $KASSETTE_CACHE
#   scripts/minio.sh start     run minio on 127.0.0.1:9000 (console :9001); idempotent
#   scripts/minio.sh stop      stop it, keeping the data (tests stop/restart it)
#   scripts/minio.sh clean     stop it and delete its data
#   scripts/minio.sh status    exit 0 when it is up and ready
#
# Afterwards `source $KASSETTE_RUN/minio.env` to get KASSETTE_TEST_S3_*.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# MinIO does not tag semver releases, so the Go module proxy only knows
# pseudo-versions; pin one commit (2026-02-12, the newest at time of writing).
# It is built from source with `go install` because binary downloads
# (dl.min.io, GitHub releases) are not an allowed source here.
MINIO_VERSION="v0.0.0-20260212201848-7aac2a2c5b7c"
MC_VERSION="v0.0.0-20250313080218-cf909e1063a9"
MINIO_BIN="$KASSETTE_CACHE/minio-$MINIO_VERSION/bin/minio"
MC_BIN="$KASSETTE_CACHE/mc-$MC_VERSION/bin/mc"

MINIO_HOST=127.0.0.1
MINIO_PORT="${KASSETTE_MINIO_PORT:-9000}"
MINIO_CONSOLE_PORT="${KASSETTE_MINIO_CONSOLE_PORT:-9001}"
# Fixed, test-only credentials (the server only listens on loopback).
MINIO_USER=kassette
MINIO_PASSWORD=kassette-secret
MINIO_REGION=us-east-1
# A static KMS key (MinIO's built-in KMS) so SSE-KMS can be tested for real.
MINIO_KMS_KEY_ID=kassette-test-key
MINIO_KMS_KEY="$MINIO_KMS_KEY_ID:a2Fzc2V0dGUtdGVzdC1rbXMta2V5LTMyLWJ5dGVzISE="

RUN_DIR="$KASSETTE_RUN/minio"
DATA_DIR="$RUN_DIR/data"
PID_FILE="$RUN_DIR/minio.pid"
LOG_FILE="$RUN_DIR/minio.log"
CREDS_FILE="$RUN_DIR/credentials"
ENV_FILE="$KASSETTE_RUN/minio.env"
ENDPOINT="http://$MINIO_HOST:$MINIO_PORT"

ready() { curl -fs -o /dev/null --max-time 2 "$ENDPOINT/minio/health/ready"; }

# wait_ready SECONDS — like lib.sh's wait_for, but polls every 0.1 s (MinIO is
# ready ~1 s after launch, and restart tests care about that second) and fails
# fast with the log tail if the server process dies.
wait_ready() {
  local i
  for ((i = 0; i < $1 * 10; i++)); do
    ready && return 0
    pid_alive "$PID_FILE" || { tail -n 20 "$LOG_FILE" >&2; die "minio exited during startup"; }
    sleep 0.1
  done
  die "minio not ready after $1 s (see $LOG_FILE)"
}

install() {
  command -v go >/dev/null || die "go is required to build minio"
  # ~7 min on 2 cores with an empty module cache; cached afterwards.
  if [ ! -x "$MINIO_BIN" ]; then
    log "building minio $MINIO_VERSION (takes several minutes)"
    GOBIN="$(dirname "$MINIO_BIN")" go install "github.com/minio/minio@$MINIO_VERSION"
  fi
  # mc is only a convenience (inspection, raw-throughput baselines for the
  # benchmark): ~2 min, so only built when asked (KASSETTE_WITH_MC=1).
  if [ ! -x "$MC_BIN" ] && [ "${KASSETTE_WITH_MC:-0}" = 1 ]; then
    log "building mc $MC_VERSION"
    GOBIN="$(dirname "$MC_BIN")" go install "github.com/minio/mc@$MC_VERSION"
  fi
  log "minio: $MINIO_BIN"
}

write_env() {
  # AWS-INI credentials file, for clients that take a profile file rather than keys.
  cat >"$CREDS_FILE" <<EOF
[default]
aws_access_key_id = $MINIO_USER
aws_secret_access_key = $MINIO_PASSWORD
EOF
  cat >"$ENV_FILE" <<EOF
export KASSETTE_TEST_S3_ENDPOINT=$ENDPOINT
export KASSETTE_TEST_S3_ACCESS_KEY=$MINIO_USER
export KASSETTE_TEST_S3_SECRET_KEY=$MINIO_PASSWORD
export KASSETTE_TEST_S3_REGION=$MINIO_REGION
export KASSETTE_TEST_MINIO_BIN=$MINIO_BIN
export KASSETTE_TEST_S3_KMS_KEY_ID=$MINIO_KMS_KEY_ID
export KASSETTE_TEST_S3_CREDENTIALS_FILE=$CREDS_FILE
EOF
  # mc alias config lives under the run dir so nothing touches ~/.mc.
  if [ -x "$MC_BIN" ]; then
    echo "export KASSETTE_TEST_MC=\"$MC_BIN --config-dir $RUN_DIR/mc\"" >>"$ENV_FILE"
    "$MC_BIN" --config-dir "$RUN_DIR/mc" alias set kassette "$ENDPOINT" \
      "$MINIO_USER" "$MINIO_PASSWORD" >/dev/null 2>&1 || true
  fi
}

start() {
  [ -x "$MINIO_BIN" ] || install
  mkdir -p "$DATA_DIR"
  if pid_alive "$PID_FILE"; then
    wait_ready 60
    write_env
    log "minio already running (pid $(cat "$PID_FILE")) at $ENDPOINT"
    return 0
  fi
  # Something else on our port would make every test talk to the wrong server.
  if curl -s -o /dev/null --max-time 2 "$ENDPOINT/"; then
    die "port $MINIO_PORT is already in use by another process"
  fi
  log "starting minio at $ENDPOINT"
  # MINIO_UPDATE=off: no update checks (offline, and the binary is a source
  # build). MINIO_CI_CD: caps the erasure buffer pool at 256 MiB instead of
  # up to half of RAM. MINIO_PROMETHEUS_AUTH_TYPE=public: the benchmark reads
  # request counts from /minio/metrics/v3 (loopback, test-only server).
  # setsid: the server must outlive this script and not get the caller's signals.
  MINIO_ROOT_USER="$MINIO_USER" MINIO_ROOT_PASSWORD="$MINIO_PASSWORD" \
    MINIO_SITE_REGION="$MINIO_REGION" MINIO_UPDATE=off MINIO_CI_CD=1 \
    MINIO_PROMETHEUS_AUTH_TYPE=public MINIO_KMS_SECRET_KEY="$MINIO_KMS_KEY" \
    setsid "$MINIO_BIN" server --quiet \
      --address "$MINIO_HOST:$MINIO_PORT" \
      --console-address "$MINIO_HOST:$MINIO_CONSOLE_PORT" \
      "$DATA_DIR" </dev/null >>"$LOG_FILE" 2>&1 &
  echo $! >"$PID_FILE"
  wait_ready 60
  write_env
  log "minio ready at $ENDPOINT (console http://$MINIO_HOST:$MINIO_CONSOLE_PORT)"
}

stop() {
  # Wait for the process to exit (polling every 0.1 s; MinIO takes ~2 s after
  # SIGTERM) so a following `start` can rebind the port straight away.
  # KASSETTE_STOP_SIGNAL=KILL simulates a crash and returns almost instantly.
  local pid i
  if pid_alive "$PID_FILE"; then
    pid="$(cat "$PID_FILE")"
    kill -s "${KASSETTE_STOP_SIGNAL:-TERM}" "$pid" 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  stop_pidfile "$PID_FILE" # escalates to KILL if still alive; removes the pid file
  # minio.env is kept: the address and keys stay valid across a restart.
  log "minio stopped"
}

clean() {
  stop
  rm -rf "$RUN_DIR" "$ENV_FILE"
  log "minio data removed"
}

status() {
  if pid_alive "$PID_FILE" && ready; then
    echo "minio running (pid $(cat "$PID_FILE")) at $ENDPOINT"
  else
    echo "minio not running"
    return 1
  fi
}

case "${1:-}" in
  install | start | stop | clean | status) "$1" ;;
  *) die "usage: $0 install|start|stop|clean|status" ;;
esac
