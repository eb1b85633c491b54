#!/usr/bin/env bash
# The kassette container image, built on this machine without a container
# engine and without a base image (`make image`):
#
#   scripts/image.sh install   install umoci (Debian package, version checked)
#   scripts/image.sh build     build the binary, assemble the image, unpack it,
#                              write $KASSETTE_RUN/image.env
#   scripts/image.sh env       print the image.env lines of the last build
#
# What is in it (images/Dockerfile builds the same file set with docker or
# podman): one layer holding
#   /usr/local/bin/kassette              statically linked (glibc, crt-static):
#                                        no loader, no shared library
#   /etc/ssl/certs/ca-certificates.crt   Debian's Mozilla CA bundle
#   /etc/passwd, /etc/group,             from images/rootfs/: root, nobody and
#   /etc/nsswitch.conf, /etc/hosts,      nonroot (65532); hosts: files dns;
#   /etc/resolv.conf                     loopback names; resolver defaults (the
#                                        runtime mounts its own over both)
#   /tmp                                 an empty mount point (1777); the charts
#                                        mount a volume there if anything needs
#                                        one, the root filesystem is read-only
# and a config with user 65532:65532, entrypoint /usr/local/bin/kassette,
# PATH and SSL_CERT_FILE, and the OCI labels (title, description, version,
# source, licenses, revision, created).
#
# Why umoci (Debian's 0.4.7) rather than crane: umoci writes and unpacks an
# OCI image layout on disk, which is all this needs (`init`, `new`, `unpack`,
# `repack`, `config`); crane is registry-first, would have to be built from
# the Go module proxy, and cannot unpack a root filesystem. Timestamps come
# from the commit (SOURCE_DATE_EPOCH), so the same binary at the same commit
# gives the same image digest.
#
# Artifacts (outside git, beside cargo's): $CARGO_TARGET_DIR/image/
#   oci/            the OCI image layout, tagged with the crate version
#   bundle/rootfs/  that image unpacked (what the tests chroot into)
# and $KASSETTE_RUN/image.env with KASSETTE_TEST_IMAGE_{OCI,ROOTFS,REF}.
#
# The binary is built with cargo's `image` profile (Cargo.toml says why it is
# not `release`) for the host's triple given explicitly, so the crt-static
# flag reaches only the target (build scripts and proc macros stay dynamic)
# and cargo's incremental cache in $CARGO_TARGET_DIR/<triple>/image is reused.
# The image is reassembled only when an input changed (binary, CA bundle,
# files, labels, this script).
#
# KASSETTE_IMAGE_BUILD chooses the binary:
#   release (default; `make image`): the `image` profile, statically linked,
#           as described above: what users run.
#   test    (`make test`): the debug binary `cargo test` has already built,
#           with exactly the shared libraries it needs (`ldd`) and the
#           dynamic loader at their paths. Same layout, config and labels
#           (plus org.kassette.image.build=test); it spares the test suite a
#           second compile of the whole dependency tree (~20 min on 2 cores).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

UMOCI_VERSION="0.4.7"
PROFILE="image"
BUILD="${KASSETTE_IMAGE_BUILD:-release}"
case "$BUILD" in release | test) ;; *) die "KASSETTE_IMAGE_BUILD: \"$BUILD\" is not one of release, test" ;; esac
NAME="kassette"
TARGET_DIR="${CARGO_TARGET_DIR:-$KASSETTE_REPO/target}"
OUT="$TARGET_DIR/image"
CA_BUNDLE="/etc/ssl/certs/ca-certificates.crt"
ENV_FILE="$KASSETTE_RUN/image.env"

cmd_install() {
  ensure_apt umoci ca-certificates binutils jq
  local have
  have="$(umoci --version | awk '{print $3}')"
  case "$have" in
    "$UMOCI_VERSION" | "$UMOCI_VERSION"+*) ;;
    *) die "umoci $have is installed, scripts/image.sh is pinned to $UMOCI_VERSION (update UMOCI_VERSION after checking the new one)" ;;
  esac
}

# crate_field NAME — a [package] field from cargo metadata.
crate_field() {
  cargo metadata --locked --offline --no-deps --format-version 1 |
    jq -r --arg n "$NAME" --arg f "$1" '.packages[] | select(.name == $n) | .[$f] // empty'
}

host_triple() { rustc -vV | sed -n 's/^host: //p'; }

