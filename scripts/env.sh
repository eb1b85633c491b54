#!/usr/bin/env bash
# The whole local test environment in one command:
#   scripts/env.sh up      install what is missing, start everything (idempotent)
#   scripts/env.sh down    stop every service (data kept)
#   scripts/env.sh clean   stop and delete all runtime state
#   scripts/env.sh status  one line per service
# Components: a 3-node Cassandra cluster, MinIO (S3), fake-gcs-server (GCS),
# Azurite (Azure Blob Storage),
# etcd + kube-apiserver (+ helm, kubectl). Each has its own script beside this.
# Set KASSETTE_CASSANDRA_NODES=1 for a one-node cluster.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

here="$KASSETTE_REPO/scripts"
components=(cassandra minio gcs azurite k8s)
nodes="${KASSETTE_CASSANDRA_NODES:-3}"

# run_all ACTION — run "<component>.sh ACTION" for every component at once,
# each logging to .run/logs/<component>-ACTION.log; fail if any failed.
# Installs overlap network-bound downloads with CPU-bound builds, and starts
# overlap Cassandra's JVM warm-up with the other servers.
run_all() {
  local action="$1" pids=() failed=() c i
  mkdir -p "$KASSETTE_RUN/logs"
  for c in "${components[@]}"; do
    local args=("$action")
    [ "$c" = cassandra ] && [ "$action" = start ] && args+=("$nodes")
    "$here/$c.sh" "${args[@]}" >"$KASSETTE_RUN/logs/$c-$action.log" 2>&1 &
    pids+=($!)
  done
  for i in "${!components[@]}"; do
    if ! wait "${pids[$i]}"; then failed+=("${components[$i]}"); fi
  done
  if [ ${#failed[@]} -gt 0 ]; then
    for c in "${failed[@]}"; do
      log "$c $action failed; last lines of $KASSETTE_RUN/logs/$c-$action.log:"
      tail -n 30 "$KASSETTE_RUN/logs/$c-$action.log" >&2
    done
    die "$action failed for: ${failed[*]}"
  fi
}

case "${1:-}" in
  up)
    start=$SECONDS
    log "installing (cached in $KASSETTE_CACHE)…"
    run_all install
    log "installed in $((SECONDS - start))s; starting…"
    run_all start
    log "environment up in $((SECONDS - start))s; settings in $KASSETTE_RUN/*.env"
    ;;
  down)
    for c in "${components[@]}"; do "$here/$c.sh" stop || true; done
    ;;
  clean)
    for c in "${components[@]}"; do "$here/$c.sh" clean || true; done
    ;;
  status)
    for c in "${components[@]}"; do
      if "$here/$c.sh" status >/dev/null 2>&1; then echo "$c: up"; else echo "$c: down"; fi
    done
    ;;
  *)
    echo "usage: $0 up|down|clean|status" >&2
    exit 2
    ;;
esac
