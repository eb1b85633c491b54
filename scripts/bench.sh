#!/usr/bin/env bash
# `make bench` / `make bench-quick`: side-by-side benchmarks, written as
# Markdown tables and JSON to $KASSETTE_BENCH_DIR (default
# $KASSETTE_RUN/bench/) and printed; bench.md / bench.json hold the whole run
# with the date and the machine line.
#
# Section "storage": the same SSTable-like files (many small, some medium, a
# few large; random, so incompressible like compressed SSTables; ≥ 2 GiB,
# ~300 MiB quick) uploaded to and downloaded from the local MinIO, then
# Azurite (KASSETTE_BENCH_AZURE=0 skips it; quick skips it), by
#   - kassette's storage layer (CRC32C + BLAKE3 in the read pass, Azure's
#     per-block MD5, shared limits, retries, verified temp-file downloads), and
#   - a raw baseline of the same client: plain aws-sdk-s3 PutObject /
#     multipart upload and GetObject to file; for Azure, signed reqwest Put
#     Blob / Put Block + Put Block List and Get Blob to file. Same part size
#     (8 MiB) and concurrency, no checks.
# Reported per run: throughput, CPU-seconds (user + sys, GNU time), CPU-s per
# GiB, peak RSS (GNU time), and storage requests (MinIO's own request
# counter; Azurite has none). Each pair runs ROUNDS times, alternating; the
# tables ($dir/{s3,azure}.md, .json) show medians.
#
# Section "passes" (scripts/bench-passes.sh): backup and restore end to end,
# kassette vs Medusa 0.31 vs the raw client, with CPU of every process.
# Section "scale" (scripts/bench-scale.sh, when present): catalog size and
# many files.
#
# KASSETTE_BENCH_QUICK=1 (`make bench-quick`): small data, 2 rounds, no
# Azure — a few minutes. Full run: about 20–30 minutes on 2 cores.
# Knobs: KASSETTE_BENCH_ROUNDS, KASSETTE_BENCH_MB (passes), KASSETTE_BENCH_AZURE,
# KASSETTE_BENCH_PASSES, KASSETTE_BENCH_SCALE, KASSETTE_BENCH_MEDUSA (0/1).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$KASSETTE_REPO"

QUICK="${KASSETTE_BENCH_QUICK:-0}"
if [ "$QUICK" = 1 ]; then
  export KASSETTE_BENCH_ROUNDS="${KASSETTE_BENCH_ROUNDS:-2}" KASSETTE_BENCH_MB="${KASSETTE_BENCH_MB:-48}"
  export KASSETTE_BENCH_AZURE="${KASSETTE_BENCH_AZURE:-0}"
  SPECS="128:256K 16:4M 4:24M 1:128M" # ≈ 320 MiB
else
  SPECS="512:256K 64:4M 16:24M 3:512M" # ≈ 2.27 GiB
fi
ROUNDS="${KASSETTE_BENCH_ROUNDS:-5}"
CONCURRENCY="${KASSETTE_CONCURRENCY:-8}"
out_dir="${KASSETTE_BENCH_DIR:-$KASSETTE_RUN/bench}"
export KASSETTE_BENCH_DIR="$out_dir"
data="$out_dir/data-${SPECS// /_}"
mkdir -p "$out_dir"
started="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
# This run's tables only (bench.md / bench.json gather what is there).
rm -f "$out_dir"/{s3,azure,passes,scale}.{md,json}

ensure_apt time
scripts/minio.sh install >/dev/null
scripts/minio.sh start >/dev/null
# shellcheck disable=SC1091
source "$KASSETTE_RUN/minio.env"

log "building the benchmark driver (release)"
cargo build --release --locked --example storage_bench 2>&1 | tail -n 1
bin="${CARGO_TARGET_DIR:-$KASSETTE_REPO/target}/release/examples/storage_bench"

