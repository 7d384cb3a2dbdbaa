"""The cgloo package in one process: ranks as threads over a HashStore or a custom store,
buffers and their checks, errors, requests, stores, devices, threads and the GIL."""

import array
import re
import threading
import time

import numpy as np
import pytest

import cgloo
import cgloo_testlib
from cgloo_testlib import run_threads


# ---- collectives on thread ranks ----

@pytest.mark.parametrize("n", [1, 3])
def test_every_collective_on_thread_ranks(n):
    assert run_threads(n, cgloo_testlib.check_all) == ["ok"] * n


def test_buffer_protocol_objects():
    def body(ctx):
        b = bytearray([ctx.rank + 1] * 4)
        ctx.allreduce(b)                                   # uint8 from format 'B'
        a = array.array("q", [ctx.rank] * 3)
        ctx.allreduce(a, op=cgloo.MAX)
        m = memoryview(bytearray(8)).cast("f")
        ctx.allreduce(memoryview(array.array("f", [1.0, 2.0])), m)
        c = bytearray(b"\x01\x02")
        ctx.broadcast(c, root=1)
        return bytes(b), a.tolist(), m.tolist(), bytes(c)
    for res in run_threads(2, body):
        assert res == (b"\x03" * 4, [1, 1, 1], [2.0, 4.0], b"\x01\x02")


def test_multidimensional_and_ctypes_buffers():
    import ctypes
    def body(ctx):
        x = np.ones((3, 4), np.float64)
        ctx.allreduce(x)
        c = (ctypes.c_int32 * 3)(1, 2, 3)
        ctx.allreduce(c)
        ch = (ctypes.c_char * 2)(b"a", b"b")               # format 'c': bytes as uint8
        ctx.allreduce(ch, op=cgloo.MAX)
        return x.sum(), list(c), ch.raw
    assert run_threads(2, body) == [(24.0, [2, 4, 6], b"ab")] * 2


# ---- bad buffers: clear errors before anything is sent ----

@pytest.fixture(scope="module")
def solo():
    with cgloo.Context(0, 1, timeout=5) as ctx:
        yield ctx


def test_non_contiguous_buffer(solo):
    with pytest.raises(ValueError, match="sendbuf is not C-contiguous"):
        solo.allreduce(np.arange(10, dtype=np.float32)[::2])
    with pytest.raises(ValueError, match="recvbuf is not C-contiguous"):
        solo.allreduce(np.ones(5, np.float32), np.ones((5, 2), np.float32)[:, 0])


def test_read_only_output(solo):
    ro = np.ones(4, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="recvbuf is read-only"):
        solo.allreduce(np.ones(4, np.float32), ro)
    with pytest.raises(ValueError, match="sendbuf is read-only"):
        solo.allreduce(ro)                                 # in place writes into it
    with pytest.raises(ValueError, match="buf is read-only"):
        solo.recv(b"1234", 0)
    solo.allreduce(ro, np.empty(4, np.float32))            # a read-only input is fine


def test_wrong_sizes(solo):
    with pytest.raises(ValueError, match="recvbuf has 3 elements but 4 are needed"):
        solo.allreduce(np.ones(4, np.int32), np.ones(3, np.int32))
    with pytest.raises(ValueError, match="recvbuf has 1 elements"):
        solo.allgather(np.ones(2, np.int32), np.ones(1, np.int32))
    with pytest.raises(ValueError, match="recvcounts must have 1 entries"):
        solo.allgatherv(np.ones(2, np.int32), np.ones(2, np.int32), [1, 1])
    with pytest.raises(ValueError, match="sendbuf has 1 elements but 2 are needed"):
        solo.allgatherv(np.ones(1, np.int32), np.ones(2, np.int32), [2])


