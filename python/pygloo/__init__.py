"""pygloo: the pygloo 0.2 interface, over cgloo.

Programs written for pygloo (Ray's binding of Facebook's Gloo) run unchanged: the same names,
argument order, defaults and enum values. Buffers are raw addresses (``ndarray.ctypes.data``)
with element counts and a ``glooDataType_t``, as in pygloo; each call turns the addresses into
ctypes views and makes the matching call of the ``cgloo`` package, which releases the GIL while
it waits.

Where pygloo was broken, this module does the right thing instead:

- the bitwise ops (BAND, BOR, BXOR) work on the integer datatypes (pygloo always raised);
- ``allgatherv`` really gathers blocks of different lengths: ``size`` may be a list of the
  per-rank element counts (pygloo ran a plain allgather);
- ``reduce_scatter`` leaves ``sendbuf`` untouched.

Errors from the library are ``cgloo.Error`` exceptions (``cgloo.TimeoutError`` is also the
built-in ``TimeoutError``); argument errors are ``TypeError`` or ``ValueError``.
"""

import ctypes as _ctypes
import enum as _enum

import cgloo as _cgloo

__all__ = [
    "ReduceOp",
    "allreduceAlgorithm",
    "glooDataType_t",
    "allreduce",
    "allgather",
    "allgatherv",
    "reduce",
    "scatter",
    "gather",
    "broadcast",
    "reduce_scatter",
    "send",
    "recv",
    "barrier",
    "transport_tcp_available",
    "transport_uv_available",
    "rendezvous",
    "transport",
]


class ReduceOp(_enum.IntEnum):
    """Reduction operations, with pygloo's values (the same as cgloo.Op for 0 to 6)."""

    SUM = 0
    PRODUCT = 1
    MIN = 2
    MAX = 3
    BAND = 4
    BOR = 5
    BXOR = 6
    UNUSED = 7


class allreduceAlgorithm(_enum.IntEnum):
    """Allreduce algorithms, with pygloo's values.

    RING, pygloo's default, and SUM (0, "unspecified"; UNSPECIFIED is another name for it) let
    cgloo choose by message size and world size: for small messages its direct or
    recursive-doubling exchange takes half the time of a ring (6 against 11 us for 4 bytes at
    2 ranks), and for large ones it picks a ring or halving-doubling. Most pygloo programs never
    chose RING, they inherited it; CGLOO_ALLREDUCE_ALGORITHM=ring forces cgloo's ring. BCUBE asks
    for cgloo's bcube.
    """

    SUM = 0
    UNSPECIFIED = 0
    RING = 1
    BCUBE = 2


class glooDataType_t(_enum.IntEnum):
    """Element types, with pygloo's values. They differ from cgloo.DType's from glooFloat32 on
    (cgloo has bfloat16 before float32), which is why a cgloo.DType is refused here."""

    glooInt8 = 0
    glooUint8 = 1
    glooInt32 = 2
    glooUint32 = 3
    glooInt64 = 4
    glooUint64 = 5
    glooFloat16 = 6
    glooFloat32 = 7
    glooFloat64 = 8


# pygloo exported the enum members at module level as well (pybind11's export_values). SUM is
# both ReduceOp.SUM and allreduceAlgorithm.SUM in pygloo; both are 0.
globals().update(allreduceAlgorithm.__members__)
globals().update(ReduceOp.__members__)
globals().update(glooDataType_t.__members__)

# datatype -> (ctypes element type of its size, cgloo dtype). float16 travels as uint16
# elements with cgloo's dtype given explicitly, since ctypes has no half type.
_DTYPES = {
    glooDataType_t.glooInt8: (_ctypes.c_int8, _cgloo.DType.INT8),
    glooDataType_t.glooUint8: (_ctypes.c_uint8, _cgloo.DType.UINT8),
    glooDataType_t.glooInt32: (_ctypes.c_int32, _cgloo.DType.INT32),
    glooDataType_t.glooUint32: (_ctypes.c_uint32, _cgloo.DType.UINT32),
    glooDataType_t.glooInt64: (_ctypes.c_int64, _cgloo.DType.INT64),
    glooDataType_t.glooUint64: (_ctypes.c_uint64, _cgloo.DType.UINT64),
    glooDataType_t.glooFloat16: (_ctypes.c_uint16, _cgloo.DType.FLOAT16),
    glooDataType_t.glooFloat32: (_ctypes.c_float, _cgloo.DType.FLOAT32),
    glooDataType_t.glooFloat64: (_ctypes.c_double, _cgloo.DType.FLOAT64),
}

