/*
 * Hierarchical allreduce: within each host, across hosts, within each host again
 * (coll/hierarchical.h has the phases and the topology).
 *
 * Three forms, for H hosts of at most L ranks and a vector of n bytes:
 * - Columns (hosts of one size, n below HIER_CHUNKED_MIN_BYTES): every host allreduces within
 *   itself (allreduce's selector over L ranks), then the ranks of local rank i, one per host
 *   (column i), allreduce the host sums across hosts, every column at once (the selector over H
 *   ranks). Latency: the two allreduces' steps (lg L + lg H with recursive doubling, as a flat
 *   recursive doubling over HL ranks placed host by host, but whatever the placement: a flat
 *   algorithm over ranks whose hosts alternate crosses between hosts at every step). Across
 *   hosts every rank sends what its column's allreduce sends (n lg H with recursive doubling).
 *   Every column computes the same bits: its inputs are the same host sums in the same order.
 * - Per-chunk leaders (hosts of one size L > 1, n from HIER_CHUNKED_MIN_BYTES): a
 *   reduce-scatter within each host leaves local rank i with block i (n/L bytes) reduced over
 *   its host; column i allreduces block i across hosts; an allgather within each host puts the
 *   blocks together. Each rank sends (L-1)/L n twice within its host and 2 (H-1)/H n/L across
 *   hosts (ring): a host sends 2 (H-1)/H n across hosts in all, spread over its L ranks' links.
 * - Leaders (hosts of different sizes): each host reduces to its leader (local rank 0; reduce's
 *   selector: binomial, ceil(lg L) steps), the H leaders allreduce (the selector over H ranks),
 *   and each leader broadcasts within its host. Only the leaders' links carry data across
 *   hosts: 2 (H-1)/H n per host with the ring. Latency: about 2 lg L + lg H steps.
 * Every rank ends with the same bits. Preconditions: a commutative op (the reduction order
 * follows the topology). One host, or one rank per host: the flat algorithm the selector picks.
 */
#include "coll/allgather/allgather.h"
#include "coll/allreduce/allreduce.h"
#include "coll/broadcast/broadcast.h"
#include "coll/hierarchical.h"
#include "coll/pattern/blocks.h"
#include "coll/reduce/reduce.h"
#include "coll/reduce_scatter/reduce_scatter.h"

/* From this many bytes, with hosts of one size, the per-chunk form: its blocks are large enough
 * that the extra steps within the host cost less than what sharing the links across hosts
 * saves (the flat selector moves to its bandwidth-optimal algorithms at the same size). */
#define HIER_CHUNKED_MIN_BYTES (256 * 1024)

/* hier_leaders: reduce to each host's leader, allreduce among the leaders, broadcast back. */
static int hier_leaders(coll *c, const cgloo__topology *t, void *buf, size_t count)
{
    int me = c->rank, nl, nh, rc = CGLOO_OK;
    const int *local = cgloo__topology_host(t, t->host_of[me], &nl);
    const int *leaders = cgloo__topology_column(t, 0, &nh);
    size_t bytes = count * c->esize;
    coll sub;
    if (nl > 1) {
        cgloo__coll_sub(c, &sub, local, nl, HIER_PHASE_WITHIN, HIER_WITHIN);
        rc = cgloo__reduce_flat_choice(&sub, count)(&sub, buf, buf, count, 0);
        rc = cgloo__coll_sub_end(c, &sub, rc);
    }
    if (rc == CGLOO_OK && t->local_rank[me] == 0) {
        cgloo__coll_sub(c, &sub, leaders, nh, HIER_PHASE_ACROSS, HIER_ACROSS);
        rc = cgloo__allreduce_flat_choice(&sub, bytes)(&sub, buf, count);
        rc = cgloo__coll_sub_end(c, &sub, rc);
    }
    if (rc == CGLOO_OK && nl > 1) {
        cgloo__coll_sub(c, &sub, local, nl, HIER_PHASE_BACK, HIER_WITHIN);
        rc = cgloo__broadcast_flat_choice(&sub, bytes)(&sub, buf, bytes, 0);
        rc = cgloo__coll_sub_end(c, &sub, rc);
    }
    return rc;
}

