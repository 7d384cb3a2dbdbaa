#!/usr/bin/env bash
# Several hosts for real: three network namespaces (hosts a, b, c), each with two links to a
# switch namespace holding two bridges, net1 on 10.77.0.0/24 and net2 on 10.78.0.0/24 (host a
# is .1, b .2, c .3). Nothing is added to the namespace the test runs in: every interface,
# address and bridge lives in the test's own namespaces, named with this shell's pid so that
# parallel runs never meet, and deleted on exit whatever happens. The store
# (cgloo-store) runs on host a at 10.77.0.1; ranks 0 and 1 run on a, 2 and 3 on b, 4 on c.
#
#   all_collectives        5 ranks with only CGLOO_RANK, CGLOO_SIZE and CGLOO_STORE set: each
#                          must choose its host's net1 address (the route to the store) and
#                          every collective is checked (rank_program)
#   iface_subnet           CGLOO_IFACE=10.78.0.0/24: every rank on its net2 address
#   iface_list             CGLOO_IFACE=^lo,net1: the exclusions leave net2
#   loopback_remote_store  a rank on host b told CGLOO_HOSTNAME=127.0.0.1 fails at once, saying
#                          which address, why, and what to change
#   link_down              host c's link is cut in the middle of allreduces: every other rank
#                          fails within its timeout with an error naming rank 4
#   idle_link_down         the same with nothing in flight: ranks 0 to 3 wait in a receive
#                          from rank 4 (60 s) that never sends; once host c is cut off, each
#                          fails within the context's timeout (10 s) with EPEER naming rank 4:
#                          keepalive, not a timeout, ends the wait
#
# Usage: test_hosts.sh CGLOO_STORE RANK_PROGRAM FAULT_RANK. Needs root and ip (iproute2);
# without them, or where namespaces cannot be made, it says so in one line and exits 77 (skip).
set -u
store=$1
prog=$2
fault=$3

NETNS_TEST=test_hosts
NETNS_PREFIX=cgh
. "$(dirname "$0")/netns.sh"

# net_up builds the switch and the three hosts; any failure here is a failure of the test.
net_up() {
    set -e
    ip -n "$SW" link set lo up
    for br in br1 br2; do
        ip -n "$SW" link add "$br" type bridge
        ip -n "$SW" link set "$br" up
    done
    for i in 1 2 3; do
        local h=${HOSTS[$((i - 1))]}
        ip netns add "$h"
        ip -n "$h" link set lo up
        for net in 1 2; do
            ip -n "$SW" link add "h${i}n$net" type veth peer name "net$net" netns "$h"
            ip -n "$SW" link set "h${i}n$net" master "br$net" up
            ip -n "$h" addr add "10.7$((6 + net)).0.$i/24" dev "net$net"
            ip -n "$h" link set "net$net" up
        done
    done
    set +e
}
( net_up ) || { echo "FAIL could not build the test network"; exit 1; }

