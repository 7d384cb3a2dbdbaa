"""pygloo.rendezvous: contexts and the stores their ranks meet through, over cgloo.

Store keys. ``Context.connectFullMesh`` runs cgloo's rendezvous, which writes one key per rank,
``cgloo/addr/<rank>`` (under the prefix of a PrefixStore, ``<prefix>/cgloo/addr/<rank>``),
holding that rank's address, and removes it once connected (a run that dies during its
rendezvous leaves it, and cgloo ignores it once it expires). Gloo wrote ``<rank>`` (older versions ``rank_<rank>``) instead,
and pygloo programs delete those names after a run. So that such a clean-up still cleans, the
stores' ``delKey``/``delKeys`` also delete cgloo's key wherever they are given one of Gloo's
names: a key whose last ``/``-separated part is ``<i>`` or ``rank_<i>`` removes
``.../cgloo/addr/<i>`` as well. Deleting an absent key succeeds.
"""

import datetime as _datetime
import os as _os
import re as _re
from urllib.parse import quote as _quote

import cgloo as _cgloo

__all__ = [
    "Context",
    "Store",
    "FileStore",
    "HashStore",
    "PrefixStore",
    "RedisStore",
    "CustomStore",
]

# The name cgloo's rendezvous scopes its keys with (cgloo.Context's default name).
_CONTEXT_NAME = "cgloo"
_GLOO_RANK_KEY = _re.compile(r"^(.*/)?(?:rank_)?(\d+)$")


def _cgloo_keys(key):
    """The keys a delete of key removes: key itself, and cgloo's rendezvous key when key is
    one of the names Gloo's rendezvous wrote."""
    match = _GLOO_RANK_KEY.match(key)
    if not match:
        return [key]
    return [key, f"{match.group(1) or ''}{_CONTEXT_NAME}/addr/{int(match.group(2))}"]


def _value_bytes(value):
    """A store value as bytes: bytes-like objects as they are, str as UTF-8, and a list of
    small ints or one-character strings (how pybind11 passed Gloo's vector<char>)."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (list, tuple)):
        return bytes(ord(v) if isinstance(v, str) else v & 0xFF for v in value)
    return bytes(value)


class Store:
    """A key/value store the ranks of a context meet through (the base of the stores here).

    It wraps a cgloo.Store; any object with a ``_store`` attribute holding one may be given to
    Context.connectFullMesh.
    """

    def __init__(self, store):
        """Wrap a cgloo.Store (the constructors of the subclasses make it)."""
        self._store = store

    def set(self, key, value):
        """set stores value (bytes, str, or a list of byte values) under key."""
        self._store.set(key, _value_bytes(value))

    def get(self, key):
        """get waits for key (up to 30 s) and returns its value as bytes."""
        return self._store.get(key)

    def wait(self, keys):
        """wait returns once every key in keys exists (up to 30 s)."""
        self._store.wait(list(keys))

    def delKey(self, key):
        """delKey deletes key (and cgloo's rendezvous key for Gloo's names, see the module's
        description); deleting an absent key succeeds."""
        for k in _cgloo_keys(key):
            self._store.delete(k)

    def delKeys(self, keys):
        """delKeys deletes every key of keys as delKey does."""
        for key in keys:
            self.delKey(key)


class FileStore(Store):
    """A store kept as files in a directory that every rank can read (local or NFS).

    The directory is created if missing. Under cgloo-run the keys are scoped to the run
    (CGLOO_RUN_ID), so a directory reused by later runs never hands out stale addresses.
    """

    def __init__(self, path):
        super().__init__(_cgloo.FileStore(str(path)))


class HashStore(Store):
    """An in-process store, for ranks that are threads of one process."""

    def __init__(self):
        super().__init__(_cgloo.HashStore())


class PrefixStore(Store):
    """A view of another store that puts ``<prefix>/`` in front of every key."""

    def __init__(self, prefix, store):
        inner = getattr(store, "_store", store)
        super().__init__(_cgloo.PrefixStore(str(prefix), inner))
        self._inner = store  # the wrapped store must outlive this one


_REDIS_MISSING = (
    "cgloo was built without its Redis store: install libhiredis-dev (Debian) and rebuild cgloo; "
    "meanwhile FileStore on a shared directory, HashStore, or CustomStore over your own "
    "key/value service work"
)


class _NeedsPassword:
    """Stands in for the store of a RedisStore whose server wants a password, until
    authorize gives one: every call raises the server's refusal."""

    def __init__(self, error):
        self._error = error

    def close(self):
        pass

    def __getattr__(self, name):
        def refuse(*args, **kwargs):
            raise self._error

        return refuse


class RedisStore(Store):
    """A store on a Redis server at host:port, through cgloo's ``redis://`` store: keys under
    CGLOO_RUN_ID when it is set, waits that block in the server rather than poll it.

    As with Gloo's, a server that wants a password is opened with the constructor and then
    authorize(password); until then every call raises the server's refusal (StoreError). A
    cgloo built without hiredis makes the constructor raise NotImplementedError saying what to
    install.
    """

    def __init__(self, host, port):
        self._host, self._port = str(host), int(port)
        try:
            store = self._open("")
        except _cgloo.StoreError as e:
            if "NOAUTH" not in e.detail:
                raise
            store = _NeedsPassword(e)
        super().__init__(store)

    def _open(self, password):
        """Open cgloo's store for redis://[:password@]host:port (the password %-encoded)."""
        auth = f":{_quote(password, safe='')}@" if password else ""
        host = f"[{self._host}]" if ":" in self._host else self._host
        try:
            return _cgloo.open_store(f"redis://{auth}{host}:{self._port}")
        except _cgloo.NotSupportedError as e:
            message = f"pygloo.rendezvous.RedisStore: {_REDIS_MISSING} ({e})"
            raise NotImplementedError(message) from e

    def authorize(self, password):
        """authorize reconnects with password (Redis AUTH)."""
        store = self._open(str(password))
        self._store.close()
        self._store = store


