/*
 * cgloo_barrier: the algorithm table and the selector.
 */
#include "coll/barrier/barrier.h"
#include "coll/slots.h"

/* The algorithms, in the order cgloo_algorithm_names("barrier") lists them. */
typedef enum barrier_algorithm {
    BARRIER_DISSEMINATION,
    BARRIER_ALL_TO_ONE,
    BARRIER_SHM,
    BARRIER_ALGORITHM_COUNT
} barrier_algorithm;

const coll_algorithm cgloo__barrier_algorithms[BARRIER_ALGORITHM_COUNT + 1] = {
    [BARRIER_DISSEMINATION] = {"dissemination",
                               "ceil(lg p) rounds of empty messages to rank + 2^k, any p"},
    [BARRIER_ALL_TO_ONE] = {"all_to_one",
                            "empty messages in to rank 0 and back out, two steps; few ranks"},
    [BARRIER_SHM] = {"shm", "every rank publishes a shared-memory slot to every other, one step "
                            "(every peer on this host over shm)"},
};

static const barrier_fn barrier_fns[BARRIER_ALGORITHM_COUNT] = {
    [BARRIER_DISSEMINATION] = cgloo__barrier_dissemination,
    [BARRIER_ALL_TO_ONE] = cgloo__barrier_all_to_one,
    [BARRIER_SHM] = cgloo__barrier_shm,
};

/* All to one from 3 to this many ranks: two hops whatever the size, where dissemination needs
 * every rank to run in each of its lg p rounds. Measured with ranks outnumbering the 2 cores:
 * 4 ranks 15-19 us against 28-29 us, 8 ranks 41-44 us against 84-91 us. Two ranks: one
 * exchange in dissemination, two hops in all to one. Many ranks: rank 0 would handle 2 (p - 1)
 * messages in a row. */
#define ALL_TO_ONE_MAX_RANKS 8

static barrier_algorithm barrier_select_messages(const coll *c)
{
    if (c->size > 2 && c->size <= ALL_TO_ONE_MAX_RANKS)
        return BARRIER_ALL_TO_ONE;
    return BARRIER_DISSEMINATION;
}

static barrier_algorithm barrier_select(coll *c)
{
    if (cgloo__coll_slots_usable(c))
        return BARRIER_SHM; /* one cache-line hand-off per peer, no message */
    return barrier_select_messages(c);
}

int cgloo_barrier(cgloo_context *ctx, const cgloo_coll_opts *opts)
{
    COLL_DECL(c);
    int rc = cgloo__coll_begin(&c, ctx, "barrier", CGLOO_UINT8, opts);
    if (rc != CGLOO_OK)
        return rc;
    int a = cgloo__coll_find(&c, cgloo__barrier_algorithms, BARRIER_ALGORITHM_COUNT, opts,
                             barrier_select(&c));
    if (a < 0)
        return a;
    if (a == BARRIER_SHM && c.size > 1 && !cgloo__coll_slots_reach(&c))
        a = cgloo__coll_slots_fallback(&c, cgloo__barrier_algorithms, barrier_select_messages(&c));
    return c.size == 1 ? CGLOO_OK : barrier_fns[a](&c);
}