# build_binary — prints the path of the binary to put in the image.
build_binary() {
  if [ "$BUILD" = test ]; then
    log "using the debug build of $NAME with its shared libraries (KASSETTE_IMAGE_BUILD=test)"
    cargo build --locked --bin "$NAME" >&2
    echo "$TARGET_DIR/debug/$NAME"
    return 0
  fi
  local triple; triple="$(host_triple)"
  [ -n "$triple" ] || die "cannot tell the host triple from rustc -vV"
  log "building $NAME (profile $PROFILE, $triple, crt-static)"
  # RUSTFLAGS with an explicit --target apply to the target only.
  RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --locked --profile "$PROFILE" --target "$triple" --bin "$NAME" >&2
  echo "$TARGET_DIR/$triple/$PROFILE/$NAME"
}

# check_static FILE — refuse a binary that needs a loader or shared libraries:
# nothing from a host is in the image to satisfy them.
check_static() {
  if readelf -lW "$1" | grep -q 'program interpreter'; then
    die "$1 asks for a dynamic loader; the image has none"
  fi
  if readelf -dW "$1" | grep -q '(NEEDED)'; then
    die "$1 needs shared libraries: $(readelf -dW "$1" | grep '(NEEDED)' | tr -s ' ' | cut -d' ' -f6- | tr '\n' ' ')"
  fi
}

revision() {
  local rev; rev="$(git -C "$KASSETTE_REPO" rev-parse HEAD 2>/dev/null || echo unknown)"
  if [ -n "$(git -C "$KASSETTE_REPO" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    rev="$rev-dirty"
  fi
  echo "$rev"
}

# The commit's time: reproducible timestamps in layer and config.
source_date_epoch() {
  echo "${SOURCE_DATE_EPOCH:-$(git -C "$KASSETTE_REPO" log -1 --format=%ct 2>/dev/null || echo 0)}"
}

# shared_libraries BIN — the loader and every shared library BIN needs, as
# absolute host paths (what `ldd` resolves them to).
shared_libraries() {
  ldd "$1" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u
}

# stage DIR BIN — the image's files, owned by root, stamped with the commit time.
stage() {
  local dir="$1" bin="$2" epoch="$3"
  rm -rf "$dir"
  install -d -m 0755 "$dir/usr/local/bin" "$dir/etc/ssl/certs"
  install -d -m 1777 "$dir/tmp"
  install -m 0755 "$bin" "$dir/usr/local/bin/$NAME"
  install -m 0644 "$CA_BUNDLE" "$dir/etc/ssl/certs/ca-certificates.crt"
  install -m 0644 "$KASSETTE_REPO"/images/rootfs/etc/{passwd,group,nsswitch.conf,hosts,resolv.conf} "$dir/etc/"
  if [ "$BUILD" = test ]; then
    local lib
    for lib in $(shared_libraries "$bin"); do
      install -D -m 0755 "$(readlink -f "$lib")" "$dir$lib"
    done
  fi
  [ "$(id -u)" -eq 0 ] && chown -R 0:0 "$dir"
  find "$dir" -exec touch -h -d "@$epoch" {} +
}

# assemble LAYOUT TAG STAGE EPOCH LABEL... — a fresh one-layer image.
# The layer comes from `umoci repack` of an unpacked empty image with the
# staged files copied in: umoci 0.4.7's `insert` leaves the tar without its
# end-of-archive blocks (opencontainers/umoci#436, fixed after 0.4.7), which
# GNU tar and scanners reject; repack writes a complete archive.
assemble() {
  local layout="$1" tag="$2" dir="$3" epoch="$4"; shift 4
  local created; created="$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)"
  local rootless=(); [ "$(id -u)" -eq 0 ] || rootless=(--rootless)
  local bundle="$layout.bundle"
  rm -rf "$layout" "$bundle"
  umoci init --layout "$layout"
  umoci new --image "$layout:$tag"
  umoci unpack "${rootless[@]}" --image "$layout:$tag" "$bundle" >/dev/null
  cp -a "$dir/." "$bundle/rootfs/"
  touch -h -d "@$epoch" "$bundle/rootfs"
  umoci repack "${rootless[@]}" --image "$layout:$tag" \
    --history.created "$created" --history.created_by "scripts/image.sh: kassette binary, CA certificates, passwd" \
    "$bundle"
  rm -rf "$bundle"
  local labels=() label
  for label in "$@"; do labels+=(--config.label "$label"); done
  umoci config --image "$layout:$tag" --created "$created" --history.created "$created" \
    --architecture "$(go_arch)" --os linux \
    --config.user 65532:65532 --config.workingdir / \
    --config.entrypoint "/usr/local/bin/$NAME" \
    --config.env "PATH=/usr/local/bin:/usr/bin:/bin" \
    --config.env "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" \
    "${labels[@]}"
  umoci gc --layout "$layout"
}

# The OCI architecture name of the host.
go_arch() {
  case "$(uname -m)" in
    x86_64) echo amd64 ;;
    aarch64) echo arm64 ;;
    *) uname -m ;;
  esac
}

