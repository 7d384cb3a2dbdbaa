"""Type hints of the cgloo package (the reference for its API; python/API.md is the summary)."""

import builtins
import enum
from types import TracebackType
from typing import Any, Callable, Protocol, Sequence, TypeVar, overload

from typing_extensions import Buffer, Self

__version__: str

class DType(enum.IntEnum):
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

class Op(enum.IntEnum):
    """Reduction operations, with the C library's values."""
    SUM = 0
    PRODUCT = 1
    MIN = 2
    MAX = 3
    BAND = 4
    BOR = 5
    BXOR = 6

int8: DType
uint8: DType
int32: DType
uint32: DType
int64: DType
uint64: DType
float16: DType
bfloat16: DType
float32: DType
float64: DType
bool_: DType
int16: DType
uint16: DType
complex64: DType
complex128: DType
UNDEFINED: int
SUM: Op
PRODUCT: Op
MIN: Op
MAX: Op
BAND: Op
BOR: Op
BXOR: Op

class Error(Exception):
    """A cgloo failure."""
    status: int | None
    """The C status code (negative)."""
    code: str | None
    """The status's name, e.g. "ETIMEDOUT"."""
    detail: str
    """The library's detail text (operation, rank, peer, address, system error)."""
    rank: int | None
    """The peer rank the detail names, or None."""
    def __init__(self, message: str, status: int | None = ..., detail: str = ...) -> None: ...

class TimeoutError(Error, builtins.TimeoutError):
    """ETIMEDOUT."""
class PeerError(Error):
    """EPEER: a peer failed or closed the connection; .rank names it."""
class ProtocolError(PeerError):
    """EPROTO."""
class AbortedError(Error):
    """EABORTED: the context was aborted or closed, or the request cancelled."""
class StoreError(Error):
    """ESTORE, ENOTFOUND."""
class InvalidArgumentError(Error, ValueError):
    """EINVAL."""
class TruncatedError(Error):
    """ETRUNC: a message longer than the receive buffer."""
class NotSupportedError(Error):
    """ENOTSUP: e.g. no such algorithm."""
class ConnectionError(Error, builtins.ConnectionError):
    """ECONNREFUSED, EADDR, EIO."""

_B = TypeVar("_B", bound=Buffer)
_O = TypeVar("_O", bound=Buffer)
_L = TypeVar("_L", bound=Sequence[Any])
_ReduceFn = Callable[[Any, Any], object]
"""reduce_fn(inout, in_): two blocks as numpy arrays of the dtype (bfloat16 as uint16;
memoryviews without numpy, a complex block as its float parts, real and imaginary in turn);
writes inout op in_ into inout. Associative and commutative. Called with the GIL on whichever
thread runs the collective; it must not call cgloo."""

class Store:
    """A key/value store the ranks meet through. Timeouts are seconds (None: 30). Keys are str
    or bytes. A context manager that closes it."""
    @property
    def closed(self) -> bool: ...
    def set(self, key: str | bytes, value: Buffer) -> None:
        """Store a copy of value under key."""
    def get(self, key: str | bytes, timeout: float | None = None) -> bytes:
        """Wait for key, return its value; cgloo.TimeoutError if it never appears."""
    def wait(self, keys: Sequence[str | bytes] | str, timeout: float | None = None) -> None:
        """Wait until every key exists."""
    def check(self, keys: Sequence[str | bytes] | str) -> bool:
        """True if every key exists now."""
    def add(self, key: str | bytes, delta: int) -> int:
        """Add delta to the counter under key (absent: 0); the new value."""
    def delete(self, key: str | bytes) -> None:
        """Remove key (absent is fine)."""
    def multi_get(self, keys: Sequence[str | bytes], timeout: float | None = None) -> list[bytes]:
        """Wait for every key, return their values."""
    def close(self) -> None:
        """Release the store (deferred while a call, a PrefixStore or a connect uses it)."""
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: object) -> None: ...

class HashStore(Store):
    """An in-process store (ranks as threads)."""
    def __init__(self) -> None: ...

