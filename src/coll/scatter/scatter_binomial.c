/*
 * Binomial-tree scatter.
 *
 * Ranks are numbered relative to the root (pattern/tree.h). The subtree of relative rank v is
 * the contiguous range [v, v + span), so each rank receives its whole subtree's blocks from its
 * parent in one message, keeps its own block and sends each child its child's subtree (the
 * largest first, all posted at once). The root, unless it is rank 0, first rotates its buffer
 * into relative order in a scratch buffer; leaves receive straight into recvbuf.
 *
 * Preconditions: every rank knows every block size (scatter, and scatterv's sendcounts on every
 * rank). Non-power-of-two p: the tree is cut at p; depth ceil(lg p).
 *
 * Cost: ceil(lg p) latency steps; the root sends n (p - 1)/p bytes, the data crosses up to
 * lg p links:
 *     ceil(lg p) alpha + n ((p - 1)/p) beta   (plus copies on inner ranks)
 * For small blocks, where the direct scatter's p - 1 messages out of one rank cost more.
 */
#include "coll/pattern/blocks.h"
#include "coll/pattern/tree.h"
#include "coll/scatter/scatter.h"

typedef struct stree {
    coll *c;
    const size_t *off;
    int root, vrank, span;
    size_t base, total; /* where the subtree starts in relative order, and its bytes */
    const uint8_t *src; /* the subtree's blocks in relative order */
    uint8_t *tmp;       /* scratch holding them, when src is not the caller's sendbuf */
} stree;

/* stree_children sends each child its subtree's range of src, the largest first. */
static int stree_children(stree *t)
{
    cgloo_request *reqs[32] = {NULL};
    int n = 0, rc = CGLOO_OK, size = t->c->size, top = 1;
    while (top * 2 < t->span)
        top *= 2;
    for (int m = top; rc == CGLOO_OK && m >= 1 && m < t->span; m /= 2) {
        int child = t->vrank + m, cspan = binomial_span(child, size);
        size_t lo = blocks_rel_off(t->off, size, t->root, child) - t->base;
        size_t hi = blocks_rel_off(t->off, size, t->root, child + cspan) - t->base;
        rc = cgloo__coll_isend(t->c, abs_rank(child, t->root, size), t->src + lo, hi - lo, 0,
                               &reqs[n++]);
    }
    return cgloo__coll_finish(t->c, reqs, n, rc);
}

/* stree_source gets the subtree's blocks: from the parent, or from the root's sendbuf (rotated
 * into relative order unless the root is rank 0). */
static int stree_source(stree *t, const void *sendbuf)
{
    const uint8_t *sb = sendbuf;
    if (t->vrank == 0 && t->root == 0) {
        t->src = sb;
        return CGLOO_OK;
    }
    t->tmp = malloc(t->total ? t->total : 1);
    if (!t->tmp)
        return cgloo__coll_error(t->c, CGLOO_ENOMEM, "no memory for %zu bytes", t->total);
    t->src = t->tmp;
    if (t->vrank != 0) {
        int parent = abs_rank(binomial_parent(t->vrank), t->root, t->c->size);
        return cgloo__coll_recv(t->c, parent, t->tmp, t->total, 0);
    }
    size_t head = t->off[t->c->size] - t->off[t->root]; /* blocks root..size-1 */
    memcpy(t->tmp, sb + t->off[t->root], head);
    memcpy(t->tmp + head, sb, t->off[t->root]);
    return CGLOO_OK;
}

int cgloo__scatter_binomial(coll *c, const void *sendbuf, const size_t *off, void *recvbuf,
                            int root)
{
    int size = c->size, vr = rel_rank(c->rank, root, size);
    stree t = {.c = c, .off = off, .root = root, .vrank = vr, .span = binomial_span(vr, size)};
    t.base = blocks_rel_off(off, size, root, vr);
    t.total = blocks_rel_off(off, size, root, vr + t.span) - t.base;
    size_t own = blocks_bytes(off, c->rank);
    if (t.span == 1) /* a leaf receives its own block */
        return cgloo__coll_recv(c, abs_rank(binomial_parent(vr), root, size), recvbuf, own, 0);
    int rc = stree_source(&t, sendbuf);
    if (rc == CGLOO_OK)
        rc = stree_children(&t);
    if (rc == CGLOO_OK && vr != 0 && own)
        memcpy(recvbuf, t.src, own);
    free(t.tmp);
    return rc;
}
