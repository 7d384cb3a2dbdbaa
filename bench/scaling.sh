#!/usr/bin/env bash
# docs/SCALING.md's table: cgloo-scale under cgloo-run for each P, full mesh and lazy (CGLOO_LAZY=1),
# RUNS runs each with the default timeout unless CGLOO_TIMEOUT_MS is set, and the medians.
#   bench/scaling.sh [BUILD_DIR] [P...]        e.g. RUNS=3 bench/scaling.sh build 16 64 256 512 1024
# A run that fails counts as failed, and the table says how many of the RUNS did.
set -euo pipefail
# The figures this script makes are over TCP (the default, auto, takes shared memory between
# ranks of one host): CGLOO_TRANSPORT=auto or shm in the caller's environment measures that.
export CGLOO_TRANSPORT=${CGLOO_TRANSPORT:-tcp}
dir=${1:-build}
shift || true
sizes=${*:-16 64 256 512 1024}
RUNS=${RUNS:-3}
MODES=${MODES:-full lazy}
median() { sort -n | awk '{a[NR]=$1} END {if (NR) print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2); else print "-"}'; }
field() { awk -v k="$1" '{for (i = 1; i < NF; i++) if ($i == k) print $(i+1)}' "$2" | median; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "| P | mode | runs ok | set-up span ms | slowest set-up ms | first allreduce ms | first barrier ms | sockets per rank (max / mean) | fds max | RSS max KiB |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for p in $sizes; do
  for mode in $MODES; do
    f="$out/$p-$mode"
    : >"$f"
    ok=0
    for _ in $(seq "$RUNS"); do
      lazy=0
      [ "$mode" = lazy ] && lazy=1
      if CGLOO_LAZY=$lazy "$dir/tools/cgloo-run" -n "$p" "$dir/tools/cgloo-scale" >>"$f" 2>"$out/err"; then
        ok=$((ok + 1))
      else
        echo "P=$p $mode failed: $(grep -m1 -o 'cgloo-scale: .*' "$out/err" | cut -c1-200)" >&2
      fi
    done
    grep '^ranks' "$f" >"$f.ok" || true
    echo "| $p | $mode | $ok of $RUNS | $(field setup_span_ms "$f.ok") | $(field setup_max_ms "$f.ok") |" \
      "$(field allreduce_ms "$f.ok") | $(field barrier_ms "$f.ok") |" \
      "$(field sockets_max "$f.ok") / $(field sockets_mean "$f.ok") | $(field fds_max "$f.ok") |" \
      "$(field rss_kib_max "$f.ok") |"
  done
done
