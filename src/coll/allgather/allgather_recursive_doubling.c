/*
 * Recursive-doubling allgather.
 *
 * With p a power of two: at step k (mask = 2^k) rank r exchanges everything it holds with rank
 * r ^ mask. Before the step it holds the blocks of the mask ranks sharing r's high bits, a
 * contiguous range of the buffer, so each exchange is one message each way; after lg p steps
 * it holds every block.
 *
 * Non-power-of-two p: the fold of pattern/fold.h. Let p' be the largest power of two below p and
 * q = p - p'. Among the first 2q ranks, each even rank first sends its block to the odd rank
 * above it and sits out; the p' remaining ranks (the odd ones among the first 2q, and every
 * rank from 2q on) run the power-of-two algorithm on their virtual ranks, where the odd rank
 * stands for both. Each stand-in covers a contiguous pair of blocks, so every exchange (the
 * doubling ranges of pattern/halving.h, mapped to real blocks) is still one contiguous range.
 * At the end each odd rank sends the even rank below it every block but that rank's own (two
 * messages: the blocks before it and the blocks after it).
 * Uneven blocks (allgatherv) work unchanged.
 *
 * Preconditions: none.
 *
 * Cost, n the gathered bytes, power of two:
 *     lg p alpha + n ((p - 1)/p) beta
 * Otherwise lg p' + 2 steps: the fold (n/p bytes), lg p' exchanges among p' ranks, and the
 * unfold, which sends a folded rank all the other blocks (up to n bytes, as two messages):
 *     (lg p' + 2) alpha + about 2 n beta   on the folded ranks' critical path
 * Meant for small messages, where the steps count and the bytes do not.
 */
#include "coll/allgather/allgather.h"
#include "coll/pattern/fold.h"
#include "coll/pattern/halving.h"

#define STEP_FOLD 0
#define STEP_EXCHANGE 1 /* + k */
#define STEP_UNFOLD 64  /* the blocks before the folded rank's; + 1 for those after it */

/* rd_fold: the rank that folds away sends its block to its partner. */
static int rd_fold(coll *c, const fold_plan *f, uint8_t *buf, const size_t *off)
{
    int away = fold_pair_away(f);
    size_t bytes = off[away + 1] - off[away];
    if (fold_away(f))
        return cgloo__coll_send(c, f->partner, buf + off[away], bytes, STEP_FOLD);
    return cgloo__coll_recv(c, f->partner, buf + off[away], bytes, STEP_FOLD);
}

/* rd_exchange: doubling step k, which swaps the ranges of blocks this rank and its peer hold. */
static int rd_exchange(coll *c, const fold_plan *f, uint8_t *buf, const size_t *off, int k,
                       unsigned step)
{
    halving_step x = doubling_step_at(f->vrank, k);
    int lo = fold_first(f, x.lo), hi = fold_first(f, x.hi);
    int plo = fold_first(f, x.peer_lo), phi = fold_first(f, x.peer_hi);
    int peer = fold_real(f, x.peer);
    return cgloo__coll_sendrecv(c, peer, buf + off[lo], off[hi] - off[lo], peer, buf + off[plo],
                                off[phi] - off[plo], step);
}

/* rd_unfold: the survivor of a pair sends the rank that folded into it every block but its
 * own, as the blocks before it and the blocks after it. */
static int rd_unfold(coll *c, const fold_plan *f, uint8_t *buf, const size_t *off)
{
    int away = fold_pair_away(f);
    size_t before = off[away], after = off[c->size] - off[away + 1];
    uint8_t *rest = buf + off[away + 1];
    cgloo_request *reqs[2] = {NULL, NULL};
    int rc;
    if (fold_away(f)) {
        rc = cgloo__coll_irecv(c, f->partner, buf, before, STEP_UNFOLD, &reqs[0]);
        if (rc == CGLOO_OK)
            rc = cgloo__coll_irecv(c, f->partner, rest, after, STEP_UNFOLD + 1, &reqs[1]);
    } else {
        rc = cgloo__coll_isend(c, f->partner, buf, before, STEP_UNFOLD, &reqs[0]);
        if (rc == CGLOO_OK)
            rc = cgloo__coll_isend(c, f->partner, rest, after, STEP_UNFOLD + 1, &reqs[1]);
    }
    return cgloo__coll_finish(c, reqs, 2, rc);
}

int cgloo__allgather_recursive_doubling(coll *c, void *recvbuf, const size_t *off)
{
    fold_plan f = fold_plan_make(c->rank, c->size);
    int rc = f.partner >= 0 ? rd_fold(c, &f, recvbuf, off) : CGLOO_OK;
    for (int k = 0; rc == CGLOO_OK && !fold_away(&f) && k < f.steps; k++)
        rc = rd_exchange(c, &f, recvbuf, off, k, STEP_EXCHANGE + (unsigned)k);
    if (rc == CGLOO_OK && f.partner >= 0)
        rc = rd_unfold(c, &f, recvbuf, off);
    return rc;
}
