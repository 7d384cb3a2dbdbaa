/*
 * Collectives through shared-memory slots (transport/slot.h): a rank writes its small buffer
 * into a slot of each peer it sends to and publishes it, and reads the peers' slots in place,
 * so that a small vector moves in one cache-line hand-off instead of a message through the
 * point-to-point engine. The `shm` algorithms (allreduce, barrier, broadcast, and allgather,
 * reduce_scatter, reduce, gather, scatter, alltoall) are written with these calls; a selector
 * picks them only where cgloo__coll_slots_usable says every peer has slots.
 *
 * One operation on a set of peers: cgloo__slots_open names the peers, then any number of
 * rounds of put (to every peer of the set, or to none), wait (for every peer of the set, or for
 * none), reading with cgloo__slots_data, and cgloo__slots_done. Every rank of a pair must put
 * and wait in matching rounds (one's put is the other's wait); a pair that has fewer rounds than
 * the others drops out of the set (cgloo__slots_drop). Errors name the peer and step
 * as the message-based collectives do; a peer that dies while others wait on its slot is an
 * EPEER naming it, a peer that does not come is ETIMEDOUT at the call's deadline.
 */
#ifndef CGLOO_COLL_SLOTS_H
#define CGLOO_COLL_SLOTS_H

#include "coll/coll.h"
#include "transport/slot.h"

/* The selectors pick the shm algorithms for at most this many ranks: each rank writes its
 * vector once per peer and reduces every peer's, which grows with the ranks. */
#define SLOTS_MAX_RANKS 16
/* Peers an operation keeps on the stack; more are allocated. */
#define SLOTS_INLINE 15

typedef struct slot_peer {
    cgloo__slot_link *link;
    int rank;
    uint64_t n;   /* this round's op number on the link's channel */
    bool arrived; /* the peer's buffer for op n is published */
    /* The round's bytes for the peer (cgloo__slots_put_each) and the length expected from it
     * (cgloo__slots_wait_each); put and wait set them for every peer. */
    const void *out;
    size_t out_len, in_len;
    uint64_t gate; /* the op number that keys the gates with the peer (0: none opened) */
    /* The peer's lined payload of the round (transport/slot.h), gathered out of its lines by
     * the wait, so that every reader sees a payload as one run of bytes. */
    _Alignas(16) uint8_t lined[CGLOO_SLOT_LINED_MAX]; /* last: peer_init clears what precedes */
} slot_peer;

typedef struct slot_set {
    coll *c;
    int ch; /* the channel: the caller's tag */
    int n;  /* peers in p */
    slot_peer *p;
    slot_peer inline_p[SLOTS_INLINE];
    unsigned step; /* for errors */
} slot_set;

/* cgloo__coll_slots_usable: the call's tag has a channel and every peer of the context has
 * slots (shared memory binds every peer on this host, so the answer is the same on every rank
 * of a single-host job, and false on every rank of a job that spans hosts). Never blocks. */
bool cgloo__coll_slots_usable(coll *c);
/* cgloo__coll_slots_reach is cgloo__coll_slots_usable without the limit on ranks: whether an
 * shm algorithm asked for by name can run. */
bool cgloo__coll_slots_reach(coll *c);
/* cgloo__coll_slots_fallback: an shm algorithm was asked for by name where the slots cannot
 * serve (a peer not on shared memory, a tag without a channel): the call runs `instead`, the
 * selector's message-based choice from `table`, under its own name (errors, the flight
 * recorder), so that every listed algorithm runs everywhere. Returns instead. */
int cgloo__coll_slots_fallback(coll *c, const coll_algorithm *table, int instead);
/* cgloo__slots_open prepares s for an operation with one peer (rank >= 0) or with every other
 * rank (rank -1). ENOTSUP (recorded) when a peer has no slots or the tag no channel; ENOMEM. */
int cgloo__slots_open(coll *c, slot_set *s, int rank);
void cgloo__slots_close(slot_set *s);
/* cgloo__slots_put_each starts the next round: waits until each peer is done with the buffer
 * it reuses, copies p[i].out_len bytes (at most CGLOO_SLOT_DATA) from p[i].out into peer i's,
 * which the caller sets for every peer first, and publishes them. Errors: those of the waits
 * (below). */
int cgloo__slots_put_each(slot_set *s);
/* cgloo__slots_put is cgloo__slots_put_each with the same len bytes for every peer. */
static inline int cgloo__slots_put(slot_set *s, const void *data, size_t len)
{
    for (int i = 0; i < s->n; i++) {
        s->p[i].out = data;
        s->p[i].out_len = len;
    }
    return cgloo__slots_put_each(s);
}
/* cgloo__slots_next starts the next round for a rank that only reads in it. */
void cgloo__slots_next(slot_set *s);
/* cgloo__slots_wait_each waits until every peer of s has published this round's buffer, of
 * p[i].in_len bytes for peer i (the caller sets them for every peer first). EPROTO for another
 * length, EPEER naming a peer that failed, ETIMEDOUT, EABORTED, EINTR; recorded as the
 * collective's error. */
