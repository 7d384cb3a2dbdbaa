/*
 * Binomial tree arithmetic with no I/O, over ranks relative to a root (the root is relative
 * rank 0). The parent of relative rank v > 0 is v with its lowest set bit cleared; the children
 * of v are v + m for the powers of two m below v's lowest set bit (any m for the root), as long
 * as v + m < size. The subtree of v is the contiguous range [v, v + binomial_span(v, size)),
 * which is what lets gather and scatter move a whole subtree as one message.
 */
#ifndef CGLOO_PATTERN_TREE_H
#define CGLOO_PATTERN_TREE_H

static inline int rel_rank(int rank, int root, int size)
{
    return (rank - root + size) % size;
}

static inline int abs_rank(int vrank, int root, int size)
{
    return (vrank + root) % size;
}

static inline int binomial_parent(int vrank)
{
    return vrank - (vrank & -vrank);
}

/* binomial_span: how many relative ranks the subtree of vrank covers (itself included). */
static inline int binomial_span(int vrank, int size)
{
    int span = vrank == 0 ? size : vrank & -vrank;
    return span < size - vrank ? span : size - vrank;
}

#endif
