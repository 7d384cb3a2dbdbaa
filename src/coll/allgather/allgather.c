/*
 * cgloo_allgather and cgloo_allgatherv: argument checks, the algorithm table and the selector.
 * Both lay the receive buffer out as a table of per-rank blocks (pattern/blocks.h), put this
 * rank's data in its block and let the algorithm fill in the others.
 */
#include "coll/allgather/allgather.h"
#include "coll/single_copy.h"
#include "coll/hierarchical.h"
#include "coll/pattern/blocks.h"
#include "coll/slots.h"

/* The algorithms, in the order cgloo_algorithm_names("allgather") lists them. */
typedef enum allgather_algorithm {
    ALLGATHER_RING,
    ALLGATHER_RECURSIVE_DOUBLING,
    ALLGATHER_SINGLE_COPY,
    ALLGATHER_HIERARCHICAL,
    ALLGATHER_SHM,
    ALLGATHER_ALGORITHM_COUNT
} allgather_algorithm;

const coll_algorithm cgloo__allgather_algorithms[ALLGATHER_ALGORITHM_COUNT + 1] = {
    [ALLGATHER_RING] = {"ring",
                        "p-1 steps passing blocks to the right neighbour; bandwidth-optimal"},
    [ALLGATHER_RECURSIVE_DOUBLING] =
        {"recursive_doubling",
         "lg p exchanges of doubling ranges (non-powers of two fold); small data"},
    [ALLGATHER_SINGLE_COPY] = {"single_copy",
                               "every rank reads the others' blocks straight out of their memory "
                               "(one host, shared memory, large data)"},
    [ALLGATHER_HIERARCHICAL] = {"hierarchical",
                                "across hosts between the ranks of each local rank, then within "
                                "each host (hosts of one size; else the ring)"},
    [ALLGATHER_SHM] = {"shm", "every rank publishes its block in shared-memory slots and copies "
                              "the peers' out (every peer on this host over shm)"},
};

static const allgather_fn allgather_fns[ALLGATHER_ALGORITHM_COUNT] = {
    [ALLGATHER_RING] = cgloo__allgather_ring,
    [ALLGATHER_RECURSIVE_DOUBLING] = cgloo__allgather_recursive_doubling,
    [ALLGATHER_SINGLE_COPY] = cgloo__allgather_single_copy,
    [ALLGATHER_HIERARCHICAL] = cgloo__allgather_hierarchical,
    [ALLGATHER_SHM] = cgloo__allgather_shm,
};

/* Up to this many gathered bytes, recursive doubling. Measured over loopback TCP (2 cores, 3 to
 * 16 ranks as threads): it beats the ring up to 64 KiB at every world size, by 1.2x (3 or 4
 * ranks) to 3x (16), fold included; from 128 KiB to 1 MiB the two are within 30% either way
 * (recursive doubling mostly ahead from 7 ranks on), and from 4 MiB the ring is ahead or even. */
#define ALLGATHER_SMALL_BYTES (256 * 1024)

/* allgather_select: recursive doubling for small data (fewer steps), the ring for large (every
 * link busy, n (p-1)/p bytes per rank whatever p). Two ranks: the same single exchange. */