int cgloo__slots_wait_each(slot_set *s);
/* cgloo__slots_wait is cgloo__slots_wait_each with len bytes from every peer. */
static inline int cgloo__slots_wait(slot_set *s, size_t len)
{
    for (int i = 0; i < s->n; i++)
        s->p[i].in_len = len;
    return cgloo__slots_wait_each(s);
}
/* cgloo__slots_data: peer i's published buffer of this round (after a wait; a lined payload's
 * gathered copy). */
static inline const void *cgloo__slots_data(const slot_set *s, int i)
{
    const slot_peer *p = &s->p[i];
    return cgloo__slot_lined(p->in_len) ? p->lined : p->link->rx[s->ch].buf[p->n & 1].data;
}
/* cgloo__slots_part: the units (bytes or elements) of a block of n that the round starting at
 * unit `from` moves, at most `per` (a buffer's payload): none once the block is done. */
static inline size_t cgloo__slots_part(size_t n, size_t from, size_t per)
{
    return from < n ? CGLOO_MIN(per, n - from) : 0;
}
/* cgloo__slots_rounds: the rounds of `per` units a block of n takes, at least one (ranks meet
 * once even with nothing to move, as the message-based algorithms' empty exchanges do, so that
 * a missing or dead peer shows there too). */
static inline size_t cgloo__slots_rounds(size_t n, size_t per)
{
    return n > per ? (n - 1) / per + 1 : 1;
}
/* cgloo__slots_expect_blocks: each peer's in_len for the round starting at byte `from` of the
 * blocks laid out by off (byte offsets, one block per rank). */
static inline void cgloo__slots_expect_blocks(slot_set *s, const size_t *off, size_t from)
{
    for (int i = 0; i < s->n; i++) {
        int r = s->p[i].rank;
        s->p[i].in_len = cgloo__slots_part(off[r + 1] - off[r], from, CGLOO_SLOT_DATA);
    }
}
/* cgloo__slots_take_blocks copies each peer's buffer of the round (after a wait) to its block
 * in base, at byte `from` of it. */
static inline void cgloo__slots_take_blocks(const slot_set *s, uint8_t *base, const size_t *off,
                                            size_t from)
{
    for (int i = 0; i < s->n; i++)
        if (s->p[i].in_len)
            memcpy(base + off[s->p[i].rank] + from, cgloo__slots_data(s, i), s->p[i].in_len);
}
/* cgloo__slots_done tells every peer of s that this rank has read its buffers of the round. */
void cgloo__slots_done(slot_set *s);
/* cgloo__slots_reduce writes to dst the reduction of count elements over every rank in rank
 * order, ((x0 op x1) op x2) ..., where x_r is peer r's buffer of this round (after a wait) and
 * this rank's own is `own`, so that every algorithm that reduces this way computes the same
 * expression. s holds every other rank in rank order (opened with rank -1, nothing dropped);
 * count elements fit a buffer; dst and own are the same or apart. */
void cgloo__slots_reduce(slot_set *s, void *dst, const void *own, size_t count);
/* cgloo__slots_drop takes peer i out of s after a round (the others keep their order): this
 * rank has no more rounds with it, and it none with this rank. */
void cgloo__slots_drop(slot_set *s, int i);

/* Gates: a rank lets its peers write straight into its memory (process_vm_writev: the
 * single_copy collectives' writes, coll/single_copy.h) only while it is inside the operation, so
 * that no write lands in a buffer the caller has got back (after a timeout, say) and reused.
 * cgloo__slots_gate_open, right before the round that tells the peers where the memory lies,
 * opens this rank's gate with every peer of s, keyed to that round's op number (which both ranks
 * of a pair count alike). A writer brackets each write with cgloo__slots_gate_enter (false: the
 * owner has left, do not write) and cgloo__slots_gate_leave. cgloo__slots_gate_close, before the
 * owner returns (whatever happened), shuts its gates, waiting out a write in progress for at
 * most SLOTS_GATE_WAIT_MS; it returns a peer that stayed in its write longer (its write may
 * still land), or -1. Never blocks otherwise. */
/* A peer's write into this rank's memory is one process_vm_writev of at most a chunk, a matter
 * of microseconds: one that lasts this long is stalled (stopped, or swapped out). */
#define SLOTS_GATE_WAIT_MS 2000
void cgloo__slots_gate_open(slot_set *s);
bool cgloo__slots_gate_enter(slot_set *s, int i);
void cgloo__slots_gate_leave(slot_set *s, int i);
int cgloo__slots_gate_close(slot_set *s);

#endif
