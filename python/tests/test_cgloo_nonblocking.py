"""The non-blocking collectives of the cgloo package: ctx.i<name>(...) returns a Request at once,
its wait() returns what the blocking call returns; many in flight, several threads, overlap
with Python computation, the buffers held, errors and reduce_fn exceptions at wait(), cancel,
close with requests in flight."""

import threading
import time

import numpy as np
import pytest

import cgloo
from cgloo_testlib import run_threads


def test_every_collective_non_blocking():
    n, k = 4, 100

    def body(ctx):
        r = ctx.rank
        own = np.full(k, r, np.float32)
        reqs = {
            "allreduce": ctx.iallreduce(np.full(k, r, np.float32)),
            "allreduce_multi": ctx.iallreduce_multi([np.ones(k, np.float32), np.ones(k, np.float32)]),
            "reduce_scatter": ctx.ireduce_scatter(np.ones(n * k, np.float32), np.zeros(k, np.float32)),
            "reduce_scatterv": ctx.ireduce_scatterv(np.ones(n * k, np.float32), np.zeros(k, np.float32),
                                                    [k] * n),
            "allgather": ctx.iallgather(own, np.zeros(n * k, np.float32)),
            "allgatherv": ctx.iallgatherv(own, np.zeros(n * k, np.float32), [k] * n),
            "broadcast": ctx.ibroadcast(np.full(k, 9 if r == 2 else 0, np.float32), root=2),
            "reduce": ctx.ireduce(np.ones(k, np.float32), np.zeros(k, np.float32), root=1),
            "gather": ctx.igather(own, np.zeros(n * k, np.float32), root=3),
            "gatherv": ctx.igatherv(own, np.zeros(n * k, np.float32), [k] * n, root=3),
            "scatter": ctx.iscatter(np.repeat(np.arange(n, dtype=np.float32), k), np.zeros(k, np.float32)),
            "scatterv": ctx.iscatterv(np.repeat(np.arange(n, dtype=np.float32), k), [k] * n,
                                      np.zeros(k, np.float32)),
            "alltoall": ctx.ialltoall(np.full(n * k, r, np.float32), np.zeros(n * k, np.float32)),
            "alltoallv": ctx.ialltoallv(np.full(n * k, r, np.float32), [k] * n,
                                        np.zeros(n * k, np.float32), [k] * n),
            "barrier": ctx.ibarrier(),
        }
        assert all(isinstance(q, cgloo.Request) for q in reqs.values())
        return {name: q.wait() for name, q in reversed(list(reqs.items()))}

    ranks = np.repeat(np.arange(n, dtype=np.float32), k)
    for r, out in enumerate(run_threads(n, body)):
        assert np.all(out["allreduce"] == n * (n - 1) / 2)
        assert all(np.all(a == 2 * n) for a in out["allreduce_multi"])
        assert np.all(out["reduce_scatter"] == n) and np.all(out["reduce_scatterv"] == n)
        assert np.array_equal(out["allgather"], ranks) and np.array_equal(out["allgatherv"], ranks)
        assert np.all(out["broadcast"] == 9)
        assert np.all(out["reduce"] == (n if r == 1 else 0))
        if r == 3:
            assert np.array_equal(out["gather"], ranks) and np.array_equal(out["gatherv"], ranks)
        assert np.all(out["scatter"] == r) and np.all(out["scatterv"] == r)
        assert np.array_equal(out["alltoall"], ranks) and np.array_equal(out["alltoallv"], ranks)
        assert out["barrier"] is None


def test_many_in_flight_from_several_threads():
    """Three threads per rank, each under its own tag, start batches of allreduces and wait for
    them (some by polling test()); the threads start in a different order on every rank."""
    n, threads, rounds = 3, 3, 6
    sizes = [1, 1000, 70000, 300000]

    def body(ctx):
        def worker(t):
            time.sleep(0.003 * ((ctx.rank + t) % threads))
            for rnd in range(rounds):
                bufs = [np.full(sizes[(rnd + i) % 4], ctx.rank + t + i, np.float32) for i in range(4)]
                reqs = [ctx.iallreduce(b, tag=t + 1) for b in bufs]
                for i, (b, q) in enumerate(zip(bufs, reqs)):
                    if i % 2:
                        while not q.test():
                            pass
                    else:
                        assert q.wait() is b
                    assert np.all(b == n * (n - 1) / 2 + n * (t + i))

        ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
        errors = []
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return errors

    run_threads(n, body, timeout=30.0)


