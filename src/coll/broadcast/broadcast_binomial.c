/*
 * Binomial-tree broadcast.
 *
 * Ranks are numbered relative to the root (pattern/tree.h). Each rank but the root receives the
 * whole message from its parent, then sends it to its children, the child with the largest
 * subtree first, all sends posted at once. After step k, 2^k ranks hold the message.
 *
 * Preconditions: none. Non-power-of-two p: the tree is simply cut at p (children at or past p
 * do not exist), so the depth is ceil(lg p).
 *
 * Cost: ceil(lg p) latency steps, the whole message at each:
 *     ceil(lg p) (alpha + n beta)
 * p - 1 messages of n bytes on the wire in all; the root sends ceil(lg p) of them. Right for
 * small messages; large ones want the pipeline, whose time does not grow with lg p times n.
 */
#include "coll/broadcast/broadcast.h"
#include "coll/pattern/tree.h"

int cgloo__broadcast_binomial(coll *c, void *buf, size_t bytes, int root)
{
    int size = c->size, vr = rel_rank(c->rank, root, size);
    int rc = CGLOO_OK;
    if (vr != 0)
        rc = cgloo__coll_recv(c, abs_rank(binomial_parent(vr), root, size), buf, bytes, 0);
    cgloo_request *reqs[32] = {NULL};
    int n = 0, span = binomial_span(vr, size), top = 1;
    while (top * 2 < span)
        top *= 2;
    for (int m = top; rc == CGLOO_OK && m >= 1 && m < span; m /= 2)
        rc = cgloo__coll_isend(c, abs_rank(vr + m, root, size), buf, bytes, 0, &reqs[n++]);
    return cgloo__coll_finish(c, reqs, n, rc);
}
