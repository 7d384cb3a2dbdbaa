/*
 * Barrier through shared-memory slots (coll/slots.h).
 *
 * Every rank publishes an empty slot to each peer and waits until every peer has published
 * its own: one round, each rank writing P - 1 cache lines and reading P - 1.
 *
 * Preconditions: every peer reached through shared memory and a caller tag below
 * CGLOO_SLOT_CHANNELS (ENOTSUP otherwise); any P. Cost: 1 latency step (a cache-line
 * hand-off), P - 1 writes and reads per rank.
 */
#include "coll/barrier/barrier.h"
#include "coll/slots.h"

int cgloo__barrier_shm(coll *c)
{
    slot_set s;
    int rc = cgloo__slots_open(c, &s, -1);
    if (rc != CGLOO_OK)
        return rc;
    rc = cgloo__slots_put(&s, NULL, 0);
    if (rc == CGLOO_OK)
        rc = cgloo__slots_wait(&s, 0);
    if (rc == CGLOO_OK)
        cgloo__slots_done(&s);
    cgloo__slots_close(&s);
    return rc;
}
