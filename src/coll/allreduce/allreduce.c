/*
 * cgloo_allreduce and cgloo_allreduce_multi: argument checks, the algorithm table, and the
 * selector. The selector's thresholds come from measurements on the 2-core development machine
 * class over loopback TCP (bench/run.sh, docs/BENCHMARKS.md).
 */
#include "coll/allreduce/allreduce.h"
#include "coll/single_copy.h"
#include "coll/hierarchical.h"
#include "coll/slots.h"

/* The algorithms, in the order cgloo_algorithm_names("allreduce") lists them. */
typedef enum allreduce_algorithm {
    ALLREDUCE_RING,
    ALLREDUCE_HALVING_DOUBLING,
    ALLREDUCE_BCUBE,
    ALLREDUCE_RECURSIVE_DOUBLING,
    ALLREDUCE_DIRECT,
    ALLREDUCE_SINGLE_COPY,
    ALLREDUCE_HIERARCHICAL,
    ALLREDUCE_SHM,
    ALLREDUCE_ALGORITHM_COUNT
} allreduce_algorithm;

const coll_algorithm cgloo__allreduce_algorithms[ALLREDUCE_ALGORITHM_COUNT + 1] = {
    [ALLREDUCE_RING] = {"ring",
                        "reduce-scatter then allgather around a ring, segmented and pipelined"},
    [ALLREDUCE_HALVING_DOUBLING] =
        {"halving_doubling", "recursive halving reduce-scatter, recursive doubling allgather"},
    [ALLREDUCE_BCUBE] =
        {"bcube",
         "reduce-scatter and allgather within groups of `radix` ranks, one dimension at a time"},
    [ALLREDUCE_RECURSIVE_DOUBLING] = {"recursive_doubling",
                                      "log2(P) exchanges of the whole vector, for tiny messages"},
    [ALLREDUCE_DIRECT] =
        {"direct", "every rank sends its vector to every other in one step (two ranks, tiny data)"},
    [ALLREDUCE_SINGLE_COPY] = {"single_copy",
                               "every rank reduces its block straight out of the peers' memory, "
                               "then reads theirs (one host, shared memory, large vectors)"},
    [ALLREDUCE_HIERARCHICAL] = {"hierarchical",
                                "within each host, then across hosts between leaders (or per-chunk "
                                "leaders for large data), then within each host"},
    [ALLREDUCE_SHM] = {"shm", "every rank publishes its vector in shared-memory slots and reduces "
                              "the peers' in place (every peer on this host over shm)"},
};

static const allreduce_fn allreduce_fns[ALLREDUCE_ALGORITHM_COUNT] = {
    [ALLREDUCE_RING] = cgloo__allreduce_ring,
    [ALLREDUCE_HALVING_DOUBLING] = cgloo__allreduce_halving_doubling,
    [ALLREDUCE_BCUBE] = cgloo__allreduce_bcube,
    [ALLREDUCE_RECURSIVE_DOUBLING] = cgloo__allreduce_recursive_doubling,
    [ALLREDUCE_DIRECT] = cgloo__allreduce_direct,
    [ALLREDUCE_SINGLE_COPY] = cgloo__allreduce_single_copy,
    [ALLREDUCE_HIERARCHICAL] = cgloo__allreduce_hierarchical,
    [ALLREDUCE_SHM] = cgloo__allreduce_shm,
};

/* Through the shared-memory slots up to one slot's payload: see docs/BENCHMARKS.md, "Shared
 * memory". */
#define SHM_MAX_BYTES CGLOO_SLOT_DATA

/* From this many bytes (2 ranks; more ranks: SINGLE_COPY_MIN_BYTES), ranks whose peers' memory
 * can all be read reduce straight out of it. Its system calls cost more on some hosts than on
 * others, so the 2-rank threshold is where it wins on both measured. Over shared memory, p50
 * us of direct (one exchange of messages) against single_copy: an Intel host of the 2-core
 * class, 4 KiB 2.91 against 2.65, 8 KiB 3.97 against 3.03, 16 KiB 6.06 against 4.28 (medians
 * of five runs at load 4 to 10); an AMD EPYC host of the class (a KVM guest), two runs each,
 * 4 KiB 2.1 against 5.1 to 5.5, 16 KiB 3.5 to 3.7 against 6.0 to 6.2, 32 KiB 6.5 to 6.8
 * against 7.3, 64 KiB 10.6 to 10.8 against 9.5 to 10.3 (Open MPI's vader: 2.8, 15.4, 19.1,
 * 26.9). 4 ranks 64 KiB 76 against 101, 256 KiB 347 against 274 (a second run, 283 against
 * 315, says the crossover is near there). */
