/*
 * Recursive-doubling allgather.
 *
 * With p a power of two: at step k (mask = 2^k) rank r exchanges everything it holds with rank
 * r ^ mask. Before the step it holds the blocks of the mask ranks sharing r's high bits, a
 * contiguous range of the buffer, so each exchange is one message each way; after lg p steps
 * it holds every block.
 *
 * Non-power-of-two p: fold. Let p' be the largest power of two below p and q = p - p'. Among the
 * first 2q ranks, each even rank first sends its block to the odd rank above it and sits out;
 * the p' remaining ranks (the odd ones among the first 2q, and every rank from 2q on) run the
 * power-of-two algorithm, where the odd rank stands for both. Each stand-in covers a contiguous
 * pair of blocks, so every exchange is still one contiguous range. At the end each odd rank
 * sends the even rank below it every block but that rank's own (two messages: the blocks before
 * it and the blocks after it).
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

typedef struct rd_plan {
    int rem;   /* q: ranks folded out */
    int pof2;  /* p': ranks in the doubling */
    int vrank; /* this rank's place in the doubling, -1 if folded out */
} rd_plan;

static rd_plan rd_make_plan(int rank, int size)
{
    rd_plan p = {.pof2 = 1};
    while (p.pof2 * 2 <= size)
        p.pof2 *= 2;
    p.rem = size - p.pof2;
    if (rank < 2 * p.rem)
        p.vrank = rank % 2 ? rank / 2 : -1;
    else
        p.vrank = rank - p.rem;
    return p;
}

/* The first real rank a virtual rank stands for (v == pof2 gives size). */
static int rd_first_real(const rd_plan *p, int v)
{
    return v < p->rem ? 2 * v : v + p->rem;
}

/* The real rank that runs virtual rank v's part. */
static int rd_runner(const rd_plan *p, int v)
{
    return v < p->rem ? 2 * v + 1 : v + p->rem;
}

/* rd_exchange swaps the ranges held by vrank and vrank ^ mask. */
static int rd_exchange(coll *c, const rd_plan *p, uint8_t *buf, const size_t *off, int mask,
                       unsigned step)
{
    int mine = p->vrank & ~(mask - 1), theirs = (p->vrank ^ mask) & ~(mask - 1);
    int lo = rd_first_real(p, mine), hi = rd_first_real(p, mine + mask);
    int plo = rd_first_real(p, theirs), phi = rd_first_real(p, theirs + mask);
    int peer = rd_runner(p, p->vrank ^ mask);
    return cgloo__coll_sendrecv(c, peer, buf + off[lo], off[hi] - off[lo], peer, buf + off[plo],
                                off[phi] - off[plo], step);
}

/* rd_unfold: the odd rank of a folded pair sends the even one every block but its own. */
static int rd_unfold(coll *c, const rd_plan *p, uint8_t *buf, const size_t *off)
{
    int r = c->rank, size = c->size;
    cgloo_request *reqs[2] = {NULL, NULL};
    int rc;
    if (p->vrank < 0) {
        rc = cgloo__coll_irecv(c, r + 1, buf, off[r], 64, &reqs[0]);
        if (rc == CGLOO_OK)
            rc =
                cgloo__coll_irecv(c, r + 1, buf + off[r + 1], off[size] - off[r + 1], 65, &reqs[1]);
    } else {
        rc = cgloo__coll_isend(c, r - 1, buf, off[r - 1], 64, &reqs[0]);
        if (rc == CGLOO_OK)
            rc = cgloo__coll_isend(c, r - 1, buf + off[r], off[size] - off[r], 65, &reqs[1]);
    }
    if (rc != CGLOO_OK) {
        cgloo_cancel(reqs[0]);
        return rc;
    }
    return cgloo__coll_waitall(c, reqs, 2);
}

int cgloo__allgather_recursive_doubling(coll *c, void *recvbuf, const size_t *off)
{
    uint8_t *buf = recvbuf;
    int r = c->rank;
    rd_plan p = rd_make_plan(r, c->size);
    int rc = CGLOO_OK;
    if (r < 2 * p.rem) /* fold: the even rank's block goes to the odd one */
        rc = p.vrank < 0 ? cgloo__coll_send(c, r + 1, buf + off[r], off[r + 1] - off[r], 0)
                         : cgloo__coll_recv(c, r - 1, buf + off[r - 1], off[r] - off[r - 1], 0);
    unsigned step = 1;
    for (int mask = 1; rc == CGLOO_OK && p.vrank >= 0 && mask < p.pof2; mask *= 2)
        rc = rd_exchange(c, &p, buf, off, mask, step++);
    if (rc == CGLOO_OK && r < 2 * p.rem)
        rc = rd_unfold(c, &p, buf, off);
    return rc;
}
