/*
 * Scatter algorithms. Blocks are laid out by `off` (size + 1 byte offsets into the root's
 * sendbuf, see pattern/blocks.h); rank r receives blocks_bytes(off, r) bytes into recvbuf.
 * sendbuf is used on the root only, and the root's own block is copied by the caller
 * (cgloo__scatter_own_block), but for direct and single_copy, which copy it while the other
 * blocks move.
 */
#ifndef CGLOO_SCATTER_H
#define CGLOO_SCATTER_H

#include "coll/coll.h"

typedef int (*scatter_fn)(coll *c, const void *sendbuf, const size_t *off, void *recvbuf, int root);

/* cgloo__scatter_own_block: on the root, its own block copied from sendbuf into recvbuf
 * (unless it is already there), driving the transports between pieces
 * (cgloo__coll_copy_polling); nothing elsewhere. */
void cgloo__scatter_own_block(coll *c, const void *sendbuf, const size_t *off, void *recvbuf,
                              int root);

int cgloo__scatter_direct(coll *c, const void *sendbuf, const size_t *off, void *recvbuf, int root);
int cgloo__scatter_binomial(coll *c, const void *sendbuf, const size_t *off, void *recvbuf,
                            int root);
/* single_copy: every rank reads its block straight out of the root's memory while the root
 * copies its own (shared memory only, coll/single_copy.h); where some rank cannot, direct. */
int cgloo__scatter_single_copy(coll *c, const void *sendbuf, const size_t *off, void *recvbuf,
                               int root);
/* shm: through the shared-memory slots (coll/slots.h); ENOTSUP where a peer has none. */
int cgloo__scatter_shm(coll *c, const void *sendbuf, const size_t *off, void *recvbuf, int root);

#endif
