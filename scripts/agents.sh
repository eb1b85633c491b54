#!/usr/bin/env bash
# One `kassette agent` per local Cassandra node, as the sidecars of a
# cass-operator datacenter would run: bound to the node's own loopback
# address, reading its data directories, driving it through the node's
# Jolokia agent (one kept HTTP connection; scripts/cassandra.sh starts every
# node with it) or, where no Jolokia answers as that node, nodetool (a JVM
# per call).
#
#   scripts/agents.sh start BIN PORT STATE_ROOT   start (storage settings and
#                                                 KASSETTE_AGENT_TOKEN_FILE come
#                                                 from the environment)
#   scripts/agents.sh stop STATE_ROOT             stop them
#
# KASSETTE_CASSANDRA_CONTROL=nodetool forces nodetool (e.g. to measure it);
# the control each agent uses is written to STATE_ROOT/agent<n>.control.
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
    local control=(KASSETTE_CASSANDRA_CONTROL=nodetool "KASSETTE_NODETOOL=$KASSETTE_REPO/scripts/nodetool -n $n")
    local url
    if url="$(jolokia_of "$n")"; then
      control=(KASSETTE_CASSANDRA_CONTROL=jolokia "KASSETTE_JOLOKIA_URL=$url")
    fi
    echo "${control[0]#*=}" >"$root/agent$n.control"
    env "${control[@]}" \
    KASSETTE_AGENT_LISTEN="127.0.0.$n:$port" \
    KASSETTE_DATA_DIRS="${!data_var//:/,}" \
    KASSETTE_AGENT_STATE_DIR="$root/agent$n" \
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

# jolokia_of N — prints node N's Jolokia URL (KASSETTE_TEST_JOLOKIA_URL_<n>,
# else the node's address on port 8778) when it answers as node N (its host
# id maps to 127.0.0.N) and KASSETTE_CASSANDRA_CONTROL does not ask for
# nodetool; fails otherwise.
jolokia_of() {
  local n="$1" url_var="KASSETTE_TEST_JOLOKIA_URL_$1" url answer
  [ "${KASSETTE_CASSANDRA_CONTROL:-jolokia}" = jolokia ] || return 1
  url="${!url_var:-http://127.0.0.$n:8778/jolokia}"
  answer="$(curl -fs -m 5 -X POST "$url" -d '[
    {"type":"read","mbean":"org.apache.cassandra.db:type=StorageService","attribute":"LocalHostId"},
    {"type":"read","mbean":"org.apache.cassandra.db:type=StorageService","attribute":"HostIdToEndpointWithPort"}]')" ||
    return 1
  [ "$(jq -r '.[1].value[.[0].value] // empty' <<<"$answer")" = "127.0.0.$n:7000" ] || return 1
  echo "$url"
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
