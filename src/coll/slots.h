/*
 * Collectives through shared-memory slots (transport/slot.h): a rank writes its small buffer
 * into a slot of each peer it sends to and publishes it, and reads the peers' slots in place,
 * so that a small vector moves in one cache-line hand-off instead of a message through the
 * point-to-point engine. The `shm` algorithms (allreduce, barrier, broadcast) are written with
 * these calls; a selector picks them only where cgloo__coll_slots_usable says every peer has
 * slots.
 *
 * One operation on a set of peers: cgloo__slots_open names the peers, then any number of
 * rounds of put (to every peer of the set, or to none), wait (for every peer of the set, or for
 * none), reading with cgloo__slots_data, and cgloo__slots_done. Every rank of a pair must put
 * and wait in matching rounds (one's put is the other's wait). Errors name the peer and step
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
/* cgloo__slots_put starts the next round: waits until each peer is done with the buffer it
 * reuses, copies len bytes (at most CGLOO_SLOT_DATA) into it and publishes it. Errors: those
 * of the waits (below). */
int cgloo__slots_put(slot_set *s, const void *data, size_t len);
/* cgloo__slots_next starts the next round for a rank that only reads in it. */
void cgloo__slots_next(slot_set *s);
/* cgloo__slots_wait waits until every peer of s has published this round's buffer of len
 * bytes. EPROTO for another length, EPEER naming a peer that failed, ETIMEDOUT, EABORTED,
 * EINTR; recorded as the collective's error. */
int cgloo__slots_wait(slot_set *s, size_t len);
/* cgloo__slots_data: peer i's published buffer of this round (after a wait). */
static inline const void *cgloo__slots_data(const slot_set *s, int i)
{
    return s->p[i].link->rx[s->ch].buf[s->p[i].n & 1].data;
}
/* cgloo__slots_done tells every peer of s that this rank has read its buffers of the round. */
void cgloo__slots_done(slot_set *s);

#endif
