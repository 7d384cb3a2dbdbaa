#!/usr/bin/env bash
# A/B: two builds of cgloo measured in the same run, alternating, so that a change can be judged
# against the code before it on this noisy machine. Ping-pong at 2 ranks and allreduce at 2 and
# 4 ranks; each configuration runs RUNS times per build, and the table gives the median of the
# per-run p50 times, and B / A (below 1: B is faster).
#   bench/ab.sh OLD_BUILD_DIR NEW_BUILD_DIR        e.g. bench/ab.sh ../base/build build
#   RUNS=5 TIME_MS=300 MAX_ELEMENTS=16777216 bench/ab.sh ...
#   B_FLAGS=--nonblocking bench/ab.sh build build   one build, the allreduces of B with extra
#                                                   cgloo-bench flags (A_FLAGS likewise)
set -euo pipefail
# The figures this script makes are over TCP (the default, auto, takes shared memory between
# ranks of one host): CGLOO_TRANSPORT=auto or shm in the caller's environment measures that.
export CGLOO_TRANSPORT=${CGLOO_TRANSPORT:-tcp}
a=$1
b=$2
RUNS=${RUNS:-5}
TIME_MS=${TIME_MS:-300}
MAX_ELEMENTS=${MAX_ELEMENTS:-16777216}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

measure() { # build label flags
  local dir=$1 label=$2 flags=$3
  "$dir/tools/cgloo-run" -n 2 "$dir/tools/cgloo-bench" --mode pingpong --min-bytes 8 \
    --max-bytes 1048576 --iteration-time-ms "$TIME_MS" --csv | grep -v '^mode' |
    sed "s/^/$label,/" >>"$out/all.csv"
  for n in 2 4; do
    "$dir/tools/cgloo-run" -n "$n" "$dir/tools/cgloo-bench" --mode allreduce --min-elements 1 \
      --max-elements "$MAX_ELEMENTS" --factor 16 --iteration-time-ms "$TIME_MS" --csv $flags |
      grep -v '^mode' | sed "s/^/$label,/" >>"$out/all.csv"
  done
}

for run in $(seq "$RUNS"); do
  echo "run $run/$RUNS" >&2
  if [ $((run % 2)) = 1 ]; then
    measure "$a" A "${A_FLAGS:-}"; measure "$b" B "${B_FLAGS:-}"
  else
    measure "$b" B "${B_FLAGS:-}"; measure "$a" A "${A_FLAGS:-}"
  fi
done

echo "## A/B, medians of $RUNS runs of p50 ($(date -u +%F), $(nproc) cores)"
echo "A: $a ${A_FLAGS:-}   B: $b ${B_FLAGS:-}"
echo
echo "| mode | ranks | bytes | A p50 us | B p50 us | B / A |"
echo "|---|---|---|---|---|---|"
awk -F, '
  function median(list,   a, n, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  { key = $2 SUBSEP $4 SUBSEP $5; keys[key] = 1; t[$1, key] = t[$1, key] " " $8 }
  END {
    for (k in keys) {
      split(k, p, SUBSEP)
      ma = median(t["A", k]); mb = median(t["B", k])
      printf "%s %d %012d | %s | %s | %s | %.2f | %.2f | %.2f |\n", p[1], p[2], p[3], p[1], p[2], p[3], ma, mb, mb / ma
    }
  }' "$out/all.csv" | sort | cut -d' ' -f4-
