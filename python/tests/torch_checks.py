"""The checks of the cgloo.torch tests, run on every rank: each case of torch_cases on a cgloo
group and on a gloo group over the same inputs, compared exactly; a DDP training run on both;
and the errors for what cgloo.torch does not support. Results are strings: "ok",
"missing:<DType>" (a reduction waiting for a cgloo dtype raised the expected error) or what
went wrong."""

import copy
import sys
import traceback

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import cgloo
import cgloo.torch  # noqa: F401  (registers the backend)
import torch_cases

DTYPES = {name: getattr(torch, name) for name in torch_cases.DTYPES}

# gloo in torch 1.13 has no int16, bfloat16 or bool and takes complex in some calls only: its
# reference runs on a dtype that holds the same values, converted back afterwards.
CARRIERS = {torch.int16: torch.int32, torch.bfloat16: torch.float32, torch.bool: torch.uint8}

# (element count, non-contiguous, async_op): empty, fewer than the ranks, not divisible by them.
VARIANTS = [(0, False, False), (1, False, True), (5, True, False), (7, True, True)]
# And large (past cgloo's 64 KiB eager limit) for a few dtypes.
LARGE = {"uint8": 70001, "float32": 20001, "bfloat16": 40001}


class Case:
    """One variant of one case: the group's ranks, the dtype and count, the inputs."""

    def __init__(self, group, dtype, n, small):
        self.rank = dist.get_rank(group)
        self.size = dist.get_world_size(group)
        self.ranks = dist.get_process_group_ranks(group)
        self.dtype, self.n, self.small = dtype, n, small

    def glob(self, group_rank):
        return self.ranks[group_rank]

    def vals(self, n=None, salt=0):
        """This rank's inputs: small values every dtype holds exactly, whose sums over a few
        ranks are exact in any order (1..2 for products, so that they stay small too)."""
        i = torch.arange(self.n if n is None else n, dtype=torch.int64)
        v = ((self.rank + 1) * (i + 1 + salt)) % (2 if self.small else 7) + 1
        if self.dtype == torch.bool:
            return v % 2 == 0
        if self.dtype.is_complex:
            return torch.complex(v.double(), (v * 3 % 5).double()).to(self.dtype)
        return v.to(self.dtype)

    def zeros(self, n=None):
        return torch.zeros(self.n if n is None else n, dtype=self.dtype)


def same(t):
    return t.clone()


def strided(t):
    """t's values in a tensor that is not contiguous: every other element of a buffer."""
    s = torch.zeros((*t.shape, 2), dtype=t.dtype)[..., 1]
    s.copy_(t)
    return s


def to_gloo(t):
    if t.is_complex():
        return torch.view_as_real(t).clone()
    return t.to(CARRIERS.get(t.dtype, t.dtype), copy=True)


def from_gloo(t, dtype):
    if dtype.is_complex:
        return torch.view_as_complex(t.contiguous())
    return t.to(dtype)


def done(work):
    """Wait for an async_op's Work or Future (a blocking call returned None)."""
    if work is not None:
        work.wait()


# ---- the operations: fn(group, make, case, async_op, op) -> output tensors ----
# make() turns each input and output tensor into the layout (or, for gloo, the dtype) to use.

def op_broadcast(g, m, c, asyn, op):
    t = m(c.vals())
    done(dist.broadcast(t, c.glob(c.size - 1), group=g, async_op=asyn))
    return [t]


def op_all_gather(g, m, c, asyn, op):
    outs = [m(c.zeros()) for _ in range(c.size)]
    done(dist.all_gather(outs, m(c.vals()), group=g, async_op=asyn))
    return outs


def op_all_gather_into_tensor(g, m, c, asyn, op):
    out = m(c.zeros(c.size * c.n))
    done(dist.all_gather_into_tensor(out, m(c.vals()), group=g, async_op=asyn))
    return [out]


def ref_all_gather_into_tensor(g, m, c, asyn, op):
    return [torch.cat(op_all_gather(g, m, c, asyn, op))]


def op_gather(g, m, c, asyn, op):
    outs = [m(c.zeros()) for _ in range(c.size)] if c.rank == 0 else None
    done(dist.gather(m(c.vals()), outs, dst=c.glob(0), group=g, async_op=asyn))
    return outs or []


