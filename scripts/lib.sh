#!/usr/bin/env bash
# Shared helpers for the test-environment scripts (sourced, never run).
#
# Conventions every component script follows:
#   - tool downloads and builds are cached in $KASSETTE_CACHE (outside the
#     clone, so CI re-runs and fresh clones on the same machine reuse them);
#   - runtime state (data dirs, logs, pid files, generated configs) lives in
#     $KASSETTE_RUN (git-ignored `.run/` in the repository by default);
#   - each component writes `$KASSETTE_RUN/<component>.env` with the
#     `export NAME=value` lines that tests and the demo source to find it;
#   - every server listens on loopback (127.0.0.0/8) only.
set -euo pipefail

KASSETTE_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export KASSETTE_REPO
export KASSETTE_CACHE="${KASSETTE_CACHE:-$HOME/.cache/kassette}"
export KASSETTE_RUN="${KASSETTE_RUN:-$KASSETTE_REPO/.run}"
mkdir -p "$KASSETTE_CACHE" "$KASSETTE_RUN"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ensure_apt PKG... — install Debian packages that are missing (idempotent).
ensure_apt() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt: installing ${missing[*]}"
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  if [ ! -f "$KASSETTE_CACHE/.apt-updated" ] || [ -n "$(find "$KASSETTE_CACHE/.apt-updated" -mmin +1440 2>/dev/null)" ]; then
    $sudo apt-get update -qq && touch "$KASSETTE_CACHE/.apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# pid_alive FILE — true when the pid recorded in FILE is a running process.
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# wait_for DESCRIPTION SECONDS CMD... — poll CMD once a second until it succeeds.
wait_for() {
  local what="$1" secs="$2"; shift 2
  local i
  for ((i = 0; i < secs; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  die "$what not ready after ${secs}s"
}

# stop_pidfile FILE — TERM the process, then KILL it after 20 s.
stop_pidfile() {
  local f="$1" pid i
  pid_alive "$f" || { rm -f "$f"; return 0; }
  pid="$(cat "$f")"
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 20; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$f"
}
