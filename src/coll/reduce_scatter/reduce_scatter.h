/*
 * Reduce-scatter building blocks, shared with the collectives that are built from them: ring
 * allreduce is ring reduce-scatter then ring allgather on one buffer, and reduce's
 * "reduce_scatter_gather" is a reduce-scatter then a gather to the root.
 *
 * Blocks are given as `offsets`: size + 1 non-decreasing element offsets with offsets[0] == 0,
 * block b being elements [offsets[b], offsets[b+1]) of the buffer (offsets[size] elements in
 * all). Blocks may be uneven or empty. Every rank passes the same offsets.
 *
 * Steps: an algorithm tags its messages with step numbers from `step_base` on (see the
 * `_steps` functions for how many), so a caller composing several phases can keep every
 * phase's step numbers apart, which makes error messages say which phase failed. Step numbers
 * are taken modulo 256 by the tags; since every pair of ranks matches messages of one tag in
 * the order sent, reusing a number is harmless for correctness.
 *
 * Every function blocks until done or until the call's deadline (c->deadline_ms), uses only the
 * coll helpers, and returns CGLOO_OK, CGLOO_ENOMEM (scratch allocation; no message was sent),
 * or the errors of the coll helpers (ETIMEDOUT, EPEER, EPROTO, EABORTED, with the step and peer
 * in the context's last error). On failure the buffers hold unspecified data and no request is
 * left pending. c must have a reduction (cgloo__coll_set_op) and the op must be commutative.
 */
#ifndef CGLOO_REDUCE_SCATTER_H
#define CGLOO_REDUCE_SCATTER_H

#include "coll/coll.h"

/* The algorithm signature of the table: sendbuf holds every block (offsets), rank r receives
 * block r reduced over all ranks in recvbuf (offsets[r+1] - offsets[r] elements). In place when
 * recvbuf == sendbuf + offsets[rank] elements: then the other blocks of sendbuf are scratch and
 * hold unspecified data on return. Otherwise the buffers must not overlap and sendbuf is only
 * read. */
typedef int (*cgloo__reduce_scatter_fn)(coll *c, const void *sendbuf, void *recvbuf,
                                        const size_t *offsets, unsigned step_base);

/* cgloo__reduce_scatter_ring_inplace: ring reduce-scatter in place. On entry buf holds this
 * rank's contribution to every block; on return block c->rank of buf holds that block reduced
 * over all ranks, and the other blocks are scratch (partial sums: unspecified). Scratch: two
 * segments of at most 512 KiB each, allocated inside. Uses steps step_base .. step_base +
 * size - 2. size 1: returns at once. */
int cgloo__reduce_scatter_ring_inplace(coll *c, void *buf, const size_t *offsets,
                                       unsigned step_base);

/* cgloo__reduce_scatter_ring: the table form (see cgloo__reduce_scatter_fn). Out of place it
 * never writes sendbuf and needs two blocks of scratch (the largest block); in place it is
 * cgloo__reduce_scatter_ring_inplace. Same steps. */
int cgloo__reduce_scatter_ring(coll *c, const void *sendbuf, void *recvbuf, const size_t *offsets,
                               unsigned step_base);

/* cgloo__reduce_scatter_halving_doubling_inplace: recursive halving in place, with the same
 * contract as the ring's. Scratch: up to the whole buffer on a rank that takes in a folded
 * partner's vector, else the largest half it keeps. Uses steps step_base .. step_base +
 * cgloo__reduce_scatter_halving_doubling_steps(size) - 1. */
int cgloo__reduce_scatter_halving_doubling_inplace(coll *c, void *buf, const size_t *offsets,
                                                   unsigned step_base);

/* cgloo__reduce_scatter_halving_doubling: the table form; out of place it works on a copy of
 * sendbuf (one more buffer of the whole input). */
int cgloo__reduce_scatter_halving_doubling(coll *c, const void *sendbuf, void *recvbuf,
                                           const size_t *offsets, unsigned step_base);

/* cgloo__reduce_scatter_single_copy: every rank reduces its block straight out of the peers'
 * inputs (shared memory only, coll/single_copy.h); its own step numbers, whatever step_base;
 * where some rank cannot read the peers' memory, the ring. */
int cgloo__reduce_scatter_single_copy(coll *c, const void *sendbuf, void *recvbuf,
                                      const size_t *offsets, unsigned step_base);
/* cgloo__reduce_scatter_hierarchical: within each host, then across hosts (the table form;
 * reduce_scatter_hierarchical.c). Steps: its phases have tag spaces of their own. */
int cgloo__reduce_scatter_hierarchical(coll *c, const void *sendbuf, void *recvbuf,
                                       const size_t *offsets, unsigned step_base);

/* cgloo__reduce_scatter_shm: through the shared-memory slots (coll/slots.h), the table form;
 * ENOTSUP where a peer has none; no messages, whatever step_base. */
int cgloo__reduce_scatter_shm(coll *c, const void *sendbuf, void *recvbuf, const size_t *offsets,
                              unsigned step_base);

/* cgloo__reduce_scatter_flat_choice: the selector's pick among the flat algorithms for c's size and
 * total bytes (for the phases of the hierarchical algorithms). */
cgloo__reduce_scatter_fn cgloo__reduce_scatter_flat_choice(const coll *c, size_t total_bytes);

/* How many step numbers each algorithm uses from step_base. */
static inline unsigned cgloo__reduce_scatter_ring_steps(int size)
{
    return size > 1 ? (unsigned)size - 1 : 0;
}

/* log2 of the largest power of two <= size, plus the fold and the unfold. */
static inline unsigned cgloo__reduce_scatter_halving_doubling_steps(int size)
{
    unsigned k = 0;
    while ((2 << k) <= size)
        k++;
    return k + 2;
}

#endif
