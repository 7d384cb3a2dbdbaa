#!/usr/bin/env bash
# Hierarchical collectives across hosts for real: network namespaces a, b, c, each its own host
# (its own host identity: the net namespace is part of it), joined by veth pairs to a bridge in
# a switch namespace (10.79.0.0/24; host a is .1, b .2, c .3). Ranks run with
# CGLOO_TRANSPORT=shm, so ranks in one namespace talk through shared memory and ranks in
# different ones over TCP. The store (cgloo-store) runs on host a. Namespaces are named with
# this shell's pid, so that parallel runs never meet, and deleted on exit whatever happens.
#
#   two_hosts     ranks 0,1 on a, 2,3 on b: hier_rank checks the topology, the binding of every
#                 peer (shm within a host, TCP across), that the selector picks "hierarchical",
#                 and every hierarchical collective against a flat one (dtypes, ops, odd counts,
#                 every root, in place), in the world and in a split child; the selector picks
#                 "hierarchical" only for large calls where a host's ranks are not adjacent
#   three_hosts   the same with 0,1 on a, 2,3 on b, 4,5 on c
#   alternating   ranks a b c a b c: hosts of one size whose ranks are not adjacent
#   uneven        ranks a b a b c: hosts of different sizes
#   rank_killed   two_hosts running hierarchical allreduces (fault_rank) when
#                 rank 3 is killed: ranks 0 to 2 each fail within the timeout naming rank 3
#
# Usage: test_hier_netns.sh CGLOO_STORE HIER_RANK FAULT_RANK. Needs root and ip (iproute2);
# without them, or where namespaces cannot be made, it says so in one line and exits 77 (skip).
set -u
store=$1
prog=$2
fault=$3

NETNS_TEST=test_hier_netns
NETNS_PREFIX=cgn
. "$(dirname "$0")/netns.sh"

# net_up builds the bridge and the three hosts; any failure here is a failure of the test.
net_up() {
    set -e
    ip -n "$SW" link set lo up
    ip -n "$SW" link add br0 type bridge
    ip -n "$SW" link set br0 up
    for i in 1 2 3; do
        local h=${HOSTS[$((i - 1))]}
        ip netns add "$h"
        ip -n "$h" link set lo up
        ip -n "$SW" link add "h$i" type veth peer name eth0 netns "$h"
        ip -n "$SW" link set "h$i" master br0 up
        ip -n "$h" addr add "10.79.0.$i/24" dev eth0
        ip -n "$h" link set eth0 up
    done
    set +e
}
( net_up ) || { echo "FAIL could not build the test network"; exit 1; }

