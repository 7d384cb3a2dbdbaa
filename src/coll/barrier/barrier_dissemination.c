/*
 * Dissemination barrier (Hensgen, Finkel and Manber).
 *
 * In round k (distance d = 2^k) rank r sends an empty message to rank r + d and waits for one
 * from rank r - d (mod p). After round k, rank r has heard, directly or through the chain of
 * earlier rounds, from the 2^(k+1) - 1 ranks before it; after ceil(lg p) rounds, from all.
 * No rank can leave before the last one has entered.
 *
 * Preconditions: none. Non-power-of-two p: works unchanged (distances wrap mod p, and the
 * last round may hear from ranks already heard from, which is harmless), unlike the butterfly
 * barrier that needs a power of two or a fold.
 *
 * Cost: ceil(lg p) latency steps, p ceil(lg p) empty messages on the wire:
 *     ceil(lg p) alpha
 */
#include "coll/barrier/barrier.h"

int cgloo__barrier_dissemination(coll *c)
{
    int rc = CGLOO_OK;
    unsigned round = 0;
    for (int d = 1; rc == CGLOO_OK && d < c->size; d *= 2, round++) {
        int to = (c->rank + d) % c->size, from = (c->rank - d + c->size) % c->size;
        rc = cgloo__coll_sendrecv(c, to, NULL, 0, from, NULL, 0, round);
    }
    return rc;
}
