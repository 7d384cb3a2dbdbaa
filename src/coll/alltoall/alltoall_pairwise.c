/*
 * Pairwise-exchange alltoall.
 *
 * At step k (1..p-1) rank r sends its block for rank r + k and receives the block from rank
 * r - k (mod p), so at every step each rank sends to one peer and receives from another, and
 * every pair meets exactly once. Steps are posted non-blocking, up to ALLTOALL_WINDOW of them in
 * flight: the links stay busy, while memory for requests and unexpected messages stays bounded
 * whatever p. Data moves straight between the callers' buffers; the rank's own block is copied
 * once the first window is posted, while those messages move. Uneven blocks (alltoallv) work
 * unchanged.
 *
 * Preconditions: none. Non-power-of-two p: nothing special (it is not the XOR variant, which
 * needs a power of two).
 *
 * Cost, with n the bytes each rank sends in all:
 *     (p - 1) alpha + n ((p - 1)/p) beta
 * p (p - 1) messages; every byte crosses the wire once, which is the minimum.
 */
#include "coll/alltoall/alltoall.h"
#include "coll/pattern/blocks.h"

#define ALLTOALL_WINDOW 8

/* pairwise_post posts step k's receive and send into slot[0..1]. */
static int pairwise_post(coll *c, int k, const uint8_t *sendbuf, const size_t *soff,
                         uint8_t *recvbuf, const size_t *roff, cgloo_request **slot)
{
    int dst = (c->rank + k) % c->size, src = (c->rank - k + c->size) % c->size;
    int rc = cgloo__coll_irecv(c, src, recvbuf + roff[src], blocks_bytes(roff, src), (unsigned)k,
                               &slot[0]);
    if (rc == CGLOO_OK)
        rc = cgloo__coll_isend(c, dst, sendbuf + soff[dst], blocks_bytes(soff, dst), (unsigned)k,
                               &slot[1]);
    return rc;
}

int cgloo__alltoall_pairwise(coll *c, const void *sendbuf, const size_t *soff, void *recvbuf,
                             const size_t *roff)
{
    cgloo_request *reqs[2 * ALLTOALL_WINDOW] = {NULL};
    int rc = CGLOO_OK;
    for (int k = 1; rc == CGLOO_OK && k < c->size; k++) {
        cgloo_request **slot = &reqs[2 * ((k - 1) % ALLTOALL_WINDOW)];
        rc = cgloo__coll_waitall(c, slot, 2); /* step k - window, if any */
        if (rc == CGLOO_OK)
            rc = pairwise_post(c, k, sendbuf, soff, recvbuf, roff, slot);
        if (rc == CGLOO_OK && k == CGLOO_MIN(ALLTOALL_WINDOW, c->size - 1))
            cgloo__alltoall_own_block(c, sendbuf, soff, recvbuf, roff); /* while those move */
    }
    return cgloo__coll_finish(c, reqs, 2 * ALLTOALL_WINDOW, rc);
}
