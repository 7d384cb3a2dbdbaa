/*
 * Broadcast through shared-memory slots (coll/slots.h).
 *
 * The root writes the buffer into its slot of every other rank and publishes it; each rank
 * copies it out of its slot from the root. A buffer larger than a slot goes in slot-sized
 * chunks, one round each; the root reuses a slot once its reader is done with it (two rounds
 * later, the slots being double-buffered).
 *
 * Preconditions: every peer reached through shared memory and a caller tag below
 * CGLOO_SLOT_CHANNELS (ENOTSUP otherwise); any P. Cost per round: 1 latency step (a cache-line
 * hand-off); the root copies (P-1) n bytes, every other rank n.
 */
#include "coll/broadcast/broadcast.h"
#include "coll/slots.h"

static int shm_root_round(slot_set *s, const void *chunk, size_t n)
{
    return cgloo__slots_put(s, chunk, n);
}

static int shm_leaf_round(slot_set *s, void *chunk, size_t n)
{
    cgloo__slots_next(s);
    int rc = cgloo__slots_wait(s, n);
    if (rc != CGLOO_OK)
        return rc;
    memcpy(chunk, cgloo__slots_data(s, 0), n);
    cgloo__slots_done(s);
    return CGLOO_OK;
}

int cgloo__broadcast_shm(coll *c, void *buf, size_t bytes, int root)
{
    slot_set s;
    bool is_root = c->rank == root;
    int rc = cgloo__slots_open(c, &s, is_root ? -1 : root);
    if (rc != CGLOO_OK)
        return rc;
    for (size_t off = 0; off < bytes && rc == CGLOO_OK; off += CGLOO_SLOT_DATA) {
        size_t n = CGLOO_MIN((size_t)CGLOO_SLOT_DATA, bytes - off);
        uint8_t *chunk = (uint8_t *)buf + off;
        rc = is_root ? shm_root_round(&s, chunk, n) : shm_leaf_round(&s, chunk, n);
    }
    cgloo__slots_close(&s);
    return rc;
}
