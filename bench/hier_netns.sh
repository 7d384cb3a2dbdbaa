#!/usr/bin/env bash
# Hierarchical against flat collectives across "hosts" made of network namespaces (as
# tests/test_hier_netns.sh builds them: one bridge, a veth per namespace), 2 ranks per host,
# ranks placed host by host (0,1 on a; 2,3 on b; ...), CGLOO_TRANSPORT=shm (shared memory within
# a host, TCP over the veth pairs across). For each collective, cgloo-bench runs with
# "hierarchical" and with each flat algorithm; the table gives, per size, the median over RUNS
# runs of the per-run p50 of hierarchical, of the best flat algorithm (and its name), and their
# ratio (below 1: hierarchical is faster). Needs root and iproute2.
#   sudo bench/hier_netns.sh          HOSTS=3 RUNS=3 TIME_MS=200 MAX_BYTES=4194304 bench/...
#   PLACE=alternate bench/hier_netns.sh   ranks placed a b a b ... instead (rank r on host r % HOSTS)
#   RATE=1gbit bench/hier_netns.sh        each host's link limited to RATE each way (tc tbf on
#                                         both ends of its veth pair), as a NIC its ranks share
# Caveat: the veth pairs are memory copies on the same two cores, not a network, so the link
# between hosts is neither slower nor separate from shared memory as a real one is.
set -euo pipefail
cd "$(dirname "$0")/.."
HOSTS=${HOSTS:-2}
PLACE=${PLACE:-block}
RATE=${RATE:-}
RUNS=${RUNS:-3}
TIME_MS=${TIME_MS:-200}
MAX_BYTES=${MAX_BYTES:-4194304}
[ "$EUID" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 1; }
make -s build >/dev/null
id=$$
SW=cgb${id}s
out=$(mktemp -d)
names=()
for i in $(seq "$HOSTS"); do names+=("cgb${id}h$i"); done
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for n in "$SW" "${names[@]}"; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$out"
}
trap cleanup EXIT
ip netns add "$SW"
ip -n "$SW" link add br0 type bridge
ip -n "$SW" link set br0 up
for i in $(seq "$HOSTS"); do
  h=${names[$((i - 1))]}
  ip netns add "$h"
  ip -n "$h" link set lo up
  ip -n "$SW" link add "h$i" type veth peer name eth0 netns "$h"
  ip -n "$SW" link set "h$i" master br0 up
  ip -n "$h" addr add "10.80.0.$i/24" dev eth0
  ip -n "$h" link set eth0 up
  if [ -n "$RATE" ]; then
    tc -n "$h" qdisc add dev eth0 root tbf rate "$RATE" burst 256kb latency 100ms
    tc -n "$SW" qdisc add dev "h$i" root tbf rate "$RATE" burst 256kb latency 100ms
  fi
done
ip netns exec "${names[0]}" ./build/tools/cgloo-store --host 10.80.0.1 >"$out/store" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$out/store" && break; sleep 0.1; done
url=tcp://10.80.0.1:$(sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$out/store")
size=$((HOSTS * 2))
job=0

# bench MODE ALG: one cgloo-bench run over every rank; rank 0's CSV rows go to all.csv.
bench() {
  local ps=() r
  job=$((job + 1))
  for r in $(seq 0 $((size - 1))); do
    local h=$((r / 2))
    [ "$PLACE" = block ] || h=$((r % HOSTS))
    ip netns exec "${names[$h]}" env CGLOO_TRANSPORT=shm CGLOO_RANK=$r CGLOO_SIZE=$size \
      CGLOO_STORE="$url" CGLOO_CONTEXT_NAME="b$job" ./build/tools/cgloo-bench --mode "$1" \
      --algorithm "$2" --min-bytes 4 --max-bytes "$MAX_BYTES" --factor 16 \
      --iteration-time-ms "$TIME_MS" --csv >"$out/rank$r" 2>&1 &
    ps+=($!)
  done
  wait "${ps[@]}"
  grep -v '^mode' "$out/rank0" | grep -v '^#' | sed "s/^/$2,/" >>"$out/all.csv"
}
declare -A algs=([allreduce]="hierarchical ring halving_doubling recursive_doubling bcube"
  [broadcast]="hierarchical binomial pipeline flat" [allgather]="hierarchical ring recursive_doubling"
  [reduce_scatter]="hierarchical ring halving_doubling")
for run in $(seq "$RUNS"); do
  echo "run $run/$RUNS" >&2
  for mode in allreduce broadcast allgather reduce_scatter; do
    for alg in ${algs[$mode]}; do bench "$mode" "$alg"; done
  done
done
echo "## Hierarchical across $HOSTS namespace hosts of 2 ranks, placed $PLACE${RATE:+, links limited to $RATE}: medians of $RUNS runs ($(date -u +%F), $(nproc) cores)"
echo
echo "| collective | bytes | hierarchical p50 us | best flat p50 us | best flat | hierarchical / best flat | every flat algorithm's p50 us |"
echo "|---|---|---|---|---|---|---|"
awk -F, '
  function median(list,   a, n, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  { key = $2 SUBSEP $5; keys[key] = 1; t[$1, key] = t[$1, key] " " $8; algs[$1] = 1 }
  END {
    for (k in keys) {
      split(k, p, SUBSEP)
      h = median(t["hierarchical", k]); best = ""; bname = ""; all = ""
      for (a in algs) if (a != "hierarchical" && t[a, k] != "") {
        m = median(t[a, k]); all = all (all == "" ? "" : ", ") a " " m
        if (best == "" || m + 0 < best + 0) { best = m; bname = a }
      }
      printf "%s %012d | %s | %s | %s | %s | %s | %.2f | %s |\n", p[1], p[2], p[1], p[2], h, best, bname, h / best, all
    }
  }' "$out/all.csv" | sort | sed 's/^[^|]*| /| /'
