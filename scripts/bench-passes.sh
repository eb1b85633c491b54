#!/usr/bin/env bash
# Section "passes" of `make bench`: kassette's backup and restore passes
# and Medusa's (the reference) on the same local 3-node cluster and MinIO,
# timed end to end (process start to exit), with what each moved and its
# peak memory.
#
#   full backup      — KASSETTE_BENCH_MB of incompressible rows added
#                      (replication 3, so every node holds all of it); both
#                      tools back up every keyspace of the cluster
#   unchanged backup — the same data again
#   differential     — after 10 % more rows
#   restore          — kassette: replace restore of the bench keyspace
#                      (download, verify, truncate, import); Medusa: `download`
#                      of the same keyspace's files (its restore-node stops
#                      Cassandra, so only its download half is comparable)
#
# Medusa runs one `backup-node` per node, in parallel, as its sidecars do,
# on nodes 1 and 2 only: node 3 has two data directories, and Medusa stops
# with "Medusa only supports one data directory". So compare rates (MiB/s)
# rather than wall times; its peak RSS is the sum of its processes. kassette's is the
# coordinator's plus the three agents' high-water marks.
# Writes $KASSETTE_RUN/bench/passes.md. Its buckets stay in MinIO (a few
# GiB a run); `scripts/minio.sh clean` reclaims them.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$KASSETTE_REPO"

MB="${KASSETTE_BENCH_MB:-300}"
PAYLOAD=$((100 * 1024))
ROWS=$((MB * 1024 * 1024 / PAYLOAD))
out="$KASSETTE_RUN/bench"
root="$out/passes"
mkdir -p "$root"

ensure_apt time
cargo build --release --locked --bin kassette --example demo_rows 2>&1 | tail -n 1
target="${CARGO_TARGET_DIR:-$KASSETTE_REPO/target}/release"
bin="$target/kassette"
rows="$target/examples/demo_rows"
scripts/cassandra.sh start 3 >/dev/null
scripts/minio.sh start >/dev/null
# shellcheck disable=SC1091
source "$KASSETTE_RUN/minio.env"
# shellcheck disable=SC1091
source "$KASSETTE_RUN/cassandra.env"

bucket="kassette-bench-$(date +%s)"
curl -fsS -o /dev/null --aws-sigv4 "aws:amz:$KASSETTE_TEST_S3_REGION:s3" \
  --user "$KASSETTE_TEST_S3_ACCESS_KEY:$KASSETTE_TEST_S3_SECRET_KEY" \
  -X PUT "$KASSETTE_TEST_S3_ENDPOINT/$bucket"
token="$root/token"
head -c 32 /dev/urandom | base64 >"$token"
export KASSETTE_STORAGE_PROVIDER=s3 KASSETTE_STORAGE_BUCKET="$bucket" \
  KASSETTE_STORAGE_ENDPOINT="$KASSETTE_TEST_S3_ENDPOINT" \
  KASSETTE_STORAGE_REGION="$KASSETTE_TEST_S3_REGION" KASSETTE_STORAGE_ALLOW_HTTP=true \
  KASSETTE_STORAGE_CREDENTIALS_FILE="$KASSETTE_TEST_S3_CREDENTIALS_FILE" \
  KASSETTE_CLUSTER="$KASSETTE_TEST_CASSANDRA_CLUSTER" KASSETTE_DATACENTER="$KASSETTE_TEST_CASSANDRA_DC" \
  KASSETTE_AGENT_TOKEN_FILE="$token" KASSETTE_LOG=warn
