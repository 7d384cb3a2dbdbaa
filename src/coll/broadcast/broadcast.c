/*
 * cgloo_broadcast: argument checks, the algorithm table and the selector.
 */
#include "coll/broadcast/broadcast.h"
#include "coll/single_copy.h"
#include "coll/hierarchical.h"
#include "coll/slots.h"

/* The algorithms, in the order cgloo_algorithm_names("broadcast") lists them. */
typedef enum broadcast_algorithm {
    BROADCAST_BINOMIAL,
    BROADCAST_PIPELINE,
    BROADCAST_FLAT,
    BROADCAST_SINGLE_COPY,
    BROADCAST_HIERARCHICAL,
    BROADCAST_SHM,
    BROADCAST_ALGORITHM_COUNT
} broadcast_algorithm;

const coll_algorithm cgloo__broadcast_algorithms[BROADCAST_ALGORITHM_COUNT + 1] = {
    [BROADCAST_BINOMIAL] = {"binomial",
                            "binomial tree from the root, ceil(lg p) steps; small messages"},
    [BROADCAST_PIPELINE] =
        {"pipeline", "segmented chain from the root, sends and receives overlap; large messages"},
    [BROADCAST_FLAT] =
        {"flat", "the root sends to every rank at once, one step; small messages over few ranks"},
    [BROADCAST_SINGLE_COPY] = {"single_copy",
                               "every rank reads the root's buffer straight out of its memory, "
                               "the root writes a share (one host, shared memory, large messages)"},
    [BROADCAST_HIERARCHICAL] = {"hierarchical",
                                "from the root to one rank per host, then within each host"},
    [BROADCAST_SHM] = {"shm", "the root publishes the buffer in every rank's shared-memory slot "
                              "(every peer on this host over shm)"},
};

static const broadcast_fn broadcast_fns[BROADCAST_ALGORITHM_COUNT] = {
    [BROADCAST_BINOMIAL] = cgloo__broadcast_binomial,
    [BROADCAST_PIPELINE] = cgloo__broadcast_pipeline,
    [BROADCAST_FLAT] = cgloo__broadcast_flat,
    [BROADCAST_SINGLE_COPY] = cgloo__broadcast_single_copy,
    [BROADCAST_HIERARCHICAL] = cgloo__broadcast_hierarchical,
    [BROADCAST_SHM] = cgloo__broadcast_shm,
};

/* From this many bytes on, the chain: its time is about one message's, n beta, where the tree's
 * is lg p of them. On the 2-core development machine (loopback TCP, 3 to 16 ranks as threads,
 * more ranks than cores) the two are within noise of each other from 256 KiB to 16 MiB, since
 * both copy n (p - 1) bytes through the same two cores; below 256 KiB the tree's fewer wake-ups
 * win. 512 KiB follows the model for real links, where the chain overlaps its p - 1 hops. */
#define BROADCAST_LARGE_BYTES (512 * 1024)

/* Flat while the root sends at most this much in all, over at most FLAT_MAX_RANKS ranks: one
 * hop for everyone beats the tree's lg p hops when each hop may wait for a rank to be
 * scheduled. Measured with 4 ranks on 2 cores: 4 B to 16 KiB in 8-15 us flat, 19-26 us as a
 * tree; 8 ranks: 32-45 us against 44-58 us up to 1 KiB, mixed at 16 KiB. */
#define FLAT_MAX_ROOT_BYTES (64 * 1024)
#define FLAT_MAX_RANKS 8

