/*
 * cgloo_gather and cgloo_gatherv: one call path, the algorithm table and the selector; the
 * argument checks, shared with scatter, are cgloo__coll_begin_rooted's. Both lay the root's
 * receive buffer out as a table of per-rank blocks (pattern/blocks.h). The root may gather in
 * place: sendbuf == recvbuf + its block's offset.
 */
#include "coll/gather/gather.h"
#include "coll/single_copy.h"
#include "coll/pattern/blocks.h"
#include "coll/slots.h"

/* The algorithms, in the order cgloo_algorithm_names("gather") lists them. */
typedef enum gather_algorithm {
    GATHER_DIRECT,
    GATHER_BINOMIAL,
    GATHER_SINGLE_COPY,
    GATHER_SHM,
    GATHER_ALGORITHM_COUNT
} gather_algorithm;

const coll_algorithm cgloo__gather_algorithms[GATHER_ALGORITHM_COUNT + 1] = {
    [GATHER_DIRECT] = {"direct", "every rank sends straight to the root; large blocks"},
    [GATHER_BINOMIAL] = {"binomial",
                         "subtrees gathered up a binomial tree, ceil(lg p) steps; small blocks"},
    [GATHER_SINGLE_COPY] = {"single_copy", "every rank writes its block straight into the root's "
                                           "memory (one host, shared memory, large blocks)"},
    [GATHER_SHM] = {"shm", "every rank publishes its block in its shared-memory slot of the root "
                           "(every peer on this host over shm)"},
};

static const gather_fn gather_fns[GATHER_ALGORITHM_COUNT] = {
    [GATHER_DIRECT] = cgloo__gather_direct,
    [GATHER_BINOMIAL] = cgloo__gather_binomial,
    [GATHER_SINGLE_COPY] = cgloo__gather_single_copy,
    [GATHER_SHM] = cgloo__gather_shm,
};

/* The tree for tiny blocks in worlds of more than four ranks, where it spares the root p - 1
 * message handlings for lg p; direct otherwise. Measured over loopback TCP (2 cores, 4 to 16
 * ranks, one barrier per call) the two are within noise up to 8 KiB and direct is ahead above,
 * where the tree's extra copies and hops cost more than the root's receives. */
#define GATHER_SMALL_BYTES 4096

/* From this many bytes (2 ranks; more: GATHER_SINGLE_COPY_MIN_BYTES), where every peer's
 * memory can be read, the single copy. Over shared memory, p50 of direct against single_copy
 * (docs/BENCHMARKS.md, "Single copy"): 2 ranks 16 KiB 2.7 against 3.5 us, 64 KiB 6.0 against
 * 5.0, 256 KiB 20.7 against 12.2; 4 ranks 256 KiB 25 against 46, 1 MiB 132 against 126. On an
 * AMD EPYC KVM guest (process_vm_readv costs more), with the ranks writing their blocks while
 * the root copies its own, two or three alternating runs: 2 ranks 64 KiB 4.2-4.3 against 5.8,
 * 128 KiB 5.6-5.7 against 6.1-6.2, 256 KiB 10.5-11.0 against 8.4-8.6; 4 ranks 256 KiB 22-28
 * against 31-33, 512 KiB 43-54 against 34-43. */
#define GATHER_SINGLE_COPY_MIN_BYTES_2 (128 * 1024)
#define GATHER_SINGLE_COPY_MIN_BYTES (512 * 1024)

/* Through the slots while every block fits one slot's payload (one round). cgloo-bench over
 * shared memory, p50 us, median of three runs at load 10 to 16, shm against direct: 2 ranks 8 B
 * blocks 0.44 against 1.01, 2 KiB 1.18 against 1.56, 8 KiB (three rounds) 2.52 against 2.61;
 * 4 ranks on 2 cores 4 B 7.2 against 8.2, 4 KiB (two rounds) 7.0 against 9.0, 16 KiB 20.9
 * against 11.2. */
#define GATHER_SHM_MAX_BLOCK CGLOO_SLOT_DATA

