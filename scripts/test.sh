#!/usr/bin/env bash
# `make test`: bring the test environment up (installing what is missing),
# then run every test against it. The Rust build runs while the environment
# installs and starts, so a cold run pays for the slower of the two, not both;
# the image (`make image`) is built right after the test binaries.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$KASSETTE_REPO"

cargo fmt --all -- --check || die "code is not formatted: run 'make fmt'"

mkdir -p "$KASSETTE_RUN/logs"
# umoci comes from apt, which the environment's installs may use at once.
scripts/image.sh install
build_log="$KASSETTE_RUN/logs/cargo-build.log"
# The image (tests/image.rs and the end-to-end tests run it) after the test
# build, in the same background job: two cargo builds at once would only
# queue on the target directory's lock, and the two cores are busy enough.
{ cargo test --locked --no-run && KASSETTE_IMAGE_BUILD=test scripts/image.sh build; } >"$build_log" 2>&1 &
build_pid=$!

env_ok=0
scripts/env.sh up || env_ok=$?
build_ok=0
wait "$build_pid" || build_ok=$?
[ "$build_ok" -eq 0 ] || { tail -n 40 "$build_log" >&2; die "cargo build or image build failed"; }
[ "$env_ok" -eq 0 ] || die "test environment did not start (logs in $KASSETTE_RUN/logs)"

# Tests share one cluster; two at a time keeps a 2-core machine responsive.
test_log="$KASSETTE_RUN/logs/cargo-test.log"
status=0
cargo test --locked -- --test-threads="${KASSETTE_TEST_THREADS:-2}" 2>&1 | tee "$test_log" || status=$?
# The disaster-recovery proofs start a second 3-node cluster (127.0.0.4-6)
# of their own: run alone, after the rest, so the two clusters never compete
# with the shared-cluster tests (KASSETTE_SKIP_DR=1 leaves them out).
if [ -z "${KASSETTE_SKIP_DR:-}" ]; then
  cargo test --locked --test disaster_recovery -- --ignored --test-threads=1 2>&1 | tee -a "$test_log" || status=$?
fi
# One closing line for the whole suite (cargo prints one per test binary,
# the last being the doc-tests').
awk '/^test result:/ { p += $4; f += $6; i += $8 }
     END { printf "summary: %d passed, %d failed, %d skipped\n", p, f, i }' "$test_log" |
  tee "$KASSETTE_RUN/logs/summary.txt"
exit "$status"