def test_wrong_dtypes(solo):
    with pytest.raises(TypeError, match="sendbuf has format 'g'"):
        solo.allreduce(np.ones(4, np.longdouble))
    with pytest.raises(TypeError, match="sendbuf has format 'Zg'"):
        solo.allreduce(np.ones(4, np.clongdouble))
    with pytest.raises(TypeError, match="recvbuf has dtype float64 but sendbuf has dtype float32"):
        solo.allreduce(np.ones(4, np.float32), np.ones(4, np.float64))
    with pytest.raises(TypeError, match="sendbuf must support the buffer protocol"):
        solo.allreduce([1, 2, 3])
    with pytest.raises(TypeError, match="has 4-byte items but dtype bfloat16"):
        solo.allreduce(np.ones(4, np.float32), dtype=cgloo.bfloat16)
    with pytest.raises(TypeError, match="byte-swapped"):
        solo.allreduce(np.ones(4, ">f4"))
    with pytest.raises(TypeError, match="byte-swapped"):
        solo.allreduce(np.ones(4, ">c8"))
    with pytest.raises(ValueError, match="op 9 is not a cgloo.Op"):
        solo.allreduce(np.ones(4, np.float32), op=9)
    with pytest.raises(cgloo.InvalidArgumentError):        # the library refuses it
        solo.allreduce(np.ones(4, np.float32), op=cgloo.BXOR)


def test_every_dtype_and_bfloat16_over_bytes(solo):
    for dt in (cgloo_testlib.INT_DTYPES + cgloo_testlib.FLOAT_DTYPES
               + cgloo_testlib.COMPLEX_DTYPES + [np.bool_]):
        x = np.arange(5).astype(dt)
        assert solo.allreduce(x) is x and x.tolist() == np.arange(5).astype(dt).tolist()
    import ctypes
    flags = (ctypes.c_bool * 3)(True, False, True)          # format '<?'
    solo.allreduce(flags, op=cgloo.PRODUCT)
    assert list(flags) == [True, False, True]
    raw = bytearray(cgloo_testlib.bf16([1.0, 2.0]).tobytes())
    solo.allreduce(raw, dtype=cgloo.bfloat16)              # a byte buffer with an explicit dtype
    assert bytes(raw) == cgloo_testlib.bf16([1.0, 2.0]).tobytes()


def test_reduce_local_of_the_torch_dtypes():
    x = np.array([1 + 2j, 1e30 + 1e30j, 1j], np.complex64)
    assert cgloo.reduce_local(x, np.array([3 + 4j, 1e30 - 1e30j, 1j], np.complex64),
                              cgloo.PRODUCT) is x
    assert x[0] == -5 + 10j and x[2] == -1
    assert np.isinf(x[1].real) and np.isnan(x[1].imag)     # plain formula, as numpy's
    z = np.array([2.5 - 1j], np.complex128)
    cgloo.reduce_local(z, np.array([0.5 + 1j], np.complex128))
    assert z.tolist() == [3 + 0j]
    b = np.array([1, 2, 0, 255], np.uint8).view(np.bool_)   # any non-zero byte is true
    cgloo.reduce_local(b, np.array([2, 1, 0, 0], np.uint8).view(np.bool_), cgloo.BXOR)
    assert b.view(np.uint8).tolist() == [0, 0, 0, 1]
    b = np.array([1, 2, 0, 255], np.uint8).view(np.bool_)
    cgloo.reduce_local(b, np.array([2, 4, 0, 0], np.uint8).view(np.bool_), cgloo.BAND)
    assert b.view(np.uint8).tolist() == [1, 1, 0, 0]
    s = np.array([32767, -32768], np.int16)
    cgloo.reduce_local(s, np.array([1, -1], np.int16))
    assert s.tolist() == [-32768, 32767]                    # wraps
    u = np.array([65535, 3], np.uint16)                     # 'H' is uint16 now, not an error
    cgloo.reduce_local(u, np.array([65535, 2], np.uint16), cgloo.PRODUCT)
    assert u.tolist() == [1, 6]
    for op in (cgloo.MIN, cgloo.MAX, cgloo.BAND):
        with pytest.raises(cgloo.InvalidArgumentError,
                           match=f"op {op.name.lower()} is not defined for dtype complex128"):
            cgloo.reduce_local(z, z, op)
    with pytest.raises(cgloo.InvalidArgumentError, match="op 9 is not a cgloo.Op"):
        cgloo.reduce_local(s, s, 9)


