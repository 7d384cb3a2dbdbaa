"""Helpers of the cgloo package's tests: ranks as threads of this process, the launcher's
path, and one check of every collective against a serial reference that the thread, launcher
and multiprocessing tests all run."""

import os
import subprocess
import sys
import threading

import numpy as np

import cgloo

HERE = os.path.dirname(os.path.abspath(__file__))
RANK_PROGRAM = os.path.join(HERE, "cgloo_rank_program.py")

INT_DTYPES = [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64]
FLOAT_DTYPES = [np.float16, np.float32, np.float64]
COMPLEX_DTYPES = [np.complex64, np.complex128]


def cgloo_run_path():
    """The launcher built beside the module (CGLOO_RUN_PATH, set by CTest), or None."""
    p = os.environ.get("CGLOO_RUN_PATH")
    if p and os.access(p, os.X_OK):
        return p
    guess = os.path.join(HERE, "..", "..", "build", "tools", "cgloo-run")
    return guess if os.access(guess, os.X_OK) else None


def child_env():
    """The environment for child interpreters: this one's module path first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def run_threads(n, fn, timeout=10.0, store=None, **context_kw):
    """Run fn(ctx) on n ranks as threads over one HashStore; returns the results by rank and
    re-raises the first rank's exception. context_kw goes to every Context (lazy=...)."""
    store = store or cgloo.HashStore()
    results = [None] * n
    errors = [None] * n

    def rank(r):
        try:
            with cgloo.Context(r, n, store, timeout=timeout, **context_kw) as ctx:
                results[r] = fn(ctx)
        except BaseException as e:  # handed to the caller
            errors[r] = e

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in errors:
        if e is not None:
            raise e
    return results


def run_python(code, timeout=60, **kw):
    """Run code in a child /usr/bin/python3 (this interpreter) with this module path."""
    return subprocess.run([sys.executable, "-c", code], env=child_env(), timeout=timeout,
                          capture_output=True, text=True, **kw)


# ---- every collective against a serial reference ----

def data(rank, count, dtype, salt=0):
    """Rank-specific small values that every dtype holds exactly."""
    i = np.arange(count, dtype=np.int64)
    return (((rank + 1) * (i + 1 + salt)) % 7 + 1).astype(dtype)


