#!/usr/bin/env bash
# `make fuzz`: run every cargo-fuzz target of fuzz/ for a bounded time each
# (KASSETTE_FUZZ_SECONDS, default 60) and print the executions each reached.
# Not part of `make test`. Installs cargo-fuzz, pinned, into
# $KASSETTE_CACHE (once). Uses the nightly toolchain when rustup has one;
# otherwise the stable one with RUSTC_BOOTSTRAP=1 (cargo-fuzz passes `-Z`
# flags; with `--sanitizer none` the instrumentation itself — SanitizerCoverage
# for libFuzzer — needs only stable `-C` flags). Instrumented builds go to
# fuzz/target; corpora to fuzz/corpus (both ignored by git).
#
#   scripts/fuzz.sh            every target
#   scripts/fuzz.sh manifest   one target
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$KASSETTE_REPO"

CARGO_FUZZ_VERSION=0.13.1
FUZZ_ROOT="$KASSETTE_CACHE/cargo-fuzz-$CARGO_FUZZ_VERSION"
SECONDS_EACH="${KASSETTE_FUZZ_SECONDS:-60}"

if rustup toolchain list | grep -q '^nightly'; then
  toolchain=+nightly
else
  log "no nightly toolchain: building with stable and RUSTC_BOOTSTRAP=1"
  toolchain=+stable
  export RUSTC_BOOTSTRAP=1
fi
if [ ! -x "$FUZZ_ROOT/bin/cargo-fuzz" ]; then
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION into $FUZZ_ROOT"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --root "$FUZZ_ROOT" >&2
fi
export PATH="$FUZZ_ROOT/bin:$PATH"

targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo "$toolchain" fuzz list)
# One build of every target first (nice: the machine is shared), so each
# target's time budget is spent fuzzing.
log "building the fuzz targets"
nice -n 10 cargo "$toolchain" fuzz build --sanitizer none >&2
mkdir -p "$KASSETTE_RUN/logs"
summary="$KASSETTE_RUN/logs/fuzz-summary.txt"
: >"$summary"
for target in "${targets[@]}"; do
  log "fuzzing $target for ${SECONDS_EACH}s"
  out="$KASSETTE_RUN/logs/fuzz-$target.log"
  # Corpora live under fuzz/corpus/<target> (seeded from fuzz/seeds).
  mkdir -p "fuzz/corpus/$target"
  status=0
  nice -n 10 cargo "$toolchain" fuzz run --sanitizer none "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$SECONDS_EACH" -rss_limit_mb=4096 -max_len=65536 >"$out" 2>&1 || status=$?
  execs="$(grep -Eo '^(#[0-9]+|Done [0-9]+ runs)' "$out" | tail -n 1 | tr -dc '0-9' || true)"
  printf '%s: %s executions in %ss, exit %s\n' "$target" "${execs:-0}" "$SECONDS_EACH" "$status" | tee -a "$summary"
  [ "$status" -eq 0 ] || { tail -n 40 "$out" >&2; die "fuzz target $target failed (see $out)"; }
done