_OPS = {op: _cgloo.Op(int(op)) for op in ReduceOp if op is not ReduceOp.UNUSED}

_ALGORITHMS = {
    allreduceAlgorithm.UNSPECIFIED: None,
    allreduceAlgorithm.RING: None,
    allreduceAlgorithm.BCUBE: "bcube",
}

_NOT_CONNECTED = "the context is not connected: call context.connectFullMesh(store, device) first"


def _datatype(datatype):
    """(ctypes type, cgloo dtype) of a glooDataType_t, or a clear error for anything else."""
    try:
        found = _DTYPES[datatype]
    except (KeyError, TypeError):
        found = None
    if found is not None and type(datatype) is not _cgloo.DType:
        return found
    if isinstance(datatype, _cgloo.DType):
        raise TypeError(
            f"datatype {datatype!r} is a cgloo.DType; pygloo calls take a "
            "pygloo.glooDataType_t (their values differ from float32 on)"
        )
    names = ", ".join(glooDataType_t.__members__)
    raise TypeError(f"datatype must be a pygloo.glooDataType_t ({names}), not {datatype!r}")


def _op(reduceop):
    """cgloo.Op of a ReduceOp; UNUSED and unknown values are refused."""
    try:
        return _OPS[reduceop]
    except (KeyError, TypeError):
        raise ValueError(
            f"reduceop must be a pygloo.ReduceOp from SUM to BXOR, not {reduceop!r}"
        ) from None


def _algorithm(algorithm):
    """cgloo's algorithm name of an allreduceAlgorithm (None: cgloo chooses)."""
    try:
        return _ALGORITHMS[algorithm]
    except (KeyError, TypeError):
        raise ValueError(
            f"algorithm must be a pygloo.allreduceAlgorithm (SUM, RING, BCUBE), not {algorithm!r}"
        ) from None


def _ctx(context):
    """The connected cgloo.Context behind a pygloo rendezvous.Context."""
    ctx = getattr(context, "_ctx", None)
    if ctx is None:
        if not isinstance(context, rendezvous.Context):
            raise TypeError(f"context must be a pygloo.rendezvous.Context, not {context!r}")
        raise ValueError(_NOT_CONNECTED)
    return ctx


# Views made for recent (address, count, ctype): programs call collectives on the same arrays
# again and again, and a dictionary hit costs half of making the ctypes array anew. A view holds
# no memory, only the address, so a cached one is exactly what a new one would be. The cache is
# emptied when it fills.
_VIEWS = {}
_VIEWS_MAX = 256


def _view(address, count, ctype):
    """A writable ctypes array of count elements at a raw address, without copying.

    The caller owns the memory, as in pygloo: it must hold count elements and stay alive for
    the call. Address 0 is refused unless count is 0.
    """
    key = (address, count, ctype)
    view = _VIEWS.get(key)
    if view is None:
        view = _new_view(address, count, ctype)
        if len(_VIEWS) >= _VIEWS_MAX:
            _VIEWS.clear()
        _VIEWS[key] = view
    return view


def _new_view(address, count, ctype):
    """_view's work when the cache misses: check the address and make the ctypes array."""
    if not isinstance(address, int) or isinstance(address, bool):
        raise TypeError(f"buffer address must be an int (ndarray.ctypes.data), not {address!r}")
    if address <= 0 and count:
        raise ValueError(f"buffer address {address!r} is not a valid pointer")
    return (ctype * count).from_address(address)


