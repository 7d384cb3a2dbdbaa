"""cgloo.torch: cgloo as a torch.distributed backend for CPU tensors.

    import torch.distributed as dist
    import cgloo.torch                      # registers the backend name "cgloo"
    dist.init_process_group("cgloo")        # env://, tcp://, file:// or store=, as for "gloo"

Importing this module registers ``cgloo`` with ``torch.distributed.Backend.register_backend``.
Each process group (the default one and every ``new_group``) is a ``ProcessGroupCgloo``: one
cgloo context that meets its peers through the torch store ``init_process_group`` hands over,
so every init method works. The collectives, ``send`` and ``recv`` run cgloo on the tensors'
memory (no copy when a tensor is contiguous); see python/TORCH.md for what is covered.

Only this module imports torch; ``import cgloo`` does not.
"""

import atexit
import datetime
import os
import queue
import threading
import weakref

import torch
import torch.distributed as dist
from torch._C import _distributed_c10d as c10d

import cgloo

__all__ = ["BACKEND_NAME", "ProcessGroupCgloo"]

BACKEND_NAME = "cgloo"

# torch dtype -> the name of the cgloo.DType that reduces it. Names rather than members because
# INT16, BOOL and the complex types arrive with a later cgloo: until then reductions on them
# raise NotImplementedError, while the data-moving operations, which send bytes, work already.
_DTYPES = {
    torch.uint8: "UINT8",
    torch.int8: "INT8",
    torch.int16: "INT16",
    torch.int32: "INT32",
    torch.int64: "INT64",
    torch.float16: "FLOAT16",
    torch.bfloat16: "BFLOAT16",
    torch.float32: "FLOAT32",
    torch.float64: "FLOAT64",
    torch.bool: "BOOL",
    torch.complex64: "COMPLEX64",
    torch.complex128: "COMPLEX128",
}

# The dtypes whose tensors numpy views with a format cgloo reads as the same dtype.
_NUMPY_DTYPES = frozenset(d for d in _DTYPES if d is not torch.bfloat16)

_R = c10d.ReduceOp.RedOpType
# torch reduction -> (cgloo op, divide by the group size afterwards). AVG is a SUM followed by a
# division, which works on every floating-point dtype cgloo sums. PREMUL_SUM is left out: its
# factor sits in a C++ object that Python cannot read.
_REDUCE_OPS = {
    _R.SUM: (cgloo.Op.SUM, False),
    _R.AVG: (cgloo.Op.SUM, True),
    _R.PRODUCT: (cgloo.Op.PRODUCT, False),
    _R.MIN: (cgloo.Op.MIN, False),
    _R.MAX: (cgloo.Op.MAX, False),
    _R.BAND: (cgloo.Op.BAND, False),
    _R.BOR: (cgloo.Op.BOR, False),
    _R.BXOR: (cgloo.Op.BXOR, False),
}


# ---- tensors as cgloo buffers ----

def _check(name, t):
    """t, if cgloo can run name on it: a dense (strided) CPU tensor of a dtype in the table."""
    if t.device.type != "cpu":
        raise NotImplementedError(f"cgloo.torch: {name} runs on CPU tensors only, not {t.device}")
    if t.layout != torch.strided:
        raise NotImplementedError(f"cgloo.torch: {name} does not support {t.layout} tensors")
    if t.dtype not in _DTYPES:
        raise NotImplementedError(f"cgloo.torch: {name} does not support {t.dtype}")
    return t


def _one(name, tensors):
    """The tensor of a per-device list; a CPU process has exactly one."""
    if len(tensors) != 1:
        raise NotImplementedError(f"cgloo.torch: {name} takes one tensor per process, not "
                                  f"{len(tensors)} (the *_multigpu forms are not supported)")
    return _check(name, tensors[0])


def _nbytes(t):
    return t.numel() * t.element_size()


