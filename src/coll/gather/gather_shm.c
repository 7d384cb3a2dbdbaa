/*
 * Gather (and gatherv) through shared-memory slots (coll/slots.h).
 *
 * Every rank but the root writes its block into its slot of the root and publishes it; the
 * root waits for all of them and copies each out of its slot into its place in recvbuf: one
 * cache-line hand-off for a small block, no message, and a rank other than the root is done as
 * soon as it has published. Blocks larger than a slot go in slot-sized rounds; every rank runs
 * as many rounds as the largest block needs (every rank knows every block's size).
 *
 * Preconditions: every peer reached through shared memory and a caller tag below
 * CGLOO_SLOT_CHANNELS (ENOTSUP otherwise); any P and root, uneven and empty blocks. Cost per
 * round: 1 latency step; every rank copies its block into the root's slot, the root copies the
 * P-1 blocks out.
 */
#include "coll/gather/gather.h"
#include "coll/pattern/blocks.h"
#include "coll/slots.h"

static int shm_root_round(slot_set *s, uint8_t *recvbuf, const size_t *off, size_t from)
{
    cgloo__slots_next(s);
    cgloo__slots_expect_blocks(s, off, from);
    int rc = cgloo__slots_wait_each(s);
    if (rc != CGLOO_OK)
        return rc;
    cgloo__slots_take_blocks(s, recvbuf, off, from);
    cgloo__slots_done(s);
    return CGLOO_OK;
}

int cgloo__gather_shm(coll *c, const void *sendbuf, void *recvbuf, const size_t *off, int root)
{
    size_t largest = blocks_largest(off, c->size), own = blocks_bytes(off, c->rank);
    slot_set s;
    int rc = cgloo__slots_open(c, &s, c->rank == root ? -1 : root);
    size_t rounds = cgloo__slots_rounds(largest, CGLOO_SLOT_DATA);
    for (size_t k = 0; k < rounds && rc == CGLOO_OK; k++) {
        size_t from = k * CGLOO_SLOT_DATA;
        size_t n = cgloo__slots_part(own, from, CGLOO_SLOT_DATA);
        if (c->rank == root)
            rc = shm_root_round(&s, recvbuf, off, from);
        else /* sendbuf may be NULL where this rank has nothing to give */
            rc = cgloo__slots_put(&s, n ? (const uint8_t *)sendbuf + from : NULL, n);
    }
    cgloo__slots_close(&s);
    return rc;
}
