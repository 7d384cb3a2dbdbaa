"""One rank of the pygloo checks, started by cgloo-run:

    pygloo_rank_program.py STORE_DIR [CHECK ...]

The rank and world size come from cgloo-run's CGLOO_RANK and CGLOO_SIZE; the ranks meet in a
pygloo FileStore in STORE_DIR, as a pygloo program would. Runs the named checks of
pygloo_checks (all of them by default) and exits with status 1 on the first failure.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pygloo_checks  # noqa: E402


def main(argv):
    """Connect, run the checks in order, and report which one failed."""
    rank, size = int(os.environ["CGLOO_RANK"]), int(os.environ["CGLOO_SIZE"])
    names = argv[2:] or list(pygloo_checks.CHECKS)
    context = pygloo_checks.connect(rank, size, argv[1])
    for name in names:
        try:
            pygloo_checks.CHECKS[name](context)
        except Exception as e:
            print(f"rank {rank} of {size}: {name}: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
    context.closeConnections()
    print(f"rank {rank} of {size}: {len(names)} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
