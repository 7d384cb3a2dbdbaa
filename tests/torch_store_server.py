"""A PyTorch TCPStore server for test_store_torch, in one of four kinds:

  torch           the real one: torch.distributed.TCPStore(is_master=True) of the installed
                  PyTorch (Debian's 1.13 here); exits 77 when torch cannot be imported
  validated-ping  a reimplementation of the newer protocol: VALIDATE first, PING answered
  validated       the same without PING (an unknown op closes the connection)
  libuv           "validated" as PyTorch's libuv server of that time keeps it: a first request
                  that is not VALIDATE is ignored, not closed

It prints the port, sets "py/hello" = "world", and serves until its stdin closes; then (kind
torch) it reads back what the client set and prints "interop ok" when it matches. The
reimplementation is ours, written from the protocol, for the versions not installed here.
"""

import datetime
import socket
import struct
import sys
import threading

MAGIC = 0x3C85F7CE
# The newer numbering: VALIDATE 0, SET 1, COMPARE_SET 2, GET 3, ADD 4, CHECK 5, WAIT 6,
# GETNUMKEYS 7, DELETE_KEY 8, ..., PING 13.
VALIDATE, SET, GET, ADD, CHECK, WAIT, GETNUMKEYS, DELETE, PING = 0, 1, 3, 4, 5, 6, 7, 8, 13


def run_torch():
    try:
        import torch.distributed as dist
    except ImportError:
        sys.exit(77)
    store = dist.TCPStore("127.0.0.1", 0, 1, True, datetime.timedelta(seconds=30),
                          wait_for_workers=False)
    print(store.port, flush=True)
    store.set("py/hello", "world")
    sys.stdin.read()
    ok = (store.get("c/value") == b"abc" and store.add("c/count", 0) == 3
          and not store.delete_key("c/deleted"))
    print("interop ok" if ok else "interop FAILED", flush=True)


class Store:
    def __init__(self):
        self.data = {}
        self.cond = threading.Condition()

    def set(self, key, value):
        with self.cond:
            self.data[key] = value
            self.cond.notify_all()


def recv_exact(conn, n):
    buf = b""
    while len(buf) < n:
        part = conn.recv(n - len(buf))
        if not part:
            raise EOFError
        buf += part
    return buf


def u64(conn):
    return struct.unpack("<Q", recv_exact(conn, 8))[0]


def string(conn):
    return recv_exact(conn, u64(conn))


def keys(conn):
    return [string(conn) for _ in range(u64(conn))]


def serve_one(op, conn, store, kind):
    """Answers one request; False when the connection is to be closed."""
    if op == SET:
        key = string(conn)
        store.set(key, string(conn))
    elif op == GET:
        value = store.data[string(conn)]
        conn.sendall(struct.pack("<Q", len(value)) + value)
    elif op == ADD:
        key = string(conn)
        delta = struct.unpack("<q", recv_exact(conn, 8))[0]
        with store.cond:
            value = int(store.data.get(key, b"0")) + delta
        store.set(key, str(value).encode())
        conn.sendall(struct.pack("<q", value))
    elif op == CHECK:
        wanted = keys(conn)
        conn.sendall(bytes([0 if all(k in store.data for k in wanted) else 1]))
    elif op == WAIT:
        wanted = keys(conn)
        with store.cond:
            while not all(k in store.data for k in wanted):
                store.cond.wait()
        conn.sendall(b"\0")
    elif op == GETNUMKEYS:
        conn.sendall(struct.pack("<q", len(store.data)))
    elif op == DELETE:
        key = string(conn)
        with store.cond:
            gone = store.data.pop(key, None) is not None
        conn.sendall(struct.pack("<q", int(gone)))
    elif op == PING and kind == "validated-ping":
        conn.sendall(recv_exact(conn, 4))
    else:
        return False
    return True


def serve(conn, store, kind):
    """One client: VALIDATE first, then requests. A real server's WAIT parks rather than
    blocking; a thread per client blocking here is the same to its client."""
    try:
        op = recv_exact(conn, 1)[0]
        if op != VALIDATE:
            if kind == "libuv":
                conn.recv(1 << 16)  # ignored, and nothing more is answered
                threading.Event().wait()
            return
        if struct.unpack("<I", recv_exact(conn, 4))[0] != MAGIC:
            return
        while serve_one(recv_exact(conn, 1)[0], conn, store, kind):
            pass
    except (EOFError, OSError, KeyError, ValueError):
        pass
    finally:
        conn.close()


def run_reimplementation(kind):
    store = Store()
    store.set(b"/py/hello", b"world")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    print(listener.getsockname()[1], flush=True)

    def accept():
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=serve, args=(conn, store, kind), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    sys.stdin.read()


if __name__ == "__main__":
    if sys.argv[1] == "torch":
        run_torch()
    else:
        run_reimplementation(sys.argv[1])