ip netns exec "${HOSTS[0]}" "$store" --host 10.79.0.1 >"$tmp/store.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$tmp/store.out" && break; sleep 0.1; done
port=$(sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$tmp/store.out")
[ -n "$port" ] || { echo "FAIL the store did not start:"; cat "$tmp/store.out"; exit 1; }
url=tcp://10.79.0.1:$port

# start LABEL RANK SIZE NAME [VAR=VALUE...] -- PROGRAM ARGS: rank RANK of SIZE on host LABEL
# (a, b or c), in the background, over shm within the host; output to $tmp/NAME.RANK, pid in
# $last.
start() {
    local label=$1 rank=$2 size=$3 name=$4 vars=()
    shift 4
    while [ "$1" != -- ]; do vars+=("$1"); shift; done
    shift
    local host=${HOSTS[$(($(printf '%d' "'$label") - 97))]}
    ip netns exec "$host" env -u CGLOO_IFACE -u CGLOO_HOSTNAME -u CGLOO_ADVERTISE_ADDR \
        -u CGLOO_PORT -u CGLOO_LOG_LEVEL -u CGLOO_ALLREDUCE_ALGORITHM CGLOO_TRANSPORT=shm \
        CGLOO_RANK="$rank" CGLOO_SIZE="$size" CGLOO_STORE="$url" CGLOO_CONTEXT_NAME="$name" \
        "${vars[@]}" "$@" >"$tmp/$name.$rank" 2>&1 &
    last=$!
    pids+=($last)
}

# wait_all SECONDS PID...: waits for them, killing those left when time is up; fails unless
# every one exited 0.
wait_all() {
    local until=$((SECONDS + $1)) status=0
    shift
    for p in "$@"; do
        while kill -0 "$p" 2>/dev/null && [ $SECONDS -lt $until ]; do sleep 0.1; done
        kill -9 "$p" 2>/dev/null
        wait "$p" || status=1
    done
    return $status
}

# hosts NAME LABEL...: one rank per label, on that host, running hier_rank with the labels.
hosts() {
    local name=$1 ps=() r=0
    shift
    for label in "$@"; do
        start "$label" $r $# "$name" CGLOO_TIMEOUT_MS=20000 -- "$prog" "$@"
        ps+=($last)
        r=$((r + 1))
    done
    wait_all 90 "${ps[@]}" || return 1
    for r in $(seq 0 $(($# - 1))); do
        grep -q "rank $r: ok" "$tmp/$name.$r" || { echo "  rank $r did not say ok"; return 1; }
    done
    cat "$tmp/$name.0" | sed 's/^/  /'
}

# rank_killed: rank 3 (host b) is killed with SIGKILL while 4 ranks run allreduces; the others
# must each fail within the timeout (5 s, from the start of the call that fails) naming rank 3.
rank_killed() {
    local name=rank_killed ps=() labels=(a a b b) timeout_ms=5000
    for r in 0 1 2 3; do
        start "${labels[$r]}" $r 4 $name CGLOO_TIMEOUT_MS=$timeout_ms \
            CGLOO_ALLREDUCE_ALGORITHM=hierarchical -- "$fault" 30000
        ps+=($last)
    done
    for _ in $(seq 200); do
        [ "$(cat "$tmp/$name".* | grep -c ready)" = 4 ] && break
        sleep 0.1
    done
    sleep 0.3
    kill -9 "${ps[3]}"
    wait "${ps[3]}" 2>/dev/null
    local until=$((SECONDS + timeout_ms / 1000 + 10))
    for r in 0 1 2; do
        while ! grep -q "failed after" "$tmp/$name.$r" && [ $SECONDS -lt $until ]; do
            sleep 0.1
        done
        local line ms
        line=$(grep "failed after" "$tmp/$name.$r") || { echo "  rank $r did not fail"; return 1; }
        ms=$(echo "$line" | sed 's/.*failed after \([0-9]*\) ms.*/\1/')
        [ "$ms" -le $((timeout_ms + 1000)) ] || { echo "  rank $r took $ms ms"; return 1; }
        echo "$line" | grep -qE "(rank|peer) 3\b" || { echo "  rank $r does not name rank 3"; return 1; }
        echo "$line" | grep -q "allreduce(hierarchical" || { echo "  rank $r: not hierarchical"; return 1; }
        echo "  $line" | cut -c1-400
    done
    for p in "${ps[@]}"; do kill -9 "$p" 2>/dev/null; done
    wait "${ps[@]}" 2>/dev/null
    return 0
}

# run NAME FUNCTION ARGS...: runs a case whose ranks write to $tmp/NAME.RANK, and reports it,
# with the ranks' last lines when it fails.
run() {
    local name=$1
    shift
    if "$@"; then
        passed=$((passed + 1))
        echo "ok   $name"
        return
    fi
    failed=$((failed + 1))
    echo "FAIL $name"
    for f in "$tmp/$name".*; do
        [ -e "$f" ] && tail -8 "$f" | sed "s|^|  ${f##*/}: |"
    done
}

run two_hosts hosts two_hosts a a b b
run three_hosts hosts three_hosts a a b b c c
run alternating hosts alternating a b c a b c
run uneven hosts uneven a b a b c
run rank_killed rank_killed
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
