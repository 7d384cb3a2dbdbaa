/*
 * cgloo_alltoall and cgloo_alltoallv: argument checks, the algorithm table and the selector.
 * Both describe the send and receive buffers as tables of per-rank blocks (pattern/blocks.h).
 * sendbuf == recvbuf works (in place): the send side is copied aside first.
 */
#include "coll/alltoall/alltoall.h"
#include "coll/pattern/blocks.h"
#include "coll/single_copy.h"

/* The algorithms, in the order cgloo_algorithm_names("alltoall") lists them. */
typedef enum alltoall_algorithm {
    ALLTOALL_PAIRWISE,
    ALLTOALL_SINGLE_COPY,
    ALLTOALL_ALGORITHM_COUNT
} alltoall_algorithm;

const coll_algorithm cgloo__alltoall_algorithms[ALLTOALL_ALGORITHM_COUNT + 1] = {
    [ALLTOALL_PAIRWISE] =
        {"pairwise", "step k sends to rank+k and receives from rank-k, a bounded window in flight"},
    [ALLTOALL_SINGLE_COPY] = {"single_copy",
                              "every rank reads its blocks straight out of the peers' memory "
                              "(one host, shared memory, large blocks)"},
};

static const alltoall_fn alltoall_fns[ALLTOALL_ALGORITHM_COUNT] = {
    [ALLTOALL_PAIRWISE] = cgloo__alltoall_pairwise,
    [ALLTOALL_SINGLE_COPY] = cgloo__alltoall_single_copy,
};

/* From this many bytes received (2 ranks; more: ALLTOALL_SINGLE_COPY_MIN_BYTES), where every
 * peer's memory can be read, the single copy. Over shared memory, p50 of pairwise against
 * single_copy (docs/BENCHMARKS.md, "Single copy"): 2 ranks 16 KiB 3.5 against 5.1 us, 64 KiB
 * 7.0 against 6.8, 256 KiB 25 against 15; 4 ranks 64 KiB 28 against 33, 256 KiB 104 against
 * 64. */
#define ALLTOALL_SINGLE_COPY_MIN_BYTES_2 (64 * 1024)
#define ALLTOALL_SINGLE_COPY_MIN_BYTES (256 * 1024)

/* alltoall_select: single copy for large blocks over shared memory, else pairwise. bytes is
 * what every rank receives when the blocks are even (alltoall); alltoallv (uneven) passes 0,
 * since ranks that receive different amounts would choose differently. */
static alltoall_algorithm alltoall_select(const coll *c, size_t bytes)
{
    if (cgloo__sc_wanted(c, bytes, ALLTOALL_SINGLE_COPY_MIN_BYTES_2,
                         ALLTOALL_SINGLE_COPY_MIN_BYTES))
        return ALLTOALL_SINGLE_COPY; /* one copy per block, no message carries it */
    return ALLTOALL_PAIRWISE;
}

/* Stands in for a NULL buffer that has no bytes, so offsets can be added to it. */
static uint8_t alltoall_empty;

typedef struct a2a {
    coll *c;
    const uint8_t *sendbuf;
    uint8_t *recvbuf;
    size_t *soff, *roff; /* one allocation: soff[0..size], roff[0..size] */
    void *copy;          /* the send side, copied aside when sendbuf == recvbuf */
} a2a;

static int a2a_layout(a2a *x, const size_t *scounts, const size_t *rcounts, size_t count)
{
    coll *c = x->c;
    x->soff = malloc(2 * ((size_t)c->size + 1) * sizeof *x->soff);
    if (!x->soff)
        return cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for %d block offsets", c->size);
    x->roff = x->soff + c->size + 1;
    if (!blocks_fill(x->soff, c->size, scounts, count, c->esize) ||
        !blocks_fill(x->roff, c->size, rcounts, count, c->esize))
        return cgloo__coll_error(c, CGLOO_EINVAL, "the buffer size overflows");
    if (blocks_bytes(x->soff, c->rank) != blocks_bytes(x->roff, c->rank))
        return cgloo__coll_error(c, CGLOO_EINVAL, "sendcounts[%d] and recvcounts[%d] differ",
                                 c->rank, c->rank);
    return CGLOO_OK;
}

