# The two commands that matter: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
CARGO ?= cargo
# Recipes see none of the caller's LASECT_* variables but the bench's and the demo's knobs and
# LASECT_LOG: a shell that had sourced .lasect/demo/env would otherwise point the test suite or
# the bench at the demo's store (LASECT_STORE_DSN). Targets set what they need on their lines.
unexport $(filter-out LASECT_BENCH_% LASECT_DEMO_% LASECT_LOG,$(filter LASECT_%,$(.VARIABLES)))

.PHONY: deps build test lint demo bench bench-quick clean

deps:
	@scripts/deps.sh

build: deps
	$(CARGO) build --workspace --bins

lint: deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Everything CI runs: formatting, lints, then the whole suite against real
# PostgreSQL clusters and the real binaries (end-to-end tests need --bins).
test: lint
	@scripts/deps.sh --test
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace --no-fail-fast

demo: deps
	@scripts/demo.sh

# Ingest and agent benchmarks (release build, a real store with fsync on; a few
# minutes): writes target/bench/summary.json. Not part of `make test`.
bench:
	@scripts/deps.sh --bench
	@bench/run.sh

# Only ingest_rows_per_s and wire_bytes_per_sample (about two minutes).
bench-quick: deps
	@LASECT_BENCH_QUICK=1 bench/run.sh

clean:
	rm -rf .lasect
