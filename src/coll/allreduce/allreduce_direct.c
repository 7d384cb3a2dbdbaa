/*
 * Allreduce, direct exchange.
 *
 * Every rank sends its whole vector to every other rank and receives all of theirs in one step,
 * then reduces the P vectors in rank order, so every rank computes the same expression and gets
 * the same bits. With two ranks this is a single exchange: the lowest latency there is.
 *
 * Any P. Cost: 1 latency step; each rank sends and receives (P-1) n bytes and reduces
 * (P-1) n bytes, so it is for tiny vectors or two ranks.
 */
#include "coll/allreduce/allreduce.h"

#include <stdlib.h>

#define STEP_DIRECT 1

/* direct_post receives every peer's vector into its slot of all[] and sends ours to each. */
static int direct_post(coll *c, const void *buf, uint8_t *all, size_t bytes, cgloo_request **reqs)
{
    int n = 0, rc = CGLOO_OK;
    for (int p = 0; p < c->size && rc == CGLOO_OK; p++) {
        if (p == c->rank)
            continue;
        rc = cgloo__coll_irecv(c, p, all + (size_t)p * bytes, bytes, STEP_DIRECT, &reqs[n++]);
        if (rc == CGLOO_OK)
            rc = cgloo__coll_isend(c, p, buf, bytes, STEP_DIRECT, &reqs[n++]);
    }
    return cgloo__coll_finish(c, reqs, n, rc);
}

int cgloo__allreduce_direct(coll *c, void *buf, size_t count)
{
    size_t bytes = count * c->esize;
    if (bytes > SIZE_MAX / (size_t)c->size)
        return cgloo__coll_error(c, CGLOO_EINVAL, "%zu bytes from each of %d ranks overflow", bytes,
                                 c->size);
    uint8_t *all = malloc(bytes * (size_t)c->size);
    cgloo_request **reqs = calloc(2 * (size_t)c->size, sizeof *reqs);
    int rc = all && reqs ? CGLOO_OK : CGLOO_ENOMEM;
    if (rc == CGLOO_OK) {
        memcpy(all + (size_t)c->rank * bytes, buf, bytes);
        rc = direct_post(c, buf, all, bytes, reqs);
    }
    if (rc == CGLOO_OK) {
        /* ((x0 op x1) op x2) ... in rank order on every rank */
        memcpy(buf, all, bytes);
        for (int p = 1; p < c->size; p++)
            cgloo__coll_reduce(c, buf, all + (size_t)p * bytes, count);
    }
    free(all);
    free(reqs);
    return rc;
}
