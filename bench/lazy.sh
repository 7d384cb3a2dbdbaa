#!/usr/bin/env bash
# What lazy connections cost on a job's first call, against the full mesh: RUNS runs of
# cgloo-first-call under cgloo-run -n N each way (alternating), for each N, and the median of
# each column (docs/BENCHMARKS.md, "Lazy connections").
#   bench/lazy.sh [BUILD_DIR] [N...]          e.g. bench/lazy.sh build 2 16 64
#   LAZY_ONLY=1 ALLTOALL= bench/lazy.sh build 256 512 1024   large jobs, lazy, no alltoall
set -euo pipefail
# The figures this script makes are over TCP (the default, auto, takes shared memory between
# ranks of one host): CGLOO_TRANSPORT=auto or shm in the caller's environment measures that.
export CGLOO_TRANSPORT=${CGLOO_TRANSPORT:-tcp}
dir=${1:-build}
shift || true
sizes=${*:-2 16 64}
RUNS=${RUNS:-5}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
col() { awk -v k="$1" '{for (i = 1; i < NF; i++) if ($i == k) print $(i + 1)}' "$2" | median; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
modes="lazy eager"
[ -n "${LAZY_ONLY:-}" ] && modes=lazy
for n in $sizes; do
  for i in $(seq "$RUNS"); do
    for m in $modes; do
      lazy=0
      [ "$m" = lazy ] && lazy=1
      # shellcheck disable=SC2086
      CGLOO_LAZY=$lazy "$dir/tools/cgloo-run" -n "$n" "$dir/tools/cgloo-first-call" \
        ${ALLTOALL---alltoall} >>"$out/$m.$n" || echo "run failed: $m n=$n" >&2
    done
  done
  for m in $modes; do
    printf '%s n=%s runs=%s' "$m" "$n" "$(wc -l <"$out/$m.$n")"
    for k in span_ms connect_ms first_allreduce_ms barrier_ms second_allreduce_ms alltoall_ms \
      connections_before_alltoall max_connections; do
      printf ' %s %s' "$k" "$(col "$k" "$out/$m.$n")"
    done
    echo
  done
done
