# The two commands that matter: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
CARGO ?= cargo
# Recipes see none of the caller's LASECT_* variables but the bench's and the demo's knobs and
# LASECT_LOG: a shell that had sourced .lasect/demo/env would otherwise point the test suite or
# the bench at the demo's store (LASECT_STORE_DSN). Targets set what they need on their lines.
unexport $(filter-out LASECT_BENCH_% LASECT_DEMO_% LASECT_LOG,$(filter LASECT_%,$(.VARIABLES)))

.PHONY: deps build test test-pg18 test-pg13 lint demo bench bench-quick package clean

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
	@$(MAKE) --no-print-directory test-pg18
	@$(MAKE) --no-print-directory test-pg13

# The collector tests once more (the agent's integration tests, one binary, and
# the end-to-end family tests), against PostgreSQL 18 (the suite above runs
# on the installed server, Debian's 15): its binaries come from
# `scripts/deps.sh --pg18`; with LASECT_PG_MAJOR every cluster the harness
# starts must be 18, or the test fails (never a silent run on 15).
# The e2e tests are one binary: its collector tests are picked by module (a filter would
# apply to every binary of the invocation, hence two, the second run even if the first fails).
PG18_TESTS := -p lasect-testkit --test harness -p lasect-agent --test agent
PG18_E2E := --test main -- families:: logs:: replication_families::
test-pg18:
	@bindir="$$(scripts/deps.sh --pg18)" && \
	$(CARGO) build --workspace --bins && \
	{ LASECT_PG_BINDIR="$$bindir" LASECT_PG_MAJOR=18 $(CARGO) test --no-fail-fast $(PG18_TESTS); \
	  first=$$?; \
	  LASECT_PG_BINDIR="$$bindir" LASECT_PG_MAJOR=18 $(CARGO) test --no-fail-fast -p lasect-e2e $(PG18_E2E) && \
	  exit $$first; }

# The oldest major the collectors claim (13): the end-to-end tests of the families whose SQL is
# chosen by server version, against PostgreSQL 13 from `scripts/deps.sh --pg13` (a minute or two).
PG13_E2E := --test main -- families:: replication_families::
test-pg13:
	@bindir="$$(scripts/deps.sh --pg13)" && \
	$(CARGO) build --workspace --bins && \
	LASECT_PG_BINDIR="$$bindir" LASECT_PG_MAJOR=13 $(CARGO) test --no-fail-fast -p lasect-e2e $(PG13_E2E)

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

# .deb and .rpm packages of lasect-agent, lasect-ingest, lasect-api and lasect (the CLI),
# built from release binaries into target/packages/ (packaging/README.md).
package:
	@scripts/deps.sh --package
	$(CARGO) build --release -p lasect-agent -p lasect-ingest -p lasect-api -p lasect-cli --bins
	@scripts/package.sh --bindir target/release --out target/packages

clean:
	rm -rf .lasect