# On exit: stop the agents, drop the bench keyspace and clear the snapshots
# Cassandra takes when dropping and truncating (gigabytes per run).
cleanup() {
  scripts/agents.sh stop "$root"
  [ -n "${ks:-}" ] && "$rows" drop "$cql" "$ks" >/dev/null 2>&1 || true
  for n in 1 2 3; do scripts/nodetool -n "$n" clearsnapshot --all >/dev/null 2>&1 || true; done
}
trap cleanup EXIT
# Fresh agents: no digest cache, so the full backup hashes everything.
rm -rf "$root"/agent*
KASSETTE_NODES="$(scripts/agents.sh start "$bin" 7310 "$root")"
export KASSETTE_NODES
scripts/medusa.sh install
medusa="$(scripts/medusa.sh bin)"
medusa_bucket="$bucket-medusa"
curl -fsS -o /dev/null --aws-sigv4 "aws:amz:$KASSETTE_TEST_S3_REGION:s3" \
  --user "$KASSETTE_TEST_S3_ACCESS_KEY:$KASSETTE_TEST_S3_SECRET_KEY" \
  -X PUT "$KASSETTE_TEST_S3_ENDPOINT/$medusa_bucket"
MEDUSA_NODES=(1 2)
for n in "${MEDUSA_NODES[@]}"; do scripts/medusa.sh config "$n" "$medusa_bucket" "$root"; done

cql="127.0.0.1:9042,127.0.0.2:9042,127.0.0.3:9042"
ks="bench_$(date +%s)"
log "loading $MB MiB ($ROWS rows of $PAYLOAD bytes) into $ks"
"$rows" bulk "$cql" "$ks" 0 "$ROWS" "$PAYLOAD"

table="$out/passes.md"
{
  echo "| pass | tool | wall time | data | moved | rate | peak RSS |"
  echo "|---|---|---|---|---|---|---|"
} >"$table"

# timed NAME ROLE [VAR=VALUE…] — runs kassette ROLE, appends a table row.
timed() {
  local name="$1" role="$2"; shift 2
  local start end secs summary rss
  start=$(date +%s.%N)
  env "$@" /usr/bin/time -f "%M" -o "$root/rss" "$bin" "$role" >"$root/out" 2>"$root/err" \
    || { cat "$root/err" >&2; die "$name failed"; }
  end=$(date +%s.%N)
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
  summary="$(cat "$root/out")"
  rss=$(( ($(cat "$root/rss") + $(agents_hwm)) / 1024 ))
  log "$name: ${secs}s — $summary"
  local data moved
  if [ "$role" = backup ]; then
    data=$(sed -n 's/.* files, \([^(]*\) (uploaded.*/\1/p' <<<"$summary")
    moved=$(sed -n 's/.*(uploaded [0-9]* files, \([^;]*\);.*/\1 sent/p' <<<"$summary")
  else
    data=$(sed -n 's/.* files, \(.*\) imported (.*/\1/p' <<<"$summary")
    moved=$(sed -n 's/.* imported (\(.*\) downloaded now).*/\1 downloaded/p' <<<"$summary")
  fi
  local bytes rate
  bytes=$(numfmt --from=iec-i --suffix=B "${data// /}" 2>/dev/null | tr -d B || echo 0)
  rate=$(awk -v b="$bytes" -v s="$secs" 'BEGIN { printf "%.1f", b / 1048576 / s }')
  printf '| %s | kassette | %.1f s | %s | %s | %s MiB/s | %s MiB |\n' "$name" "$secs" "$data" "$moved" "$rate" "$rss" >>"$table"
}

# agents_hwm — the three agents' peak RSS so far, KiB, summed.
agents_hwm() {
  local n total=0 kb
  for n in 1 2 3; do
    kb=$(awk '/VmHWM/ { print $2 }' "/proc/$(cat "$root/agent$n.pid")/status" 2>/dev/null || echo 0)
    total=$((total + kb))
  done
  echo "$total"
}

