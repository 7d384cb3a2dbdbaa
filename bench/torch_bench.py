"""torch.distributed on the built-in gloo backend and on cgloo, in one run on the same ranks.

    /usr/bin/python3 bench/torch_bench.py --ranks 2 [--quick] [--out FILE.md]

Every rank joins a default group (gloo) and makes one group per backend over the same ranks,
so both backends run the same workloads in the same processes, interleaved round by round
(gloo then cgloo for each size and repeat) so that drift on this noisy machine hits both alike:

- all_reduce of float32 from 4 B to 64 MiB: a barrier, then the timed call; a sample is the
  slowest rank's time (a MAX all-reduce of the per-rank times after the loop). p50 latency and
  bus bandwidth 2(n-1)/n * bytes / p50, as nccl-tests define it.
- DistributedDataParallel steps per second (forward, backward with the gradient all-reduces,
  SGD step) for a small MLP (0.4 MB of gradients) and an MLP with about 25 MB of gradients.

Prints a Markdown table of both backends and their ratio (gloo time / cgloo time: above 1 means
cgloo is faster). Run it with PYTHONPATH pointing at the cgloo package (build/python).
"""

import argparse
import os
import socket
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import cgloo.torch  # noqa: F401  (registers the "cgloo" backend)

BACKENDS = ("gloo", "cgloo")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sizes(quick):
    """4 B to 64 MiB in steps of 4 (1 MiB in steps of 16 with --quick)."""
    top = 1 << (20 if quick else 26)
    n = 4
    while n <= top:
        yield n
        n *= 16 if quick else 4


def iterations(nbytes, quick):
    """Enough calls for a stable median, fewer for large messages."""
    base = 50 if quick else 300
    return max(5 if quick else 10, min(base, int(base * 65536 / max(nbytes, 65536))))


def time_allreduce(group, t, iters, ctl):
    """Per-call times on this rank, a barrier before each; then the slowest rank's per call."""
    times = torch.zeros(iters, dtype=torch.float64)
    for i in range(iters):
        dist.barrier(group=group)
        t0 = time.perf_counter()
        dist.all_reduce(t, group=group)
        times[i] = time.perf_counter() - t0
    dist.all_reduce(times, op=dist.ReduceOp.MAX, group=ctl)
    return times


def bench_allreduce(groups, ctl, world, quick, rounds):
    rows = []
    for nbytes in sizes(quick):
        t = torch.ones(nbytes // 4, dtype=torch.float32)
        iters = iterations(nbytes, quick)
        samples = {b: [] for b in BACKENDS}
        for b in BACKENDS:  # warm-up, both
            for _ in range(3):
                dist.all_reduce(t, group=groups[b])
        for _ in range(rounds):
            for b in BACKENDS:
                samples[b].extend(time_allreduce(groups[b], t, iters, ctl).tolist())
        p50 = {b: statistics.median(samples[b]) for b in BACKENDS}
        bus = {b: 2 * (world - 1) / world * nbytes / p50[b] / 1e9 for b in BACKENDS}
        rows.append((nbytes, p50, bus))
    return rows


def mlp(widths):
    layers = []
    for a, b in zip(widths, widths[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


def ddp_steps_per_second(group, widths, batch, steps, rank):
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(mlp(widths), process_group=group)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(batch, widths[0], generator=torch.Generator().manual_seed(rank))
    y = torch.randn(batch, widths[-1])
    for i in range(steps + 3):
        if i == 3:
            dist.barrier(group=group)
            t0 = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    dist.barrier(group=group)
    return steps / (time.perf_counter() - t0)


def bench_ddp(groups, ctl, quick, rounds, rank):
    models = [("MLP 784-128-10 (0.4 MB of gradients)", [784, 128, 10], 64, 300),
              ("MLP 1024-2048-2048-10 (25 MB of gradients)", [1024, 2048, 2048, 10], 32, 30)]
    out = []
    for name, widths, batch, steps in models:
        steps = max(5, steps // 5) if quick else steps
        params = sum(a * b + b for a, b in zip(widths, widths[1:]))
        rates = {b: [] for b in BACKENDS}
        for _ in range(rounds):
            for b in BACKENDS:
                rate = torch.tensor([ddp_steps_per_second(groups[b], widths, batch, steps, rank)])
                dist.all_reduce(rate, op=dist.ReduceOp.MIN, group=ctl)
                rates[b].append(rate.item())
        out.append((name, params * 4, {b: statistics.median(rates[b]) for b in BACKENDS}))
    return out


def fmt_bytes(n):
    for unit, k in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= k:
            return f"{n // k} {unit}"
    return f"{n} B"


def report(world, ar_rows, ddp_rows):
    lines = [f"#### {world} ranks", "",
             "| all_reduce | gloo p50 (µs) | cgloo p50 (µs) | gloo / cgloo | gloo busbw (GB/s) "
             "| cgloo busbw (GB/s) |", "|---:|---:|---:|---:|---:|---:|"]
    for nbytes, p50, bus in ar_rows:
        lines.append(f"| {fmt_bytes(nbytes)} | {p50['gloo'] * 1e6:.1f} | {p50['cgloo'] * 1e6:.1f} "
                     f"| {p50['gloo'] / p50['cgloo']:.2f} | {bus['gloo']:.3f} | {bus['cgloo']:.3f} |")
    lines += ["", "| DistributedDataParallel | gloo steps/s | cgloo steps/s | cgloo / gloo |",
              "|---|---:|---:|---:|"]
    for name, nbytes, rate in ddp_rows:
        lines.append(f"| {name} | {rate['gloo']:.1f} | {rate['cgloo']:.1f} "
                     f"| {rate['cgloo'] / rate['gloo']:.2f} |")
    return "\n".join(lines) + "\n"


def rank_main(rank, world, port, args):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    ctl = dist.new_group(backend="gloo")
    groups = {b: dist.new_group(backend=b) for b in BACKENDS}
    ar = bench_allreduce(groups, ctl, world, args.quick, args.rounds)
    ddp = bench_ddp(groups, ctl, args.quick, args.rounds, rank)
    if rank == 0:
        text = report(world, ar, ddp)
        sys.stdout.write(text)
        if args.out:
            with open(args.out, "a") as f:
                f.write(text + "\n")
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repeats per workload")
    ap.add_argument("--quick", action="store_true", help="a few sizes and steps, to check the script")
    ap.add_argument("--out", help="append the Markdown table to this file")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(rank_main, args=(args.ranks, free_port(), args), nprocs=args.ranks, join=True)


if __name__ == "__main__":
    main()
