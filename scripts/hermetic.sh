# Sourced by bench/run.sh, bench/agent.sh and scripts/demo.sh (bash):
#   lasect_hermetic_env [KEEP...]
# unsets every exported LASECT_* variable except those named in KEEP (a name,
# or a prefix ending in `_`, e.g. LASECT_BENCH_). Every Lasect binary reads
# LASECT_* variables (LASECT_STORE_DSN, LASECT_URL, LASECT_TOKEN, LASECT_LOG,
# …), so a script that starts them must not pass on what its caller's shell
# happened to hold: `make bench` from a shell that had sourced
# .lasect/demo/env once sent the bench's load into the demo's store. The
# scripts set what their binaries need themselves.
lasect_hermetic_env() {
    local name keep k
    for name in $(compgen -e); do
        [[ $name == LASECT_* ]] || continue
        keep=0
        for k in "$@"; do
            if [[ $k == *_ && $name == "$k"* ]] || [[ $name == "$k" ]]; then
                keep=1
            fi
        done
        [ "$keep" = 1 ] || unset "$name"
    done
}