def test_arguments(solo):
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        solo.allreduce(np.ones(1), bogus=1)
    with pytest.raises(TypeError, match="missing required argument 'sendbuf'"):
        solo.allreduce()
    with pytest.raises(TypeError, match="multiple values for argument 'op'"):
        solo.allreduce(np.ones(1), None, cgloo.SUM, op=cgloo.SUM)
    with pytest.raises(cgloo.NotSupportedError, match="no algorithm named 'bogus'"):
        solo.allreduce(np.ones(1), algorithm="bogus")
    with pytest.raises(ValueError, match="timeout must not be negative"):
        solo.barrier(timeout=-1)


# ---- errors ----

def test_timeout():
    with cgloo.Context(0, 1) as ctx:
        t0 = time.monotonic()
        with pytest.raises(cgloo.TimeoutError) as e:
            ctx.recv(bytearray(4), 0, tag=1, timeout=0.2)
        assert time.monotonic() - t0 < 2
        assert isinstance(e.value, TimeoutError) and e.value.code == "ETIMEDOUT"
        assert e.value.status == -3 and "timed out" in e.value.detail
        assert "timed out" in ctx.last_error()


def test_collective_timeout_names_the_silent_peer():
    def body(ctx):
        if ctx.rank == 0:
            with pytest.raises(cgloo.TimeoutError) as e:
                ctx.allreduce(np.ones(4), timeout=0.3)
            ctx.send(b"x", 1)                              # tell rank 1 it may go
            return e.value.rank
        ctx.recv(bytearray(1), 0)
        return None
    assert run_threads(2, body)[0] == 1


def test_check_mode_and_dump():
    store = cgloo.HashStore()
    errors = [None, None]
    dumps = [None, None]

    def rank(r):
        with cgloo.Context(r, 2, store, timeout=10, check=True, flight_recorder=8) as ctx:
            ctx.allreduce(np.ones(4, np.float32))
            try:
                ctx.allreduce(np.ones(4 if r == 0 else 2, np.float32))
            except cgloo.InvalidArgumentError as e:
                errors[r] = e.detail
            dumps[r] = ctx.dump()

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for dump in dumps:  # checked here: an assertion in a thread would only be a warning
        # the algorithm is the selector's: shm between threads of one process by default
        assert re.search(r"#1 allreduce\(\w+\) tag 0 count 4 float32", dump), dump
        assert "failed: EINVAL" in dump, dump
    for detail in errors:
        assert "check: allreduce call 2: ranks disagree: rank 0: allreduce count 4" in detail
    with cgloo.Context(0, 1, flight_recorder=0) as ctx:
        with pytest.raises(cgloo.NotSupportedError):
            ctx.dump()


def test_peer_rank_parsing():
    parse = cgloo._peer_rank
    assert parse("rank 0: allreduce(ring): step 1: receive from rank 2 failed: x") == 2
    assert parse("rank 1: peer 3 (127.0.0.1:5): connection reset") == 3
    assert parse("rank 1: send to failed peer 0 (127.0.0.1:5)") == 0
    assert parse("rank 2: could not connect to rank 0 at 127.0.0.1:40113") == 0
    assert parse("rank 1: connecting timed out") is None and parse("") is None


def test_exception_hierarchy():
    assert issubclass(cgloo.TimeoutError, TimeoutError)
    assert issubclass(cgloo.ProtocolError, cgloo.PeerError)
    assert issubclass(cgloo.InvalidArgumentError, ValueError)
    assert issubclass(cgloo.ConnectionError, ConnectionError)
    for cls in (cgloo.AbortedError, cgloo.StoreError, cgloo.TruncatedError,
                cgloo.NotSupportedError):
        assert issubclass(cls, cgloo.Error)


def test_truncated_and_bad_rank():
    with cgloo.Context(0, 1) as ctx:
        ctx.send(b"12345678", 0)
        with pytest.raises(cgloo.TruncatedError):
            ctx.recv(bytearray(4), 0)
        with pytest.raises(cgloo.InvalidArgumentError, match="invalid argument"):
            ctx.send(b"1", 5)
    with pytest.raises(cgloo.InvalidArgumentError):
        cgloo.Context(3, 2, cgloo.HashStore())
    with pytest.raises(ValueError, match="a store is needed"):
        cgloo.Context(0, 2)


