#!/usr/bin/env bash
# Section "passes" of `make bench`: kassette's backup and restore passes,
# Medusa 0.31's (the reference) and a raw aws-sdk-s3 client (the data-path
# baseline), on the same local 3-node cluster, the same data and MinIO, in
# one run. For each: wall time, CPU-seconds (user + sys of every process,
# including the child processes each tool waits for: nodetool JVMs, Medusa's
# helpers), CPU-s per GiB, throughput, peak RSS and storage requests.
#
#   full backup      KASSETTE_BENCH_MB of incompressible rows (replication
#                    3, so each node holds all of it); kassette backs up the
#                    bench keyspace into a fresh prefix with fresh agents (no
#                    digest cache), ROUNDS times; raw uploads the same
#                    snapshot files (one process per node, same concurrency)
#   restore          kassette: replace restore of the bench keyspace
#                    (download, verify, truncate, import), ROUNDS times; raw:
#                    GetObject of the same files to disk, no checks
#   unchanged backup every keyspace (as Medusa), ROUNDS times, warm agents;
#                    then once with the agents driving their node through
#                    nodetool instead of Jolokia (the before/after of the
#                    control connection)
#   differential     after 10 % more rows
#   Medusa           backup-node --mode differential on nodes 1 and 2 at
#                    once (node 3 has two data directories, which Medusa
#                    refuses); it has no keyspace filter, so it backs up every
#                    keyspace: compare CPU-s per GiB and rates, not times.
#                    Its restore-node stops Cassandra, so `download` of the
#                    bench keyspace stands for its restore (a lower bound).
#
# CPU: one-shot processes run under GNU time (%U + %S include the children
# they wait for); the agents are long-lived, so their /proc/<pid>/stat
# utime + stime + cutime + cstime is read before and after each pass.
# Cassandra's own work (flush, snapshot, import, Jolokia requests) is in
# none of the figures. Storage requests are MinIO's own live counter: the
# MinIO is shared, so requests others send during a pass are counted too.
#
# Knobs: KASSETTE_BENCH_MB (300), KASSETTE_BENCH_ROUNDS (5),
# KASSETTE_BENCH_MEDUSA (1), KASSETTE_BENCH_DIR ($KASSETTE_RUN/bench).
# Writes passes.md, passes.json and the raw rows (passes/runs.tsv) there.
# Everything it creates in the cluster and MinIO (keyspace, snapshots,
# buckets' objects) is removed on exit.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$KASSETTE_REPO"

MB="${KASSETTE_BENCH_MB:-300}"
ROUNDS="${KASSETTE_BENCH_ROUNDS:-5}"
PAYLOAD=$((100 * 1024))
ROWS=$((MB * 1024 * 1024 / PAYLOAD))
out="${KASSETTE_BENCH_DIR:-$KASSETTE_RUN/bench}"
root="$out/passes"
mkdir -p "$root"
runs="$root/runs.tsv"
: >"$runs"
TICKS="$(getconf CLK_TCK)"

ensure_apt time
ensure_apt jq
cargo build --release --locked --bin kassette --example demo_rows --example storage_bench 2>&1 | tail -n 1
target="${CARGO_TARGET_DIR:-$KASSETTE_REPO/target}/release"
bin="$target/kassette"
rows="$target/examples/demo_rows"
sbench="$target/examples/storage_bench"
scripts/cassandra.sh start 3 >/dev/null
scripts/minio.sh start >/dev/null
# shellcheck disable=SC1091
source "$KASSETTE_RUN/minio.env"
# shellcheck disable=SC1091
source "$KASSETTE_RUN/cassandra.env"

