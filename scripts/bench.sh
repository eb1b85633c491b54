#!/usr/bin/env bash
# `make bench`: side-by-side benchmarks, written as Markdown tables to
# $KASSETTE_RUN/bench/ and printed.
#
# Section "storage": the same ≥ 2 GiB of SSTable-like files (many small, some
# medium, a few large; random, so incompressible like compressed SSTables)
# uploaded to and downloaded from the local MinIO, then Azurite
# (KASSETTE_BENCH_AZURE=0 skips it), by
#   - kassette's storage layer (CRC32C + BLAKE3 in the read pass, Azure's
#     per-block MD5, shared limits, retries, verified temp-file downloads), and
#   - a raw baseline of the same client: plain aws-sdk-s3 PutObject /
#     multipart upload and GetObject to file; for Azure, signed reqwest Put
#     Blob / Put Block + Put Block List and Get Blob to file. Same part size
#     (8 MiB) and concurrency, no checks.
# Reported per run: throughput, peak RSS (GNU time), and storage requests
# (MinIO's own request counter; Azurite has none). Each pair runs ROUNDS (5)
# times, alternating; the tables ($KASSETTE_RUN/bench/{s3,azure}.md) show medians.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$KASSETTE_REPO"

ROUNDS="${KASSETTE_BENCH_ROUNDS:-5}"
CONCURRENCY="${KASSETTE_CONCURRENCY:-8}"
out_dir="$KASSETTE_RUN/bench"
data="$out_dir/data"
mkdir -p "$out_dir"

ensure_apt time
scripts/minio.sh install >/dev/null
scripts/minio.sh start >/dev/null
# shellcheck disable=SC1091
source "$KASSETTE_RUN/minio.env"

log "building the benchmark driver (release)"
cargo build --release --locked --example storage_bench 2>&1 | tail -n 1
bin="${CARGO_TARGET_DIR:-$KASSETTE_REPO/target}/release/examples/storage_bench"

# make_data — 512 × 256 KiB, 64 × 4 MiB, 16 × 24 MiB, 3 × 512 MiB ≈ 2.27 GiB.
make_data() {
  [ -f "$data/.complete" ] && return 0
  log "generating benchmark data in $data"
  rm -rf "$data" && mkdir -p "$data"
  local spec count size i
  for spec in 512:256K 64:4M 16:24M 3:512M; do
    count="${spec%%:*}"; size="${spec##*:}"
    for ((i = 0; i < count; i++)); do
      head -c "$size" /dev/urandom >"$data/nb-$size-$i-big-Data.db"
    done
  done
  touch "$data/.complete"
}

# requests — storage requests served so far: MinIO's own counter (v3
# metrics are live; v2 lag ~10 s). Azurite counts nothing: "-".
requests() {
  if [ "$store" = s3 ]; then
    curl -fs "$KASSETTE_TEST_S3_ENDPOINT/minio/metrics/v3/api/requests" |
      awk '/^minio_api_requests_total/ {s += $2} END {printf "%d", s}'
  else
    echo 0
  fi
}

# run ENGINE OP ROUND — one measured run, appended to $results.
run() {
  local engine="$1" op="$2" round="$3" prefix="$1-r$3" dir digests before after rss json
  digests="$out_dir/$store-$prefix.digests.json"
  if [ "$op" = upload ]; then dir="$data"; else dir="$out_dir/restore-$prefix"; rm -rf "$dir"; fi
  sync
  before="$(requests)"
  /usr/bin/time -f "%M" -o "$out_dir/rss" "$bin" "$engine" "$op" "$dir" "$prefix" "$digests" >"$out_dir/run.json"
  after="$(requests)"
  rss="$(tail -n 1 "$out_dir/rss")"
  json="$(cat "$out_dir/run.json")"
  python3 - "$engine" "$op" "$json" "$rss" "$((after - before))" >>"$results" <<'PY'
import json, sys
engine, op, run, rss_kib, requests = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
print("\t".join(map(str, [engine, op, run["files"], run["bytes"], run["seconds"], rss_kib, requests])))
PY
  if [ "$op" = download ]; then
    rm -rf "$dir"
    "$bin" kassette delete - "$prefix" >/dev/null # keep the store from filling up
  fi
  log "$store $engine $op round $round: $(cut -f5 <<<"$(tail -n 1 "$results")")s"
}

