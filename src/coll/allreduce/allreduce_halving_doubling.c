/*
 * Allreduce, halving-doubling (Rabenseifner).
 *
 * A reduce-scatter by recursive halving, then an allgather by recursive doubling, over P'
 * blocks where P' is the largest power of two <= P (the vector split as evenly as possible,
 * block v for virtual rank v). The ranges come from pattern/halving.h: halving goes from the
 * highest bit down; in each step a rank keeps the half of its current range that holds its own
 * block, sends the other half to its peer and reduces the half it keeps with what the peer
 * sends. That leaves virtual rank v with block v, so no reordering of blocks is needed.
 * Doubling walks the bits back up, exchanging whole ranges.
 *
 * Non-power-of-two P: the fold of pattern/fold.h. With q = P - P', each even rank 2i among the
 * first 2q folds its vector into rank 2i+1 first and gets the result back at the end (two more
 * latency steps for those pairs); the P' ranks left run on their virtual ranks.
 *
 * Preconditions: a commutative, associative op. Each block is reduced in one place and then
 * copied, so the result is identical on every rank.
 * Cost: 2 log2(P') latency steps (+2); each rank sends 2 (P'-1)/P' n bytes (a folded pair n
 * more each way): bandwidth-optimal for powers of two, for medium vectors where ring's 2(P-1)
 * steps cost more than they save.
 */
#include "coll/allreduce/allreduce.h"
#include "coll/pattern/fold.h"
#include "coll/pattern/halving.h"
#include "coll/pattern/ring.h"

/* Steps 1 and 2 are the fold's (cgloo__allreduce_folded). */
#define STEP_HALVE 10  /* + k */
#define STEP_DOUBLE 40 /* + k */

typedef struct hd {
    coll *c;
    const fold_plan *f;
    uint8_t *buf, *tmp;
    size_t count;
} hd;

/* hd_off: the byte offset of virtual block v (v == P' gives the end). */
static size_t hd_off(const hd *h, int v)
{
    return block_offset(h->count, h->f->p2, v) * h->c->esize;
}

static size_t hd_bytes(const hd *h, int lo, int hi)
{
    return hd_off(h, hi) - hd_off(h, lo);
}

/* hd_halve: reduce-scatter; on return this rank's range is its own virtual block. */
static int hd_halve(hd *h)
{
    const fold_plan *f = h->f;
    for (int k = 0; k < f->steps; k++) {
        halving_step x = halving_step_at(f->vrank, f->p2, k);
        int peer = fold_real(f, x.peer);
        size_t keep = hd_bytes(h, x.lo, x.hi);
        int rc = cgloo__coll_sendrecv(h->c, peer, h->buf + hd_off(h, x.peer_lo),
                                      hd_bytes(h, x.peer_lo, x.peer_hi), peer, h->tmp, keep,
                                      STEP_HALVE + (unsigned)k);
        if (rc != CGLOO_OK)
            return rc;
        cgloo__coll_reduce(h->c, h->buf + hd_off(h, x.lo), h->tmp, keep / h->c->esize);
    }
    return CGLOO_OK;
}

/* hd_double: allgather; ranges grow back to the whole vector. */
static int hd_double(hd *h)
{
    const fold_plan *f = h->f;
    for (int k = 0; k < f->steps; k++) {
        halving_step x = doubling_step_at(f->vrank, k);
        int peer = fold_real(f, x.peer);
        int rc = cgloo__coll_sendrecv(h->c, peer, h->buf + hd_off(h, x.lo), hd_bytes(h, x.lo, x.hi),
                                      peer, h->buf + hd_off(h, x.peer_lo),
                                      hd_bytes(h, x.peer_lo, x.peer_hi), STEP_DOUBLE + (unsigned)k);
        if (rc != CGLOO_OK)
            return rc;
    }
    return CGLOO_OK;
}

/* hd_core: halving then doubling among the P' survivors. */
static int hd_core(coll *c, const fold_plan *f, void *buf, void *tmp, size_t count)
{
    hd h = {.c = c, .f = f, .buf = buf, .tmp = tmp, .count = count};
    int rc = hd_halve(&h);
    return rc != CGLOO_OK ? rc : hd_double(&h);
}

int cgloo__allreduce_halving_doubling(coll *c, void *buf, size_t count)
{
    return cgloo__allreduce_folded(c, buf, count, hd_core);
}
