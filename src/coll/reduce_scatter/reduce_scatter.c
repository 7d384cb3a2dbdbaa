/*
 * cgloo_reduce_scatter and cgloo_reduce_scatterv: argument checks, the in-place forms, the
 * algorithm table and the selector. Both calls are the collective "reduce_scatter" (one table,
 * one CGLOO_REDUCE_SCATTER_ALGORITHM variable); the fixed-count call is the v call with equal
 * blocks, and every algorithm takes blocks of any size.
 *
 * In place, two forms: recvbuf == sendbuf + (this rank's block offset), the mirror of
 * allgather's in-place form, or recvbuf == sendbuf as MPI_IN_PLACE does it (the result goes to
 * the start of the buffer). Either way the rest of the buffer holds unspecified data on return.
 * Any other overlap of the two buffers is EINVAL. Ranks may mix the forms.
 */
#include "coll/reduce_scatter/reduce_scatter.h"
#include "coll/single_copy.h"
#include "coll/hierarchical.h"
#include "coll/slots.h"

#include <stdlib.h>

/* The algorithms, in the order cgloo_algorithm_names("reduce_scatter") lists them. */
typedef enum reduce_scatter_algorithm {
    REDUCE_SCATTER_RING,
    REDUCE_SCATTER_HALVING_DOUBLING,
    REDUCE_SCATTER_SINGLE_COPY,
    REDUCE_SCATTER_HIERARCHICAL,
    REDUCE_SCATTER_SHM,
    REDUCE_SCATTER_ALGORITHM_COUNT
} reduce_scatter_algorithm;

const coll_algorithm cgloo__reduce_scatter_algorithms[REDUCE_SCATTER_ALGORITHM_COUNT + 1] = {
    [REDUCE_SCATTER_RING] = {"ring",
                             "P-1 steps around a ring, segmented and pipelined: bandwidth-optimal"},
    [REDUCE_SCATTER_HALVING_DOUBLING] =
        {"halving_doubling",
         "recursive halving in log2(P) steps; other P fold into a power of two"},
    [REDUCE_SCATTER_SINGLE_COPY] = {"single_copy",
                                    "every rank reduces its block straight out of the peers' "
                                    "memory (one host, shared memory, large vectors)"},
    [REDUCE_SCATTER_HIERARCHICAL] = {"hierarchical",
                                     "within each host, then across hosts between the ranks of "
                                     "each local rank (hosts of one size; else by allreduce)"},
    [REDUCE_SCATTER_SHM] = {"shm", "every rank publishes each peer's block in that peer's "
                                   "shared-memory slot and reduces its own in place (every peer "
                                   "on this host over shm)"},
};

static const cgloo__reduce_scatter_fn reduce_scatter_fns[REDUCE_SCATTER_ALGORITHM_COUNT] = {
    [REDUCE_SCATTER_RING] = cgloo__reduce_scatter_ring,
    [REDUCE_SCATTER_HALVING_DOUBLING] = cgloo__reduce_scatter_halving_doubling,
    [REDUCE_SCATTER_SINGLE_COPY] = cgloo__reduce_scatter_single_copy,
    [REDUCE_SCATTER_HIERARCHICAL] = cgloo__reduce_scatter_hierarchical,
    [REDUCE_SCATTER_SHM] = cgloo__reduce_scatter_shm,
};

/* Up to this many bytes in all, latency dominates and log2(P) steps beat the ring's P-1.
 * Measured with cgloo-bench over loopback TCP on the 2-core machine class: halving-doubling is
 * ahead up to 16 KiB at 4, 5 and 8 ranks, the ring from 64 KiB on. */
#define RS_HALVING_DOUBLING_MAX_BYTES (32u * 1024)

/* From this many bytes in all (2 ranks; more: RS_SINGLE_COPY_MIN_BYTES), ranks whose peers'
 * memory can all be read reduce straight out of it. Over shared memory, p50 of the previous
 * choice against single_copy (docs/BENCHMARKS.md, "Single copy"): 2 ranks 4 KiB 2.0 against
 * 1.9 us, 16 KiB 3.8 against 2.4, 64 KiB 7.0 against 5.0; 4 ranks 64 KiB 43 against 62, 256 KiB
 * 185 against 154. */
