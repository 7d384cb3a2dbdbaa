# Type hints of the pygloo compatibility module (see __init__.py for what each call does).
import enum
from typing import Sequence, Union

from . import rendezvous as rendezvous, transport as transport

class ReduceOp(enum.IntEnum):
    SUM = 0
    PRODUCT = 1
    MIN = 2
    MAX = 3
    BAND = 4
    BOR = 5
    BXOR = 6
    UNUSED = 7

class allreduceAlgorithm(enum.IntEnum):
    SUM = 0
    UNSPECIFIED = 0
    RING = 1
    BCUBE = 2

class glooDataType_t(enum.IntEnum):
    glooInt8 = 0
    glooUint8 = 1
    glooInt32 = 2
    glooUint32 = 3
    glooInt64 = 4
    glooUint64 = 5
    glooFloat16 = 6
    glooFloat32 = 7
    glooFloat64 = 8

SUM: ReduceOp
PRODUCT: ReduceOp
MIN: ReduceOp
MAX: ReduceOp
BAND: ReduceOp
BOR: ReduceOp
BXOR: ReduceOp
UNUSED: ReduceOp
UNSPECIFIED: allreduceAlgorithm
RING: allreduceAlgorithm
BCUBE: allreduceAlgorithm
glooInt8: glooDataType_t
glooUint8: glooDataType_t
glooInt32: glooDataType_t
glooUint32: glooDataType_t
glooInt64: glooDataType_t
glooUint64: glooDataType_t
glooFloat16: glooDataType_t
glooFloat32: glooDataType_t
glooFloat64: glooDataType_t

_Context = rendezvous.Context

def allreduce(context: _Context, sendbuf: int, recvbuf: int, size: int, datatype: glooDataType_t,
              reduceop: ReduceOp = ..., algorithm: allreduceAlgorithm = ...,
              tag: int = ...) -> None: ...
def allgather(context: _Context, sendbuf: int, recvbuf: int, size: int, datatype: glooDataType_t,
              tag: int = ...) -> None: ...
def allgatherv(context: _Context, sendbuf: int, recvbuf: int, size: Union[int, Sequence[int]],
               datatype: glooDataType_t, tag: int = ...) -> None: ...
def reduce(context: _Context, sendbuf: int, recvbuf: int, size: int, datatype: glooDataType_t,
           reduceop: ReduceOp = ..., root: int = ..., tag: int = ...) -> None: ...
def scatter(context: _Context, sendbuf: Sequence[int], recvbuf: int, size: int,
            datatype: glooDataType_t, root: int = ..., tag: int = ...) -> None: ...
def gather(context: _Context, sendbuf: int, recvbuf: int, size: int, datatype: glooDataType_t,
           root: int = ..., tag: int = ...) -> None: ...
def broadcast(context: _Context, sendbuf: int, recvbuf: int, size: int, datatype: glooDataType_t,
              root: int = ..., tag: int = ...) -> None: ...
def reduce_scatter(context: _Context, sendbuf: int, recvbuf: int, size: int,
                   recvElems: Sequence[int], datatype: glooDataType_t,
                   reduceop: ReduceOp = ...) -> None: ...
def send(context: _Context, sendbuf: int, size: int, datatype: glooDataType_t, peer: int,
         tag: int = ...) -> None: ...
def recv(context: _Context, recvbuf: int, size: int, datatype: glooDataType_t, peer: int,
         tag: int = ...) -> None: ...
def barrier(context: _Context, tag: int = ...) -> None: ...
def transport_tcp_available() -> bool: ...
def transport_uv_available() -> bool: ...