# section TITLE — ROUNDS alternating raw / kassette runs against the store
# the KASSETTE_STORAGE_* variables name; the table of medians.
section() {
  local title="$1" r
  results="$out_dir/$store-runs.tsv"
  : >"$results"
  for ((r = 1; r <= ROUNDS; r++)); do
    run raw upload "$r"; run kassette upload "$r"
    run raw download "$r"; run kassette download "$r"
  done
  table="$out_dir/$store.md"
  python3 - "$results" "$CONCURRENCY" "$ROUNDS" "$title" "$store" >"$table" <<'PY'
import sys, statistics
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
concurrency, rounds, title, store = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
agg = {}
for engine, op, files, nbytes, secs, rss, reqs in rows:
    a = agg.setdefault((engine, op), {"files": int(files), "bytes": int(nbytes), "secs": [], "rss": [], "reqs": []})
    a["secs"].append(float(secs)); a["rss"].append(int(rss)); a["reqs"].append(int(reqs))
print(f"### storage: {title}, concurrency {concurrency}, median of {rounds} rounds\n")
print("| engine | operation | files | GiB | seconds | MiB/s | peak RSS (MiB) | storage requests | kassette / raw |")
print("|---|---|---|---|---|---|---|---|---|")
for op in ("upload", "download"):
    raw = agg.get(("raw", op))
    for engine in ("raw", "kassette"):
        a = agg.get((engine, op))
        if not a: continue
        secs = statistics.median(a["secs"]); rate = a["bytes"] / secs / 2**20
        ratio = ""
        if engine == "kassette" and raw:
            raw_rate = raw["bytes"] / statistics.median(raw["secs"]) / 2**20
            ratio = f"{rate / raw_rate:.2f}"
        reqs = str(round(statistics.mean(a["reqs"]))) if store == "s3" else "-"
        print(f"| {engine} | {op} | {a['files']} | {a['bytes']/2**30:.2f} | {secs:.1f} | {rate:.0f} | "
              f"{max(a['rss'])/1024:.0f} | {reqs} | {ratio} |")
PY
  cat "$table"
  log "table written to $table"
}

make_data

# S3: MinIO; raw = plain aws-sdk-s3.
store=s3
bucket="kassette-bench-$(date +%s)"
curl -fs --aws-sigv4 "aws:amz:us-east-1:s3" \
  --user "$KASSETTE_TEST_S3_ACCESS_KEY:$KASSETTE_TEST_S3_SECRET_KEY" \
  -X PUT "$KASSETTE_TEST_S3_ENDPOINT/$bucket" >/dev/null || die "cannot create bucket $bucket"
(
  export KASSETTE_STORAGE_PROVIDER=s3 KASSETTE_STORAGE_BUCKET="$bucket" \
    KASSETTE_STORAGE_ENDPOINT="$KASSETTE_TEST_S3_ENDPOINT" KASSETTE_STORAGE_ALLOW_HTTP=true \
    KASSETTE_STORAGE_CREDENTIALS_FILE="$KASSETTE_TEST_S3_CREDENTIALS_FILE" \
    KASSETTE_CONCURRENCY="$CONCURRENCY" KASSETTE_LOG=warn
  section "S3 (MinIO on loopback)"
)

# Azure: Azurite; raw = single signed reqwest requests (Put Blob, Put Block
# + Put Block List, Get Blob), without kassette's MD5, BLAKE3, retries or
# limits.
if [ "${KASSETTE_BENCH_AZURE:-1}" = 1 ]; then
  store=azure
  scripts/azurite.sh install >/dev/null
  scripts/azurite.sh start >/dev/null
  # shellcheck disable=SC1091
  source "$KASSETTE_RUN/azurite.env"
  (
    export KASSETTE_STORAGE_PROVIDER=azure KASSETTE_STORAGE_BUCKET="kassette-bench-$(date +%s)" \
      KASSETTE_STORAGE_ENDPOINT="$KASSETTE_TEST_AZURE_ENDPOINT" KASSETTE_STORAGE_ALLOW_HTTP=true \
      KASSETTE_STORAGE_CREDENTIALS_FILE="$KASSETTE_TEST_AZURE_CREDENTIALS_FILE" \
      KASSETTE_CONCURRENCY="$CONCURRENCY" KASSETTE_LOG=warn
    "$bin" kassette create - - >/dev/null || die "cannot create the Azure container"
    section "Azure Blob Storage (Azurite on loopback)"
  )
fi

# Section "passes": the backup and restore passes end to end.
if [ "${KASSETTE_BENCH_PASSES:-1}" = 1 ]; then
  scripts/bench-passes.sh
fi
