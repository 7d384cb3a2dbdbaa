/*
 * cgloo_scatter and cgloo_scatterv: one call path, the algorithm table and the selector; the
 * argument checks, shared with gather, are cgloo__coll_begin_rooted's. Both lay the root's send
 * buffer out as a table of per-rank blocks (pattern/blocks.h). The root may scatter in place:
 * recvbuf == sendbuf + its block's offset.
 */
#include "coll/pattern/blocks.h"
#include "coll/scatter/scatter.h"
#include "coll/single_copy.h"
#include "coll/slots.h"

/* The algorithms, in the order cgloo_algorithm_names("scatter") lists them. */
typedef enum scatter_algorithm {
    SCATTER_DIRECT,
    SCATTER_BINOMIAL,
    SCATTER_SINGLE_COPY,
    SCATTER_SHM,
    SCATTER_ALGORITHM_COUNT
} scatter_algorithm;

const coll_algorithm cgloo__scatter_algorithms[SCATTER_ALGORITHM_COUNT + 1] = {
    [SCATTER_DIRECT] = {"direct", "the root sends every rank its block; large blocks"},
    [SCATTER_BINOMIAL] = {"binomial",
                          "subtrees sent down a binomial tree, ceil(lg p) steps; small blocks"},
    [SCATTER_SINGLE_COPY] = {"single_copy", "every rank reads its block straight out of the root's "
                                            "memory (one host, shared memory, large blocks)"},
    [SCATTER_SHM] = {"shm", "the root publishes each rank's block in that rank's shared-memory "
                            "slot (every peer on this host over shm)"},
};

static const scatter_fn scatter_fns[SCATTER_ALGORITHM_COUNT] = {
    [SCATTER_DIRECT] = cgloo__scatter_direct,
    [SCATTER_BINOMIAL] = cgloo__scatter_binomial,
    [SCATTER_SINGLE_COPY] = cgloo__scatter_single_copy,
    [SCATTER_SHM] = cgloo__scatter_shm,
};

/* The tree for tiny blocks in worlds of more than four ranks, where it spares the root p - 1
 * message handlings for lg p; direct otherwise. Measured over loopback TCP (2 cores, 4 to 16
 * ranks, one barrier per call) the two are within noise up to 8 KiB and direct is ahead above,
 * where the tree's extra copies and hops cost more than the root's sends. */
#define SCATTER_SMALL_BYTES 4096

/* From this many bytes (2 ranks; more: SCATTER_SINGLE_COPY_MIN_BYTES), where every peer's
 * memory can be read, the single copy. Over shared memory, p50 of direct against single_copy
 * (docs/BENCHMARKS.md, "Single copy"): 2 ranks 16 KiB 3.0 against 3.5 us, 64 KiB 8.1 against
 * 5.4, 256 KiB 23.8 against 12.8; 4 ranks 256 KiB 24 against 42, 1 MiB 137 against 111. On an
 * AMD EPYC KVM guest (process_vm_readv costs more), with the root copying its own block while
 * the others read theirs, two or three alternating runs: 2 ranks 64 KiB 3.8-3.9 against
 * 5.0-5.1, 128 KiB 6.4-6.5 against 6.1-6.2, 256 KiB 12.4-12.5 against 8.4-8.5; 4 ranks 512 KiB
 * 45-48 against 39-68. */
#define SCATTER_SINGLE_COPY_MIN_BYTES_2 (128 * 1024)
#define SCATTER_SINGLE_COPY_MIN_BYTES (1024 * 1024)

/* Through the slots while every block fits one slot's payload (one round). cgloo-bench over
 * shared memory, p50 us, median of three runs at load 10 to 16, shm against direct: 2 ranks 8 B
 * blocks 0.58 against 0.97, 2 KiB 1.37 against 1.58, 8 KiB (three rounds) 2.56 against 2.72;
 * 4 ranks on 2 cores 4 B 0.41 against 8.5, 1 KiB 0.48 against 8.0, 4 KiB (two rounds, the
 * second waiting for the readers of the first) 12.7 against 8.8. */
#define SCATTER_SHM_MAX_BLOCK CGLOO_SLOT_DATA

