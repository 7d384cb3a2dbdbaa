"""cgloo across real processes: every collective on 2, 3 and 4 ranks started by cgloo-run and
by multiprocessing (over a StoreServer's TCPStore and a FileStore), a peer killed mid-run,
Ctrl-C in a blocked receive, and the package without numpy (complex blocks as their parts)."""

import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest

import cgloo
import cgloo_testlib

RUN = cgloo_testlib.cgloo_run_path()


@pytest.mark.skipif(RUN is None, reason="cgloo-run not built (CGLOO_RUN_PATH)")
@pytest.mark.parametrize("n", [2, 3, 4])
def test_every_collective_under_cgloo_run(n):
    p = subprocess.run([RUN, "-n", str(n), "--tag", sys.executable,
                        cgloo_testlib.RANK_PROGRAM, "all"],
                       env=cgloo_testlib.child_env(), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr


def _mp_rank(rank, size, where, queue):
    """A multiprocessing rank: a context over a TCPStore (where = url) or a FileStore."""
    try:
        if where.startswith("tcp://"):
            store = cgloo.open_store(where)
        else:
            store = cgloo.FileStore(where)
        with store, cgloo.Context(rank, size, store, timeout=30) as ctx:
            queue.put((rank, cgloo_testlib.check_all(ctx)))
    except BaseException as e:
        queue.put((rank, repr(e)))


def _run_mp(size, where):
    mp = multiprocessing.get_context("spawn")
    queue = mp.Queue()
    procs = [mp.Process(target=_mp_rank, args=(r, size, where, queue)) for r in range(size)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(30)
    assert results == {r: "ok" for r in range(size)}, results


@pytest.mark.parametrize("n", [2, 3, 4])
def test_every_collective_under_multiprocessing_tcp_store(n):
    with cgloo.StoreServer() as server:
        _run_mp(n, server.url)


def test_every_collective_under_multiprocessing_file_store(tmp_path):
    _run_mp(3, str(tmp_path / "store"))


@pytest.mark.skipif(RUN is None, reason="cgloo-run not built (CGLOO_RUN_PATH)")
def test_dead_peer_is_named():
    p = subprocess.run([RUN, "-n", "2", "--grace-ms", "20000", sys.executable,
                        cgloo_testlib.RANK_PROGRAM, "dead"],
                       env=cgloo_testlib.child_env(), capture_output=True, text=True, timeout=60)
    # Rank 1 was killed (the launcher reports that); rank 0 saw PeerError naming rank 1.
    assert "PeerError rank=1 code=EPEER" in p.stdout, p.stdout + p.stderr


BLOCKED = """
import sys, time, cgloo
ctx = cgloo.Context(0, 1, timeout=30)
t0 = time.monotonic()
try:
    print("ready", flush=True)
    {call}
except KeyboardInterrupt:
    print("interrupted %.3f" % (time.monotonic() - t0), flush=True)
    sys.exit(0)
sys.exit(1)
"""


@pytest.mark.parametrize("call", [
    "ctx.recv(bytearray(4), 0)",
    "ctx.barrier(); ctx.allreduce(bytearray(4)); ctx.recv(bytearray(4), 0, tag=5)",
    "cgloo.HashStore().get('never', timeout=30)",
])
def test_ctrl_c_ends_a_blocked_call(call):
    p = subprocess.Popen([sys.executable, "-c", BLOCKED.format(call=call)],
                         env=cgloo_testlib.child_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        time.sleep(0.3)  # not for correctness: so that the signal finds the call waiting
        sent = time.monotonic()
        p.send_signal(signal.SIGINT)
        out = p.stdout.read()
        p.wait(10)
        assert p.returncode == 0 and out.startswith("interrupted"), out
        assert time.monotonic() - sent < 1.0
    finally:
        p.kill()
        p.wait()


NO_NUMPY = """
import sys
sys.modules['numpy'] = None
import array, cgloo
with cgloo.Context(0, 1) as ctx:
    a = array.array('i', [1, 2, 3])
    ctx.allreduce(a)
    out = array.array('d', [0.0] * 3)
    ctx.allreduce(array.array('d', [1.5, 2.5, 3.5]), out)
    def fn(x, y):
        assert isinstance(x, memoryview) and x.format == 'i', x.format
        for i in range(len(x)):
            x[i] = max(x[i], y[i])
    ctx.allreduce(a, reduce_fn=fn)
    b = bytearray(b'xyz')
    ctx.broadcast(b)
    print(list(a), list(out), bytes(b))
"""


def test_works_without_numpy():
    p = cgloo_testlib.run_python(NO_NUMPY)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[1, 2, 3] [1.5, 2.5, 3.5] b'xyz'"


NO_NUMPY_COMPLEX = """
import struct, sys, threading
sys.modules['numpy'] = None
import cgloo
store, out = cgloo.HashStore(), [None, None]
def mul(x, y):                                   # a complex block as its parts, re and im
    assert isinstance(x, memoryview) and x.format == 'f' and len(x) == 4, (x.format, len(x))
    for k in range(0, len(x), 2):
        a, b, c, d = x[k], x[k + 1], y[k], y[k + 1]
        x[k], x[k + 1] = a * c - b * d, a * d + b * c
def rank(r):
    with cgloo.Context(r, 2, store, timeout=10) as ctx:
        buf = bytearray(struct.pack('4f', 1 + r, 2, 3, -r))  # (1 + r) + 2i, 3 - ri
        ctx.allreduce(buf, dtype=cgloo.complex64, reduce_fn=mul)
        out[r] = struct.unpack('4f', buf)
ts = [threading.Thread(target=rank, args=(r,)) for r in range(2)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print(out[0] == out[1], out[0])
"""


def test_complex_reduce_fn_without_numpy():
    p = cgloo_testlib.run_python(NO_NUMPY_COMPLEX)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "True (-2.0, 6.0, 9.0, -3.0)"
