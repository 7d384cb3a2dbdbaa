/*
 * Alltoall algorithms. Rank i's block j (bytes [soff[j], soff[j + 1]) of sendbuf) lands as rank
 * j's block i (bytes [roff[i], roff[i + 1]) of its recvbuf); see pattern/blocks.h. The buffers do
 * not overlap. The caller has already copied this rank's block to itself for shm; pairwise
 * copies it once its first messages are posted, single_copy after its reads.
 */
#ifndef CGLOO_ALLTOALL_H
#define CGLOO_ALLTOALL_H

#include "coll/coll.h"

typedef int (*alltoall_fn)(coll *c, const void *sendbuf, const size_t *soff, void *recvbuf,
                           const size_t *roff);

/* cgloo__alltoall_own_block copies this rank's block to itself, driving the transports between
 * pieces (cgloo__coll_copy_polling). */
void cgloo__alltoall_own_block(coll *c, const void *sendbuf, const size_t *soff, void *recvbuf,
                               const size_t *roff);

int cgloo__alltoall_pairwise(coll *c, const void *sendbuf, const size_t *soff, void *recvbuf,
                             const size_t *roff);
/* single_copy: every rank reads its blocks straight out of the peers' memory (shared memory
 * only, coll/single_copy.h); where some rank cannot, pairwise. */
int cgloo__alltoall_single_copy(coll *c, const void *sendbuf, const size_t *soff, void *recvbuf,
                                const size_t *roff);
/* shm: through the shared-memory slots (coll/slots.h); ENOTSUP where a peer has none. */
int cgloo__alltoall_shm(coll *c, const void *sendbuf, const size_t *soff, void *recvbuf,
                        const size_t *roff);

#endif
