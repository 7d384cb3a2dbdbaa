"""Context.split: sub-contexts of thread ranks, with MPI_Comm_split's ordering, None for a
negative color, collectives on the children and the parent in turn, nested splits, and a child
that outlives its parent."""

import numpy as np
import pytest

import cgloo
from cgloo_testlib import run_threads


def test_even_odd_split_and_parent_in_turn():
    def body(ctx):
        child = ctx.split(ctx.rank % 2, key=ctx.rank)
        with child:
            x = np.full(3, ctx.rank, np.int64)
            child.allreduce(x)
            y = np.full(3, ctx.rank, np.int64)
            ctx.allreduce(y)
            return child.rank, child.size, int(x[0]), int(y[0])
    got = run_threads(5, body)
    assert got == [(0, 3, 6, 10), (0, 2, 4, 10), (1, 3, 6, 10), (1, 2, 4, 10), (2, 3, 6, 10)]


def test_key_reverses_order_and_undefined_gets_none():
    def body(ctx):
        none = ctx.split(cgloo.UNDEFINED if ctx.rank == 0 else 1, key=-ctx.rank)
        if none is None:
            return None
        with none:
            out = np.zeros(none.size, np.int32)
            none.allgather(np.array([ctx.rank], np.int32), out)
            return none.rank, out.tolist()
    assert run_threads(4, body) == [None, (2, [3, 2, 1]), (1, [3, 2, 1]), (0, [3, 2, 1])]


def test_nested_and_child_outlives_parent():
    store = cgloo.HashStore()

    def body(ctx):
        half = ctx.split(ctx.rank // 2)
        again = half.split(0, key=-half.rank)
        ctx.barrier()
        half.close()
        x = np.ones(2, np.float32)
        again.allreduce(x)
        again.close()
        return again.rank + half_rank_of(ctx.rank), again.size, x.tolist()

    def half_rank_of(rank):
        return rank % 2
    assert run_threads(4, body, store=store) == [(1, 2, [2.0, 2.0])] * 4


def test_split_argument_errors():
    with cgloo.Context(0, 1, timeout=5) as ctx:
        with pytest.raises(TypeError):
            ctx.split("red")
        child = ctx.split(0)
        assert (child.rank, child.size) == (0, 1)
        child.close()
    with pytest.raises(ValueError, match="closed"):
        ctx.split(0)
