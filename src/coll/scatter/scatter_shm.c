/*
 * Scatter (and scatterv) through shared-memory slots (coll/slots.h).
 *
 * The root writes each rank's block into its slot of that rank and publishes them all at once;
 * every other rank copies its block out of its slot from the root: one cache-line hand-off for
 * a small block, no message, and the root is done as soon as it has published. Blocks larger
 * than a slot go in slot-sized rounds; every rank runs as many rounds as the largest block
 * needs (every rank knows every block's size).
 *
 * Preconditions: every peer reached through shared memory and a caller tag below
 * CGLOO_SLOT_CHANNELS (ENOTSUP otherwise); any P and root, uneven and empty blocks. Cost per
 * round: 1 latency step; the root copies the P-1 blocks into the slots, every other rank its
 * own out.
 */
#include "coll/pattern/blocks.h"
#include "coll/scatter/scatter.h"
#include "coll/slots.h"

static int shm_root_round(slot_set *s, const uint8_t *sendbuf, const size_t *off, size_t from)
{
    for (int i = 0; i < s->n; i++) {
        int r = s->p[i].rank;
        s->p[i].out_len = cgloo__slots_part(blocks_bytes(off, r), from, CGLOO_SLOT_DATA);
        s->p[i].out = s->p[i].out_len ? sendbuf + off[r] + from : NULL;
    }
    return cgloo__slots_put_each(s);
}

static int shm_leaf_round(slot_set *s, uint8_t *recvbuf, size_t own, size_t from)
{
    size_t n = cgloo__slots_part(own, from, CGLOO_SLOT_DATA);
    cgloo__slots_next(s);
    int rc = cgloo__slots_wait(s, n);
    if (rc != CGLOO_OK)
        return rc;
    if (n)
        memcpy(recvbuf + from, cgloo__slots_data(s, 0), n);
    cgloo__slots_done(s);
    return CGLOO_OK;
}

int cgloo__scatter_shm(coll *c, const void *sendbuf, const size_t *off, void *recvbuf, int root)
{
    size_t largest = blocks_largest(off, c->size), own = blocks_bytes(off, c->rank);
    slot_set s;
    int rc = cgloo__slots_open(c, &s, c->rank == root ? -1 : root);
    size_t rounds = cgloo__slots_rounds(largest, CGLOO_SLOT_DATA);
    for (size_t k = 0; k < rounds && rc == CGLOO_OK; k++) {
        size_t from = k * CGLOO_SLOT_DATA;
        rc = c->rank == root ? shm_root_round(&s, sendbuf, off, from)
                             : shm_leaf_round(&s, recvbuf, own, from);
    }
    cgloo__slots_close(&s);
    return rc;
}
