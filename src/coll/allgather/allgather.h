/*
 * Allgather algorithms. Each works on the whole receive buffer laid out by `off` (size + 1
 * byte offsets, see pattern/blocks.h): on entry block `rank` already holds this rank's data, on
 * return every block holds its rank's data, on every rank. The v variant is the same call with
 * uneven blocks.
 */
#ifndef CGLOO_ALLGATHER_H
#define CGLOO_ALLGATHER_H

#include "coll/coll.h"

typedef int (*allgather_fn)(coll *c, void *recvbuf, const size_t *off);

int cgloo__allgather_ring(coll *c, void *recvbuf, const size_t *off);
int cgloo__allgather_recursive_doubling(coll *c, void *recvbuf, const size_t *off);
/* single_copy: every rank reads the others' blocks straight out of their buffers (shared
 * memory only, coll/single_copy.h); where some rank cannot, the ring. */
int cgloo__allgather_single_copy(coll *c, void *recvbuf, const size_t *off);
/* The same, the peers reading this rank's block at `block` (its send buffer) rather than in
 * recvbuf (where it lies too). */
int cgloo__allgather_single_copy_from(coll *c, const void *block, void *recvbuf, const size_t *off);
int cgloo__allgather_hierarchical(coll *c, void *recvbuf, const size_t *off);
/* shm: through the shared-memory slots (coll/slots.h); ENOTSUP where a peer has none. */
int cgloo__allgather_shm(coll *c, void *recvbuf, const size_t *off);
/* cgloo__allgather_flat_choice: the selector's pick among the flat algorithms for c's size and
 * `bytes` gathered (for the phases of the hierarchical algorithms). */
allgather_fn cgloo__allgather_flat_choice(const coll *c, size_t bytes);

#endif
