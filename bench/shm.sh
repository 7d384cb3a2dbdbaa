#!/usr/bin/env bash
# Shared memory against TCP loopback and Open MPI's shared memory (vader), in one run:
# cgloo-bench under cgloo-run with CGLOO_TRANSPORT=shm and =tcp, and bench/mpi_coll.c /
# bench/mpi_p2p.c under `mpirun --mca btl self,vader`, for each world size in RANKS (default 2;
# the ping-pong runs at 2 only). Every configuration runs RUNS times; the table gives the
# median of the per-run p50 values (and of the bus bandwidth).
#   bench/shm.sh            RUNS=5 MAX_BYTES=67108864 TIME_MS=300 RANKS="2 4" bench/shm.sh
# The awk below is POSIX awk (Debian's default is mawk): sorting is left to sort(1).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
MAX_BYTES=${MAX_BYTES:-16777216}
TIME_MS=${TIME_MS:-200}
RANKS=${RANKS:-2}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

make -s build >/dev/null
have_mpi=0
if command -v mpicc >/dev/null && command -v mpirun >/dev/null; then
  mpicc -O2 -o "$out/mpi_coll" bench/mpi_coll.c && mpicc -O2 -o "$out/mpi_p2p" bench/mpi_p2p.c &&
    have_mpi=1
else
  echo "Open MPI not found (apt-get install openmpi-bin libopenmpi-dev): cgloo only" >&2
fi
mpi=(mpirun --allow-run-as-root --oversubscribe --mca btl self,vader)
sizes=(--min-elements 1 --max-elements $((MAX_BYTES / 4)) --factor 16 --iteration-time-ms "$TIME_MS" --csv)

# add LABEL RANKS: keeps the CSV rows on stdin of 4 bytes times a power of 16 (the sizes every
# sweep has), tags them with LABEL and the world size, and appends them to all.csv
add() {
  grep -v '^mode' | awk -F, '{ n = $4 + 0; for (s = 4; s < n; s *= 16) ; if (s == n) print }' |
    sed "s/^/$1,$2,/" >>"$out/all.csv"
}
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for run in $(seq "$RUNS"); do
  echo "run $run/$RUNS" >&2
  for n in $RANKS; do
    for tp in shm tcp; do
      CGLOO_TRANSPORT=$tp ./build/tools/cgloo-run -n "$n" ./build/tools/cgloo-bench \
        --mode allreduce --dtype float32 "${sizes[@]}" | add "cgloo-$tp" "$n"
      [ "$n" = 2 ] && CGLOO_TRANSPORT=$tp ./build/tools/cgloo-run -n 2 ./build/tools/cgloo-bench \
        --mode pingpong --min-bytes 4 --max-bytes "$MAX_BYTES" --factor 16 \
        --iteration-time-ms "$TIME_MS" --csv | add "cgloo-$tp" 2
    done
    if [ "$have_mpi" = 1 ]; then
      "${mpi[@]}" -np "$n" "$out/mpi_coll" --mode allreduce "${sizes[@]}" | add ompi-vader "$n"
      [ "$n" = 2 ] && "${mpi[@]}" -np 2 "$out/mpi_p2p" pingpong 4 "$MAX_BYTES" "$TIME_MS" |
        add ompi-vader 2
    fi
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

echo "## Shared memory, ranks $RANKS: medians of $RUNS runs ($(date -u +%F), $(nproc) cores)"
echo
echo "| ranks | mode | bytes | cgloo shm p50 us | cgloo tcp p50 us | Open MPI vader p50 us | shm / vader time | cgloo shm GB/s | Open MPI vader GB/s |"
echo "|---|---|---|---|---|---|---|---|---|"
awk -F, '
  function median(list,   a, n, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return n ? (n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2) : ""
  }
  { key = $2 SUBSEP $3 SUBSEP $6; keys[key] = 1; t[$1, key] = t[$1, key] " " $9; g[$1, key] = g[$1, key] " " $13 }
  END {
    for (k in keys) {
      split(k, p, SUBSEP)
      s = median(t["cgloo-shm", k]); c = median(t["cgloo-tcp", k]); m = median(t["ompi-vader", k])
      printf "%s %s %012d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", p[1], p[2], p[3], p[1], p[2], p[3], s, c,
        m == "" ? "-" : m, m == "" ? "-" : sprintf("%.2f", s / m), median(g["cgloo-shm", k]),
        m == "" ? "-" : median(g["ompi-vader", k])
    }
  }' "$out/all.csv" | sort | sed 's/^[^|]*| /| /'