# medusa_timed NAME ARGS… — `medusa backup-node ARGS` on the three nodes at
# once; appends a table row with the summed sizes and peak RSS.
medusa_timed() {
  local name="$1"; shift
  local start end secs n rss=0 mb=0 copied=0 pids=()
  start=$(date +%s.%N)
  for n in "${MEDUSA_NODES[@]}"; do
    /usr/bin/time -f "%M" -o "$root/medusa-$n.rss" \
      "$medusa" --config-file "$root/medusa-$n.ini" backup-node "$@" >"$root/medusa-$n.log" 2>&1 &
    pids+=("$!")
  done
  for n in "${!pids[@]}"; do wait "${pids[$n]}" || { tail -n 20 "$root/medusa-$((n + 1)).log" >&2; die "medusa $name failed on node $((n + 1))"; }; done
  end=$(date +%s.%N)
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
  for n in "${MEDUSA_NODES[@]}"; do
    rss=$((rss + $(cat "$root/medusa-$n.rss")))
    # "- 3680 files, 1.06 GB": Medusa's units are binary (1024).
    mb=$(awk -v t="$mb" '/INFO: - [0-9]+ files, [0-9.]+ [KMGT]?B$/ {
        f = ($NF == "KB") ? 1 / 1024 : ($NF == "MB") ? 1 : ($NF == "GB") ? 1024 : ($NF == "TB") ? 1048576 : 1 / 1048576
        v = $(NF - 1) * f
      } END { printf "%.2f", t + v }' "$root/medusa-$n.log")
    copied=$((copied + $(sed -n 's/.* \([0-9]*\) files copied from host.*/\1/p' "$root/medusa-$n.log" | tail -n 1)))
  done
  local mib rate
  mib="$mb"
  rate=$(awk -v m="$mib" -v s="$secs" 'BEGIN { printf "%.1f", m / s }')
  log "medusa $name: ${secs}s, $mib MiB, $copied files uploaded"
  printf '| %s | Medusa %s (nodes 1–2) | %.1f s | %s MiB | %s files sent | %s MiB/s | %s MiB |\n' \
    "$name" "$MEDUSA_VERSION" "$secs" "$mib" "$copied" "$rate" "$((rss / 1024))" >>"$table"
}
MEDUSA_VERSION="$("$medusa" --version 2>/dev/null | tail -n 1)"

timed "full backup" backup KASSETTE_BACKUP_NAME=full
medusa_timed "full backup" --backup-name full --mode differential
timed "unchanged backup" backup KASSETTE_BACKUP_NAME=same
medusa_timed "unchanged backup" --backup-name same --mode differential
"$rows" bulk "$cql" "$ks" "$ROWS" $((ROWS + ROWS / 10)) "$PAYLOAD" >/dev/null
timed "differential backup (+10 %)" backup KASSETTE_BACKUP_NAME=diff
medusa_timed "differential backup (+10 %)" --backup-name diff --mode differential
timed "restore (replace)" restore KASSETTE_BACKUP_NAME=diff KASSETTE_KEYSPACES="$ks"
medusa_download() {
  local start end secs n pids=() bytes rate
  start=$(date +%s.%N)
  for n in "${MEDUSA_NODES[@]}"; do
    rm -rf "$root/medusa-download-$n" && mkdir -p "$root/medusa-download-$n"
    "$medusa" --config-file "$root/medusa-$n.ini" download --backup-name diff \
      --download-destination "$root/medusa-download-$n" --keyspace "$ks" \
      --ignore-system-keyspaces >"$root/medusa-download-$n.log" 2>&1 &
    pids+=("$!")
  done
  for n in "${!pids[@]}"; do wait "${pids[$n]}" || { tail -n 20 "$root/medusa-download-$((n + 1)).log" >&2; die "medusa download failed"; }; done
  end=$(date +%s.%N)
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
  bytes=$(du -sb "$root"/medusa-download-* | awk '{ t += $1 } END { print t }')
  rate=$(awk -v b="$bytes" -v s="$secs" 'BEGIN { printf "%.1f", b / 1048576 / s }')
  printf '| restore: download only | Medusa %s (nodes 1–2) | %.1f s | %s | downloaded | %s MiB/s | — |\n' \
    "$MEDUSA_VERSION" "$secs" "$(numfmt --to=iec-i --suffix=B "$bytes")" "$rate" >>"$table"
  rm -rf "$root"/medusa-download-*
}
medusa_download

log "passes ($MB MiB × replication 3, 3 nodes, MinIO, 2 cores):"
cat "$table"
