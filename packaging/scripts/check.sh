# A fresh install has an unedited config: report what is wrong with it, never fail for it.
lasect_root="${DPKG_ROOT:-}"
if ! lasect_out="$("$lasect_root/usr/bin/lasect-agent" check-config --config "$lasect_root/etc/lasect/agent.toml" 2>&1)"; then
    echo "lasect-agent: /etc/lasect/agent.toml is not usable yet (the service will not start until it is):" >&2
    printf '%s\n' "$lasect_out" | sed 's/^/    /' >&2
    echo "lasect-agent: edit it, run 'lasect-agent check-config', then 'systemctl enable --now lasect-agent'" >&2
fi
