#!/usr/bin/env bash
# Installs what building, testing and the demo need, and only what is missing:
# a Rust toolchain, a C compiler, PostgreSQL server + contrib, curl; with
# --bench also what `make bench` runs (jq, pgbench, prometheus-postgres-exporter); with
# --test also Schemathesis (the OpenAPI fuzzer of e2e/tests/openapi_fuzz.rs) in
# target/schemathesis-venv.
# Debian/Ubuntu (apt-get). Safe to run repeatedly.
set -euo pipefail

have_pg_server() {
    command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ] && return 0
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}

missing=()
have_pg_server || missing+=(postgresql postgresql-contrib)
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v runuser >/dev/null 2>&1 || missing+=(util-linux)
# `make bench` (scripts/deps.sh --bench) also compares the agent with the
# Prometheus exporter and drives it with pgbench and curl.
# `make test` (scripts/deps.sh --test) also runs Schemathesis, from PyPI, in a venv.
if [ "${1:-}" = "--test" ]; then
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
fi
if [ "${1:-}" = "--bench" ]; then
    command -v jq >/dev/null 2>&1 || missing+=(jq)
    command -v pgbench >/dev/null 2>&1 || missing+=(postgresql-client)
    command -v prometheus-postgres-exporter >/dev/null 2>&1 || missing+=(prometheus-postgres-exporter)
fi

if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "need root or sudo to install: ${missing[*]}" >&2; exit 1; }
        SUDO=sudo
    fi
    echo "installing: ${missing[*]}"
    # Lasect starts its own private clusters; don't let the package create
    # and start a system-wide one on port 5432.
    $SUDO mkdir -p /etc/postgresql-common
    if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
        echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.conf >/dev/null
    fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
    echo "installing the Rust toolchain (rustup, stable)"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt -c clippy
fi
export PATH="$HOME/.cargo/bin:$PATH"
for c in rustfmt clippy; do
    if ! cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1; then
        command -v rustup >/dev/null 2>&1 && rustup component add "$c"
    fi
done

# The test harness runs PostgreSQL as the unprivileged `postgres` user when
# invoked as root (initdb refuses root).
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi

# The version is pinned: a fuzzer that changes under the suite would change what it finds.
SCHEMATHESIS_VERSION=4.32.5
if [ "${1:-}" = "--test" ]; then
    venv="$(cd "$(dirname "$0")/.." && pwd)/target/schemathesis-venv"
    if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
        echo "installing schemathesis $SCHEMATHESIS_VERSION into $venv"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
    fi
fi
