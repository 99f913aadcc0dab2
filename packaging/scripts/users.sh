# Creates the system group and user @SERVICE@ (no login, no home of its own beyond the state
# directory) and adds it to those of @EXTRA_GROUPS@ that exist. Existing ones are left alone:
# an operator may have created them with fixed ids. DPKG_ROOT installs into another root
# (dpkg --root with --force-script-chrootless, and the package test): the shadow tools then
# work on that root's /etc through --prefix.
lasect_root="${DPKG_ROOT:-}"
lasect_svc=@SERVICE@
lasect_prefix=""
[ -n "$lasect_root" ] && lasect_prefix="--prefix $lasect_root"
lasect_has() {
    # $1 = passwd|group, $2 = name. The running system asks NSS (a directory service may
    # hold the account); another root only has its files.
    if [ -z "$lasect_root" ]; then
        getent "$1" "$2" >/dev/null
    else
        grep -q "^$2:" "$lasect_root/etc/$1" 2>/dev/null
    fi
}
if ! lasect_has group "$lasect_svc"; then
    groupadd $lasect_prefix --system "$lasect_svc"
fi
if ! lasect_has passwd "$lasect_svc"; then
    useradd $lasect_prefix --system --gid "$lasect_svc" --home-dir "/var/lib/$lasect_svc" \
        --no-create-home --shell /usr/sbin/nologin --comment "Lasect $lasect_svc" "$lasect_svc"
fi
for lasect_group in @EXTRA_GROUPS@; do
    if lasect_has group "$lasect_group"; then
        usermod $lasect_prefix --append --groups "$lasect_group" "$lasect_svc"
    fi
done
