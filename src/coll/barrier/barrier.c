/*
 * cgloo_barrier: the algorithm table and the (one-entry) selector.
 */
#include "coll/barrier/barrier.h"

const coll_algorithm cgloo__barrier_algorithms[] = {
    {"dissemination", "ceil(lg p) rounds of empty messages to rank + 2^k, any p",
     (coll_fn)cgloo__barrier_dissemination},
    {NULL, NULL, NULL},
};

#define ALGO_COUNT (CGLOO_ARRAY_LEN(cgloo__barrier_algorithms) - 1)

int cgloo_barrier(cgloo_context *ctx, const cgloo_coll_opts *opts)
{
    coll c;
    int rc = cgloo__coll_begin(&c, ctx, "barrier", CGLOO_UINT8, opts);
    if (rc != CGLOO_OK)
        return rc;
    const coll_algorithm *a = cgloo__coll_find(&c, cgloo__barrier_algorithms, ALGO_COUNT, opts,
                                               &cgloo__barrier_algorithms[0]);
    if (!a)
        return CGLOO_ENOTSUP;
    return c.size == 1 ? CGLOO_OK : ((barrier_fn)a->fn)(&c);
}