# make_data — COUNT:SIZE files of random bytes, as $SPECS lists.
make_data() {
  [ -f "$data/.complete" ] && return 0
  log "generating benchmark data in $data"
  rm -rf "$data" && mkdir -p "$data"
  local spec count size i
  for spec in $SPECS; do
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
  /usr/bin/time -f "%M %U %S" -o "$out_dir/rss" "$bin" "$engine" "$op" "$dir" "$prefix" "$digests" >"$out_dir/run.json"
  after="$(requests)"
  read -r rss user sys < <(tail -n 1 "$out_dir/rss")
  json="$(cat "$out_dir/run.json")"
  python3 - "$engine" "$op" "$json" "$rss" "$((after - before))" "$user" "$sys" >>"$results" <<'PY'
import json, sys
engine, op, run, rss_kib, requests = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
cpu = float(sys.argv[6]) + float(sys.argv[7])
print("\t".join(map(str, [engine, op, run["files"], run["bytes"], run["seconds"], rss_kib, requests, cpu])))
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
  python3 - "$results" "$CONCURRENCY" "$ROUNDS" "$title" "$store" "$out_dir/$store.json" >"$table" <<'PY'
import sys, statistics, json
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
concurrency, rounds, title, store, json_path = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
agg = {}
for engine, op, files, nbytes, secs, rss, reqs, cpu in rows:
    a = agg.setdefault((engine, op), {"files": int(files), "bytes": int(nbytes), "secs": [], "rss": [], "reqs": [], "cpu": []})
    a["secs"].append(float(secs)); a["rss"].append(int(rss)); a["reqs"].append(int(reqs)); a["cpu"].append(float(cpu))
print(f"### storage: {title}, concurrency {concurrency}, median of {rounds} rounds\n")
print("| engine | operation | files | GiB | seconds | MiB/s | CPU-s | CPU-s / GiB | peak RSS (MiB) | storage requests | kassette / raw (rate) | kassette / raw (CPU/GiB) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
out = []
for op in ("upload", "download"):
    raw = agg.get(("raw", op))
    for engine in ("raw", "kassette"):
        a = agg.get((engine, op))
        if not a: continue
        secs = statistics.median(a["secs"]); rate = a["bytes"] / secs / 2**20
        cpu = statistics.median(a["cpu"]); cpu_gib = cpu / (a["bytes"] / 2**30)
        ratio = cpu_ratio = None
        if engine == "kassette" and raw:
            raw_rate = raw["bytes"] / statistics.median(raw["secs"]) / 2**20
            ratio = rate / raw_rate
            cpu_ratio = cpu_gib / (statistics.median(raw["cpu"]) / (raw["bytes"] / 2**30))
        reqs = round(statistics.mean(a["reqs"])) if store == "s3" else None
        out.append(dict(engine=engine, operation=op, files=a["files"], bytes=a["bytes"], seconds=secs, mib_per_s=rate,
                        cpu_s=cpu, cpu_s_per_gib=cpu_gib, peak_rss_mib=max(a["rss"]) / 1024, requests=reqs,
                        rate_vs_raw=ratio, cpu_per_gib_vs_raw=cpu_ratio, runs_seconds=a["secs"], runs_cpu_s=a["cpu"]))
        f = lambda v, p: "" if v is None else format(v, p)
        print(f"| {engine} | {op} | {a['files']} | {a['bytes']/2**30:.2f} | {secs:.1f} | {rate:.0f} | {cpu:.1f} | {cpu_gib:.2f} | "
              f"{max(a['rss'])/1024:.0f} | {'-' if reqs is None else reqs} | {f(ratio, '.2f')} | {f(cpu_ratio, '.2f')} |")
json.dump(dict(title=title, concurrency=int(concurrency), rounds=int(rounds), rows=out), open(json_path, "w"), indent=1)
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

# Section "scale": catalog size and many files (scripts/bench-scale.sh, when
# present; it writes scale.md / scale.json to $KASSETTE_BENCH_DIR and reads
# KASSETTE_BENCH_QUICK like the others).
if [ "${KASSETTE_BENCH_SCALE:-1}" = 1 ] && [ -x scripts/bench-scale.sh ]; then
  scripts/bench-scale.sh
fi

# The whole run in one Markdown file and one JSON file.
python3 - "$out_dir" "$started" "$QUICK" <<'PY'
import json, os, sys, datetime
out, started, quick = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
mem_kib = int(next(l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")))
cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
machine = dict(cores=os.cpu_count(), memory_gib=round(mem_kib / 2**20, 1), cpu=cpu_model,
               load_average_at_end=open("/proc/loadavg").read().split()[:3])
ended = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
whole = dict(started=started, ended=ended, quick=quick, machine=machine, sections={})
md = [f"## `make bench{'-quick' if quick else ''}` of {started} – {ended}\n",
      f"Machine: {machine['cores']} cores ({cpu_model}), {machine['memory_gib']} GiB; load average at the end "
      f"{' '.join(machine['load_average_at_end'])} (the cores are shared with other work).\n"]
for name in ("s3", "azure", "passes", "scale"):
    if os.path.exists(f"{out}/{name}.json"):
        whole["sections"][name] = json.load(open(f"{out}/{name}.json"))
    if os.path.exists(f"{out}/{name}.md"):
        md.append(open(f"{out}/{name}.md").read())
json.dump(whole, open(f"{out}/bench.json", "w"), indent=1)
open(f"{out}/bench.md", "w").write("\n".join(md))
PY
log "the whole run: $out_dir/bench.md, $out_dir/bench.json"