/* a2a_buffers checks the buffers against the layout and copies the send side aside when it is
 * also the receive side. */
static int a2a_buffers(a2a *x, const void *sendbuf, void *recvbuf)
{
    size_t sbytes = x->soff[x->c->size], rbytes = x->roff[x->c->size];
    if ((sbytes && !sendbuf) || (rbytes && !recvbuf))
        return cgloo__coll_error(x->c, CGLOO_EINVAL, "NULL buffer for %zu bytes",
                                 sbytes && !sendbuf ? sbytes : rbytes);
    if (sendbuf != recvbuf && cgloo__bytes_overlap(sendbuf, sbytes, recvbuf, rbytes))
        return cgloo__coll_error(x->c, CGLOO_EINVAL,
                                 "recvbuf overlaps sendbuf without being in place (recvbuf == "
                                 "sendbuf)");
    x->sendbuf = sendbuf ? sendbuf : &alltoall_empty;
    x->recvbuf = recvbuf ? recvbuf : &alltoall_empty;
    if (sendbuf != recvbuf || sbytes == 0)
        return CGLOO_OK;
    x->copy = malloc(sbytes);
    if (!x->copy)
        return cgloo__coll_error(x->c, CGLOO_ENOMEM, "no memory for %zu bytes", sbytes);
    memcpy(x->copy, sendbuf, sbytes);
    x->sendbuf = x->copy;
    return CGLOO_OK;
}

/* alltoall_call runs either form; `empty` says every rank knows no rank moves any bytes. */
static int alltoall_call(coll *c, const void *sendbuf, const size_t *scounts, void *recvbuf,
                         const size_t *rcounts, size_t count, bool empty,
                         const cgloo_coll_opts *opts)
{
    a2a x = {.c = c};
    int rc = a2a_layout(&x, scounts, rcounts, count);
    if (rc == CGLOO_OK)
        rc = a2a_buffers(&x, sendbuf, recvbuf);
    int a = -1;
    if (rc == CGLOO_OK) {
        a = cgloo__coll_find(c, cgloo__alltoall_algorithms, ALLTOALL_ALGORITHM_COUNT, opts,
                             alltoall_select(c, scounts ? 0 : x.roff[c->size]));
        rc = a < 0 ? a : CGLOO_OK;
    }
    if (rc == CGLOO_OK) {
        size_t own = blocks_bytes(x.roff, c->rank);
        if (own)
            memcpy(x.recvbuf + x.roff[c->rank], x.sendbuf + x.soff[c->rank], own);
        if (c->size > 1 && !empty)
            rc = alltoall_fns[a](c, x.sendbuf, x.soff, x.recvbuf, x.roff);
    }
    free(x.copy);
    free(x.soff);
    return rc;
}

int cgloo_alltoall(cgloo_context *ctx, const void *sendbuf, void *recvbuf, size_t count,
                   cgloo_dtype dtype, const cgloo_coll_opts *opts)
{
    COLL_DECL(c);
    int rc = cgloo__coll_begin(&c, ctx, "alltoall", dtype, opts);
    if (rc != CGLOO_OK)
        return rc;
    c.fp.count = count;
    return alltoall_call(&c, sendbuf, NULL, recvbuf, NULL, count, count == 0, opts);
}

int cgloo_alltoallv(cgloo_context *ctx, const void *sendbuf, const size_t *sendcounts,
                    void *recvbuf, const size_t *recvcounts, cgloo_dtype dtype,
                    const cgloo_coll_opts *opts)
{
    COLL_DECL(c);
    int rc = cgloo__coll_begin(&c, ctx, "alltoallv", dtype, opts);
    if (rc != CGLOO_OK)
        return rc;
    if (!sendcounts || !recvcounts)
        return cgloo__coll_error(&c, CGLOO_EINVAL, "%s is NULL",
                                 !sendcounts ? "sendcounts" : "recvcounts");
    c.fp.sendcounts = sendcounts;
    c.fp.recvcounts = recvcounts;
    /* A rank cannot know that the others move nothing, so zero counts still exchange. */
    return alltoall_call(&c, sendbuf, sendcounts, recvbuf, recvcounts, 0, false, opts);
}
