/*
 * All-to-one barrier (Gloo's "all to one").
 *
 * Every rank but rank 0 sends an empty message to rank 0 and waits for one back; rank 0 waits
 * for all p - 1 of them, then answers every rank at once.
 *
 * Preconditions: none; any p.
 *
 * Cost: two latency steps whatever p is, but rank 0 receives and sends p - 1 messages:
 *     2 alpha + 2 (p - 1) o  at rank 0 (o: the cost of handling one message)
 * Right for few ranks, and where ranks outnumber cores: a rank that is not scheduled delays
 * only rank 0's gathering, never a chain of rounds as in dissemination, where every rank must
 * run in every round.
 */
#include "coll/barrier/barrier.h"

#include <stdlib.h>

#define STEP_IN 0
#define STEP_OUT 1

static int all_to_one_root(coll *c)
{
    int others = c->size - 1;
    cgloo_request **reqs = calloc((size_t)others, sizeof *reqs);
    if (!reqs)
        return cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for %d requests", others);
    int rc = CGLOO_OK, n = 0;
    for (int r = 1; rc == CGLOO_OK && r < c->size; r++)
        rc = cgloo__coll_irecv(c, r, NULL, 0, STEP_IN, &reqs[n++]);
    rc = cgloo__coll_finish(c, reqs, n, rc);
    n = 0;
    for (int r = 1; rc == CGLOO_OK && r < c->size; r++)
        rc = cgloo__coll_isend(c, r, NULL, 0, STEP_OUT, &reqs[n++]);
    rc = cgloo__coll_finish(c, reqs, n, rc);
    free(reqs);
    return rc;
}

int cgloo__barrier_all_to_one(coll *c)
{
    if (c->rank == 0)
        return all_to_one_root(c);
    int rc = cgloo__coll_send(c, 0, NULL, 0, STEP_IN);
    return rc == CGLOO_OK ? cgloo__coll_recv(c, 0, NULL, 0, STEP_OUT) : rc;
}
