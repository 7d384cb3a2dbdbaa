/*
 * The collectives, listed once. Each public call is a row X(name, table, kind):
 *
 *   name   what cgloo_algorithm_names() takes; also the name the call's errors carry and whose
 *          CGLOO_<NAME>_ALGORITHM variable forces its algorithm, except reduce_scatterv, which
 *          runs as reduce_scatter (one variable for both);
 *   table  the collective whose algorithm table the call uses, cgloo__<table>_algorithms,
 *          defined in src/coll/<table>/<table>.c;
 *   kind   the number of its tag space (bits 55 to 62 of its tags, see coll.h), 1 to 31 (0 is
 *          check mode's exchange, check.c). A v
 *          variant shares its collective's: one caller never runs both at once.
 *
 * Kinds are on the wire, so every rank must agree on them: give a new collective a new number
 * and never renumber a row.
 */
#ifndef CGLOO_COLLECTIVES_H
#define CGLOO_COLLECTIVES_H

#define CGLOO_COLLECTIVES(X)                                                                       \
    X(allreduce, allreduce, 1)                                                                     \
    X(reduce_scatter, reduce_scatter, 2)                                                           \
    X(reduce_scatterv, reduce_scatter, 2)                                                          \
    X(allgather, allgather, 3)                                                                     \
    X(allgatherv, allgather, 3)                                                                    \
    X(broadcast, broadcast, 4)                                                                     \
    X(reduce, reduce, 5)                                                                           \
    X(gather, gather, 6)                                                                           \
    X(gatherv, gather, 6)                                                                          \
    X(scatter, scatter, 7)                                                                         \
    X(scatterv, scatter, 7)                                                                        \
    X(alltoall, alltoall, 8)                                                                       \
    X(alltoallv, alltoall, 8)                                                                      \
    X(barrier, barrier, 9)

#endif
