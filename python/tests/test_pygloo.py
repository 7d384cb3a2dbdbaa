"""Tests of the pygloo compatibility module: every collective across 2, 3 and 4 real processes
(started by multiprocessing and by cgloo-run), every datatype and reduction, the stores, the
examples, and the errors a pygloo program can make.

Run with the packages on the path, e.g.
    PYTHONPATH=build/python:python /usr/bin/python3 -m pytest python/tests/test_pygloo.py
(without PYTHONPATH the newest build*/python and python/ of the repository are used).
"""

import datetime
import importlib
import multiprocessing
import os
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def _add_package_paths():
    """Make cgloo (built) and pygloo (pure Python, in python/) importable when PYTHONPATH does
    not already, so that a plain `pytest python/tests` works from the repository."""
    try:
        importlib.import_module("cgloo")
    except ImportError:
        builds = sorted(REPO.glob("build*/python/cgloo"), key=lambda p: p.stat().st_mtime)
        if builds:
            sys.path.insert(0, str(builds[-1].parent))
    if str(REPO / "python") not in sys.path:
        sys.path.append(str(REPO / "python"))
    sys.path.insert(0, str(HERE))


_add_package_paths()
np = pytest.importorskip("numpy")
cgloo = pytest.importorskip("cgloo")
import pygloo  # noqa: E402
import pygloo_checks  # noqa: E402

SIZES = (2, 3, 4)
RANK_TIMEOUT_S = 60


# ---- helpers ---------------------------------------------------------------------------------


def _rank_main(queue, target, rank, size, args):
    """A child process: run target(rank, size, *args) and report a traceback or None."""
    try:
        target(rank, size, *args)
        queue.put((rank, None))
    except BaseException:
        queue.put((rank, traceback.format_exc()))


def run_ranks(size, target, *args):
    """Run target(rank, size, *args) in size processes at once; fail with every rank's
    traceback if any rank raised, died or hung."""
    mp = multiprocessing.get_context("fork")
    queue = mp.Queue()
    procs = [
        mp.Process(target=_rank_main, args=(queue, target, rank, size, args), daemon=True)
        for rank in range(size)
    ]
    for p in procs:
        p.start()
    results = _collect(queue, procs)
    for p in procs:
        p.join(5)
        if p.is_alive():
            p.kill()
    failures = [f"rank {r}:\n{msg}" for r, msg in sorted(results.items()) if msg]
    assert not failures, "\n".join(failures)


def _collect(queue, procs):
    """Each rank's report; a rank that exits without one, or the deadline, counts as a
    failure (the others are then killed)."""
    results, deadline = {}, time.monotonic() + RANK_TIMEOUT_S
    while len(results) < len(procs):
        try:
            rank, msg = queue.get(timeout=0.2)
            results[rank] = msg
            continue
        except Exception:
            pass
        for rank, p in enumerate(procs):
            if rank not in results and p.exitcode is not None and queue.empty():
                results[rank] = f"died with exit code {p.exitcode}"
        if time.monotonic() > deadline:
            for rank, p in enumerate(procs):
                results.setdefault(rank, f"no result after {RANK_TIMEOUT_S} s")
                p.kill()
    return results


def launcher():
    """cgloo-run's path: CGLOO_RUN_PATH (set by the CTest entry), else a build of this
    repository; None if there is none."""
    path = os.environ.get("CGLOO_RUN_PATH") or os.environ.get("CGLOO_RUN")
    if path and os.access(path, os.X_OK):
        return path
    builds = sorted(REPO.glob("build*/tools/cgloo-run"), key=lambda p: p.stat().st_mtime)
    return str(builds[-1]) if builds else None


def child_env():
    """The environment of a child interpreter: this one's, with cgloo and pygloo on the path."""
    paths = [
        str(Path(cgloo.__file__).resolve().parents[1]),
        str(Path(pygloo.__file__).resolve().parents[1]),
    ]
    old = os.environ.get("PYTHONPATH")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths + ([old] if old else [])))
    env.pop("CGLOO_RANK", None)
    env.pop("CGLOO_SIZE", None)
    return env


