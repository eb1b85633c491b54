# kassette — see README.md. Every target works on a fresh machine of this
# project's kind: tools are installed into $(KASSETTE_CACHE) on first use.

SHELL := /bin/bash
CARGO ?= cargo

.PHONY: demo test test-dr bench bench-quick fuzz env env-down env-clean env-status build image check lint fmt

## demo: the main job end to end on local defaults (cluster, storage, backup, restore)
demo: build
	scripts/demo.sh

## test: the whole suite against the real services (starts them first)
test:
	scripts/test.sh

## test-dr: the disaster-recovery proofs, on a second 3-node cluster
## (127.0.0.4-6) the test starts and removes; the shared environment must be up
test-dr:
	scripts/env.sh up
	$(CARGO) test --locked --test disaster_recovery -- --ignored --test-threads=1

## fuzz: every cargo-fuzz target for a bounded time (KASSETTE_FUZZ_SECONDS
## each, default 60; nightly toolchain); not part of `make test`
fuzz:
	scripts/fuzz.sh

## bench: side-by-side benchmark tables — kassette vs a raw S3 client vs
## Medusa 0.31: throughput, CPU-s (per GiB), peak RSS, storage requests;
## Markdown + JSON in .run/bench/ (docs/benchmarks.md; ~20–30 min on 2 cores)
bench:
	scripts/bench.sh

## bench-quick: the same sections on small data, 2 rounds, no Azure (a few minutes)
bench-quick:
	KASSETTE_BENCH_QUICK=1 scripts/bench.sh

## env: install and start the local test environment (idempotent)
env:
	scripts/env.sh up

env-down:
	scripts/env.sh down

env-clean:
	scripts/env.sh clean

env-status:
	scripts/env.sh status

build:
	$(CARGO) build --release --locked

## image: the OCI image, assembled here without a container engine (scripts/image.sh)
image:
	scripts/image.sh build

## check: formatting and lints, as CI would want them
check: lint

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
