"""cgloo: collective communication between processes over plain TCP.

A Context is one communicator of ``size`` ranks. Make one from the launcher's environment::

    import numpy as np, cgloo
    with cgloo.init_from_env() as ctx:          # cgloo-run -n 4 python3 prog.py
        x = np.full(4, ctx.rank, dtype=np.float32)
        ctx.allreduce(x)                         # in place, op=cgloo.SUM

or from a store and a rank: ``cgloo.Context(rank, size, cgloo.TCPStore(host, port))``.
Buffers are numpy arrays or any object with the buffer protocol (bytearray, array.array,
memoryview); their dtype comes from their format. Every blocking call releases the GIL, and
Ctrl-C ends a long wait with KeyboardInterrupt. Failures raise cgloo.Error subclasses.
"""

import builtins as _builtins
import enum as _enum
import os as _os
import re as _re

from . import _cgloo
from ._cgloo import (
    Context,
    CustomStore,
    Device,
    FileStore,
    HashStore,
    PrefixStore,
    Request,
    Store,
    StoreServer,
    TCPStore,
    algorithm_names,
    launch_info,
    open_launch_store,
    open_store,
    reduce_local,
)

__version__ = _cgloo.version_string()

#: The color of a rank that wants no sub-context from Context.split (MPI_UNDEFINED).
UNDEFINED = -1


class DType(_enum.IntEnum):
    """Element types, with the C library's values. A buffer's format gives its dtype: numpy's
    int8 to uint64, float16, float32, float64, bool, complex64 and complex128 are the members
    of those names; bfloat16 needs dtype=. BOOL reduces as logic: any non-zero byte is true,
    SUM and MAX are or, PRODUCT and MIN and, every result 0 or 1. COMPLEX64 and COMPLEX128 have
    SUM and PRODUCT only (MIN, MAX and the bitwise ops raise InvalidArgumentError)."""

    INT8 = 0
    UINT8 = 1
    INT32 = 2
    UINT32 = 3
    INT64 = 4
    UINT64 = 5
    FLOAT16 = 6
    BFLOAT16 = 7
    FLOAT32 = 8
    FLOAT64 = 9
    BOOL = 10
    INT16 = 11
    UINT16 = 12
    COMPLEX64 = 13
    COMPLEX128 = 14


class Op(_enum.IntEnum):
    """Reduction operations, with the C library's values."""

    SUM = 0
    PRODUCT = 1
    MIN = 2
    MAX = 3
    BAND = 4
    BOR = 5
    BXOR = 6


int8, uint8, int32, uint32, int64, uint64 = (DType.INT8, DType.UINT8, DType.INT32,
                                             DType.UINT32, DType.INT64, DType.UINT64)
float16, bfloat16, float32, float64 = (DType.FLOAT16, DType.BFLOAT16, DType.FLOAT32,
                                       DType.FLOAT64)
# bool_ as numpy spells it: a module-level `bool` would hide the builtin in this module.
bool_, int16, uint16, complex64, complex128 = (DType.BOOL, DType.INT16, DType.UINT16,
                                               DType.COMPLEX64, DType.COMPLEX128)
SUM, PRODUCT, MIN, MAX, BAND, BOR, BXOR = (Op.SUM, Op.PRODUCT, Op.MIN, Op.MAX, Op.BAND, Op.BOR,
                                           Op.BXOR)

# "peer 2", "from rank 2", "to rank 2", "to failed peer 2": the rank a detail blames. The
# detail's first "rank N:" is the reporting rank itself, which no preposition precedes.
_PEER_RE = _re.compile(r"\b(?:peer|(?:from|to) rank) (\d+)")


def _peer_rank(detail):
    """The peer rank a library detail names, or None."""
    m = _PEER_RE.search(detail or "")
    return int(m.group(1)) if m else None


class Error(Exception):
    """A cgloo failure: ``status`` is the C code (negative), ``code`` its name ("ETIMEDOUT"),
    ``detail`` the library's detail text and ``rank`` the peer rank the detail names (or
    None)."""

    def __init__(self, message, status=None, detail=""):
        super().__init__(message)
        self.status = status
        self.code = _cgloo.status_name(status) if status is not None else None
        self.detail = detail
        self.rank = _peer_rank(detail)


