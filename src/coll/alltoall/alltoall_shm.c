/*
 * Alltoall (and alltoallv) through shared-memory slots (coll/slots.h).
 *
 * Every rank writes block j of sendbuf into its slot of rank j, all at once, publishes them,
 * then copies each peer's block for it out of that peer's slot: one cache-line hand-off each
 * way for small blocks, no message. Blocks larger than a slot go in slot-sized rounds, counted
 * per pair: in alltoallv a rank knows only the blocks it sends and receives, which are all the
 * pair (i, j) needs, max(i's block for j, j's block for i) in slot payloads; a pair with no more
 * rounds drops out of the set.
 *
 * Preconditions: every peer reached through shared memory and a caller tag below
 * CGLOO_SLOT_CHANNELS (ENOTSUP otherwise); any P, uneven and empty blocks. Cost per round: 1
 * latency step; each rank copies its P-1 outgoing blocks into the slots and P-1 incoming out.
 */
#include "coll/alltoall/alltoall.h"
#include "coll/pattern/blocks.h"
#include "coll/slots.h"

typedef struct shm_a2a {
    const uint8_t *sendbuf;
    const size_t *soff;
    uint8_t *recvbuf;
    const size_t *roff;
} shm_a2a;

/* shm_pair_rounds: the rounds this rank and rank r share. */
static size_t shm_pair_rounds(const shm_a2a *x, int r)
{
    size_t most = CGLOO_MAX(blocks_bytes(x->soff, r), blocks_bytes(x->roff, r));
    return cgloo__slots_rounds(most, CGLOO_SLOT_DATA);
}

static int shm_round(slot_set *s, const shm_a2a *x, size_t from)
{
    for (int i = 0; i < s->n; i++) {
        int r = s->p[i].rank;
        s->p[i].out_len = cgloo__slots_part(blocks_bytes(x->soff, r), from, CGLOO_SLOT_DATA);
        s->p[i].out = s->p[i].out_len ? x->sendbuf + x->soff[r] + from : NULL;
    }
    cgloo__slots_expect_blocks(s, x->roff, from);
    int rc = cgloo__slots_put_each(s);
    if (rc == CGLOO_OK)
        rc = cgloo__slots_wait_each(s);
    if (rc != CGLOO_OK)
        return rc;
    cgloo__slots_take_blocks(s, x->recvbuf, x->roff, from);
    cgloo__slots_done(s);
    return CGLOO_OK;
}

int cgloo__alltoall_shm(coll *c, const void *sendbuf, const size_t *soff, void *recvbuf,
                        const size_t *roff)
{
    shm_a2a x = {.sendbuf = sendbuf, .soff = soff, .recvbuf = recvbuf, .roff = roff};
    slot_set s;
    int rc = cgloo__slots_open(c, &s, -1);
    for (size_t k = 0; rc == CGLOO_OK && s.n > 0; k++) {
        rc = shm_round(&s, &x, k * CGLOO_SLOT_DATA);
        for (int i = s.n - 1; rc == CGLOO_OK && i >= 0; i--)
            if (shm_pair_rounds(&x, s.p[i].rank) <= k + 1)
                cgloo__slots_drop(&s, i);
    }
    cgloo__slots_close(&s);
    return rc;
}
