"""Checks of every pygloo collective, run by each rank of a real multi-process job.

Shared by test_pygloo.py (ranks started with multiprocessing) and pygloo_rank_program.py
(ranks started by cgloo-run). Every check computes all ranks' inputs itself, runs the call, and
compares the output with a numpy reference; inputs are small integers that every datatype holds
exactly, even reduced over four ranks.
"""

import numpy as np

import pygloo

# Every glooDataType_t with its numpy dtype.
DTYPES = {
    pygloo.glooDataType_t.glooInt8: np.int8,
    pygloo.glooDataType_t.glooUint8: np.uint8,
    pygloo.glooDataType_t.glooInt32: np.int32,
    pygloo.glooDataType_t.glooUint32: np.uint32,
    pygloo.glooDataType_t.glooInt64: np.int64,
    pygloo.glooDataType_t.glooUint64: np.uint64,
    pygloo.glooDataType_t.glooFloat16: np.float16,
    pygloo.glooDataType_t.glooFloat32: np.float32,
    pygloo.glooDataType_t.glooFloat64: np.float64,
}

# numpy's reductions of the ReduceOps.
REDUCERS = {
    pygloo.ReduceOp.SUM: np.add,
    pygloo.ReduceOp.PRODUCT: np.multiply,
    pygloo.ReduceOp.MIN: np.minimum,
    pygloo.ReduceOp.MAX: np.maximum,
    pygloo.ReduceOp.BAND: np.bitwise_and,
    pygloo.ReduceOp.BOR: np.bitwise_or,
    pygloo.ReduceOp.BXOR: np.bitwise_xor,
}
BITWISE = (pygloo.ReduceOp.BAND, pygloo.ReduceOp.BOR, pygloo.ReduceOp.BXOR)

# Element counts: one, fewer than the ranks or not divisible by them, and larger.
COUNTS = (1, 7, 300)


def ops_for(np_dtype):
    """The ReduceOps that apply to a dtype: the bitwise ones on integers only."""
    integer = np.issubdtype(np_dtype, np.integer)
    return [op for op in REDUCERS if integer or op not in BITWISE]


def values(rank, count, np_dtype, salt=0):
    """Rank's input: small positive integers (1 to 5) that differ by rank and position."""
    i = np.arange(count)
    return (((rank * 7 + i * 3 + salt) % 5) + 1).astype(np_dtype)


def reference(size, count, np_dtype, op, salt=0):
    """The reduction of every rank's values(), computed in the dtype as the library does."""
    stack = [values(r, count, np_dtype, salt) for r in range(size)]
    return REDUCERS[op].reduce(np.stack(stack), axis=0).astype(np_dtype)


def expect_equal(what, got, want):
    """Fail with the call and the first differing element when got differs from want."""
    if not np.array_equal(got, want):
        bad = np.flatnonzero(got.ravel() != want.ravel())
        i = bad[0] if len(bad) else 0
        raise AssertionError(
            f"{what}: element {i} is {got.ravel()[i]!r}, expected {want.ravel()[i]!r} "
            f"({len(bad)} wrong of {want.size})"
        )


def check_allreduce(ctx):
    """allreduce out of place and in place, every dtype, op and algorithm."""
    algorithms = list(pygloo.allreduceAlgorithm.__members__.values())
    for datatype, dt in DTYPES.items():
        for op in ops_for(dt):
            for n, count in enumerate(COUNTS):
                algorithm = algorithms[n % len(algorithms)]
                send = values(ctx.rank, count, dt)
                recv = np.zeros(count, dt)
                pygloo.allreduce(
                    ctx, send.ctypes.data, recv.ctypes.data, count, datatype, op, algorithm
                )
                want = reference(ctx.size, count, dt, op)
                expect_equal(f"allreduce {datatype.name} {op.name} {count}", recv, want)
                pygloo.allreduce(ctx, send.ctypes.data, send.ctypes.data, count, datatype, op)
                expect_equal(f"allreduce in place {datatype.name} {op.name}", send, want)


