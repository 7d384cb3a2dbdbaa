/*
 * Reduce, "reduce_scatter_gather": reduce-scatter, then gather to the root (Rabenseifner's
 * reduce).
 *
 * The vector is cut into P nearly equal blocks (block_offset). A ring reduce-scatter leaves
 * block r reduced on rank r; then every rank sends its block to the root, which receives them
 * all at once straight into recvbuf. The root's own block is reduced in recvbuf directly.
 *
 * Any P and any root: the ring needs no power of two. Blocks may be empty (count < P); their
 * messages are skipped on both sides. Preconditions: a commutative, associative op.
 *
 * Cost, for n bytes: P-1 latency steps in the ring plus one for the gather. Every rank sends
 * (P-1)/P n bytes in the ring and n/P to the root; the root receives (P-1)/P n bytes in each
 * phase. The reduction, (P-1)/P n bytes a rank, is spread over all ranks instead of landing on
 * the root, and no link carries more than 2 n: for large vectors.
 * Memory: the ring's two blocks of scratch, and one block for a non-root rank's result.
 */
#include "coll/pattern/ring.h"
#include "coll/reduce/reduce.h"
#include "coll/reduce_scatter/reduce_scatter.h"

#include <stdlib.h>

#define STEP_RING 0 /* .. P-2, then the gather */

static int rsg_gather_root(coll *c, uint8_t *recvbuf, const size_t *off, unsigned step)
{
    cgloo_request **reqs = calloc((size_t)c->size, sizeof *reqs);
    if (!reqs)
        return cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for %d requests", c->size);
    int rc = CGLOO_OK;
    for (int q = 0; q < c->size && rc == CGLOO_OK; q++) {
        size_t bytes = (off[q + 1] - off[q]) * c->esize;
        if (q != c->rank && bytes)
            rc = cgloo__coll_irecv(c, q, cgloo__elem(c, recvbuf, off[q]), bytes, step, &reqs[q]);
    }
    rc = cgloo__coll_finish(c, reqs, c->size, rc);
    free(reqs);
    return rc;
}

static int rsg_nonroot(coll *c, const void *sendbuf, const size_t *off, int root)
{
    size_t bytes = (off[c->rank + 1] - off[c->rank]) * c->esize;
    uint8_t *block = malloc(CGLOO_MAX(bytes, 1));
    if (!block)
        return cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for %zu bytes", bytes);
    int rc = cgloo__reduce_scatter_ring(c, sendbuf, block, off, STEP_RING);
    if (rc == CGLOO_OK && bytes)
        rc = cgloo__coll_send(c, root, block, bytes,
                              STEP_RING + cgloo__reduce_scatter_ring_steps(c->size));
    free(block);
    return rc;
}

int cgloo__reduce_rsg(coll *c, const void *sendbuf, void *recvbuf, size_t count, int root)
{
    size_t *off = malloc(((size_t)c->size + 1) * sizeof *off);
    if (!off)
        return cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for %d block offsets", c->size);
    for (int b = 0; b <= c->size; b++)
        off[b] = block_offset(count, c->size, b);
    int rc;
    if (c->rank != root) {
        rc = rsg_nonroot(c, sendbuf, off, root);
    } else {
        /* In place when sendbuf == recvbuf: the ring then sees its in-place form. */
        rc = cgloo__reduce_scatter_ring(c, sendbuf, cgloo__elem(c, recvbuf, off[root]), off,
                                        STEP_RING);
        if (rc == CGLOO_OK)
            rc = rsg_gather_root(c, recvbuf, off,
                                 STEP_RING + cgloo__reduce_scatter_ring_steps(c->size));
    }
    free(off);
    return rc;
}
