"""The Redis store from Python: cgloo.open_store("redis://...") against a real redis-server that
each test starts on a free loopback port in a temporary directory (no persistence), two
thread-ranks connecting and reducing through one handle, with and without a password, the
errors of a wrong password and of a server that is not there, and pygloo's RedisStore.

Skipped, with one line, when redis-server is not installed. A cgloo built without hiredis is
checked to say what to install.
"""

import contextlib
import shutil
import socket
import subprocess
import time
from urllib.parse import quote

import numpy as np
import pytest

import cgloo
import pygloo.rendezvous
from cgloo_testlib import run_threads


def _built_with_redis():
    """Whether this cgloo has the Redis store: without it, opening any redis:// URL says
    NotSupportedError at once."""
    try:
        cgloo.open_store("redis://127.0.0.1:1", timeout=0.05).close()
    except cgloo.NotSupportedError:
        return False
    except cgloo.Error:
        pass
    return True


BUILT = _built_with_redis()
if BUILT and not (shutil.which("redis-server") and shutil.which("redis-cli")):
    pytest.skip("redis-server not found: apt-get install redis-server", allow_module_level=True)
needs_redis = pytest.mark.skipif(
    not BUILT, reason="cgloo was built without hiredis: apt-get install libhiredis-dev, rebuild")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def redis_server(tmp_path, password=None):
    """Runs redis-server on a free port for the block and yields the port."""
    for _ in range(5):
        port = _free_port()
        args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(tmp_path)]
        if password:
            args += ["--requirepass", password]
        with open(tmp_path / "redis.log", "ab") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 5
        while proc.poll() is None and not _listening(port) and time.monotonic() < deadline:
            time.sleep(0.01)
        if proc.poll() is None and _listening(port):
            break
        proc.kill()
        proc.wait()
    else:
        pytest.fail(f"redis-server did not start (see {tmp_path / 'redis.log'})")
    try:
        yield port
    finally:
        proc.kill()
        proc.wait()


def _dbsize(port, password=None):
    auth = ["--no-auth-warning", "-a", password] if password else []
    out = subprocess.run(["redis-cli", "-p", str(port), *auth, "DBSIZE"], check=True,
                         capture_output=True, text=True).stdout
    return int(out.strip())


@needs_redis
@pytest.mark.parametrize("password", [None, "sek rit/@"])
def test_two_thread_ranks_meet_through_one_redis_handle(tmp_path, password):
    with redis_server(tmp_path, password) as port:
        auth = f":{quote(password, safe='')}@" if password else ""
        store = cgloo.open_store(f"redis://{auth}127.0.0.1:{port}?cleanup=1", timeout=5)

        def reduce(ctx):
            a = np.full(7, ctx.rank + 1, np.float32)
            ctx.allreduce(a)
            ctx.barrier()
            return a

        for a in run_threads(2, reduce, store=store):
            assert (a == 3).all()
        # the rendezvous removed its own records once connected; a key of the program's stays
        store.set("left/by/the/program", b"x")
        assert _dbsize(port, password) > 0
        store.close()
        assert _dbsize(port, password) == 0  # the handle deleted what it set


@needs_redis
def test_a_wrong_password_names_the_server_and_not_the_password(tmp_path):
    with redis_server(tmp_path, "sekrit") as port:
        start = time.monotonic()
        with pytest.raises(cgloo.StoreError) as e:
            cgloo.open_store(f"redis://:wrong-sekrit@127.0.0.1:{port}", timeout=5)
        assert time.monotonic() - start < 3
        assert "WRONGPASS" in str(e.value) and f"redis://127.0.0.1:{port}" in e.value.detail
        assert "sekrit" not in str(e.value)


@needs_redis
def test_no_server_is_a_connection_error_within_the_timeout():
    port = _free_port()
    start = time.monotonic()
    with pytest.raises(cgloo.ConnectionError) as e:
        cgloo.open_store(f"redis://:sekrit@127.0.0.1:{port}", timeout=0.5)
    assert 0.4 < time.monotonic() - start < 3
    assert "refused" in e.value.detail and "sekrit" not in str(e.value)


@needs_redis
def test_store_errors_carry_the_servers_words(tmp_path):
    with redis_server(tmp_path) as port, cgloo.open_store(f"redis://127.0.0.1:{port}") as s:
        s.set("a", b"not a number")
        with pytest.raises(cgloo.StoreError, match="INCRBY.*not an integer"):
            s.add("a", 1)
        s.set(b"\x01bin\r\nkey", bytes(range(256)) * 4096)
        assert s.get(b"\x01bin\r\nkey") == bytes(range(256)) * 4096
        with pytest.raises(cgloo.TimeoutError):
            s.get("missing", timeout=0.2)


@needs_redis
def test_pygloo_redis_store_authorizes_after_the_constructor(tmp_path):
    with redis_server(tmp_path, "sek:rit") as port:
        store = pygloo.rendezvous.RedisStore("127.0.0.1", port)
        with pytest.raises(cgloo.StoreError, match="NOAUTH"):
            store.set("k", b"v")
        store.authorize("sek:rit")
        store.set("k", b"v")
        assert store.get("k") == b"v"
        store.delKey("k")
        store._store.close()


def test_without_hiredis_the_store_says_what_to_install():
    if BUILT:
        with pytest.raises(cgloo.InvalidArgumentError, match="host:port"):
            cgloo.open_store("redis://127.0.0.1")
        return
    with pytest.raises(cgloo.NotSupportedError, match="libhiredis-dev"):
        cgloo.open_store("redis://127.0.0.1:6379")
    with pytest.raises(NotImplementedError, match="libhiredis-dev"):
        pygloo.rendezvous.RedisStore("127.0.0.1", 6379)
