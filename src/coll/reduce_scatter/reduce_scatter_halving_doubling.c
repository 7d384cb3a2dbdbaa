/*
 * Reduce-scatter, recursive halving (the reduce-scatter half of Rabenseifner's allreduce).
 *
 * Let P' be the largest power of two <= P and R = P - P'.
 *
 * Fold (non-power-of-two P): ranks below 2R pair up as (2i, 2i+1); the even rank sends its
 * whole vector to the odd one, which reduces it, and then waits for the end. The P' ranks left
 * are renumbered: 2i+1 becomes i (i < R), and r >= 2R becomes r - R. New block j is old blocks
 * 2j and 2j+1 for j < R and old block j + R otherwise, so new blocks are contiguous and in
 * order.
 *
 * Halving: for bit = P'/2, P'/4, .., 1 a rank exchanges with new rank (me ^ bit). Its current
 * range of new blocks splits in two; the rank whose bit is clear keeps the lower half. It
 * sends the half it gives up and reduces the half it keeps with the partner's. The block order:
 * recursive halving naturally leaves a rank with its bit-reversed block when it pairs at
 * distance 1 first (Gloo's order, which then needs a reordering pass); taking the bits from the
 * highest down instead makes the kept half always the one holding the rank's own block, so new
 * rank i ends with exactly new block i and no reordering is needed.
 *
 * Unfold: odd rank 2i+1 holds old blocks 2i and 2i+1 reduced and sends block 2i to rank 2i.
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
#include "coll/pattern/pow2.h"

#include <stdlib.h>

typedef struct hd {
    coll *c;
    uint8_t *buf, *tmp;
    const size_t *offsets;
    int p2, rem;
    int me; /* new rank, or -1 while folded away */
    unsigned step;
} hd;

/* hd_old_rank: the rank that plays new rank i in the halving. */
static int hd_old_rank(const hd *h, int i)
{
    return i < h->rem ? 2 * i + 1 : i + h->rem;
}

/* hd_off: the element offset where new block j starts (j == P' gives the end). */
static size_t hd_off(const hd *h, int j)
{
    return h->offsets[j < h->rem ? 2 * j : j + h->rem];
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

/* hd_fold: the even rank of a folded pair hands its vector to the odd one. */
static int hd_fold(hd *h)
{
    int rank = h->c->rank;
    size_t all = h->offsets[h->c->size];
    if (rank >= 2 * h->rem)
        return CGLOO_OK;
    if (rank % 2 == 0)
        return hd_exchange(h, rank + 1, 0, all, 0, 0);
    return hd_exchange(h, rank - 1, 0, 0, 0, all);
}

static int hd_halve(hd *h)
{
    int lo = 0, hi = h->p2;
    for (int bit = h->p2 / 2; bit >= 1; bit /= 2) {
        int mid = lo + bit;
        bool upper = h->me & bit;
        int klo = upper ? mid : lo, khi = upper ? hi : mid;
        int slo = upper ? lo : mid, shi = upper ? mid : hi;
        h->step++;
        int rc = hd_exchange(h, hd_old_rank(h, h->me ^ bit), hd_off(h, slo), hd_off(h, shi),
                             hd_off(h, klo), hd_off(h, khi));
        if (rc != CGLOO_OK)
            return rc;
        lo = klo;
        hi = khi;
    }
    return CGLOO_OK;
}

/* hd_unfold: the odd rank of a folded pair returns the even rank's block. */
static int hd_unfold(hd *h)
{
    int rank = h->c->rank;
    const size_t *off = h->offsets;
    if (rank >= 2 * h->rem)
        return CGLOO_OK;
    int even = rank & ~1;
    size_t bytes = (off[even + 1] - off[even]) * h->c->esize;
    if (bytes == 0)
        return CGLOO_OK;
    if (rank % 2 == 1)
        return cgloo__coll_send(h->c, even, hd_at(h, off[even]), bytes, h->step);
    return cgloo__coll_recv(h->c, rank + 1, hd_at(h, off[even]), bytes, h->step);
}

/* hd_scratch_elems: the most this rank receives in one message. */
static size_t hd_scratch_elems(const hd *h)
{
    int rank = h->c->rank;
    if (rank < 2 * h->rem && rank % 2 == 1)
        return h->offsets[h->c->size];
    if (h->me < 0 || h->p2 == 1)
        return 0;
    int half = h->p2 / 2;
    return h->me < half ? hd_off(h, half) - hd_off(h, 0) : hd_off(h, h->p2) - hd_off(h, half);
}

int cgloo__reduce_scatter_halving_doubling_inplace(coll *c, void *buf, const size_t *offsets,
                                                   unsigned step_base)
{
    hd h = {.c = c, .buf = buf, .offsets = offsets, .p2 = pow2_floor(c->size), .step = step_base};
    h.rem = c->size - h.p2;
    h.me = c->rank < 2 * h.rem ? (c->rank % 2 ? c->rank / 2 : -1) : c->rank - h.rem;
    size_t scratch = hd_scratch_elems(&h) * c->esize;
    h.tmp = malloc(CGLOO_MAX(scratch, 1));
    if (!h.tmp)
        return cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for %zu bytes of scratch", scratch);
    int rc = hd_fold(&h);
    if (rc == CGLOO_OK && h.me >= 0)
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
