"""A program written for pygloo 0.2, run unchanged on cgloo's pygloo module.

    PYTHONPATH=build/python:python /usr/bin/python3 examples/pygloo_program.py [WORLD_SIZE]

It does what pygloo users did (usually with Ray tasks; here multiprocessing starts the ranks):
a rendezvous context over a FileStore under a PrefixStore, a TCP device, then collectives on
numpy arrays passed by address (ndarray.ctypes.data) with element counts and a datatype.
"""

import multiprocessing
import shutil
import sys
import tempfile

import numpy as np
import pygloo


def run_rank(rank, world_size, fileStore_path):
    context = pygloo.rendezvous.Context(rank, world_size)
    attr = pygloo.transport.tcp.attr("localhost")
    dev = pygloo.transport.tcp.CreateDevice(attr)
    fileStore = pygloo.rendezvous.FileStore(fileStore_path)
    store = pygloo.rendezvous.PrefixStore(str(world_size), fileStore)
    context.connectFullMesh(store, dev)

    # allreduce, as in pygloo's README
    sendbuf = np.array([[1, 2, 3], [1, 2, 3]], dtype=np.float32)
    recvbuf = np.zeros_like(sendbuf, dtype=np.float32)
    sendptr = sendbuf.ctypes.data
    recvptr = recvbuf.ctypes.data
    size = sendbuf.size
    datatype = pygloo.glooDataType_t.glooFloat32
    op = pygloo.ReduceOp.SUM
    algorithm = pygloo.allreduceAlgorithm.RING
    pygloo.allreduce(context, sendptr, recvptr, size, datatype, op, algorithm)
    assert (recvbuf == sendbuf * world_size).all(), recvbuf

    # allgather of each rank's id
    mine = np.array([rank], dtype=np.int64)
    everyone = np.zeros(world_size, dtype=np.int64)
    pygloo.allgather(context, mine.ctypes.data, everyone.ctypes.data, 1, pygloo.glooInt64)
    assert list(everyone) == list(range(world_size)), everyone

    # broadcast from rank 0
    message = np.arange(4, dtype=np.float64) if rank == 0 else np.zeros(4, dtype=np.float64)
    pygloo.broadcast(context, message.ctypes.data, message.ctypes.data, 4, pygloo.glooFloat64,
                     root=0)
    assert list(message) == [0, 1, 2, 3], message

    # reduce_scatter with one element for rank 0, two for rank 1, ...
    recvElems = [i + 1 for i in range(world_size)]
    sendbuf = np.arange(1, sum(recvElems) + 1, dtype=np.float32)
    recvbuf = np.zeros(rank + 1, dtype=np.float32)
    pygloo.reduce_scatter(context, sendbuf.ctypes.data, recvbuf.ctypes.data, sendbuf.size,
                          recvElems, pygloo.glooDataType_t.glooFloat32, pygloo.ReduceOp.SUM)
    start = sum(recvElems[:rank])
    assert (recvbuf == sendbuf[start:start + rank + 1] * world_size).all(), recvbuf

    # a bitwise reduction (pygloo raised here; cgloo computes it)
    flags = np.array([1 << rank], dtype=np.uint32)
    pygloo.allreduce(context, flags.ctypes.data, flags.ctypes.data, 1, pygloo.glooUint32,
                     pygloo.ReduceOp.BOR)
    assert flags[0] == (1 << world_size) - 1, flags

    pygloo.barrier(context)
    print(f"rank {rank}: allreduce ok, "
          f"reduce_scatter block {recvbuf.tolist()}, flags {flags[0]:#x}")
    context.closeConnections()


def main():
    world_size = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    fileStore_path = tempfile.mkdtemp(prefix="pygloo-rendezvous-")
    try:
        ranks = [multiprocessing.Process(target=run_rank, args=(i, world_size, fileStore_path))
                 for i in range(world_size)]
        for p in ranks:
            p.start()
        for p in ranks:
            p.join()
    finally:
        shutil.rmtree(fileStore_path, ignore_errors=True)
    failed = [i for i, p in enumerate(ranks) if p.exitcode != 0]
    if failed:
        print(f"ranks {failed} failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
