#!/usr/bin/env bash
# Ranks as real processes through the launcher: point-to-point and collectives at world sizes
# 1, 2, 3, 4, 5, 7 and 8 (or those PROCESSES_WORLDS lists), with the embedded TCP store; and once
# more over a file store.
set -u
run=$1
prog=$2
passed=0
failed=0
check() {
  local name=$1
  shift
  if "$@" >/tmp/cgloo-proc-$$.log 2>&1; then
    passed=$((passed + 1))
    echo "ok   $name"
  else
    failed=$((failed + 1))
    echo "FAIL $name"
    sed 's/^/  /' /tmp/cgloo-proc-$$.log | tail -20
  fi
}
for n in ${PROCESSES_WORLDS:-1 2 3 4 5 7 8}; do
  check "processes_$n" "$run" -n "$n" --tag "$prog"
done
dir=$(mktemp -d)
check "file_store_3" env -u CGLOO_STORE bash -c '
  pids=""
  for r in 0 1 2; do
    CGLOO_RANK=$r CGLOO_SIZE=3 CGLOO_STORE=file://'"$dir"' CGLOO_RUN_ID=run-$$ '"$prog"' &
    pids="$pids $!"
  done
  status=0; for p in $pids; do wait "$p" || status=1; done; exit $status'
rm -rf "$dir" /tmp/cgloo-proc-$$.log
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