class FileStore(Store):
    """A store in a directory shared by the ranks; run_id (default CGLOO_RUN_ID) scopes keys."""
    def __init__(self, path: str | bytes, run_id: str | None = None) -> None: ...

class PrefixStore(Store):
    """store with every key under "<prefix>/"."""
    def __init__(self, prefix: str, store: Store) -> None: ...

class TCPStore(Store):
    """A client of a TCP store server, retrying refused connections for timeout seconds."""
    def __init__(self, host: str, port: int, timeout: float | None = 30.0) -> None: ...

class _CustomBackend(Protocol):
    def set(self, key: str, value: bytes) -> object: ...
    def get(self, key: str, timeout: float) -> bytes | None: ...
    def wait(self, keys: list[str], timeout: float) -> bool | None: ...
    def add(self, key: str, delta: int) -> int: ...

class CustomStore(Store):
    """A store over obj's methods, called from any thread with the GIL: set(key, value),
    get(key, timeout) -> bytes (KeyError, TimeoutError or None while absent),
    wait(keys, timeout) (TimeoutError or False if not all appear), add(key, delta) -> int,
    optional check(keys) -> bool and delete(key). Other exceptions become StoreError with
    the original as __cause__."""
    def __init__(self, obj: _CustomBackend) -> None: ...

def open_store(url: str, timeout: float | None = 30.0) -> Store:
    """A store from "tcp://host:port", "torch://host:port" (a PyTorch TCPStore, such as
    torchrun's), "file:///dir", "hash:" or "redis://[[user]:password@]host:port[/db][?cleanup=1]"
    (a Redis server; NotSupportedError when cgloo was built without hiredis). An error's detail
    never holds the password."""

def launch_info() -> dict[str, Any]:
    """What the library reads from the launcher's environment (cgloo-run, torchrun, mpirun,
    MPICH/PMI, Slurm): launcher, rank, size, local_rank, local_size (-1: not said), store (a
    URL), prefix (of the job's keys), serve_host and serve_port (this rank hosts the store
    when serve_port > 0), watch_store. Raises InvalidArgumentError naming the variable at fault."""

def open_launch_store(timeout: float | None = 30.0) -> Store:
    """The store launch_info() names, served first when this rank hosts it (closing the store
    stops the server), with the job's key prefix applied."""

class StoreServer:
    """A TCP store server on a background thread (host None: 127.0.0.1; port 0: a free one)."""
    def __init__(self, host: str | None = None, port: int = 0) -> None: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def url(self) -> str:
        """"tcp://host:port"."""
    def stop(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: object) -> None: ...

class Device:
    """A TCP endpoint: hostname (CGLOO_HOSTNAME), or iface (CGLOO_IFACE: interface names, IPs,
    subnets, "^" exclusions), else the address the route to store_host (the host of
    CGLOO_STORE) leaves from, else the host name's, else loopback; a port range (0: ephemeral;
    CGLOO_PORT), family 4 or 6 (0: any); advertise (CGLOO_ADVERTISE_ADDR) is published instead
    of the bound address; transport ("auto", "shm", "tcp") is how contexts on the device reach
    peers on their own host unless their own transport says (else CGLOO_TRANSPORT). A
    failure's exception carries the library's detail."""
    hostname: str | None
    iface: str | None
    port_min: int
    port_max: int
    family: int
    def __init__(self, hostname: str | None = None, iface: str | None = None, port_min: int = 0,
                 port_max: int = 0, family: int = 0, store_host: str | None = None,
                 advertise: str | None = None, transport: str | None = None) -> None: ...
    @property
    def address(self) -> str:
        """"host:port" peers reach it at."""
    def close(self) -> None:
        """Close the socket once no context uses the device."""
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: object) -> None: ...

