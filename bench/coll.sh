#!/usr/bin/env bash
# Collective benchmark: cgloo-bench beside Open MPI (bench/mpi_coll.c, when mpicc and mpirun
# are present) and Facebook's Gloo (bench/gloo_coll.cc, when g++ and libgloo-dev are present;
# allreduce as the best of Gloo's four algorithms at each size) for every collective at 2 and 4
# ranks over TCP loopback, plus the point-to-point comparison (bench/run.sh) and the machine's
# TCP limits (../shared/tools/limits/run.sh, when present), all in one run. Every configuration
# runs RUNS times; the tables give the median of the runs' p50 times and of their bus
# bandwidths, and the ratios cgloo / Open MPI and cgloo / Gloo (time: below 1 is faster;
# bandwidth: above 1 is). Writes OUT/BENCHMARKS.md (the method from bench/BENCHMARKS.head.md,
# then the results), OUT/bench/collectives.csv (the medians) and OUT/bench/<collective>.png (bus
# bandwidth and latency against size, with gnuplot).
#
#   bench/coll.sh                         full run into docs/ (roughly 40 minutes)
#   QUICK=1 bench/coll.sh                 a few sizes, one run, into build/bench-quick/
#   RUNS=5 MAX_BYTES=16777216 COLLS="allreduce broadcast" RANKS="2 3 4" bench/coll.sh
#   REPORT_ONLY=1 bench/coll.sh           the report again from the last run's data (DATA)
#   TRANSPORT=shm bench/coll.sh           the same over shared memory, beside Open MPI's (vader)
#
# TRANSPORT (tcp) picks what is compared: tcp runs cgloo with CGLOO_TRANSPORT=tcp, Open MPI with
# `--mca btl tcp,self` on lo, and Gloo; shm runs cgloo with CGLOO_TRANSPORT=shm, Open MPI with
# `--mca btl self,vader` (its shared memory) and no Gloo (it has no shared-memory transport),
# and measures the machine's shared-memory limits instead of TCP's. Each transport's results go
# to OUT/bench/results.md (tcp) or OUT/bench/shm/results.md (shm), its charts and CSV beside
# them, and OUT/BENCHMARKS.md is put together from bench/BENCHMARKS.head.md and the results of
# both that exist, so one transport is measured again without losing the other's.
#
# Environment: RUNS (3; QUICK 1), MAX_BYTES (64 MiB; QUICK 1 MiB), FACTOR (size step, 2;
# QUICK 8), TIME_MS (time per size and run, 200; QUICK 30), RANKS ("2 4"), COLLS (all),
# P2P (1: include bench/run.sh, TCP only; QUICK 0), OUT (docs; QUICK build/bench-quick), DATA
# (where the measurements are kept for REPORT_ONLY: build/bench-data, or build/bench-data-shm;
# QUICK OUT/data).
set -euo pipefail
# The figures this script makes are over TCP (the default, auto, takes shared memory between
# ranks of one host): CGLOO_TRANSPORT=auto or shm in the caller's environment measures that.
export CGLOO_TRANSPORT=${CGLOO_TRANSPORT:-tcp}
cd "$(dirname "$0")/.."
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  RUNS=${RUNS:-1} MAX_BYTES=${MAX_BYTES:-1048576} FACTOR=${FACTOR:-8} TIME_MS=${TIME_MS:-30}
  P2P=${P2P:-0} OUT=${OUT:-build/bench-quick} DATA=${DATA:-build/bench-quick/data}
fi
TRANSPORT=${TRANSPORT:-tcp}
case $TRANSPORT in
  tcp) DATA=${DATA:-build/bench-data} RES=bench over="TCP loopback" limits_kind=tcp ;;
  shm) DATA=${DATA:-build/bench-data-shm} RES=bench/shm over="shared memory" limits_kind=shm P2P=0 ;;
  *) echo "TRANSPORT must be tcp or shm, not '$TRANSPORT'" >&2; exit 2 ;;
