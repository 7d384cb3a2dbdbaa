/*
 * Binomial-tree gather.
 *
 * Ranks are numbered relative to the root (pattern/tree.h). The subtree of relative rank v is
 * the contiguous range [v, v + span), so each rank gathers its subtree's blocks, in relative
 * order, into one buffer: its own block, then one message from each child (posted at once),
 * then sends the whole range to its parent as one message. The root, unless it is rank 0,
 * gathers in relative order into a scratch buffer and rotates it into place with two copies.
 *
 * Preconditions: every rank knows every block size (gather, and gatherv's recvcounts on every
 * rank). Non-power-of-two p: the tree is cut at p; depth ceil(lg p).
 *
 * Cost: ceil(lg p) latency steps. A rank at depth d forwards its subtree; the root receives
 * n (p - 1)/p bytes, but the data crosses up to lg p links, n lg(p)/2 bytes on the wire:
 *     ceil(lg p) alpha + n ((p - 1)/p) beta   (plus copies at the root if root != 0)
 * For small blocks, where the direct gather's p - 1 messages into one rank cost more.
 */
#include "coll/gather/gather.h"
#include "coll/pattern/blocks.h"
#include "coll/pattern/tree.h"

typedef struct gtree {
    coll *c;
    const size_t *off;
    int root, vrank, span;
    size_t base, total; /* where the subtree starts in relative order, and its bytes */
    uint8_t *tmp;       /* the subtree's blocks in relative order */
} gtree;

/* gtree_children receives each child's subtree into its place in tmp. */
static int gtree_children(gtree *t)
{
    cgloo_request *reqs[32] = {NULL};
    int n = 0, rc = CGLOO_OK, size = t->c->size;
    for (int m = 1; rc == CGLOO_OK && m < t->span; m *= 2) {
        int child = t->vrank + m, cspan = binomial_span(child, size);
        size_t lo = blocks_rel_off(t->off, size, t->root, child) - t->base;
        size_t hi = blocks_rel_off(t->off, size, t->root, child + cspan) - t->base;
        rc = cgloo__coll_irecv(t->c, abs_rank(child, t->root, size), t->tmp + lo, hi - lo, 0,
                               &reqs[n++]);
    }
    return cgloo__coll_finish(t->c, reqs, n, rc);
}

/* gtree_rotate moves the root's relative-order scratch into rank order. */
static void gtree_rotate(const gtree *t, uint8_t *recvbuf)
{
    size_t head = t->off[t->c->size] - t->off[t->root]; /* blocks root..size-1 */
    memcpy(recvbuf + t->off[t->root], t->tmp, head);
    memcpy(recvbuf, t->tmp + head, t->off[t->root]);
}

int cgloo__gather_binomial(coll *c, const void *sendbuf, void *recvbuf, const size_t *off, int root)
{
    int size = c->size, vr = rel_rank(c->rank, root, size);
    gtree t = {.c = c, .off = off, .root = root, .vrank = vr, .span = binomial_span(vr, size)};
    t.base = blocks_rel_off(off, size, root, vr);
    t.total = blocks_rel_off(off, size, root, vr + t.span) - t.base;
    size_t own = blocks_bytes(off, c->rank);
    int parent = abs_rank(binomial_parent(vr), root, size);
    if (t.span == 1) /* a leaf sends its own block */
        return cgloo__coll_send(c, parent, sendbuf, own, 0);
    bool scratch = !(vr == 0 && root == 0);
    t.tmp = scratch ? malloc(t.total ? t.total : 1) : recvbuf;
    if (!t.tmp)
        return cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for %zu bytes", t.total);
    if (scratch && own) /* the root's own block is already in its recvbuf */
        memcpy(t.tmp, vr == 0 ? (uint8_t *)recvbuf + off[root] : sendbuf, own);
    int rc = gtree_children(&t);
    if (rc == CGLOO_OK && vr != 0)
        rc = cgloo__coll_send(c, parent, t.tmp, t.total, 0);
    else if (rc == CGLOO_OK && scratch)
        gtree_rotate(&t, recvbuf);
    if (scratch)
        free(t.tmp);
    return rc;
}
