/*
 * Allgather (and allgatherv) through shared-memory slots (coll/slots.h).
 *
 * Every rank writes its block into its slot of each peer and publishes it, then copies each
 * peer's block out of the peer's slot into its place in recvbuf: one cache-line hand-off each
 * way for a small block, no message. Blocks larger than a slot go in slot-sized rounds; every
 * rank runs as many rounds as the largest block needs (all ranks know every block's size), and
 * a block that is done moves nothing in the rounds after.
 *
 * Preconditions: every peer reached through shared memory and a caller tag below
 * CGLOO_SLOT_CHANNELS (ENOTSUP otherwise); any P, uneven and empty blocks. Cost per round: 1
 * latency step; each rank copies its block (P-1) times into the slots and the P-1 others out.
 */
#include "coll/allgather/allgather.h"
#include "coll/pattern/blocks.h"
#include "coll/slots.h"

/* shm_round moves the part of every block from byte `from` on. */
static int shm_round(coll *c, slot_set *s, uint8_t *recvbuf, const size_t *off, size_t from)
{
    size_t own = cgloo__slots_part(blocks_bytes(off, c->rank), from, CGLOO_SLOT_DATA);
    int rc = cgloo__slots_put(s, own ? recvbuf + off[c->rank] + from : NULL, own);
    cgloo__slots_expect_blocks(s, off, from);
    if (rc == CGLOO_OK)
        rc = cgloo__slots_wait_each(s);
    if (rc != CGLOO_OK)
        return rc;
    cgloo__slots_take_blocks(s, recvbuf, off, from);
    cgloo__slots_done(s);
    return CGLOO_OK;
}

int cgloo__allgather_shm(coll *c, void *recvbuf, const size_t *off)
{
    size_t largest = blocks_largest(off, c->size);
    slot_set s;
    int rc = cgloo__slots_open(c, &s, -1);
    size_t rounds = cgloo__slots_rounds(largest, CGLOO_SLOT_DATA);
    for (size_t k = 0; k < rounds && rc == CGLOO_OK; k++)
        rc = shm_round(c, &s, recvbuf, off, k * CGLOO_SLOT_DATA);
    cgloo__slots_close(&s);
    return rc;
}