def bf16(values):
    """float32 values as bfloat16 bit patterns (uint16), truncated (exact for small ints)."""
    return (np.asarray(values, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)


def expect(got, want, what):
    if not np.array_equal(np.asarray(got), np.asarray(want)):
        raise AssertionError(f"{what}: got {np.asarray(got)!r}, want {np.asarray(want)!r}")


def check_allreduce(ctx):
    p, r = ctx.size, ctx.rank
    ops = {cgloo.SUM: lambda a: np.sum(a, axis=0), cgloo.MIN: lambda a: np.min(a, axis=0),
           cgloo.MAX: lambda a: np.max(a, axis=0)}
    for dt in INT_DTYPES + FLOAT_DTYPES:
        for count in (0, 1, 5, 1000):
            every = np.stack([data(q, count, dt) for q in range(p)])
            for op, ref in ops.items():
                x = data(r, count, dt)
                ctx.allreduce(x, op=op)                                    # in place
                expect(x, ref(every).astype(dt), f"allreduce {dt.__name__} {op!r} n={count}")
                y = np.empty(count, dt)
                assert ctx.allreduce(data(r, count, dt), y, op=op) is y    # out of place
                expect(y, ref(every).astype(dt), f"allreduce out {dt.__name__} {op!r}")
    for dt in INT_DTYPES:
        every = np.stack([data(q, 9, dt) for q in range(p)])
        for op, fold in ((cgloo.BAND, np.bitwise_and), (cgloo.BOR, np.bitwise_or),
                         (cgloo.BXOR, np.bitwise_xor)):
            x = data(r, 9, dt)
            ctx.allreduce(x, op=op)
            expect(x, fold.reduce(every, axis=0), f"allreduce {dt.__name__} {op!r}")
    x = np.full(3, 2.0, np.float64)
    ctx.allreduce(x, op=cgloo.PRODUCT)
    expect(x, np.full(3, 2.0 ** p), "allreduce product")
    for alg in cgloo.algorithm_names("allreduce"):
        if alg == "direct" and p != 2:
            continue
        x = data(r, 300, np.float32)
        ctx.allreduce(x, algorithm=alg, radix=2 if alg == "bcube" else 0)
        expect(x, sum(data(q, 300, np.float32) for q in range(p)), f"allreduce {alg}")
    # bfloat16 as uint16 bit patterns.
    x = bf16(np.arange(8) + r)
    ctx.allreduce(x, dtype=cgloo.bfloat16)
    expect(x, bf16(sum(np.arange(8) + q for q in range(p))), "allreduce bfloat16")
    # Several inputs, several outputs.
    xs = [data(r, 6, np.int32, s) for s in range(3)]
    outs = [np.empty(6, np.int32) for _ in range(2)]
    ctx.allreduce_multi(xs, outs)
    want = sum(data(q, 6, np.int32, s) for q in range(p) for s in range(3))
    for o in outs:
        expect(o, want, "allreduce_multi")


def cdata(rank, count, dtype):
    """Complex values with small integer parts that differ, so products mix them."""
    return (data(rank, count, np.float64) - 4 + 1j * data(rank, count, np.float64, 3)).astype(dtype)


def bools(rank, count, op):
    """Truth values for op, as bytes 0 and 1..255 (any non-zero byte is true): mostly true
    for the ops that are an and, mostly false for those that are an or."""
    i = np.arange(count)
    true = (i * 7 + rank * 13) % 5 != 0
    if op in (cgloo.SUM, cgloo.MAX, cgloo.BOR):
        true = ~true
    elif op == cgloo.BXOR:
        true = (i + rank) % 3 == 0
    return np.where(true, (i * 37 + rank * 11) % 255 + 1, 0).astype(np.uint8).view(np.bool_)


def check_bool_and_complex(ctx):
    """bool reduces as logic, complex64 and complex128 sum and multiply, and all three move
    through the data collectives."""
    p, r = ctx.size, ctx.rank
    logic = {cgloo.SUM: np.logical_or, cgloo.MAX: np.logical_or, cgloo.BOR: np.logical_or,
             cgloo.PRODUCT: np.logical_and, cgloo.MIN: np.logical_and,
             cgloo.BAND: np.logical_and, cgloo.BXOR: np.logical_xor}
    for op, fold in logic.items():
        x = bools(r, 50, op)
        ctx.allreduce(x, op=op)
        want = fold.reduce(np.stack([bools(q, 50, op) != 0 for q in range(p)]), axis=0)
        # on one rank nothing is reduced: the bytes stay as they were
        got = x.view(np.uint8) if p > 1 else (x.view(np.uint8) != 0)
        expect(got, want.astype(np.uint8), f"allreduce bool {op!r}")
    for dt in COMPLEX_DTYPES:
        every = np.stack([cdata(q, 40, dt) for q in range(p)])
        for op, ref in ((cgloo.SUM, np.sum), (cgloo.PRODUCT, np.prod)):
            x = cdata(r, 40, dt)
            ctx.allreduce(x, op=op)
            expect(x, ref(every, axis=0).astype(dt), f"allreduce {dt.__name__} {op!r}")
        for op in (cgloo.MIN, cgloo.MAX, cgloo.BXOR):
            try:
                ctx.allreduce(cdata(r, 4, dt), op=op)
            except cgloo.InvalidArgumentError as e:
                assert f"is not defined for dtype {dt.__name__}" in e.detail, e.detail
            else:
                raise AssertionError(f"allreduce {dt.__name__} {op!r} was not refused")
        buf = cdata(0, 9, dt) if r == 0 else np.zeros(9, dt)
        ctx.broadcast(buf, root=0)
        expect(buf, cdata(0, 9, dt), f"broadcast {dt.__name__}")
        out = np.zeros(5 * p, dt)
        ctx.allgather(cdata(r, 5, dt), out)
        expect(out, np.concatenate([cdata(q, 5, dt) for q in range(p)]), f"allgather {dt}")
        send = np.concatenate([cdata(10 * r + j, 3, dt) for j in range(p)])
        out = np.zeros(3 * p, dt)
        ctx.alltoall(send, out)
        expect(out, np.concatenate([cdata(10 * q + r, 3, dt) for q in range(p)]),
               f"alltoall {dt.__name__}")
    out = np.zeros(4 * p, np.bool_)
    ctx.allgather(bools(r, 4, cgloo.BXOR) != 0, out)
    expect(out, np.concatenate([bools(q, 4, cgloo.BXOR) != 0 for q in range(p)]), "allgather bool")


def check_reduce_scatter(ctx):
    p, r = ctx.size, ctx.rank
    every = sum(data(q, 4 * p, np.float32) for q in range(p))
    out = np.empty(4, np.float32)
    ctx.reduce_scatter(data(r, 4 * p, np.float32), out)
    expect(out, every[4 * r:4 * r + 4], "reduce_scatter")
    counts = [q + 1 for q in range(p)]
    total = sum(counts)
    every = sum(data(q, total, np.int64) for q in range(p))
    out = np.empty(counts[r], np.int64)
    ctx.reduce_scatterv(data(r, total, np.int64), out, counts)
    start = sum(counts[:r])
    expect(out, every[start:start + counts[r]], "reduce_scatterv")


def check_gathers(ctx):
    p, r = ctx.size, ctx.rank
    out = np.empty(3 * p, np.uint8)
    ctx.allgather(data(r, 3, np.uint8), out)
    expect(out, np.concatenate([data(q, 3, np.uint8) for q in range(p)]), "allgather")
    counts = [(q % 3) + 1 for q in range(p)]
    out = np.zeros(sum(counts), np.float64)
    ctx.allgatherv(data(r, counts[r], np.float64), out, counts)
    expect(out, np.concatenate([data(q, counts[q], np.float64) for q in range(p)]), "allgatherv")
    for root in range(p):
        out = np.zeros(2 * p, np.int32) if r == root else None
        ctx.gather(data(r, 2, np.int32), out, root=root)
        if r == root:
            expect(out, np.concatenate([data(q, 2, np.int32) for q in range(p)]), "gather")
        out = np.zeros(sum(counts), np.int32) if r == root else None
        ctx.gatherv(data(r, counts[r], np.int32), out, counts, root=root)
        if r == root:
            expect(out, np.concatenate([data(q, counts[q], np.int32) for q in range(p)]),
                   "gatherv")


def check_rooted(ctx):
    p, r = ctx.size, ctx.rank
    for root in range(p):
        buf = data(root, 10, np.float32) if r == root else np.zeros(10, np.float32)
        ctx.broadcast(buf, root=root)
        expect(buf, data(root, 10, np.float32), f"broadcast root {root}")
        out = np.zeros(5, np.int64)
        ctx.reduce(data(r, 5, np.int64), out, root=root)
        if r == root:
            expect(out, sum(data(q, 5, np.int64) for q in range(p)), "reduce")
        x = data(r, 5, np.int64)
        ctx.reduce(x, op=cgloo.MAX, root=root)                              # in place
        if r == root:
            expect(x, np.max([data(q, 5, np.int64) for q in range(p)], axis=0), "reduce max")
        src = np.arange(3 * p, dtype=np.float64) + root if r == root else None
        out = np.zeros(3, np.float64)
        ctx.scatter(src, out, root=root)
        expect(out, np.arange(3 * r, 3 * r + 3, dtype=np.float64) + root, "scatter")
        counts = [q + 1 for q in range(p)]
        src = np.arange(sum(counts), dtype=np.uint32) if r == root else None
        out = np.zeros(counts[r], np.uint32)
        ctx.scatterv(src, counts, out, root=root)
        start = sum(counts[:r])
        expect(out, np.arange(start, start + counts[r], dtype=np.uint32), "scatterv")


def check_alltoall(ctx):
    p, r = ctx.size, ctx.rank
    send = np.arange(2 * p, dtype=np.int32) + 100 * r
    out = np.zeros(2 * p, np.int32)
    ctx.alltoall(send, out)
    expect(out, np.concatenate([np.arange(2 * r, 2 * r + 2) + 100 * q for q in range(p)]),
           "alltoall")
    # Rank i sends j + 1 elements of value 10 i + j to rank j.
    scounts = [j + 1 for j in range(p)]
    rcounts = [r + 1] * p
    send = np.concatenate([np.full(j + 1, 10 * r + j, np.int64) for j in range(p)])
    out = np.zeros(sum(rcounts), np.int64)
    ctx.alltoallv(send, scounts, out, rcounts)
    expect(out, np.concatenate([np.full(r + 1, 10 * i + r, np.int64) for i in range(p)]),
           "alltoallv")


def check_p2p(ctx):
    p, r = ctx.size, ctx.rank
    nxt, prv = (r + 1) % p, (r - 1) % p
    req = ctx.irecv(bytearray(8), prv, tag=7)
    ctx.send(np.full(2, r, np.int32), nxt, tag=7)
    assert req.wait() == (prv, 8)
    got = np.zeros(2, np.int32)
    s = ctx.isend(np.full(2, r, np.int32), nxt, tag=8)
    assert ctx.recv(got, prv, tag=8) == 8
    s.wait()
    expect(got, np.full(2, prv, np.int32), "send/recv")
    if r == 0:
        seen = set()
        for _ in range(p - 1):
            src, n = ctx.recv_any(bytearray(4), list(range(1, p)), tag=9)
            assert n == 4
            seen.add(src)
        assert seen == set(range(1, p))
    else:
        ctx.send(b"abcd", 0, tag=9)


def check_all(ctx):
    """Every collective and point-to-point form; raises AssertionError on a wrong result."""
    check_allreduce(ctx)
    check_bool_and_complex(ctx)
    check_reduce_scatter(ctx)
    check_gathers(ctx)
    check_rooted(ctx)
    check_alltoall(ctx)
    check_p2p(ctx)
    ctx.barrier()
    return "ok"
