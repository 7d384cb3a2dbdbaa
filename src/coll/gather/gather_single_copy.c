/*
 * Gather, "single_copy": every rank's block moves straight from its send buffer into the root's
 * receive buffer, for ranks that share a host (coll/single_copy.h has the steps and the first
 * call's probe).
 *
 * After the ranks told each other where their buffers lie, the root copies its own block into
 * place, and where the rounds go through the slots every other rank at the same time writes its
 * block into the root's receive buffer (process_vm_writev, within the root's gate, coll/slots.h):
 * the copies run on every core at once. Where the rounds go as messages (no gates) the root
 * reads every other rank's block itself. Then every rank says it is done: a rank returns only
 * once every rank did, since until then the root may still read a send buffer, or a rank
 * write into the root's receive buffer.
 *
 * Why the ranks write rather than the root read: the root alone copied n bytes, its own block
 * and the others' one after the other. An AMD EPYC KVM guest of the 2-core class, p50 us,
 * alternating runs, root reading against ranks writing: 2 ranks 256 KiB 8.3-8.4 / 6.7-6.9,
 * 1 MiB 45-53 / 21-27, 16 MiB 2712-2840 / 1111-1811, 64 MiB 10.5-11.0 ms / 4.9-5.2; 4 ranks
 * 1 MiB 106-107 / 57-63, 4 MiB 392-397 / 150-171.
 *
 * Cost, for n bytes gathered: two rounds of P - 1 small buffers (slot hand-offs, or messages on a
 * tag without slots) (three on a context's first call); every byte is copied once, by its owner
 * (or by the root where the rounds go as messages). Memory: P addresses.
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

/* gather_moves: this rank's part. The root places its own block, and reads the others' where
 * the rounds go as messages; where they go through the slots, every other rank writes its block
 * into the root's recvbuf instead, while the root copies its own. */
static int gather_moves(cgloo__sc *s, const void *sendbuf, void *recvbuf, const size_t *off,
                        int root)
{
    coll *c = s->c;
    if (c->rank != root)
        return s->slots
                   ? cgloo__sc_write(s, root, sendbuf, off[c->rank], blocks_bytes(off, c->rank))
                   : CGLOO_OK;
    cgloo__gather_own_block(c, sendbuf, recvbuf, off, root);
    return s->slots ? CGLOO_OK : gather_reads(s, c, recvbuf, off);
}

int cgloo__gather_single_copy(coll *c, const void *sendbuf, void *recvbuf, const size_t *off,
                              int root)
{
    bool refused = false;
    cgloo__sc s;
    int rc = cgloo__sc_begin(&s, c, sendbuf, recvbuf, NULL, NULL, &refused);
    if (rc == CGLOO_OK && !refused)
        rc = cgloo__sc_agree(&s, gather_moves(&s, sendbuf, recvbuf, off, root), SC_STEP_DONE);
    cgloo__sc_end(&s);
    if (!refused)
        return rc;
    cgloo__sc_fallback(c, "direct"); /* which copies the root's own block */
    return cgloo__gather_direct(c, sendbuf, recvbuf, off, root);
}
