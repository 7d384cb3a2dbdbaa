/*
 * Allreduce, recursive doubling.
 *
 * In step k (k = 0 .. log2(P')-1) rank r exchanges its whole partial vector with rank r ^ 2^k
 * and reduces. After log2(P') steps every rank holds the full reduction.
 *
 * Non-power-of-two P: let P' be the largest power of two <= P. Each "extra" rank P'+i first
 * sends its vector to rank i and waits; rank i reduces it in, the P' ranks run the doubling,
 * and rank i sends the result back to P'+i. That costs two more latency steps on those ranks.
 *
 * Cost: log2(P') (+2) latency steps; each rank sends log2(P') n bytes. For tiny vectors.
 * Results are identical on every rank when the op is commutative (all built-in ops are).
 */
#include "coll/allreduce/allreduce.h"
#include "coll/pattern/pow2.h"

#include <stdlib.h>

#define STEP_FOLD_IN 1
#define STEP_FOLD_OUT 2
#define STEP_EXCHANGE 3 /* + k */

/* rd_core: the doubling among ranks 0 .. p2-1. */
static int rd_core(coll *c, void *buf, void *tmp, size_t count, int p2)
{
    size_t bytes = count * c->esize;
    for (int mask = 1, k = 0; mask < p2; mask <<= 1, k++) {
        int peer = c->rank ^ mask;
        int rc = cgloo__coll_sendrecv(c, peer, buf, bytes, peer, tmp, bytes,
                                      STEP_EXCHANGE + (unsigned)k);
        if (rc != CGLOO_OK)
            return rc;
        cgloo__coll_reduce(c, buf, tmp, count);
    }
    return CGLOO_OK;
}

int cgloo__allreduce_recursive_doubling(coll *c, void *buf, size_t count)
{
    size_t bytes = count * c->esize;
    int p2 = pow2_floor(c->size);
    if (c->rank >= p2) {
        /* an extra rank: hand the vector to its partner, get the result back */
        int partner = c->rank - p2;
        int rc = cgloo__coll_send(c, partner, buf, bytes, STEP_FOLD_IN);
        return rc != CGLOO_OK ? rc : cgloo__coll_recv(c, partner, buf, bytes, STEP_FOLD_OUT);
    }
    void *tmp = malloc(bytes);
    if (!tmp)
        return CGLOO_ENOMEM;
    int extra = c->rank + p2 < c->size ? c->rank + p2 : -1;
    int rc = CGLOO_OK;
    if (extra >= 0 && (rc = cgloo__coll_recv(c, extra, tmp, bytes, STEP_FOLD_IN)) == CGLOO_OK)
        cgloo__coll_reduce(c, buf, tmp, count);
    if (rc == CGLOO_OK)
        rc = rd_core(c, buf, tmp, count, p2);
    if (rc == CGLOO_OK && extra >= 0)
        rc = cgloo__coll_send(c, extra, buf, bytes, STEP_FOLD_OUT);
    free(tmp);
    return rc;
}
