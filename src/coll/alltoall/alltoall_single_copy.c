/*
 * Alltoall, "single_copy": every rank reads the block meant for it straight out of each peer's
 * send buffer, for ranks that share a host (coll/single_copy.h has the steps and the first
 * call's probe).
 *
 * When the ranks tell each other where their buffers lie, each also tells every peer where in
 * its send buffer that peer's block starts (blocks may differ, alltoallv); then every rank copies
 * its P - 1 blocks into its receive buffer, all at once, then its own block, and says so: it
 * returns only once every rank did, since until then a peer may still read its send buffer.
 *
 * Cost, with n the bytes each rank receives: two rounds of P - 1 small buffers (slot hand-offs, or
 * messages on a tag without slots) (three on a context's first call); every rank copies (P-1)/P n
 * bytes once, by reading the peers' memory. Memory: P addresses and offsets.
 */
#include "coll/alltoall/alltoall.h"
#include "coll/pattern/blocks.h"
#include "coll/single_copy.h"

#include <stdlib.h>

/* alltoall_moves: this rank's part, its P - 1 reads (from: where each peer's block for this
 * rank starts), then its own block. */
static int alltoall_moves(cgloo__sc *s, coll *c, const void *sendbuf, const size_t *soff,
                          uint8_t *recvbuf, const size_t *roff)
{
    const uint64_t *from = s->extra;
    int rc = CGLOO_OK;
    for (int k = 1; k < c->size && rc == CGLOO_OK; k++) {
        int q = (c->rank + k) % c->size;
        rc = cgloo__sc_read(s, q, recvbuf + roff[q], from[q], blocks_bytes(roff, q));
    }
    if (rc == CGLOO_OK)
        cgloo__alltoall_own_block(c, sendbuf, soff, recvbuf, roff);
    return rc;
}

int cgloo__alltoall_single_copy(coll *c, const void *sendbuf, const size_t *soff, void *recvbuf,
                                const size_t *roff)
{
    bool refused = false;
    cgloo__sc s;
    uint64_t *to = malloc((size_t)c->size * sizeof *to); /* where each peer's block starts */
    if (!to)
        return cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for %d offsets", c->size);
    for (int q = 0; q < c->size; q++)
        to[q] = soff[q];
    int rc = cgloo__sc_begin(&s, c, sendbuf, recvbuf, NULL, to, &refused);
    if (rc == CGLOO_OK && !refused)
        rc = cgloo__sc_agree(&s, alltoall_moves(&s, c, sendbuf, soff, recvbuf, roff), SC_STEP_DONE);
    cgloo__sc_end(&s);
    free(to);
    if (!refused)
        return rc;
    cgloo__sc_fallback(c, "pairwise"); /* which copies the own block */
    return cgloo__alltoall_pairwise(c, sendbuf, soff, recvbuf, roff);
}
