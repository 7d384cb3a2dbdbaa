/*
 * Reduce-scatter (and reduce_scatterv) through shared-memory slots (coll/slots.h).
 *
 * Every rank writes block j of its input into its slot of rank j, all at once, publishes them,
 * then reduces its own block out of the peers' slots in rank order, ((x0 op x1) op x2) ...
 * (cgloo__slots_reduce): one cache-line hand-off each way for small blocks, no message. Blocks
 * larger than a slot go in rounds of a slot's payload in whole elements; every rank runs as
 * many rounds as the largest block needs (every rank knows the offsets).
 *
 * Preconditions: every peer reached through shared memory and a caller tag below
 * CGLOO_SLOT_CHANNELS (ENOTSUP otherwise); any P, uneven and empty blocks; step_base unused
 * (no message). Cost per round: 1 latency step; each rank copies its P-1 other blocks into the
 * slots and reduces P-1 of its own.
 */
#include "coll/reduce_scatter/reduce_scatter.h"
#include "coll/pattern/blocks.h"
#include "coll/slots.h"

/* shm_round moves and reduces the part of every block from element `from` on, at most `per`
 * elements of each. */
static int shm_round(coll *c, slot_set *s, const void *sendbuf, void *recvbuf, const size_t *off,
                     size_t from, size_t per)
{
    size_t mine = cgloo__slots_part(off[c->rank + 1] - off[c->rank], from, per);
    for (int i = 0; i < s->n; i++) {
        int r = s->p[i].rank;
        size_t n = cgloo__slots_part(off[r + 1] - off[r], from, per);
        s->p[i].out = n ? cgloo__elem(c, sendbuf, off[r] + from) : NULL;
        s->p[i].out_len = n * c->esize;
    }
    int rc = cgloo__slots_put_each(s);
    if (rc == CGLOO_OK)
        rc = cgloo__slots_wait(s, mine * c->esize);
    if (rc != CGLOO_OK)
        return rc;
    if (mine) /* in place, recvbuf is this rank's block of sendbuf */
        cgloo__slots_reduce(s, cgloo__elem(c, recvbuf, from),
                            cgloo__elem(c, sendbuf, off[c->rank] + from), mine);
    cgloo__slots_done(s);
    return CGLOO_OK;
}

int cgloo__reduce_scatter_shm(coll *c, const void *sendbuf, void *recvbuf, const size_t *offsets,
                              unsigned step_base)
{
    (void)step_base;
    size_t per = CGLOO_SLOT_DATA / c->esize, largest = blocks_largest(offsets, c->size);
    slot_set s;
    int rc = cgloo__slots_open(c, &s, -1);
    size_t rounds = cgloo__slots_rounds(largest, per);
    for (size_t k = 0; k < rounds && rc == CGLOO_OK; k++)
        rc = shm_round(c, &s, sendbuf, recvbuf, offsets, k * per, per);
    cgloo__slots_close(&s);
    return rc;
}
