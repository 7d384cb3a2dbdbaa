/*
 * Reduce-scatter, recursive halving (the reduce-scatter half of Rabenseifner's allreduce).
 *
 * Let P' be the largest power of two <= P and q = P - P'.
 *
 * Fold (non-power-of-two P), the plan of pattern/fold.h: ranks below 2q pair up as (2i, 2i+1);
 * the even rank sends its whole vector to the odd one, which reduces it, and then waits for the
 * end. The P' ranks left play virtual ranks: 2i+1 is virtual rank i (i < q), and r >= 2q is
 * r - q. Virtual block v is the real blocks virtual rank v stands for: blocks 2v and 2v+1 for
 * v < q and block v + q otherwise, so virtual blocks are contiguous and in order.
 *
 * Halving, the ranges of pattern/halving.h: for bit = P'/2, P'/4, .., 1 a rank exchanges with
 * virtual rank (v ^ bit). Its current range of virtual blocks splits in two and it keeps the half
 * holding its own block; it sends the half it gives up and reduces the half it keeps with the
 * peer's. Recursive halving pairing at distance 1 first (Gloo's order) leaves a rank with its
 * bit-reversed block and needs a reordering pass; taking the bits from the highest down leaves
 * virtual rank v with exactly virtual block v.
 *
 * Unfold: odd rank 2i+1 holds real blocks 2i and 2i+1 reduced and sends block 2i to rank 2i.
 *
 * Blocks of any size (the v variant, empty blocks) work unchanged: the halves are ranges of
 * blocks, so uneven blocks only unbalance the steps. Empty messages are skipped on both sides.
 *
 * Preconditions: a commutative, associative op.
 * Cost, for a buffer of n bytes: log2(P') latency steps, plus 2 when P is not a power of two.
 * In the halving a rank sends (P'-1)/P' n bytes and reduces as many; the fold moves n bytes
 * more per folded pair and the unfold one block. Few steps: for small and medium vectors.
 * Memory: in place, the largest range a rank receives (the whole vector for a rank that takes a
 * folded partner's, else half of it); out of place, a copy of the input as well.
 */
#include "coll/reduce_scatter/reduce_scatter.h"
#include "coll/pattern/fold.h"
#include "coll/pattern/halving.h"

#include <stdlib.h>

typedef struct hd {
    coll *c;
    fold_plan f;
    uint8_t *buf, *tmp;
    const size_t *offsets;
    unsigned step;
} hd;

/* hd_off: the element offset where virtual block v starts (v == P' gives the end). */
static size_t hd_off(const hd *h, int v)
{
    return h->offsets[fold_first(&h->f, v)];
}

static uint8_t *hd_at(const hd *h, size_t elem)
{
    return cgloo__elem(h->c, h->buf, elem);
}

/* hd_exchange sends elements [slo, shi) to peer and reduces [klo, khi) with what it sends back.
 * Empty directions are skipped (the peer computes the same ranges). */
static int hd_exchange(hd *h, int peer, size_t slo, size_t shi, size_t klo, size_t khi)
{
    coll *c = h->c;
    size_t sbytes = (shi - slo) * c->esize, rbytes = (khi - klo) * c->esize;
    int rc = CGLOO_OK;
    if (sbytes || rbytes)
        rc = cgloo__coll_sendrecv(c, sbytes ? peer : -1, sbytes ? hd_at(h, slo) : NULL, sbytes,
                                  rbytes ? peer : -1, h->tmp, rbytes, h->step);
    if (rc == CGLOO_OK && rbytes)
        cgloo__coll_reduce(c, hd_at(h, klo), h->tmp, khi - klo);
    return rc;
}

/* hd_fold: the rank that folds away hands its vector to its partner. */
static int hd_fold(hd *h)
{
    size_t all = h->offsets[h->c->size];
    if (h->f.partner < 0)
        return CGLOO_OK;
    if (fold_away(&h->f))
        return hd_exchange(h, h->f.partner, 0, all, 0, 0);
    return hd_exchange(h, h->f.partner, 0, 0, 0, all);
}