/* From this many bytes (2 ranks; more: BROADCAST_SINGLE_COPY_MIN_BYTES), where every peer's
 * memory can be read, the single copy. Over shared memory, p50 of the previous choice against
 * single_copy (docs/BENCHMARKS.md, "Single copy"), on an Intel host: 2 ranks 4 KiB 1.9 against
 * 1.6 us, 64 KiB 14.9 against 4.4, 256 KiB 38.8 against 15.0; 4 ranks 64 KiB 23 against 47,
 * 256 KiB 97 against 83. On an AMD EPYC KVM guest, whose process_vm_readv costs more
 * (2026-12-02, binomial against single_copy, vader in brackets): 2 ranks 4 KiB 2.38 against
 * 3.58 (4.44), 16 KiB 2.95 against 4.43 (4.81), 64 KiB 6.06-6.61 against 6.08-6.62 (6.71),
 * 128 KiB 10.4-10.6 against 8.2. With the root writing a share (broadcast_single_copy.c), the
 * same host: 16 KiB 3.8-3.9 against 5.5-5.7, 64 KiB 5.8 against 6.7, 128 KiB 10.3-10.4 against
 * 7.2-7.7, 256 KiB 15.3-15.9 against 11.9; 64 KiB stays between the two hosts' crossovers. */
#define BROADCAST_SINGLE_COPY_MIN_BYTES_2 (64 * 1024)
#define BROADCAST_SINGLE_COPY_MIN_BYTES (256 * 1024)

/* broadcast_select_flat: flat for small messages over few ranks, the tree for the other small
 * ones and for two ranks (where every algorithm is one send), the chain for large ones. */
static broadcast_algorithm broadcast_select_flat(const coll *c, size_t bytes)
{
    if (cgloo__sc_wanted(c, bytes, BROADCAST_SINGLE_COPY_MIN_BYTES_2,
                         BROADCAST_SINGLE_COPY_MIN_BYTES))
        return BROADCAST_SINGLE_COPY; /* one copy per rank, straight from the root */
    if (c->size > 1 && c->size <= FLAT_MAX_RANKS &&
        bytes <= FLAT_MAX_ROOT_BYTES / (size_t)(c->size - 1))
        return BROADCAST_FLAT;
    if (bytes < BROADCAST_LARGE_BYTES || c->size <= 2)
        return BROADCAST_BINOMIAL;
    return BROADCAST_PIPELINE;
}

broadcast_fn cgloo__broadcast_flat_choice(const coll *c, size_t bytes)
{
    return broadcast_fns[broadcast_select_flat(c, bytes)];
}

/* broadcast_select: through the slots for small messages where every peer shares memory,
 * hierarchical from 256 KiB where some host's ranks are not adjacent (hierarchical.h), else
 * flat. */
static broadcast_algorithm broadcast_select(coll *c, size_t bytes)
{
    if (bytes <= CGLOO_SLOT_DATA && cgloo__coll_slots_usable(c))
        return BROADCAST_SHM; /* one cache-line hand-off, no message */
    if (cgloo__hier_wanted(c, bytes, HIER_SELECT_MIN_BYTES))
        return BROADCAST_HIERARCHICAL;
    return broadcast_select_flat(c, bytes);
}

int cgloo_broadcast(cgloo_context *ctx, void *buf, size_t count, cgloo_dtype dtype, int root,
                    const cgloo_coll_opts *opts)
{
    COLL_DECL(c);
    int rc = cgloo__coll_begin(&c, ctx, "broadcast", dtype, opts);
    if (rc != CGLOO_OK)
        return rc;
    c.fp.count = count;
    c.fp.root = root;
    if (root < 0 || root >= c.size)
        return cgloo__coll_error(&c, CGLOO_EINVAL, "root %d is not a rank of %d", root, c.size);
    if (count > 0 && !buf)
        return cgloo__coll_error(&c, CGLOO_EINVAL, "NULL buffer with count %zu", count);
    if (count > SIZE_MAX / c.esize)
        return cgloo__coll_error(&c, CGLOO_EINVAL, "count %zu overflows", count);
    size_t bytes = count * c.esize;
    int a = cgloo__coll_find(&c, cgloo__broadcast_algorithms, BROADCAST_ALGORITHM_COUNT, opts,
                             broadcast_select(&c, bytes));
    if (a < 0)
        return a;
    if (a == BROADCAST_SHM && c.size > 1 && !cgloo__coll_slots_reach(&c))
        a = cgloo__coll_slots_fallback(&c, cgloo__broadcast_algorithms,
                                       broadcast_select_flat(&c, bytes));
    if (c.size == 1 || bytes == 0)
        return CGLOO_OK;
    return broadcast_fns[a](&c, buf, bytes, root);
}
