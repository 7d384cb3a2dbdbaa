#!/usr/bin/python3
"""Writes the seed corpus in fuzz/corpus/<target>/: small, valid (and a few invalid) inputs
from the wire layouts in src/transport/tcp/wire.h and src/store/tcp_store_proto.h, so that the
fuzzers start from the protocol rather than from nothing. Run from anywhere; rewrites the seeds."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def hello(typ, src, dst, size, eager=65536, budget=1 << 20, ctx=0, snonce=0, dnonce=0):
    return (struct.pack('<IBBHQIIIIQQII', 0x4F4C4743, 1, typ, 0, ctx, src, dst, size, eager,
                        snonce, dnonce, budget, 0))


def hdr(typ, send_id=0, recv_id=0, tag=0, length=0):
    return struct.pack('<B3xIII QQ'.replace(' ', ''), typ, send_id, recv_id, 0, tag, length)


def eager(tag, payload):
    return hdr(1, tag=tag, length=len(payload)) + payload


def key(k):
    return struct.pack('<I', len(k)) + k


def keys(*ks):
    return struct.pack('<I', len(ks)) + b''.join(key(k) for k in ks)


def req(op, body):
    return struct.pack('<II', len(body), op) + body


def write(target, name, data):
    d = os.path.join(HERE, 'corpus', target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)


def hellos():
    # mode byte: bit 0 ack (else device), bit 1 patch the context id and nonces
    write('fuzz_hello', 'device_good', b'\x02' + hello(1, 2, 0, 4))
    write('fuzz_hello', 'device_wrong_size', b'\x02' + hello(1, 2, 0, 5))
    write('fuzz_hello', 'device_src_low', b'\x02' + hello(1, 0, 0, 4))
    write('fuzz_hello', 'device_ack_type', b'\x02' + hello(2, 2, 0, 4))
    write('fuzz_hello', 'device_truncated', b'\x00' + hello(1, 2, 0, 4)[:20])
    write('fuzz_hello', 'device_garbage', b'\x00' + bytes(range(256)) * 2)
    write('fuzz_hello', 'ack_good', b'\x03' + hello(2, 0, 1, 2))
    write('fuzz_hello', 'ack_good_then_eager', b'\x03' + hello(2, 0, 1, 2) + eager(7, b'hi'))
    write('fuzz_hello', 'ack_wrong_ranks', b'\x03' + hello(2, 1, 0, 2))
    write('fuzz_hello', 'ack_small_eager', b'\x03' + hello(2, 0, 1, 2, eager=1, budget=1))
    write('fuzz_hello', 'ack_bad_magic', b'\x01' + b'XXXX' + hello(2, 0, 1, 2)[4:])


def streams():
    s = eager(1, b'0123456789') + eager(2, b'x' * 20) + hdr(2, 9, 0, 1, 100000)
    s += hdr(3, 1, 7) + hdr(5, length=1000) + eager(3, b'any')
    write('fuzz_msg_stream', 'mixed_all', b'\x00' + s)
    write('fuzz_msg_stream', 'mixed_by_1', b'\x01' + s)
    write('fuzz_msg_stream', 'mixed_by_33', b'\x06' + s)
    big = hdr(2, 5, 0, 3, 5000) + hdr(4, 0, 1, 0, 5000) + b'd' * 5000
    write('fuzz_msg_stream', 'rts_then_data', b'\x05' + big)
    write('fuzz_msg_stream', 'eager_full', b'\x0b' + eager(1, b'e' * 4096) + eager(3, b'f' * 65536))
    write('fuzz_msg_stream', 'bye', b'\x00' + eager(1, b'last') + hdr(6))
    write('fuzz_msg_stream', 'bad_type', b'\x00' + hdr(9, tag=1, length=4))
    write('fuzz_msg_stream', 'ready_for_large', b'\x04' + hdr(3, 1, 3))


def store_requests():
    hello_bytes = struct.pack('<IHH', 0x54534743, 1, 0)
    ops = (req(1, key(b'a') + b'1') + req(2, struct.pack('<I', 0) + key(b'a')) +
           req(5, struct.pack('<q', 5) + key(b'c')) + req(4, keys(b'a', b'b')) +
           req(7, struct.pack('<I', 0) + keys(b'a', b'c')) +
           req(3, struct.pack('<I', 0) + keys(b'a')) + req(6, key(b'a')))
    write('fuzz_store_request', 'all_ops', b'\x01' + ops)
    write('fuzz_store_request', 'raw_hello_then_set', b'\x00' + hello_bytes + req(1, key(b'k/../x') + b'v'))
    write('fuzz_store_request', 'get_waits', b'\x01' + req(2, struct.pack('<I', 20) + key(b'none')))
    write('fuzz_store_request', 'add_not_counter', b'\x01' + req(1, key(b'n') + b'abc') +
          req(5, struct.pack('<q', -1) + key(b'n')))
    write('fuzz_store_request', 'unknown_op', b'\x01' + req(9, b'xx'))
    write('fuzz_store_request', 'huge_len', b'\x01' + struct.pack('<II', 0xFFFFFFFF, 1))
    write('fuzz_store_request', 'bad_hello', b'\x00' + b'CGSX\x01\x00\x00\x00')


def urls():
    for i, u in enumerate([b'tcp://127.0.0.1:29500', b'tcp://[::1]:1', b'TCP://host:65535',
                           b'torch://localhost:5', b'file:///tmp/cgloo', b'hash:', b'hash://',
                           b'redis://user:p%40ss@127.0.0.1:6379/2?cleanup=1',
                           b'redis://:pw@[::1]:6379', b'redis://h:1/x', b'tcp://::1:5',
                           b'tcp://h:0', b'file://rel', b'ftp://x']):
        write('fuzz_url', 'url_%02d' % i, u)


def addrs():
    for i, a in enumerate([b'\x00127.0.0.1:80', b'\x00lo', b'\x00^lo,docker0', b'\x0110.0.0.0/8',
                           b'\x00eth*\n127.0.0.1\n1.2.3.4:99\n10.1.1.1\n1000-1010',
                           b'\x02[::1]:5', b'\x02::1/128', b'\x00\n127.0.0.1\n\n\n29500',
                           b'\x00\n\n[::1]\n127.0.0.1\n5-1', b'\x00127.0.0.0/33,lo']):
        write('fuzz_addr', 'addr_%02d' % i, a)


if __name__ == '__main__':
    hellos()
    streams()
    store_requests()
    urls()
    addrs()