def check_allgather(ctx):
    """allgather of count elements per rank, every dtype."""
    for datatype, dt in DTYPES.items():
        for count in COUNTS:
            send = values(ctx.rank, count, dt)
            recv = np.zeros(count * ctx.size, dt)
            pygloo.allgather(ctx, send.ctypes.data, recv.ctypes.data, count, datatype)
            want = np.concatenate([values(r, count, dt) for r in range(ctx.size)])
            expect_equal(f"allgather {datatype.name} {count}", recv, want)


def check_allgatherv(ctx):
    """allgatherv with a different count per rank (one rank sends none), and with one int."""
    for datatype, dt in DTYPES.items():
        counts = [(r * 3) % 5 for r in range(ctx.size)]  # rank 0 sends nothing
        send = values(ctx.rank, counts[ctx.rank], dt)
        recv = np.zeros(sum(counts), dt)
        pygloo.allgatherv(ctx, send.ctypes.data, recv.ctypes.data, counts, datatype)
        want = np.concatenate([values(r, counts[r], dt) for r in range(ctx.size)])
        expect_equal(f"allgatherv {datatype.name} {counts}", recv, want)
    send = values(ctx.rank, 3, np.int32)
    recv = np.zeros(3 * ctx.size, np.int32)
    pygloo.allgatherv(ctx, send.ctypes.data, recv.ctypes.data, 3, pygloo.glooInt32)
    want = np.concatenate([values(r, 3, np.int32) for r in range(ctx.size)])
    expect_equal("allgatherv with one count", recv, want)


def check_reduce(ctx):
    """reduce to every root in turn, every dtype and op."""
    for datatype, dt in DTYPES.items():
        for op in ops_for(dt):
            root = (int(datatype) + int(op)) % ctx.size
            count = COUNTS[int(op) % len(COUNTS)]
            send = values(ctx.rank, count, dt)
            recv = np.zeros(count, dt)
            pygloo.reduce(ctx, send.ctypes.data, recv.ctypes.data, count, datatype, op, root)
            if ctx.rank == root:
                want = reference(ctx.size, count, dt, op)
                expect_equal(f"reduce {datatype.name} {op.name} root {root}", recv, want)
            else:
                expect_equal("reduce leaves a non-root's recvbuf", recv, np.zeros(count, dt))
            expect_equal("reduce leaves sendbuf", send, values(ctx.rank, count, dt))


def check_scatter(ctx):
    """scatter from every root, the root's blocks apart in memory and back to back."""
    for datatype, dt in DTYPES.items():
        for root in range(ctx.size):
            count = COUNTS[root % len(COUNTS)]
            blocks = [values(r, count, dt, salt=root) for r in range(ctx.size)]
            packed = np.concatenate(blocks)
            if datatype % 2:
                addresses = [b.ctypes.data for b in blocks]
            else:
                block = packed.itemsize * count
                addresses = [packed.ctypes.data + r * block for r in range(ctx.size)]
            sendbuf = addresses if ctx.rank == root else []
            recv = np.zeros(count, dt)
            pygloo.scatter(ctx, sendbuf, recv.ctypes.data, count, datatype, root)
            expect_equal(f"scatter {datatype.name} root {root}", recv, blocks[ctx.rank])


def check_gather(ctx):
    """gather to every root."""
    for datatype, dt in DTYPES.items():
        for root in range(ctx.size):
            count = COUNTS[root % len(COUNTS)]
            send = values(ctx.rank, count, dt)
            recv = np.zeros(count * ctx.size, dt)
            pygloo.gather(ctx, send.ctypes.data, recv.ctypes.data, count, datatype, root)
            if ctx.rank == root:
                want = np.concatenate([values(r, count, dt) for r in range(ctx.size)])
                expect_equal(f"gather {datatype.name} root {root}", recv, want)