def test_abort_wakes_a_waiter():
    with cgloo.Context(0, 1, timeout=10) as ctx:
        err = []
        def wait():
            try:
                ctx.recv(bytearray(4), 0)
            except cgloo.Error as e:
                err.append(e)
        t = threading.Thread(target=wait)
        t.start()
        time.sleep(0.1)  # not for correctness: an abort before the call fails it too
        ctx.abort()
        t.join(5)
        assert isinstance(err[0], cgloo.AbortedError)


def test_close_while_a_thread_waits():
    ctx = cgloo.Context(0, 1, timeout=10)
    err = []
    started = threading.Event()

    def wait():
        started.set()
        try:
            ctx.recv(bytearray(4), 0)
        except (cgloo.AbortedError, ValueError) as e:      # aborted inside, or closed before
            err.append(e)
    t = threading.Thread(target=wait)
    t.start()
    started.wait()
    time.sleep(0.1)  # not for correctness: so that close() usually finds the call waiting
    ctx.close()
    t.join(5)
    assert err and ctx.closed and not t.is_alive()
    with pytest.raises(ValueError, match="the context is closed"):
        ctx.barrier()


# ---- requests ----

def test_requests_wait_test_cancel():
    with cgloo.Context(0, 1) as ctx:
        buf = np.zeros(3, np.int32)
        r = ctx.irecv(buf, 0, tag=4)
        assert not r.test() and not r.done
        with pytest.raises(cgloo.TimeoutError):
            r.wait(timeout=0.05)                           # stays pending
        s = ctx.isend(np.array([7, 8, 9], np.int32), 0, tag=4)
        assert r.wait() == (0, 12) and r.done
        assert s.wait() == (0, 12)
        assert buf.tolist() == [7, 8, 9]
        c = ctx.irecv(bytearray(4), 0, tag=5)
        c.cancel()
        assert c.done
        with pytest.raises(cgloo.AbortedError, match="cancelled"):
            c.wait()
        ctx.irecv(bytearray(4), 0, tag=6)                  # dropped while pending: cancelled
        s = ctx.isend(b"late", 0, tag=6)
        s.wait()
        n = ctx.irecv_any(bytearray(4), [0], tag=6)
        assert n.wait() == (0, 4)
        p = ctx.irecv(bytearray(4), 0, tag=9)
    with pytest.raises(cgloo.AbortedError, match="context was closed"):
        p.wait()


def test_request_abort_from_another_thread():
    with cgloo.Context(0, 1) as ctx:
        buf = bytearray(b"\xaa" * 8)
        r = ctx.irecv(buf, 0, tag=11)
        got = []

        def waiter():
            try:
                r.wait(timeout=20)
            except cgloo.AbortedError as e:
                got.append(e)

        t = threading.Thread(target=waiter)
        t.start()
        time.sleep(0.05)
        assert r.abort() is True
        t.join(5)
        assert not t.is_alive() and len(got) == 1 and "aborted" in str(got[0])
        assert r.done and r.abort() is False
        ctx.send(b"12345678", 0, tag=11)         # goes to the next receive, not the aborted one
        other = bytearray(8)
        assert ctx.recv(other, 0, tag=11) == 8 and other == b"12345678"
        assert buf == b"\xaa" * 8
        n = ctx.irecv(bytearray(4), 0, tag=12)     # nobody waits yet: the next wait raises
        assert n.abort() is True
        with pytest.raises(cgloo.AbortedError):
            n.wait()


def test_request_holds_the_buffer():
    with cgloo.Context(0, 1) as ctx:
        b = bytearray(4)
        r = ctx.irecv(b, 0)
        with pytest.raises(BufferError):
            b.extend(b"no")                                # exported: cannot be resized
        ctx.send(b"abcd", 0)
        r.wait()
        b.extend(b"ok")
        assert bytes(b) == b"abcdok"


# ---- custom reduction ----

def test_reduce_fn():
    def body(ctx):
        def absmax(a, b):
            assert isinstance(a, np.ndarray) and a.dtype == np.float32
            np.copyto(a, np.where(np.abs(b) > np.abs(a), b, a))
        x = np.array([1, -5, 3], np.float32) * (ctx.rank + 1)
        ctx.allreduce(x, reduce_fn=absmax)
        return x.tolist()
    assert run_threads(2, body) == [[2.0, -10.0, 6.0]] * 2