static gather_algorithm gather_select_flat(const coll *c, size_t bytes)
{
    if (cgloo__sc_wanted(c, bytes, GATHER_SINGLE_COPY_MIN_BYTES_2, GATHER_SINGLE_COPY_MIN_BYTES))
        return GATHER_SINGLE_COPY; /* one copy per block, no message carries it */
    if (bytes <= GATHER_SMALL_BYTES && c->size > 4)
        return GATHER_BINOMIAL;
    return GATHER_DIRECT;
}

/* gather_select: through the slots while every block is small and every peer shares memory,
 * else flat. */
static gather_algorithm gather_select(coll *c, const size_t *off)
{
    bool small = true;
    for (int r = 0; r < c->size; r++)
        small &= blocks_bytes(off, r) <= GATHER_SHM_MAX_BLOCK;
    if (small && cgloo__coll_slots_usable(c))
        return GATHER_SHM; /* one cache-line hand-off per block, no message */
    return gather_select_flat(c, off[c->size]);
}

void cgloo__gather_own_block(coll *c, const void *sendbuf, void *recvbuf, const size_t *off,
                             int root)
{
    size_t own = blocks_bytes(off, c->rank);
    uint8_t *mine = c->rank == root && own ? (uint8_t *)recvbuf + off[root] : NULL;
    if (mine && sendbuf != mine)
        cgloo__coll_copy_polling(c, mine, sendbuf, own);
}

/* gather_places_own_block: the algorithm copies the root's own block while the others' blocks
 * move (after posting its receives, or while the peers write). */
static bool gather_places_own_block(int a)
{
    return a == GATHER_DIRECT || a == GATHER_SINGLE_COPY;
}

/* gather_run runs the chosen algorithm, the root's own block put in place. */
static int gather_run(coll *c, const coll_rooted *r, const size_t *off, const cgloo_coll_opts *opts)
{
    int a = cgloo__coll_find(c, cgloo__gather_algorithms, GATHER_ALGORITHM_COUNT, opts,
                             gather_select(c, off));
    if (a < 0)
        return a;
    if (a == GATHER_SHM && c->size > 1 && !cgloo__coll_slots_reach(c))
        a = cgloo__coll_slots_fallback(c, cgloo__gather_algorithms,
                                       gather_select_flat(c, off[c->size]));
    bool moves = c->size > 1 && off[c->size] > 0; /* some block crosses between ranks */
    if (!moves || !gather_places_own_block(a))
        cgloo__gather_own_block(c, r->sendbuf, r->recvbuf, off, r->root);
    return moves ? gather_fns[a](c, r->sendbuf, r->recvbuf, off, r->root) : CGLOO_OK;
}

/* gather_call is both calls: r says which form it is. */
static int gather_call(cgloo_context *ctx, const char *name, const coll_rooted *r,
                       cgloo_dtype dtype, const cgloo_coll_opts *opts)
{
    COLL_DECL(c);
    size_t *off;
    int rc = cgloo__coll_begin_rooted(&c, ctx, name, dtype, opts, r, &off);
    if (rc == CGLOO_OK)
        rc = gather_run(&c, r, off, opts);
    free(off);
    return rc;
}

int cgloo_gather(cgloo_context *ctx, const void *sendbuf, void *recvbuf, size_t count,
                 cgloo_dtype dtype, int root, const cgloo_coll_opts *opts)
{
    coll_rooted r = {
        .sendbuf = sendbuf, .recvbuf = recvbuf, .count = count, .root = root, .to_root = true};
    return gather_call(ctx, "gather", &r, dtype, opts);
}

int cgloo_gatherv(cgloo_context *ctx, const void *sendbuf, size_t sendcount, void *recvbuf,
                  const size_t *recvcounts, cgloo_dtype dtype, int root,
                  const cgloo_coll_opts *opts)
{
    coll_rooted r = {.sendbuf = sendbuf,
                     .recvbuf = recvbuf,
                     .counts = recvcounts,
                     .count = sendcount,
                     .root = root,
                     .v = true,
                     .to_root = true};
    return gather_call(ctx, "gatherv", &r, dtype, opts);
}
