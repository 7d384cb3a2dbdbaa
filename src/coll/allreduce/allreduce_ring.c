/*
 * Allreduce, ring.
 *
 * A ring reduce-scatter (each rank ends with its block of the vector fully reduced; blocks are
 * sent in segments so that sending, receiving and reducing overlap) followed by a ring
 * allgather of the reduced blocks, both in place on the caller's buffer.
 *
 * Any P (blocks differ by at most one element). Cost: 2 (P-1) latency steps; each rank sends
 * and receives 2 (P-1)/P n bytes, the least any allreduce moves: the algorithm for large
 * vectors.
 */
#include "coll/allgather/allgather.h"
#include "coll/allreduce/allreduce.h"
#include "coll/pattern/ring.h"
#include "coll/reduce_scatter/reduce_scatter.h"

#include <stdlib.h>

/* ring_run: the reduce-scatter from sendbuf (in place when it is recvbuf), leaving this rank's
 * block reduced in recvbuf, then the allgather of the blocks in recvbuf. */
static int ring_run(coll *c, const void *sendbuf, void *recvbuf, size_t count)
{
    size_t n = (size_t)c->size + 1;
    size_t *elems = malloc(n * sizeof *elems), *bytes = malloc(n * sizeof *bytes);
    int rc = elems && bytes ? CGLOO_OK : CGLOO_ENOMEM;
    for (int r = 0; rc == CGLOO_OK && r <= c->size; r++) {
        elems[r] = block_offset(count, c->size, r);
        bytes[r] = elems[r] * c->esize;
    }
    if (rc == CGLOO_OK && sendbuf == recvbuf)
        rc = cgloo__reduce_scatter_ring_inplace(c, recvbuf, elems, 0);
    else if (rc == CGLOO_OK)
        rc = cgloo__reduce_scatter_ring(c, sendbuf, (uint8_t *)recvbuf + bytes[c->rank], elems, 0);
    if (rc == CGLOO_OK)
        rc = cgloo__allgather_ring(c, recvbuf, bytes);
    free(elems);
    free(bytes);
    return rc;
}

int cgloo__allreduce_ring(coll *c, void *buf, size_t count)
{
    return ring_run(c, buf, buf, count);
}

int cgloo__allreduce_ring_out_of_place(coll *c, const void *sendbuf, void *recvbuf, size_t count)
{
    return ring_run(c, sendbuf, recvbuf, count);
}
