#!/bin/sh
# A command prefix for test_launcher that, as ssh does, leaves a process between cgloo-run and
# the rank: the rank is this shell's child, so cgloo-run's PR_SET_PDEATHSIG never reaches it
# and only the store watch can end it when cgloo-run dies.
"$@" &
wait $!
