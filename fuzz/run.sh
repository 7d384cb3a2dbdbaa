#!/usr/bin/env bash
# Builds the libFuzzer targets with clang under ASan + UBSan (./build-fuzz) and runs each for a
# bounded time; fails when any target finds a crash, a leak, undefined behaviour or a timeout.
#   fuzz/run.sh                 every target, FUZZ_SECONDS (default 12) each, one per core at a
#                               time: about half a minute on 2 cores
#   fuzz/run.sh fuzz_url 300    one target for 300 s
# New inputs that reach new code go to build-fuzz/work/<target>/ (the checked-in seeds in
# fuzz/corpus/ are read, never written); a crashing input is left in build-fuzz/artifacts/ and
# belongs, once fixed, in fuzz/regressions/<target>/ (replayed by ctest in every build).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(fuzz_hello fuzz_msg_stream fuzz_store_request fuzz_url fuzz_addr)
SECONDS_EACH=${FUZZ_SECONDS:-12}
if [ $# -ge 1 ]; then
  TARGETS=("$1")
  SECONDS_EACH=${2:-$SECONDS_EACH}
fi

probe='#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { return (int)(d && n) * 0; }'
if ! command -v clang >/dev/null ||
  ! echo "$probe" | clang -fsanitize=fuzzer -x c - -o /dev/null 2>/dev/null; then
  echo "fuzzing skipped: apt-get install clang libclang-rt-14-dev"
  exit 0
fi

B=build-fuzz
CC=clang cmake -S . -B $B -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCGLOO_FUZZ=ON \
  -DCGLOO_SANITIZE=address -DCGLOO_BUILD_TESTS=OFF -DCGLOO_BUILD_TOOLS=OFF \
  -DCGLOO_WITH_PYTHON=OFF -DCGLOO_WITH_MPI=OFF >/dev/null
cmake --build $B -j "$(nproc 2>/dev/null || echo 2)" --target "${TARGETS[@]}" >/dev/null

# fuzz_one runs target $1 and writes its one-line outcome (and the error's lines) to
# $B/work/$1.result; the targets run side by side, one per core.
fuzz_one() {
  local t=$1 log=$B/work/$1.log out=$B/work/$1.result
  mkdir -p $B/work/$t
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb: a runaway allocation.
  if ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    $B/fuzz/$t -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
    -print_final_stats=1 -artifact_prefix=$B/artifacts/$t- \
    $B/work/$t fuzz/corpus/$t >"$log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    echo "$t: ok, $runs inputs in ${SECONDS_EACH} s" >"$out"
  else
    { echo "$t: FAILED (log: $log; input: $B/artifacts/$t-*)"
      grep -m1 -A12 -E '^==[0-9]+==ERROR|runtime error|^SUMMARY' "$log" || tail -20 "$log"
    } >"$out"
  fi
}

mkdir -p $B/artifacts $B/work
cores=$(nproc 2>/dev/null || echo 2)
for t in "${TARGETS[@]}"; do
  rm -f $B/work/$t.result
  while [ "$(jobs -rp | wc -l)" -ge "$cores" ]; do wait -n || true; done
  fuzz_one "$t" &
done
wait
failed=0
for t in "${TARGETS[@]}"; do
  cat $B/work/$t.result
  grep -q "^$t: ok" $B/work/$t.result || failed=$((failed + 1))
done
echo "$(( ${#TARGETS[@]} - failed )) passed, $failed failed"
exit $((failed > 0))
