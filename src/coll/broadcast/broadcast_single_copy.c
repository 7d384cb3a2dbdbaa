/*
 * Broadcast, "single_copy": the root's buffer moves straight into every rank's, for ranks that
 * share a host (coll/single_copy.h has the steps and the first call's probe).
 *
 * After the ranks told each other where their buffers lie, every rank but the root reads the
 * root's buffer into its own, and where the rounds go through the slots the root at the same
 * time writes the last 1/P of it into every peer's buffer (process_vm_writev, within the peer's
 * gate, coll/slots.h), so that the root's core copies too: each peer reads (P-1)/P n and the root
 * writes (P-1)/P n in all. Then every rank says it is done: a rank returns only once every rank
 * did, since until then a peer may still read the root's buffer, or the root write a peer's.
 * Where the rounds go as messages (no gates), every peer reads all n.
 *
 * Why the root writes a part: a peer alone copied all n while the root waited. An AMD EPYC KVM
 * guest of the 2-core class, p50 us, alternating runs, peers reading all against the root's
 * share: 2 ranks 1 MiB 55-62 / 26-26.5, 4 MiB 198-202 / 109-121, 16 MiB 2008-2156 / 722-1018;
 * 4 ranks (on 2 cores, where the total copied is the same either way) 256 KiB 62-71 / 46-66,
 * 1 MiB 175-206 / 207-212, 4 MiB 745-762 / 771-908, 16 MiB 5858-6506 / 3911-4067.
 *
 * Cost, for n bytes: two rounds of P - 1 small buffers (slot hand-offs, or messages on a tag
 * without slots) (three on a context's first call); every byte reaches each peer in one copy,
 * nothing passes through a ring or from rank to rank; the root's memory serves P - 1 readers at
 * once. Memory: P addresses.
 */
#include "coll/broadcast/broadcast.h"
#include "coll/single_copy.h"

/* tail_from: where the part the root writes starts, the last 1/P of the buffer, so that the
 * root's P - 1 writes take as long as each peer's read of the rest. */
static size_t tail_from(const coll *c, size_t bytes)
{
    return bytes - bytes / (size_t)c->size;
}

/* broadcast_moves: this rank's part. Where the rounds go through the slots, the root writes
 * the tail into every peer's buffer (within its gate) while each peer reads the rest; else
 * every peer reads all of it. */
static int broadcast_moves(cgloo__sc *s, void *buf, size_t bytes, int root)
{
    coll *c = s->c;
    size_t tail = s->slots ? tail_from(c, bytes) : bytes; /* peers read [0, tail) */
    if (c->rank != root)
        return cgloo__sc_read(s, root, buf, 0, tail);
    int rc = CGLOO_OK;
    for (int k = 1; k < c->size && rc == CGLOO_OK && tail < bytes; k++)
        rc = cgloo__sc_write(s, (root + k) % c->size, (uint8_t *)buf + tail, tail, bytes - tail);
    return rc;
}

int cgloo__broadcast_single_copy(coll *c, void *buf, size_t bytes, int root)
{
    bool refused = false;
    cgloo__sc s;
    int rc = cgloo__sc_begin(&s, c, buf, buf, NULL, NULL, &refused);
    if (rc == CGLOO_OK && !refused)
        rc = cgloo__sc_agree(&s, broadcast_moves(&s, buf, bytes, root), SC_STEP_DONE);
    cgloo__sc_end(&s);
    if (!refused)
        return rc;
    cgloo__sc_fallback(c, "pipeline");
    return cgloo__broadcast_pipeline(c, buf, bytes, root);
}
