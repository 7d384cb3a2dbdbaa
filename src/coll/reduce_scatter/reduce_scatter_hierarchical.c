/*
 * Hierarchical reduce-scatter: within each host, then across hosts between the ranks of each
 * local rank (coll/hierarchical.h has the phases and the topology).
 *
 * For H hosts of L ranks each, a vector of n bytes. The input is copied into a scratch buffer
 * with its blocks in column order (the blocks of local rank 0 of every host, in host order,
 * then local rank 1, ...), so that column i's blocks (local rank i of every host) lie together.
 * A reduce-scatter within each host over the L columns leaves local rank i with column i
 * reduced over its host; a reduce-scatter across hosts among the H ranks of column i leaves
 * each with its own block reduced over every rank. Both use reduce_scatter's selector for the
 * group. Each rank sends (L-1)/L n within its host and (H-1)/(HL) n across hosts (ring): every
 * rank's link carries an equal share of the traffic between hosts. Latency: the two phases'
 * steps. Extra cost: a copy of the input and a scratch buffer of n.
 * Hosts of different sizes: the hierarchical allreduce of a copy, keeping this rank's block
 * (twice the bytes, but still one leader per host across hosts). Preconditions: a commutative
 * op. One host, or one rank per host: the flat algorithm the selector picks.
 */
#include "coll/allreduce/allreduce.h"
#include "coll/hierarchical.h"
#include "coll/reduce_scatter/reduce_scatter.h"

/* hier_pack copies sendbuf's blocks (element offsets `off`) into scratch in column order and
 * fills pos (size + 1 element offsets there). */
static void hier_pack(const coll *c, const cgloo__topology *t, const void *sendbuf,
                      const size_t *off, size_t *pos, void *scratch)
{
    pos[0] = 0;
    for (int k = 0; k < t->size; k++) {
        int r = t->col_ranks[k];
        size_t n = off[r + 1] - off[r];
        pos[k + 1] = pos[k] + n;
        memcpy(cgloo__elem(c, scratch, pos[k]), cgloo__elem(c, sendbuf, off[r]), n * c->esize);
    }
}

/* hier_phases: the columns within the host, then column i across hosts; returns where this
 * rank's block is in scratch (elements) through *at. `rel` has room for size + 1 offsets. */
static int hier_phases(coll *c, const cgloo__topology *t, uint8_t *scratch, const size_t *pos,
                       size_t *rel, size_t *at)
{
    int me = c->rank, i = t->local_rank[me], h = t->host_of[me], nh, nl;
    const int *column = cgloo__topology_column(t, i, &nh);
    const int *local = cgloo__topology_host(t, h, &nl);
    for (int j = 0; j <= nl; j++)
        rel[j] = pos[t->col_start[j]];
    coll sub;
    cgloo__coll_sub(c, &sub, local, nl, HIER_PHASE_WITHIN, HIER_WITHIN);
    size_t total = pos[t->size] * c->esize;
    int rc = cgloo__reduce_scatter_flat_choice(&sub, total)(
        &sub, scratch, cgloo__elem(c, scratch, rel[i]), rel, 0);
    if (cgloo__coll_sub_end(c, &sub, rc) != CGLOO_OK)
        return rc;
    size_t first = pos[t->col_start[i]];
    for (int j = 0; j <= nh; j++)
        rel[j] = pos[t->col_start[i] + j] - first;
    uint8_t *col = cgloo__elem(c, scratch, first);
    *at = first + rel[h];
    cgloo__coll_sub(c, &sub, column, nh, HIER_PHASE_ACROSS, HIER_ACROSS);
    rc = cgloo__reduce_scatter_flat_choice(&sub, rel[nh] * c->esize)(
        &sub, col, cgloo__elem(c, col, rel[h]), rel, 0);
    return cgloo__coll_sub_end(c, &sub, rc);
}

/* hier_by_allreduce: hosts of different sizes; the hierarchical allreduce of a copy. */
static int hier_by_allreduce(coll *c, const void *sendbuf, void *recvbuf, const size_t *off,
                             void *scratch)
{
    memcpy(scratch, sendbuf, off[c->size] * c->esize);
    int rc = cgloo__allreduce_hierarchical(c, scratch, off[c->size]);
    size_t mine = off[c->rank + 1] - off[c->rank];
    if (rc == CGLOO_OK)
        memmove(recvbuf, cgloo__elem(c, scratch, off[c->rank]), mine * c->esize);
    return rc;
}

int cgloo__reduce_scatter_hierarchical(coll *c, const void *sendbuf, void *recvbuf,
                                       const size_t *offsets, unsigned step_base)
{
    const cgloo__topology *t = cgloo__hier_topology(c);
    size_t total = offsets[c->size] * c->esize;
    if (!t)
        return cgloo__reduce_scatter_flat_choice(c, total)(c, sendbuf, recvbuf, offsets, step_base);
    size_t n = (size_t)c->size + 1, at = 0;
    size_t *pos = malloc(2 * n * sizeof *pos);
    uint8_t *scratch = malloc(total ? total : 1);
    int rc = CGLOO_OK;
    if (!pos || !scratch) {
        rc = cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for a scratch buffer of %zu bytes",
                               total);
    } else if (!t->uniform) {
        rc = hier_by_allreduce(c, sendbuf, recvbuf, offsets, scratch);
    } else {
        hier_pack(c, t, sendbuf, offsets, pos, scratch);
        rc = hier_phases(c, t, scratch, pos, pos + n, &at);
        size_t mine = offsets[c->rank + 1] - offsets[c->rank];
        if (rc == CGLOO_OK)
            memmove(recvbuf, cgloo__elem(c, scratch, at), mine * c->esize);
    }
    free(pos);
    free(scratch);
    return rc;
}
