/*
 * Flat broadcast (Gloo's "one to all").
 *
 * The root sends the whole message to every other rank, all sends posted at once; every other
 * rank receives once from the root.
 *
 * Preconditions: none; any p.
 *
 * Cost: one latency step for every receiver, but the root puts p - 1 messages on the wire:
 *     alpha + (p - 1) n beta  at the root
 * Right for small messages over few ranks, and where ranks outnumber cores: every receiver
 * waits for one hop only, where in a tree a message may wait for its forwarder to be
 * scheduled before it moves on.
 */
#include "coll/broadcast/broadcast.h"

#include <stdlib.h>

int cgloo__broadcast_flat(coll *c, void *buf, size_t bytes, int root)
{
    if (c->rank != root)
        return cgloo__coll_recv(c, root, buf, bytes, 0);
    cgloo_request **reqs = calloc((size_t)c->size, sizeof *reqs);
    if (!reqs)
        return cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for %d requests", c->size);
    int rc = CGLOO_OK, n = 0;
    for (int i = 1; rc == CGLOO_OK && i < c->size; i++)
        rc = cgloo__coll_isend(c, (root + i) % c->size, buf, bytes, 0, &reqs[n++]);
    rc = cgloo__coll_finish(c, reqs, n, rc);
    free(reqs);
    return rc;
}