esac
RUNS=${RUNS:-3}
MAX_BYTES=${MAX_BYTES:-67108864}
FACTOR=${FACTOR:-2}
TIME_MS=${TIME_MS:-200}
P2P=${P2P:-1}
OUT=${OUT:-docs}
RANKS=${RANKS:-"2 4"}
COLLS=${COLLS:-"allreduce reduce_scatter allgather broadcast reduce gather scatter alltoall barrier"}
MIN_BYTES=4 # one float32
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$OUT/$RES" "$DATA"

# measure: every sweep into $DATA/raw.csv, with the limits, the point-to-point report and the
# run's circumstances (meta.sh), so that the report can be made again without measuring.
measure() {
  started=$(date +%s)
  load_before=$(cut -d' ' -f1-3 /proc/loadavg)

  local tries=0
  until make -s build >"$tmp/build.log" 2>&1; do
    tail -5 "$tmp/build.log" >&2
    tries=$((tries + 1))
    [ "$tries" -lt 10 ] || { echo "make build failed 10 times" >&2; exit 1; }
    echo "make build failed (above); retrying in 60 s" >&2
    sleep 60
  done
  have_mpi=0
  if command -v mpicc >/dev/null && command -v mpirun >/dev/null; then
    mpicc -O2 -o "$tmp/mpi_coll" bench/mpi_coll.c && have_mpi=1
  else
    echo "Open MPI not found (apt-get install openmpi-bin libopenmpi-dev): no Open MPI column" >&2
  fi
  have_gloo=0
  if [ "$TRANSPORT" = shm ]; then
    : # Gloo has no shared-memory transport: nothing to compare
  elif command -v g++ >/dev/null && [ -f /usr/include/gloo/allreduce_ring.h ]; then
    g++ -O2 -std=c++17 -o "$tmp/gloo_coll" bench/gloo_coll.cc -lgloo -pthread && have_gloo=1
  else
    echo "Gloo not found (apt-get install g++ libgloo-dev): no Gloo column" >&2
  fi
  mpi_flags=(--allow-run-as-root --oversubscribe --mca btl tcp,self --mca btl_tcp_if_include lo)
  [ "$TRANSPORT" = tcp ] || mpi_flags=(--allow-run-as-root --oversubscribe --mca btl self,vader)
  bench_args=(--min-elements $((MIN_BYTES / 4)) --max-elements $((MAX_BYTES / 4)) --factor "$FACTOR"
    --iteration-time-ms "$TIME_MS" --csv)

  # sweep LIB RANKS COLL: one sweep into raw.csv; a failure is reported and the run goes on.
  sweep() {
    local cmd
    case $1 in
      cgloo) cmd=(env CGLOO_TRANSPORT="$TRANSPORT" ./build/tools/cgloo-run -n "$2" ./build/tools/cgloo-bench --mode "$3" --quiet) ;;
      mpi) cmd=(mpirun "${mpi_flags[@]}" -np "$2" "$tmp/mpi_coll" --mode "$3") ;;
      # cgloo-run only starts the processes: Gloo meets through its own FileStore
      gloo) cmd=(./build/tools/cgloo-run -n "$2" "$tmp/gloo_coll" --mode "$3"
          --store-dir "$tmp/gloo-store")
        if [ "$3" = allreduce ]; then cmd+=(--algorithm best); fi ;;
    esac
    if ! timeout 900 "${cmd[@]}" "${bench_args[@]}" >"$tmp/sweep.csv" 2>"$tmp/sweep.err"; then
      echo "FAILED: $1 $3, $2 ranks, run $run: $(tail -2 "$tmp/sweep.err" | tr '\n' ' ')" |
        tee -a "$DATA/failures.txt" >&2
    fi
    grep -v '^mode' "$tmp/sweep.csv" >>"$DATA/raw.csv" || true
  }

  # what was measured: HEAD, and whether the working tree's library differs from it
  commit="$(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  [ -z "$(git status --porcelain -- src include 2>/dev/null)" ] || commit="$commit with uncommitted changes in src/"
  rm -f "$DATA/raw.csv" "$DATA/failures.txt" "$DATA/limits.txt" "$DATA/p2p.md"
  touch "$DATA/raw.csv" "$DATA/failures.txt"
  libs="cgloo"
  [ "$have_mpi" = 0 ] || libs="$libs mpi"
  [ "$have_gloo" = 0 ] || libs="$libs gloo"
  for run in $(seq "$RUNS"); do
    for n in $RANKS; do
      for coll in $COLLS; do
        echo "run $run/$RUNS: $coll, $n ranks ($(($(date +%s) - started)) s so far)" >&2
        # reverse the libraries' order every other run, so that slow drifts in the machine's
        # load even out
        order=$libs
        [ $((run % 2)) = 1 ] || order=$(echo "$libs" | tr ' ' '\n' | tac | tr '\n' ' ')
        for lib in $order; do
          sweep "$lib" "$n" "$coll"
        done
      done
    done
  done

  limits=../shared/tools/limits/run.sh
  if [ -x "$limits" ]; then
    echo "measuring the machine's $over limits" >&2
    "$limits" "$limits_kind" >"$DATA/limits.txt" 2>&1 || true
  fi
  if [ "$P2P" = 1 ]; then
    echo "point-to-point: bench/run.sh" >&2
    LIMITS=0 RUNS="$RUNS" bench/run.sh >"$DATA/p2p.md" || echo "bench/run.sh failed" >"$DATA/p2p.md"
  fi
  {
    printf 'RUNS=%q MAX_BYTES=%q FACTOR=%q TIME_MS=%q RANKS=%q COLLS=%q TRANSPORT=%q\n' "$RUNS" \
      "$MAX_BYTES" "$FACTOR" "$TIME_MS" "$RANKS" "$COLLS" "$TRANSPORT"
    printf 'when=%q commit=%q mpi=%q system=%q\n' "$(date -u -d "@$started" '+%F %H:%M UTC')" \
      "$commit" "$(mpirun --version 2>/dev/null | head -1 || echo 'no Open MPI')" \
      "$(nproc) cores ($(uname -srm))"
    if [ "$have_gloo" = 1 ]; then
      printf 'gloo=%q\n' "Gloo $(dpkg-query -W -f='${Version}' libgloo-dev 2>/dev/null || echo '(version unknown)')"
    fi
    printf 'load_before=%q load_after=%q elapsed=%q\n' "$load_before" \
      "$(cut -d' ' -f1-3 /proc/loadavg)" "$(($(date +%s) - started))"
  } >"$DATA/meta.sh"
}

