/*
 * Gather algorithms. Blocks are laid out by `off` (size + 1 byte offsets into the root's
 * recvbuf, see pattern/blocks.h); rank r sends blocks_bytes(off, r) bytes from sendbuf. On
 * entry the root's own block is already in place in recvbuf (cgloo__gather_own_block), but for
 * direct and single_copy, which place it while the other blocks move; recvbuf is used on the
 * root only.
 */
#ifndef CGLOO_GATHER_H
#define CGLOO_GATHER_H

#include "coll/coll.h"

typedef int (*gather_fn)(coll *c, const void *sendbuf, void *recvbuf, const size_t *off, int root);

/* cgloo__gather_own_block: on the root, its own block copied from sendbuf into its place in
 * recvbuf (unless it is already there), driving the transports between pieces
 * (cgloo__coll_copy_polling); nothing elsewhere. */
void cgloo__gather_own_block(coll *c, const void *sendbuf, void *recvbuf, const size_t *off,
                             int root);

int cgloo__gather_direct(coll *c, const void *sendbuf, void *recvbuf, const size_t *off, int root);
int cgloo__gather_binomial(coll *c, const void *sendbuf, void *recvbuf, const size_t *off,
                           int root);
/* single_copy: the blocks move straight between the ranks' memories while the root copies its
 * own (shared memory only, coll/single_copy.h); where some rank cannot, direct. */
int cgloo__gather_single_copy(coll *c, const void *sendbuf, void *recvbuf, const size_t *off,
                              int root);
/* shm: through the shared-memory slots (coll/slots.h); ENOTSUP where a peer has none. */
int cgloo__gather_shm(coll *c, const void *sendbuf, void *recvbuf, const size_t *off, int root);

#endif
