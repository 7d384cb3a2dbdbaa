/*
 * Allreduce, halving-doubling (Rabenseifner).
 *
 * A reduce-scatter by recursive halving, then an allgather by recursive doubling, over P'
 * blocks where P' is the largest power of two <= P. Halving starts with the highest bit: in the
 * step with bit b, rank r keeps the half of its current range chosen by bit b of r, sends the
 * other half to r ^ b and reduces the half it keeps with what r ^ b sends. Taking bits from the
 * highest down leaves rank r with block r, so no reordering of blocks is needed. Doubling walks
 * the bits back up, exchanging whole ranges.
 *
 * Non-power-of-two P: each extra rank P'+i folds its vector into rank i first and gets the
 * result back at the end (two more latency steps for those pairs).
 *
 * Cost: 2 log2(P') latency steps (+2); each rank sends 2 (P'-1)/P' n bytes: bandwidth-optimal
 * for powers of two, for medium vectors where ring's 2(P-1) steps cost more than they save.
 */
#include "coll/allreduce/allreduce.h"
#include "coll/pattern/pow2.h"
#include "coll/pattern/ring.h"

#include <stdlib.h>

#define STEP_FOLD_IN 1
#define STEP_FOLD_OUT 2
#define STEP_HALVE 10  /* + k */
#define STEP_DOUBLE 40 /* + k */

typedef struct hd {
    coll *c;
    uint8_t *buf, *tmp;
    size_t count;
    int p2;
} hd;

static size_t hd_off(const hd *h, int block)
{
    return block_offset(h->count, h->p2, block) * h->c->esize;
}

/* hd_halve: reduce-scatter; on return this rank's range is the single block `rank`. */
static int hd_halve(hd *h, int *lo, int *hi)
{
    coll *c = h->c;
    unsigned k = 0;
    for (int bit = h->p2 / 2; bit >= 1; bit /= 2, k++) {
        int mid = (*lo + *hi) / 2, peer = c->rank ^ bit;
        bool upper = c->rank & bit;
        int keep_lo = upper ? mid : *lo, keep_hi = upper ? *hi : mid;
        int give_lo = upper ? *lo : mid, give_hi = upper ? mid : *hi;
        size_t keep_bytes = hd_off(h, keep_hi) - hd_off(h, keep_lo);
        int rc = cgloo__coll_sendrecv(c, peer, h->buf + hd_off(h, give_lo),
                                      hd_off(h, give_hi) - hd_off(h, give_lo), peer, h->tmp,
                                      keep_bytes, STEP_HALVE + k);
        if (rc != CGLOO_OK)
            return rc;
        cgloo__coll_reduce(c, h->buf + hd_off(h, keep_lo), h->tmp, keep_bytes / c->esize);
        *lo = keep_lo;
        *hi = keep_hi;
    }
    return CGLOO_OK;
}

/* hd_double: allgather; ranges grow back to the whole vector. */
static int hd_double(hd *h, int lo, int hi)
{
    coll *c = h->c;
    unsigned k = 0;
    for (int bit = 1; bit < h->p2; bit *= 2, k++) {
        int peer = c->rank ^ bit, width = hi - lo;
        int peer_lo = (c->rank & bit) ? lo - width : hi;
        int rc =
            cgloo__coll_sendrecv(c, peer, h->buf + hd_off(h, lo), hd_off(h, hi) - hd_off(h, lo),
                                 peer, h->buf + hd_off(h, peer_lo),
                                 hd_off(h, peer_lo + width) - hd_off(h, peer_lo), STEP_DOUBLE + k);
        if (rc != CGLOO_OK)
            return rc;
        lo = lo < peer_lo ? lo : peer_lo;
        hi = lo + 2 * width;
    }
    return CGLOO_OK;
}

int cgloo__allreduce_halving_doubling(coll *c, void *buf, size_t count)
{
    size_t bytes = count * c->esize;
    hd h = {.c = c, .buf = buf, .count = count, .p2 = pow2_floor(c->size)};
    if (c->rank >= h.p2) {
        int partner = c->rank - h.p2;
        int rc = cgloo__coll_send(c, partner, buf, bytes, STEP_FOLD_IN);
        return rc != CGLOO_OK ? rc : cgloo__coll_recv(c, partner, buf, bytes, STEP_FOLD_OUT);
    }
    h.tmp = malloc(bytes);
    if (!h.tmp)
        return CGLOO_ENOMEM;
    int extra = c->rank + h.p2 < c->size ? c->rank + h.p2 : -1;
    int rc = CGLOO_OK, lo = 0, hi = h.p2;
    if (extra >= 0 && (rc = cgloo__coll_recv(c, extra, h.tmp, bytes, STEP_FOLD_IN)) == CGLOO_OK)
        cgloo__coll_reduce(c, buf, h.tmp, count);
    if (rc == CGLOO_OK)
        rc = hd_halve(&h, &lo, &hi);
    if (rc == CGLOO_OK)
        rc = hd_double(&h, lo, hi);
    if (rc == CGLOO_OK && extra >= 0)
        rc = cgloo__coll_send(c, extra, buf, bytes, STEP_FOLD_OUT);
    free(h.tmp);
    return rc;
}