/* From this many gathered bytes (2 ranks; more: ALLGATHER_SINGLE_COPY_MIN_BYTES), ranks whose
 * peers' memory can all be read copy straight out of it. Over shared memory, p50 us of the
 * ring (4 ranks: recursive doubling) against single_copy reading the send buffers, on two
 * hosts whose system calls differ in cost:
 * - Intel, three runs each at load 7 to 9 (2026-12-01): 2 ranks 4 KiB 1.8-2.0 against 2.1-2.3,
 *   16 KiB 3.0-3.1 against 2.7-2.8, 64 KiB 7.0-7.5 against 5.0-5.6, 256 KiB 25 against 12-13,
 *   1 MiB 96-100 against 61-65; 4 ranks on 2 cores 16 KiB 15-20 against 17-20, 64 KiB 28-34
 *   against 24-26, 256 KiB 63-82 against 46-54.
 * - AMD EPYC in KVM (2026-12-02, one-way line hand-off 0.27 us), Open MPI's vader in brackets:
 *   2 ranks 16 KiB 1.68 against 4.80 (5.49), 32 KiB 2.30-2.41 against 5.12-5.32 (6.19),
 *   64 KiB 3.74 against 6.28 (6.94), 128 KiB 5.75-6.04 against 7.43-7.55 (10.47), 256 KiB 14.8
 *   against 10.6 (11.2-15.0); 4 ranks 64 KiB 44 against 53 (53), 256 KiB 58-65 against 75-82
 *   (95), 1 MiB 209-210 against 196-231.
 * The thresholds sit between the hosts' crossovers, where either choice is below vader's time on
 * the host where it loses. (Read out of the receive buffers, where the peer had just copied its
 * block, single copy lost up to 1 MiB at 2 ranks: docs/BENCHMARKS.md, "Single copy".) */
#define ALLGATHER_SINGLE_COPY_MIN_BYTES_2 (128 * 1024)
#define ALLGATHER_SINGLE_COPY_MIN_BYTES (256 * 1024)

static allgather_algorithm allgather_select_flat(const coll *c, size_t bytes)
{
    if (cgloo__sc_wanted(c, bytes, ALLGATHER_SINGLE_COPY_MIN_BYTES_2,
                         ALLGATHER_SINGLE_COPY_MIN_BYTES))
        return ALLGATHER_SINGLE_COPY; /* one copy, no ring */
    if (bytes <= ALLGATHER_SMALL_BYTES && c->size > 2)
        return ALLGATHER_RECURSIVE_DOUBLING;
    return ALLGATHER_RING;
}

allgather_fn cgloo__allgather_flat_choice(const coll *c, size_t bytes)
{
    return allgather_fns[allgather_select_flat(c, bytes)];
}

/* Through the slots while every block fits one slot's payload (one round). cgloo-bench over
 * shared memory, p50 us, median of three runs at load 10 to 16, shm against the message
 * algorithm the selector took before: 2 ranks (ring) 8 B blocks 0.48 against 1.35, 2 KiB 1.13
 * against 1.88, 8 KiB (three rounds) 3.22 against 2.76; 4 ranks on 2 cores (recursive
 * doubling) 4 B 7.2 against 15.0, 1 KiB 7.1 against 17.4, 4 KiB (two rounds) 14.4 against 21.1,
 * 16 KiB 33.9 against 36.0. */
#define ALLGATHER_SHM_MAX_BLOCK CGLOO_SLOT_DATA

/* allgather_shm_fits: the largest block of the layout goes through the slots by default. */
static bool allgather_shm_fits(coll *c, const size_t *off)
{
    for (int r = 0; r < c->size; r++)
        if (blocks_bytes(off, r) > ALLGATHER_SHM_MAX_BLOCK)
            return false;
    return cgloo__coll_slots_usable(c);
}

/* allgather_select: through the slots for small blocks where every peer shares memory,
 * hierarchical where some host's ranks are not adjacent (hierarchical.h), else flat. */
static allgather_algorithm allgather_select(coll *c, const size_t *off)
{
    if (allgather_shm_fits(c, off))
        return ALLGATHER_SHM; /* one cache-line hand-off, no message */
    return cgloo__hier_wanted(c, off[c->size], 0) ? ALLGATHER_HIERARCHICAL
                                                  : allgather_select_flat(c, off[c->size]);
}

/* allgatherv_select: as allgather_select, but the ring where it would be flat: it keeps every
 * link busy whatever the sizes of the uneven blocks. */
static allgather_algorithm allgatherv_select(coll *c, const size_t *off)
{
    allgather_algorithm a = allgather_select(c, off);
    return a == ALLGATHER_SHM || a == ALLGATHER_HIERARCHICAL ? a : ALLGATHER_RING;
}

/* allgather_run puts this rank's block in place and runs the chosen algorithm; `flat` is the
 * message-based choice for shm asked for by name where the slots cannot serve. */