# The store on host a; its port comes from its first line.
ip netns exec "${HOSTS[0]}" "$store" --host 10.77.0.1 >"$tmp/store.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$tmp/store.out" && break; sleep 0.1; done
port=$(sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$tmp/store.out")
[ -n "$port" ] || { echo "FAIL the store did not start:"; cat "$tmp/store.out"; exit 1; }
url=tcp://10.77.0.1:$port

# start HOST RANK SIZE NAME [VAR=VALUE...] -- PROGRAM ARGS: rank RANK of SIZE in namespace
# HOST (0, 1, 2 for a, b, c), in the background, without any address variable of the caller's
# environment; its output goes to $tmp/NAME.RANK and its pid to $last.
start() {
    local host=${HOSTS[$1]} rank=$2 size=$3 name=$4 vars=()
    shift 4
    while [ "$1" != -- ]; do vars+=("$1"); shift; done
    shift
    ip netns exec "$host" env -u CGLOO_IFACE -u CGLOO_HOSTNAME -u CGLOO_ADVERTISE_ADDR \
        -u CGLOO_PORT -u CGLOO_LOG_LEVEL CGLOO_RANK="$rank" CGLOO_SIZE="$size" \
        CGLOO_STORE="$url" CGLOO_CONTEXT_NAME="$name" "${vars[@]}" "$@" >"$tmp/$name.$rank" 2>&1 &
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

# expect NAME RANK TEXT: the rank's output contains TEXT.
expect() {
    grep -qF -- "$3" "$tmp/$1.$2" || { echo "  rank $2 did not say: $3"; return 1; }
}

HOST_OF=(0 0 1 1 2) # ranks 0 and 1 on host a, 2 and 3 on b, 4 on c

all_collectives() {
    local ps=()
    for r in 0 1 2 3 4; do
        start "${HOST_OF[$r]}" $r 5 all_collectives CGLOO_LOG_LEVEL=info -- "$prog"
        ps+=($last)
    done
    wait_all 40 "${ps[@]}" &&
        expect all_collectives 1 "listening on 10.77.0.1:" &&
        expect all_collectives 3 "listening on 10.77.0.2:" &&
        expect all_collectives 4 "listening on 10.77.0.3:" &&
        expect all_collectives 4 "the route to the store's host 10.77.0.1"
}

# iface_case NAME VAR=VALUE: ranks 0, 1, 2 on hosts a, b, c, each on its net2 address.
iface_case() {
    local name=$1 ps=()
    for r in 0 1 2; do
        start $r $r 3 "$name" CGLOO_LOG_LEVEL=info "$2" -- "$prog"
        ps+=($last)
    done
    wait_all 40 "${ps[@]}" || return 1
    for r in 0 1 2; do
        expect "$name" $r "listening on 10.78.0.$((r + 1)):" || return 1
    done
    expect "$name" 0 "${2#*=}"
}

# A rank on host b told to use loopback, with the store on host a: it fails at once, long
# before its timeout, naming the address, the reason and the variables.
loopback_remote_store() {
    local t0=$SECONDS
    start 0 0 2 loopback_remote_store CGLOO_TIMEOUT_MS=20000 -- "$fault"
    local peer=$last
    start 1 1 2 loopback_remote_store CGLOO_TIMEOUT_MS=20000 CGLOO_HOSTNAME=127.0.0.1 -- "$fault"
    ! wait_all 10 $last || return 1
    kill -9 $peer 2>/dev/null
    wait $peer 2>/dev/null
    [ $((SECONDS - t0)) -lt 8 ] || { echo "  rank 1 took $((SECONDS - t0)) s to fail"; return 1; }
    sed 's/^/  rank 1: /' "$tmp/loopback_remote_store.1"
    expect loopback_remote_store 1 "address 127.0.0.1:" && expect loopback_remote_store 1 "loopback address" &&
        expect loopback_remote_store 1 "CGLOO_HOSTNAME=127.0.0.1" && expect loopback_remote_store 1 "the store (10.77.0.1)" &&
        expect loopback_remote_store 1 "set CGLOO_IFACE"
}

# cut_host_c NAME [idle]: host c's link to net1 goes down once the 5 ranks are ready; ranks 0
# to 3 must each fail within their timeout (10 s, counted from the start of the call that
# fails) with an error naming rank 4, the rank on host c. Without "idle" the ranks run
# allreduces (data in flight); with it they sit in a receive from rank 4 that would wait 60 s
# and nothing is in flight, so that keepalive (pair_detect_ms: half the timeout) must find
# the silent host: they must fail with EPEER, not time out.
cut_host_c() {
    local name=$1 mode=${2:-} ps=() timeout_ms=10000
    for r in 0 1 2 3 4; do
        start "${HOST_OF[$r]}" $r 5 "$name" CGLOO_TIMEOUT_MS=$timeout_ms -- "$fault" 30000 $mode
        ps+=($last)
    done
    for _ in $(seq 200); do
        [ "$(cat "$tmp/$name".* | grep -c ready)" = 5 ] && break
        sleep 0.1
    done
    sleep 0.5
    ip -n "$SW" link set h3n1 down
    local until=$((SECONDS + timeout_ms / 1000 + 10))
    for r in 0 1 2 3; do
        while ! grep -q "failed after" "$tmp/$name.$r" && [ $SECONDS -lt $until ]; do
            sleep 0.1
        done
        local line ms
        line=$(grep "failed after" "$tmp/$name.$r") || { echo "  rank $r did not fail"; return 1; }
        ms=$(echo "$line" | sed 's/.*failed after \([0-9]*\) ms.*/\1/')
        [ "$ms" -le $((timeout_ms + 1000)) ] || { echo "  rank $r took $ms ms"; return 1; }
        echo "$line" | grep -qE "(rank|peer) 4\b" || { echo "  rank $r does not name rank 4"; return 1; }
        if [ "$mode" = idle ]; then
            echo "$line" | grep -q ": EPEER: " || { echo "  rank $r did not fail with EPEER"; return 1; }
        fi
        echo "  $line"
    done
    for p in "${ps[@]}"; do kill -9 "$p" 2>/dev/null; done
    wait "${ps[@]}" 2>/dev/null
    ip -n "$SW" link set h3n1 up
    return 0
}

# run NAME [FUNCTION ARGS...]: runs a case (FUNCTION defaults to NAME) whose ranks write to
# $tmp/NAME.RANK, and reports it, with the ranks' last lines when it fails.
run() {
    local name=$1
    shift
    if "${@:-$name}"; then
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

run all_collectives
run iface_subnet iface_case iface_subnet CGLOO_IFACE=10.78.0.0/24
run iface_list iface_case iface_list 'CGLOO_IFACE=^lo,net1'
run loopback_remote_store
run link_down cut_host_c link_down
run idle_link_down cut_host_c idle_link_down idle
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
