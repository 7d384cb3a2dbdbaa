/*
 * Direct gather.
 *
 * Every rank sends its block straight to the root, which posts one receive per rank, all at
 * once, into the block's place in its buffer: no intermediate ranks, and no copy but the root's
 * own block, which it makes once the receives are posted (cgloo__gather_own_block, looking at
 * the transports as it goes, so that no sender waits for the copy).
 *
 * Preconditions: none. Non-power-of-two p: nothing special.
 *
 * Cost: one step of p - 1 messages converging on the root, which receives n (p - 1)/p of the n
 * gathered bytes:
 *     (p - 1) alpha + n ((p - 1)/p) beta   (the root's link is the bottleneck)
 * The bytes are the minimum possible; for many small blocks the root's p - 1 message costs
 * dominate and the binomial tree does better.
 */
#include "coll/gather/gather.h"
#include "coll/pattern/blocks.h"

static int gather_direct_root(coll *c, const void *sendbuf, void *recvbuf, const size_t *off)
{
    cgloo_request **reqs = calloc((size_t)c->size, sizeof *reqs);
    if (!reqs)
        return cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for %d requests", c->size);
    int rc = CGLOO_OK;
    for (int r = 0; rc == CGLOO_OK && r < c->size; r++)
        if (r != c->rank)
            rc = cgloo__coll_irecv(c, r, (uint8_t *)recvbuf + off[r], blocks_bytes(off, r), 0,
                                   &reqs[r]);
    if (rc == CGLOO_OK)
        cgloo__gather_own_block(c, sendbuf, recvbuf, off, c->rank);
    rc = cgloo__coll_finish(c, reqs, c->size, rc);
    free(reqs);
    return rc;
}

int cgloo__gather_direct(coll *c, const void *sendbuf, void *recvbuf, const size_t *off, int root)
{
    if (c->rank == root)
        return gather_direct_root(c, sendbuf, recvbuf, off);
    return cgloo__coll_send(c, root, sendbuf, blocks_bytes(off, c->rank), 0);
}