def test_reduce_fn_exception_is_raised_after_the_collective():
    def body(ctx):
        def bad(a, b):
            raise ZeroDivisionError("in reduce_fn")
        with pytest.raises(ZeroDivisionError, match="in reduce_fn"):
            ctx.allreduce(np.ones(8, np.int64), reduce_fn=bad)
        ctx.barrier()                                      # the context still works
        return True
    assert run_threads(2, body) == [True, True]


# ---- threads and the GIL ----

def test_threads_on_one_context_with_distinct_tags():
    def body(ctx):
        errors = []
        def worker(t):
            try:
                for i in range(20):
                    x = np.full(16, ctx.rank + t + i, np.int64)
                    ctx.allreduce(x, tag=t + 1)
                    assert (x == 2 * (t + i) + 1).all()
            except BaseException as e:
                errors.append(e)
        ws = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
        for w in ws:
            w.start()
        for w in ws:
            w.join()
        if errors:
            raise errors[0]
        return True
    assert run_threads(2, body) == [True, True]


def test_gil_is_released_while_a_call_blocks():
    with cgloo.Context(0, 1, timeout=10) as ctx:
        got = []
        t = threading.Thread(target=lambda: got.append(ctx.recv(bytearray(8), 0, tag=3)))
        t.start()
        # The receiver holds no GIL while it waits: this thread runs Python meanwhile.
        count = 0
        deadline = time.monotonic() + 0.2
        while time.monotonic() < deadline:
            count += 1
        assert t.is_alive() and count > 1000
        ctx.send(b"12345678", 0, tag=3)
        t.join(5)
        assert got == [8]


# ---- stores ----

class DictStore:
    """A custom store's Python side: a dict under a condition variable."""

    def __init__(self):
        self.d = {}
        self.cv = threading.Condition()
        self.calls = 0

    def set(self, key, value):
        with self.cv:
            self.calls += 1
            self.d[key] = bytes(value)
            self.cv.notify_all()

    def get(self, key, timeout):
        with self.cv:
            if not self.cv.wait_for(lambda: key in self.d, timeout):
                raise KeyError(key)
            return self.d[key]

    def wait(self, keys, timeout):
        with self.cv:
            return self.cv.wait_for(lambda: all(k in self.d for k in keys), timeout)

    def add(self, key, delta):
        with self.cv:
            v = int(self.d.get(key, b"0")) + delta
            self.d[key] = str(v).encode()
            self.cv.notify_all()
            return v

    def delete(self, key):
        with self.cv:
            self.d.pop(key, None)


def test_custom_store_connects_ranks():
    obj = DictStore()
    with cgloo.CustomStore(obj) as store:
        assert run_threads(3, lambda ctx: ctx.allreduce(np.ones(2))[0], store=store) == [3.0] * 3
        assert obj.calls >= 3
        store.set("k", b"v")
        assert store.get("k") == b"v" and store.add("n", 5) == 5
        store.delete("k")
        with pytest.raises(cgloo.TimeoutError):
            store.get("k", timeout=0.1)


def test_custom_store_exception_is_the_cause():
    class Broken(DictStore):
        def set(self, key, value):
            raise RuntimeError("backend down")
    with pytest.raises(cgloo.StoreError) as e:
        cgloo.CustomStore(Broken()).set("k", b"v")
    assert isinstance(e.value.__cause__, RuntimeError)
    with pytest.raises(TypeError, match="has no method set"):
        cgloo.CustomStore(object())


def test_store_operations(tmp_path):
    with cgloo.StoreServer() as server:
        assert server.url == f"tcp://127.0.0.1:{server.port}"
        stores = [cgloo.HashStore(), cgloo.FileStore(str(tmp_path)), cgloo.open_store("hash:"),
                  cgloo.TCPStore("127.0.0.1", server.port), cgloo.open_store(server.url)]
        stores.append(cgloo.PrefixStore("p", stores[0]))
        for i, s in enumerate(stores):
            s.set("a", b"1")
            s.set(b"b", bytearray(b"22"))
            assert s.get("a") == b"1" and s.multi_get(["a", "b"]) == [b"1", b"22"]
            assert s.check(["a", "b"]) and not s.check(["a", "zz"])
            s.wait(["a", "b"], timeout=1)
            assert s.add(f"c{i}", 2) == 2 and s.add(f"c{i}", -5) == -3
            s.delete("a")
            with pytest.raises(cgloo.TimeoutError):
                s.wait(["a"], timeout=0.05)
        stores[0].close()                                  # the prefix store keeps it alive
        assert stores[-1].get("b") == b"22"
        with pytest.raises(ValueError, match="the store is closed"):
            stores[0].get("b")
        for s in stores:
            s.close()
    with pytest.raises(TypeError, match="abstract"):
        cgloo.Store()


