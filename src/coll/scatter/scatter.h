/*
 * Scatter algorithms. Blocks are laid out by `off` (size + 1 byte offsets into the root's
 * sendbuf, see pattern/blocks.h); rank r receives blocks_bytes(off, r) bytes into recvbuf.
 * sendbuf is used on the root only, and the root's own block is copied by the caller.
 */
#ifndef CGLOO_SCATTER_H
#define CGLOO_SCATTER_H

#include "coll/coll.h"

typedef int (*scatter_fn)(coll *c, const void *sendbuf, const size_t *off, void *recvbuf, int root);

int cgloo__scatter_direct(coll *c, const void *sendbuf, const size_t *off, void *recvbuf, int root);
int cgloo__scatter_binomial(coll *c, const void *sendbuf, const size_t *off, void *recvbuf,
                            int root);
/* single_copy: every rank reads its block straight out of the root's memory (shared memory
 * only, coll/single_copy.h); where some rank cannot, direct. */
int cgloo__scatter_single_copy(coll *c, const void *sendbuf, const size_t *off, void *recvbuf,
                               int root);
/* shm: through the shared-memory slots (coll/slots.h); ENOTSUP where a peer has none. */
int cgloo__scatter_shm(coll *c, const void *sendbuf, const size_t *off, void *recvbuf, int root);

#endif
