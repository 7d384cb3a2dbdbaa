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

#endif
