/*
 * What the three collective benchmarks share, so that cgloo-bench (tools/cgloo-bench.c), its
 * Open MPI counterpart (bench/mpi_coll.c) and its Gloo counterpart (bench/gloo_coll.cc) run the
 * same collectives on the same sizes and check them against the same values: the list of
 * collectives, how a size becomes a count, the input values, the expected outputs and the bus
 * bandwidth factors, as tools/cgloo-bench.c's opening comment defines them.
 *
 * Plain C that C++ compiles too, with no library calls: each program stores the values in its
 * own dtypes and compares its own buffers. The values are small non-negative integers that
 * every dtype holds exactly, even summed over all the sources, so that a check is exact.
 */
#ifndef CGLOO_BENCH_CHECK_H
#define CGLOO_BENCH_CHECK_H

#include <stddef.h>
#include <string.h>

/* BENCH_COLLS(X): X(ID, name, blocked, reduces) for every collective the benchmarks run.
 * blocked: the buffers hold a block per rank and the count is elements / ranks; reduces: the
 * outputs are sums over the ranks (and the inputs). */
#define BENCH_COLLS(X)                                                                             \
    X(ALLREDUCE, allreduce, 0, 1)                                                                  \
    X(REDUCE_SCATTER, reduce_scatter, 1, 1)                                                        \
    X(ALLGATHER, allgather, 1, 0)                                                                  \
    X(BROADCAST, broadcast, 0, 0)                                                                  \
    X(REDUCE, reduce, 0, 1)                                                                        \
    X(GATHER, gather, 1, 0)                                                                        \
    X(SCATTER, scatter, 1, 0)                                                                      \
    X(ALLTOALL, alltoall, 1, 0)                                                                    \
    X(BARRIER, barrier, 0, 0)

typedef enum bench_coll {
#define BENCH_COLL_ENUM(id, name, blocked, reduces) BENCH_##id,
    BENCH_COLLS(BENCH_COLL_ENUM)
#undef BENCH_COLL_ENUM
} bench_coll;

static const struct bench_coll_info {
    const char *name;
    int blocked, reduces;
} bench_colls[] = {
#define BENCH_COLL_INFO(id, name, blocked, reduces) {#name, blocked, reduces},
    BENCH_COLLS(BENCH_COLL_INFO)
#undef BENCH_COLL_INFO
};

#define BENCH_COLL_COUNT ((int)(sizeof bench_colls / sizeof bench_colls[0]))

/* One size of one benchmark on one rank, as the checks see it. Rooted collectives have root 0;
 * broadcast runs in place on the receive buffer. */
typedef struct bench_case {
    bench_coll coll;
    int rank, size;
    int inputs;      /* buffers every rank reduces together (cgloo-bench --inputs), else 1 */
    size_t elements; /* the per-rank buffer the row's bandwidth is about */
    size_t count;    /* the collective's count argument */
    long modulus;    /* the values lie in [0, modulus) */
} bench_case;

/* bench_case_make: collective `coll` on rank `rank` of `size`, before any size is set. */
static inline bench_case bench_case_make(bench_coll coll, int rank, int size, int inputs)
{
    bench_case k;
    k.coll = coll;
    k.rank = rank;
    k.size = size;
    k.inputs = inputs;
    k.elements = k.count = 0;
    k.modulus = 1;
    return k;
}

/* bench_coll_find: the collective named `name`, or -1. */
static inline int bench_coll_find(const char *name)
{
    for (int m = 0; m < BENCH_COLL_COUNT; m++)
        if (strcmp(name, bench_colls[m].name) == 0)
            return m;
    return -1;
}

/* bench_set_size sets the size to measure: `elements` per rank, rounded down to a block per
 * rank for the blocked collectives. Returns 0 when the size has fewer elements than ranks
 * (skipped); barrier has one size, 0. */
static inline int bench_set_size(bench_case *k, size_t elements)
{
    int blocked = bench_colls[k->coll].blocked;
    if (k->coll == BENCH_BARRIER) {
        k->elements = k->count = 0;
        return 1;
    }
    k->count = blocked ? elements / (size_t)k->size : elements;
    k->elements = blocked ? k->count * (size_t)k->size : elements;
    return k->count > 0;
}

