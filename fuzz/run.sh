#!/usr/bin/env bash
# Builds the libFuzzer targets with clang under ASan + UBSan (./build-fuzz) and runs each for a
# bounded time; fails when any target finds a crash, a leak, undefined behaviour or a timeout.
#   fuzz/run.sh                 every target, FUZZ_SECONDS (default 12) each: about a minute
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

failed=0
mkdir -p $B/artifacts
for t in "${TARGETS[@]}"; do
  mkdir -p $B/work/$t
  log=$B/work/$t.log
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb: a runaway allocation.
  if ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    $B/fuzz/$t -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
    -print_final_stats=1 -artifact_prefix=$B/artifacts/$t- \
    $B/work/$t fuzz/corpus/$t >"$log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    echo "$t: ok, $runs inputs in ${SECONDS_EACH} s"
  else
    failed=$((failed + 1))
    echo "$t: FAILED (log: $log; input: $B/artifacts/$t-*)"
    grep -m1 -A12 -E '^==[0-9]+==ERROR|runtime error|^SUMMARY' "$log" || tail -20 "$log"
  fi
done
echo "$(( ${#TARGETS[@]} - failed )) passed, $failed failed"
exit $((failed > 0))