static int allgather_run(coll *c, const void *sendbuf, void *recvbuf, const size_t *off,
                         const cgloo_coll_opts *opts, allgather_algorithm chosen,
                         allgather_algorithm flat)
{
    int a =
        cgloo__coll_find(c, cgloo__allgather_algorithms, ALLGATHER_ALGORITHM_COUNT, opts, chosen);
    if (a < 0)
        return a;
    if (a == ALLGATHER_SHM && c->size > 1 && !cgloo__coll_slots_reach(c))
        a = cgloo__coll_slots_fallback(c, cgloo__allgather_algorithms, flat);
    size_t own = blocks_bytes(off, c->rank);
    uint8_t *mine = own ? (uint8_t *)recvbuf + off[c->rank] : NULL;
    if (mine && sendbuf != mine)
        memmove(mine, sendbuf, own);
    if (c->size == 1 || off[c->size] == 0)
        return CGLOO_OK;
    if (a == ALLGATHER_SINGLE_COPY) /* the peers read the block out of sendbuf */
        return cgloo__allgather_single_copy_from(c, sendbuf, recvbuf, off);
    return allgather_fns[a](c, recvbuf, off);
}

int cgloo_allgather(cgloo_context *ctx, const void *sendbuf, void *recvbuf, size_t count,
                    cgloo_dtype dtype, const cgloo_coll_opts *opts)
{
    COLL_DECL(c);
    size_t *off = NULL;
    int rc = cgloo__coll_begin(&c, ctx, "allgather", dtype, opts);
    if (rc != CGLOO_OK)
        return rc;
    c.fp.count = count;
    if (count > 0 && (!sendbuf || !recvbuf))
        return cgloo__coll_error(&c, CGLOO_EINVAL, "NULL buffer with count %zu", count);
    rc = cgloo__coll_blocks(&c, NULL, count, &off);
    if (rc == CGLOO_OK)
        rc = allgather_run(&c, sendbuf, recvbuf, off, opts, allgather_select(&c, off),
                           allgather_select_flat(&c, off[c.size]));
    free(off);
    return rc;
}

static int allgatherv_check(coll *c, const void *sendbuf, size_t sendcount,
                            const size_t *recvcounts)
{
    if (!recvcounts)
        return cgloo__coll_error(c, CGLOO_EINVAL, "recvcounts is NULL");
    if (sendcount != recvcounts[c->rank])
        return cgloo__coll_error(c, CGLOO_EINVAL, "sendcount %zu differs from recvcounts[%d] %zu",
                                 sendcount, c->rank, recvcounts[c->rank]);
    if (sendcount > 0 && !sendbuf)
        return cgloo__coll_error(c, CGLOO_EINVAL, "NULL sendbuf with sendcount %zu", sendcount);
    return CGLOO_OK;
}

int cgloo_allgatherv(cgloo_context *ctx, const void *sendbuf, size_t sendcount, void *recvbuf,
                     const size_t *recvcounts, cgloo_dtype dtype, const cgloo_coll_opts *opts)
{
    COLL_DECL(c);
    size_t *off = NULL;
    int rc = cgloo__coll_begin(&c, ctx, "allgatherv", dtype, opts);
    if (rc == CGLOO_OK)
        rc = allgatherv_check(&c, sendbuf, sendcount, recvcounts);
    if (rc == CGLOO_OK)
        cgloo__coll_fp_counts(&c, recvcounts);
    if (rc == CGLOO_OK)
        rc = cgloo__coll_blocks(&c, recvcounts, 0, &off);
    if (rc != CGLOO_OK)
        return rc;
    if (off[c.size] > 0 && !recvbuf)
        rc = cgloo__coll_error(&c, CGLOO_EINVAL, "NULL recvbuf for %zu bytes", off[c.size]);
    else
        rc = allgather_run(&c, sendbuf, recvbuf, off, opts, allgatherv_select(&c, off),
                           ALLGATHER_RING);
    free(off);
    return rc;
}
