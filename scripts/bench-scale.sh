#!/usr/bin/env bash
# Section "scale" of `make bench` (issue 12, targets 1, 3 and 4): what one
# node's backup costs as the catalog and the node's file count grow. No
# Cassandra: examples/scale_bench.rs fabricates a node's data directory,
# snapshots it as Cassandra does (hard links plus a fresh manifest.json and
# schema.cql per table) and runs the real agent's upload job on it through
# a store wrapper that counts every request; the coordinator's part of the
# pass for that node (latest backup, presence check, node manifest, commit,
# index) is counted apart.
#
#   read once  — a full backup of a fresh node: bytes the process read
#                (/proc/self/io rchar, every read syscall) and the agent's
#                read_bytes, against the bytes of the new files
#   catalog    — an unchanged node's backup with 0, ~20,000 and ≥200,000
#                objects of other nodes and older backups in the catalog:
#                storage requests and peak RSS
#   many files — a node of 10,000 SSTable files (20 tables × 63 generations
#                × 8 components): full, then unchanged; time and requests
#
# The store is a local directory on tmpfs (/dev/shm when present), so that
# 200,000 objects cost neither disk nor minutes; requests are counted at
# kassette's storage interface, which is the same for every backend.
# KASSETTE_BENCH_QUICK=1 runs smaller catalogs (0, 2,000, 20,000).
# Writes $KASSETTE_RUN/bench/scale.md and scale.json.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$KASSETTE_REPO"

profile="${KASSETTE_BENCH_PROFILE:-release}"
if [ "${KASSETTE_BENCH_QUICK:-0}" = 1 ]; then
  sizes=(0 2000 20000)
else
  sizes=(0 20000 200000)
fi
out="$KASSETTE_RUN/bench"
mkdir -p "$out"
flag=(--release)
[ "$profile" = debug ] && flag=()
cargo build "${flag[@]}" --locked --example scale_bench 2>&1 | tail -n 1
bench="${CARGO_TARGET_DIR:-$KASSETTE_REPO/target}/$profile/examples/scale_bench"

base=/dev/shm
[ -d "$base" ] && [ -w "$base" ] || base="$out"
work="$(mktemp -d "$base/kassette-scale.XXXXXX")"
trap 'rm -rf "$work"' EXIT
export KASSETTE_STORAGE_PROVIDER=local KASSETTE_LOG=warn
json="$out/scale.json"
results="$work/results.jsonl"
: >"$results"

# run SECTION CASE CMD... — one JSON line tagged with its section and case.
run() {
  local section="$1" case="$2"
  shift 2
  "$bench" "$@" | jq -c --arg s "$section" --arg c "$case" '. + {section: $s, case: $c}' >>"$results"
}

# Read once: 32 tables × 2 generations, 1 MiB Data.db each (~66 MiB).
log "scale: read once"
export KASSETTE_STORAGE_PATH="$work/store-read"
mkdir -p "$KASSETTE_STORAGE_PATH"
"$bench" node "$work/node-read" 32 2 1048576
run read-once full backup "$work/node-read" "$work/state-read" full-1
rm -rf "$work/store-read" "$work/node-read"

# Catalog size: the same small node (4 tables × 25 generations × 8
# components), full backup, then the unchanged backup that is measured.
for size in "${sizes[@]}"; do
  log "scale: catalog of $size other objects"
  export KASSETTE_STORAGE_PATH="$work/store-$size"
  mkdir -p "$KASSETTE_STORAGE_PATH"
  "$bench" populate "$size" >/dev/null
  "$bench" node "$work/node-$size" 4 25 4096
  "$bench" backup "$work/node-$size" "$work/state-$size" full-1 >/dev/null
  run catalog "$size" backup "$work/node-$size" "$work/state-$size" unchanged-2
  rm -rf "$work/store-$size" "$work/node-$size" "$work/state-$size"
done

# Many files: 20 tables × 63 generations × 8 components = 10,080 SSTable
# files (+ 40 snapshot metadata files).
log "scale: 10,000 files"
export KASSETTE_STORAGE_PATH="$work/store-many"
mkdir -p "$KASSETTE_STORAGE_PATH"
"$bench" node "$work/node-many" 20 63 1024
run many-files full backup "$work/node-many" "$work/state-many" full-1
run many-files unchanged backup "$work/node-many" "$work/state-many" unchanged-2

jq -s --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg profile "$profile" \
  --arg machine "$(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB" \
  '{date: $date, machine: $machine, profile: $profile, runs: .}' "$results" >"$json"

{
  echo "Scale — $(jq -r '.machine' "$json"), $(jq -r '.date' "$json"), $profile build"
  echo
  echo "| read once | files | new data bytes | agent read_bytes | process rchar | rchar / new |"
  echo "|---|---:|---:|---:|---:|---:|"
  jq -r '.runs[] | select(.section == "read-once") |
    "| full backup | \(.files) | \(.new_data_bytes) | \(.read_bytes) | \(.process_rchar) | \((.process_rchar / .new_data_bytes * 1000 | round) / 1000) |"' "$json"
  echo
  echo "| catalog objects | agent requests | coordinator requests (this node) | agent peak RSS (MiB) | agent time (s) |"
  echo "|---:|---:|---:|---:|---:|"
  jq -r '.runs[] | select(.section == "catalog") |
    "| \(.case) | \(.agent_requests_total) \(.agent_requests) | \(.coordinator_requests_total) \(.coordinator_requests) | \((.peak_rss_kib / 1024 * 10 | round) / 10) | \((.agent_seconds * 100 | round) / 100) |"' "$json"
  echo
  echo "| 10,080 SSTable files | files | new data bytes | uploaded bytes (with snapshot metadata) | agent requests | coordinator requests | agent time (s) | pass time (s) | peak RSS (MiB) |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  jq -r '.runs[] | select(.section == "many-files") |
    "| \(.case) | \(.files) | \(.new_data_bytes) | \(.uploaded_bytes) | \(.agent_requests_total) \(.agent_requests) | \(.coordinator_requests_total) \(.coordinator_requests) | \((.agent_seconds * 100 | round) / 100) | \((.seconds * 100 | round) / 100) | \((.peak_rss_kib / 1024 * 10 | round) / 10) |"' "$json"
} | tee "$out/scale.md"