#define RS_SINGLE_COPY_MIN_BYTES_2 (16u * 1024)
#define RS_SINGLE_COPY_MIN_BYTES (256u * 1024)

/* rs_select_flat: halving-doubling for small vectors, the ring (bounded scratch, pipelined)
 * above, single copies where every peer shares memory. */
static reduce_scatter_algorithm rs_select_flat(const coll *c, size_t total_bytes)
{
    if (cgloo__sc_wanted(c, total_bytes, RS_SINGLE_COPY_MIN_BYTES_2, RS_SINGLE_COPY_MIN_BYTES))
        return REDUCE_SCATTER_SINGLE_COPY;
    if (c->size > 1 && total_bytes <= RS_HALVING_DOUBLING_MAX_BYTES)
        return REDUCE_SCATTER_HALVING_DOUBLING;
    return REDUCE_SCATTER_RING;
}

cgloo__reduce_scatter_fn cgloo__reduce_scatter_flat_choice(const coll *c, size_t total_bytes)
{
    return reduce_scatter_fns[rs_select_flat(c, total_bytes)];
}

/* Through the slots while every block fits one slot's payload (one round). cgloo-bench over
 * shared memory, float32 sums, p50 us, median of three runs at load 10 to 16, shm against
 * halving-doubling: 2 ranks 8 B blocks 0.62 against 1.37, 2 KiB 1.27 against 2.24, 8 KiB (three
 * rounds) 3.60 against 3.96, 32 KiB 12.9 against 10.1; 4 ranks on 2 cores 4 B 6.8 against 15.6,
 * 1 KiB 7.5 against 18.4, 4 KiB 15.3 against 23.1, 16 KiB 32.4 against 45.5 (more rounds may
 * pay at 4 ranks; not measured beyond). */
#define RS_SHM_MAX_BLOCK CGLOO_SLOT_DATA

/* rs_select: through the slots while every block is small and every peer shares memory,
 * hierarchical from 256 KiB where some host's ranks are not adjacent (hierarchical.h), else
 * flat. */
static reduce_scatter_algorithm rs_select(coll *c, const size_t *off)
{
    size_t total_bytes = off[c->size] * c->esize;
    bool small = true;
    for (int r = 0; r < c->size; r++)
        small &= (off[r + 1] - off[r]) * c->esize <= RS_SHM_MAX_BLOCK;
    if (small && cgloo__coll_slots_usable(c))
        return REDUCE_SCATTER_SHM; /* one cache-line hand-off per block, no message */
    return cgloo__hier_wanted(c, total_bytes, HIER_SELECT_MIN_BYTES)
               ? REDUCE_SCATTER_HIERARCHICAL
               : rs_select_flat(c, total_bytes);
}

static bool rs_in_place(const coll *c, const void *sendbuf, const void *recvbuf, const size_t *off)
{
    return recvbuf == sendbuf || recvbuf == cgloo__elem(c, sendbuf, off[c->rank]);
}

static int rs_check(coll *c, const void *sendbuf, const void *recvbuf, const size_t *off)
{
    size_t total = off[c->size] * c->esize;
    size_t mine = (off[c->rank + 1] - off[c->rank]) * c->esize;
    if (total && !sendbuf)
        return cgloo__coll_error(c, CGLOO_EINVAL, "NULL sendbuf with %zu elements in all",
                                 off[c->size]);
    if (mine && !recvbuf)
        return cgloo__coll_error(c, CGLOO_EINVAL, "NULL recvbuf with %zu elements for rank %d",
                                 off[c->rank + 1] - off[c->rank], c->rank);
    uintptr_t s = (uintptr_t)sendbuf, r = (uintptr_t)recvbuf;
    if (mine && r < s + total && s < r + mine && !rs_in_place(c, sendbuf, recvbuf, off))
        return cgloo__coll_error(c, CGLOO_EINVAL,
                                 "recvbuf overlaps sendbuf without being in place (recvbuf == "
                                 "sendbuf, or sendbuf + this rank's block)");
    return CGLOO_OK;
}

