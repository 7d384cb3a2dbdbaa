/*
 * Gather, "single_copy": the root reads every rank's block straight out of that rank's send
 * buffer, for ranks that share a host (coll/single_copy.h has the steps and the first call's
 * probe).
 *
 * After the ranks told each other where their buffers lie, the root copies each other rank's
 * block into its place in its receive buffer, and every rank says it is done: a rank returns
 * only once the root did, since until then the root may still read its send buffer.
 *
 * Cost, for n bytes gathered: two rounds of P - 1 small buffers (slot hand-offs, or messages on a
 * tag without slots) (three on a context's first call); the root copies (P-1)/P n bytes once, by
 * reading the peers' memory. Memory: P addresses.
 */
#include "coll/gather/gather.h"
#include "coll/pattern/blocks.h"
#include "coll/single_copy.h"

/* gather_reads: the root reads every other rank's block into recvbuf. */
static int gather_reads(cgloo__sc *s, coll *c, void *recvbuf, const size_t *off)
{
    int rc = CGLOO_OK;
    for (int q = 0; q < c->size && rc == CGLOO_OK; q++)
        if (q != c->rank)
            rc = cgloo__sc_read(s, q, (uint8_t *)recvbuf + off[q], 0, blocks_bytes(off, q));
    return rc;
}

int cgloo__gather_single_copy(coll *c, const void *sendbuf, void *recvbuf, const size_t *off,
                              int root)
{
    bool refused = false;
    cgloo__sc s;
    int rc = cgloo__sc_begin(&s, c, sendbuf, recvbuf, NULL, NULL, &refused);
    if (rc == CGLOO_OK && !refused) {
        int mine = c->rank == root ? gather_reads(&s, c, recvbuf, off) : CGLOO_OK;
        rc = cgloo__sc_agree(&s, mine, SC_STEP_DONE);
    }
    cgloo__sc_end(&s);
    if (!refused)
        return rc;
    cgloo__sc_fallback(c, "direct");
    return cgloo__gather_direct(c, sendbuf, recvbuf, off, root);
}