if [ "${REPORT_ONLY:-0}" = 1 ]; then
  [ -f "$DATA/meta.sh" ] || { echo "no measurements in $DATA: run without REPORT_ONLY" >&2; exit 1; }
else
  measure
fi
# shellcheck source=/dev/null
. "$DATA/meta.sh"

# ---- medians and ratios --------------------------------------------------------------------
# collectives.csv: mode,ranks,bytes,cgloo_p50_us,mpi_p50_us,time_ratio,cgloo_busbw,mpi_busbw,
# bw_ratio,gloo_p50_us,gloo_busbw,time_ratio_gloo,bw_ratio_gloo,gloo_algorithm, where each
# figure is the median over the runs (empty when a side has no data), time_ratio and bw_ratio
# are cgloo / Open MPI, the _gloo ratios cgloo / Gloo, and gloo_algorithm names the algorithms
# Gloo's rows came from (allreduce: the winners of its runs, joined by "/"). The library is the
# CSV's algorithm column: "mpi", "gloo:NAME", or anything else for cgloo.
awk -F, -v colls="$COLLS" -v out="$tmp/medians.unsorted" '
  function median(list,   a, n, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    if (n == 0) return ""
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  # the bus bandwidth factors of tools/cgloo-bench.c, so that busbw keeps its precision
  function factor(m, n) {
    if (m == "allreduce") return 2 * (n - 1) / n
    if (m == "broadcast" || m == "reduce") return 1
    return m == "barrier" ? 0 : (n - 1) / n
  }
  BEGIN { n = split(colls, c, " "); for (i = 1; i <= n; i++) order[c[i]] = i }
  !($1 in order) { next }
  {
    lib = $2 == "mpi" ? "mpi" : $2 ~ /^gloo/ ? "gloo" : "cgloo"; key = $1 "," $3 "," $4
    if (!(key in seen)) { seen[key] = 1; printf "%d,%s,%s,%s\n", order[$1], $1, $3, $4 > "/dev/stderr" }
    if (lib == "gloo" && index("/" algs[key] "/", "/" substr($2, 6) "/") == 0)
      algs[key] = algs[key] (algs[key] == "" ? "" : "/") substr($2, 6)
    t[lib, key] = t[lib, key] " " $7
    g[lib, key] = g[lib, key] " " ($7 > 0 ? sprintf("%.6g", $4 * factor($1, $3) / $7 / 1e3) : 0)
  }
  function ratio(a, b) { return a != "" && b != "" && b > 0 ? sprintf("%.3f", a / b) : "" }
  function bw(x) { return x == "" ? "" : sprintf("%.4g", x) }
  END {
    for (key in seen) {
      ct = median(t["cgloo", key]); mt = median(t["mpi", key]); gt = median(t["gloo", key])
      cg = median(g["cgloo", key]); mg = median(g["mpi", key]); gg = median(g["gloo", key])
      print key "," ct "," mt "," ratio(ct, mt) "," bw(cg) "," bw(mg) "," ratio(cg, mg) "," \
        gt "," bw(gg) "," ratio(ct, gt) "," ratio(cg, gg) "," algs[key] > out
    }
  }' "$DATA/raw.csv" 2>"$tmp/keys.csv"
# order: the COLLS order, then ranks, then bytes
sort -t, -k1,1n -k3,3n -k4,4n "$tmp/keys.csv" | cut -d, -f2- >"$tmp/keys.sorted"
{
  echo "mode,ranks,bytes,cgloo_p50_us,mpi_p50_us,time_ratio,cgloo_busbw_gbps,mpi_busbw_gbps,bw_ratio,gloo_p50_us,gloo_busbw_gbps,time_ratio_gloo,bw_ratio_gloo,gloo_algorithm"
  awk -F, 'NR == FNR { row[$1 "," $2 "," $3] = $0; next } { print row[$0] }' \
    "$tmp/medians.unsorted" "$tmp/keys.sorted"
} >"$OUT/$RES/collectives.csv"

# ---- charts ----------------------------------------------------------------------------------
charts=""
if command -v gnuplot >/dev/null; then
  for coll in $COLLS; do
    [ "$coll" = barrier ] && continue
    plots_bw="" plots_t=""
    for n in $RANKS; do
      awk -F, -v m="$coll" -v r="$n" '$1 == m && $2 == r' "$OUT/$RES/collectives.csv" >"$tmp/$coll.$n.dat"
      [ -s "$tmp/$coll.$n.dat" ] || continue
      plots_bw="$plots_bw '$tmp/$coll.$n.dat' using 3:7 with linespoints title 'cgloo, $n ranks',"
      plots_t="$plots_t '$tmp/$coll.$n.dat' using 3:4 with linespoints title 'cgloo, $n ranks',"
      # a library without data gets no curve (gnuplot would warn about it)
      if awk -F, '$5 != "" { f = 1 } END { exit !f }' "$tmp/$coll.$n.dat"; then
        plots_bw="$plots_bw '$tmp/$coll.$n.dat' using 3:(\$8 > 0 ? \$8 : 1/0) with linespoints dashtype 2 title 'Open MPI, $n ranks',"
        plots_t="$plots_t '$tmp/$coll.$n.dat' using 3:(\$5 > 0 ? \$5 : 1/0) with linespoints dashtype 2 title 'Open MPI, $n ranks',"
      fi
      if awk -F, '$10 != "" { f = 1 } END { exit !f }' "$tmp/$coll.$n.dat"; then
        plots_bw="$plots_bw '$tmp/$coll.$n.dat' using 3:(\$11 > 0 ? \$11 : 1/0) with linespoints dashtype 3 title 'Gloo, $n ranks',"
        plots_t="$plots_t '$tmp/$coll.$n.dat' using 3:(\$10 > 0 ? \$10 : 1/0) with linespoints dashtype 3 title 'Gloo, $n ranks',"
      fi
    done
    [ -n "$plots_bw" ] || continue
    gnuplot <<EOF && charts="$charts $coll"
set terminal pngcairo size 1200,450 font ',10'
set output '$OUT/$RES/$coll.png'
set datafile separator ','
set multiplot layout 1,2 title '$coll over $over: medians of $RUNS runs'
set logscale x 2
set xtics ('4 B' 4, '64 B' 64, '1 KiB' 1024, '16 KiB' 16384, '256 KiB' 262144, '4 MiB' 4194304, '64 MiB' 67108864, '1 GiB' 1073741824)
set xlabel 'message size (bytes, per nccl-tests)'
set offsets graph 0.02, graph 0.02, 0, 0
set key top left
set grid
set ylabel 'bus bandwidth (GB/s)'
plot ${plots_bw%,}
set logscale y 10
set format y '%g'
set ylabel 'p50 time (us)'
plot ${plots_t%,}
unset multiplot
EOF
  done
else
  echo "gnuplot not found (apt-get install -y gnuplot-nox): no charts" >&2
fi

# ---- the report --------------------------------------------------------------------------------
csv="$OUT/$RES/collectives.csv"

# summary NAME TIME_COL BW_COL: the table of cgloo against one library, from its ratio columns
# in collectives.csv.
summary() {
  echo
  echo "### Summary: cgloo against $1"
  echo
  echo "Ratios cgloo / $1 of the medians. Time: below 1 means cgloo is faster. Bus bandwidth:"
  echo "above 1 means cgloo is faster. \"smallest\" is the smallest size the collective has at that"
  echo "rank count, \"largest\" the largest; \"worst time\" is the largest time ratio over all sizes."
  echo
  echo "| collective | ranks | time, smallest | time, 1 MiB | busbw, 1 MiB | busbw, largest | geomean time ratio | worst time ratio (bytes) |"
  echo "|---|---|---|---|---|---|---|---|"
  awk -F, -v tc="$2" -v bc="$3" 'NR > 1 {
      k = $1 "," $2; tr = $tc; br = $bc
      if (!(k in first)) { first[k] = tr; keys[++nk] = k }
      if ($3 == 1048576) { t1m[k] = tr; b1m[k] = br }
      lastb[k] = br; lastbytes[k] = $3
      if (tr != "") { lg[k] += log(tr); ng[k]++; if (tr + 0 > worst[k] + 0) { worst[k] = tr; wb[k] = $3 } }
    }
    function f(x) { return x == "" ? "-" : x }
    END {
      for (i = 1; i <= nk; i++) {
        k = keys[i]; split(k, p, ",")
        printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", p[1], p[2], f(first[k]), f(t1m[k]),
          f(b1m[k]), p[1] == "barrier" || lastb[k] == "" ? "-" : lastb[k] " (" lastbytes[k] " B)",
          ng[k] ? sprintf("%.2f", exp(lg[k] / ng[k])) : "-", worst[k] == "" ? "-" : worst[k] " (" wb[k] ")"
      }
    }' "$csv"
}

