"""A rank program for the cgloo tests, started by cgloo-run (or by a test directly):

    cgloo_rank_program.py all       every collective, checked (cgloo_testlib.check_all)
    cgloo_rank_program.py dead      rank 1 dies after a barrier; rank 0 must see PeerError(rank=1)
"""

import os
import signal
import sys

import cgloo
import cgloo_testlib


def scenario_all():
    with cgloo.init_from_env() as ctx:
        cgloo_testlib.check_all(ctx)


def scenario_dead():
    with cgloo.init_from_env() as ctx:
        ctx.barrier()
        if ctx.rank == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        try:
            ctx.recv(bytearray(4), 1, timeout=20)
        except cgloo.PeerError as e:
            print(f"PeerError rank={e.rank} code={e.code}: {e}", flush=True)
            sys.exit(0 if e.rank == 1 else 3)
        sys.exit(2)


if __name__ == "__main__":
    globals()["scenario_" + sys.argv[1]]()
