#!/usr/bin/env bash
# Local Apache Cassandra cluster for kassette's tests and demo.
#
#   scripts/cassandra.sh install       fetch the pinned jars (env/cassandra/pom.xml) into the cache
#   scripts/cassandra.sh start [N]     start (or keep) an N-node cluster, N = 1 or 3
#                                      (default: the one already on disk, else 3);
#                                      writes $KASSETTE_RUN/cassandra.env
#   scripts/cassandra.sh stop          stop every node, keep the data
#   scripts/cassandra.sh clean         stop and delete all data
#   scripts/cassandra.sh stop-node I   stop node I only, keep its data
#   scripts/cassandra.sh wipe          stop, delete data/commitlog/caches/hints (keep config)
#   scripts/cassandra.sh status [I]    nodetool status (as node I sees it)
#   scripts/cassandra.sh nodetool ...  what scripts/nodetool runs
#
# Knobs: KASSETTE_CASSANDRA_HEAP (-Xmx, 768M), KASSETTE_CASSANDRA_HEAP_MIN
# (-Xms, 256M), KASSETTE_CASSANDRA_JVM_OPTS (extra, appended),
# KASSETTE_CASSANDRA_STORAGE_COMPAT (CASSANDRA_4), KASSETTE_CASSANDRA_START_TIMEOUT (300 s).
#
# A second, separate cluster (the disaster-recovery tests start one beside
# the shared one, never touching it) takes these knobs, all unset for the
# shared cluster: KASSETTE_CASSANDRA_OFFSET (node i is 127.0.0.<i+offset>,
# JMX 7<i+offset>99, Jolokia 127.0.0.<i+offset>:8778), KASSETTE_CASSANDRA_DIR (its run
# directory, default $KASSETTE_RUN/cassandra), KASSETTE_CASSANDRA_ENV_FILE
# (default $KASSETTE_RUN/cassandra.env), KASSETTE_CASSANDRA_CLUSTER_NAME
# (kassette-test), KASSETTE_CASSANDRA_DC (dc1), KASSETTE_CASSANDRA_RACK_PREFIX
# (rack), and KASSETTE_CASSANDRA_PIN_HOOK: a command run for each node after
# its cassandra.yaml is written and before it starts, as
# `HOOK <i> <cassandra.yaml> <rack> <data dirs, comma-separated>` (the yaml
# then has no initial_token: the hook, e.g. `kassette pin-tokens`, decides).
#
# There is no tarball here (only Maven Central is reachable), so the server
# runs straight from the cassandra-all jar and its dependencies, with the
# configuration and JVM flags that bin/cassandra + conf/ would supply,
# generated per node under $KASSETTE_RUN/cassandra/node<i>/.
#
# Node i: listen/CQL address 127.0.0.i (storage 7000, CQL 9042), JMX on
# 127.0.0.1:7<i>99 (local-only, no auth), dc1/rack<i>. Node 1 is the seed.
# Every node carries the Jolokia JVM agent on its own address,
# 127.0.0.i:8778 (JMX over HTTP: one kept connection per agent instead of a
# nodetool JVM per call; KASSETTE_TEST_JOLOKIA_URL_<i> in the env file,
# KASSETTE_TEST_JOLOKIA_URL is node 1's). Node 3 has two data directories
# (JBOD) so that multi-directory layouts are covered.
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

