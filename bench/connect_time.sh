#!/usr/bin/env bash
# The set-up cost of a job with and without a job secret: RUNS runs of cgloo-connect-time under
# cgloo-run -n N each way, alternating, and the median of each column.
#   bench/connect_time.sh [BUILD_DIR] [N]          e.g. bench/connect_time.sh build 64
set -euo pipefail
# The figures this script makes are over TCP (the default, auto, takes shared memory between
# ranks of one host): CGLOO_TRANSPORT=auto or shm in the caller's environment measures that.
export CGLOO_TRANSPORT=${CGLOO_TRANSPORT:-tcp}
dir=${1:-build}
n=${2:-64}
RUNS=${RUNS:-5}
run() { "$dir/tools/cgloo-run" -n "$n" "$@" "$dir/tools/cgloo-connect-time"; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for i in $(seq "$RUNS"); do
  run --no-secret >>"$out/plain"
  run >>"$out/secret"
done
for k in plain secret; do
  echo "$k: ranks $n, runs $RUNS, median span_ms $(awk '{print $4}' "$out/$k" | median)," \
    "median slowest_rank_ms $(awk '{print $6}' "$out/$k" | median)"
done