def check_broadcast(ctx):
    """broadcast from every root, out of place and in place (recvbuf 0 on the root)."""
    for datatype, dt in DTYPES.items():
        for root in range(ctx.size):
            count = COUNTS[root % len(COUNTS)]
            want = values(root, count, dt, salt=1)
            send = want.copy() if ctx.rank == root else np.zeros(count, dt)
            recv = np.zeros(count, dt)
            pygloo.broadcast(ctx, send.ctypes.data, recv.ctypes.data, count, datatype, root)
            expect_equal(f"broadcast {datatype.name} root {root}", recv, want)
            in_place = want.copy() if ctx.rank == root else np.zeros(count, dt)
            recvbuf = 0 if ctx.rank == root else in_place.ctypes.data
            pygloo.broadcast(ctx, in_place.ctypes.data, recvbuf, count, datatype, root)
            expect_equal(f"broadcast in place {datatype.name} root {root}", in_place, want)


def check_reduce_scatter(ctx):
    """reduce_scatter with blocks of different lengths (one empty), every dtype and op."""
    recv_elems = [(r * 2 + 1) % 4 for r in range(ctx.size)]  # 1, 3, 1, 3 ... and 0 at 4 ranks
    total = sum(recv_elems)
    start = sum(recv_elems[: ctx.rank])
    for datatype, dt in DTYPES.items():
        for op in ops_for(dt):
            send = values(ctx.rank, total, dt)
            recv = np.zeros(recv_elems[ctx.rank], dt)
            pygloo.reduce_scatter(
                ctx, send.ctypes.data, recv.ctypes.data, total, recv_elems, datatype, op
            )
            want = reference(ctx.size, total, dt, op)[start : start + recv_elems[ctx.rank]]
            expect_equal(f"reduce_scatter {datatype.name} {op.name}", recv, want)
            expect_equal("reduce_scatter leaves sendbuf", send, values(ctx.rank, total, dt))


def check_send_recv(ctx):
    """A ring of send/recv: each rank sends to the next and receives from the previous, with
    even ranks sending first so that no two block on each other; then a message to itself."""
    nxt, prev = (ctx.rank + 1) % ctx.size, (ctx.rank - 1) % ctx.size
    for datatype, dt in DTYPES.items():
        for count in COUNTS:
            send = values(ctx.rank, count, dt, salt=2)
            recv = np.zeros(count, dt)
            tag = int(datatype) + 1
            if ctx.rank % 2 == 0:
                pygloo.send(ctx, send.ctypes.data, count, datatype, nxt, tag)
                pygloo.recv(ctx, recv.ctypes.data, count, datatype, prev, tag)
            else:
                pygloo.recv(ctx, recv.ctypes.data, count, datatype, prev, tag)
                pygloo.send(ctx, send.ctypes.data, count, datatype, nxt, tag)
            expect_equal(f"recv {datatype.name} {count}", recv, values(prev, count, dt, salt=2))


def check_barrier(ctx):
    """barrier, with and without a tag, many times."""
    for i in range(50):
        pygloo.barrier(ctx, tag=i % 3)


CHECKS = {
    "allreduce": check_allreduce,
    "allgather": check_allgather,
    "allgatherv": check_allgatherv,
    "reduce": check_reduce,
    "scatter": check_scatter,
    "gather": check_gather,
    "broadcast": check_broadcast,
    "reduce_scatter": check_reduce_scatter,
    "send_recv": check_send_recv,
    "barrier": check_barrier,
}


def connect(rank, size, store_dir, timeout_ms=20000):
    """A connected pygloo context, made the way pygloo programs make one."""
    context = pygloo.rendezvous.Context(rank, size)
    context.setTimeout(timeout_ms)
    device = pygloo.transport.tcp.CreateDevice(pygloo.transport.tcp.attr("127.0.0.1"))
    store = pygloo.rendezvous.PrefixStore(str(size), pygloo.rendezvous.FileStore(store_dir))
    context.connectFullMesh(store, device)
    return context
