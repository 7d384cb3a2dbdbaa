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
int cgloo__broadcast_shm(coll *c, void *buf, size_t bytes, int root);

#endif
