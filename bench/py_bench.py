"""py_bench: cgloo-bench's counterpart in Python, to measure what a call from Python costs.

    PYTHONPATH=build/python:python build/tools/cgloo-run -n 2 /usr/bin/python3 bench/py_bench.py
        [--modes allreduce,pygloo,pingpong] [--elements 1,16,...] [--pingpong-bytes 8,1048576]
        [--iteration-time-ms 500] [--warmup 20]

Under cgloo-run -n 1 the collectives complete without any peer, which leaves the cost of the
call itself: the binding's part of the overhead, free of the network's noise.

Prints CSV rows with cgloo-bench's columns (mode,algorithm,ranks,bytes,elements,min_us,p50_us,
p99_us,max_us,algbw_gbps,busbw_gbps,samples), so that bench/py_bench.sh can set them beside the
C benchmark's. Modes: "allreduce" is cgloo.Context.allreduce on numpy float32 arrays, out of
place, summing; "pygloo_allreduce" the same call through the pygloo module (raw addresses,
pygloo's default algorithm, with which cgloo picks the algorithm as it does for the C
benchmark); "pingpong" ranks 0 and 1 bouncing a message with send and recv.

Timing is tools/cgloo-bench.c's. Collectives: one call, then a warm-up of up to --warmup calls
(fewer if a quarter of --iteration-time-ms would not hold them), then rank 0 turns the median
warm-up time into an iteration count and broadcasts it; each timed call follows an untimed
barrier and is timed on the rank's own clock; the samples are combined with a max-allreduce
after the loop, so sample i is call i on the slowest rank. Ping-pong: rank 0 picks the count
from the warm-up and sends it to rank 1; each sample is one round trip on rank 0's clock, with
no barrier. The timed region is the call alone: time.perf_counter_ns() (CLOCK_MONOTONIC)
around it, as clock_gettime is around the C call.
"""

import argparse
import os
import sys
import time

import numpy as np

import cgloo

MAX_SAMPLES = 200000
MIN_ITERS = 5
TAG_DATA, TAG_CTRL = 1, 2
DEFAULT_ELEMENTS = "1,16,256,4096,65536,1048576,16777216"  # 4 B to 64 MiB of float32


def parse_args(argv):
    """The command line, as cgloo-bench names its options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modes", default="allreduce,pygloo_allreduce,pingpong")
    p.add_argument("--elements", default=DEFAULT_ELEMENTS, help="allreduce sizes, in float32s")
    p.add_argument("--pygloo-elements", default="1", help="pygloo_allreduce sizes")
    p.add_argument("--pingpong-bytes", default="8")
    p.add_argument("--iteration-time-ms", type=int, default=500)
    p.add_argument("--warmup", type=int, default=-1, help="20 for collectives, 100 for pingpong")
    args = p.parse_args(argv)
    args.modes = args.modes.split(",")
    for name in ("elements", "pygloo_elements", "pingpong_bytes"):
        setattr(args, name, [int(v) for v in getattr(args, name).split(",") if v])
    return args


def iterations_for(args, per_call_us):
    """cgloo-bench's iterations_for: enough calls to fill --iteration-time-ms."""
    iters = args.iteration_time_ms * 1000.0 / max(per_call_us, 0.01)
    return int(min(max(iters, MIN_ITERS), MAX_SAMPLES))


def warmup_calls(args, default):
    """--warmup, else the mode's default (cgloo-bench's: 20 for collectives, 100 for p2p)."""
    return args.warmup if args.warmup > 0 else default


def bcast_int(ctx, value):
    """Rank 0's integer, on every rank."""
    v = np.array([value], np.int64)
    ctx.broadcast(v, root=0)
    return int(v[0])