/* hier_columns: allreduce within the host, then across hosts in every column at once. */
static int hier_columns(coll *c, const cgloo__topology *t, void *buf, size_t count)
{
    int nl, nh;
    const int *local = cgloo__topology_host(t, t->host_of[c->rank], &nl);
    const int *column = cgloo__topology_column(t, t->local_rank[c->rank], &nh);
    size_t bytes = count * c->esize;
    coll sub;
    cgloo__coll_sub(c, &sub, local, nl, HIER_PHASE_WITHIN, HIER_WITHIN);
    int rc = cgloo__allreduce_flat_choice(&sub, bytes)(&sub, buf, count);
    if (cgloo__coll_sub_end(c, &sub, rc) != CGLOO_OK)
        return rc;
    cgloo__coll_sub(c, &sub, column, nh, HIER_PHASE_ACROSS, HIER_ACROSS);
    rc = cgloo__allreduce_flat_choice(&sub, bytes)(&sub, buf, count);
    return cgloo__coll_sub_end(c, &sub, rc);
}

/* hier_chunked: reduce-scatter within the host, allreduce of each block across hosts by the
 * ranks of one local rank, allgather within the host. off: L + 1 element offsets. */
static int hier_chunked(coll *c, const cgloo__topology *t, void *buf, size_t count, size_t *off)
{
    int me = c->rank, i = t->local_rank[me], nl, nh;
    const int *local = cgloo__topology_host(t, t->host_of[me], &nl);
    const int *column = cgloo__topology_column(t, i, &nh);
    size_t bytes = count * c->esize;
    blocks_even(off, nl, count);
    coll sub;
    cgloo__coll_sub(c, &sub, local, nl, HIER_PHASE_WITHIN, HIER_WITHIN);
    uint8_t *mine = cgloo__elem(c, buf, off[i]);
    int rc = cgloo__reduce_scatter_flat_choice(&sub, bytes)(&sub, buf, mine, off, 0);
    rc = cgloo__coll_sub_end(c, &sub, rc);
    if (rc == CGLOO_OK) {
        size_t n = off[i + 1] - off[i];
        cgloo__coll_sub(c, &sub, column, nh, HIER_PHASE_ACROSS, HIER_ACROSS);
        rc = cgloo__allreduce_flat_choice(&sub, n * c->esize)(&sub, mine, n);
        rc = cgloo__coll_sub_end(c, &sub, rc);
    }
    if (rc != CGLOO_OK)
        return rc;
    for (int b = 0; b <= nl; b++)
        off[b] *= c->esize; /* allgather takes byte offsets */
    cgloo__coll_sub(c, &sub, local, nl, HIER_PHASE_BACK, HIER_WITHIN);
    rc = cgloo__allgather_flat_choice(&sub, bytes)(&sub, buf, off);
    return cgloo__coll_sub_end(c, &sub, rc);
}

int cgloo__allreduce_hierarchical(coll *c, void *buf, size_t count)
{
    const cgloo__topology *t = cgloo__hier_topology(c);
    if (!t)
        return cgloo__allreduce_flat_choice(c, count * c->esize)(c, buf, count);
    if (!t->uniform)
        return hier_leaders(c, t, buf, count);
    if (count * c->esize < HIER_CHUNKED_MIN_BYTES || count < (size_t)t->max_local)
        return hier_columns(c, t, buf, count);
    size_t *off = malloc(((size_t)t->max_local + 1) * sizeof *off);
    if (!off)
        return cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for %d block offsets", t->max_local);
    int rc = hier_chunked(c, t, buf, count, off);
    free(off);
    return rc;
}
