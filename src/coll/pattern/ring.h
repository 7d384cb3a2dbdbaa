/*
 * Ring arithmetic with no I/O: neighbours, and the block a rank sends or receives at each step
 * of a ring reduce-scatter or allgather over `size` blocks.
 */
#ifndef CGLOO_PATTERN_RING_H
#define CGLOO_PATTERN_RING_H

#include <stddef.h>

static inline int ring_next(int rank, int size)
{
    return (rank + 1) % size;
}

static inline int ring_prev(int rank, int size)
{
    return (rank + size - 1) % size;
}

/* Reduce-scatter step s (0..size-2): send block (rank - s - 1), receive block (rank - s - 2),
 * so that after size-1 steps rank r holds the full reduction of block r. */
static inline int ring_rs_send_block(int rank, int size, int step)
{
    return ((rank - step - 1) % size + 2 * size) % size;
}

static inline int ring_rs_recv_block(int rank, int size, int step)
{
    return ((rank - step - 2) % size + 2 * size) % size;
}

/* Allgather step s (0..size-2): send block (rank - s), receive block (rank - s - 1). */
static inline int ring_ag_send_block(int rank, int size, int step)
{
    return ((rank - step) % size + size) % size;
}

static inline int ring_ag_recv_block(int rank, int size, int step)
{
    return ((rank - step - 1) % size + 2 * size) % size;
}

/* Split count elements into `parts` blocks as evenly as possible: the first count % parts
 * blocks get one more element. */
static inline size_t block_offset(size_t count, int parts, int i)
{
    size_t base = count / (size_t)parts, extra = count % (size_t)parts;
    return base * (size_t)i + ((size_t)i < extra ? (size_t)i : extra);
}

static inline size_t block_count(size_t count, int parts, int i)
{
    return block_offset(count, parts, i + 1) - block_offset(count, parts, i);
}

#endif
