/*
 * Reduce algorithms. Each leaves, on the root, recvbuf[i] = sendbuf[i] reduced over all ranks
 * for i < count; recvbuf is only used on the root, and may equal sendbuf there (in place).
 * count > 0 and 0 <= root < size are checked by the caller.
 */
#ifndef CGLOO_COLL_REDUCE_H
#define CGLOO_COLL_REDUCE_H

#include "coll/coll.h"

typedef int (*reduce_fn)(coll *c, const void *sendbuf, void *recvbuf, size_t count, int root);

int cgloo__reduce_binomial(coll *c, const void *sendbuf, void *recvbuf, size_t count, int root);
int cgloo__reduce_rsg(coll *c, const void *sendbuf, void *recvbuf, size_t count, int root);
/* shm: through the shared-memory slots (coll/slots.h); ENOTSUP where a peer has none. */
int cgloo__reduce_shm(coll *c, const void *sendbuf, void *recvbuf, size_t count, int root);
/* cgloo__reduce_single_copy: the inputs are read straight out of the peers' memory and reduced,
 * by every rank for its block or by the root alone (ranks that share a host); it runs the
 * message-passing choice when the kernel refuses the reads. */
int cgloo__reduce_single_copy(coll *c, const void *sendbuf, void *recvbuf, size_t count, int root);
/* cgloo__reduce_message_choice: the selector's pick among the message-passing algorithms. */
reduce_fn cgloo__reduce_message_choice(const coll *c, size_t count);
/* cgloo__reduce_flat_choice: the selector's pick for c's size and count (for the phases of the
 * hierarchical algorithms). */
reduce_fn cgloo__reduce_flat_choice(const coll *c, size_t count);

#endif
