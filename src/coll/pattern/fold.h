/*
 * The non-power-of-two fold, with no I/O: the one plan every recursive algorithm (recursive
 * halving, recursive doubling) uses to run on P ranks as if there were P', the largest power of
 * two not above P.
 *
 * Convention: let q = P - P'. The first 2q ranks pair up as (2i, 2i+1). The even rank 2i folds
 * away: it hands its data to the odd rank 2i+1 before the power-of-two part and gets its share
 * back after it. The P' ranks left (the survivors) get virtual ranks 0 .. P'-1 in rank order:
 * rank 2i+1 is virtual rank i (i < q), and rank r >= 2q is virtual rank r - q.
 *
 * Virtual rank v stands for the real ranks [fold_first(v), fold_first(v+1)): the pair 2v, 2v+1
 * when v < q, the rank v + q alone otherwise. These ranges are contiguous and in rank order, so
 * a range of virtual ranks is one range of real ranks, and so of per-rank blocks: a
 * reduce-scatter or an allgather over per-rank blocks moves any range as one message and needs
 * no reordering. (The other common convention, rank P'+i folding into rank i, scatters a
 * virtual rank's blocks over the buffer.) Partners are neighbours too, which keeps the fold's
 * whole-vector transfer inside a host when consecutive ranks share one.
 *
 * Example, P = 7: P' = 4, q = 3, two halving or doubling steps among the survivors.
 *
 *     real rank          0    1    2    3    4    5    6
 *     folds into         1    -    3    -    5    -    -
 *     virtual rank       -    0    -    1    -    2    3
 *
 *     virtual rank 0 stands for real ranks 0, 1; 1 for 2, 3; 2 for 4, 5; 3 for 6 alone.
 *
 * P = 6: P' = 4, q = 2; ranks 0 and 2 fold into 1 and 3; virtual ranks 0, 1, 2, 3 are real
 * ranks 1, 3, 4, 5 and stand for {0, 1}, {2, 3}, {4}, {5}. A power of two folds nothing:
 * virtual rank v is real rank v.
 */
#ifndef CGLOO_PATTERN_FOLD_H
#define CGLOO_PATTERN_FOLD_H

#include "coll/pattern/pow2.h"

#include <stdbool.h>

typedef struct fold_plan {
    int size;    /* P */
    int p2;      /* P': the largest power of two not above P */
    int rem;     /* q = P - P': how many ranks fold away */
    int steps;   /* log2 P': halving or doubling steps among the survivors */
    int rank;    /* the real rank this plan is for */
    int vrank;   /* its virtual rank, or -1 when it folds away */
    int partner; /* the other rank of its pair, or -1 when it is in none */
} fold_plan;

/* fold_vrank: the virtual rank of real rank r, or -1 when r folds away. */
static inline int fold_vrank(const fold_plan *f, int r)
{
    if (r >= 2 * f->rem)
        return r - f->rem;
    return r % 2 ? r / 2 : -1;
}

/* fold_real: the survivor that plays virtual rank v. */
static inline int fold_real(const fold_plan *f, int v)
{
    return v < f->rem ? 2 * v + 1 : v + f->rem;
}

/* fold_first: the first real rank virtual rank v stands for; v == P' gives P, so that v stands
 * for real ranks (and blocks) [fold_first(v), fold_first(v + 1)). */
static inline int fold_first(const fold_plan *f, int v)
{
    return v < f->rem ? 2 * v : v + f->rem;
}

/* fold_plan_make: the plan for rank `rank` of `size` (size >= 1, 0 <= rank < size). */
static inline fold_plan fold_plan_make(int rank, int size)
{
    fold_plan f = {.size = size, .p2 = pow2_floor(size), .rank = rank};
    f.rem = size - f.p2;
    f.steps = pow2_log2(f.p2);
    f.vrank = fold_vrank(&f, rank);
    f.partner = rank < 2 * f.rem ? rank ^ 1 : -1;
    return f;
}

/* fold_away: whether this rank sits out the power-of-two part. */
static inline bool fold_away(const fold_plan *f)
{
    return f->vrank < 0;
}

/* fold_pair_away: the rank of this rank's pair that folds away (itself or its partner), whose
 * data the fold moves; -1 when this rank is in no pair. */
static inline int fold_pair_away(const fold_plan *f)
{
    if (f->partner < 0)
        return -1;
    return fold_away(f) ? f->rank : f->partner;
}

#endif
