/*
 * Reduce-scatter, "single_copy": every rank reduces its block straight out of its peers'
 * inputs, for ranks that share a host (coll/single_copy.h has the steps and the first call's
 * probe).
 *
 * After the ranks told each other where their inputs lie, rank r reduces block r of every
 * rank's input, read straight out of the peer's memory in chunks that stay in the cache, into
 * its output, and says so: it returns only once every rank did, since until then a peer may
 * still read its input.
 *
 * In place (recvbuf is this rank's block of sendbuf) works: rank r writes only block r of its
 * buffer, which no peer reads.
 *
 * Cost, for n bytes in all: two rounds of P - 1 small buffers (slot hand-offs, or messages on a tag
 * without slots) (three on a context's first call); every rank copies (P-1)/P n bytes and
 * reduces them, by reading the peers' memory: nothing passes through a ring. Preconditions: a
 * commutative op; every peer over shared memory. Memory: a 256 KiB scratch kept on the context
 * (none for 2 ranks out of place).
 */
#include "coll/reduce_scatter/reduce_scatter.h"
#include "coll/single_copy.h"

int cgloo__reduce_scatter_single_copy(coll *c, const void *sendbuf, void *recvbuf,
                                      const size_t *offsets, unsigned step_base)
{
    bool refused = false;
    cgloo__sc s;
    int rc = cgloo__sc_begin(&s, c, sendbuf, recvbuf, offsets, NULL, &refused);
    if (rc == CGLOO_OK && !refused)
        rc = cgloo__sc_agree(&s, cgloo__sc_reduce_own(&s, recvbuf), SC_STEP_DONE);
    cgloo__sc_end(&s);
    if (!refused)
        return rc;
    /* Some rank may not read: nothing was written anywhere, so the ring runs instead. */
    cgloo__sc_fallback(c, "ring");
    return cgloo__reduce_scatter_ring(c, sendbuf, recvbuf, offsets, step_base);
}