# results: this transport's section of the page, from "## Results" on.
results() {
  local title="Results" suffix="" cmd_env=""
  if [ "$TRANSPORT" = shm ]; then
    title="Results over shared memory" suffix=" over shared memory" cmd_env="TRANSPORT=shm "
  fi
  echo "## $title"
  echo
  echo "Run of $when on $system, cgloo $commit, $mpi, ${gloo:-no Gloo}; $RUNS runs of every"
  echo "configuration, $TIME_MS ms of timed calls per size and run, sizes $MIN_BYTES B to $MAX_BYTES B by a"
  echo "factor of $FACTOR; load average $load_before before and $load_after after; $elapsed s in all."
  echo "Command: \`${cmd_env}RUNS=$RUNS MAX_BYTES=$MAX_BYTES FACTOR=$FACTOR TIME_MS=$TIME_MS bench/coll.sh\`."
  if [ "$TRANSPORT" = shm ]; then
    echo "cgloo runs with \`CGLOO_TRANSPORT=shm\`, Open MPI with \`--mca btl self,vader\` (its"
    echo "shared memory); Gloo has no shared-memory transport."
  fi
  if [ -s "$DATA/failures.txt" ]; then
    echo
    echo "Failures in this run:"
    echo
    sed 's/^/- /' "$DATA/failures.txt"
  fi
  summary "Open MPI" 6 9
  [ "$TRANSPORT" = shm ] || summary Gloo 12 13
  if [ -f "$DATA/limits.txt" ]; then
    echo
    echo "### The machine's $over limits, measured in the same run"
    echo
    echo "The physical floor for the tables below: \`../shared/tools/limits/run.sh $limits_kind\`."
    if [ "$TRANSPORT" = tcp ]; then
      echo "A 2-rank allreduce cannot beat one 8-byte round trip, nor a bus bandwidth above the"
      echo "one-way stream."
    else
      echo "A 2-rank allreduce cannot beat one cache-line round trip, nor a bus bandwidth above the"
      echo "copy bandwidth between two processes."
    fi
    echo
    echo '```'
    cat "$DATA/limits.txt"
    echo '```'
  fi
  for coll in $COLLS; do
    echo
    echo "### $coll$suffix"
    case " $charts " in *" $coll "*) echo; echo "![$coll$suffix: bus bandwidth and p50 time against size]($RES/$coll.png)";; esac
    for n in $RANKS; do
      echo
      echo "$coll, $n ranks:"
      echo
      if [ "$TRANSPORT" = shm ]; then
        echo "| bytes | cgloo p50 us | Open MPI p50 us | time ratio | cgloo busbw GB/s | Open MPI busbw GB/s | busbw ratio |"
        echo "|---|---|---|---|---|---|---|"
        awk -F, -v m="$coll" -v r="$n" 'function f(x) { return x == "" ? "-" : x }
          $1 == m && $2 == r { printf "| %s | %s | %s | %s | %s | %s | %s |\n", $3, f($4), f($5),
            f($6), f($7), f($8), f($9) }' "$csv"
        continue
      fi
      echo "| bytes | cgloo p50 us | Open MPI p50 us | Gloo p50 us | time ratio, MPI | time ratio, Gloo | cgloo busbw GB/s | Open MPI busbw GB/s | Gloo busbw GB/s | busbw ratio, MPI | busbw ratio, Gloo | Gloo algorithm |"
      echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
      awk -F, -v m="$coll" -v r="$n" 'function f(x) { return x == "" ? "-" : x }
        $1 == m && $2 == r { printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $3, f($4), f($5),
          f($10), f($6), f($12), f($7), f($8), f($11), f($9), f($13), f($14) }' "$csv"
    done
  done
  if [ -f "$DATA/p2p.md" ]; then
    echo
    sed 's/^## /### /' "$DATA/p2p.md"
  fi
}

# The page: the method, then the results of every transport measured so far (this one's new).
results >"$OUT/$RES/results.md"
md="$OUT/BENCHMARKS.md"
{
  cat bench/BENCHMARKS.head.md
  for r in "$OUT/bench/results.md" "$OUT/bench/shm/results.md"; do
    [ -f "$r" ] || continue
    echo
    cat "$r"
  done
} >"$md"
echo "wrote $md, $OUT/$RES/results.md, $csv and$(for c in $charts; do printf ' %s' "$OUT/$RES/$c.png"; done)" >&2