def test_overlap_with_python_computation():
    """A 32 MiB allreduce moves while this thread computes in Python with the GIL held part of
    the time (numpy releases it): little is left to wait for afterwards."""
    m = 8 << 20

    def body(ctx):
        x = np.ones(m, np.float32)
        ctx.barrier()
        t0 = time.perf_counter()
        ctx.allreduce(x)
        alone = time.perf_counter() - t0
        ctx.barrier()
        q = ctx.iallreduce(x)
        y = np.arange(1 << 16, dtype=np.float64)
        end = time.perf_counter() + 4 * alone + 0.05
        while time.perf_counter() < end:
            y = np.sqrt(y * y + 1.0)
        t0 = time.perf_counter()
        q.wait()
        waited = time.perf_counter() - t0
        assert np.all(x == 4)
        return alone, waited

    for alone, waited in run_threads(2, body):
        assert waited < alone / 2 + 0.04, (alone, waited)


def test_buffers_are_held_and_errors_come_from_wait():
    def body(ctx):
        q = ctx.iallreduce(np.ones(1000, np.float32))  # the only reference is the request's
        assert np.all(q.wait() == 2)
        with pytest.raises(cgloo.InvalidArgumentError, match="root"):
            ctx.ibroadcast(np.ones(4, np.float32), root=7).wait()
        with pytest.raises(ValueError):  # checked at once, before anything starts
            ctx.iallgather(np.ones(4, np.float32), np.zeros(3, np.float32))
        return True

    assert run_threads(2, body, timeout=5.0) == [True, True]


def test_reduce_fn_runs_and_its_exception_reaches_wait():
    def body(ctx):
        seen = []

        def fn(inout, in_):
            seen.append(threading.get_ident())
            inout += 2 * in_

        a = np.ones(8, np.float64)
        q = ctx.iallreduce(a, reduce_fn=fn)
        time.sleep(0.05)  # a progress thread runs it meanwhile
        assert np.all(q.wait() == 3)
        assert seen and seen[0] != threading.get_ident()

        def bad(inout, in_):
            raise KeyError("from the reduction")

        q = ctx.iallreduce(np.ones(8), reduce_fn=bad)
        with pytest.raises(KeyError):
            q.wait()
        return True

    run_threads(2, body, timeout=5.0)


def test_timeout_and_cancel():
    def body(ctx):
        if ctx.rank == 0:
            q = ctx.iallreduce(np.ones(4, np.float32), timeout=0.3)
            with pytest.raises(cgloo.TimeoutError, match="rank 1"):
                q.wait()
            q = ctx.ibarrier(tag=4)
            t0 = time.perf_counter()
            with pytest.raises(cgloo.TimeoutError, match="stopped"):
                q.wait(timeout=0.1)  # a collective's wait ends it: stopped at the timeout
            assert q.done and time.perf_counter() - t0 < 1.0
            q = ctx.ibarrier(tag=5)
            assert not q.test() and not q.done
            t0 = time.perf_counter()
            q.cancel()
            assert q.done and time.perf_counter() - t0 < 1.0
            with pytest.raises(cgloo.AbortedError):
                q.wait()
            ctx.send(np.zeros(1, np.uint8), 1, tag=1)
        else:
            ctx.recv(np.zeros(1, np.uint8), 0, tag=1)
        return True

    run_threads(2, body, timeout=10.0)


def test_close_with_requests_in_flight():
    """Rank 0 closes its context with collectives rank 1 never joins: close returns promptly and
    the requests fail; rank 1 sees rank 0 go."""
    def body(ctx):
        if ctx.rank == 0:
            qs = [ctx.iallreduce(np.ones(1 << 20, np.float32)) for _ in range(3)]
            time.sleep(0.05)
            t0 = time.perf_counter()
            ctx.close()
            assert time.perf_counter() - t0 < 3.0
            for q in qs:
                with pytest.raises(cgloo.Error):
                    q.wait()
        else:
            with pytest.raises(cgloo.PeerError):
                ctx.recv(np.zeros(4, np.uint8), 0, tag=1)
        return True

    run_threads(2, body, timeout=10.0)