def print_row(mode, ranks, nbytes, elements, samples_us, bus_factor):
    """One CSV row from the samples (rank 0 only), with cgloo-bench's percentiles."""
    t = np.sort(np.asarray(samples_us, np.float64))
    n = len(t)
    p50 = t[n // 2]
    one_way = p50 / 2 if mode == "pingpong" else p50
    algbw = nbytes / one_way / 1e3 if one_way > 0 else 0.0
    el = "" if elements is None else str(elements)
    alg = "" if mode == "pingpong" else "auto"
    print(
        f"{mode},{alg},{ranks},{nbytes},{el},{t[0]:.2f},{p50:.2f},{t[int(n * 0.99)]:.2f},"
        f"{t[-1]:.2f},{algbw:.3f},{algbw * bus_factor:.3f},{n}",
        flush=True,
    )


# ---- collectives ----------------------------------------------------------------------------


def time_calls(barrier, call, iters, out):
    """Time iters calls, each after an untimed barrier; samples in µs into out[:iters]."""
    clock = time.perf_counter_ns
    for i in range(iters):
        barrier()
        t0 = clock()
        call()
        t1 = clock()
        out[i] = (t1 - t0) / 1000.0


def timed_wall(barrier, call):
    """One iteration as the timed loop runs it, barrier included, in µs."""
    t0 = time.perf_counter_ns()
    barrier()
    call()
    return (time.perf_counter_ns() - t0) / 1000.0


def warm_up(ctx, args, barrier, call):
    """The agreed warm-up; returns the agreed number of timed calls."""
    first = timed_wall(barrier, call)
    warm = 0
    if ctx.rank == 0:
        cap = args.iteration_time_ms * 1000.0 / 4 / max(first, 1.0)
        warm = 1 if cap < 1 else min(int(cap), warmup_calls(args, 20))
    warm = bcast_int(ctx, warm)
    walls = [timed_wall(barrier, call) for _ in range(warm)]
    iters = iterations_for(args, sorted(walls)[warm // 2]) if ctx.rank == 0 else 0
    return bcast_int(ctx, iters)


def bench_collective(ctx, args, mode, elements, barrier, call):
    """Measure one collective call at one size and print rank 0's row."""
    call()
    iters = warm_up(ctx, args, barrier, call)
    samples = np.zeros(iters, np.float64)
    barrier()
    time_calls(barrier, call, iters, samples)
    ctx.allreduce(samples, op=cgloo.MAX)  # sample i: call i on the slowest rank
    if ctx.rank == 0:
        print_row(mode, ctx.size, elements * 4, elements, samples, 2 * (ctx.size - 1) / ctx.size)


def bench_allreduce(ctx, args):
    """cgloo.Context.allreduce on float32 numpy arrays, out of place. As in cgloo-bench, the
    buffers are made once for the largest size and every size uses their beginning, so that
    no size pays for fresh pages."""
    largest = max(args.elements, default=0)
    send_all = np.full(largest, ctx.rank + 1, np.float32)
    recv_all = np.zeros(largest, np.float32)
    allreduce, barrier = ctx.allreduce, ctx.barrier
    for n in args.elements:
        send, recv = send_all[:n], recv_all[:n]
        bench_collective(ctx, args, "allreduce", n, barrier, lambda: allreduce(send, recv))
        if n and recv[0] != ctx.size * (ctx.size + 1) / 2:
            raise SystemExit(f"py_bench: allreduce of {n} elements gave {recv[:4]}")


def pygloo_context(ctx):
    """A pygloo context of the same ranks, connected through the launcher's store (under a
    prefix of its own, so that its rendezvous keys meet neither the cgloo context's nor those
    of an earlier pygloo context of this run)."""
    import pygloo

    pygloo_context.made = getattr(pygloo_context, "made", 0) + 1
    store = pygloo.rendezvous.PrefixStore(
        f"py_bench_pygloo_{pygloo_context.made}",
        pygloo.rendezvous.Store(cgloo.open_store(os.environ["CGLOO_STORE"])),
    )
    context = pygloo.rendezvous.Context(ctx.rank, ctx.size)
    device = pygloo.transport.tcp.CreateDevice(pygloo.transport.tcp.attr("127.0.0.1"))
    context.connectFullMesh(store, device)
    return pygloo, context


def bench_pygloo(ctx, args):
    """pygloo.allreduce on addresses of float32 numpy arrays, out of place."""
    pygloo, context = pygloo_context(ctx)
    allreduce, f32, op = pygloo.allreduce, pygloo.glooFloat32, pygloo.ReduceOp.SUM

    def barrier():
        pygloo.barrier(context)

    for n in args.pygloo_elements:
        send = np.full(n, ctx.rank + 1, np.float32)
        recv = np.zeros(n, np.float32)
        s, r = send.ctypes.data, recv.ctypes.data
        bench_collective(
            ctx, args, "pygloo_allreduce", n, barrier, lambda: allreduce(context, s, r, n, f32, op)
        )
    context.closeConnections()


# ---- ping-pong ------------------------------------------------------------------------------


def pingpong_loop(ctx, buf, iters, out):
    """iters round trips between ranks 0 and 1; out[i] the time of trip i in µs (may be None)."""
    send, recv, clock = ctx.send, ctx.recv, time.perf_counter_ns
    peer = 1 - ctx.rank
    for i in range(iters):
        t0 = clock()
        if ctx.rank == 0:
            send(buf, peer, TAG_DATA)
            recv(buf, peer, TAG_DATA)
        else:
            recv(buf, peer, TAG_DATA)
            send(buf, peer, TAG_DATA)
        t1 = clock()
        if out is not None:
            out[i] = (t1 - t0) / 1000.0


def pingpong_size(ctx, args, nbytes):
    """cgloo-bench's p2p_size: warm up, agree on a count, time, report on rank 0."""
    buf = np.zeros(max(nbytes, 1), np.uint8)[:nbytes]
    warm = warmup_calls(args, 100)
    warm = warm if nbytes < (1 << 20) else warm // 10 + 1
    t0 = time.perf_counter_ns()
    pingpong_loop(ctx, buf, warm, None)
    per_us = (time.perf_counter_ns() - t0) / 1000.0 / warm
    count = np.array([iterations_for(args, per_us)], np.int64)
    if ctx.rank == 0:
        ctx.send(count, 1, TAG_CTRL)
    else:
        ctx.recv(count, 0, TAG_CTRL)
    samples = np.zeros(int(count[0]), np.float64)
    pingpong_loop(ctx, buf, len(samples), samples)
    if ctx.rank == 0:
        print_row("pingpong", ctx.size, nbytes, None, samples, 1.0)


def bench_pingpong(ctx, args):
    """Ping-pong between ranks 0 and 1 (other ranks wait; a lone rank skips it)."""
    if ctx.size < 2:
        return
    if ctx.rank <= 1:
        for nbytes in args.pingpong_bytes:
            pingpong_size(ctx, args, nbytes)
    ctx.barrier(timeout=600)


MODES = {
    "allreduce": bench_allreduce,
    "pygloo_allreduce": bench_pygloo,
    "pingpong": bench_pingpong,
}


def main(argv):
    """Run the chosen modes on the launcher's context."""
    args = parse_args(argv)
    unknown = [m for m in args.modes if m not in MODES]
    if unknown:
        raise SystemExit(f"py_bench: unknown modes {unknown}; known: {list(MODES)}")
    with cgloo.init_from_env() as ctx:
        if ctx.rank == 0:
            print("mode,algorithm,ranks,bytes,elements,min_us,p50_us,p99_us,max_us,algbw_gbps,"
                  "busbw_gbps,samples", flush=True)
        for mode in args.modes:
            MODES[mode](ctx, args)
            ctx.barrier()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
