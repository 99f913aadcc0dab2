#!/usr/bin/env bash
# Builds the .deb and .rpm packages of lasect-agent, lasect-ingest, lasect-api and the lasect
# CLI from binaries that are already built, with the workspace's version.
#
#   scripts/package.sh [--bindir DIR] [--out DIR] [--fast]
#
# --bindir  where the four binaries are (default target/release: `make package` builds them)
# --out     where the packages go (default target/packages)
# --fast    light compression, no stripping (the package test packages the debug binaries)
#
# Tools: dpkg-deb (Debian's own) and rpmbuild (Debian's `rpm` package); nothing is compiled.
# packaging/README.md says what the packages contain and why.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
bindir="$repo/target/release"
out="$repo/target/packages"
fast=0
while [ $# -gt 0 ]; do
    case "$1" in
        --bindir) bindir="$(cd "$2" && pwd)"; shift 2 ;;
        --out) mkdir -p "$2"; out="$(cd "$2" && pwd)"; shift 2 ;;
        --fast) fast=1; shift ;;
        *) echo "usage: $0 [--bindir DIR] [--out DIR] [--fast]" >&2; exit 2 ;;
    esac
done

for tool in dpkg-deb rpmbuild objdump strip; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "$tool is missing: run scripts/deps.sh --package" >&2
        exit 1
    }
done
for bin in lasect lasect-agent lasect-ingest lasect-api; do
    [ -x "$bindir/$bin" ] || { echo "$bindir/$bin is missing: build it first" >&2; exit 1; }
done

# The workspace's version, the one `--version` prints.
version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$repo/Cargo.toml")"
[ -n "$version" ] || { echo "no [workspace.package] version in Cargo.toml" >&2; exit 1; }
release=1
deb_arch="$(dpkg --print-architecture)"
rpm_arch="$(uname -m)"

pkgdir="$repo/packaging"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# name | binary | config file | groups the service user joins | one-line description
packages=(
    "lasect|lasect|||Lasect command line client of the API"
    "lasect-agent|lasect-agent|agent.toml|postgres|Lasect agent: samples PostgreSQL and its host, pushes to lasect-ingest"
    "lasect-ingest|lasect-ingest|ingest.toml||Lasect ingest: mTLS gRPC endpoint of the agents, writes the central store"
    "lasect-api|lasect-api|api.toml||Lasect API: HTTPS JSON API of the central store"
)

# A maintainer script fragment with its placeholders filled in.
fragment() { # file service config groups
    sed -e "s|@SERVICE@|$2|g" -e "s|@CONFIG@|$3|g" -e "s|@EXTRA_GROUPS@|$4|g" \
        "$pkgdir/scripts/$1"
}

# The files of one package under $2 (a staging root), shared by both formats.
stage() { # name root
    local name="$1" root="$2" bin conf groups desc
    IFS='|' read -r _ bin conf groups desc <<<"$(printf '%s\n' "${packages[@]}" | grep "^$name|")"
    install -D -m 0755 "$bindir/$bin" "$root/usr/bin/$bin"
    # Symbols are no use on a server; the test's debug binaries are packaged as they are.
    [ "$fast" = 1 ] || strip --strip-unneeded "$root/usr/bin/$bin"
    install -D -m 0644 "$pkgdir/README.md" "$root/usr/share/doc/$name/README.md"
    if [ -n "$conf" ]; then
        install -D -m 0644 "$pkgdir/systemd/$name.service" "$root/usr/lib/systemd/system/$name.service"
        install -D -m 0640 "$pkgdir/etc/lasect/$conf" "$root/etc/lasect/$conf"
    fi
    if [ "$name" = lasect-agent ]; then
        # Not active: the operator installs it where backups run (packaging/README.md,
        # "pgBackRest").
        install -D -m 0644 "$pkgdir/systemd/lasect-agent.service.d/database-user.conf" \
            "$root/usr/share/lasect/database-user.conf"
    fi
}