POM="$KASSETTE_REPO/env/cassandra/pom.xml"
CASSANDRA_VERSION="$(sed -n 's:.*<cassandra.version>\(.*\)</cassandra.version>.*:\1:p' "$POM")"
[ -n "$CASSANDRA_VERSION" ] || die "no <cassandra.version> in $POM"
C_HOME="$KASSETTE_CACHE/cassandra-$CASSANDRA_VERSION"
C_LIB="$C_HOME/lib"
C_AGENT="$C_HOME/agent/jolokia-agent-jvm.jar"
C_MARKER="$C_HOME/.installed"
C_RUN="${KASSETTE_CASSANDRA_DIR:-$KASSETTE_RUN/cassandra}"
C_ENV="${KASSETTE_CASSANDRA_ENV_FILE:-$KASSETTE_RUN/cassandra.env}"
OFFSET="${KASSETTE_CASSANDRA_OFFSET:-0}"
CLUSTER_NAME="${KASSETTE_CASSANDRA_CLUSTER_NAME:-kassette-test}"
DC_NAME="${KASSETTE_CASSANDRA_DC:-dc1}"
RACK_PREFIX="${KASSETTE_CASSANDRA_RACK_PREFIX:-rack}"
PIN_HOOK="${KASSETTE_CASSANDRA_PIN_HOOK:-}"
JOLOKIA_PORT=8778
# Stock 5.0 default: sstables are written in the 4.x-compatible "nb" format.
# Set to NONE to get 5.0-only features/format ("oa", BTI-capable).
STORAGE_COMPAT="${KASSETTE_CASSANDRA_STORAGE_COMPAT:-CASSANDRA_4}"
HEAP="${KASSETTE_CASSANDRA_HEAP:-768M}"
HEAP_MIN="${KASSETTE_CASSANDRA_HEAP_MIN:-256M}"
START_TIMEOUT="${KASSETTE_CASSANDRA_START_TIMEOUT:-300}"

node_ip() { echo "127.0.0.$(($1 + OFFSET))"; }
node_jmx() { echo $((7099 + 100 * ($1 + OFFSET))); }   # 7199, 7299, 7399
node_dir() { echo "$C_RUN/node$1"; }
jolokia_url() { echo "http://$(node_ip "$1"):$JOLOKIA_PORT/jolokia"; }
node_data_dirs() {                            # space-separated
  local d; d="$(node_dir "$1")"
  if [ "$1" -eq 3 ]; then echo "$d/data1 $d/data2"; else echo "$d/data"; fi
}

# JPMS flags Cassandra 5.0 needs on Java 17 (conf/jvm17-server.options and
# jvm17-clients.options, merged); without them startup fails on reflection.
JPMS_OPTS=(
  -Djdk.attach.allowAttachSelf=true
  --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
  --add-exports java.base/jdk.internal.ref=ALL-UNNAMED
  --add-exports java.base/sun.nio.ch=ALL-UNNAMED
  --add-exports java.base/java.lang.ref=ALL-UNNAMED
  --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.transport.tcp=ALL-UNNAMED
  --add-exports java.sql/java.sql=ALL-UNNAMED
  --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
  --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
  --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
  --add-opens java.base/java.lang.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
  --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
  --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
  --add-opens java.base/jdk.internal.math=ALL-UNNAMED
  --add-opens java.base/jdk.internal.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
  --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
  --add-opens java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens java.base/java.io=ALL-UNNAMED
  --add-opens java.base/java.nio=ALL-UNNAMED
  --add-opens java.base/java.lang=ALL-UNNAMED
  --add-opens java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens java.base/java.math=ALL-UNNAMED
  --add-opens java.base/java.net=ALL-UNNAMED
  --add-opens java.base/java.util=ALL-UNNAMED
  --add-opens java.base/java.util.concurrent=ALL-UNNAMED
  --add-opens java.base/java.util.concurrent.atomic=ALL-UNNAMED
  --add-opens java.rmi/sun.rmi.transport.tcp=ALL-UNNAMED
  --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
  # Chronicle (audit/FQL) otherwise tries to send usage analytics.
  -Dchronicle.analytics.disable=true
  -Djava.net.preferIPv4Stack=true
)

# ---------------------------------------------------------------- install

installed() { [ -f "$C_MARKER" ] && [ "$(cat "$C_MARKER")" = "$(sha256sum <"$POM" | cut -d' ' -f1)" ]; }

