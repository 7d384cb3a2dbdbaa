/*
 * Scatter, "single_copy": every rank reads its block straight out of the root's send buffer,
 * for ranks that share a host (coll/single_copy.h has the steps and the first call's probe).
 *
 * After the ranks told each other where their buffers lie, every rank but the root copies its
 * block out of the root's memory into its receive buffer, all at once, while the root copies
 * its own block (before, the root copied it before the first round, alone: 2 ranks on an AMD
 * EPYC KVM guest of the 2-core class, p50 us, alternating runs, before / after: 1 MiB 40-50 /
 * 31-41, 4 MiB 234 / 140-176, 16 MiB 1382-1531 / 730-877, 64 MiB 7.3-7.6 ms / 4.3-4.9). Then
 * every rank says so: the root returns only once every rank did, since until then a peer may
 * still read its send buffer.
 *
 * Cost, for n bytes scattered: two rounds of P - 1 small buffers (slot hand-offs, or messages on a
 * tag without slots) (three on a context's first call); every rank copies its n/P bytes once,
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
        int mine = CGLOO_OK;
        if (c->rank == root)
            cgloo__scatter_own_block(c, sendbuf, off, recvbuf, root);
        else
            mine = cgloo__sc_read(&s, root, recvbuf, off[c->rank], blocks_bytes(off, c->rank));
        rc = cgloo__sc_agree(&s, mine, SC_STEP_DONE);
    }
    cgloo__sc_end(&s);
    if (!refused)
        return rc;
    cgloo__sc_fallback(c, "direct"); /* which copies the root's own block */
    return cgloo__scatter_direct(c, sendbuf, off, recvbuf, root);
}
