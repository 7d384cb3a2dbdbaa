/*
 * Allreduce, recursive doubling.
 *
 * In step k (k = 0 .. log2(P')-1) each rank exchanges its whole partial vector with the rank
 * whose virtual rank differs from its own in bit k, and reduces. After log2(P') steps every
 * rank holds the full reduction.
 *
 * Non-power-of-two P: the fold of pattern/fold.h. Let P' be the largest power of two <= P and
 * q = P - P'. Among the first 2q ranks each even rank 2i sends its vector to rank 2i+1 and
 * waits; rank 2i+1 reduces it in, the P' ranks left run the doubling on their virtual ranks, and
 * rank 2i+1 sends the result back to rank 2i. That costs two more latency steps on those ranks.
 * cgloo__allreduce_folded, here, is that fold around any core; halving-doubling uses it too.
 *
 * Preconditions: a commutative, associative op. Results are identical on every rank: both ranks
 * of an exchange evaluate the same reduction of the same two partial vectors.
 * Cost: log2(P') (+2) latency steps; each rank sends log2(P') n bytes (a folded pair n more).
 * For tiny vectors, where the steps count and the bytes do not.
 */
#include "coll/allreduce/allreduce.h"
#include "coll/pattern/fold.h"
#include "coll/pattern/halving.h"

#include <stdlib.h>

#define STEP_FOLD_IN 1
#define STEP_FOLD_OUT 2
#define STEP_EXCHANGE 3 /* + k */

/* rd_core: the doubling among the P' survivors. */
static int rd_core(coll *c, const fold_plan *f, void *buf, void *tmp, size_t count)
{
    size_t bytes = count * c->esize;
    for (int k = 0; k < f->steps; k++) {
        int peer = fold_real(f, doubling_step_at(f->vrank, k).peer);
        int rc = cgloo__coll_sendrecv(c, peer, buf, bytes, peer, tmp, bytes,
                                      STEP_EXCHANGE + (unsigned)k);
        if (rc != CGLOO_OK)
            return rc;
        cgloo__coll_reduce(c, buf, tmp, count);
    }
    return CGLOO_OK;
}

/* The fold's messages are the same for every core, so the step numbers below STEP_EXCHANGE
 * serve halving-doubling too. */
int cgloo__allreduce_folded(coll *c, void *buf, size_t count, allreduce_core_fn core)
{
    size_t bytes = count * c->esize;
    fold_plan f = fold_plan_make(c->rank, c->size);
    if (fold_away(&f)) {
        int rc = cgloo__coll_send(c, f.partner, buf, bytes, STEP_FOLD_IN);
        return rc != CGLOO_OK ? rc : cgloo__coll_recv(c, f.partner, buf, bytes, STEP_FOLD_OUT);
    }
    void *tmp = malloc(CGLOO_MAX(bytes, 1));
    if (!tmp)
        return cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for %zu bytes of scratch", bytes);
    int rc = CGLOO_OK;
    if (f.partner >= 0 &&
        (rc = cgloo__coll_recv(c, f.partner, tmp, bytes, STEP_FOLD_IN)) == CGLOO_OK)
        cgloo__coll_reduce(c, buf, tmp, count);
    if (rc == CGLOO_OK)
        rc = core(c, &f, buf, tmp, count);
    if (rc == CGLOO_OK && f.partner >= 0)
        rc = cgloo__coll_send(c, f.partner, buf, bytes, STEP_FOLD_OUT);
    free(tmp);
    return rc;
}

int cgloo__allreduce_recursive_doubling(coll *c, void *buf, size_t count)
{
    return cgloo__allreduce_folded(c, buf, count, rd_core);
}
