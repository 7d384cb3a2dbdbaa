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
 * root's link and its reduction carry log2 P vectors: for small vectors.
 * Memory: a leaf sends its input as it is; an inner rank keeps an n-byte accumulator (the root
 * uses recvbuf) and receives into n bytes of scratch.
 */
#include "coll/reduce/reduce.h"

#include <stdlib.h>

#define STEP_BINOMIAL 1 /* + round */

typedef struct binomial {
    coll *c;
    const void *sendbuf;
    uint8_t *acc; /* the partial result; NULL while it is still just sendbuf */
    uint8_t *tmp;
    bool own_acc;
    size_t count, bytes;
} binomial;

static int binomial_rank(const coll *c, int v, int root)
{
    return (v + root) % c->size;
}

static int binomial_alloc(binomial *b)
{
    if (!b->tmp && !(b->tmp = malloc(b->bytes)))
        return cgloo__coll_error(b->c, CGLOO_ENOMEM, "no memory for %zu bytes", b->bytes);
    if (b->acc)
        return CGLOO_OK;
    if (!(b->acc = malloc(b->bytes)))
        return cgloo__coll_error(b->c, CGLOO_ENOMEM, "no memory for %zu bytes", b->bytes);
    b->own_acc = true;
    memcpy(b->acc, b->sendbuf, b->bytes);
    return CGLOO_OK;
}

/* binomial_take receives a child's partial result and reduces it into the accumulator. */
static int binomial_take(binomial *b, int child, unsigned step)
{
    int rc = binomial_alloc(b);
    if (rc == CGLOO_OK)
        rc = cgloo__coll_recv(b->c, child, b->tmp, b->bytes, step);
    if (rc == CGLOO_OK)
        cgloo__coll_reduce(b->c, b->acc, b->tmp, b->count);
    return rc;
}

int cgloo__reduce_binomial(coll *c, const void *sendbuf, void *recvbuf, size_t count, int root)
{
    binomial b = {.c = c, .sendbuf = sendbuf, .count = count, .bytes = count * c->esize};
    int v = (c->rank - root + c->size) % c->size;
    if (v == 0) {
        b.acc = recvbuf;
        if (recvbuf != sendbuf)
            memcpy(recvbuf, sendbuf, b.bytes);
    }
    int rc = CGLOO_OK;
    unsigned round = 0;
    for (int bit = 1; bit < c->size && rc == CGLOO_OK; bit *= 2, round++) {
        if (v & bit) {
            const void *partial = b.acc ? (const void *)b.acc : sendbuf;
            rc = cgloo__coll_send(c, binomial_rank(c, v - bit, root), partial, b.bytes,
                                  STEP_BINOMIAL + round);
            break;
        }
        if (v + bit < c->size)
            rc = binomial_take(&b, binomial_rank(c, v + bit, root), STEP_BINOMIAL + round);
    }
    free(b.tmp);
    if (b.own_acc)
        free(b.acc);
    return rc;
}
