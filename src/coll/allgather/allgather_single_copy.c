/*
 * Allgather, "single_copy": every rank reads every other rank's block straight out of that
 * rank's send buffer, for ranks that share a host (coll/single_copy.h has the steps and the
 * first call's probe).
 *
 * After the ranks told each other where their blocks lie, each reads the P - 1 other blocks
 * into its receive buffer, and says so: it returns only once every rank did, since until then
 * a peer may still read its block. The blocks are read out of the send buffers, not out of the
 * peers' receive buffers (where each rank's own block also lies): a block the peer has just
 * copied there sits dirty in the other core's cache, and reading it took twice as long (2 ranks,
 * 32 KiB blocks, process_vm_readv median 9 us against 5 from the send buffer, strace -T).
 *
 * Cost, for n bytes gathered: two rounds of P - 1 small buffers (slot hand-offs, or messages on a
 * tag without slots) (three on a context's first call); every rank copies (P-1)/P n bytes once, by
 * reading the peers' memory: nothing passes through a ring. Memory: P addresses.
 */
#include "coll/allgather/allgather.h"
#include "coll/single_copy.h"

/* read_blocks reads every other rank's block out of its send buffer into recvbuf. */
static int read_blocks(cgloo__sc *s, uint8_t *recvbuf, const size_t *off)
{
    int rc = CGLOO_OK;
    for (int k = 1; k < s->c->size && rc == CGLOO_OK; k++) {
        int q = (s->c->rank + k) % s->c->size;
        rc = cgloo__sc_read(s, q, recvbuf + off[q], 0, off[q + 1] - off[q]);
    }
    return rc;
}

int cgloo__allgather_single_copy_from(coll *c, const void *block, void *recvbuf, const size_t *off)
{
    bool refused = false;
    cgloo__sc s;
    if (off[c->rank + 1] == off[c->rank])
        block = NULL; /* nothing of this rank's to read (nor to probe) */
    int rc = cgloo__sc_begin(&s, c, block, recvbuf, off, NULL, &refused);
    if (rc == CGLOO_OK && !refused)
        rc = cgloo__sc_agree(&s, read_blocks(&s, recvbuf, off), SC_STEP_DONE);
    cgloo__sc_end(&s);
    if (!refused)
        return rc;
    cgloo__sc_fallback(c, "ring");
    return cgloo__allgather_ring(c, recvbuf, off);
}

int cgloo__allgather_single_copy(coll *c, void *recvbuf, const size_t *off)
{
    return cgloo__allgather_single_copy_from(c, (uint8_t *)recvbuf + off[c->rank], recvbuf, off);
}