/* bench_set_modulus keeps the values below `exact`, the largest integer the dtype holds exactly,
 * once summed over every source, and below 1021 (a prime, so that the pattern does not repeat
 * with a power-of-two period). */
static inline void bench_set_modulus(bench_case *k, long exact)
{
    long sources = bench_colls[k->coll].reduces ? (long)k->size * k->inputs : 1;
    long m = exact / sources;
    k->modulus = m > 1021 ? 1021 : m < 1 ? 1 : m;
}

/* bench_value: what source `src` (a rank, or rank x inputs + input) holds at element i. */
static inline long bench_value(const bench_case *k, long src, size_t i)
{
    long m = k->modulus;
    return ((long)(i % (size_t)m) * 7 + (src % m) * 13) % m;
}

/* bench_input_len: how many elements this rank fills before a call (0: none, a non-root of
 * broadcast or scatter). They go into the send buffer(s), or the receive buffer for broadcast. */
static inline size_t bench_input_len(const bench_case *k)
{
    switch (k->coll) {
    case BENCH_BROADCAST:
    case BENCH_SCATTER:
        return k->rank == 0 ? k->elements : 0;
    case BENCH_REDUCE_SCATTER:
    case BENCH_ALLTOALL:
        return k->elements;
    default:
        return k->count;
    }
}

/* bench_input_source: whose values input `j` (0 to inputs - 1) of this rank holds. */
static inline long bench_input_source(const bench_case *k, int j)
{
    if (k->coll == BENCH_BROADCAST || k->coll == BENCH_SCATTER)
        return 0; /* the root's */
    return (long)k->rank * k->inputs + j;
}

static inline long bench_sum_over(const bench_case *k, long sources, size_t i)
{
    long s = 0;
    for (long q = 0; q < sources; q++)
        s += bench_value(k, q, i);
    return s;
}

/* bench_expected: output element i of this rank, or -1 where the output is not defined (off the
 * root). */
static inline long bench_expected(const bench_case *k, size_t i)
{
    size_t c = k->count;
    switch (k->coll) {
    case BENCH_ALLREDUCE:
        return bench_sum_over(k, (long)k->size * k->inputs, i);
    case BENCH_REDUCE_SCATTER:
        return bench_sum_over(k, k->size, (size_t)k->rank * c + i);
    case BENCH_ALLGATHER:
        return bench_value(k, (long)(i / c), i % c);
    case BENCH_BROADCAST:
        return bench_value(k, 0, i);
    case BENCH_REDUCE:
        return k->rank == 0 ? bench_sum_over(k, k->size, i) : -1;
    case BENCH_GATHER:
        return k->rank == 0 ? bench_value(k, (long)(i / c), i % c) : -1;
    case BENCH_SCATTER:
        return bench_value(k, 0, (size_t)k->rank * c + i);
    case BENCH_ALLTOALL:
        return bench_value(k, (long)(i / c), (size_t)k->rank * c + i % c);
    default:
        return -1;
    }
}

/* bench_output_len: the elements of each of this rank's output buffers. */
static inline size_t bench_output_len(const bench_case *k)
{
    bench_coll m = k->coll;
    if (m == BENCH_ALLGATHER || m == BENCH_GATHER || m == BENCH_ALLTOALL)
        return k->elements;
    return m == BENCH_BARRIER ? 0 : k->count;
}

/* bench_output_is_input: the output buffer also holds this rank's input (the broadcast root's),
 * so it must not be cleared before a check. */
static inline int bench_output_is_input(const bench_case *k)
{
    return k->coll == BENCH_BROADCAST && k->rank == 0;
}

/* bench_bus_factor turns algorithm bandwidth into bus bandwidth over n ranks (nccl-tests). */
static inline double bench_bus_factor(bench_coll m, int n)
{
    switch (m) {
    case BENCH_ALLREDUCE:
        return 2.0 * (n - 1) / n;
    case BENCH_BROADCAST:
    case BENCH_REDUCE:
        return 1;
    case BENCH_BARRIER:
        return 0;
    default:
        return (double)(n - 1) / n;
    }
}

#endif
