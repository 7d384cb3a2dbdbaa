/*
 * Direct scatter.
 *
 * The root sends each rank its block straight from its buffer, all sends posted at once, then
 * copies its own block (cgloo__scatter_own_block, looking at the transports as it goes, so that
 * no receiver waits for the copy); every other rank receives its block straight into its
 * buffer.
 *
 * Preconditions: none. Non-power-of-two p: nothing special.
 *
 * Cost: one step of p - 1 messages leaving the root, n (p - 1)/p of the n scattered bytes:
 *     (p - 1) alpha + n ((p - 1)/p) beta   (the root's link is the bottleneck)
 * The bytes are the minimum possible; for many small blocks the binomial tree does better.
 */
#include "coll/pattern/blocks.h"
#include "coll/scatter/scatter.h"

static int scatter_direct_root(coll *c, const void *sendbuf, const size_t *off, void *recvbuf)
{
    cgloo_request **reqs = calloc((size_t)c->size, sizeof *reqs);
    if (!reqs)
        return cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for %d requests", c->size);
    int rc = CGLOO_OK;
    for (int r = 0; rc == CGLOO_OK && r < c->size; r++)
        if (r != c->rank)
            rc = cgloo__coll_isend(c, r, (const uint8_t *)sendbuf + off[r], blocks_bytes(off, r), 0,
                                   &reqs[r]);
    if (rc == CGLOO_OK)
        cgloo__scatter_own_block(c, sendbuf, off, recvbuf, c->rank);
    rc = cgloo__coll_finish(c, reqs, c->size, rc);
    free(reqs);
    return rc;
}

int cgloo__scatter_direct(coll *c, const void *sendbuf, const size_t *off, void *recvbuf, int root)
{
    if (c->rank == root)
        return scatter_direct_root(c, sendbuf, off, recvbuf);
    return cgloo__coll_recv(c, root, recvbuf, blocks_bytes(off, c->rank), 0);
}
