/*
 * What the hierarchical algorithms share (src/coll/<collective>/<collective>_hierarchical.c):
 * the context's host topology (core/topology.h) as a collective sees it, the test the
 * selectors use, and the phases' tag spaces and names.
 *
 * A hierarchical algorithm runs in phases, each an existing algorithm over a group of ranks
 * (cgloo__coll_sub): the ranks of one host (over shared memory when the context uses it),
 * the hosts' leaders, or a column of per-chunk leaders (local rank i of every host: every rank's
 * link carries a share). Each phase picks its algorithm with the collective's own selector for
 * the group's size and bytes, and has its own tag space, so phases never match each other's
 * messages. Every rank has the same topology, so every rank runs the same phases.
 */
#ifndef CGLOO_COLL_HIERARCHICAL_H
#define CGLOO_COLL_HIERARCHICAL_H

#include "coll/coll.h"
#include "core/topology.h"

/* The tag spaces of the phases (cgloo__coll_sub). */
enum { HIER_PHASE_WITHIN = 1, HIER_PHASE_ACROSS = 2, HIER_PHASE_BACK = 3 };
/* The names errors give each phase's algorithm. */
#define HIER_WITHIN "hierarchical, within the host"
#define HIER_ACROSS "hierarchical, across hosts"

/* cgloo__hier_topology is the topology a hierarchical algorithm can use for c: NULL when c
 * runs over a group already (a phase), when the context has none (one rank), or when it has one
 * level only (one host, or every rank a host of its own), where the flat algorithm is the
 * hierarchy. */
const cgloo__topology *cgloo__hier_topology(const coll *c);

/* From this many bytes (the collective's whole vector: gathered, reduced or broadcast) the
 * selectors of allreduce, broadcast and reduce_scatter pick hierarchical; allgather's picks it
 * at every size. Measured across namespace hosts with links limited to 1 Gbit/s and ranks
 * placed alternately (docs/BENCHMARKS.md, "Hierarchical collectives"): from 256 KiB all four
 * took 0.3 to 1.06 of the flat choice's time; below it, allgather 0.5 to 0.9, the others from
 * 0.5 to 4.8 (a small broadcast's flat form is one step, the hierarchy's two). */
#define HIER_SELECT_MIN_BYTES (256u * 1024)

/* cgloo__hier_wanted is the selectors' test for a call of `bytes`: at least min_bytes, the world
 * spans more than one host, some host has more than one rank (the hierarchy has two levels),
 * and the ranks of some host are not adjacent in rank order. Where every host's ranks are
 * adjacent, the flat algorithms already keep most of their steps within a host (ring
 * neighbours, the first lg L steps of recursive doubling and halving) and measured as fast or
 * faster. */
static inline bool cgloo__hier_wanted(const coll *c, size_t bytes, size_t min_bytes)
{
    if (bytes < min_bytes) /* first: the small calls' path stays a compare */
        return false;
    const cgloo__topology *t = cgloo__hier_topology(c);
    return t && !t->contiguous;
}

#endif
