/*
 * cgloo_barrier: the algorithm table and the selector.
 */
#include "coll/barrier/barrier.h"

const coll_algorithm cgloo__barrier_algorithms[] = {
    {"dissemination", "ceil(lg p) rounds of empty messages to rank + 2^k, any p",
     (coll_fn)cgloo__barrier_dissemination},
    {"all_to_one", "empty messages in to rank 0 and back out, two steps; few ranks",
     (coll_fn)cgloo__barrier_all_to_one},
    {NULL, NULL, NULL},
};

#define ALGO_COUNT (CGLOO_ARRAY_LEN(cgloo__barrier_algorithms) - 1)

/* All to one from 3 to this many ranks: two hops whatever the size, where dissemination needs
 * every rank to run in each of its lg p rounds. Measured with ranks outnumbering the 2 cores:
 * 4 ranks 15-19 us against 28-29 us, 8 ranks 41-44 us against 84-91 us. Two ranks: one
 * exchange in dissemination, two hops in all to one. Many ranks: rank 0 would handle 2 (p - 1)
 * messages in a row. */
#define ALL_TO_ONE_MAX_RANKS 8

static const coll_algorithm *barrier_select(const coll *c)
{
    if (c->size > 2 && c->size <= ALL_TO_ONE_MAX_RANKS)
        return &cgloo__barrier_algorithms[1];
    return &cgloo__barrier_algorithms[0];
}

int cgloo_barrier(cgloo_context *ctx, const cgloo_coll_opts *opts)
{
    coll c;
    int rc = cgloo__coll_begin(&c, ctx, "barrier", CGLOO_UINT8, opts);
    if (rc != CGLOO_OK)
        return rc;
    const coll_algorithm *a =
        cgloo__coll_find(&c, cgloo__barrier_algorithms, ALGO_COUNT, opts, barrier_select(&c));
    if (!a)
        return CGLOO_ENOTSUP;
    return c.size == 1 ? CGLOO_OK : ((barrier_fn)a->fn)(&c);
}