stamp="$(date +%s)"
bucket="kassette-bench-$stamp"
make_bucket() {
  curl -fsS -o /dev/null --aws-sigv4 "aws:amz:$KASSETTE_TEST_S3_REGION:s3" \
    --user "$KASSETTE_TEST_S3_ACCESS_KEY:$KASSETTE_TEST_S3_SECRET_KEY" \
    -X PUT "$KASSETTE_TEST_S3_ENDPOINT/$1"
}
make_bucket "$bucket"
token="$root/token"
head -c 32 /dev/urandom | base64 >"$token"
export KASSETTE_STORAGE_PROVIDER=s3 KASSETTE_STORAGE_BUCKET="$bucket" \
  KASSETTE_STORAGE_ENDPOINT="$KASSETTE_TEST_S3_ENDPOINT" \
  KASSETTE_STORAGE_REGION="$KASSETTE_TEST_S3_REGION" KASSETTE_STORAGE_ALLOW_HTTP=true \
  KASSETTE_STORAGE_CREDENTIALS_FILE="$KASSETTE_TEST_S3_CREDENTIALS_FILE" \
  KASSETTE_CLUSTER="$KASSETTE_TEST_CASSANDRA_CLUSTER" KASSETTE_DATACENTER="$KASSETTE_TEST_CASSANDRA_DC" \
  KASSETTE_AGENT_TOKEN_FILE="$token" KASSETTE_LOG=warn
CONCURRENCY="${KASSETTE_CONCURRENCY:-8}"
cql="127.0.0.1:9042,127.0.0.2:9042,127.0.0.3:9042"
ks="bench_$stamp"
NODES=(1 2 3)
MEDUSA_NODES=(1 2)

# delete_prefix BUCKET PREFIX — removes every object under PREFIX/.
delete_prefix() {
  KASSETTE_STORAGE_BUCKET="$1" "$sbench" kassette delete - "$2" >/dev/null 2>&1 || true
}