def test_store_get_waits_for_another_thread():
    s = cgloo.HashStore()
    t = threading.Timer(0.1, s.set, args=("late", b"x"))
    t.start()
    assert s.get("late", timeout=5) == b"x"
    t.join()


# ---- devices and contexts ----

def test_device_and_context_attributes():
    with cgloo.Device(hostname="127.0.0.1") as dev:
        assert dev.address.startswith("127.0.0.1:") and dev.hostname == "127.0.0.1"
        store = cgloo.HashStore()
        ctxs = [None, None]
        def make(r):
            ctxs[r] = cgloo.Context(r, 2, store, device=dev, timeout=3, name="dev-test")
        ts = [threading.Thread(target=make, args=(r,)) for r in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert [c.rank for c in ctxs] == [0, 1] and ctxs[0].size == 2
        assert ctxs[0].timeout == 3.0
        ctxs[0].timeout = 1.5
        assert ctxs[0].timeout == 1.5
        dev.close()                                        # deferred: contexts still use it
        for c in ctxs:
            c.close()
    with pytest.raises(cgloo.ConnectionError):
        cgloo.Device(iface="no-such-iface0")


def test_setup_errors_carry_the_library_detail():
    with pytest.raises(cgloo.ConnectionError, match="this host has: .*lo 127.0.0.1") as e:
        cgloo.Device(iface="no-such-iface0,198.51.100.0/24")
    assert "iface='no-such-iface0,198.51.100.0/24'" in e.value.detail
    with pytest.raises(cgloo.InvalidArgumentError, match="must come first"):
        cgloo.Device(iface="lo,^eth0")
    with pytest.raises(cgloo.InvalidArgumentError, match="not a store URL"):
        cgloo.open_store("bogus://x")
    with pytest.raises(cgloo.Error, match="no TCP store answered at 127.0.0.1 port 1 "):
        cgloo.TCPStore("127.0.0.1", 1, timeout=0.2)
    with pytest.raises(cgloo.InvalidArgumentError, match="rank 3 of size 2"):
        cgloo.Context(3, 2, cgloo.HashStore())


def test_device_subnet_and_advertised_address():
    with cgloo.Device(iface="127.0.0.0/8", family=4) as dev:
        assert dev.address.startswith("127.0.0.1:")
    with cgloo.Device(hostname="127.0.0.1", advertise="203.0.113.5:77") as dev:
        assert dev.address == "203.0.113.5:77"


def test_module_functions():
    assert "ring" in cgloo.algorithm_names("allreduce")
    with pytest.raises(ValueError):
        cgloo.algorithm_names("nope")
    x = np.array([1, 5], np.int32)
    assert cgloo.reduce_local(x, np.array([3, 2], np.int32), cgloo.MAX) is x
    assert x.tolist() == [3, 5]
    with pytest.raises(cgloo.InvalidArgumentError):
        cgloo.reduce_local(np.ones(2), np.ones(2), cgloo.BAND)
    cgloo.set_log_level("off")
    assert int(cgloo.DType.FLOAT64) == 9 and cgloo.bfloat16 == 7 and cgloo.BXOR == 6
    assert [int(d) for d in (cgloo.bool_, cgloo.int16, cgloo.uint16, cgloo.complex64,
                             cgloo.complex128)] == [10, 11, 12, 13, 14]
    assert cgloo.DType.COMPLEX128 is cgloo.complex128 and len(cgloo.DType) == 15
    assert cgloo.__version__.count(".") == 2


def test_init_from_env(monkeypatch):
    monkeypatch.setenv("CGLOO_RANK", "0")
    monkeypatch.setenv("CGLOO_SIZE", "1")
    monkeypatch.setenv("CGLOO_TIMEOUT_MS", "2500")
    with cgloo.init_from_env() as ctx:
        assert (ctx.rank, ctx.size, ctx.timeout) == (0, 1, 2.5)
    monkeypatch.setenv("CGLOO_SIZE", "2")
    monkeypatch.delenv("CGLOO_STORE", raising=False)
    with pytest.raises(cgloo.InvalidArgumentError, match="CGLOO_STORE"):
        cgloo.init_from_env()
    monkeypatch.setenv("CGLOO_RANK", "x")
    with pytest.raises(cgloo.InvalidArgumentError, match="CGLOO_RANK"):
        cgloo.init_from_env()


_LAUNCHER_VARS = ["CGLOO_RANK", "CGLOO_SIZE", "CGLOO_STORE", "RANK", "WORLD_SIZE",
                  "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_RANK", "PMI_SIZE",
                  "SLURM_PROCID", "SLURM_NTASKS", "SLURM_STEP_NODELIST", "CGLOO_STORE_PORT"]


def test_launch_info_reads_other_launchers(monkeypatch):
    """The library's reading of the launchers, as init_from_env uses it."""
    for name in _LAUNCHER_VARS:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(cgloo.InvalidArgumentError, match="no launcher"):
        cgloo.launch_info()
    for name, value in {"SLURM_PROCID": "1", "SLURM_NTASKS": "3", "SLURM_LOCALID": "1",
                        "SLURM_JOB_ID": "12", "SLURM_STEP_ID": "0",
                        "SLURM_JOB_NODELIST": "node[01-04,07]"}.items():
        monkeypatch.setenv(name, value)
    info = cgloo.launch_info()
    assert (info["launcher"], info["rank"], info["size"], info["local_rank"]) == ("slurm", 1, 3, 1)
    assert info["store"].startswith("tcp://node01:") and info["prefix"] == "cgloo/12.0"
    assert info["serve_port"] == 0
    monkeypatch.setenv("SLURM_PROCID", "0")
    assert 20000 <= cgloo.launch_info()["serve_port"] < 30000


def test_init_from_env_serves_on_rank_0(monkeypatch):
    """Two ranks as threads under Open MPI's variables: rank 0 serves the store, both connect."""
    for name in _LAUNCHER_VARS:
        monkeypatch.delenv(name, raising=False)
    with cgloo.StoreServer() as probe:
        port = probe.port  # free a moment ago
    monkeypatch.setenv("CGLOO_STORE_PORT", str(port))
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "2")
    monkeypatch.setenv("OMPI_MCA_ess_base_jobid", "77")
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "0")
    zero = cgloo.open_launch_store(timeout=5)
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "1")
    one = cgloo.open_launch_store(timeout=5)
    zero.set("k", b"from 0")
    assert one.get("k", timeout=5) == b"from 0"
    with cgloo.TCPStore("127.0.0.1", port) as plain:
        assert plain.get("cgloo/77/k", timeout=5) == b"from 0"
    one.close()
    zero.close()