cmd_install() {
  if installed; then log "cassandra $CASSANDRA_VERSION: already installed in $C_HOME"; return 0; fi
  command -v java >/dev/null || ensure_apt openjdk-17-jdk-headless
  command -v mvn >/dev/null || ensure_apt maven
  local t0=$SECONDS tmp
  log "cassandra $CASSANDRA_VERSION: resolving jars from Maven Central"
  # Build in a scratch dir (no target/ in the clone) and swap in at the end,
  # so an interrupted install never looks complete.
  tmp="$(mktemp -d "$KASSETTE_CACHE/.cassandra-install.XXXXXX")"
  cp "$POM" "$tmp/pom.xml"
  mvn -B -Dstyle.color=never -f "$tmp/pom.xml" \
    dependency:copy-dependencies@cassandra-lib dependency:copy-dependencies@jolokia-agent \
    -Dkassette.lib.dir="$tmp/home/lib" -Dkassette.agent.dir="$tmp/home/agent" >"$tmp/mvn.log" 2>&1 \
    || { tail -n 40 "$tmp/mvn.log" >&2; rm -rf "$tmp"; die "maven could not resolve $POM"; }
  if [ ! -f "$tmp/home/lib/cassandra-all-$CASSANDRA_VERSION.jar" ] || [ ! -f "$tmp/home/agent/jolokia-agent-jvm.jar" ]; then
    rm -rf "$tmp"; die "maven finished but jars are missing"
  fi
  mkdir -p "$tmp/home/conf"
  # Quiet logging for nodetool and other client tools (like conf/logback-tools.xml).
  cat >"$tmp/home/conf/logback-tools.xml" <<'EOF'
<configuration>
  <appender name="STDERR" class="ch.qos.logback.core.ConsoleAppender">
    <target>System.err</target>
    <encoder><pattern>%-5level %date{"HH:mm:ss,SSS"} %msg%n</pattern></encoder>
  </appender>
  <root level="WARN"><appender-ref ref="STDERR"/></root>
  <logger name="org.apache.cassandra" level="ERROR"/>
</configuration>
EOF
  sha256sum <"$POM" | cut -d' ' -f1 >"$tmp/home/.installed"
  rm -rf "$C_HOME"
  mv "$tmp/home" "$C_HOME"
  rm -rf "$tmp"
  local jars=("$C_LIB"/*.jar)
  log "cassandra $CASSANDRA_VERSION: installed in $((SECONDS - t0))s (${#jars[@]} jars)"
}

require_installed() { installed || die "cassandra not installed: run scripts/cassandra.sh install"; }

# ---------------------------------------------------------------- nodetool

# nodetool [-n I] [-h HOST] [-p PORT] ARGS... — NodeTool against node I (default 1).
cmd_nodetool() {
  require_installed
  local n=1 host="" port="" pre=()
  while [ $# -gt 0 ]; do
    case "$1" in
      -n) n="$2"; shift 2 ;;
      -h | --host) host="$2"; shift 2 ;;
      -p | --port) port="$2"; shift 2 ;;
      --host=*) host="${1#*=}"; shift ;;
      --port=*) port="${1#*=}"; shift ;;
      -u | -pw | -pwf | --username | --password | --password-file) pre+=("$1" "$2"); shift 2 ;;
      *) break ;;
    esac
  done
  [[ "$n" =~ ^[1-9]$ ]] || die "nodetool: -n wants a node number"
  # JMX is local-only, so every node's JMX endpoint is on 127.0.0.1.
  exec java -cp "$C_LIB/*" "${JPMS_OPTS[@]}" \
    -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto \
    -Dcassandra.storagedir="$C_RUN/nodetool" \
    -Dlogback.configurationFile="file://$C_HOME/conf/logback-tools.xml" \
    org.apache.cassandra.tools.NodeTool \
    -h "${host:-127.0.0.1}" -p "${port:-$(node_jmx "$n")}" "${pre[@]}" "$@"
}

# ---------------------------------------------------------------- per-node helpers

# node_alive I — the node's recorded JVM is running (and is that node, not a reused pid).
node_alive() {
  local f; f="$(node_dir "$1")/cassandra.pid"
  pid_alive "$f" && tr '\0' ' ' <"/proc/$(cat "$f")/cmdline" 2>/dev/null | grep -q "$(node_dir "$1")/conf"
}

cql_open() { (exec 3<>"/dev/tcp/$(node_ip "$1")/9042") 2>/dev/null; }

# The ring as node 1 (the seed) sees it has exactly N nodes, all Up/Normal.
ring_ok() {
  local n="$1" out
  out="$(cmd_nodetool -n 1 status 2>/dev/null)" || return 1
  [ "$(grep -cE '^UN ' <<<"$out")" -eq "$n" ] && [ "$(grep -cE '^[UD][NLJM] ' <<<"$out")" -eq "$n" ]
}

cluster_healthy() {
  local n="$1" i
  for ((i = 1; i <= n; i++)); do node_alive "$i" && cql_open "$i" || return 1; done
  ring_ok "$n"
}

# tokens I N — initial_token list for node I of N: NUM_TOKENS vnodes per node,
# so that code paths for several token ranges per node (and ring wrap-around)
# are exercised, yet ownership is deterministic and nothing is allocated;
# all N*NUM_TOKENS tokens evenly spaced over the Murmur3 ring and interleaved
# between nodes. Written as (2j+1-T)*floor(2^63/T) so bash's 64-bit math
# never overflows.
NUM_TOKENS=4
tokens() {
  local i="$1" n="$2" t h k j out=()
  t=$((n * NUM_TOKENS)); h=$((9223372036854775807 / t))
  for ((k = 0; k < NUM_TOKENS; k++)); do
    j=$((k * n + i - 1))
    out+=($(((2 * j + 1 - t) * h)))
  done
  (IFS=,; echo "${out[*]}")
}

write_node_conf() {
  local i="$1" n="$2" d ip conf dd x
  d="$(node_dir "$i")"; ip="$(node_ip "$i")"; conf="$d/conf"
  mkdir -p "$conf/triggers" "$d/commitlog" "$d/saved_caches" "$d/hints" "$d/cdc" "$d/logs"
  dd=""
  for x in $(node_data_dirs "$i"); do mkdir -p "$x"; dd+="  - $x"$'\n'; done

  # Only what differs from Cassandra 5.0's built-in defaults (Config.java),
  # which match the shipped cassandra.yaml for everything not listed here.
  cat >"$conf/cassandra.yaml" <<EOF
# Generated by scripts/cassandra.sh — edits are overwritten on start.
cluster_name: '$CLUSTER_NAME'
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
num_tokens: $NUM_TOKENS
$([ -n "$PIN_HOOK" ] || echo "initial_token: '$(tokens "$i" "$n")'")
# Tokens are explicit and every node starts at once: nothing to stream.
auto_bootstrap: false
storage_compatibility_mode: $STORAGE_COMPAT

seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "$(node_ip 1):7000"
listen_address: $ip
rpc_address: $ip
storage_port: 7000
native_transport_port: 9042
start_native_transport: true
endpoint_snitch: GossipingPropertyFileSnitch

data_file_directories:
${dd}commitlog_directory: $d/commitlog
saved_caches_directory: $d/saved_caches
hints_directory: $d/hints
cdc_raw_directory: $d/cdc

authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
role_manager: CassandraRoleManager
network_authorizer: AllowAllNetworkAuthorizer

commitlog_sync: periodic
commitlog_sync_period: 10000ms
commitlog_segment_size: 32MiB
commitlog_total_space: 256MiB

# Sized for three nodes sharing two cores and a ~768 MiB heap each.
concurrent_reads: 8
concurrent_writes: 8
concurrent_counter_writes: 8
concurrent_materialized_view_writes: 4
concurrent_compactors: 1
memtable_flush_writers: 1
memtable_heap_space: 128MiB
memtable_offheap_space: 128MiB
file_cache_size: 64MiB
key_cache_size: 16MiB
native_transport_max_threads: 32

# Generous client timeouts: GC pauses on a loaded CI box must not fail tests.
read_request_timeout: 10000ms
range_request_timeout: 20000ms
write_request_timeout: 10000ms
counter_write_request_timeout: 10000ms
truncate_request_timeout: 60000ms
# Internal messages (gossip echo, schema pulls) use this one; shutdown waits
# for their callbacks to expire, so keep it short for a quick 'stop'.
request_timeout: 5000ms

# Defaults that backups rely on, stated so they are not lost by accident.
auto_snapshot: true
snapshot_before_compaction: false
incremental_backups: false

materialized_views_enabled: false
sasi_indexes_enabled: false
user_defined_functions_enabled: false
cdc_enabled: false
disk_failure_policy: stop
commit_failure_policy: stop
EOF

  printf 'dc=%s\nrack=%s%s\n' "$DC_NAME" "$RACK_PREFIX" "$i" >"$conf/cassandra-rackdc.properties"

  cat >"$conf/logback.xml" <<EOF
<configuration scan="false">
  <appender name="SYSTEMLOG" class="ch.qos.logback.core.rolling.RollingFileAppender">
    <file>$d/logs/system.log</file>
    <rollingPolicy class="ch.qos.logback.core.rolling.FixedWindowRollingPolicy">
      <fileNamePattern>$d/logs/system.log.%i.zip</fileNamePattern>
      <minIndex>1</minIndex><maxIndex>3</maxIndex>
    </rollingPolicy>
    <triggeringPolicy class="ch.qos.logback.core.rolling.SizeBasedTriggeringPolicy">
      <maxFileSize>20MB</maxFileSize>
    </triggeringPolicy>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="SYSTEMLOG"/></root>
</configuration>
EOF
}

start_node() {
  local i="$1" d conf jmx jamm extra=() user_opts=()
  d="$(node_dir "$i")"; conf="$d/conf"; jmx="$(node_jmx "$i")"
  jamm=("$C_LIB"/jamm-*.jar)   # jamm as agent: exact on-heap memtable sizing
  read -ra user_opts <<<"${KASSETTE_CASSANDRA_JVM_OPTS:-}"
  # Jolokia (JMX over HTTP) on the node's own address: the agents drive
  # their node through it without starting a JVM per call.
  # discoveryEnabled=false: no multicast discovery traffic off loopback.
  extra+=("-javaagent:$C_AGENT=host=$(node_ip "$i"),port=$JOLOKIA_PORT,discoveryEnabled=false")
  # Fast start for a throwaway cluster: no gossip-settle wait (it would add
  # ~10 s per node); auto_bootstrap is off, so ring_delay only bounds how long
  # nodes 2/3 wait for the seed's first gossip reply: kept at the default
  # 30 s (a smaller value saved nothing in measurements and risks "Unable to
  # gossip with any peers" on a loaded box). C1-only JIT (TieredStopAtLevel=1)
  # cuts startup of three JVMs on two cores by roughly a third; throughput
  # is irrelevant here. -Xms below -Xmx keeps RSS near what is used, since
  # Cassandra mlockall()s (as root) all memory committed at startup.
  rm -f "$d/cassandra.pid"
  # setsid: own session, so the node outlives the calling shell/terminal.
  # The inner shell records its pid, then execs java with that pid.
  # shellcheck disable=SC2016
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$d/cassandra.pid" \
    java -cp "$conf:$C_LIB/*" \
    "${JPMS_OPTS[@]}" \
    "-javaagent:${jamm[0]}" "${extra[@]}" \
    -Xms"$HEAP_MIN" -Xmx"$HEAP" -XX:MaxDirectMemorySize=256M -Xss256k \
    -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1 \
    -XX:G1RSetUpdatingPauseTimePercent=5 -XX:MaxGCPauseMillis=300 \
    -XX:InitiatingHeapOccupancyPercent=70 \
    -XX:+UseThreadPriorities -XX:+PerfDisableSharedMem \
    -XX:TieredStopAtLevel=1 "${user_opts[@]}" \
    -XX:+HeapDumpOnOutOfMemoryError -XX:HeapDumpPath="$d/logs" -XX:+ExitOnOutOfMemoryError \
    "-Xlog:gc=info:file=$d/logs/gc.log:time,uptime:filecount=2,filesize=10M" \
    -ea -da:net.openhft... \
    -Dio.netty.tryReflectionSetAccessible=true \
    -Dio.netty.allocator.useCacheForAllThreads=true -Dio.netty.allocator.maxOrder=11 \
    -Dcassandra.config="file://$conf/cassandra.yaml" \
    -Dcassandra-rackdc.properties="file://$conf/cassandra-rackdc.properties" \
    -Dcassandra.storagedir="$d" -Dcassandra.logdir="$d/logs" \
    -Dlogback.configurationFile="file://$conf/logback.xml" \
    -Dcassandra.triggers_dir="$conf/triggers" \
    -Dcassandra.jmx.local.port="$jmx" \
    -Dcassandra.skip_wait_for_gossip_to_settle=0 \
    -Dcassandra.ring_delay_ms=30000 \
    -Dcassandra.superuser_setup_delay_ms=0 \
    org.apache.cassandra.service.CassandraDaemon \
    </dev/null >>"$d/logs/stdout.log" 2>&1 9>&- &
  local t
  for ((t = 0; t < 50; t++)); do [ -s "$d/cassandra.pid" ] && break; sleep 0.1; done
  log "node$i: started pid $(cat "$d/cassandra.pid") ($(node_ip "$i"), jmx $jmx)"
}

# ensure_jolokia I — a running node started before every node carried
# Jolokia gets it attached now (the agent jar's launcher uses the JVM attach
# API; nothing restarts).
ensure_jolokia() {
  local i="$1" pid
  curl -fs -m 5 -o /dev/null "$(jolokia_url "$i")/version" && return 0
  pid="$(cat "$(node_dir "$i")/cassandra.pid")"
  java -jar "$C_AGENT" --host "$(node_ip "$i")" --port "$JOLOKIA_PORT" --discoveryEnabled false \
    --startTimeout 10000 --quiet start "$pid" || log "node$i: could not attach Jolokia (nodetool still works)"
}

write_env() {
  local n="$1" i nodes=() f="$C_ENV"
  for ((i = 1; i <= n; i++)); do nodes+=("$(node_ip "$i")"); done
  {
    echo "# Generated by scripts/cassandra.sh start $n"
    echo "export KASSETTE_TEST_CASSANDRA_VERSION=$CASSANDRA_VERSION"
    echo "export KASSETTE_TEST_CASSANDRA_CLUSTER=$CLUSTER_NAME"
    echo "export KASSETTE_TEST_CASSANDRA_DC=$DC_NAME"
    echo "export KASSETTE_TEST_CASSANDRA_NODE_COUNT=$n"
    echo "export KASSETTE_TEST_CASSANDRA_NODES=$(IFS=,; echo "${nodes[*]}")"
    echo "export KASSETTE_TEST_CASSANDRA_CQL_PORT=9042"
    echo "export KASSETTE_TEST_CASSANDRA_HOME=$C_HOME"
    echo "export KASSETTE_TEST_NODETOOL=$KASSETTE_REPO/scripts/nodetool"
    echo "export KASSETTE_TEST_JOLOKIA_URL=$(jolokia_url 1)"
    for ((i = 1; i <= n; i++)); do
      echo "export KASSETTE_TEST_CASSANDRA_JMX_$i=127.0.0.1:$(node_jmx "$i")"
      echo "export KASSETTE_TEST_CASSANDRA_DIR_$i=$(node_dir "$i")"
      echo "export KASSETTE_TEST_CASSANDRA_DATA_$i=$(node_data_dirs "$i" | tr ' ' ':')"
      echo "export KASSETTE_TEST_JOLOKIA_URL_$i=$(jolokia_url "$i")"
    done
  } >"$f.tmp"
  mv "$f.tmp" "$f"
}

# ---------------------------------------------------------------- commands

cmd_start() {
  local n have i t0=$SECONDS
  cmd_install
  mkdir -p "$C_RUN"
  # Tokens and data belong to one cluster shape; refuse to mix shapes.
  # Without N: the shape already on disk, else 3.
  have="$(cat "$C_RUN/nodes" 2>/dev/null || true)"
  n="${1:-${have:-3}}"
  [ "$n" = 1 ] || [ "$n" = 3 ] || die "start: node count must be 1 or 3"
  if [ -n "$have" ] && [ "$have" != "$n" ]; then
    die "$C_RUN holds a $have-node cluster; run 'scripts/cassandra.sh clean' before 'start $n'"
  fi
  echo "$n" >"$C_RUN/nodes"

  if cluster_healthy "$n"; then
    for ((i = 1; i <= n; i++)); do ensure_jolokia "$i"; done
    write_env "$n"
    log "cassandra: $n-node cluster already up"
    return 0
  fi

  for ((i = 1; i <= n; i++)); do
    if node_alive "$i"; then continue; fi
    write_node_conf "$i" "$n"
    if [ -n "$PIN_HOOK" ]; then
      $PIN_HOOK "$i" "$(node_dir "$i")/conf/cassandra.yaml" "$RACK_PREFIX$i" \
        "$(node_data_dirs "$i" | tr ' ' ',')" || die "node$i: $PIN_HOOK failed"
    fi
    start_node "$i"
  done

  # Wait for CQL on every node, then for a ring of N nodes all UN;
  # fail fast (with the log tail) if a JVM dies on the way.
  local up
  while :; do
    up=1
    for ((i = 1; i <= n; i++)); do
      if ! node_alive "$i"; then
        log "node$i died; last lines of its logs:"
        tail -n 30 "$(node_dir "$i")/logs/system.log" "$(node_dir "$i")/logs/stdout.log" >&2 || true
        die "cassandra node$i failed to start"
      fi
      cql_open "$i" || up=0
    done
    [ "$up" = 1 ] && ring_ok "$n" && break
    [ "$((SECONDS - t0))" -lt "$START_TIMEOUT" ] || die "cassandra not up after ${START_TIMEOUT}s (logs in $C_RUN/node*/logs)"
    sleep 1
  done
  write_env "$n"
  log "cassandra: $n-node cluster up in $((SECONDS - t0))s; env in $KASSETTE_RUN/cassandra.env"
}