class TimeoutError(Error, _builtins.TimeoutError):
    """A call did not finish within its timeout (ETIMEDOUT)."""


class PeerError(Error):
    """A peer failed or closed its connection (EPEER); ``rank`` names it."""


class ProtocolError(PeerError):
    """A peer broke the wire protocol (EPROTO)."""


class AbortedError(Error):
    """The context was aborted or closed, or the request cancelled (EABORTED)."""


class StoreError(Error):
    """A store failed (ESTORE, ENOTFOUND)."""


class InvalidArgumentError(Error, ValueError):
    """The library refused an argument (EINVAL); the detail says which."""


class TruncatedError(Error):
    """A message was longer than the receive buffer (ETRUNC)."""


class NotSupportedError(Error):
    """No such algorithm, or an unsupported operation (ENOTSUP)."""


class ConnectionError(Error, _builtins.ConnectionError):
    """Connecting failed (ECONNREFUSED, EADDR, EIO)."""


_cgloo._set_errors(Error, {
    -1: InvalidArgumentError,
    -3: TimeoutError,
    -4: PeerError,
    -5: ProtocolError,
    -6: AbortedError,
    -7: StoreError,
    -8: ConnectionError,
    -9: TruncatedError,
    -10: ConnectionError,
    -11: ConnectionError,
    -12: StoreError,
    -13: NotSupportedError,
})

_LOG_LEVELS = {"off": 0, "error": 1, "warn": 2, "info": 3, "debug": 4, "trace": 5}


def set_log_level(level):
    """Set the library's log level: "off", "error", "warn", "info", "debug", "trace" or 0-5."""
    if isinstance(level, str):
        try:
            level = _LOG_LEVELS[level.lower()]
        except KeyError:
            raise ValueError(f"unknown log level {level!r}") from None
    _cgloo._set_log_level(level)


def _env_int(name, default=None, low=None):
    value = _os.environ.get(name)
    if value is None or value == "":
        if default is None:
            raise InvalidArgumentError(f"invalid argument: {name} is not set", -1,
                                       f"{name} is not set")
        return default
    try:
        v = int(value)
    except ValueError:
        v = None
    if v is None or (low is not None and v < low):
        raise InvalidArgumentError(f"invalid argument: {name}={value!r} is malformed", -1,
                                   f"{name}={value!r} is malformed")
    return v


def init_from_env():
    """A connected Context from the launcher's environment, as cgloo_context_create_from_env
    makes it: the rank, size and store that cgloo-run, torchrun, mpirun, an MPICH/PMI launcher
    or srun set (see launch_info(); CGLOO_STORE overrides the store), and optionally
    CGLOO_TIMEOUT_MS, CGLOO_HOSTNAME / CGLOO_IFACE and CGLOO_CONTEXT_NAME. The library reads the
    launcher's variables and opens (or, on the rank that hosts it, serves) the store; the
    Context is built here from its parts so that Ctrl-C can interrupt the connect."""
    info = launch_info()
    timeout = _env_int("CGLOO_TIMEOUT_MS", 30000, low=1) / 1000.0
    name = _os.environ.get("CGLOO_CONTEXT_NAME") or None
    if info["size"] == 1:
        return Context(0, 1, timeout=timeout, name=name)
    # The Context keeps the store (and the server it owns, on the rank that serves it) for as
    # long as it lives.
    with open_launch_store(timeout=timeout) as store:
        return Context(info["rank"], info["size"], store, timeout=timeout, name=name)


__all__ = [
    "AbortedError", "BAND", "BOR", "BXOR", "ConnectionError", "Context", "CustomStore", "DType",
    "Device", "Error", "FileStore", "HashStore", "InvalidArgumentError", "MAX", "MIN",
    "NotSupportedError", "Op", "PRODUCT", "PeerError", "PrefixStore", "ProtocolError", "Request",
    "SUM", "Store", "StoreError", "StoreServer", "TCPStore", "TimeoutError", "TruncatedError",
    "UNDEFINED", "algorithm_names", "bfloat16", "bool_", "complex128", "complex64", "float16",
    "float32", "float64", "init_from_env", "int16", "int32", "int64", "int8", "launch_info",
    "open_launch_store", "open_store", "reduce_local", "set_log_level", "uint16", "uint32",
    "uint64", "uint8",
]
