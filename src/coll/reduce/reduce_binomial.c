/*
 * Reduce, binomial tree.
 *
 * Ranks are numbered relative to the root, v = (rank - root) mod P. In round k (bit = 2^k) a
 * rank with bit k set sends its partial result to v - bit and is done; a rank whose bits 0..k
 * are all clear receives the partial result of v + bit, when that rank exists, and reduces it
 * into its own. After ceil(log2 P) rounds the root (v = 0) holds the reduction.
 *
 * Any P and any root: a partner beyond P is simply absent, so no fold is needed.
 * Preconditions: a commutative, associative op.
 *
 * Cost, for n bytes: ceil(log2 P) latency steps; every non-root rank sends n bytes once; a rank
 * with k children receives and reduces k n bytes, the root ceil(log2 P) n. Few steps, but the
 * root's link and its reduction carry log2 P vectors: for small vectors, and at 2 ranks for
 * every size (one message, the least a reduce can move).
 * Memory: a leaf sends its input as it is; an inner rank keeps an n-byte accumulator (the root
 * uses recvbuf) and, from its second child on, receives into n bytes of scratch.
 *
 * Segments: a partial result travels as messages of BINOMIAL_SEGMENT bytes, and the parent
 * reduces each one as soon as it is in, while it is still in the cache. The first child's
 * segments land straight in the accumulator, into which the rank's own input is then reduced:
 * no copy of the input and no scratch (a 2-rank root has nothing else to do); in place on the
 * root the accumulator already holds the input, so every child goes through the scratch.
 */
#include "coll/reduce/reduce.h"

#include <stdlib.h>

#define STEP_BINOMIAL 1 /* + round */

/* Bytes of a partial result per message. cgloo-bench --mode reduce, 2 ranks over loopback TCP
 * on the shared 2-core machine (load 5), p50 us of one run each, segments of 32 / 64 / 128 / 256
 * KiB / 4 MiB (one message): 512 KiB 133 / 119 / 116-124 / 102 / 143, 1 MiB 234 / 213 / 213-236 /
 * 226 / 291, 2 MiB 475 / 437 / 480-524 / 468 / 698; the unsegmented tree before (recv into scratch,
 * then reduce): 512 KiB 133, 1 MiB 338, 2 MiB 753. */
#define BINOMIAL_SEGMENT (128u * 1024)

typedef struct binomial {
    coll *c;
    const uint8_t *sendbuf;
    uint8_t *acc; /* the partial result (recvbuf on the root) */
    uint8_t *tmp;
    bool acc_full; /* acc holds this rank's input reduced in */
    size_t count, bytes;
    size_t seg; /* bytes per segment: BINOMIAL_SEGMENT, rounded down to whole elements */
} binomial;

static int binomial_rank(const coll *c, int v, int root)
{
    return (v + root) % c->size;
}

static size_t segment_count(const binomial *b)
{
    return (b->bytes + b->seg - 1) / b->seg;
}

static size_t segment_bytes(const binomial *b, size_t i)
{
    return CGLOO_MIN(b->seg, b->bytes - i * b->seg);
}

static uint8_t *binomial_malloc(binomial *b)
{
    uint8_t *p = malloc(b->bytes);
    if (!p)
        cgloo__coll_error(b->c, CGLOO_ENOMEM, "no memory for %zu bytes", b->bytes);
    return p;
}

/* binomial_send sends a partial result to the parent, segment by segment. */
static int binomial_send(const binomial *b, int parent, const uint8_t *buf, unsigned step)
{
    coll *c = b->c;
    size_t n = segment_count(b);
    cgloo_request **reqs = calloc(n, sizeof *reqs);
    if (!reqs)
        return cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for %zu requests", n);
    int rc = CGLOO_OK;
    for (size_t i = 0; i < n && rc == CGLOO_OK; i++)
        rc = cgloo__coll_isend(c, parent, buf + i * b->seg, segment_bytes(b, i), step, &reqs[i]);
    rc = cgloo__coll_finish(c, reqs, (int)n, rc);
    free(reqs);
    return rc;
}

/* binomial_take receives a child's partial result into `into` and, one segment at a time as
 * it arrives, reduces `from` into the accumulator (into == acc, from == sendbuf for the first
 * child; into == tmp, from == tmp after). */
static int binomial_take(binomial *b, int child, unsigned step, uint8_t *into, const uint8_t *from)
{
    coll *c = b->c;
    size_t n = segment_count(b);
    cgloo_request **reqs = calloc(n, sizeof *reqs);
    if (!reqs)
        return cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for %zu requests", n);
    int rc = CGLOO_OK;
    for (size_t i = 0; i < n && rc == CGLOO_OK; i++)
        rc = cgloo__coll_irecv(c, child, into + i * b->seg, segment_bytes(b, i), step, &reqs[i]);
    for (size_t i = 0; i < n && rc == CGLOO_OK; i++) {
        rc = cgloo__coll_wait(c, &reqs[i]);
        size_t at = i * b->seg;
        if (rc == CGLOO_OK)
            cgloo__coll_reduce(c, b->acc + at, from + at, segment_bytes(b, i) / c->esize);
    }
    rc = cgloo__coll_finish(c, reqs, (int)n, rc);
    free(reqs);
    return rc;
}

/* binomial_child takes one child's partial result: straight into the accumulator while it
 * does not hold this rank's input yet, else through the scratch. */
static int binomial_child(binomial *b, int child, unsigned step)
{
    if (!b->acc && !(b->acc = binomial_malloc(b)))
        return CGLOO_ENOMEM;
    if (!b->acc_full) {
        b->acc_full = true;
        return binomial_take(b, child, step, b->acc, b->sendbuf);
    }
    if (!b->tmp && !(b->tmp = binomial_malloc(b)))
        return CGLOO_ENOMEM;
    return binomial_take(b, child, step, b->tmp, b->tmp);
}

int cgloo__reduce_binomial(coll *c, const void *sendbuf, void *recvbuf, size_t count, int root)
{
    binomial b = {.c = c, .sendbuf = sendbuf, .count = count, .bytes = count * c->esize};
    b.seg = CGLOO_MAX(BINOMIAL_SEGMENT / c->esize, 1) * c->esize;
    int v = (c->rank - root + c->size) % c->size;
    if (v == 0) {
        b.acc = recvbuf;
        b.acc_full = recvbuf == sendbuf;
    }
    int rc = CGLOO_OK;
    unsigned round = 0;
    for (int bit = 1; bit < c->size && rc == CGLOO_OK; bit *= 2, round++) {
        if (v & bit) {
            const uint8_t *partial = b.acc_full ? b.acc : b.sendbuf;
            rc = binomial_send(&b, binomial_rank(c, v - bit, root), partial, STEP_BINOMIAL + round);
            break;
        }
        if (v + bit < c->size)
            rc = binomial_child(&b, binomial_rank(c, v + bit, root), STEP_BINOMIAL + round);
    }
    if (rc == CGLOO_OK && v == 0 && !b.acc_full)
        memcpy(recvbuf, sendbuf, b.bytes); /* a world of one */
    free(b.tmp);
    if (v != 0)
        free(b.acc); /* this rank's own accumulator, if it had children */
    return rc;
}