#define SINGLE_COPY_MIN_BYTES_2 (64u * 1024)
#define SINGLE_COPY_MIN_BYTES (256u * 1024)

/* allreduce_select_messages: the measured choice among the message-based algorithms. */
static allreduce_algorithm allreduce_select_messages(const coll *c, size_t bytes)
{
    if (c->size == 2 && bytes <= 64 * 1024)
        return ALLREDUCE_DIRECT; /* one exchange */
    if (bytes <= 16 * 1024)
        return ALLREDUCE_RECURSIVE_DOUBLING; /* log2(P) latency steps */
    if (bytes <= 256 * 1024)
        return ALLREDUCE_HALVING_DOUBLING; /* 2 log2(P) steps, 2 (P-1)/P of the bytes */
    return ALLREDUCE_RING;                 /* bandwidth-optimal and pipelined */
}

/* allreduce_select_flat: the measured choice by message size and world size. */
static allreduce_algorithm allreduce_select_flat(const coll *c, size_t bytes)
{
    if (cgloo__sc_wanted(c, bytes, SINGLE_COPY_MIN_BYTES_2, SINGLE_COPY_MIN_BYTES))
        return ALLREDUCE_SINGLE_COPY; /* one copy in, one out, no ring */
    return allreduce_select_messages(c, bytes);
}

int cgloo__allreduce_without_single_copy(coll *c, const void *sendbuf, void *recvbuf, size_t count)
{
    allreduce_algorithm a = allreduce_select_messages(c, count * c->esize);
    cgloo__sc_fallback(c, cgloo__allreduce_algorithms[a].name);
    if (sendbuf != recvbuf && a == ALLREDUCE_RING)
        return cgloo__allreduce_ring_out_of_place(c, sendbuf, recvbuf, count);
    if (sendbuf != recvbuf)
        memcpy(recvbuf, sendbuf, count * c->esize);
    return allreduce_fns[a](c, recvbuf, count);
}

allreduce_fn cgloo__allreduce_flat_choice(const coll *c, size_t bytes)
{
    return allreduce_fns[allreduce_select_flat(c, bytes)];
}

/* allreduce_select: through the slots for small vectors where every peer shares memory,
 * hierarchical from 256 KiB where some host's ranks are not adjacent (hierarchical.h), else the
 * flat choice. */
static allreduce_algorithm allreduce_select(coll *c, size_t bytes)
{
    if (bytes <= SHM_MAX_BYTES && cgloo__coll_slots_usable(c))
        return ALLREDUCE_SHM; /* one cache-line hand-off, no message */
    if (cgloo__hier_wanted(c, bytes, HIER_SELECT_MIN_BYTES))
        return ALLREDUCE_HIERARCHICAL;
    return allreduce_select_flat(c, bytes);
}

static int allreduce_check(coll *c, const void *sendbuf, void *recvbuf, size_t count)
{
    if (count > 0 && (!sendbuf || !recvbuf))
        return cgloo__coll_error(c, CGLOO_EINVAL, "NULL buffer with count %zu", count);
    if (count > SIZE_MAX / c->esize)
        return cgloo__coll_error(c, CGLOO_EINVAL, "count %zu overflows", count);
    return CGLOO_OK;
}

/* apart: the two buffers of count elements do not overlap at all. */
static bool apart(const coll *c, const void *a, const void *b, size_t count)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b, n = count * c->esize;
    return x + n <= y || y + n <= x;
}

/* allreduce_run picks the algorithm and runs it. Out of place, the ring reads the input where
 * it is (saving a copy of the whole vector); the others start from a copy in recvbuf. */
