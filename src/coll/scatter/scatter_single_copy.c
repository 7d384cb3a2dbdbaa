/*
 * Scatter, "single_copy": every rank reads its block straight out of the root's send buffer,
 * for ranks that share a host (coll/single_copy.h has the steps and the first call's probe).
 *
 * After the ranks told each other where their buffers lie, every rank but the root copies its
 * block out of the root's memory into its receive buffer, all at once, and every rank says so:
 * the root returns only once every rank did, since until then a peer may still read its send
 * buffer.
 *
 * Cost, for n bytes scattered: two rounds of P - 1 small buffers (slot hand-offs, or messages on a
 * tag without slots) (three on a context's first call); each non-root copies its n/P bytes once,
 * all at the same time. Memory: P addresses.
 */
#include "coll/pattern/blocks.h"
#include "coll/scatter/scatter.h"
#include "coll/single_copy.h"

int cgloo__scatter_single_copy(coll *c, const void *sendbuf, const size_t *off, void *recvbuf,
                               int root)
{
    bool refused = false;
    cgloo__sc s;
    int rc = cgloo__sc_begin(&s, c, sendbuf, recvbuf, NULL, NULL, &refused);
    if (rc == CGLOO_OK && !refused) {
        int mine = c->rank == root ? CGLOO_OK
                                   : cgloo__sc_read(&s, root, recvbuf, off[c->rank],
                                                    blocks_bytes(off, c->rank));
        rc = cgloo__sc_agree(&s, mine, SC_STEP_DONE);
    }
    cgloo__sc_end(&s);
    if (!refused)
        return rc;
    cgloo__sc_fallback(c, "direct");
    return cgloo__scatter_direct(c, sendbuf, off, recvbuf, root);
}
