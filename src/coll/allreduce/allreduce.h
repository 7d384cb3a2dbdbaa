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

#endif
