#!/usr/bin/env bash
# The cost of the diagnostics: allreduce of 4 bytes and 1 MiB (float32) at 2 and 4 ranks, with
# check mode off and on (CGLOO_CHECK), and with the flight recorder off and on
# (CGLOO_FLIGHT_RECORDER=0 against the default 64), each pair measured alternately in the same
# run on one build, and at one rank too (the library's own path, no network). Prints the median
# over RUNS runs of each run's p50, and on / off.
#   bench/diag.sh                      RUNS=7 TIME_MS=500 bench/diag.sh
# docs/BENCHMARKS.md ("Check mode and the flight recorder") has the figures.
set -euo pipefail
# The figures this script makes are over TCP (the default, auto, takes shared memory between
# ranks of one host): CGLOO_TRANSPORT=auto or shm in the caller's environment measures that.
export CGLOO_TRANSPORT=${CGLOO_TRANSPORT:-tcp}
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
TIME_MS=${TIME_MS:-300}
build=${BUILD:-build}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

measure() { # label env...
  local label=$1
  shift
 # one rank: the library's own path, no network (a collective of one rank is a copy)
  env "$@" "$build/tools/cgloo-run" -n 1 "$build/tools/cgloo-bench" --mode allreduce \
    --dtype float32 --elements 1 --iteration-time-ms "$TIME_MS" --no-barrier --csv |
    grep -v '^mode' | sed "s/^/$label,/" >>"$out/all.csv"
  for n in 2 4; do
    for elements in 1 262144; do
      env "$@" "$build/tools/cgloo-run" -n "$n" "$build/tools/cgloo-bench" --mode allreduce \
        --dtype float32 --elements "$elements" --iteration-time-ms "$TIME_MS" --csv |
        grep -v '^mode' | sed "s/^/$label,/" >>"$out/all.csv"
    done
  done
}

for run in $(seq "$RUNS"); do
  echo "run $run/$RUNS" >&2
  if [ $((run % 2)) = 1 ]; then
    measure check_off CGLOO_CHECK=0; measure check_on CGLOO_CHECK=1
    measure fr_off CGLOO_FLIGHT_RECORDER=0; measure fr_on CGLOO_FLIGHT_RECORDER=64
  else
    measure check_on CGLOO_CHECK=1; measure check_off CGLOO_CHECK=0
    measure fr_on CGLOO_FLIGHT_RECORDER=64; measure fr_off CGLOO_FLIGHT_RECORDER=0
  fi
done

# columns: label,mode,algorithm,ranks,bytes,elements,min,p50,...
median() { # label ranks bytes
  awk -F, -v l="$1" -v r="$2" -v b="$3" '$1 == l && $4 == r && $5 == b { print $8 }' \
    "$out/all.csv" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

echo "## allreduce p50 (us), medians of $RUNS runs ($(date -u +%F), $(nproc) cores)"
echo
echo "| ranks | bytes | check off | check on | on / off | recorder off | recorder 64 | on / off |"
echo "|---|---|---|---|---|---|---|---|"
for n in 1 2 4; do
  for bytes in 4 1048576; do
    [ "$n" = 1 ] && [ "$bytes" != 4 ] && continue
    a=$(median check_off "$n" "$bytes")
    b=$(median check_on "$n" "$bytes")
    c=$(median fr_off "$n" "$bytes")
    d=$(median fr_on "$n" "$bytes")
    awk -v n="$n" -v by="$bytes" -v a="$a" -v b="$b" -v c="$c" -v d="$d" 'BEGIN {
      printf "| %d | %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n", n, by, a, b, b / a, c, d, d / c }'
  done
done
