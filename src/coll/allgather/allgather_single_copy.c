/*
 * Allgather, "single_copy": every rank reads every other rank's block straight out of that
 * rank's receive buffer, for ranks that share a host (coll/single_copy.h has the steps and the
 * first call's probe).
 *
 * Each rank's block is in its own receive buffer on entry. After the ranks told each other
 * where their buffers lie, each reads the P - 1 other blocks into its own, and says so: it
 * returns only once every rank did, since until then a peer may still read its block.
 *
 * Cost, for n bytes gathered: two rounds of P - 1 small buffers (slot hand-offs, or messages on a
 * tag without slots) (three on a context's first call); every rank copies (P-1)/P n bytes once, by
 * reading the peers' memory: nothing passes through a ring. Memory: P addresses.
 */
#include "coll/allgather/allgather.h"
#include "coll/single_copy.h"

int cgloo__allgather_single_copy(coll *c, void *recvbuf, const size_t *off)
{
    bool refused = false;
    cgloo__sc s;
    int rc = cgloo__sc_begin(&s, c, recvbuf, recvbuf, off, NULL, &refused);
    if (rc == CGLOO_OK && !refused)
        rc = cgloo__sc_agree(&s, cgloo__sc_gather(&s, off), SC_STEP_DONE);
    cgloo__sc_end(&s);
    if (!refused)
        return rc;
    cgloo__sc_fallback(c, "ring");
    return cgloo__allgather_ring(c, recvbuf, off);
}