# --- deb ---------------------------------------------------------------------------------
deb_scripts() { # name conf groups debian-dir
    local name="$1" conf="$2" groups="$3" dir="$4"
    {
        echo '#!/bin/sh'
        echo 'set -e'
        echo 'if [ "$1" = configure ]; then'
        fragment users.sh "$name" "$conf" "$groups"
        fragment setup.sh "$name" "$conf" "$groups"
        [ "$name" = lasect-agent ] && fragment check.sh "$name" "$conf" "$groups"
        cat <<EOF
    if [ -z "\${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
        # An upgrade restarts a running service; a first install starts nothing, since the
        # config has not been edited yet.
        if [ -n "\$2" ]; then
            systemctl try-restart $name.service || true
        else
            echo "$name: edit /etc/lasect/$conf, then: systemctl enable --now $name"
        fi
    fi
fi
EOF
    } >"$dir/postinst"
    cat >"$dir/prerm" <<EOF
#!/bin/sh
set -e
# Removal stops the service; an upgrade leaves it running until postinst restarts it.
if [ "\$1" = remove ] && [ -z "\${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
    systemctl stop $name.service || true
fi
EOF
    cat >"$dir/postrm" <<EOF
#!/bin/sh
set -e
if [ "\$1" = remove ] || [ "\$1" = purge ]; then
    if [ -z "\${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
        systemctl disable $name.service >/dev/null 2>&1 || true
        systemctl daemon-reload || true
    fi
fi
# Data (the agent's spool and identity, the API's keys) stays unless purged. The user stays
# too: files elsewhere may still belong to it.
if [ "\$1" = purge ]; then
    rm -rf "\${DPKG_ROOT:-}/var/lib/$name"
fi
EOF
    chmod 0755 "$dir/postinst" "$dir/prerm" "$dir/postrm"
}

build_deb() { # name
    local name="$1" bin conf groups desc root
    IFS='|' read -r _ bin conf groups desc <<<"$(printf '%s\n' "${packages[@]}" | grep "^$name|")"
    root="$work/deb/$name"
    stage "$name" "$root"
    mkdir -p "$root/DEBIAN"
    # The newest glibc symbol version the binary links against is the libc6 it needs.
    local glibc depends="libc6"
    glibc="$(objdump -T "$root/usr/bin/$bin" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)"
    [ -n "$glibc" ] && depends="libc6 (>= ${glibc#GLIBC_})"
    # Rust binaries unwind through libgcc_s.
    depends="$depends, libgcc-s1"
    local extra=""
    if [ -n "$conf" ]; then
        depends="$depends, passwd"
        echo "/etc/lasect/$conf" >"$root/DEBIAN/conffiles"
        deb_scripts "$name" "$conf" "$groups" "$root/DEBIAN"
    fi
    if [ "$name" = lasect-agent ]; then
        # pg_dump runs need pg_dump; pgBackRest is the backup tool the agent drives.
        extra="Recommends: postgresql-client
Suggests: pgbackrest"
    fi
    cat >"$root/DEBIAN/control" <<EOF
Package: $name
Version: $version-$release
Architecture: $deb_arch
Maintainer: Lasect maintainers <maintainers@lasect.invalid>
Section: database
Priority: optional
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: $depends
${extra:+$extra
}Description: $desc
 Part of Lasect, a PostgreSQL fleet monitoring and operations platform.
 See /usr/share/doc/$name/README.md.
EOF
    local level=9
    [ "$fast" = 1 ] && level=1
    dpkg-deb --root-owner-group -Zgzip -z"$level" --build "$root" \
        "$out/${name}_${version}-${release}_${deb_arch}.deb" >/dev/null
}

# --- rpm ---------------------------------------------------------------------------------
rpm_spec() {
    local spec="$work/lasect.spec" name bin conf groups desc sub
    cat >"$spec" <<EOF
# Generated by scripts/package.sh from prebuilt binaries it stages.
%global debug_package %{nil}
%global __os_install_post %{nil}
%global _build_id_links none
%global _binary_payload $([ "$fast" = 1 ] && echo w1.gzdio || echo w9.gzdio)
Name: lasect
Version: $version
Release: $release
Summary: Lasect command line client of the API
License: Apache-2.0
URL: https://lasect.invalid/

%description
Part of Lasect, a PostgreSQL fleet monitoring and operations platform.

%install
mkdir -p %{buildroot}
cp -a %{stage}/. %{buildroot}/

%files
/usr/bin/lasect
%doc /usr/share/doc/lasect/README.md
EOF
    for entry in "${packages[@]}"; do
        IFS='|' read -r name bin conf groups desc <<<"$entry"
        [ -n "$conf" ] || continue
        sub="${name#lasect-}"
        {
            echo
            echo "%package -n $name"
            echo "Summary: $desc"
            echo "Requires(pre): shadow-utils"
            echo
            echo "%description -n $name"
            echo "Part of Lasect, a PostgreSQL fleet monitoring and operations platform."
            echo
            echo "# rpm has no purge: removal keeps /var/lib/$name and the user."
            echo "%pre -n $name"
            fragment users.sh "$name" "$conf" "$groups"
            echo
            echo "%post -n $name"
            fragment setup.sh "$name" "$conf" "$groups"
            [ "$name" = lasect-agent ] && fragment check.sh "$name" "$conf" "$groups"
            echo 'if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi'
            echo
            echo "%preun -n $name"
            echo "if [ \$1 -eq 0 ] && [ -d /run/systemd/system ]; then"
            echo "    systemctl disable --now $name.service >/dev/null 2>&1 || true"
            echo "fi"
            echo
            echo "%postun -n $name"
            echo "if [ \$1 -ge 1 ] && [ -d /run/systemd/system ]; then"
            echo "    systemctl daemon-reload || true"
            echo "    systemctl try-restart $name.service || true"
            echo "fi"
            echo
            echo "%files -n $name"
            echo "/usr/bin/$bin"
            echo "/usr/lib/systemd/system/$name.service"
            echo "%dir %attr(0755,root,root) /etc/lasect"
            echo "%config(noreplace) %attr(0640,root,$name) /etc/lasect/$conf"
            echo "%doc /usr/share/doc/$name/README.md"
            if [ "$name" = lasect-agent ]; then
                echo "/usr/share/lasect/database-user.conf"
            fi
        } >>"$spec"
    done
    echo "$spec"
}

build_rpms() {
    local stage_root="$work/rpm-stage" name
    for entry in "${packages[@]}"; do
        stage "${entry%%|*}" "$stage_root"
    done
    local spec
    spec="$(rpm_spec)"
    mkdir -p "$work/rpm"
    rpmbuild -bb --quiet --target "$rpm_arch" \
        --define "_topdir $work/rpm" \
        --define "_rpmdir $work/rpm/out" \
        --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
        --define "stage $stage_root" \
        "$spec" >/dev/null
    mv "$work/rpm/out"/*.rpm "$out/"
}

mkdir -p "$out"
for entry in "${packages[@]}"; do
    build_deb "${entry%%|*}"
done
build_rpms
ls -1 "$out"/*"$version"-"$release"*.{deb,rpm}
