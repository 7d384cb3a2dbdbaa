/*
 * Per-rank blocks laid back to back in one buffer, with no I/O: the byte offset table that
 * the gather-like collectives (allgather, gather, scatter, alltoall and their v variants) share,
 * and the even cut of one vector that the block-owning reductions share.
 * Block r is bytes [off[r], off[r + 1]) of the buffer; the table has size + 1 entries.
 */
#ifndef CGLOO_PATTERN_BLOCKS_H
#define CGLOO_PATTERN_BLOCKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* blocks_fill fills off[0..size] for counts[r] elements per rank, or `count` each when counts
 * is NULL, of esize bytes. Returns false if the total overflows size_t. */
static inline bool blocks_fill(size_t *off, int size, const size_t *counts, size_t count,
                               size_t esize)
{
    off[0] = 0;
    for (int r = 0; r < size; r++) {
        size_t n = counts ? counts[r] : count;
        if (n > SIZE_MAX / esize || off[r] > SIZE_MAX - n * esize)
            return false;
        off[r + 1] = off[r] + n * esize;
    }
    return true;
}

/* blocks_even fills off[0..size] with element offsets (not bytes, unlike the tables above)
 * cutting count elements into size blocks that differ by at most one (the first count % size
 * one larger). */
static inline void blocks_even(size_t *off, int size, size_t count)
{
    size_t base = count / (size_t)size, rem = count % (size_t)size;
    for (int r = 0; r <= size; r++)
        off[r] = (size_t)r * base + ((size_t)r < rem ? (size_t)r : rem);
}

static inline size_t blocks_bytes(const size_t *off, int r)
{
    return off[r + 1] - off[r];
}

/* blocks_largest: the largest of the size blocks (in off's units). */
static inline size_t blocks_largest(const size_t *off, int size)
{
    size_t largest = 0;
    for (int r = 0; r < size; r++)
        if (blocks_bytes(off, r) > largest)
            largest = blocks_bytes(off, r);
    return largest;
}

/* blocks_rel_off: the bytes of the blocks of ranks root, root + 1, ... (j of them, wrapping
 * past size - 1 to 0), that is, where relative block j starts in a buffer laid out in the
 * order of ranks relative to root. */
static inline size_t blocks_rel_off(const size_t *off, int size, int root, int j)
{
    if (root + j <= size)
        return off[root + j] - off[root];
    return off[size] - off[root] + off[root + j - size];
}

#endif