def allreduce(
    context,
    sendbuf,
    recvbuf,
    size,
    datatype,
    reduceop=ReduceOp.SUM,
    algorithm=allreduceAlgorithm.RING,
    tag=0,
):
    """allreduce reduces size elements at sendbuf over all ranks into recvbuf on every rank.

    sendbuf and recvbuf are addresses; equal addresses reduce in place. algorithm RING (the
    default) and SUM let cgloo choose the algorithm, BCUBE asks for its "bcube" (see
    allreduceAlgorithm). Blocks until done or the context's timeout.
    """
    ctype, dtype = _datatype(datatype)
    send = _view(sendbuf, size, ctype)
    recv = send if recvbuf == sendbuf else _view(recvbuf, size, ctype)
    _ctx(context).allreduce(
        send, recv, _op(reduceop), algorithm=_algorithm(algorithm), tag=tag, dtype=dtype
    )


def allgather(context, sendbuf, recvbuf, size, datatype, tag=0):
    """allgather gives every rank all ranks' size elements at recvbuf, in rank order.

    recvbuf holds size x context.size elements. Blocks until done or the context's timeout.
    """
    ctx = _ctx(context)
    ctype, dtype = _datatype(datatype)
    send = _view(sendbuf, size, ctype)
    recv = _view(recvbuf, size * ctx.size, ctype)
    ctx.allgather(send, recv, tag=tag, dtype=dtype)


def allgatherv(context, sendbuf, recvbuf, size, datatype, tag=0):
    """allgatherv gathers blocks of different lengths from all ranks, on every rank.

    size is either a list of element counts, one per rank (rank r sends size[r] elements from
    sendbuf, and recvbuf receives the blocks back to back in rank order, sum(size) elements),
    or one int, meaning every rank sends that many (then it is allgather). pygloo had one int
    only and ran allgather; the list is the form that makes this a real allgatherv.
    """
    ctx = _ctx(context)
    if not isinstance(size, (list, tuple)):
        allgather(context, sendbuf, recvbuf, size, datatype, tag)
        return
    counts = [int(c) for c in size]
    if len(counts) != ctx.size or min(counts, default=0) < 0:
        raise ValueError(
            f"allgatherv: size must list one count of at least 0 per rank ({ctx.size}), "
            f"got {size!r}"
        )
    ctype, dtype = _datatype(datatype)
    send = _view(sendbuf, counts[ctx.rank], ctype)
    recv = _view(recvbuf, sum(counts), ctype)
    ctx.allgatherv(send, recv, counts, tag=tag, dtype=dtype)


def reduce(
    context, sendbuf, recvbuf, size, datatype, reduceop=ReduceOp.SUM, root=0, tag=0
):
    """reduce reduces size elements at sendbuf over all ranks into recvbuf on rank root.

    recvbuf is only written on the root (the same address as sendbuf reduces in place there);
    other ranks' recvbuf is ignored and may be 0.
    """
    ctx = _ctx(context)
    ctype, dtype = _datatype(datatype)
    send = _view(sendbuf, size, ctype)
    if ctx.rank != root:
        recv = None
    elif recvbuf == sendbuf:
        recv = send
    else:
        recv = _view(recvbuf, size, ctype)
    ctx.reduce(send, recv, _op(reduceop), root=root, tag=tag, dtype=dtype)


def _contiguous(addresses, nbytes):
    """True if the addresses are blocks of nbytes laid out back to back."""
    first = addresses[0]
    return all(a == first + i * nbytes for i, a in enumerate(addresses))


def _packed_blocks(addresses, count, ctype):
    """One buffer holding the blocks at addresses, back to back: a view if they already are,
    else a copy (scatter's root may give blocks anywhere in memory)."""
    nbytes = count * _ctypes.sizeof(ctype)
    if _contiguous(addresses, nbytes):
        return _view(addresses[0], count * len(addresses), ctype)
    packed = (ctype * (count * len(addresses)))()
    for i, address in enumerate(addresses):
        _view(address, count, ctype)  # checks the address
        _ctypes.memmove(_ctypes.addressof(packed) + i * nbytes, address, nbytes)
    return packed


