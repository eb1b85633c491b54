#!/usr/bin/env bash
# Section "passes" of `make bench`: kassette's backup and restore passes on
# the local 3-node cluster and MinIO, timed end to end (process start to
# exit), with the bytes each moved and the coordinator's peak RSS.
#
#   full backup      — a fresh bucket, KASSETTE_BENCH_MB of incompressible
#                      rows (replication 3, so every node holds all of it)
#   unchanged backup — the same data again: nothing to read or send
#   differential     — after 10 % more rows
#   restore          — replace mode, the differential backup, every row
#                      staged, verified, truncated and imported
#
# Writes $KASSETTE_RUN/bench/passes.md.
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
trap 'scripts/agents.sh stop "$root"' EXIT
KASSETTE_NODES="$(scripts/agents.sh start "$bin" 7310 "$root")"
export KASSETTE_NODES

cql="127.0.0.1:9042,127.0.0.2:9042,127.0.0.3:9042"
ks="bench_$(date +%s)"
export KASSETTE_KEYSPACES="$ks"
log "loading $MB MiB ($ROWS rows of $PAYLOAD bytes) into $ks"
"$rows" bulk "$cql" "$ks" 0 "$ROWS" "$PAYLOAD"

table="$out/passes.md"
{
  echo "| pass | wall time | data | moved | rate | coordinator peak RSS |"
  echo "|---|---|---|---|---|---|"
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
  rss=$(( $(cat "$root/rss") / 1024 ))
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
  printf '| %s | %.1f s | %s | %s | %s MiB/s | %s MiB |\n' "$name" "$secs" "$data" "$moved" "$rate" "$rss" >>"$table"
}

timed "full backup" backup KASSETTE_BACKUP_NAME=full
timed "unchanged backup" backup KASSETTE_BACKUP_NAME=same
"$rows" bulk "$cql" "$ks" "$ROWS" $((ROWS + ROWS / 10)) "$PAYLOAD" >/dev/null
timed "differential backup (+10 %)" backup KASSETTE_BACKUP_NAME=diff
timed "restore (replace)" restore KASSETTE_BACKUP_NAME=diff

log "passes ($MB MiB × replication 3, 3 nodes, MinIO, 2 cores):"
cat "$table"