def _bytes(t):
    """A contiguous tensor's memory as a flat uint8 tensor (a view). cgloo takes a dtype for a
    byte buffer, so one view serves every dtype, bfloat16 (which numpy lacks) included."""
    return t.view(-1).view(torch.uint8)


class _Staged:
    """A tensor as cgloo needs it: contiguous, without torch's lazy conjugate or negative bit.
    Usually the tensor's own memory (no copy); else a contiguous copy, which back() writes into
    the tensor once the operation has filled it."""

    __slots__ = ("tensor", "dense", "copied")

    def __init__(self, t):
        self.tensor = t
        d = t.detach()  # a view: cgloo writes the memory, autograd need not know
        self.copied = not d.is_contiguous() or d.is_conj() or d.is_neg()
        self.dense = d.resolve_conj().resolve_neg().contiguous() if self.copied else d

    def raw(self):
        """The bytes as a numpy array sharing the memory (a buffer-protocol object)."""
        return _bytes(self.dense).numpy()

    def back(self):
        if self.copied:
            self.tensor.detach().copy_(self.dense)
        return self.tensor


def _pack(tensors):
    """The tensors' bytes back to back in one new buffer, for a call taking a single one."""
    if not tensors:
        return torch.empty(0, dtype=torch.uint8).numpy()
    return torch.cat([_bytes(_Staged(t).dense) for t in tensors]).numpy()


def _unpack(flat, outs):
    """Copy the back-to-back blocks of the uint8 tensor flat into outs, in order; returns outs."""
    pos = 0
    for o in outs:
        n = _nbytes(o)
        o.detach().copy_(flat[pos:pos + n].view(o.dtype).view(o.shape))
        pos += n
    return outs


def _check_blocks(name, outs, t, count):
    """outs holds count tensors with t's dtype and element count (one block per rank)."""
    if len(outs) != count:
        raise ValueError(f"cgloo.torch: {name} needs {count} tensors in its list, got {len(outs)}")
    for i, o in enumerate(outs):
        _check(name, o)
        if o.dtype != t.dtype or o.numel() != t.numel():
            raise ValueError(f"cgloo.torch: {name}: list tensor {i} has {o.numel()} elements of "
                             f"{o.dtype} but the single tensor {t.numel()} of {t.dtype}")


def _check_flat(name, flat, t, count):
    """flat holds count times t's elements, of t's dtype (the tensor form of a list)."""
    if flat.dtype != t.dtype or flat.numel() != count * t.numel():
        raise ValueError(f"cgloo.torch: {name}: the large tensor has {flat.numel()} elements of "
                         f"{flat.dtype}, not {count} x {t.numel()} of {t.dtype}")


