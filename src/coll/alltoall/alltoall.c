/*
 * cgloo_alltoall and cgloo_alltoallv: argument checks, the algorithm table and the selector.
 * Both describe the send and receive buffers as tables of per-rank blocks (pattern/blocks.h).
 * sendbuf == recvbuf works (in place): the send side is copied aside first.
 */
#include "coll/alltoall/alltoall.h"
#include "coll/pattern/blocks.h"
#include "coll/single_copy.h"
#include "coll/slots.h"

/* The algorithms, in the order cgloo_algorithm_names("alltoall") lists them. */
typedef enum alltoall_algorithm {
    ALLTOALL_PAIRWISE,
    ALLTOALL_SINGLE_COPY,
    ALLTOALL_SHM,
    ALLTOALL_ALGORITHM_COUNT
} alltoall_algorithm;

const coll_algorithm cgloo__alltoall_algorithms[ALLTOALL_ALGORITHM_COUNT + 1] = {
    [ALLTOALL_PAIRWISE] =
        {"pairwise", "step k sends to rank+k and receives from rank-k, a bounded window in flight"},
    [ALLTOALL_SINGLE_COPY] = {"single_copy",
                              "every rank reads its blocks straight out of the peers' memory "
                              "(one host, shared memory, large blocks)"},
    [ALLTOALL_SHM] = {"shm", "every rank publishes each peer's block in that peer's shared-memory "
                             "slot (every peer on this host over shm)"},
};

static const alltoall_fn alltoall_fns[ALLTOALL_ALGORITHM_COUNT] = {
    [ALLTOALL_PAIRWISE] = cgloo__alltoall_pairwise,
    [ALLTOALL_SINGLE_COPY] = cgloo__alltoall_single_copy,
    [ALLTOALL_SHM] = cgloo__alltoall_shm,
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
static alltoall_algorithm alltoall_select_flat(const coll *c, size_t bytes)
{
    if (cgloo__sc_wanted(c, bytes, ALLTOALL_SINGLE_COPY_MIN_BYTES_2,
                         ALLTOALL_SINGLE_COPY_MIN_BYTES))
        return ALLTOALL_SINGLE_COPY; /* one copy per block, no message carries it */
    return ALLTOALL_PAIRWISE;
}

/* Through the slots while a block fits one slot's payload (one round). cgloo-bench over shared
 * memory, p50 us, median of three runs at load 10 to 16, shm against pairwise: 2 ranks 8 B
 * blocks 0.62 against 1.45, 2 KiB 1.25 against 2.14, 8 KiB (three rounds) 3.53 against 3.36;
 * 4 ranks on 2 cores 4 B 6.6 against 11.6, 1 KiB 7.5 against 13.0, 4 KiB (two rounds) 15.6
 * against 15.4. */
#define ALLTOALL_SHM_MAX_BLOCK CGLOO_SLOT_DATA

/* alltoall_select: through the slots for small blocks where every peer shares memory, else
 * flat. alltoallv (count SIZE_MAX) keeps to the flat choice: its ranks cannot agree on the
 * size of the blocks they do not move. */
static alltoall_algorithm alltoall_select(coll *c, size_t count, size_t bytes)
{
    if (count != SIZE_MAX && count * c->esize <= ALLTOALL_SHM_MAX_BLOCK &&
        cgloo__coll_slots_usable(c))
        return ALLTOALL_SHM; /* one cache-line hand-off per block, no message */
    return alltoall_select_flat(c, bytes);
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

void cgloo__alltoall_own_block(coll *c, const void *sendbuf, const size_t *soff, void *recvbuf,
                               const size_t *roff)
{
    size_t own = blocks_bytes(roff, c->rank);
    if (own)
        cgloo__coll_copy_polling(c, (uint8_t *)recvbuf + roff[c->rank],
                                 (const uint8_t *)sendbuf + soff[c->rank], own);
}

/* alltoall_places_own_block: the algorithm copies this rank's own block while the other blocks
 * move (once its first messages are posted, or after its reads). */
static bool alltoall_places_own_block(int a)
{
    return a == ALLTOALL_PAIRWISE || a == ALLTOALL_SINGLE_COPY;
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
        size_t even = scounts ? 0 : x.roff[c->size];
        a = cgloo__coll_find(c, cgloo__alltoall_algorithms, ALLTOALL_ALGORITHM_COUNT, opts,
                             alltoall_select(c, scounts ? SIZE_MAX : count, even));
        rc = a < 0 ? a : CGLOO_OK;
        if (a == ALLTOALL_SHM && c->size > 1 && !cgloo__coll_slots_reach(c))
            a = cgloo__coll_slots_fallback(c, cgloo__alltoall_algorithms,
                                           alltoall_select_flat(c, even));
    }
    if (rc == CGLOO_OK) {
        bool moves = c->size > 1 && !empty;
        if (!moves || !alltoall_places_own_block(a))
            cgloo__alltoall_own_block(c, x.sendbuf, x.soff, x.recvbuf, x.roff);
        if (moves)
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
