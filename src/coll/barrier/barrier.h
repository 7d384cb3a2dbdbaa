/*
 * Barrier algorithms: return once every rank has entered.
 */
#ifndef CGLOO_BARRIER_H
#define CGLOO_BARRIER_H

#include "coll/coll.h"

typedef int (*barrier_fn)(coll *c);

int cgloo__barrier_dissemination(coll *c);
int cgloo__barrier_all_to_one(coll *c);
int cgloo__barrier_shm(coll *c);

#endif