# On exit: stop the agents, drop the bench keyspace, clear the snapshots
# this run and Cassandra (dropping, truncating) took of it, empty the
# buckets.
cleanup() {
  scripts/agents.sh stop "$root"
  local n tag d data_var
  if "$rows" drop "$cql" "$ks" >/dev/null 2>&1; then
    # The keyspace is gone from the schema: what is left on disk is its
    # snapshots (the one DROP takes included).
    for n in "${NODES[@]}"; do
      data_var="KASSETTE_TEST_CASSANDRA_DATA_$n"
      for d in ${!data_var//:/ }; do rm -rf "${d:?}/$ks"; done
    done
  else
    for n in "${NODES[@]}"; do
      for tag in $(snapshot_tags_of "$n"); do clear_snapshot "$n" "$tag" "$ks"; done
    done
  fi
  for p in "${prefixes[@]}"; do delete_prefix "$bucket" "$p"; done
  # Medusa's layout: <fqdn>/<backup>/… and index/.
  for n in "${MEDUSA_NODES[@]}"; do delete_prefix "$bucket-medusa" "127.0.0.$n"; done
  delete_prefix "$bucket-medusa" "index"
  rm -rf "$root"/raw-* "$root"/medusa-download-*
}
prefixes=()
trap cleanup EXIT

# ---------------------------------------------------------------- node control (not measured)

# jolokia N OPERATION ARGUMENTS-JSON — a StorageService operation on node N
# through its Jolokia (scripts/agents.sh checks which nodes have one).
jolokia_exec() {
  local url_var="KASSETTE_TEST_JOLOKIA_URL_$1" url
  url="${!url_var:-http://127.0.0.$1:8778/jolokia}"
  curl -fs -m 600 -X POST "$url" -d "{\"type\":\"exec\",\"mbean\":\"org.apache.cassandra.db:type=StorageService\",\"operation\":\"$2\",\"arguments\":$3}" |
    jq -e '.status == 200' >/dev/null
}
take_snapshot() { # N TAG KEYSPACE
  jolokia_exec "$1" 'takeSnapshot(java.lang.String,java.util.Map,[Ljava.lang.String;)' "[\"$2\",{},[\"$3\"]]" ||
    scripts/nodetool -n "$1" snapshot -t "$2" -- "$3" >/dev/null
}
clear_snapshot() { # N TAG KEYSPACE
  jolokia_exec "$1" 'clearSnapshot(java.util.Map,java.lang.String,[Ljava.lang.String;)' "[{},\"$2\",[\"$3\"]]" ||
    scripts/nodetool -n "$1" clearsnapshot -t "$2" -- "$3" >/dev/null 2>&1 || true
}
# snapshot_tags_of N — tags of the bench keyspace's snapshots on node N's disks.
snapshot_tags_of() {
  local data_var="KASSETTE_TEST_CASSANDRA_DATA_$1" d
  for d in ${!data_var//:/ }; do
    ls -d "$d/$ks"/*/snapshots/* 2>/dev/null | xargs -r -n1 basename
  done | sort -u
}

# ---------------------------------------------------------------- measuring

# MinIO's own request counter (live v3 metrics).
requests() {
  curl -fs "$KASSETTE_TEST_S3_ENDPOINT/minio/metrics/v3/api/requests" |
    awk '/^minio_api_requests_total/ {s += $2} END {printf "%d", s}'
}
# proc_cpu PID — user + sys ticks of PID and of the children it waited for.
proc_cpu() {
  # Fields after the ")" closing the command name: utime is the 12th.
  sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 + $14 + $15 }' || echo 0
}
agent_pid() { cat "$root/agent$1.pid"; }
agents_hwm_kib() {
  local n total=0 kb
  for n in "${NODES[@]}"; do
    kb=$(awk '/VmHWM/ { print $2 }' "/proc/$(agent_pid "$n")/status" 2>/dev/null || echo 0)
    total=$((total + kb))
  done
  echo "$total"
}

# begin — start of a measured pass.
begin() {
  timefiles=() pids=() cpu0=()
  local n
  if [ "${with_agents:-0}" = 1 ]; then
    for n in "${NODES[@]}"; do cpu0+=("$(proc_cpu "$(agent_pid "$n")")"); done
  fi
  req0="$(requests)"
  t0="$(date +%s.%N)"
}
# spawn LOG CMD… — one measured process, in the background.
spawn() {
  local log="$1"; shift
  local f="$root/time.${#timefiles[@]}"
  timefiles+=("$f")
  /usr/bin/time -f "%U %S %M" -o "$f" "$@" >"$log" 2>&1 &
  pids+=("$!")
}
# finish TOOL PASS ROUND DATA_BYTES MOVED_BYTES — waits for the spawned
# processes, appends one row to $runs.
finish() {
  local i
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { tail -n 30 "$root/${logs[$i]:-last.log}" >&2 2>/dev/null; die "$1 $2 round $3 failed (see $root)"; }
  done
  local t1 req1 cpu=0 rss=0 agent_max=0 n d
  t1="$(date +%s.%N)"
  req1="$(requests)"
  for i in "${timefiles[@]}"; do
    read -r u s m < <(tail -n 1 "$i")
    cpu=$(awk -v c="$cpu" -v u="$u" -v s="$s" 'BEGIN { print c + u + s }')
    rss=$((rss + m))
  done
  if [ "${with_agents:-0}" = 1 ]; then
    for n in "${!NODES[@]}"; do
      d=$(( $(proc_cpu "$(agent_pid "${NODES[$n]}")") - cpu0[n] ))
      cpu=$(awk -v c="$cpu" -v d="$d" -v t="$TICKS" 'BEGIN { print c + d / t }')
      [ "$d" -gt "$agent_max" ] && agent_max="$d"
    done
    rss=$((rss + $(agents_hwm_kib)))
    agent_max=$(awk -v d="$agent_max" -v t="$TICKS" 'BEGIN { print d / t }')
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" "$cpu" "$4" "$5" "$rss" \
    "$((req1 - req0))" "$agent_max" >>"$runs"
  log "$1 $2 round $3: $(tail -n 1 "$runs" | cut -f4) s, $(tail -n 1 "$runs" | cut -f5) CPU-s"
}

# bytes_of "995.4 MiB" — bytes.
bytes_of() { numfmt --from=iec-i --suffix=B "${1// /}" 2>/dev/null | tr -d B || echo 0; }

# ---------------------------------------------------------------- kassette

# start_agents PREFIX [fresh] — (re)starts the three agents on PREFIX.
start_agents() {
  scripts/agents.sh stop "$root"
  [ "${2:-}" = fresh ] && rm -rf "$root"/agent?
  KASSETTE_NODES="$(KASSETTE_STORAGE_PREFIX="$1" scripts/agents.sh start "$bin" 7310 "$root")"
  export KASSETTE_NODES
}

# kassette_pass TOOL PASS ROUND ROLE PREFIX VAR=VALUE… — one coordinator run.
kassette_pass() {
  local tool="$1" pass="$2" round="$3" role="$4" prefix="$5"; shift 5
  with_agents=1 begin
  logs=("kassette.log")
  spawn "$root/kassette.log" env KASSETTE_STORAGE_PREFIX="$prefix" "$@" "$bin" "$role"
  with_agents=1 finish_kassette "$tool" "$pass" "$round" "$role"
}
finish_kassette() {
  local tool="$1" pass="$2" round="$3" role="$4" summary data moved
  for i in "${!pids[@]}"; do wait "${pids[$i]}" || { tail -n 30 "$root/kassette.log" >&2; die "$tool $pass failed"; }; done
  pids=()
  summary="$(grep -E '^(backup|restore) .* complete' "$root/kassette.log" | tail -n 1)"
  if [ "$role" = backup ]; then
    data=$(sed -n 's/.* files, \([^(]*\) (uploaded.*/\1/p' <<<"$summary")
    moved=$(sed -n 's/.*(uploaded [0-9]* files, \([^;]*\);.*/\1/p' <<<"$summary")
  else
    data=$(sed -n 's/.* files, \(.*\) imported (.*/\1/p' <<<"$summary")
    moved=$(sed -n 's/.* imported (\(.*\) downloaded now).*/\1/p' <<<"$summary")
  fi
  finish "$tool" "$pass" "$round" "$(bytes_of "$data")" "$(bytes_of "$moved")"
}

# ---------------------------------------------------------------- raw client

# raw_round ROUND — the same snapshot files, uploaded then downloaded by the
# raw aws-sdk-s3 client, one process per node at once.
raw_round() {
  local r="$1" tag="bench-raw-$stamp-$1" n data_var d f total=0
  for n in "${NODES[@]}"; do
    take_snapshot "$n" "$tag" "$ks"
    rm -rf "$root/raw-$n" && mkdir -p "$root/raw-$n"
    data_var="KASSETTE_TEST_CASSANDRA_DATA_$n"
    local i=0
    for d in ${!data_var//:/ }; do
      for f in "$d/$ks"/*/snapshots/"$tag"/*; do
        [ -f "$f" ] || continue
        ln "$f" "$root/raw-$n/d$i-$(basename "$f")" 2>/dev/null || cp "$f" "$root/raw-$n/d$i-$(basename "$f")"
      done
      i=$((i + 1))
    done
  done
  total=$(du -sb --apparent-size "$root"/raw-? | awk '{ t += $1 } END { print t }')
  prefixes+=("raw-r$r")
  begin; logs=()
  for n in "${NODES[@]}"; do logs+=("raw-up-$n.log"); spawn "$root/raw-up-$n.log" "$sbench" raw upload "$root/raw-$n" "raw-r$r/$n"; done
  finish raw "full backup" "$r" "$total" "$total"
  begin; logs=()
  for n in "${NODES[@]}"; do
    rm -rf "$root/raw-get-$n"
    logs+=("raw-down-$n.log"); spawn "$root/raw-down-$n.log" "$sbench" raw download "$root/raw-get-$n" "raw-r$r/$n"
  done
  finish raw "restore" "$r" "$total" "$total"
  for n in "${NODES[@]}"; do clear_snapshot "$n" "$tag" "$ks"; done
  rm -rf "$root"/raw-?  "$root"/raw-get-?
  delete_prefix "$bucket" "raw-r$r"
}

# ---------------------------------------------------------------- Medusa

medusa_setup() {
  scripts/medusa.sh install
  medusa="$(scripts/medusa.sh bin)"
  MEDUSA_VERSION="$("$medusa" --version 2>/dev/null | tail -n 1)"
  make_bucket "$bucket-medusa"
  local n
  for n in "${MEDUSA_NODES[@]}"; do scripts/medusa.sh config "$n" "$bucket-medusa" "$root"; done
}
# medusa_backup PASS ROUND NAME — backup-node on nodes 1 and 2 at once.
medusa_backup() {
  local pass="$1" round="$2" name="$3" n mib=0 copied=0
  begin; logs=()
  for n in "${MEDUSA_NODES[@]}"; do
    logs+=("medusa-$n.log")
    spawn "$root/medusa-$n.log" "$medusa" --config-file "$root/medusa-$n.ini" backup-node --backup-name "$name" --mode differential
  done
  for n in "${!pids[@]}"; do wait "${pids[$n]}" || { tail -n 20 "$root/medusa-$((n + 1)).log" >&2; die "medusa $pass failed"; }; done
  for n in "${MEDUSA_NODES[@]}"; do
    # "- 3680 files, 1.06 GB": Medusa's units are binary (1024).
    mib=$(awk -v t="$mib" '/INFO: - [0-9]+ files, [0-9.]+ [KMGT]?B$/ {
        f = ($NF == "KB") ? 1 / 1024 : ($NF == "MB") ? 1 : ($NF == "GB") ? 1024 : ($NF == "TB") ? 1048576 : 1 / 1048576
        v = $(NF - 1) * f
      } END { printf "%.2f", t + v }' "$root/medusa-$n.log")
    copied=$((copied + $(sed -n 's/.* \([0-9]*\) files copied from host.*/\1/p' "$root/medusa-$n.log" | tail -n 1)))
  done
  pids=()
  # Medusa reports files copied, not bytes: moved is "-" (0) except for
  # the first (full) backup, where everything is new.
  local bytes
  bytes=$(awk -v m="$mib" 'BEGIN { printf "%d", m * 1048576 }')
  finish "Medusa $MEDUSA_VERSION" "$pass" "$round" "$bytes" "$([ "$pass" = "full backup" ] && echo "$bytes" || echo 0)"
  log "medusa $pass: $copied files uploaded"
}
medusa_download() {
  local n total
  begin; logs=()
  for n in "${MEDUSA_NODES[@]}"; do
    rm -rf "$root/medusa-download-$n" && mkdir -p "$root/medusa-download-$n"
    logs+=("medusa-download-$n.log")
    spawn "$root/medusa-download-$n.log" "$medusa" --config-file "$root/medusa-$n.ini" download --backup-name diff \
      --download-destination "$root/medusa-download-$n" --keyspace "$ks" --ignore-system-keyspaces
  done
  for n in "${!pids[@]}"; do wait "${pids[$n]}" || { tail -n 20 "$root/medusa-download-$((n + 1)).log" >&2; die "medusa download failed"; }; done
  pids=()
  total=$(du -sb --apparent-size "$root"/medusa-download-* | awk '{ t += $1 } END { print t }')
  finish "Medusa $MEDUSA_VERSION" "restore" 1 "$total" "$total"
  rm -rf "$root"/medusa-download-*
}

# ---------------------------------------------------------------- the run

log "loading $MB MiB ($ROWS rows of $PAYLOAD bytes) into $ks"
"$rows" bulk "$cql" "$ks" 0 "$ROWS" "$PAYLOAD"
restore_env=(KASSETTE_KEYSPACES="$ks" KASSETTE_CLEAR_TRUNCATE_SNAPSHOTS=true)

# Full backups into a fresh prefix with fresh agents, each followed by its
# restore, then the raw client on the same files.
for ((r = 1; r <= ROUNDS; r++)); do
  prefix="r$r-$stamp"
  prefixes+=("$prefix")
  start_agents "$prefix" fresh
  kassette_pass kassette "full backup" "$r" backup "$prefix" KASSETTE_BACKUP_NAME=full KASSETTE_KEYSPACES="$ks"
  kassette_pass kassette "restore" "$r" restore "$prefix" KASSETTE_BACKUP_NAME=full "${restore_env[@]}"
  raw_round "$r"
  # Earlier rounds' objects are not needed again.
  [ "$r" -lt "$ROUNDS" ] && delete_prefix "$bucket" "$prefix"
done

# Unchanged and differential backups cover every keyspace of the cluster,
# as Medusa's do (on the development cluster, what the test suite left:
# hundreds of small tables). Round 0 (not in the table) uploads what the
# bench keyspace's backups did not hold and hashes the restored files;
# after it the agents' digest caches are warm.
kassette_pass kassette "unchanged backup" 0 backup "$prefix" KASSETTE_BACKUP_NAME=warm
for ((r = 1; r <= ROUNDS; r++)); do
  kassette_pass kassette "unchanged backup" "$r" backup "$prefix" KASSETTE_BACKUP_NAME="same-$r"
done
# The same through nodetool: the cost the control connection removes.
KASSETTE_CASSANDRA_CONTROL=nodetool start_agents "$prefix"
kassette_pass "kassette (nodetool control)" "unchanged backup" 1 backup "$prefix" KASSETTE_BACKUP_NAME=same-nodetool
start_agents "$prefix"

if [ "${KASSETTE_BENCH_MEDUSA:-1}" = 1 ]; then
  medusa_setup
  medusa_backup "full backup" 1 full
  for ((r = 1; r <= ROUNDS && r <= 3; r++)); do medusa_backup "unchanged backup" "$r" "same-$r"; done
fi

"$rows" bulk "$cql" "$ks" "$ROWS" $((ROWS + ROWS / 10)) "$PAYLOAD" >/dev/null
kassette_pass kassette "differential backup (+10 %)" 1 backup "$prefix" KASSETTE_BACKUP_NAME=diff
if [ "${KASSETTE_BENCH_MEDUSA:-1}" = 1 ]; then
  medusa_backup "differential backup (+10 %)" 1 diff
  medusa_download
fi

# ---------------------------------------------------------------- tables

python3 - "$runs" "$out/passes.md" "$out/passes.json" "$MB" "$ROUNDS" "$CONCURRENCY" <<'PY'
import json, statistics, sys, datetime, os
runs, md_path, json_path, mb, rounds, concurrency = sys.argv[1:7]
rows = []
for line in open(runs):
    f = line.rstrip("\n").split("\t")
    if len(f) < 10: continue
    tool, pas, rnd, wall, cpu, data, moved, rss, reqs, agent_max = f
    rows.append(dict(tool=tool, pass_=pas, round=int(rnd), wall=float(wall), cpu=float(cpu),
                     data=int(float(data)), moved=int(float(moved)), rss_kib=int(rss),
                     requests=int(reqs), agent_cpu_max=float(agent_max)))
GiB = 2**30
order = ["full backup", "restore", "unchanged backup", "differential backup (+10 %)"]
groups = {}
for r in rows:
    if r["round"] == 0: continue  # warm-up
    groups.setdefault((r["pass_"], r["tool"]), []).append(r)
summary = []
for (pas, tool), rs in sorted(groups.items(), key=lambda kv: (order.index(kv[0][0]) if kv[0][0] in order else 9, kv[0][1])):
    med = lambda k: statistics.median(x[k] for x in rs)
    data = med("data"); wall = med("wall"); cpu = med("cpu")
    summary.append(dict(
        pass_=pas, tool=tool, rounds=len(rs), wall_s=wall, cpu_s=cpu, data_bytes=data, moved_bytes=med("moved"),
        cpu_s_per_gib=cpu / (data / GiB) if data else None,
        mib_per_s=data / 2**20 / wall if wall else None,
        peak_rss_mib=max(x["rss_kib"] for x in rs) / 1024,
        requests=statistics.median(x["requests"] for x in rs),
        agent_cpu_s_max_node=med("agent_cpu_max") if tool.startswith("kassette") else None,
        walls=[x["wall"] for x in rs], cpus=[x["cpu"] for x in rs]))
def find(pas, prefix):
    for s in summary:
        if s["pass_"] == pas and (s["tool"] == prefix or (prefix != "kassette" and s["tool"].startswith(prefix))): return s
def ratio(a, b, key):
    return a[key] / b[key] if a and b and a.get(key) and b.get(key) else None
for s in summary:
    if s["tool"] != "kassette": continue
    raw = find(s["pass_"], "raw"); med = find(s["pass_"], "Medusa")
    s["rate_vs_raw"] = ratio(s, raw, "mib_per_s")
    s["cpu_per_gib_vs_raw"] = ratio(s, raw, "cpu_s_per_gib")
    s["cpu_per_gib_vs_medusa"] = ratio(s, med, "cpu_s_per_gib")
targets = []
def target(name, value, limit, ok):
    targets.append(dict(target=name, value=value, limit=limit, met=(ok if value is not None else None)))
k_un = find("unchanged backup", "kassette")
if k_un and k_un.get("agent_cpu_s_max_node") is not None:
    target("unchanged pass, CPU-s on one node (agent + children)", k_un["agent_cpu_s_max_node"], "≤ 0.5", k_un["agent_cpu_s_max_node"] <= 0.5)
for pas in ("full backup", "unchanged backup", "differential backup (+10 %)"):
    k = next((s for s in summary if s["pass_"] == pas and s["tool"] == "kassette"), None)
    if k and k.get("cpu_per_gib_vs_medusa") is not None:
        target(f"{pas}: kassette / Medusa CPU-s per GiB", k["cpu_per_gib_vs_medusa"], "≤ 0.167", k["cpu_per_gib_vs_medusa"] <= 1 / 6)
for pas in ("full backup", "restore"):
    k = next((s for s in summary if s["pass_"] == pas and s["tool"] == "kassette"), None)
    if k and k.get("cpu_per_gib_vs_raw") is not None:
        target(f"{pas}: kassette / raw CPU-s per GiB", k["cpu_per_gib_vs_raw"], "≤ 1.2", k["cpu_per_gib_vs_raw"] <= 1.2)
    if k and k.get("rate_vs_raw") is not None:
        target(f"{pas}: kassette / raw throughput", k["rate_vs_raw"], "≥ 0.9", k["rate_vs_raw"] >= 0.9)
mem_kib = int(next(l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")))
machine = f"{os.cpu_count()} cores, {mem_kib / 2**20:.0f} GiB RAM, load average {open('/proc/loadavg').read().split()[0]} at the end"
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
json.dump(dict(date=now, machine=machine, mb=int(mb), rounds=int(rounds), concurrency=int(concurrency),
               rows=summary, targets=targets, runs=rows), open(json_path, "w"), indent=1)
fmt = lambda v, f: "—" if v is None else format(v, f)
with open(md_path, "w") as md:
    md.write(f"### passes: {mb} MiB × replication 3, 3 nodes, MinIO, concurrency {concurrency}; median of the rounds shown ({now}; {machine})\n\n")
    md.write("| pass | tool | rounds | wall time (s) | data (GiB) | moved (GiB) | MiB/s | CPU-s | CPU-s / GiB | busiest agent CPU-s | peak RSS (MiB) | storage requests | kassette / raw (rate) | kassette / raw (CPU/GiB) | kassette / Medusa (CPU/GiB) |\n")
    md.write("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    for s in summary:
        md.write(f"| {s['pass_']} | {s['tool']} | {s['rounds']} | {s['wall_s']:.2f} | {s['data_bytes']/GiB:.2f} | {s['moved_bytes']/GiB:.2f} | "
                 f"{fmt(s['mib_per_s'], '.0f')} | {s['cpu_s']:.2f} | {fmt(s['cpu_s_per_gib'], '.2f')} | {fmt(s['agent_cpu_s_max_node'], '.2f')} | "
                 f"{s['peak_rss_mib']:.0f} | {s['requests']:.0f} | {fmt(s.get('rate_vs_raw'), '.2f')} | {fmt(s.get('cpu_per_gib_vs_raw'), '.2f')} | {fmt(s.get('cpu_per_gib_vs_medusa'), '.3f')} |\n")
    md.write("\n| target | measured | limit | met |\n|---|---|---|---|\n")
    for t in targets:
        md.write(f"| {t['target']} | {fmt(t['value'], '.3f')} | {t['limit']} | {'yes' if t['met'] else 'no' if t['met'] is not None else '—'} |\n")
PY
log "passes ($MB MiB × replication 3, 3 nodes, MinIO, 2 cores):"
cat "$out/passes.md"
log "tables: $out/passes.md, $out/passes.json"
