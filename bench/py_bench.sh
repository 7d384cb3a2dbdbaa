#!/usr/bin/env bash
# Python against C: bench/py_bench.py (the cgloo package, and the pygloo module) beside
# cgloo-bench in the same run, 2 ranks over TCP loopback, alternating which goes first, RUNS
# times. For each row the table gives the median over runs of the p50 times, the median of the
# per-run differences Python - C (the overhead of a call from Python; target under 1.5 us for a
# 4-byte allreduce) and the median of the per-run ratios Python / C (target within 2% at 64 MiB).
#   bench/py_bench.sh                 RUNS=5 TIME_MS=500 BUILD=build-foo PYTHON=/usr/bin/python3 bench/py_bench.sh
# Needs the Python module built (BUILD/python/cgloo) and numpy for PYTHON.
set -euo pipefail
# The figures this script makes are over TCP (the default, auto, takes shared memory between
# ranks of one host): CGLOO_TRANSPORT=auto or shm in the caller's environment measures that.
export CGLOO_TRANSPORT=${CGLOO_TRANSPORT:-tcp}
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
TIME_MS=${TIME_MS:-500}
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
MAX_ELEMENTS=${MAX_ELEMENTS:-16777216} # 64 MiB of float32
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

run=$BUILD/tools/cgloo-run
if [ ! -x "$run" ] || ! PYTHONPATH="$BUILD/python" "$PYTHON" -c 'import cgloo, numpy' 2>/dev/null; then
  echo "py_bench.sh: needs $run and the cgloo module in $BUILD/python, with numpy for $PYTHON" >&2
  exit 2
fi
elements=$(awk -v max="$MAX_ELEMENTS" 'BEGIN { s = ""; for (n = 1; n <= max; n *= 16) s = s (s ? "," : "") n; print s }')

c_side() { # the C benchmark: allreduce over the same sizes, then ping-pong at 8 B; then a
  # 4-byte allreduce on one rank, which is the call's own cost with no network in it
  "$run" -n 2 "$BUILD/tools/cgloo-bench" --mode allreduce --min-elements 1 \
    --max-elements "$MAX_ELEMENTS" --factor 16 --iteration-time-ms "$TIME_MS" --csv | grep -v '^mode'
  "$run" -n 2 "$BUILD/tools/cgloo-bench" --mode pingpong --min-bytes 8 --max-bytes 8 \
    --iteration-time-ms "$TIME_MS" --csv | grep -v '^mode'
  "$run" -n 1 "$BUILD/tools/cgloo-bench" --mode allreduce --elements 1 \
    --iteration-time-ms "$TIME_MS" --csv | grep -v '^mode'
}
py_side() {
  PYTHONPATH="$BUILD/python:python${PYTHONPATH:+:$PYTHONPATH}" "$run" -n 2 "$PYTHON" bench/py_bench.py \
    --elements "$elements" --iteration-time-ms "$TIME_MS" | grep -v '^mode'
  PYTHONPATH="$BUILD/python:python${PYTHONPATH:+:$PYTHONPATH}" "$run" -n 1 "$PYTHON" bench/py_bench.py \
    --modes allreduce,pygloo_allreduce --elements 1 --iteration-time-ms "$TIME_MS" | grep -v '^mode'
}

for r in $(seq "$RUNS"); do
  echo "run $r/$RUNS" >&2
  if [ $((r % 2)) = 1 ]; then
    c_side | sed "s/^/C,$r,/" >>"$out/all.csv"
    py_side | sed "s/^/PY,$r,/" >>"$out/all.csv"
  else
    py_side | sed "s/^/PY,$r,/" >>"$out/all.csv"
    c_side | sed "s/^/C,$r,/" >>"$out/all.csv"
  fi
done

echo "## Python against C, 2 ranks over TCP loopback (and 1 rank: the call alone): medians of $RUNS runs ($(date -u +%F), $(nproc) cores)"
echo
echo "| call | ranks | bytes | C p50 us | Python p50 us | Python - C us | Python / C |"
echo "|---|---|---|---|---|---|---|"
# Columns: source,run,mode,algorithm,ranks,bytes,elements,min,p50,... The pygloo rows are set
# against the C allreduce of the same ranks and size. POSIX awk (mawk): sorting is left to
# sort(1).
awk -F, '
  function median(list,   a, n, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  { p50[$1, $2, $3, $5, $6] = $9; runs[$2] = 1; if ($1 == "PY") rows[$3 SUBSEP $5 SUBSEP $6] = 1 }
  END {
    for (k in rows) {
      split(k, p, SUBSEP); mode = p[1]; ranks = p[2]; bytes = p[3]
      cmode = mode == "pygloo_allreduce" ? "allreduce" : mode
      cl = pl = dl = rl = ""
      for (r in runs) {
        if (!(("C", r, cmode, ranks, bytes) in p50) || !(("PY", r, mode, ranks, bytes) in p50)) continue
        c = p50["C", r, cmode, ranks, bytes]; py = p50["PY", r, mode, ranks, bytes]
        cl = cl " " c; pl = pl " " py; dl = dl " " (py - c); rl = rl " " (c > 0 ? py / c : 0)
      }
      if (cl == "") continue
      label = mode == "allreduce" ? "cgloo.Context.allreduce" : mode == "pingpong" ? "send + recv round trip" : "pygloo.allreduce"
      order = (mode == "pingpong" ? 4 : mode == "allreduce" ? 0 : 2) + (ranks == 1)
      printf "%d %012d | %s | %d | %s | %.2f | %.2f | %+.2f | %.3f |\n", order, bytes,
        label, ranks, bytes, median(cl), median(pl), median(dl), median(rl)
    }
  }' "$out/all.csv" | sort | cut -d' ' -f3-