class _PyglooStoreAdapter:
    """The set/get/wait/add/delete object cgloo.CustomStore calls, over a pygloo-style object
    that has set(key, bytes), get(key) -> bytes, wait(keys) and del_keys(keys).

    Such objects have no timeouts and no atomic add: get waits for the key first (a get of an
    absent key may return None), and add is a read-modify-write that is only safe from one
    process at a time (cgloo's rendezvous never calls add).
    """

    def __init__(self, obj):
        self._obj = obj

    def set(self, key, value):
        self._obj.set(key, bytes(value))

    def get(self, key, timeout=None):
        self._obj.wait([key])
        value = self._obj.get(key)
        if value is None:
            raise KeyError(key)
        return _value_bytes(value)

    def wait(self, keys, timeout=None):
        self._obj.wait(list(keys))

    def add(self, key, delta):
        value = self._obj.get(key)
        total = (int(_value_bytes(value)) if value else 0) + delta
        self._obj.set(key, str(total).encode())
        return total

    def delete(self, key):
        self._obj.del_keys([key])


class CustomStore(Store):
    """A store over any Python object with set(key, bytes), get(key) -> bytes, wait(keys) and
    del_keys(keys), as pygloo's CustomStore (for example a store kept in Ray's GCS).

    The object's methods are called from the thread that makes a call on the context, with the
    GIL held. Its wait has no timeout, so a rank that never arrives blocks the rendezvous for
    as long as the object's wait does.
    """

    def __init__(self, obj):
        for name in ("set", "get", "wait", "del_keys"):
            if not callable(getattr(obj, name, None)):
                raise TypeError(f"CustomStore: {obj!r} has no {name}() method")
        super().__init__(_cgloo.CustomStore(_PyglooStoreAdapter(obj)))
        self._obj = obj

    def delKeys(self, keys):
        """delKeys deletes keys through the object's del_keys, in one call (cgloo's rendezvous
        keys added for Gloo's names, see the module's description)."""
        self._obj.del_keys([k for key in keys for k in _cgloo_keys(key)])


def _milliseconds(timeout):
    """A timeout given as milliseconds (int or float) or a datetime.timedelta, in ms."""
    if isinstance(timeout, _datetime.timedelta):
        ms = timeout.total_seconds() * 1000.0
    elif isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        ms = float(timeout)
    else:
        raise TypeError(f"timeout must be milliseconds or a datetime.timedelta, not {timeout!r}")
    if not ms > 0:
        raise ValueError(f"timeout must be above 0 ms, got {timeout!r}")
    return ms


class Context:
    """A communicator of size ranks, of which this process is rank.

    Made unconnected, as in pygloo; connectFullMesh(store, device) connects it to every other
    rank. The collectives of the pygloo module take it as their first argument.
    """

    def __init__(self, rank, size, base=2):
        rank, size = int(rank), int(size)
        if size < 1 or not 0 <= rank < size:
            raise ValueError(f"Context: need 0 <= rank < size, got rank {rank}, size {size}")
        self._rank, self._size = rank, size
        self.base = int(base)  # Gloo's tree arity; cgloo's algorithms do not use it
        self._timeout_ms = None  # None: cgloo's default (CGLOO_TIMEOUT_MS, else 30 s)
        self._ctx = None
        self._keep = ()  # the store and device, which must outlive the connection

    @property
    def rank(self):
        """This process's rank, from 0 to size - 1."""
        return self._rank

    @property
    def size(self):
        """The number of ranks."""
        return self._size

    def setTimeout(self, timeout):
        """setTimeout sets the timeout of every later blocking call, in milliseconds (a
        datetime.timedelta is taken too)."""
        ms = _milliseconds(timeout)
        if self._ctx is not None:
            self._ctx.timeout = ms / 1000.0
        self._timeout_ms = ms

    def getTimeout(self):
        """getTimeout returns the timeout of blocking calls in milliseconds."""
        if self._ctx is not None:
            return int(round(self._ctx.timeout * 1000.0))
        if self._timeout_ms is not None:
            return int(round(self._timeout_ms))
        return _default_timeout_ms()

    def connectFullMesh(self, store, device):
        """connectFullMesh publishes this rank's address in store, reads every peer's and
        connects to each (blocks until all are connected or the timeout passes).

        store is a pygloo store (or a cgloo.Store), device the result of
        pygloo.transport.tcp.CreateDevice.
        """
        if self._ctx is not None:
            raise RuntimeError("connectFullMesh: the context is already connected")
        inner = getattr(store, "_store", store)
        timeout = None if self._timeout_ms is None else self._timeout_ms / 1000.0
        self._ctx = _cgloo.Context(self._rank, self._size, inner, device, timeout=timeout)
        self._keep = (store, device)

    def closeConnections(self):
        """closeConnections closes the connections to every peer; collectives on the context
        fail afterwards until it is connected again."""
        ctx, self._ctx = self._ctx, None
        if ctx is not None:
            ctx.close()
        self._keep = ()

    def __repr__(self):
        state = "connected" if self._ctx is not None else "not connected"
        return f"<pygloo.rendezvous.Context rank {self._rank} of {self._size}, {state}>"


def _default_timeout_ms():
    """cgloo's default timeout of a context: CGLOO_TIMEOUT_MS, else 30000."""
    try:
        ms = int(_os.environ.get("CGLOO_TIMEOUT_MS", ""))
    except ValueError:
        return 30000
    return ms if ms > 0 else 30000