static int hd_halve(hd *h)
{
    for (int k = 0; k < h->f.steps; k++) {
        halving_step x = halving_step_at(h->f.vrank, h->f.p2, k);
        h->step++;
        int rc = hd_exchange(h, fold_real(&h->f, x.peer), hd_off(h, x.peer_lo),
                             hd_off(h, x.peer_hi), hd_off(h, x.lo), hd_off(h, x.hi));
        if (rc != CGLOO_OK)
            return rc;
    }
    return CGLOO_OK;
}

/* hd_unfold: the survivor of a pair returns the block of the rank that folded into it. */
static int hd_unfold(hd *h)
{
    const fold_plan *f = &h->f;
    if (f->partner < 0)
        return CGLOO_OK;
    int away = fold_pair_away(f);
    size_t lo = h->offsets[away], bytes = (h->offsets[away + 1] - lo) * h->c->esize;
    if (bytes == 0)
        return CGLOO_OK;
    if (fold_away(f))
        return cgloo__coll_recv(h->c, f->partner, hd_at(h, lo), bytes, h->step);
    return cgloo__coll_send(h->c, f->partner, hd_at(h, lo), bytes, h->step);
}

/* hd_scratch_elems: the most this rank receives in one message: a folded partner's vector, or
 * the half it keeps in the first halving step (the kept ranges only shrink after it). */
static size_t hd_scratch_elems(const hd *h)
{
    if (h->f.partner >= 0 && !fold_away(&h->f))
        return h->offsets[h->c->size];
    if (fold_away(&h->f) || h->f.steps == 0)
        return 0;
    halving_step x = halving_step_at(h->f.vrank, h->f.p2, 0);
    return hd_off(h, x.hi) - hd_off(h, x.lo);
}

int cgloo__reduce_scatter_halving_doubling_inplace(coll *c, void *buf, const size_t *offsets,
                                                   unsigned step_base)
{
    hd h = {.c = c,
            .f = fold_plan_make(c->rank, c->size),
            .buf = buf,
            .offsets = offsets,
            .step = step_base};
    size_t scratch = hd_scratch_elems(&h) * c->esize;
    h.tmp = malloc(CGLOO_MAX(scratch, 1));
    if (!h.tmp)
        return cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for %zu bytes of scratch", scratch);
    int rc = hd_fold(&h);
    if (rc == CGLOO_OK && !fold_away(&h.f))
        rc = hd_halve(&h);
    h.step = step_base + cgloo__reduce_scatter_halving_doubling_steps(c->size) - 1;
    if (rc == CGLOO_OK)
        rc = hd_unfold(&h);
    free(h.tmp);
    return rc;
}

int cgloo__reduce_scatter_halving_doubling(coll *c, const void *sendbuf, void *recvbuf,
                                           const size_t *offsets, unsigned step_base)
{
    const uint8_t *mine = cgloo__elem(c, sendbuf, offsets[c->rank]);
    size_t mine_bytes = (offsets[c->rank + 1] - offsets[c->rank]) * c->esize;
    if (recvbuf == mine)
        return cgloo__reduce_scatter_halving_doubling_inplace(c, (void *)sendbuf, offsets,
                                                              step_base);
    size_t total = offsets[c->size] * c->esize;
    uint8_t *copy = malloc(CGLOO_MAX(total, 1));
    if (!copy)
        return cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for a %zu-byte copy", total);
    if (total)
        memcpy(copy, sendbuf, total);
    int rc = cgloo__reduce_scatter_halving_doubling_inplace(c, copy, offsets, step_base);
    if (rc == CGLOO_OK && mine_bytes)
        memcpy(recvbuf, cgloo__elem(c, copy, offsets[c->rank]), mine_bytes);
    free(copy);
    return rc;
}