class Request:
    """An isend/irecv/irecv_any, or a non-blocking collective (iallreduce, ...), in flight;
    holds its buffers until it completes or is cancelled; dropped while pending, it is
    cancelled."""
    @property
    def done(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> Any:
        """Point-to-point: (source, nbytes) once complete; on TimeoutError it stays pending.
        Collective: what the blocking call returns; a timeout stops the collective (None: wait
        until it ends, which its own timeout bounds)."""
    def test(self) -> bool:
        """Without blocking: True when complete (raises its error)."""
    def cancel(self) -> None:
        """Withdraw it (a collective already running is stopped); a later wait raises
        AbortedError."""
    def abort(self) -> bool:
        """End it from any thread, also while another thread waits on it (that wait raises
        AbortedError at once); True if it aborted it, False if it had completed."""

class Context:
    """One communicator of size ranks, connected through store (needed when size > 1) on
    device (None: a default one it owns). Timeouts are seconds; None is the context's default.
    secret: the job secret every connection proves (None: CGLOO_SECRET or CGLOO_SECRET_FILE;
    needs cgloo built with OpenSSL).
    Every call releases the GIL; Ctrl-C ends a long wait with KeyboardInterrupt. A context
    manager that closes it."""
    rank: int
    size: int
    def split(self, color: int, key: int = 0) -> Context | None:
        """A sub-context of the ranks that give the same color, ordered by key then rank
        (MPI_Comm_split); every rank calls it, and a negative color (UNDEFINED) takes part and
        gets None. Exchanged over this context (no store); the child has its own connections and
        this context's timeout, and may be closed before or after it."""
    timeout: float
    """The default timeout of every blocking call, in seconds (settable)."""
    def __init__(self, rank: int, size: int, store: Store | None = None,
                 device: Device | None = None, timeout: float | None = None,
                 name: str | None = None, check: bool | None = None,
                 flight_recorder: int | None = None, *,
                 secret: str | None = None, lazy: bool | None = None,
                 transport: str | None = None) -> None:
        """check: exchange a fingerprint of every collective first and raise
        InvalidArgumentError on every rank when the ranks' calls disagree (None: CGLOO_CHECK).
        flight_recorder: how many recent operations dump() shows (0: off; None:
        CGLOO_FLIGHT_RECORDER, else 64). secret: the job secret every connection proves
        (None: CGLOO_SECRET, else CGLOO_SECRET_FILE). lazy: connect each pair on its first
        message instead of the full mesh at once (None: CGLOO_LAZY=1 turns it on); split()
        children inherit it. transport: "auto" (peers on this host through shared memory, TCP
        where a pair cannot share memory), "shm" (the same, failing where it cannot), "tcp"
        (every peer over TCP); None: CGLOO_TRANSPORT, else "auto". split() children inherit
        it."""
    @property
    def connections(self) -> int:
        """How many peers have a live connection now (a lazy context: those talked to)."""
    @property
    def closed(self) -> bool: ...
    def dump(self) -> str:
        """The flight recorder: the latest operations, one a line, oldest first."""
    def last_error(self) -> str:
        """The detail of the latest error on the context."""
    def abort(self) -> None:
        """Make every waiting and later call raise AbortedError."""
    def close(self) -> None:
        """Free the context: pending requests are cancelled, other threads' calls aborted."""
    def __enter__(self) -> Self: ...
    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...

    # Point-to-point (tags 0 to 2**63 - 1).
    def send(self, buf: Buffer, dst: int, tag: int = 0, timeout: float | None = None) -> None:
        """Send buf's bytes to rank dst."""
    def recv(self, buf: Buffer, src: int, tag: int = 0, timeout: float | None = None) -> int:
        """Receive from src into buf; the message's length in bytes."""
    def recv_any(self, buf: Buffer, srcs: Sequence[int], tag: int = 0,
                 timeout: float | None = None) -> tuple[int, int]:
        """Receive from whichever of srcs sends first: (source, nbytes)."""
    def isend(self, buf: Buffer, dst: int, tag: int = 0) -> Request: ...
    def irecv(self, buf: Buffer, src: int, tag: int = 0) -> Request: ...
    def irecv_any(self, buf: Buffer, srcs: Sequence[int], tag: int = 0) -> Request: ...

    # Collectives: options keyword-only; tag below 2**47; dtype overrides the buffers'.
    @overload
    def allreduce(self, sendbuf: _B, recvbuf: None = None, op: Op | int = ..., *,
                  algorithm: str | None = None, tag: int = 0, timeout: float | None = None,
                  dtype: DType | int | None = None, reduce_fn: _ReduceFn | None = None,
                  radix: int = 0) -> _B: ...
    @overload
    def allreduce(self, sendbuf: Buffer, recvbuf: _O, op: Op | int = ..., *,
                  algorithm: str | None = None, tag: int = 0, timeout: float | None = None,
                  dtype: DType | int | None = None, reduce_fn: _ReduceFn | None = None,
                  radix: int = 0) -> _O:
        """Reduce over all ranks into recvbuf (None: in place); returns the output."""
    def allreduce_multi(self, sendbufs: Sequence[Buffer], recvbufs: _L | None = None,
                        op: Op | int = ..., *, algorithm: str | None = None, tag: int = 0,
                        timeout: float | None = None, dtype: DType | int | None = None,
                        reduce_fn: _ReduceFn | None = None, radix: int = 0) -> Any:
        """Reduce several buffers locally and across ranks into every output."""
    def reduce_scatter(self, sendbuf: Buffer, recvbuf: _O, op: Op | int = ..., *,
                       algorithm: str | None = None, tag: int = 0, timeout: float | None = None,
                       dtype: DType | int | None = None,
                       reduce_fn: _ReduceFn | None = None) -> _O:
        """Rank r gets block r of the reduction (recvbuf may be sendbuf)."""
    def reduce_scatterv(self, sendbuf: Buffer, recvbuf: _O, recvcounts: Sequence[int],
                        op: Op | int = ..., *, algorithm: str | None = None, tag: int = 0,
                        timeout: float | None = None, dtype: DType | int | None = None,
                        reduce_fn: _ReduceFn | None = None) -> _O: ...
    def allgather(self, sendbuf: Buffer, recvbuf: _O, *, algorithm: str | None = None,
                  tag: int = 0, timeout: float | None = None,
                  dtype: DType | int | None = None) -> _O:
        """Every rank's sendbuf, in rank order, into recvbuf."""
    def allgatherv(self, sendbuf: Buffer, recvbuf: _O, recvcounts: Sequence[int], *,
                   algorithm: str | None = None, tag: int = 0, timeout: float | None = None,
                   dtype: DType | int | None = None) -> _O: ...
    def broadcast(self, buf: _B, root: int = 0, *, algorithm: str | None = None, tag: int = 0,
                  timeout: float | None = None, dtype: DType | int | None = None) -> _B:
        """root's buf into every rank's buf."""
    def reduce(self, sendbuf: Buffer, recvbuf: Buffer | None = None, op: Op | int = ...,
               root: int = 0, *, algorithm: str | None = None, tag: int = 0,
               timeout: float | None = None, dtype: DType | int | None = None,
               reduce_fn: _ReduceFn | None = None) -> Any:
        """The reduction into root's recvbuf (None: into sendbuf)."""
    def gather(self, sendbuf: Buffer, recvbuf: _O | None = None, root: int = 0, *,
               algorithm: str | None = None, tag: int = 0, timeout: float | None = None,
               dtype: DType | int | None = None) -> _O | None:
        """Every rank's sendbuf into root's recvbuf (needed on the root only)."""
    def gatherv(self, sendbuf: Buffer, recvbuf: _O | None, recvcounts: Sequence[int],
                root: int = 0, *, algorithm: str | None = None, tag: int = 0,
                timeout: float | None = None, dtype: DType | int | None = None) -> _O | None: ...
    def scatter(self, sendbuf: Buffer | None, recvbuf: _O, root: int = 0, *,
                algorithm: str | None = None, tag: int = 0, timeout: float | None = None,
                dtype: DType | int | None = None) -> _O:
        """Block r of root's sendbuf into rank r's recvbuf."""
    def scatterv(self, sendbuf: Buffer | None, sendcounts: Sequence[int], recvbuf: _O,
                 root: int = 0, *, algorithm: str | None = None, tag: int = 0,
                 timeout: float | None = None, dtype: DType | int | None = None) -> _O: ...
    def alltoall(self, sendbuf: Buffer, recvbuf: _O, *, algorithm: str | None = None,
                 tag: int = 0, timeout: float | None = None,
                 dtype: DType | int | None = None) -> _O:
        """Block j of rank i's sendbuf into block i of rank j's recvbuf."""
    def alltoallv(self, sendbuf: Buffer, sendcounts: Sequence[int], recvbuf: _O,
                  recvcounts: Sequence[int], *, algorithm: str | None = None, tag: int = 0,
                  timeout: float | None = None, dtype: DType | int | None = None) -> _O: ...
    def barrier(self, *, algorithm: str | None = None, tag: int = 0,
                timeout: float | None = None) -> None:
        """Return once every rank has entered."""

    # Non-blocking collectives: the same arguments as the blocking ones; they return a Request
    # at once, whose wait() returns what the blocking call returns. Collectives of one tag run
    # in the order issued, on the context's progress thread, with the GIL released; the
    # buffers must stay untouched until they complete; a reduce_fn runs on that thread
    # (or on the thread that waits, when it runs a collective no progress thread has started).
    def iallreduce(self, sendbuf: Buffer, recvbuf: Buffer | None = None, op: Op | int = ...,
                   **options: Any) -> Request: ...
    def iallreduce_multi(self, sendbufs: Sequence[Buffer], recvbufs: Sequence[Buffer] | None = None,
                         op: Op | int = ..., **options: Any) -> Request: ...
    def ireduce_scatter(self, sendbuf: Buffer, recvbuf: Buffer, op: Op | int = ...,
                        **options: Any) -> Request: ...
    def ireduce_scatterv(self, sendbuf: Buffer, recvbuf: Buffer, recvcounts: Sequence[int],
                         op: Op | int = ..., **options: Any) -> Request: ...
    def iallgather(self, sendbuf: Buffer, recvbuf: Buffer, **options: Any) -> Request: ...
    def iallgatherv(self, sendbuf: Buffer, recvbuf: Buffer, recvcounts: Sequence[int],
                    **options: Any) -> Request: ...
    def ibroadcast(self, buf: Buffer, root: int = 0, **options: Any) -> Request: ...
    def ireduce(self, sendbuf: Buffer, recvbuf: Buffer | None = None, op: Op | int = ...,
                root: int = 0, **options: Any) -> Request: ...
    def igather(self, sendbuf: Buffer, recvbuf: Buffer | None = None, root: int = 0,
                **options: Any) -> Request: ...
    def igatherv(self, sendbuf: Buffer, recvbuf: Buffer | None, recvcounts: Sequence[int],
                 root: int = 0, **options: Any) -> Request: ...
    def iscatter(self, sendbuf: Buffer | None, recvbuf: Buffer, root: int = 0,
                 **options: Any) -> Request: ...
    def iscatterv(self, sendbuf: Buffer | None, sendcounts: Sequence[int], recvbuf: Buffer,
                  root: int = 0, **options: Any) -> Request: ...
    def ialltoall(self, sendbuf: Buffer, recvbuf: Buffer, **options: Any) -> Request: ...
    def ialltoallv(self, sendbuf: Buffer, sendcounts: Sequence[int], recvbuf: Buffer,
                   recvcounts: Sequence[int], **options: Any) -> Request: ...
    def ibarrier(self, **options: Any) -> Request: ...

def init_from_env() -> Context:
    """A connected Context from the launcher's environment (cgloo-run, torchrun, mpirun,
    MPICH/PMI, Slurm; see launch_info), CGLOO_TIMEOUT_MS, CGLOO_HOSTNAME / CGLOO_IFACE and
    CGLOO_CONTEXT_NAME."""

def algorithm_names(collective: str) -> list[str]:
    """The algorithm names of a collective ("allreduce", ...)."""

def reduce_local(inout: _B, in_: Buffer, op: Op | int = ..., *,
                 dtype: DType | int | None = None) -> _B:
    """inout[i] = inout[i] op in_[i], with the library's kernels."""

def set_log_level(level: str | int) -> None:
    """"off", "error", "warn", "info", "debug", "trace" or 0-5."""
