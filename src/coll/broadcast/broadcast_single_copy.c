/*
 * Broadcast, "single_copy": every rank reads the root's buffer straight out of the root's
 * memory, for ranks that share a host (coll/single_copy.h has the steps and the first call's
 * probe).
 *
 * After the ranks told each other where their buffers lie, every rank but the root copies the
 * root's n bytes into its own buffer at once, and every rank says so: the root returns only
 * once every rank did, since until then a peer may still read its buffer.
 *
 * Cost, for n bytes: two rounds of P - 1 small buffers (slot hand-offs, or messages on a tag
 * without slots) (three on a context's first call); each non-root copies n bytes once, all at
 * the same time, by reading the root's memory: nothing passes through a ring or from rank to
 * rank. The root's memory serves P - 1 readers
 * at once. Memory: P addresses.
 */
#include "coll/broadcast/broadcast.h"
#include "coll/single_copy.h"

int cgloo__broadcast_single_copy(coll *c, void *buf, size_t bytes, int root)
{
    bool refused = false;
    cgloo__sc s;
    int rc = cgloo__sc_begin(&s, c, buf, buf, NULL, NULL, &refused);
    if (rc == CGLOO_OK && !refused) {
        int mine = c->rank == root ? CGLOO_OK : cgloo__sc_read(&s, root, buf, 0, bytes);
        rc = cgloo__sc_agree(&s, mine, SC_STEP_DONE);
    }
    cgloo__sc_end(&s);
    if (!refused)
        return rc;
    cgloo__sc_fallback(c, "pipeline");
    return cgloo__broadcast_pipeline(c, buf, bytes, root);
}
