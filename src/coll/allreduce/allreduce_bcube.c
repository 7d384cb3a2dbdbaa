/*
 * Allreduce, bcube.
 *
 * The ranks are numbered in a mixed radix whose digits have sizes g_0 .. g_{d-1} (their product
 * is P). Along dimension i, the ranks that differ only in digit i form a group of g_i ranks.
 * Reduce-scatter: for i = 0 .. d-1, split the current range into g_i parts; every member sends
 * each other member its part and reduces the part it keeps with theirs. Allgather: for
 * i = d-1 .. 0, every member sends its part to the others of its group and receives theirs.
 *
 * Group sizes: P is split into factors no larger than the radix (opts.radix, default 2) where
 * it can be; a prime factor larger than the radix becomes one group of that size. So any P
 * works; with P a power of the radix this is Gloo's bcube.
 *
 * Cost: 2 d latency steps, each with g_i - 1 messages posted at once; each rank sends
 * 2 (P-1)/P n bytes in all.
 */
#include "coll/allreduce/allreduce.h"
#include "coll/pattern/ring.h"

#include <stdlib.h>

#define MAX_DIMS 64
#define STEP_SCATTER 60 /* + dimension */
#define STEP_GATHER 130 /* + dimension */

typedef struct bcube {
    coll *c;
    uint8_t *buf, *tmp;
    int dims, group[MAX_DIMS], stride[MAX_DIMS];
    size_t lo[MAX_DIMS + 1], hi[MAX_DIMS + 1]; /* the element range at each level */
    cgloo_request **reqs;
} bcube;

/* bcube_factor splits P into group sizes <= radix where possible. */
static void bcube_factor(bcube *b, int size, int radix)
{
    b->dims = 0;
    int stride = 1;
    while (size > 1 && b->dims < MAX_DIMS) {
        int g = 0;
        for (int f = CGLOO_MIN(radix, size); f >= 2 && !g; f--)
            if (size % f == 0)
                g = f;
        for (int f = 2; !g; f++)
            if (size % f == 0)
                g = f; /* smallest prime factor, larger than the radix */
        b->group[b->dims] = g;
        b->stride[b->dims++] = stride;
        stride *= g;
        size /= g;
    }
}

static int digit(const bcube *b, int rank, int d)
{
    return rank / b->stride[d] % b->group[d];
}

static int member(const bcube *b, int d, int j)
{
    return b->c->rank + (j - digit(b, b->c->rank, d)) * b->stride[d];
}

/* Element offset of part j of level d's range. */
static size_t part_lo(const bcube *b, int d, int j)
{
    return b->lo[d] + block_offset(b->hi[d] - b->lo[d], b->group[d], j);
}

static int bcube_scatter_dim(bcube *b, int d)
{
    coll *c = b->c;
    size_t es = c->esize;
    int g = b->group[d], me = digit(b, c->rank, d), n = 0, slot = 0, rc = CGLOO_OK;
    size_t keep = part_lo(b, d, me + 1) - part_lo(b, d, me);
    unsigned step = STEP_SCATTER + (unsigned)d;
    for (int j = 0; j < g && rc == CGLOO_OK; j++) {
        if (j == me)
            continue;
        size_t lo = part_lo(b, d, j), hi = part_lo(b, d, j + 1);
        rc = cgloo__coll_irecv(c, member(b, d, j), b->tmp + (size_t)slot++ * keep * es, keep * es,
                               step, &b->reqs[n++]);
        if (rc == CGLOO_OK)
            rc = cgloo__coll_isend(c, member(b, d, j), b->buf + lo * es, (hi - lo) * es, step,
                                   &b->reqs[n++]);
    }
    rc = cgloo__coll_finish(c, b->reqs, n, rc);
    for (int i = 0; rc == CGLOO_OK && i < slot; i++)
        cgloo__coll_reduce(c, b->buf + part_lo(b, d, me) * es, b->tmp + (size_t)i * keep * es,
                           keep);
    b->lo[d + 1] = part_lo(b, d, me);
    b->hi[d + 1] = part_lo(b, d, me + 1);
    return rc;
}

static int bcube_gather_dim(bcube *b, int d)
{
    coll *c = b->c;
    size_t es = c->esize;
    int g = b->group[d], me = digit(b, c->rank, d), n = 0, rc = CGLOO_OK;
    unsigned step = STEP_GATHER + (unsigned)d;
    for (int j = 0; j < g && rc == CGLOO_OK; j++) {
        if (j == me)
            continue;
        size_t lo = part_lo(b, d, j), hi = part_lo(b, d, j + 1);
        rc = cgloo__coll_irecv(c, member(b, d, j), b->buf + lo * es, (hi - lo) * es, step,
                               &b->reqs[n++]);
        if (rc == CGLOO_OK)
            rc = cgloo__coll_isend(c, member(b, d, j), b->buf + b->lo[d + 1] * es,
                                   (b->hi[d + 1] - b->lo[d + 1]) * es, step, &b->reqs[n++]);
    }
    return cgloo__coll_finish(c, b->reqs, n, rc);
}

int cgloo__allreduce_bcube(coll *c, void *buf, size_t count)
{
    bcube b = {.c = c, .buf = buf};
    bcube_factor(&b, c->size, c->radix);
    int gmax = 2;
    size_t scratch = 0, range = count;
    for (int d = 0; d < b.dims; d++) {
        /* level d keeps at most ceil(range / g) elements and receives g-1 such parts */
        size_t keep = range / (size_t)b.group[d] + 1;
        scratch = CGLOO_MAX(scratch, keep * (size_t)(b.group[d] - 1));
        gmax = CGLOO_MAX(gmax, b.group[d]);
        range = keep;
    }
    if (scratch > SIZE_MAX / c->esize)
        return cgloo__coll_error(c, CGLOO_EINVAL, "count %zu overflows the scratch", count);
    b.lo[0] = 0;
    b.hi[0] = count;
    b.tmp = malloc(scratch * c->esize);
    b.reqs = calloc(2 * (size_t)gmax, sizeof *b.reqs);
    int rc = b.tmp && b.reqs ? CGLOO_OK : CGLOO_ENOMEM;
    for (int d = 0; rc == CGLOO_OK && d < b.dims; d++)
        rc = bcube_scatter_dim(&b, d);
    for (int d = b.dims - 1; rc == CGLOO_OK && d >= 0; d--)
        rc = bcube_gather_dim(&b, d);
    free(b.tmp);
    free(b.reqs);
    return rc;
}