def _split_bytes(name, t, splits, n):
    """The byte count for each rank of t's dim-0 split sizes (none: n equal parts)."""
    rows = t.size(0) if t.dim() else 1
    if not splits:
        if rows % n:
            raise ValueError(f"cgloo.torch: {name}: dim 0 ({rows}) does not split among {n} ranks")
        splits = [rows // n] * n
    if len(splits) != n or sum(splits) != rows:
        raise ValueError(f"cgloo.torch: {name}: split sizes {list(splits)} do not cut dim 0 "
                         f"({rows}) into {n} parts")
    row = _nbytes(t) // rows if rows else 0
    return [k * row for k in splits]


# ---- reductions and timeouts ----

def _cgloo_dtype(name, dtype):
    member = getattr(cgloo.DType, _DTYPES[dtype], None)
    if member is None:
        raise NotImplementedError(f"cgloo.torch: {name} on {dtype} needs "
                                  f"cgloo.DType.{_DTYPES[dtype]}, which this cgloo lacks")
    return member


class _Reduction:
    """A torch reduction of one tensor's dtype, as cgloo runs it."""

    __slots__ = ("op", "dtype", "average")

    def __init__(self, name, reduce_op, t):
        entry = _REDUCE_OPS.get(reduce_op.op)
        if entry is None:
            raise NotImplementedError(f"cgloo.torch: {name} does not support "
                                      f"ReduceOp.{reduce_op.op.name}")
        self.op, self.average = entry
        if self.average and not (t.is_floating_point() or t.is_complex()):
            raise NotImplementedError(f"cgloo.torch: {name} with ReduceOp.AVG needs a "
                                      f"floating-point tensor, not {t.dtype}")
        self.dtype = _cgloo_dtype(name, t.dtype)

    def finish(self, staged, size):
        """The reduced tensor, averaged if asked, in the caller's tensor."""
        if self.average:
            staged.dense.div_(size)
        return staged.back()


def _seconds(td):
    """A torch timeout in seconds for cgloo; None (the context's) for torch's unset (-1 ms) and
    no-timeout (0) values."""
    s = td.total_seconds()
    return s if s > 0 else None


# ---- the operations: each starts one and returns (request or None, finish) ----
# finish(outcome) gives the Work's result once the operation is over; outcome is a request's
# (source, nbytes), or None for a collective. A collective of at least ASYNC_MIN_BYTES runs as
# cgloo's non-blocking form and returns its request; a smaller one blocks until done (cgloo
# releases the GIL meanwhile) and returns None (see _call and ProcessGroupCgloo._complete).

# The size from which a collective runs in the background: below it, the hand-offs between
# threads that completing a torch Future takes (a wake-up each, 20 to 60 us on a 2-core machine)
# cost more than what overlapping the collective with computation could save, and errors are
# raised by the call itself. docs/BENCHMARKS.md ("PyTorch") has the measurements.
ASYNC_MIN_BYTES = int(os.environ.get("CGLOO_TORCH_ASYNC_MIN_BYTES", 1 << 20))


def _call(ctx, method, nbytes, *args, **kwargs):
    """Run ctx.<method>: blocking below ASYNC_MIN_BYTES (returns None), else its non-blocking
    i-form (returns the request)."""
    if nbytes < ASYNC_MIN_BYTES:
        getattr(ctx, method)(*args, **kwargs)
        return None
    return getattr(ctx, "i" + method)(*args, **kwargs)


def _allreduce(ctx, t, red, timeout):
    s = _Staged(t)
    req = _call(ctx, "allreduce", _nbytes(t), s.raw(), op=red.op, dtype=red.dtype,
                timeout=timeout)
    return req, lambda _: [red.finish(s, ctx.size)]


def _allreduce_each(ctx, tensors, reds, timeout):
    # several tensors, one Work: each runs blocking (their sizes are usually small)
    stages = [_Staged(t) for t in tensors]
    for s, red in zip(stages, reds):
        ctx.allreduce(s.raw(), op=red.op, dtype=red.dtype, timeout=timeout)
    return None, lambda _: [red.finish(s, ctx.size) for s, red in zip(stages, reds)]


def _broadcast(ctx, t, root, timeout):
    s = _Staged(t)
    req = _call(ctx, "broadcast", _nbytes(t), s.raw(), root, timeout=timeout)
    return req, lambda _: [s.back()]


def _reduce(ctx, t, red, root, timeout):
    s = _Staged(t)
    req = _call(ctx, "reduce", _nbytes(t), s.raw(), None, red.op, root, dtype=red.dtype,
                timeout=timeout)
    return req, lambda _: [red.finish(s, ctx.size) if ctx.rank == root else t]


def _allgather(ctx, outs, t, timeout):
    flat = torch.empty(ctx.size * _nbytes(t), dtype=torch.uint8)
    req = _call(ctx, "allgather", flat.numel(), _Staged(t).raw(), flat.numpy(), timeout=timeout)
    return req, lambda _: [_unpack(flat, outs)]


def _allgather_flat(ctx, out, t, timeout):
    s = _Staged(out)
    req = _call(ctx, "allgather", _nbytes(out), _Staged(t).raw(), s.raw(), timeout=timeout)
    return req, lambda _: [s.back()]


def _gather(ctx, outs, t, root, timeout):
    flat = torch.empty(ctx.size * _nbytes(t), dtype=torch.uint8) if ctx.rank == root else None
    req = _call(ctx, "gather", ctx.size * _nbytes(t), _Staged(t).raw(),
                None if flat is None else flat.numpy(), root, timeout=timeout)
    return req, lambda _: [] if flat is None else [_unpack(flat, outs)]


def _scatter(ctx, out, ins, root, timeout):
    s = _Staged(out)
    req = _call(ctx, "scatter", ctx.size * _nbytes(out), _pack(ins) if ctx.rank == root else None,
                s.raw(), root, timeout=timeout)
    return req, lambda _: [s.back()]


def _reduce_scatter(ctx, out, ins, red, timeout):
    s = _Staged(out)
    req = _call(ctx, "reduce_scatter", ctx.size * _nbytes(out), _pack(ins), s.raw(), red.op,
                dtype=red.dtype, timeout=timeout)
    return req, lambda _: [red.finish(s, ctx.size)]


def _reduce_scatter_flat(ctx, out, t, red, timeout):
    s = _Staged(out)
    req = _call(ctx, "reduce_scatter", _nbytes(t), _Staged(t).raw(), s.raw(), red.op,
                dtype=red.dtype, timeout=timeout)
    return req, lambda _: [red.finish(s, ctx.size)]


def _alltoall_flat(ctx, out, t, out_counts, in_counts, timeout):
    s = _Staged(out)
    req = _call(ctx, "alltoallv", _nbytes(out), _Staged(t).raw(), in_counts, s.raw(), out_counts,
                timeout=timeout)
    return req, lambda _: [s.back()]


def _alltoall(ctx, outs, ins, timeout):
    flat = torch.empty(sum(_nbytes(o) for o in outs), dtype=torch.uint8)
    req = _call(ctx, "alltoallv", flat.numel(), _pack(ins), [_nbytes(t) for t in ins],
                flat.numpy(), [_nbytes(o) for o in outs], timeout=timeout)
    return req, lambda _: _unpack(flat, outs)


def _barrier(ctx, timeout):
    ctx.barrier(timeout=timeout)
    return None, lambda _: []


def _send(ctx, t, dst, tag):
    # The request holds the buffer (and so the tensor or its copy) until it completes.
    return ctx.isend(_Staged(t).raw(), dst, tag), lambda _: [t]


def _recv(ctx, t, src, tag):
    s = _Staged(t)
    return ctx.irecv(s.raw(), src, tag), lambda done: _received(s, done)


def _recv_anysource(ctx, t, tag):
    s = _Staged(t)
    others = [r for r in range(ctx.size) if r != ctx.rank]
    return ctx.irecv_any(s.raw(), others, tag), lambda done: _received(s, done)


def _received(s, done):
    source, nbytes = done
    if nbytes != _nbytes(s.dense):
        raise ValueError(f"cgloo.torch: recv got {nbytes} bytes from rank {source} into a "
                         f"tensor of {_nbytes(s.dense)}")
    return [s.back()]


_POINT_TO_POINT = (_send, _recv, _recv_anysource)


# ---- Work ----

def _completed_work(result):
    """Work for an operation that is over. torch's C++ code (DDP's checks and reducer) can wait
    on Work made from a Future; on a Python subclass of Work it hangs in torch 1.13."""
    fut = torch.futures.Future()
    fut.set_result(result)
    return c10d._create_work_from_future(fut)


def _error(name, e):
    """The RuntimeError torch users expect, naming the operation, with cgloo's as the cause."""
    err = RuntimeError(f"cgloo.torch: {name} failed: {type(e).__name__}: {e}")
    err.__cause__ = e
    return err


class _RequestWork(c10d.Work):
    """The Work of a cgloo request (send, recv): wait() waits for it and raises its error, and
    _source_rank() names the sender, neither of which Work made from a Future can do in torch
    1.13. Only Python waits on send and recv Work, so its being a Python Work is safe."""

    def __init__(self, name, request, finish):
        super().__init__()
        self._name = name
        self._request = request
        self._finish = finish
        self._lock = threading.Lock()  # cgloo lets one thread at a time wait on a request
        self._source = None
        self._result = None
        self._failure = None

    def wait(self, timeout=datetime.timedelta(0)):
        with self._lock:
            if self._result is None and self._failure is None:
                self._settle(_seconds(timeout))
        if self._failure is not None:
            raise self._failure
        return True

    def _settle(self, timeout):
        try:
            done = self._request.wait(timeout)
        except cgloo.TimeoutError as e:
            raise _error(self._name, e) from e  # still pending: a later wait may complete it
        except cgloo.Error as e:
            self._failure = _error(self._name, e)
            return
        try:
            self._result = self._finish(done)
            self._source = done[0]
        except Exception as e:  # the finish's checks: kept, raised by every wait
            self._failure = e

    def is_completed(self):
        if self._result is not None or self._failure is not None:
            return True
        if not self._lock.acquire(blocking=False):
            return False  # another thread is waiting on it
        try:
            return self._request.test()
        except cgloo.Error:
            return True
        finally:
            self._lock.release()

    def result(self):
        self.wait()
        return self._result

    def _source_rank(self):
        self.wait()
        return self._source

    source_rank = _source_rank

    def get_future(self):
        """A Future completed by a thread that waits for the request."""
        fut = torch.futures.Future()

        def settle():
            try:
                fut.set_result(self.result())
            except Exception as e:
                fut.set_exception(e)

        threading.Thread(target=settle, daemon=True).start()
        return fut


class _Completer:
    """The thread that completes a group's background collectives: it waits for their requests
    in the order they started, which is the order cgloo completes them in (one tag per group),
    then finishes each (copies back, averages) and sets its Future with the GIL held, as torch
    needs. A failure is the group's: on_error (the group's _break) makes its later calls raise
    the error."""

    def __init__(self, on_error):
        self._queue = queue.SimpleQueue()
        self._on_error = on_error
        self._thread = None

    def add(self, name, request, finish):
        fut = torch.futures.Future()
        if self._thread is None:
            self._thread = threading.Thread(target=_complete_loop,
                                            args=(self._queue, self._on_error), daemon=True,
                                            name="cgloo.torch completer")
            self._thread.start()
        self._queue.put((name, request, finish, fut))
        return fut

    def stop(self, wait=0.0):
        """Ends the thread once the collectives queued before have completed; waits up to
        wait seconds for that."""
        if self._thread is not None:
            self._queue.put(None)
            if wait:
                self._thread.join(wait)


# Every group's completer, so that the interpreter's exit lets them finish first: a daemon
# thread still setting a Future while the interpreter tears down makes torch call
# std::terminate (seen when a peer died and the program exited at once).
_completers = weakref.WeakSet()


@atexit.register
def _stop_completers():
    for completer in list(_completers):
        completer.stop(wait=5.0)


def _complete_loop(q, on_error):
    while (item := q.get()) is not None:
        name, request, finish, fut = item
        try:
            request.wait()  # waits, or runs the collective here if no thread has started it
        except cgloo.Error as e:
            handler = on_error()
            if handler:
                handler(name, e)  # the group is broken: its next call raises e
        # Even after a failure the Future gets the tensors, not the error: torch 1.13's DDP
        # reads the value of a failed Future and crashes (SIGSEGV in finalize_backward).
        fut.set_result(finish(None))


# ---- the store ----

class _TorchStore:
    """The torch Store init_process_group hands over, with the methods cgloo.CustomStore calls
    (timeouts in seconds; TimeoutError when keys do not appear in time)."""

    def __init__(self, store):
        self._store = store

    def set(self, key, value):
        self._store.set(key, value)

    def get(self, key, timeout):
        self.wait([key], timeout)
        return self._store.get(key)

    def wait(self, keys, timeout):
        # torch reads a zero timedelta as "wait forever", hence the floor.
        try:
            self._store.wait(keys, datetime.timedelta(seconds=max(timeout, 0.001)))
        except RuntimeError as e:
            # TCPStore says "Socket Timeout", FileStore "Wait timeout"; other errors stay.
            if "timeout" in str(e).lower():
                raise TimeoutError(str(e)) from e
            raise

    def add(self, key, delta):
        return self._store.add(key, delta)

    def delete(self, key):
        self._store.delete_key(key)


def _connect(store, rank, size, timeout, name):
    if size == 1:
        return cgloo.Context(0, 1, timeout=timeout, name=name)
    with cgloo.CustomStore(_TorchStore(store)) as cstore:
        return cgloo.Context(rank, size, cstore, timeout=timeout, name=name)


# ---- the process group ----

class ProcessGroupCgloo(c10d.ProcessGroup):
    """A torch process group whose operations run on one cgloo context. torch makes one per
    group through the registered creator; made directly, store is any torch Store the ranks
    share, and group_name tells apart groups that share it."""

    def __init__(self, store, rank, size, timeout=datetime.timedelta(minutes=30),
                 group_name=""):
        super().__init__(rank, size)
        name = f"torch-{group_name}" if group_name else "torch"
        self._ctx = _connect(store, rank, size, _seconds(timeout), name)
        self._broken = None
        # the completer's thread must not keep the group alive: it holds a weak reference
        self._completer = _Completer(weakref.WeakMethod(self._break))
        _completers.add(self._completer)

    def __del__(self):
        completer = getattr(self, "_completer", None)
        if completer is not None:
            completer.stop()

    def getBackendName(self):
        return BACKEND_NAME

    _get_backend_name = getBackendName

    def __repr__(self):
        return f"<cgloo.torch.ProcessGroupCgloo rank {self.rank()} of {self.size()}>"

    # -- running an operation --

    def _run(self, name, start, *args):
        if self._broken is not None:
            raise RuntimeError(f"cgloo.torch: {name}: the group is unusable since {self._broken}")
        try:
            request, finish = start(self._ctx, *args)
        except (cgloo.InvalidArgumentError, cgloo.NotSupportedError) as e:
            raise _error(name, e) from e  # refused before anything was sent
        except cgloo.Error as e:
            raise self._break(name, e) from e
        return self._complete(name, start in _POINT_TO_POINT, request, finish)

    def _break(self, name, e):
        """After a failed collective the ranks may be at different steps, so the context goes:
        later calls here fail at once instead of mismatching messages, and the peers see the
        connections close and fail too, rather than wait for their timeout. The close runs on
        its own thread because it lingers (up to seconds) for peers that do not read."""
        if self._broken is None:
            self._broken = f"{name} failed ({type(e).__name__}: {e})"
            self._ctx.abort()
            # not a daemon: the interpreter waits for it at exit instead of cutting it off
            threading.Thread(target=self._ctx.close, name="cgloo.torch close").start()
        return _error(name, e)

    def _complete(self, name, p2p, request, finish):
        """The Work of a started operation: the one place that knows how operations complete.
        A blocking call is over (request None): Work from a completed Future. A send or receive
        gets a _RequestWork (only Python waits on those). A background collective gets Work made
        from a Future that the group's completer sets: torch 1.13's C++ code (DDP waits on
        allreduce, allgather and broadcast) hangs waiting on a Python Work, and crashes reading
        a Future that holds an error. So a background collective's failure reaches the caller
        through the group: its next call raises it."""
        if request is None:
            return _completed_work(finish(None))
        if p2p:
            return _RequestWork(name, request, finish)
        return c10d._create_work_from_future(self._completer.add(name, request, finish))

    # -- collectives --

    def allreduce(self, tensors, opts=None):
        opts = opts or c10d.AllreduceOptions()
        if len(tensors) == 1 and self._broken is None:
            work = self._allreduce_direct(tensors[0], opts)
            if work is not None:
                return work
        t = _one("all_reduce", tensors)
        red = _Reduction("all_reduce", opts.reduceOp, t)
        return self._run("all_reduce", _allreduce, t, red, _seconds(opts.timeout))

    def _allreduce_direct(self, t, opts):
        """The common all_reduce, made short: one small dense CPU tensor that numpy can view
        (the array's own dtype is cgloo's), an op without a division, blocking. Half of a
        small all_reduce's time went to the general path's staging (docs/BENCHMARKS.md,
        "PyTorch"). None when the tensor or op needs the general path."""
        entry = _REDUCE_OPS.get(opts.reduceOp.op)
        if (entry is None or entry[1] or t.dtype not in _NUMPY_DTYPES or t.device.type != "cpu"
                or not t.dim() or not t.is_contiguous() or t.is_conj() or t.is_neg()
                or t.numel() * t.element_size() >= ASYNC_MIN_BYTES):
            return None
        try:
            buf = (t.detach() if t.requires_grad else t).numpy()
            self._ctx.allreduce(buf, op=entry[0], timeout=_seconds(opts.timeout))
        except (cgloo.InvalidArgumentError, cgloo.NotSupportedError) as e:
            raise _error("all_reduce", e) from e
        except cgloo.Error as e:
            raise self._break("all_reduce", e) from e
        return _completed_work([t])

    def allreduce_coalesced(self, tensors, opts=None):
        opts = opts or c10d.AllreduceCoalescedOptions()
        name = "all_reduce_coalesced"
        reds = [_Reduction(name, opts.reduceOp, _check(name, t)) for t in tensors]
        return self._run(name, _allreduce_each, tensors, reds, _seconds(opts.timeout))

    def broadcast(self, tensors, opts=None):
        opts = opts or c10d.BroadcastOptions()
        t = _one("broadcast", tensors)
        return self._run("broadcast", _broadcast, t, opts.rootRank, _seconds(opts.timeout))

    def reduce(self, tensors, opts=None):
        opts = opts or c10d.ReduceOptions()
        t = _one("reduce", tensors)
        red = _Reduction("reduce", opts.reduceOp, t)
        return self._run("reduce", _reduce, t, red, opts.rootRank, _seconds(opts.timeout))

    def allgather(self, output_tensors, input_tensors, opts=None):
        opts = opts or c10d.AllgatherOptions()
        t = _one("all_gather", input_tensors)
        outs = _one_list("all_gather", output_tensors)
        _check_blocks("all_gather", outs, t, self.size())
        return self._run("all_gather", _allgather, outs, t, _seconds(opts.timeout))

    def _allgather_base(self, output_tensor, input_tensor, opts=None):
        opts = opts or c10d.AllgatherOptions()
        name = "all_gather_into_tensor"
        _check_flat(name, _check(name, output_tensor), _check(name, input_tensor), self.size())
        return self._run(name, _allgather_flat, output_tensor, input_tensor,
                         _seconds(opts.timeout))

    def gather(self, output_tensors, input_tensors, opts=None):
        opts = opts or c10d.GatherOptions()
        t = _one("gather", input_tensors)
        outs = []
        if self.rank() == opts.rootRank:
            outs = _one_list("gather", output_tensors)
            _check_blocks("gather", outs, t, self.size())
        return self._run("gather", _gather, outs, t, opts.rootRank, _seconds(opts.timeout))

    def scatter(self, output_tensors, input_tensors, opts=None):
        opts = opts or c10d.ScatterOptions()
        t = _one("scatter", output_tensors)
        ins = []
        if self.rank() == opts.rootRank:
            ins = _one_list("scatter", input_tensors)
            _check_blocks("scatter", ins, t, self.size())
        return self._run("scatter", _scatter, t, ins, opts.rootRank, _seconds(opts.timeout))

    def reduce_scatter(self, output_tensors, input_tensors, opts=None):
        opts = opts or c10d.ReduceScatterOptions()
        t = _one("reduce_scatter", output_tensors)
        ins = _one_list("reduce_scatter", input_tensors)
        _check_blocks("reduce_scatter", ins, t, self.size())
        red = _Reduction("reduce_scatter", opts.reduceOp, t)
        return self._run("reduce_scatter", _reduce_scatter, t, ins, red, _seconds(opts.timeout))

    def _reduce_scatter_base(self, output_tensor, input_tensor, opts=None):
        opts = opts or c10d.ReduceScatterOptions()
        name = "reduce_scatter_tensor"
        _check_flat(name, _check(name, input_tensor), _check(name, output_tensor), self.size())
        red = _Reduction(name, opts.reduceOp, output_tensor)
        return self._run(name, _reduce_scatter_flat, output_tensor, input_tensor, red,
                         _seconds(opts.timeout))

    def alltoall_base(self, output_tensor, input_tensor, output_split_sizes, input_split_sizes,
                      opts=None):
        opts = opts or c10d.AllToAllOptions()
        name = "all_to_all_single"
        out, t = _check(name, output_tensor), _check(name, input_tensor)
        if out.dtype != t.dtype:
            raise ValueError(f"cgloo.torch: {name}: output is {out.dtype}, input {t.dtype}")
        out_counts = _split_bytes(name, out, output_split_sizes, self.size())
        in_counts = _split_bytes(name, t, input_split_sizes, self.size())
        return self._run(name, _alltoall_flat, out, t, out_counts, in_counts,
                         _seconds(opts.timeout))

    def alltoall(self, output_tensors, input_tensors, opts=None):
        opts = opts or c10d.AllToAllOptions()
        for tensors in (output_tensors, input_tensors):
            if len(tensors) != self.size():
                raise ValueError(f"cgloo.torch: all_to_all needs {self.size()} tensors per "
                                 f"list, got {len(tensors)}")
            for t in tensors:
                _check("all_to_all", t)
        return self._run("all_to_all", _alltoall, output_tensors, input_tensors,
                         _seconds(opts.timeout))

    def barrier(self, opts=None):
        opts = opts or c10d.BarrierOptions()
        return self._run("barrier", _barrier, _seconds(opts.timeout))

    # -- point-to-point --

    def send(self, tensors, dstRank, tag=0):
        return self._run("send", _send, _one("send", tensors), dstRank, tag)

    def recv(self, tensors, srcRank, tag=0):
        return self._run("recv", _recv, _one("recv", tensors), srcRank, tag)

    def recv_anysource(self, tensors, tag=0):
        return self._run("recv", _recv_anysource, _one("recv", tensors), tag)

    # batch_isend_irecv brackets its sends and receives with these; cgloo starts each at once.
    def _start_coalescing(self):
        pass

    def _end_coalescing(self, reqs):
        pass


def _one_list(name, lists):
    """The tensor list of a per-device list of lists; a CPU process has exactly one."""
    if len(lists) != 1:
        raise NotImplementedError(f"cgloo.torch: {name} takes one tensor list per process, not "
                                  f"{len(lists)} (the *_multigpu forms are not supported)")
    return lists[0]


def _create_process_group(opts, pg_options):
    """The creator torch calls for init_process_group and new_group (the extended form, whose
    options carry the group's name, used for its cgloo context)."""
    if pg_options is not None:
        raise ValueError("cgloo.torch: the cgloo backend takes no pg_options")
    return ProcessGroupCgloo(opts.store, opts.group_rank, opts.group_size, opts.timeout,
                             opts.group_id)


# A second registration (importlib.reload, say) would trip torch's assertion.
if BACKEND_NAME.upper() not in dist.Backend._plugins:
    dist.Backend.register_backend(BACKEND_NAME, _create_process_group, extended_api=True)
