#!/bin/sh
# cgloo-bench runs, and every collective mode gives verified results: 3 ranks (not a power of
# two), one size each, through the launcher, so that the benchmark cannot break unnoticed.
# Usage: test_bench_smoke.sh CGLOO_RUN CGLOO_BENCH
set -eu
run=$1
bench=$2
header='mode,algorithm,ranks,bytes,elements,min_us,p50_us,p99_us,max_us,algbw_gbps,busbw_gbps,samples'
out=$("$run" -n 3 "$bench" --mode allreduce --elements 1000 --verify --iteration-time-ms 50 --csv)
printf '%s\n' "$out"
[ "$(printf '%s\n' "$out" | head -1)" = "$header" ] || { echo "FAIL: CSV header"; exit 1; }
printf '%s\n' "$out" | grep -q '^allreduce,auto,3,4000,1000,' || { echo "FAIL: allreduce row"; exit 1; }
"$run" -n 3 "$bench" --mode allreduce --inputs 2 --dtype float16 --elements 777 --verify \
  --iteration-count 5 --csv
for dtype in bool int16 uint16 complex64 complex128; do
  "$run" -n 3 "$bench" --mode allreduce --dtype "$dtype" --elements 1000 --verify \
    --iteration-count 5 --csv
done
"$run" -n 3 "$bench" --mode alltoall --dtype complex128 --elements 999 --verify \
  --iteration-count 5 --csv
for mode in reduce_scatter allgather broadcast reduce gather scatter alltoall barrier; do
  "$run" -n 3 "$bench" --mode "$mode" --elements 1000 --verify --iteration-count 5 --json
done
"$run" -n 2 "$bench" --mode pingpong --min-bytes 8 --max-bytes 64 --iteration-count 10 --csv
echo "test_bench_smoke: passed"
