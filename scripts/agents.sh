#!/usr/bin/env bash
# One `kassette agent` per local Cassandra node, as the sidecars of a
# cass-operator datacenter would run: bound to the node's own loopback
# address, reading its data directories, driving it with nodetool.
#
#   scripts/agents.sh start BIN PORT STATE_ROOT   start (storage settings and
#                                                 KASSETTE_AGENT_TOKEN_FILE come
#                                                 from the environment)
#   scripts/agents.sh stop STATE_ROOT             stop them
#
# Prints the KASSETTE_NODES value for the coordinator on start.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

start() {
  local bin="$1" port="$2" root="$3" n data_var nodes=""
  # shellcheck disable=SC1091
  source "$KASSETTE_RUN/cassandra.env"
  mkdir -p "$root"
  stop "$root"
  for n in $(seq "$KASSETTE_TEST_CASSANDRA_NODE_COUNT"); do
    data_var="KASSETTE_TEST_CASSANDRA_DATA_$n"
    KASSETTE_AGENT_LISTEN="127.0.0.$n:$port" \
    KASSETTE_DATA_DIRS="${!data_var//:/,}" \
    KASSETTE_AGENT_STATE_DIR="$root/agent$n" \
    KASSETTE_NODETOOL="$KASSETTE_REPO/scripts/nodetool -n $n" \
      setsid "$bin" agent >"$root/agent$n.log" 2>&1 &
    echo "$!" >"$root/agent$n.pid"
    nodes="${nodes:+$nodes,}127.0.0.$n:$port"
  done
  for n in $(seq "$KASSETTE_TEST_CASSANDRA_NODE_COUNT"); do
    for _ in $(seq 100); do
      curl -fs -o /dev/null -H "Authorization: Bearer $(cat "$KASSETTE_AGENT_TOKEN_FILE")" \
        "http://127.0.0.$n:$port/v1/node" && break
      pid_alive "$root/agent$n.pid" || { tail -n 5 "$root/agent$n.log" >&2; die "agent $n exited"; }
      sleep 0.1
    done
  done
  echo "$nodes"
}

stop() {
  local root="$1" pidfile
  for pidfile in "$root"/agent*.pid; do
    [ -e "$pidfile" ] || continue
    pid_alive "$pidfile" && kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  done
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) die "usage: $0 start BIN PORT STATE_ROOT | stop STATE_ROOT" ;;
esac
