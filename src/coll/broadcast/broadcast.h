/*
 * Broadcast algorithms: `bytes` bytes of root's buf end up in every rank's buf.
 */
#ifndef CGLOO_BROADCAST_H
#define CGLOO_BROADCAST_H

#include "coll/coll.h"

typedef int (*broadcast_fn)(coll *c, void *buf, size_t bytes, int root);

int cgloo__broadcast_flat(coll *c, void *buf, size_t bytes, int root);
int cgloo__broadcast_binomial(coll *c, void *buf, size_t bytes, int root);
int cgloo__broadcast_pipeline(coll *c, void *buf, size_t bytes, int root);
/* single_copy: every rank reads the root's buffer straight out of its memory while the root
 * writes a share into theirs (shared memory only, coll/single_copy.h); where some rank cannot,
 * the pipeline. */
int cgloo__broadcast_single_copy(coll *c, void *buf, size_t bytes, int root);
int cgloo__broadcast_hierarchical(coll *c, void *buf, size_t bytes, int root);
/* cgloo__broadcast_flat_choice: the selector's pick among the flat algorithms for c's size and
 * `bytes` (for the phases of the hierarchical algorithms). */
broadcast_fn cgloo__broadcast_flat_choice(const coll *c, size_t bytes);
int cgloo__broadcast_shm(coll *c, void *buf, size_t bytes, int root);

#endif
