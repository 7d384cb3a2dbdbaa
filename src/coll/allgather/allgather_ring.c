/*
 * Ring allgather.
 *
 * At step s (0..p-2) rank r sends block (r - s) to rank r + 1 and receives block (r - s - 1)
 * from rank r - 1, so each block travels once around the ring: the one it received at step s is
 * the one it forwards at step s + 1. Works on uneven blocks (allgatherv) unchanged.
 *
 * Preconditions: none; any number of ranks (a power of two is not needed, the ring has no
 * special case for it). Blocks may be empty.
 *
 * Cost: (p - 1) latency steps; each rank sends and receives (p - 1)/p of the n gathered bytes,
 * n (p - 1)/p on the wire per rank, which is bandwidth-optimal:
 *     (p - 1) alpha + n ((p - 1)/p) beta
 * Every step uses both directions of every link at once.
 */
#include "coll/allgather/allgather.h"
#include "coll/pattern/blocks.h"
#include "coll/pattern/ring.h"

int cgloo__allgather_ring(coll *c, void *recvbuf, const size_t *off)
{
    uint8_t *buf = recvbuf;
    int next = ring_next(c->rank, c->size), prev = ring_prev(c->rank, c->size);
    for (int s = 0; s < c->size - 1; s++) {
        int sb = ring_ag_send_block(c->rank, c->size, s);
        int rb = ring_ag_recv_block(c->rank, c->size, s);
        int rc = cgloo__coll_sendrecv(c, next, buf + off[sb], blocks_bytes(off, sb), prev,
                                      buf + off[rb], blocks_bytes(off, rb), (unsigned)s);
        if (rc != CGLOO_OK)
            return rc;
    }
    return CGLOO_OK;
}
