#!/usr/bin/env bash
# TLS against plain TCP, measured in the same run: ping-pong of 8 bytes (p50 round trip) and
# allreduce of 64 MiB (bus bandwidth) at 2 ranks over loopback, through cgloo-run and
# cgloo-bench, once with the CGLOO_TLS_* variables set (certificates made now by
# tests/tls_certs.sh with the openssl command) and once without, alternating the order each run.
# The table gives the medians over RUNS runs and TLS / plain. Every TLS run is checked to have
# used TLS (the device's log line), so the ratios cannot come from two plain runs.
#   bench/tls.sh [BUILD_DIR]          RUNS=5 TIME_MS=1000 bench/tls.sh build
set -euo pipefail
# The figures this script makes are over TCP (the default, auto, takes shared memory between
# ranks of one host): CGLOO_TRANSPORT=auto or shm in the caller's environment measures that.
export CGLOO_TRANSPORT=${CGLOO_TRANSPORT:-tcp}
cd "$(dirname "$0")/.."
build=${1:-build}
RUNS=${RUNS:-5}
TIME_MS=${TIME_MS:-1000}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mkdir "$out/certs"
tests/tls_certs.sh "$out/certs"
tls_env=(CGLOO_TLS_CERT="$out/certs/good.pem" CGLOO_TLS_KEY="$out/certs/good.key"
  CGLOO_TLS_CA="$out/certs/ca.pem" CGLOO_TLS_VERIFY_HOST=1 CGLOO_LOG_LEVEL=info)

bench() { # label mode-args...
  local label=$1
  shift
  local envs=()
  [ "$label" = tls ] && envs=("${tls_env[@]}")
  env "${envs[@]}" "$build/tools/cgloo-run" -n 2 "$build/tools/cgloo-bench" "$@" \
    --iteration-time-ms "$TIME_MS" --csv 2>"$out/err" | grep -v '^mode' | sed "s/^/$label,/" \
    >>"$out/all.csv"
  if [ "$label" = tls ] && [ "$(grep -c 'TLS 1.3 on every connection' "$out/err")" != 2 ]; then
    echo "bench/tls.sh: a TLS run did not use TLS:" >&2
    cat "$out/err" >&2
    exit 1
  fi
}

measure() { # label
  bench "$1" --mode pingpong --min-bytes 8 --max-bytes 8
  bench "$1" --mode allreduce --elements 16777216 --verify
}

for run in $(seq "$RUNS"); do
  echo "run $run/$RUNS (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  if [ $((run % 2)) = 1 ]; then
    measure plain; measure tls
  else
    measure tls; measure plain
  fi
done

echo "| measure | plain TCP | TLS 1.3 | TLS / plain |"
echo "|---|---|---|---|"
# Columns after the label: mode,algorithm,ranks,bytes,elements,min,p50,p99,max,algbw,busbw,n
awk -F, '
  function median(list,   a, n, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  $2 == "pingpong" { lat[$1] = lat[$1] " " $8 }
  $2 == "allreduce" { bw[$1] = bw[$1] " " $12 }
  END {
    lp = median(lat["plain"]); lt = median(lat["tls"])
    bp = median(bw["plain"]); bt = median(bw["tls"])
    printf "| ping-pong 8 B, p50 round trip (us) | %.2f | %.2f | %.2f |\n", lp, lt, lt / lp
    printf "| allreduce 64 MiB, bus bandwidth (GB/s) | %.3f | %.3f | %.2f |\n", bp, bt, bt / bp
  }' "$out/all.csv"
