/*
 * Allreduce algorithms. Each runs in place on `buf` (count elements): on entry buf holds this
 * rank's contribution, on return the reduction over all ranks, identical on every rank.
 */
#ifndef CGLOO_ALLREDUCE_H
#define CGLOO_ALLREDUCE_H

#include "coll/coll.h"

typedef int (*allreduce_fn)(coll *c, void *buf, size_t count);

int cgloo__allreduce_ring(coll *c, void *buf, size_t count);
/* cgloo__allreduce_ring_out_of_place: the ring reading its input from sendbuf (which must not
 * overlap recvbuf) instead of from a copy in recvbuf. */
int cgloo__allreduce_ring_out_of_place(coll *c, const void *sendbuf, void *recvbuf, size_t count);
int cgloo__allreduce_halving_doubling(coll *c, void *buf, size_t count);
int cgloo__allreduce_bcube(coll *c, void *buf, size_t count);
int cgloo__allreduce_recursive_doubling(coll *c, void *buf, size_t count);
int cgloo__allreduce_direct(coll *c, void *buf, size_t count);
/* single_copy: every rank reads its peers' vectors straight out of their memory (shared memory
 * only, coll/single_copy.h); the out-of-place form reads the input where it is. */
int cgloo__allreduce_single_copy(coll *c, void *buf, size_t count);
int cgloo__allreduce_single_copy_out_of_place(coll *c, const void *sendbuf, void *recvbuf,
                                              size_t count);
/* cgloo__allreduce_without_single_copy runs the algorithm the selector picks among the
 * message-based ones, under its own name (the single copy declined the call on every rank
 * alike); sendbuf and recvbuf are the same or apart. */
int cgloo__allreduce_without_single_copy(coll *c, const void *sendbuf, void *recvbuf, size_t count);
int cgloo__allreduce_hierarchical(coll *c, void *buf, size_t count);
/* cgloo__allreduce_flat_choice: the algorithm the selector picks for c's size and `bytes` among the
 * flat ones (for the phases of the hierarchical algorithms). */
allreduce_fn cgloo__allreduce_flat_choice(const coll *c, size_t bytes);
int cgloo__allreduce_shm(coll *c, void *buf, size_t count);

/* The recursive algorithms' core: an allreduce among the P' survivors of the non-power-of-two
 * fold (pattern/fold.h), run by rank f->rank on its virtual rank, with tmp a scratch buffer of
 * count elements. */
struct fold_plan;
typedef int (*allreduce_core_fn)(coll *c, const struct fold_plan *f, void *buf, void *tmp,
                                 size_t count);

/* cgloo__allreduce_folded runs `core` on any P: a folded-away rank sends its vector to its
 * partner and receives the result; the partner reduces it in first and sends the result back
 * after the core. Blocks until done; returns ENOMEM (recorded) for the scratch or the errors of
 * the coll helpers and of core. */
int cgloo__allreduce_folded(coll *c, void *buf, size_t count, allreduce_core_fn core);

#endif