cmd_stop() {
  local i pids=()
  # All nodes at once: each drains (flushes memtables) on TERM; stop_pidfile
  # KILLs after 20 s. Shutdown waits for internal request callbacks to time
  # out (request_timeout), hence that setting is kept short.
  for ((i = 1; i <= 3; i++)); do
    if node_alive "$i"; then
      stop_pidfile "$(node_dir "$i")/cassandra.pid" &
      pids+=($!)
    else
      rm -f "$(node_dir "$i")/cassandra.pid"
    fi
  done
  [ ${#pids[@]} -eq 0 ] || wait "${pids[@]}"
  log "cassandra: stopped"
}

cmd_clean() {
  cmd_stop
  rm -rf "$C_RUN" "$C_ENV"
  log "cassandra: data removed"
}

# The disaster: every node stopped and its data, commitlog, saved caches and
# hints deleted (configuration and logs kept); the next start makes new
# nodes with new host ids.
cmd_wipe() {
  local i x d
  cmd_stop
  for ((i = 1; i <= 3; i++)); do
    d="$(node_dir "$i")"
    [ -d "$d" ] || continue
    for x in $(node_data_dirs "$i") "$d/commitlog" "$d/saved_caches" "$d/hints" "$d/cdc"; do
      rm -rf "$x"
    done
  done
  log "cassandra: data, commitlog, saved caches and hints deleted"
}

# stop-node I: stop one node (drains on TERM), keep its data; `start`
# brings it back.
cmd_stop_node() {
  local i="$1"
  [[ "$i" =~ ^[1-3]$ ]] || die "stop-node: node 1, 2 or 3"
  stop_pidfile "$(node_dir "$i")/cassandra.pid"
  log "node$i: stopped"
}

cmd_status() { cmd_nodetool -n "${1:-1}" status; }

# One start/stop/clean at a time (e.g. two test runs starting the cluster);
# the nodes themselves are started with fd 9 closed so they don't hold it.
lock() { exec 9>"$C_RUN.lock"; flock 9; }

case "${1:-}" in
  install) lock; cmd_install ;;
  start) shift; lock; cmd_start "$@" ;;
  stop) lock; cmd_stop ;;
  clean) lock; cmd_clean ;;
  wipe) lock; cmd_wipe ;;
  stop-node) shift; lock; cmd_stop_node "$@" ;;
  status) shift; cmd_status "$@" ;;
  nodetool) shift; cmd_nodetool "$@" ;;
  *) echo "usage: $0 install | start [1|3] | stop | stop-node I | clean | wipe | status [node] | nodetool [-n I] ARGS..." >&2; exit 2 ;;
esac