static int rs_run(coll *c, const void *sendbuf, void *recvbuf, const size_t *off,
                  const cgloo_coll_opts *opts)
{
    int rc = rs_check(c, sendbuf, recvbuf, off);
    if (rc != CGLOO_OK)
        return rc;
    int a = cgloo__coll_find(c, cgloo__reduce_scatter_algorithms, REDUCE_SCATTER_ALGORITHM_COUNT,
                             opts, rs_select(c, off));
    if (a < 0)
        return a;
    /* One rank runs the flat choice too: the slots of a tag without a channel refuse it. */
    if (a == REDUCE_SCATTER_SHM && !cgloo__coll_slots_reach(c))
        a = cgloo__coll_slots_fallback(c, cgloo__reduce_scatter_algorithms,
                                       rs_select_flat(c, off[c->size] * c->esize));
    if (off[c->size] == 0)
        return CGLOO_OK;
    cgloo__reduce_scatter_fn fn = reduce_scatter_fns[a];
    uint8_t *mine = cgloo__elem(c, sendbuf, off[c->rank]);
    if (recvbuf != sendbuf || recvbuf == mine)
        return fn(c, sendbuf, recvbuf, off, 0);
    /* MPI_IN_PLACE style: reduce in place at the block, then move it to the front. */
    rc = fn(c, sendbuf, mine, off, 0);
    size_t bytes = (off[c->rank + 1] - off[c->rank]) * c->esize;
    if (rc == CGLOO_OK && bytes)
        memmove(recvbuf, mine, bytes);
    return rc;
}

static int rs_begin(coll *c, cgloo_context *ctx, cgloo_dtype dtype, cgloo_op op,
                    const cgloo_coll_opts *opts, size_t **off)
{
    int rc = cgloo__coll_begin(c, ctx, "reduce_scatter", dtype, opts);
    if (rc == CGLOO_OK)
        rc = cgloo__coll_set_op(c, op, opts);
    if (rc != CGLOO_OK)
        return rc;
    *off = malloc(((size_t)c->size + 1) * sizeof **off);
    if (!*off)
        return cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for %d block offsets", c->size);
    return CGLOO_OK;
}

int cgloo_reduce_scatter(cgloo_context *ctx, const void *sendbuf, void *recvbuf, size_t count,
                         cgloo_dtype dtype, cgloo_op op, const cgloo_coll_opts *opts)
{
    COLL_DECL(c);
    size_t *off = NULL;
    int rc = rs_begin(&c, ctx, dtype, op, opts, &off);
    if (rc != CGLOO_OK)
        return rc;
    c.fp.count = count;
    if (count > SIZE_MAX / c.esize / (size_t)c.size) {
        rc = cgloo__coll_error(&c, CGLOO_EINVAL, "count %zu times %d ranks overflows", count,
                               c.size);
    } else {
        for (int b = 0; b <= c.size; b++)
            off[b] = (size_t)b * count;
        rc = rs_run(&c, sendbuf, recvbuf, off, opts);
    }
    free(off);
    return rc;
}

/* rs_offsets turns recvcounts into block offsets; EINVAL when the total overflows. */
static int rs_offsets(coll *c, const size_t *recvcounts, size_t *off)
{
    off[0] = 0;
    for (int b = 0; b < c->size; b++) {
        if (recvcounts[b] > SIZE_MAX / c->esize - off[b])
            return cgloo__coll_error(c, CGLOO_EINVAL, "the sum of recvcounts overflows");
        off[b + 1] = off[b] + recvcounts[b];
    }
    return CGLOO_OK;
}

int cgloo_reduce_scatterv(cgloo_context *ctx, const void *sendbuf, void *recvbuf,
                          const size_t *recvcounts, cgloo_dtype dtype, cgloo_op op,
                          const cgloo_coll_opts *opts)
{
    COLL_DECL(c);
    size_t *off = NULL;
    int rc = rs_begin(&c, ctx, dtype, op, opts, &off);
    if (rc != CGLOO_OK)
        return rc;
    if (!recvcounts)
        rc = cgloo__coll_error(&c, CGLOO_EINVAL, "recvcounts is NULL");
    else
        cgloo__coll_fp_counts(&c, recvcounts);
    if (rc == CGLOO_OK)
        rc = rs_offsets(&c, recvcounts, off);
    if (rc == CGLOO_OK)
        rc = rs_run(&c, sendbuf, recvbuf, off, opts);
    free(off);
    return rc;
}
