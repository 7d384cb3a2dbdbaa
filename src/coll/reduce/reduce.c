/*
 * cgloo_reduce: argument checks, the algorithm table and the selector.
 */
#include "coll/reduce/reduce.h"
#include "coll/single_copy.h"
#include "coll/slots.h"

/* The algorithms, in the order cgloo_algorithm_names("reduce") lists them. */
typedef enum reduce_algorithm {
    REDUCE_BINOMIAL,
    REDUCE_REDUCE_SCATTER_GATHER,
    REDUCE_SINGLE_COPY,
    REDUCE_SHM,
    REDUCE_ALGORITHM_COUNT
} reduce_algorithm;

const coll_algorithm cgloo__reduce_algorithms[REDUCE_ALGORITHM_COUNT + 1] = {
    [REDUCE_BINOMIAL] = {"binomial",
                         "binomial tree toward the root, ceil(log2 P) steps: for small vectors"},
    [REDUCE_REDUCE_SCATTER_GATHER] =
        {"reduce_scatter_gather",
         "ring reduce-scatter, then every block to the root: the reduction is shared, for large "
         "vectors"},
    [REDUCE_SINGLE_COPY] = {"single_copy",
                            "each rank reduces its block out of every rank's memory and writes it "
                            "into the root's (the root alone where a tag has no slots): ranks on "
                            "one host"},
    [REDUCE_SHM] = {"shm", "every rank publishes its vector in its shared-memory slot of the root, "
                           "which reduces them in place (every peer on this host over shm)"},
};

static const reduce_fn reduce_fns[REDUCE_ALGORITHM_COUNT] = {
    [REDUCE_BINOMIAL] = cgloo__reduce_binomial,
    [REDUCE_REDUCE_SCATTER_GATHER] = cgloo__reduce_rsg,
    [REDUCE_SINGLE_COPY] = cgloo__reduce_single_copy,
    [REDUCE_SHM] = cgloo__reduce_shm,
};

/* From this many bytes on, at more than 2 ranks, sharing the reduction and the root's link pays
 * for the ring's P-1 steps. cgloo-bench --mode reduce over loopback TCP on the shared 2-core
 * machine, p50 us, binomial (its partial results in segments, reduced as they arrive) against
 * reduce_scatter_gather. 4 ranks (load 10, two runs): 256 KiB 343-367 / 636-852, 512 KiB
 * 695-786 / 846-890, 1 MiB 1504-1689 / 1468, 2 MiB 2726-2997 / 2803-3206, 4 MiB 7218-7336 /
 * 7254-7327; earlier (load 5 to 12) 16 MiB 42900-57200 / 24800-42600.
 * 2 ranks (load 19 to 75, two runs, each pair in one go): the tree is ahead at every size, 1 MiB
 * 292 / 439, 4 MiB 1225 / 7860, 16 MiB 15400-21100 / 36900-40900, 64 MiB 55800-111800 /
 * 174900-224400: there the ring's step is one more message each way for the same reduction. */
#define REDUCE_RSG_MIN_BYTES (1024u * 1024)

/* reduce_message_select: binomial for small vectors and for 2 ranks, reduce-scatter + gather
 * for large ones. */
static reduce_algorithm reduce_message_select(const coll *c, size_t count)
{
    if (c->size > 2 && count >= (size_t)c->size && count * c->esize >= REDUCE_RSG_MIN_BYTES)
        return REDUCE_REDUCE_SCATTER_GATHER;
    return REDUCE_BINOMIAL;
}

/* From these many bytes on, ranks that can read each other's memory reduce straight out of it.
 * cgloo-bench --mode reduce over shared memory on the shared 2-core machine (load 20 to 30),
 * p50 us of two runs, binomial against single_copy. 2 ranks: 8 KiB 3.0 / 4.5, 16 KiB 4.5 / 4.2,
 * 32 KiB 8.2-9.4 / 7.0, 128 KiB 27 / 17. 4 ranks: 64 KiB 64 / 73-80, 128 KiB 271 / 121-125,
 * 256 KiB 603-616 / 226-233, 1 MiB 9000-11700 / 771-782: past the transport's eager limit
 * (64 KiB) each tree message waits for its receiver to copy it, and with more ranks than cores
 * every such hand-off waits for the scheduler; single_copy has one. */
#define REDUCE_SINGLE_COPY_MIN_BYTES_2 (16u * 1024)
#define REDUCE_SINGLE_COPY_MIN_BYTES (128u * 1024)

