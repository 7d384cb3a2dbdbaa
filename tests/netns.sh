# Sourced by the tests that make hosts of network namespaces (test_hosts.sh, test_hier_netns.sh)
# once they set NETNS_TEST (their name, for the skip line) and NETNS_PREFIX (a few letters that
# keep their namespaces apart from another test's). Skips the test (exit 77, one line) without
# root, ip or namespaces; sets SW (the switch namespace, made here), HOSTS (three host
# namespaces, for the test to make), tmp, pids (processes the test starts) and the passed and
# failed counters; and removes every namespace, process and file on exit, however it ends.
skip() {
    echo "$NETNS_TEST skipped: $*"
    exit 77
}
[ "$EUID" = 0 ] || skip "creating network namespaces needs root"
command -v ip >/dev/null 2>&1 || skip "ip (iproute2) is not installed"

id=$$
SW=${NETNS_PREFIX}${id}s
HOSTS=("${NETNS_PREFIX}${id}a" "${NETNS_PREFIX}${id}b" "${NETNS_PREFIX}${id}c")
tmp=$(mktemp -d)
pids=()
passed=0
failed=0

cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    for n in "$SW" "${HOSTS[@]}"; do ip netns del "$n" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

ip netns add "$SW" 2>/dev/null || skip "cannot create a network namespace (ip netns add failed)"