write_env() {
  local ref="$1"
  {
    echo "export KASSETTE_TEST_IMAGE_OCI=$OUT/oci"
    echo "export KASSETTE_TEST_IMAGE_ROOTFS=$OUT/bundle/rootfs"
    echo "export KASSETTE_TEST_IMAGE_REF=$ref"
  } >"$ENV_FILE.tmp"
  mv -f "$ENV_FILE.tmp" "$ENV_FILE"
}

cmd_build() {
  cmd_install
  local t0=$SECONDS bin version tag epoch
  bin="$(build_binary)"
  [ "$BUILD" = test ] || check_static "$bin"
  local built=$((SECONDS - t0))
  version="$(crate_field version)"
  tag="$version"
  epoch="$(source_date_epoch)"
  local labels=(
    "org.opencontainers.image.title=$NAME"
    "org.opencontainers.image.description=$(crate_field description)"
    "org.opencontainers.image.version=$version"
    "org.opencontainers.image.source=$(crate_field repository)"
    "org.opencontainers.image.licenses=$(crate_field license)"
    "org.opencontainers.image.revision=$(revision)"
    "org.opencontainers.image.created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)"
  )
  [ "$BUILD" = test ] && labels+=("org.kassette.image.build=test")
  local stamp
  stamp="$({
    [ "$BUILD" = test ] && sha256sum $(shared_libraries "$bin") | cut -d' ' -f1
    sha256sum "$bin" "$CA_BUNDLE" "$KASSETTE_REPO"/images/rootfs/etc/* "${BASH_SOURCE[0]}" | cut -d' ' -f1
    printf '%s\n' "$tag" "$epoch" "${labels[@]}"
  } | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$OUT/stamp" 2>/dev/null)" = "$stamp" ] && [ -x "$OUT/bundle/rootfs/usr/local/bin/$NAME" ]; then
    log "image $NAME:$tag is up to date (binary ${built}s)"
  else
    mkdir -p "$OUT"
    rm -f "$OUT/stamp"
    stage "$OUT/stage" "$bin" "$epoch"
    assemble "$OUT/oci.new" "$tag" "$OUT/stage" "$epoch" "${labels[@]}"
    rm -rf "$OUT/bundle.new"
    local rootless=(); [ "$(id -u)" -eq 0 ] || rootless=(--rootless)
    umoci unpack "${rootless[@]}" --image "$OUT/oci.new:$tag" "$OUT/bundle.new" >/dev/null
    # Swap the finished pair in; image.env never points at a half-built one.
    rm -rf "$OUT/oci" "$OUT/bundle" "$OUT/stage"
    mv "$OUT/oci.new" "$OUT/oci"
    mv "$OUT/bundle.new" "$OUT/bundle"
    echo "$stamp" >"$OUT/stamp"
    log "image $NAME:$tag assembled in $((SECONDS - t0 - built))s (binary ${built}s)"
  fi
  write_env "$NAME:$tag"
  report_size "$tag"
}

report_size() {
  local manifest layer
  manifest="$(jq -r --arg t "$1" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t) | .digest' "$OUT/oci/index.json")"
  layer="$(jq -r '[.layers[].size] | add' "$OUT/oci/blobs/sha256/${manifest#sha256:}")"
  log "$NAME:$1 $manifest: $((layer / 1024)) KiB compressed, $(du -sk "$OUT/bundle/rootfs" | cut -f1) KiB unpacked; $ENV_FILE written"
}

case "${1:-}" in
  install) cmd_install ;;
  build) cmd_build ;;
  env) cat "$ENV_FILE" ;;
  *) echo "usage: $0 install|build|env" >&2; exit 2 ;;
esac
