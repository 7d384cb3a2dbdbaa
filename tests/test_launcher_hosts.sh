#!/usr/bin/env bash
# cgloo-run starting ranks on other hosts through a command prefix. Three network namespaces
# stand for the hosts, on a bridge of a private test subnet (10.78.X.0/24, X from our pid so
# that two runs at once do not meet); the prefix is "ip netns exec {host}", where a real
# cluster would have "ssh {host}". The store listens on the bridge's address (--host) and each
# host's ranks advertise its address (--hosts NAME=ADDR). Skips (77) where namespaces cannot be
# made (not root, or no iproute2).
#   test_launcher_hosts.sh CGLOO_RUN RANK_PROGRAM
set -u
run=$1
prog=$2
id=$$
sub=$((id % 200 + 20))
net=10.78.$sub
br=cgb$id
hosts=(cgl${id}a cgl${id}b cgl${id}c)

cleanup() {
  for h in "${hosts[@]}"; do ip netns del "$h" 2>/dev/null; done
  ip link del "$br" 2>/dev/null
  rm -f "${log:-}" "${hostfile:-}"
}
trap cleanup EXIT
skip() {
  echo "skip: $*"
  exit 77
}

command -v ip >/dev/null || skip "ip is not installed (apt-get install iproute2)"
ip netns add "${hosts[0]}" 2>/dev/null || skip "cannot create network namespaces here (needs root)"
ip netns exec "${hosts[0]}" true 2>/dev/null || skip "cannot enter network namespaces here"
set -e
ip link add "$br" type bridge
ip addr add "$net.1/24" dev "$br"
ip link set "$br" up
for i in 0 1 2; do
  h=${hosts[$i]}
  [ "$i" = 0 ] || ip netns add "$h"
  ip link add "cgv$id$i" type veth peer name eth0 netns "$h"
  ip link set "cgv$id$i" master "$br" up
  ip -n "$h" addr add "$net.1$i/24" dev eth0
  ip -n "$h" link set eth0 up
  ip -n "$h" link set lo up
done
set +e

list="${hosts[0]}=$net.10,${hosts[1]}=$net.11,${hosts[2]}=$net.12"
prefix="ip netns exec {host}"
log=$(mktemp)
passed=0
failed=0
check() {
  local name=$1
  shift
  local bound=(timeout 120)
  declare -F "$1" >/dev/null && bound=() # a function here bounds its own processes
  if "${bound[@]}" "$@" >"$log" 2>&1; then
    passed=$((passed + 1))
    echo "ok   $name"
  else
    failed=$((failed + 1))
    echo "FAIL $name"
    sed 's/^/  /' "$log" | tail -30
  fi
}

# Each rank runs in its host's namespace and is told that host's address.
where() {
  timeout 120 "$run" -n 5 --tag --host "$net.1" --launcher "$prefix" --hosts "$list" /bin/sh -c \
    'echo "$CGLOO_RANK $CGLOO_LOCAL_RANK/$CGLOO_LOCAL_SIZE $CGLOO_HOSTNAME $(ip -4 -o addr show dev eth0)"' \
    >"$log.where" || return 1
  cat "$log.where"
  for want in "0 0/2 $net.10 .*inet $net.10/" "1 1/2 $net.10 .*inet $net.10/" \
    "2 0/2 $net.11 .*inet $net.11/" "3 1/2 $net.11 .*inet $net.11/" "4 0/1 $net.12 .*inet $net.12/"; do
    grep -q "^\[${want%% *}\] $want" "$log.where" || { echo "missing: $want"; return 1; }
  done
  rm -f "$log.where"
}
check ranks_on_their_hosts where
check rank_program_5_on_3_hosts "$run" -n 5 --tag --host "$net.1" --launcher "$prefix" \
  --hosts "$list" "$prog"
hostfile=$(mktemp)
printf '# one host a line\n%s=%s\n%s=%s\n' "${hosts[1]}" "$net.11" "${hosts[2]}" "$net.12" >"$hostfile"
check rank_program_4_hostfile "$run" -n 4 --host "$net.1" --launcher "$prefix" \
  --hostfile "$hostfile" "$prog"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
