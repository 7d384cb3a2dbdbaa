#!/usr/bin/env bash
# Point-to-point benchmark: cgloo-bench beside Open MPI (when mpicc and mpirun are present) and
# the machine's physical limits (when ../shared/tools/limits is present), on this machine, in
# this run. Every configuration runs RUNS times; the table gives the median of the per-run
# p50 values and the ratio cgloo / Open MPI (time: below 1 is faster; bandwidth: above 1 is).
#   bench/run.sh                     RUNS=5 MAX_BYTES=67108864 TIME_MS=500 bench/run.sh
# LIMITS=0 skips the limits (bench/coll.sh measures them once for both reports).
# The awk below is POSIX awk (Debian's default is mawk): sorting is left to sort(1).
set -euo pipefail
# The figures this script makes are over TCP (the default, auto, takes shared memory between
# ranks of one host): CGLOO_TRANSPORT=auto or shm in the caller's environment measures that.
export CGLOO_TRANSPORT=${CGLOO_TRANSPORT:-tcp}
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
MAX_BYTES=${MAX_BYTES:-4194304}
TIME_MS=${TIME_MS:-300}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

make -s build >/dev/null
have_mpi=0
if command -v mpicc >/dev/null && command -v mpirun >/dev/null; then
  mpicc -O2 -o "$out/mpi_p2p" bench/mpi_p2p.c && have_mpi=1
else
  echo "Open MPI not found (apt-get install openmpi-bin libopenmpi-dev): cgloo only" >&2
fi
mpi_flags=(--allow-run-as-root --oversubscribe -np 2 --mca btl tcp,self --mca btl_tcp_if_include lo)

for run in $(seq "$RUNS"); do
  for mode in pingpong stream; do
    echo "run $run/$RUNS: $mode" >&2
    ./build/tools/cgloo-run -n 2 ./build/tools/cgloo-bench --mode "$mode" --min-bytes 8 \
      --max-bytes "$MAX_BYTES" --iteration-time-ms "$TIME_MS" --csv | grep -v '^mode' >>"$out/cgloo.csv"
    if [ "$have_mpi" = 1 ]; then
      mpirun "${mpi_flags[@]}" "$out/mpi_p2p" "$mode" 8 "$MAX_BYTES" "$TIME_MS" >>"$out/mpi.csv"
    fi
  done
done

limits=../shared/tools/limits/run.sh
if [ "${LIMITS:-1}" != 0 ] && [ -x "$limits" ]; then
  echo "measuring the machine's TCP limits" >&2
  "$limits" tcp >"$out/limits.txt" 2>&1 || true
fi

echo "## Point-to-point, 2 ranks, TCP loopback: medians of $RUNS runs ($(date -u +%F), $(nproc) cores)"
echo
echo "| mode | bytes | cgloo p50 us | Open MPI p50 us | time ratio | cgloo GB/s | Open MPI GB/s | bandwidth ratio |"
echo "|---|---|---|---|---|---|---|---|"
touch "$out/mpi.csv"
awk -F, '
  function median(list,   a, n, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return n ? (n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2) : ""
  }
  FNR == 1 { src = (FILENAME ~ /mpi\.csv$/) ? "mpi" : "cgloo" }
  { key = $1 SUBSEP $4; keys[key] = 1; t[src, key] = t[src, key] " " $7; g[src, key] = g[src, key] " " $10 }
  END {
    for (k in keys) {
      split(k, p, SUBSEP)
      ct = median(t["cgloo", k]); mt = median(t["mpi", k]); cg = median(g["cgloo", k]); mg = median(g["mpi", k])
      printf "%s %012d | %s | %s | %.2f | %s | %s | %.3f | %s | %s |\n", p[1], p[2], p[1], p[2], ct,
        mt == "" ? "-" : sprintf("%.2f", mt), mt == "" ? "-" : sprintf("%.2f", ct / mt),
        cg, mg == "" ? "-" : sprintf("%.3f", mg), mg == "" || mg == 0 ? "-" : sprintf("%.2f", cg / mg)
    }
  }' "$out/cgloo.csv" "$out/mpi.csv" | sort | cut -d' ' -f3-
if [ -f "$out/limits.txt" ]; then
  echo
  echo "### The machine's limits, measured in the same run"
  echo '```'
  cat "$out/limits.txt"
  echo '```'
fi