def run_launched(size, *argv, timeout=120):
    """Run argv under cgloo-run -n size; return the completed process (skip without it)."""
    run = launcher()
    if run is None:
        pytest.skip("cgloo-run not built (set CGLOO_RUN_PATH)")
    cmd = [run, "-n", str(size), "--", *argv]
    return subprocess.run(
        cmd, env=child_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


def single_rank_context():
    """A connected context of one rank (no store or peers needed), for argument checks."""
    ctx = pygloo.rendezvous.Context(0, 1)
    ctx.connectFullMesh(pygloo.rendezvous.HashStore(), pygloo.transport.tcp.CreateDevice(
        pygloo.transport.tcp.attr("127.0.0.1")))
    return ctx


# ---- every collective, every dtype, real processes ------------------------------------------


def _run_check(rank, size, name, store_dir):
    context = pygloo_checks.connect(rank, size, store_dir)
    pygloo_checks.CHECKS[name](context)
    context.closeConnections()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", list(pygloo_checks.CHECKS))
def test_collective_multiprocessing(name, size, tmp_path):
    run_ranks(size, _run_check, name, str(tmp_path))


@pytest.mark.parametrize("size", SIZES)
def test_every_collective_under_cgloo_run(size, tmp_path):
    program = str(HERE / "pygloo_rank_program.py")
    done = run_launched(size, sys.executable, program, str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    checks = len(pygloo_checks.CHECKS)
    assert done.stdout.count(f"of {size}: {checks} checks passed") == size, done.stdout


# ---- stores and key names -------------------------------------------------------------------


def _connect_and_allreduce(rank, size, store_dir):
    context = pygloo_checks.connect(rank, size, store_dir)
    one = np.ones(4, np.float32)
    pygloo.allreduce(context, one.ctypes.data, one.ctypes.data, 4, pygloo.glooFloat32)
    assert (one == size).all()


def test_rendezvous_keys_and_their_cleanup(tmp_path):
    run_ranks(2, _connect_and_allreduce, str(tmp_path))
    fs = pygloo.rendezvous.FileStore(str(tmp_path))
    written = ["2/cgloo/addr/0", "2/cgloo/addr/1"]
    gone = not fs._store.check(written[:1]) and not fs._store.check(written[1:])
    assert gone, "a run that connected has removed its rendezvous records"
    for key in written:  # as a run that died during its rendezvous leaves them
        fs._store.set(key, b"stale")
    store = pygloo.rendezvous.PrefixStore("2", fs)
    store.delKeys(["rank_0", "rank_1", "0", "1", "never-written"])  # absent keys are fine
    assert not fs._store.check(written[:1]) and not fs._store.check(written[1:])


class DirectoryKV:
    """A key/value object in the shape pygloo's CustomStore takes, kept as files."""

    def __init__(self, path):
        self.path = Path(path)

    def _file(self, key):
        return self.path / key.replace("/", "%")

    def set(self, key, data):
        tmp = self.path / f".tmp.{os.getpid()}"
        tmp.write_bytes(data)
        tmp.rename(self._file(key))
        return True

    def get(self, key):
        f = self._file(key)
        return f.read_bytes() if f.exists() else None

    def wait(self, keys):
        while not all(self._file(k).exists() for k in keys):
            time.sleep(0.01)
        return True

    def del_keys(self, keys):
        for k in keys:
            self._file(k).unlink(missing_ok=True)
        return True


def _custom_store_rank(rank, size, path):
    context = pygloo.rendezvous.Context(rank, size)
    device = pygloo.transport.tcp.CreateDevice(pygloo.transport.tcp.attr("127.0.0.1"))
    store = pygloo.rendezvous.CustomStore(DirectoryKV(path))
    context.connectFullMesh(store, device)
    data = np.arange(5, dtype=np.int64) * (rank + 1)
    out = np.zeros_like(data)
    pygloo.allreduce(context, data.ctypes.data, out.ctypes.data, 5, pygloo.glooInt64)
    assert (out == np.arange(5) * sum(range(1, size + 1))).all()
    pygloo.barrier(context)  # every rank has connected: the keys may go
    if rank == 0:
        store.delKeys([f"rank_{i}" for i in range(size)])


def test_custom_store(tmp_path):
    run_ranks(3, _custom_store_rank, str(tmp_path))
    assert not [p.name for p in tmp_path.iterdir()], "delKeys removed the rendezvous keys"


def test_store_values_and_prefix():
    inner = pygloo.rendezvous.HashStore()
    store = pygloo.rendezvous.PrefixStore("job", inner)
    store.set("a", b"\x00\x01")
    store.set("b", "text")
    store.set("c", ["x", "y"])
    assert store.get("a") == b"\x00\x01" and store.get("b") == b"text" and store.get("c") == b"xy"
    assert inner.get("job/a") == b"\x00\x01"
    store.wait(["a", "b"])
    inner.delKey("job/a")
    assert not inner._store.check(["job/a"])


def test_hash_store_ranks_as_threads():
    """Two ranks as threads of one process over one HashStore: works only if each blocking
    call releases the GIL."""
    store, errors = pygloo.rendezvous.HashStore(), []

    def rank_main(rank):
        try:
            ctx = pygloo.rendezvous.Context(rank, 2)
            ctx.setTimeout(10000)
            dev = pygloo.transport.tcp.CreateDevice(pygloo.transport.tcp.attr("127.0.0.1"))
            ctx.connectFullMesh(store, dev)
            buf = np.full(3, rank + 1, np.float64)
            pygloo.allreduce(ctx, buf.ctypes.data, buf.ctypes.data, 3, pygloo.glooFloat64)
            assert (buf == 3).all()
            ctx.closeConnections()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors


# ---- the pygloo surface ---------------------------------------------------------------------


def test_enum_values_are_pygloos():
    assert [int(v) for v in pygloo.ReduceOp] == list(range(8))
    assert pygloo.ReduceOp.UNUSED == 7 and pygloo.ReduceOp.BXOR == 6
    assert (pygloo.allreduceAlgorithm.SUM, pygloo.allreduceAlgorithm.RING,
            pygloo.allreduceAlgorithm.BCUBE) == (0, 1, 2)
    names = ["glooInt8", "glooUint8", "glooInt32", "glooUint32", "glooInt64", "glooUint64",
             "glooFloat16", "glooFloat32", "glooFloat64"]
    assert [pygloo.glooDataType_t[n] for n in names] == list(range(9))
    for n in names + ["SUM", "PRODUCT", "MIN", "MAX", "BAND", "BOR", "BXOR", "RING", "BCUBE"]:
        assert hasattr(pygloo, n), n
    assert pygloo.transport_tcp_available() is True


def test_context_attributes_and_timeout():
    ctx = pygloo.rendezvous.Context(1, 3)
    assert (ctx.rank, ctx.size, ctx.base) == (1, 3, 2)
    ctx.setTimeout(1500)
    assert ctx.getTimeout() == 1500
    ctx.setTimeout(datetime.timedelta(seconds=2))
    assert ctx.getTimeout() == 2000
    with pytest.raises(ValueError):
        ctx.setTimeout(0)
    with pytest.raises(ValueError):
        pygloo.rendezvous.Context(3, 3)
    attr = pygloo.transport.tcp.attr()
    assert (attr.hostname, attr.iface, attr.ai_family) == ("", "", 0)


def test_a_blocked_call_times_out_after_set_timeout():
    ctx = single_rank_context()
    ctx.setTimeout(200)
    buf = np.zeros(1, np.int32)
    start = time.monotonic()
    with pytest.raises(TimeoutError):  # cgloo.TimeoutError is the built-in one too
        pygloo.recv(ctx, buf.ctypes.data, 1, pygloo.glooInt32, 0)
    assert 0.15 < time.monotonic() - start < 5
    ctx.closeConnections()


def test_single_rank_collectives():
    ctx = single_rank_context()
    a = np.arange(6, dtype=np.int32)
    b = np.zeros(6, np.int32)
    pygloo.allreduce(ctx, a.ctypes.data, b.ctypes.data, 6, pygloo.glooInt32, pygloo.BXOR)
    assert (a == b).all()
    pygloo.reduce_scatter(ctx, a.ctypes.data, b.ctypes.data, 6, [6], pygloo.glooInt32)
    assert (a == b).all()
    ctx.closeConnections()


def test_argument_errors():
    ctx = single_rank_context()
    buf = np.zeros(4, np.float32)
    p = buf.ctypes.data
    with pytest.raises(TypeError, match="glooDataType_t"):
        pygloo.allreduce(ctx, p, p, 4, 9)
    with pytest.raises(TypeError, match="glooDataType_t"):
        pygloo.allreduce(ctx, p, p, 4, "float32")
    with pytest.raises(TypeError, match="cgloo.DType"):
        pygloo.allreduce(ctx, p, p, 4, cgloo.DType.FLOAT32)
    with pytest.raises(ValueError, match="reduceop"):
        pygloo.allreduce(ctx, p, p, 4, pygloo.glooFloat32, pygloo.ReduceOp.UNUSED)
    with pytest.raises(ValueError):  # cgloo.InvalidArgumentError: bitwise op on a float
        pygloo.allreduce(ctx, p, p, 4, pygloo.glooFloat32, pygloo.ReduceOp.BAND)
    with pytest.raises(ValueError, match="address"):
        pygloo.allreduce(ctx, 0, p, 4, pygloo.glooFloat32)
    with pytest.raises(TypeError, match="address"):
        pygloo.allreduce(ctx, str(p), p, 4, pygloo.glooFloat32)
    with pytest.raises(ValueError, match="recvElems"):
        pygloo.reduce_scatter(ctx, p, p, 4, [3], pygloo.glooFloat32)
    with pytest.raises(ValueError, match="addresses"):
        pygloo.scatter(ctx, [p, p], p, 2, pygloo.glooFloat32)
    with pytest.raises(ValueError, match="connectFullMesh"):
        pygloo.barrier(pygloo.rendezvous.Context(0, 2))
    with pytest.raises(TypeError, match="rendezvous.Context"):
        pygloo.barrier(object())
    ctx.closeConnections()
    with pytest.raises(ValueError, match="connectFullMesh"):
        pygloo.barrier(ctx)


# ---- the examples ---------------------------------------------------------------------------


def test_example_pygloo_program_runs_unchanged():
    program = REPO / "examples" / "pygloo_program.py"
    done = subprocess.run([sys.executable, str(program), "2"], env=child_env(),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rank 0" in done.stdout and "rank 1" in done.stdout


def test_example_data_parallel_numpy():
    program = REPO / "examples" / "data_parallel_numpy.py"
    done = run_launched(2, sys.executable, str(program))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "identical" in done.stdout
