#!/usr/bin/env bash
# Kill and restart: 4-rank cgloo-soak jobs, one after another, for SECONDS (at least three).
# In two jobs of three one rank (another each time) kills itself with SIGKILL at an operation
# that changes from job to job: cgloo-run must report that rank's signal and fail, and every
# other rank must fail, its line naming the dead rank. Every third job runs clean on a
# fresh store and fresh ports and must succeed with every result right: nothing the killed
# jobs left behind gets in the way of the next.
#
# Usage: soak_restart.sh CGLOO_RUN CGLOO_SOAK SECONDS
set -u
run=$1
soak=$2
seconds=$3
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# killed_job I VICTIM AT: the job's status and every survivor's line are as they should be.
killed_job() {
    local i=$1 victim=$2 at=$3 rc
    # A survivor waiting on a live rank that gave up hears that rank's revoke and fails at once;
    # the 10 s timeout, inside the 20 s grace, bounds the case where a notice is lost.
    CGLOO_TIMEOUT_MS=10000 "$run" -n 4 --grace-ms 20000 "$soak" --ops 400 --seed "$i" --die-rank "$victim" \
        --die-at-op "$at" --quiet >"$out" 2>&1
    rc=$?
    # cgloo-run's status is the first failure it reaped: the SIGKILL (137) as a rule, but a
    # survivor's exit may be reaped first when the machine is loaded, so either will do as long
    # as cgloo-run reports the signal.
    [ $rc = 137 ] || [ $rc = 3 ] || { echo "job $i: cgloo-run exited $rc, not 137 or 3"; return 1; }
    grep -q "rank $victim was killed by signal 9" "$out" ||
        { echo "job $i: cgloo-run did not report rank $victim's SIGKILL"; return 1; }
    for r in 0 1 2 3; do
        [ $r = "$victim" ] && continue
        local line
        line=$(grep "cgloo-soak: rank $r: failed at" "$out") || { echo "job $i: rank $r did not fail"; return 1; }
        # what the rank said after "failed at": the op, then the library's detail
        echo "${line#*failed at}" | grep -qE "(rank|peer) $victim([^0-9]|$)" ||
            { echo "job $i: rank $r does not name rank $victim: $line"; return 1; }
    done
}

end=$((SECONDS + seconds))
i=0
killed=0
bad=0
while [ $SECONDS -lt $end ] || [ $i -lt 3 ]; do
    if [ $((i % 3)) = 2 ]; then
        "$run" -n 4 "$soak" --ops 150 --seed "$i" --quiet >"$out" 2>&1 ||
            { echo "job $i (no rank killed) failed:"; tail -5 "$out"; bad=$((bad + 1)); }
    else
        victim=$((i % 4))
        at=$(((i * 37) % 150 + 5))
        killed=$((killed + 1))
        killed_job $i $victim $at || { tail -8 "$out" | sed 's/^/  /'; bad=$((bad + 1)); }
    fi
    i=$((i + 1))
done
echo "soak_restart: $i jobs, $killed with a rank killed by SIGKILL, $bad not as expected"
[ $bad = 0 ]