def op_scatter(g, m, c, asyn, op):
    src = c.size - 1
    ins = [m(c.vals(salt=j)) for j in range(c.size)] if c.rank == src else None
    out = m(c.zeros())
    done(dist.scatter(out, ins, src=c.glob(src), group=g, async_op=asyn))
    return [out]


def count(c, i, j):
    """Elements rank i sends rank j in the all-to-all cases: a different count per pair."""
    return c.n + i + 2 * j


def op_all_to_all(g, m, c, asyn, op):
    ins = [m(c.vals(count(c, c.rank, j), salt=j)) for j in range(c.size)]
    outs = [m(c.zeros(count(c, j, c.rank))) for j in range(c.size)]
    done(dist.all_to_all(outs, ins, group=g, async_op=asyn))
    return outs


def ref_all_to_all(g, m, c, asyn, op):
    ins = [count(c, c.rank, j) for j in range(c.size)]
    outs = [count(c, j, c.rank) for j in range(c.size)]
    x = torch.cat([m(c.vals(k, salt=j)) for j, k in enumerate(ins)])
    out = m(c.zeros(sum(outs)))
    dist.all_to_all_single(out, x, outs, ins, group=g)
    return list(out.split(outs))


def op_all_to_all_single(g, m, c, asyn, op):
    rows = c.size * c.n
    out = m(c.zeros(rows * 3).view(rows, 3))
    done(dist.all_to_all_single(out, m(c.vals(rows * 3).view(rows, 3)), group=g, async_op=asyn))
    return [out]


def op_all_to_all_single_splits(g, m, c, asyn, op):
    ins = [count(c, c.rank, j) for j in range(c.size)]
    outs = [count(c, j, c.rank) for j in range(c.size)]
    x = m(c.vals(sum(ins) * 3).view(sum(ins), 3))
    out = m(c.zeros(sum(outs) * 3).view(sum(outs), 3))
    done(dist.all_to_all_single(out, x, outs, ins, group=g, async_op=asyn))
    return [out]


def op_send_recv(g, m, c, asyn, op):
    """Rank 0 sends to every other rank, which then sends back; rank 0 takes the replies from
    any source, in whatever order they come."""
    if c.rank != 0:
        t = m(c.zeros())
        dist.recv(t, c.glob(0), group=g, tag=1)
        dist.send(m(c.vals(salt=5)), c.glob(0), group=g, tag=2)
        return [t]
    for r in range(1, c.size):
        dist.send(m(c.vals(salt=r)), c.glob(r), group=g, tag=1)
    got = {}
    for _ in range(1, c.size):
        t = m(c.zeros())
        got[dist.recv(t, group=g, tag=2)] = t
    return [got[r] for r in sorted(got)]


def op_isend_irecv_any(g, m, c, asyn, op):
    """A ring: send to the next rank, receive from any source, both outstanding at once."""
    t = m(c.zeros())
    recv = dist.irecv(t, group=g, tag=3)
    send = dist.isend(m(c.vals()), c.glob((c.rank + 1) % c.size), group=g, tag=3)
    recv.wait()
    send.wait()
    source = recv._source_rank()
    assert source == (c.rank - 1) % c.size, f"source {source}"
    return [t]


def op_batch_isend_irecv(g, m, c, asyn, op):
    t = m(c.zeros())
    ops = [dist.P2POp(dist.isend, m(c.vals()), c.glob((c.rank + 1) % c.size), g),
           dist.P2POp(dist.irecv, t, c.glob((c.rank - 1) % c.size), g)]
    for work in dist.batch_isend_irecv(ops):
        work.wait()
    return [t]


def op_all_reduce(g, m, c, asyn, op):
    t = m(c.vals())
    done(dist.all_reduce(t, op, group=g, async_op=asyn))
    return [t]


def op_all_reduce_coalesced(g, m, c, asyn, op):
    ts = [m(c.vals()), m(c.vals(c.n + 3, salt=1))]
    done(dist.all_reduce_coalesced(ts, op, group=g, async_op=asyn))
    return ts


