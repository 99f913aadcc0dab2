# The state directory of @SERVICE@ (0750, its own) and the group of its config file. The
# directory's contents are never touched: an upgrade keeps the agent's spool, sequence and
# identity. The config file comes out of the package root:root 0640; on the first install it
# gets the service's group, later its owner and mode are the operator's.
lasect_root="${DPKG_ROOT:-}"
lasect_svc=@SERVICE@
lasect_id() {
    # $1 = passwd|group, $2 = name: the numeric id, from the root being installed into.
    if [ -z "$lasect_root" ]; then
        getent "$1" "$2" | cut -d: -f3
    else
        awk -F: -v n="$2" '$1 == n { print $3 }' "$lasect_root/etc/$1"
    fi
}
lasect_uid="$(lasect_id passwd "$lasect_svc")"
lasect_gid="$(lasect_id group "$lasect_svc")"
mkdir -p "$lasect_root/var/lib/$lasect_svc"
chown "$lasect_uid:$lasect_gid" "$lasect_root/var/lib/$lasect_svc"
chmod 0750 "$lasect_root/var/lib/$lasect_svc"
lasect_conf="$lasect_root/etc/lasect/@CONFIG@"
if [ -f "$lasect_conf" ] && [ "$(stat -c %g "$lasect_conf")" = 0 ] && [ "$(stat -c %a "$lasect_conf")" = 640 ]; then
    chgrp "$lasect_gid" "$lasect_conf"
fi
