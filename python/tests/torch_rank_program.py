"""The rank program of the cgloo.torch tests (torch_checks holds the checks):

    torch_rank_program.py OUT SCENARIO [--init URL] [--spawn N] [--default gloo] [--subgroup]
                                       [--timeout SECONDS]

SCENARIO is full (every case of torch_cases, barrier, the errors of what is not supported,
and DDP trained on cgloo against gloo), quick (every operation on two dtypes), or kill-sigkill
/ kill-sigstop (rank 1 dies or stops during DDP training; the others must raise soon, not
hang). --init is the init method (default env://, which torchrun and the kill test set up);
--spawn N starts N ranks with torch.multiprocessing.spawn; --default gloo makes gloo the
default group and cgloo a new_group (else the reverse); --subgroup also runs the quick cases
on ranks 0 and 2. Each rank writes OUT/rank<r>.json.
"""

import argparse
import datetime
import json
import os
import signal
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import cgloo.torch  # noqa: F401  (registers the backend)
import torch_cases
import torch_checks


def groups(args):
    """(the cgloo group, the gloo group): one is the default group, the other a new_group."""
    world = dist.group.WORLD
    other = dist.new_group(backend="cgloo" if args.default == "gloo" else "gloo",
                           timeout=datetime.timedelta(seconds=args.timeout))
    return (other, world) if args.default == "gloo" else (world, other)


def subgroup(args):
    """The quick cases on cgloo and gloo groups of ranks 0 and 2 (rank 1 is in neither)."""
    timeout = datetime.timedelta(seconds=args.timeout)
    cg = dist.new_group([0, 2], timeout=timeout, backend="cgloo")
    gl = dist.new_group([0, 2], timeout=timeout, backend="gloo")
    if dist.get_rank() == 1:
        return {}
    return torch_checks.run_cases(torch_cases.cases(torch_cases.QUICK_DTYPES), cg, gl)


def scenario_full(args):
    cg, gl = groups(args)
    checks = torch_checks.run_cases(torch_cases.cases(), cg, gl)
    checks.update(torch_checks.run_extras(cg))
    out = {"backend": dist.get_backend(cg), "checks": checks,
           "ddp_max_diff": torch_checks.ddp_max_diff(cg, gl)}
    if args.subgroup:
        out["subgroup"] = subgroup(args)
    return out


def scenario_quick(args):
    cg, gl = groups(args)
    out = {"backend": dist.get_backend(cg),
           "checks": torch_checks.run_cases(torch_cases.cases(torch_cases.QUICK_DTYPES), cg, gl)}
    if args.subgroup:
        out["subgroup"] = subgroup(args)
    return out


def kill(args, how):
    """DDP training on the default (cgloo) group; rank 1 dies (SIGKILL) or freezes (SIGSTOP)
    at step 30. The others report how long their failing step took, and what a later call
    does (it must fail at once)."""
    torch.manual_seed(0)
    ddp = DistributedDataParallel(torch.nn.Linear(8, 4))
    opt = torch.optim.SGD(ddp.parameters(), lr=0.01)
    for step in range(1000):
        if dist.get_rank() == 1 and step == 30:
            os.kill(os.getpid(), how)
        start = time.monotonic()
        try:
            opt.zero_grad()
            ddp(torch.randn(4, 8)).sum().backward()
            opt.step()
        except RuntimeError as e:
            return {"step": step, "took": time.monotonic() - start, "error": str(e),
                    **later_call()}
    return {"error": None}


def later_call():
    start = time.monotonic()
    try:
        dist.all_reduce(torch.ones(1))
        return {"later": "did not raise"}
    except RuntimeError as e:
        return {"later": str(e), "later_took": time.monotonic() - start}


SCENARIOS = {
    "full": scenario_full,
    "quick": scenario_quick,
    "kill-sigkill": lambda args: kill(args, signal.SIGKILL),
    "kill-sigstop": lambda args: kill(args, signal.SIGSTOP),
}


def start_together(out, rank, size):
    """Waits (up to 60 s) until every rank has imported torch: the kill scenarios' timeout of a
    few seconds covers the rendezvous too, and under load one rank's import of torch can lag
    another's by more than that, which fails the start-up instead of the step under test."""
    open(os.path.join(out, f"ready{rank}"), "w").close()
    deadline = time.monotonic() + 60
    while not all(os.path.exists(os.path.join(out, f"ready{r}")) for r in range(size)):
        if time.monotonic() > deadline:
            raise SystemExit(f"rank {rank}: the other ranks did not start within 60 s")
        time.sleep(0.01)


def worker(rank, args):
    torch.set_num_threads(1)  # several ranks share two cores
    if args.scenario.startswith("kill") and not args.spawn:
        start_together(args.out, rank, int(os.environ["WORLD_SIZE"]))
    init = {"init_method": args.init}
    if args.spawn:
        init.update(rank=rank, world_size=args.spawn)
    dist.init_process_group(args.default, timeout=datetime.timedelta(seconds=args.timeout),
                            **init)
    result = SCENARIOS[args.scenario](args)
    with open(os.path.join(args.out, f"rank{dist.get_rank()}.json"), "w") as f:
        json.dump(result, f, indent=1)
    if not args.scenario.startswith("kill"):
        dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("--init", default="env://")
    p.add_argument("--spawn", type=int, default=0)
    p.add_argument("--default", default="cgloo", choices=["cgloo", "gloo"])
    p.add_argument("--subgroup", action="store_true")
    p.add_argument("--timeout", type=float, default=60.0)
    args = p.parse_args()
    if args.spawn:
        torch.multiprocessing.spawn(worker, args=(args,), nprocs=args.spawn)
    else:
        worker(int(os.environ["RANK"]), args)


if __name__ == "__main__":
    main()