def op_reduce(g, m, c, asyn, op):
    root = c.size - 1
    t = m(c.vals())
    done(dist.reduce(t, c.glob(root), op, group=g, async_op=asyn))
    return [t] if c.rank == root else []


def op_reduce_scatter(g, m, c, asyn, op):
    out = m(c.zeros())
    done(dist.reduce_scatter(out, [m(c.vals(salt=j)) for j in range(c.size)], op, group=g,
                             async_op=asyn))
    return [out]


def ref_reduce_scatter(g, m, c, asyn, op):
    return block(g, c, op, torch.cat([m(c.vals(salt=j)) for j in range(c.size)]))


def op_reduce_scatter_tensor(g, m, c, asyn, op):
    x = m(c.vals(c.size * c.n))
    out = m(c.zeros())
    done(dist.reduce_scatter_tensor(out, x, op, group=g, async_op=asyn))
    assert torch.equal(x, c.vals(c.size * c.n)), "the input changed"
    return [out]


def ref_reduce_scatter_tensor(g, m, c, asyn, op):
    return block(g, c, op, m(c.vals(c.size * c.n)))


def block(g, c, op, full):
    """This rank's block of full reduced over the group (gloo has no reduce_scatter)."""
    dist.all_reduce(full, op, group=g)
    k = full.shape[0] // c.size
    return [full[c.rank * k:(c.rank + 1) * k]]


# operation -> (the check, the reference where gloo lacks the operation)
OPERATIONS = {
    "broadcast": (op_broadcast, None),
    "all_gather": (op_all_gather, None),
    "all_gather_into_tensor": (op_all_gather_into_tensor, ref_all_gather_into_tensor),
    "gather": (op_gather, None),
    "scatter": (op_scatter, None),
    "all_to_all": (op_all_to_all, ref_all_to_all),
    "all_to_all_single": (op_all_to_all_single, None),
    "all_to_all_single_splits": (op_all_to_all_single_splits, None),
    "send_recv": (op_send_recv, None),
    "isend_irecv_any": (op_isend_irecv_any, None),
    "batch_isend_irecv": (op_batch_isend_irecv, None),
    "all_reduce": (op_all_reduce, None),
    "all_reduce_coalesced": (op_all_reduce_coalesced, None),
    "reduce": (op_reduce, None),
    "reduce_scatter": (op_reduce_scatter, ref_reduce_scatter),
    "reduce_scatter_tensor": (op_reduce_scatter_tensor, ref_reduce_scatter_tensor),
}


# ---- running the cases ----

# gloo in torch 1.13 fails on zero elements here (SIGFPE in allgather, an enforce failure in a
# receive from any source); the results, empty tensors, are written out instead.
EMPTY_RESULTS = {
    "all_gather": lambda c: [c.zeros() for _ in range(c.size)],
    "all_gather_into_tensor": lambda c: [c.zeros()],
    "send_recv": lambda c: [c.zeros() for _ in range(c.size - 1 if c.rank == 0 else 1)],
    "isend_irecv_any": lambda c: [c.zeros()],
}


def reference(name, red, c, gl):
    """The case on gloo: carrier dtypes, and AVG as SUM then a division (gloo has no AVG)."""
    if c.n == 0 and name in EMPTY_RESULTS:
        return EMPTY_RESULTS[name](c)
    fn, ref = OPERATIONS[name]
    avg = red == "AVG"
    rop = getattr(dist.ReduceOp, "SUM" if avg else red) if red else None
    outs = (ref or fn)(gl, to_gloo, c, False, rop)
    outs = [from_gloo(t, c.dtype) for t in outs]
    return [t.div_(c.size) for t in outs] if avg else outs


def differ(got, want):
    if len(got) != len(want):
        return f"{len(got)} outputs, expected {len(want)}"
    for i, (a, b) in enumerate(zip(got, want)):
        if a.dtype != b.dtype or a.shape != b.shape or not torch.equal(a, b):
            return f"output {i}: {a} != {b}"
    return None