def _secret_supported():
    try:
        cgloo.Context(0, 1, secret="probe").close()
        return True
    except cgloo.Error as e:
        if e.code == "ENOTSUP":
            return False
        raise


def test_secret_keyword():
    if not _secret_supported():
        pytest.skip("install libssl-dev")
    store = cgloo.HashStore()
    secrets = {0: "shared-secret", 1: "shared-secret"}
    results, errors = [None, None], [None, None]

    def rank(r):
        try:
            # over TCP: shared memory checks the user, not the secret
            with cgloo.Context(r, 2, store, timeout=10, secret=secrets[r], transport="tcp") as ctx:
                results[r] = ctx.allreduce(np.array([r + 1.0]))[0]
        except cgloo.Error as e:
            errors[r] = e

    def run():
        threads = [threading.Thread(target=rank, args=(r,)) for r in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    run()
    assert results == [3.0, 3.0] and errors == [None, None]
    secrets[1] = "another-secret"
    results, errors[:] = [None, None], [None, None]
    run()
    for e in errors:
        assert e is not None and e.code == "EPROTO" and "CGLOO_SECRET?" in e.detail
        assert "shared-secret" not in e.detail and "another-secret" not in e.detail
    with pytest.raises(cgloo.Error):
        cgloo.Context(0, 1, secret="")
