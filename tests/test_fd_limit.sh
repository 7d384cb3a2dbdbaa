#!/usr/bin/env bash
# File-descriptor limits and a full mesh, with real processes under cgloo-run:
# (the rank program is cgloo-scale: a connect, a checked allreduce and a barrier)
# - a soft limit too low for the job (64 for 100 ranks) is lifted by cgloo-run to the hard
#   limit, which its ranks inherit, and the job runs;
# - one rank whose own limit cannot hold a connection per peer fails at once, before it
#   publishes its address, saying what the limit is and what to set, and cgloo-run names it:
#   well before the connect's timeout, which a rank that ran out part-way would wait out.
# The ranks share one host, so by default (CGLOO_TRANSPORT=auto) their pairs go through shared
# memory: a pair holds one descriptor either way (its TCP or its Unix socket), and the check
# counts one per peer before it knows which.
set -u
run=$1
prog=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
failed=0
if [ "$(ulimit -H -n)" != unlimited ] && [ "$(ulimit -H -n)" -lt 300 ]; then
  echo "skip fd_limit_lifted (the hard limit, $(ulimit -H -n), is below 300)"
elif (ulimit -S -n 64 && "$run" -n 100 "$prog" >"$dir/log" 2>&1); then
  echo "ok   fd_limit_lifted"
else
  echo "FAIL fd_limit_lifted"
  tail -5 "$dir/log"
  failed=1
fi
start=$(date +%s)
CGLOO_TIMEOUT_MS=60000 "$run" -n 40 sh -c 'if [ "$CGLOO_RANK" = 7 ]; then ulimit -n 30; fi; exec "$0"' \
  "$prog" >"$dir/log" 2>&1
status=$?
took=$(($(date +%s) - start))
if [ $status -ne 0 ] && [ $took -lt 40 ] &&
  grep -q "rank 7: too few file descriptors for a full mesh: file descriptors are limited to 30" "$dir/log" &&
  grep -q "ulimit -n" "$dir/log" && grep -q "rank 7 exited with status" "$dir/log"; then
  echo "ok   fd_limit_rank_fails_fast (${took}s)"
else
  echo "FAIL fd_limit_rank_fails_fast (status $status after ${took}s)"
  head -5 "$dir/log"
  failed=1
fi
exit $failed
