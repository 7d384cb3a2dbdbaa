"""Lazy connections from Python: the lazy keyword and CGLOO_LAZY=1, connections opened only
between the ranks that talk, and split() children that inherit lazy mode. Over TCP
(transport="tcp"): peers on one host that share memory connect at once, lazy or not; the last
test checks that."""

import subprocess
import sys
import threading

import numpy as np
import pytest

import cgloo
from cgloo_testlib import child_env, run_threads


def lazy_threads(n, fn, lazy=True):
    """fn(ctx) on n thread ranks with lazy contexts; results by rank."""
    return run_threads(n, fn, timeout=20, lazy=lazy, transport="tcp")


def test_ring_opens_only_neighbours():
    counted = threading.Barrier(6, timeout=20)

    def body(ctx):
        before = ctx.connections
        x = np.full(4, ctx.rank, np.int64)
        ctx.allreduce(x, algorithm="ring")
        after = ctx.connections
        counted.wait()  # no rank closes (a close drops its peers' counts) before every count
        return before, int(x[0]), after
    got = lazy_threads(6, body)
    assert all(before == 0 and total == 15 for before, total, _ in got)
    assert all(conns <= 2 for _, _, conns in got)  # its two neighbours at most
    assert max(conns for _, _, conns in got) == 2


def test_eager_connects_everyone():
    got = lazy_threads(4, lambda ctx: ctx.connections, lazy=False)
    assert got == [3, 3, 3, 3]


def test_split_child_is_lazy():
    def body(ctx):
        child = ctx.split(ctx.rank % 2, key=ctx.rank)
        with child:
            opened = child.connections
            y = np.ones(1, np.int32)
            child.allreduce(y)
            return opened, int(y[0])
    got = lazy_threads(6, body)
    assert all(total == 3 for _, total in got)
    assert all(opened <= 2 for opened, _ in got)


def test_env_variable_turns_it_on():
    code = """
import threading, cgloo
store, out = cgloo.HashStore(), [None] * 3
def rank(r):
    with cgloo.Context(r, 3, store, timeout=20) as ctx:
        out[r] = ctx.connections
threads = [threading.Thread(target=rank, args=(r,)) for r in range(3)]
[t.start() for t in threads]
[t.join() for t in threads]
print(out)
"""
    for value, want in (("1", "[0, 0, 0]"), ("0", "[2, 2, 2]")):
        env = dict(child_env(), CGLOO_LAZY=value, CGLOO_TRANSPORT="tcp")
        done = subprocess.run([sys.executable, "-c", code], env=env, timeout=60,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == want


def test_shared_memory_peers_connect_on_first_use():
    """Over shared memory (the default, auto) a lazy context connects its same-host pairs on
    first use, as over TCP; its split() children too."""
    counted = threading.Barrier(4, timeout=20)

    def body(ctx):
        before = ctx.connections
        child = ctx.split(ctx.rank % 2, key=ctx.rank)
        with child:
            opened = child.connections
            y = np.ones(1, np.int32)
            child.allreduce(y)
            after = child.connections
            counted.wait()  # no rank closes (a close drops its peers' counts) before every count
            return before, opened, after, int(y[0])
    assert run_threads(4, body, timeout=20, lazy=True, transport="auto") == [(0, 0, 1, 2)] * 4


def test_device_transport_keyword_checked():
    with pytest.raises(cgloo.Error) as e:
        cgloo.Device(hostname="127.0.0.1", transport="udp")
    assert e.value.code == "EINVAL" and "'udp'" in e.value.detail
    with cgloo.Device(hostname="127.0.0.1", transport="tcp") as dev:
        assert dev.address.startswith("127.0.0.1:")


def test_transport_keyword_checked():
    with pytest.raises(cgloo.Error) as e:
        cgloo.Context(0, 1, transport="udp")
    assert e.value.code == "EINVAL" and "'udp'" in e.value.detail
