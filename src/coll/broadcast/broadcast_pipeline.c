/*
 * Pipelined chain broadcast.
 *
 * Ranks form a chain in order relative to the root: root -> root+1 -> ... -> root-1. The
 * message is cut into segments; each rank forwards segment i to the next rank as soon as it has
 * received it, while segments i+1, i+2, ... are still arriving, so receiving and sending overlap
 * and every link carries data at once. Receives are posted a few segments ahead (a bounded
 * window) so segments land straight in the caller's buffer.
 *
 * Preconditions: none. Non-power-of-two p: nothing special, a chain has any length.
 *
 * Cost, with s segments of n/s bytes:
 *     (p - 1 + s - 1) (alpha + (n/s) beta)
 * which tends to n beta for s >> p: the time of one send of the message, whatever p. Each rank
 * but the last sends n bytes; n (p - 1) bytes on the wire in all. For large messages; for
 * small ones the p - 1 latency steps of the chain lose to the binomial tree's lg p.
 */
#include "coll/broadcast/broadcast.h"
#include "coll/pattern/tree.h"

#define CHAIN_WINDOW 4

typedef struct chain {
    coll *c;
    uint8_t *buf;
    size_t bytes, seg, nseg;
    int prev, next; /* -1 at the ends of the chain */
    cgloo_request *recv[CHAIN_WINDOW], *send[CHAIN_WINDOW];
} chain;

/* Segment size. Measured over loopback TCP (2 cores, 3 to 16 ranks, 256 KiB to 16 MiB):
 * segments at or below the eager limit (64 KiB) cost a wake-up per segment per rank and run
 * two to four times slower; 128 KiB to 1 MiB are within noise of each other, 256 KiB is never
 * worse than the others. Below, the chain is not the selector's choice anyway. */
#define CHAIN_SEGMENT (256 * 1024)

static size_t chain_len(const chain *p, size_t i)
{
    size_t left = p->bytes - i * p->seg;
    return left < p->seg ? left : p->seg;
}

static int chain_post_recv(chain *p, size_t i)
{
    if (p->prev < 0 || i >= p->nseg)
        return CGLOO_OK;
    return cgloo__coll_irecv(p->c, p->prev, p->buf + i * p->seg, chain_len(p, i), (unsigned)i,
                             &p->recv[i % CHAIN_WINDOW]);
}

/* chain_forward waits for segment i, posts the receive of segment i + window into the slot it
 * frees, and sends segment i on once the send that used the slot before has finished. */
static int chain_forward(chain *p, size_t i)
{
    int rc = cgloo__coll_wait(p->c, &p->recv[i % CHAIN_WINDOW]);
    if (rc == CGLOO_OK)
        rc = chain_post_recv(p, i + CHAIN_WINDOW);
    if (rc != CGLOO_OK || p->next < 0)
        return rc;
    rc = cgloo__coll_wait(p->c, &p->send[i % CHAIN_WINDOW]);
    if (rc == CGLOO_OK)
        rc = cgloo__coll_isend(p->c, p->next, p->buf + i * p->seg, chain_len(p, i), (unsigned)i,
                               &p->send[i % CHAIN_WINDOW]);
    return rc;
}

int cgloo__broadcast_pipeline(coll *c, void *buf, size_t bytes, int root)
{
    int vr = rel_rank(c->rank, root, c->size);
    chain p = {.c = c, .buf = buf, .bytes = bytes, .seg = CHAIN_SEGMENT};
    p.nseg = (bytes + p.seg - 1) / p.seg;
    p.prev = vr > 0 ? abs_rank(vr - 1, root, c->size) : -1;
    p.next = vr < c->size - 1 ? abs_rank(vr + 1, root, c->size) : -1;
    int rc = CGLOO_OK;
    for (size_t i = 0; rc == CGLOO_OK && i < CHAIN_WINDOW; i++)
        rc = chain_post_recv(&p, i);
    for (size_t i = 0; rc == CGLOO_OK && i < p.nseg; i++)
        rc = chain_forward(&p, i);
    if (rc == CGLOO_OK)
        return cgloo__coll_waitall(c, p.send, CHAIN_WINDOW);
    for (int i = 0; i < CHAIN_WINDOW; i++) {
        cgloo_cancel(p.recv[i]);
        cgloo_cancel(p.send[i]);
    }
    return rc;
}