static scatter_algorithm scatter_select_flat(const coll *c, size_t bytes)
{
    if (cgloo__sc_wanted(c, bytes, SCATTER_SINGLE_COPY_MIN_BYTES_2, SCATTER_SINGLE_COPY_MIN_BYTES))
        return SCATTER_SINGLE_COPY; /* one copy per block, no message carries it */
    if (bytes <= SCATTER_SMALL_BYTES && c->size > 4)
        return SCATTER_BINOMIAL;
    return SCATTER_DIRECT;
}

/* scatter_select: through the slots while every block is small and every peer shares memory,
 * else flat. */
static scatter_algorithm scatter_select(coll *c, const size_t *off)
{
    bool small = true;
    for (int r = 0; r < c->size; r++)
        small &= blocks_bytes(off, r) <= SCATTER_SHM_MAX_BLOCK;
    if (small && cgloo__coll_slots_usable(c))
        return SCATTER_SHM; /* one cache-line hand-off per block, no message */
    return scatter_select_flat(c, off[c->size]);
}

void cgloo__scatter_own_block(coll *c, const void *sendbuf, const size_t *off, void *recvbuf,
                              int root)
{
    size_t own = blocks_bytes(off, c->rank);
    const uint8_t *mine = c->rank == root && own ? (const uint8_t *)sendbuf + off[root] : NULL;
    if (mine && recvbuf != mine)
        cgloo__coll_copy_polling(c, recvbuf, mine, own);
}

/* scatter_places_own_block: the algorithm copies the root's own block while the others' blocks
 * move (after posting its sends, or while the peers read). */
static bool scatter_places_own_block(int a)
{
    return a == SCATTER_DIRECT || a == SCATTER_SINGLE_COPY;
}

/* scatter_run runs the chosen algorithm, the root's own block copied. */
static int scatter_run(coll *c, const coll_rooted *r, const size_t *off,
                       const cgloo_coll_opts *opts)
{
    int a = cgloo__coll_find(c, cgloo__scatter_algorithms, SCATTER_ALGORITHM_COUNT, opts,
                             scatter_select(c, off));
    if (a < 0)
        return a;
    if (a == SCATTER_SHM && c->size > 1 && !cgloo__coll_slots_reach(c))
        a = cgloo__coll_slots_fallback(c, cgloo__scatter_algorithms,
                                       scatter_select_flat(c, off[c->size]));
    bool moves = c->size > 1 && off[c->size] > 0; /* some block crosses between ranks */
    if (!moves || !scatter_places_own_block(a))
        cgloo__scatter_own_block(c, r->sendbuf, off, r->recvbuf, r->root);
    return moves ? scatter_fns[a](c, r->sendbuf, off, r->recvbuf, r->root) : CGLOO_OK;
}

/* scatter_call is both calls: r says which form it is. */
static int scatter_call(cgloo_context *ctx, const char *name, const coll_rooted *r,
                        cgloo_dtype dtype, const cgloo_coll_opts *opts)
{
    COLL_DECL(c);
    size_t *off;
    int rc = cgloo__coll_begin_rooted(&c, ctx, name, dtype, opts, r, &off);
    if (rc == CGLOO_OK)
        rc = scatter_run(&c, r, off, opts);
    free(off);
    return rc;
}

int cgloo_scatter(cgloo_context *ctx, const void *sendbuf, void *recvbuf, size_t count,
                  cgloo_dtype dtype, int root, const cgloo_coll_opts *opts)
{
    coll_rooted r = {.sendbuf = sendbuf, .recvbuf = recvbuf, .count = count, .root = root};
    return scatter_call(ctx, "scatter", &r, dtype, opts);
}

int cgloo_scatterv(cgloo_context *ctx, const void *sendbuf, const size_t *sendcounts, void *recvbuf,
                   size_t recvcount, cgloo_dtype dtype, int root, const cgloo_coll_opts *opts)
{
    coll_rooted r = {.sendbuf = sendbuf,
                     .recvbuf = recvbuf,
                     .counts = sendcounts,
                     .count = recvcount,
                     .root = root,
                     .v = true};
    return scatter_call(ctx, "scatterv", &r, dtype, opts);
}