def scatter(context, sendbuf, recvbuf, size, datatype, root=0, tag=0):
    """scatter sends block r of the root's blocks to rank r, size elements each, into recvbuf.

    sendbuf is a list of context.size addresses on the root, one block per rank; other ranks'
    sendbuf is ignored (an empty list will do).
    """
    ctx = _ctx(context)
    ctype, dtype = _datatype(datatype)
    recv = _view(recvbuf, size, ctype)
    send = None
    if ctx.rank == root:
        if len(sendbuf) != ctx.size:
            raise ValueError(
                f"scatter: the root's sendbuf must list {ctx.size} addresses, one per rank, "
                f"got {len(sendbuf)}"
            )
        send = _packed_blocks(list(sendbuf), size, ctype)
    ctx.scatter(send, recv, root=root, tag=tag, dtype=dtype)


def gather(context, sendbuf, recvbuf, size, datatype, root=0, tag=0):
    """gather collects every rank's size elements at sendbuf into the root's recvbuf, in rank
    order (size x context.size elements). recvbuf is ignored on other ranks."""
    ctx = _ctx(context)
    ctype, dtype = _datatype(datatype)
    send = _view(sendbuf, size, ctype)
    recv = _view(recvbuf, size * ctx.size, ctype) if ctx.rank == root else None
    ctx.gather(send, recv, root=root, tag=tag, dtype=dtype)


def broadcast(context, sendbuf, recvbuf, size, datatype, root=0, tag=0):
    """broadcast copies the root's size elements at sendbuf into recvbuf on every rank.

    On the root, recvbuf gets a copy of sendbuf too (0 or the same address broadcasts sendbuf
    in place); other ranks' sendbuf is ignored.
    """
    ctx = _ctx(context)
    ctype, dtype = _datatype(datatype)
    if ctx.rank == root and recvbuf != sendbuf:
        if not recvbuf:
            recvbuf = sendbuf
        else:
            _view(sendbuf, size, ctype)  # checks both addresses
            _view(recvbuf, size, ctype)
            _ctypes.memmove(recvbuf, sendbuf, size * _ctypes.sizeof(ctype))
    ctx.broadcast(_view(recvbuf, size, ctype), root=root, tag=tag, dtype=dtype)


def reduce_scatter(context, sendbuf, recvbuf, size, recvElems, datatype, reduceop=ReduceOp.SUM):
    """reduce_scatter reduces sendbuf over all ranks and leaves block r on rank r.

    sendbuf holds size elements, the blocks of recvElems[0], recvElems[1], ... elements back to
    back (so size == sum(recvElems)); recvbuf receives this rank's block, recvElems[rank]
    elements. sendbuf is not modified.
    """
    ctx = _ctx(context)
    counts = [int(c) for c in recvElems]
    if len(counts) != ctx.size or sum(counts) != size or min(counts, default=0) < 0:
        raise ValueError(
            f"reduce_scatter: recvElems must hold one count per rank ({ctx.size}) summing to "
            f"size ({size}), got {recvElems!r}"
        )
    ctype, dtype = _datatype(datatype)
    send = _view(sendbuf, size, ctype)
    recv = _view(recvbuf, counts[ctx.rank], ctype)
    ctx.reduce_scatterv(send, recv, counts, _op(reduceop), dtype=dtype)


def send(context, sendbuf, size, datatype, peer, tag=0):
    """send sends size elements at sendbuf to rank peer with tag; returns once the buffer may
    be reused."""
    ctype, _ = _datatype(datatype)
    _ctx(context).send(_view(sendbuf, size, ctype), peer, tag=tag)


def recv(context, recvbuf, size, datatype, peer, tag=0):
    """recv receives a message of up to size elements from rank peer with tag into recvbuf.

    A longer message raises cgloo.TruncatedError.
    """
    ctype, _ = _datatype(datatype)
    _ctx(context).recv(_view(recvbuf, size, ctype), peer, tag=tag)


def barrier(context, tag=0):
    """barrier returns once every rank has entered it."""
    _ctx(context).barrier(tag=tag)


def transport_tcp_available():
    """True: cgloo always has its TCP transport."""
    return True


def transport_uv_available():
    """False: cgloo has no libuv transport (its TCP transport runs its own event loop)."""
    return False


from . import rendezvous, transport  # noqa: E402  (they import the names above)
