"""Data-parallel training in numpy over cgloo: logistic regression, gradients averaged with
allreduce.

    PYTHONPATH=build/python \
        build/tools/cgloo-run -n 4 /usr/bin/python3 examples/data_parallel_numpy.py

Every rank makes the same synthetic data set (same seed) and trains on its own shard of it:
each step it computes the gradient of the log loss on its shard, the ranks sum their gradients
(and losses) with one allreduce, and every rank applies the same averaged step. Since all ranks
start from the same weights and apply the same update, they stay identical without ever sending
weights; the program checks that at the end, and that the loss fell.
"""

import sys

import numpy as np

import cgloo

SAMPLES, FEATURES, STEPS, LEARNING_RATE = 8192, 16, 60, 0.5


def make_data(seed=0):
    """The full data set: features x, labels y in {0, 1} from a hidden linear rule plus noise."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((SAMPLES, FEATURES)).astype(np.float32)
    truth = rng.standard_normal(FEATURES).astype(np.float32)
    noise = 0.5 * rng.standard_normal(SAMPLES).astype(np.float32)
    y = (x @ truth + noise > 0).astype(np.float32)
    return x, y


def shard(x, y, rank, size):
    """This rank's rows: every size-th sample starting at rank."""
    return x[rank::size], y[rank::size]


def local_gradient(w, x, y):
    """The summed gradient of the log loss over these rows, with the summed loss in the last
    slot, so that one allreduce carries both."""
    p = 1.0 / (1.0 + np.exp(-(x @ w)))
    eps = np.float32(1e-7)
    loss = -np.sum(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))
    out = np.empty(FEATURES + 1, np.float32)
    out[:FEATURES] = x.T @ (p - y)
    out[FEATURES] = loss
    return out


def train(ctx, x, y):
    """STEPS steps of full-batch gradient descent; returns the weights and the mean losses."""
    w = np.zeros(FEATURES, np.float32)
    losses = []
    for _ in range(STEPS):
        g = local_gradient(w, x, y)
        ctx.allreduce(g)  # in place: the sum over all ranks' shards
        g /= SAMPLES
        w -= LEARNING_RATE * g[:FEATURES]
        losses.append(float(g[FEATURES]))
    return w, losses


def weights_identical(ctx, w):
    """True on every rank if every rank holds bit-identical weights (rank 0's, broadcast)."""
    first = w.copy()
    ctx.broadcast(first, root=0)
    same = np.array([int(np.array_equal(first.view(np.uint32), w.view(np.uint32)))], np.int32)
    ctx.allreduce(same, op=cgloo.MIN)
    return bool(same[0])


def main():
    with cgloo.init_from_env() as ctx:
        x, y = shard(*make_data(), ctx.rank, ctx.size)
        w, losses = train(ctx, x, y)
        identical = weights_identical(ctx, w)
        if ctx.rank == 0:
            print(f"{ctx.size} ranks, {STEPS} steps: loss {losses[0]:.4f} -> {losses[-1]:.4f}; "
                  f"weights {'identical' if identical else 'DIFFER'} on every rank")
        if not identical or not losses[-1] < 0.5 * losses[0]:
            print(f"rank {ctx.rank}: training failed", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