def run_variant(case, cg, gl, n, layout, asyn):
    op, dtype = case.split("/")
    name, _, red = op.partition(".")
    rop = getattr(dist.ReduceOp, red) if red else None
    c = Case(cg, DTYPES[dtype], n, small=red == "PRODUCT")
    got = OPERATIONS[name][0](cg, layout, c, asyn, rop)
    return differ(got, reference(name, red, c, gl))


def missing(case, e):
    """"missing:X" if e is the error a reduction raises while cgloo lacks DType X, else None."""
    need = torch_cases.needs(case)
    op = case.split("/")[0].split(".")[0]
    if need and not hasattr(cgloo.DType, need) and isinstance(e, NotImplementedError) \
            and f"cgloo.DType.{need}" in str(e) and op in str(e):
        return f"missing:{need}"
    return None


def run_case(case, cg, gl):
    dtype = case.split("/")[1]
    variants = VARIANTS + ([(LARGE[dtype], False, False)] if dtype in LARGE else [])
    for n, noncontig, asyn in variants:
        try:
            bad = run_variant(case, cg, gl, n, strided if noncontig else same, asyn)
        except Exception as e:
            return missing(case, e) or f"n={n}: {traceback.format_exc(limit=-3)}"
        if bad:
            return f"n={n} non-contiguous={noncontig} async={asyn}: {bad}"
    return "ok"


def run_cases(cases, cg, gl):
    """Every case, in the same order on every rank. The ranks stop together after the first
    case that fails on any of them: going on could leave one waiting for the others."""
    results = {}
    for case in cases:
        results[case] = run_case(case, cg, gl)
        good = results[case] == "ok" or results[case].startswith("missing:")
        if not good:
            print(f"rank {dist.get_rank()}: {case}: {results[case]}", file=sys.stderr, flush=True)
        flag = torch.tensor([int(good)])
        dist.all_reduce(flag, dist.ReduceOp.MIN, group=gl)
        if not flag.item():
            break
    return results


# ---- DDP ----

def train(group, steps, rank):
    """A small model trained with DDP on group; its parameters at the end."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
    ddp = DistributedDataParallel(copy.deepcopy(model), process_group=group)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    data = torch.Generator().manual_seed(1000 + rank)
    for _ in range(steps):
        x, y = torch.randn(16, 8, generator=data), torch.randn(16, 4, generator=data)
        opt.zero_grad()
        torch.nn.functional.mse_loss(ddp(x), y).backward()
        opt.step()
    return [p.detach().clone() for p in ddp.module.parameters()]


def ddp_max_diff(cg, gl, steps=300):
    """The largest difference between the parameters DDP trained on cgloo and on gloo."""
    rank = dist.get_rank(cg)
    a, b = train(cg, steps, rank), train(gl, steps, rank)
    return max((x - y).abs().max().item() for x, y in zip(a, b))


# ---- what is not supported raises, naming the operation ----

def raises(fn, *words):
    try:
        fn()
    except NotImplementedError as e:
        missing_words = [w for w in words if w not in str(e)]
        return "ok" if not missing_words else f"{e!r} does not name {missing_words}"
    except Exception as e:
        return f"raised {e!r}, not NotImplementedError"
    return "did not raise"


def barrier(cg):
    dist.barrier(group=cg)
    dist.barrier(group=cg, async_op=True).wait()
    return "ok"


def run_extras(cg):
    """barrier, and what is not supported raising NotImplementedError."""
    t = torch.ones(4)
    from torch._C._distributed_c10d import _make_nccl_premul_sum
    return {
        "barrier": barrier(cg),
        "error/gpu": raises(lambda: dist.all_reduce(torch.ones(4, device="meta"), group=cg),
                            "all_reduce", "CPU", "meta"),
        "error/premul_sum": raises(
            lambda: dist.all_reduce(t, _make_nccl_premul_sum(2.0), group=cg),
            "all_reduce", "PREMUL_SUM"),
        "error/avg_int": raises(
            lambda: dist.all_reduce(torch.ones(4, dtype=torch.int32), dist.ReduceOp.AVG,
                                    group=cg), "all_reduce", "AVG", "int32"),
        "error/multigpu": raises(lambda: dist.all_reduce_multigpu([t, t.clone()], group=cg),
                                 "all_reduce", "one tensor"),
    }