/* reduce_select: over shared memory the single copy from mid sizes on (the ranks read each
 * other's inputs in place); otherwise the message-passing choice. */
static reduce_algorithm reduce_select(const coll *c, size_t count)
{
    if (cgloo__sc_wanted(c, count * c->esize, REDUCE_SINGLE_COPY_MIN_BYTES_2,
                         REDUCE_SINGLE_COPY_MIN_BYTES))
        return REDUCE_SINGLE_COPY;
    return reduce_message_select(c, count);
}

reduce_fn cgloo__reduce_message_choice(const coll *c, size_t count)
{
    return reduce_fns[reduce_message_select(c, count)];
}

reduce_fn cgloo__reduce_flat_choice(const coll *c, size_t count)
{
    return reduce_fns[reduce_select(c, count)];
}

/* Through the slots up to one slot's payload (one round). cgloo-bench over shared memory,
 * float32 sums to root 0, p50 us, median of three runs at load 10 to 16, shm against binomial:
 * 2 ranks 16 B 0.50 against 1.00, 1 KiB 0.95 against 1.17, 4 KiB (two rounds) 1.67 against
 * 1.81, 64 KiB 14.5 against 13.0; 4 ranks on 2 cores 16 B 6.6 against 12.4, 4 KiB 7.4 against
 * 14.1, 16 KiB 19.8 against 18.2. */
#define REDUCE_SHM_MAX_BYTES CGLOO_SLOT_DATA

/* reduce_select_shm: through the slots for small vectors where every peer shares memory, else
 * the flat choice. */
static reduce_algorithm reduce_select_shm(coll *c, size_t count)
{
    if (count * c->esize <= REDUCE_SHM_MAX_BYTES && cgloo__coll_slots_usable(c))
        return REDUCE_SHM; /* one cache-line hand-off per vector, no message */
    return reduce_select(c, count);
}

static int reduce_check(coll *c, const void *sendbuf, const void *recvbuf, size_t count, int root)
{
    if (root < 0 || root >= c->size)
        return cgloo__coll_error(c, CGLOO_EINVAL, "root %d is not a rank of %d", root, c->size);
    if (count > SIZE_MAX / c->esize)
        return cgloo__coll_error(c, CGLOO_EINVAL, "count %zu overflows", count);
    if (count && !sendbuf)
        return cgloo__coll_error(c, CGLOO_EINVAL, "NULL sendbuf with count %zu", count);
    if (count && c->rank == root && !recvbuf)
        return cgloo__coll_error(c, CGLOO_EINVAL, "NULL recvbuf on the root with count %zu", count);
    size_t n = count * c->esize;
    if (c->rank == root && sendbuf != recvbuf && cgloo__bytes_overlap(sendbuf, n, recvbuf, n))
        return cgloo__coll_error(c, CGLOO_EINVAL,
                                 "recvbuf overlaps sendbuf without being in place (recvbuf == "
                                 "sendbuf)");
    return CGLOO_OK;
}

int cgloo_reduce(cgloo_context *ctx, const void *sendbuf, void *recvbuf, size_t count,
                 cgloo_dtype dtype, cgloo_op op, int root, const cgloo_coll_opts *opts)
{
    COLL_DECL(c);
    int rc = cgloo__coll_begin(&c, ctx, "reduce", dtype, opts);
    c.fp.count = count;
    c.fp.root = root;
    if (rc == CGLOO_OK)
        rc = cgloo__coll_set_op(&c, op, opts);
    if (rc == CGLOO_OK)
        rc = reduce_check(&c, sendbuf, recvbuf, count, root);
    if (rc != CGLOO_OK)
        return rc;
    int a = cgloo__coll_find(&c, cgloo__reduce_algorithms, REDUCE_ALGORITHM_COUNT, opts,
                             reduce_select_shm(&c, count));
    if (a < 0)
        return a;
    /* One rank runs the flat choice too: the slots of a tag without a channel refuse it. */
    if (a == REDUCE_SHM && !cgloo__coll_slots_reach(&c))
        a = cgloo__coll_slots_fallback(&c, cgloo__reduce_algorithms, reduce_select(&c, count));
    if (count == 0)
        return CGLOO_OK;
    return reduce_fns[a](&c, sendbuf, c.rank == root ? recvbuf : NULL, count, root);
}