static int allreduce_run(coll *c, const void *sendbuf, void *recvbuf, size_t count,
                         const cgloo_coll_opts *opts)
{
    int a = cgloo__coll_find(c, cgloo__allreduce_algorithms, ALLREDUCE_ALGORITHM_COUNT, opts,
                             allreduce_select(c, count * c->esize));
    if (a < 0)
        return a;
    if (a == ALLREDUCE_SHM && c->size > 1 && !cgloo__coll_slots_reach(c))
        a = cgloo__coll_slots_fallback(c, cgloo__allreduce_algorithms,
                                       allreduce_select_flat(c, count * c->esize));
    bool ring = a == ALLREDUCE_RING, copy = a == ALLREDUCE_SINGLE_COPY;
    bool out_of_place =
        c->size > 1 && count && sendbuf != recvbuf && apart(c, sendbuf, recvbuf, count);
    if (out_of_place && ring)
        return cgloo__allreduce_ring_out_of_place(c, sendbuf, recvbuf, count);
    if (out_of_place && copy)
        return cgloo__allreduce_single_copy_out_of_place(c, sendbuf, recvbuf, count);
    if (sendbuf != recvbuf && count)
        memmove(recvbuf, sendbuf, count * c->esize);
    if (c->size == 1 || count == 0)
        return CGLOO_OK;
    return allreduce_fns[a](c, recvbuf, count);
}

int cgloo_allreduce(cgloo_context *ctx, const void *sendbuf, void *recvbuf, size_t count,
                    cgloo_dtype dtype, cgloo_op op, const cgloo_coll_opts *opts)
{
    COLL_DECL(c);
    int rc = cgloo__coll_begin(&c, ctx, "allreduce", dtype, opts);
    c.fp.count = count;
    if (rc == CGLOO_OK)
        rc = cgloo__coll_set_op(&c, op, opts);
    if (rc == CGLOO_OK)
        rc = allreduce_check(&c, sendbuf, recvbuf, count);
    if (rc != CGLOO_OK)
        return rc;
    return allreduce_run(&c, sendbuf, recvbuf, count, opts);
}

static int multi_check(coll *c, const void *const *sendbufs, size_t nsend, void *const *recvbufs,
                       size_t nrecv, size_t count)
{
    if (!sendbufs || !recvbufs || nsend == 0 || nrecv == 0)
        return cgloo__coll_error(c, CGLOO_EINVAL, "no input or no output buffers");
    for (size_t i = 0; i < nsend; i++)
        if (allreduce_check(c, sendbufs[i], recvbufs[0], count) != CGLOO_OK)
            return CGLOO_EINVAL;
    for (size_t i = 0; i < nrecv; i++)
        if (allreduce_check(c, sendbufs[0], recvbufs[i], count) != CGLOO_OK)
            return CGLOO_EINVAL;
    return CGLOO_OK;
}

/* multi_local_reduce sums the inputs into out, which may alias one of them. */
static void multi_local_reduce(coll *c, const void *const *sendbufs, size_t nsend, void *out,
                               size_t count)
{
    size_t first = 0;
    for (size_t i = 0; i < nsend; i++)
        if (sendbufs[i] == out)
            first = i; /* out already holds this input: reduce the others into it */
    if (sendbufs[first] != out)
        memmove(out, sendbufs[first], count * c->esize);
    for (size_t i = 0; i < nsend; i++)
        if (i != first)
            cgloo__coll_reduce(c, out, sendbufs[i], count);
}

int cgloo_allreduce_multi(cgloo_context *ctx, const void *const *sendbufs, size_t nsend,
                          void *const *recvbufs, size_t nrecv, size_t count, cgloo_dtype dtype,
                          cgloo_op op, const cgloo_coll_opts *opts)
{
    COLL_DECL(c);
    int rc = cgloo__coll_begin(&c, ctx, "allreduce", dtype, opts);
    c.fp.count = count;
    if (rc == CGLOO_OK)
        rc = cgloo__coll_set_op(&c, op, opts);
    if (rc == CGLOO_OK)
        rc = multi_check(&c, sendbufs, nsend, recvbufs, nrecv, count);
    if (rc != CGLOO_OK)
        return rc;
    void *out = recvbufs[0];
    multi_local_reduce(&c, sendbufs, nsend, out, count);
    rc = allreduce_run(&c, out, out, count, opts);
    for (size_t i = 1; rc == CGLOO_OK && i < nrecv; i++)
        if (recvbufs[i] != out)
            memcpy(recvbufs[i], out, count * c.esize);
    return rc;
}
