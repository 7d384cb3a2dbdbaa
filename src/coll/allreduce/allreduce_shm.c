/*
 * Allreduce through shared-memory slots (coll/slots.h).
 *
 * Every rank writes its vector into its slot of each peer and publishes it, then reduces the
 * P vectors straight out of the peers' slots in rank order, so every rank computes the same
 * expression and gets the same bits (as `direct` does, without a message: for a small vector
 * the hand-off is one cache-line transfer each way). A vector larger than a slot goes in
 * slot-sized chunks, one round each.
 *
 * Preconditions: every peer reached through shared memory and a caller tag below
 * CGLOO_SLOT_CHANNELS (ENOTSUP otherwise); any P. Cost per round: 1 latency step (a cache-line
 * hand-off); each rank copies (P-1) n bytes into the slots and reduces (P-1) n bytes, so the
 * selector takes it for small vectors and few ranks (allreduce.c).
 */
#include "coll/allreduce/allreduce.h"
#include "coll/slots.h"

/* shm_round reduces one chunk of count elements at buf. */
static int shm_round(coll *c, slot_set *s, void *buf, size_t count)
{
    size_t bytes = count * c->esize;
    /* ((x0 op x1) op x2) ... in rank order; rank 0's x0 is buf. Another rank's own vector is in
     * buf until x0 overwrites it, and in its published slot after, except that a lined one is
     * spread over the slot's lines: that one is copied here first. */
    _Alignas(16) uint8_t lined[CGLOO_SLOT_LINED_MAX];
    bool spread = c->rank != 0 && cgloo__slot_lined(bytes);
    if (spread)
        memcpy(lined, buf, bytes);
    int rc = cgloo__slots_put(s, buf, bytes);
    if (rc == CGLOO_OK)
        rc = cgloo__slots_wait(s, bytes);
    if (rc != CGLOO_OK)
        return rc;
    const void *own = NULL; /* rank 0 reduces into its own x0 and never reads it */
    if (c->rank != 0) {
        own = spread ? lined : s->p[0].link->tx[s->ch].buf[s->p[0].n & 1].data;
        memcpy(buf, cgloo__slots_data(s, 0), bytes);
    }
    for (int r = 1; r < c->size; r++)
        cgloo__coll_reduce(c, buf, r == c->rank ? own : cgloo__slots_data(s, r - (r > c->rank)),
                           count);
    cgloo__slots_done(s);
    return CGLOO_OK;
}

int cgloo__allreduce_shm(coll *c, void *buf, size_t count)
{
    slot_set s;
    int rc = cgloo__slots_open(c, &s, -1);
    if (rc != CGLOO_OK)
        return rc;
    size_t per = CGLOO_SLOT_DATA / c->esize;
    for (size_t off = 0; off < count && rc == CGLOO_OK; off += per)
        rc = shm_round(c, &s, cgloo__elem(c, buf, off), CGLOO_MIN(per, count - off));
    cgloo__slots_close(&s);
    return rc;
}
