/*
 * Reduce through shared-memory slots (coll/slots.h).
 *
 * Every rank but the root writes its vector into its slot of the root and publishes it; the
 * root waits for all of them and reduces them out of the slots in rank order, ((x0 op x1) op
 * x2) ... (cgloo__slots_reduce, the expression allreduce's shm and direct compute): one
 * cache-line hand-off for a small vector, no message, and a rank other than the root is done
 * as soon as it has published. A vector larger than a slot goes in rounds of a slot's payload
 * in whole elements.
 *
 * Preconditions: every peer reached through shared memory and a caller tag below
 * CGLOO_SLOT_CHANNELS (ENOTSUP otherwise); any P and root. Cost per round: 1 latency step; every
 * rank copies its vector into the root's slot, the root reduces P-1 of them.
 */
#include "coll/reduce/reduce.h"
#include "coll/slots.h"

static int shm_root_round(coll *c, slot_set *s, const void *chunk, void *out, size_t n)
{
    cgloo__slots_next(s);
    int rc = cgloo__slots_wait(s, n * c->esize);
    if (rc != CGLOO_OK)
        return rc;
    cgloo__slots_reduce(s, out, chunk, n); /* in place, out is chunk */
    cgloo__slots_done(s);
    return CGLOO_OK;
}

int cgloo__reduce_shm(coll *c, const void *sendbuf, void *recvbuf, size_t count, int root)
{
    size_t per = CGLOO_SLOT_DATA / c->esize;
    slot_set s;
    int rc = cgloo__slots_open(c, &s, c->rank == root ? -1 : root);
    for (size_t from = 0; from < count && rc == CGLOO_OK; from += per) {
        size_t n = CGLOO_MIN(per, count - from);
        const void *chunk = cgloo__elem(c, sendbuf, from);
        if (c->rank == root)
            rc = shm_root_round(c, &s, chunk, cgloo__elem(c, recvbuf, from), n);
        else
            rc = cgloo__slots_put(&s, chunk, n * c->esize);
    }
    cgloo__slots_close(&s);
    return rc;
}
