/*
 * Hierarchical allgather: across hosts between the ranks of each local rank, then within each
 * host (coll/hierarchical.h has the phases and the topology).
 *
 * For H hosts of L ranks each. The blocks are packed in a scratch buffer column by column
 * (local rank 0 of every host in host order, then local rank 1, ...), so that the blocks of
 * column i (local rank i of every host) lie together. The H ranks of column i allgather their
 * blocks across hosts; then the L ranks of each host allgather the L columns within the host,
 * each rank bringing its own column; the result is unpacked into rank order. Both phases use
 * allgather's selector for the group's size and bytes. Each rank sends (H-1)/(HL) n bytes across
 * hosts (ring) and (L-1)/L n within its host, so every rank's link carries an equal share of the
 * traffic between hosts: where ranks of one host are far apart in rank order, a flat ring
 * crosses between hosts at every step. Latency: the two phases' steps (lg H + lg L with
 * recursive doubling). Extra cost: two local copies of the n bytes and a scratch buffer of n.
 * Preconditions: none. Hosts of different sizes: the ring (a column would miss some hosts);
 * one host, or one rank per host: the flat algorithm the selector picks.
 */
#include "coll/allgather/allgather.h"
#include "coll/hierarchical.h"
#include "coll/pattern/blocks.h"

/* hier_pack fills pos (size + 1 byte offsets in column order, pos[k] for the k-th rank of
 * t->col_ranks) and copies this rank's block into the scratch. */
static void hier_pack(const cgloo__topology *t, const uint8_t *recvbuf, const size_t *off,
                      size_t *pos, uint8_t *scratch, int me)
{
    pos[0] = 0;
    for (int k = 0; k < t->size; k++) {
        int r = t->col_ranks[k];
        pos[k + 1] = pos[k] + blocks_bytes(off, r);
        if (r == me)
            memcpy(scratch + pos[k], recvbuf + off[r], blocks_bytes(off, r));
    }
}

/* hier_phases: column i across hosts, then the columns within the host. `rel` has room for
 * size + 1 offsets. */
static int hier_phases(coll *c, const cgloo__topology *t, uint8_t *scratch, const size_t *pos,
                       size_t *rel)
{
    int me = c->rank, i = t->local_rank[me], nh, nl;
    const int *column = cgloo__topology_column(t, i, &nh);
    const int *local = cgloo__topology_host(t, t->host_of[me], &nl);
    size_t first = pos[t->col_start[i]];
    for (int j = 0; j <= nh; j++)
        rel[j] = pos[t->col_start[i] + j] - first;
    coll sub;
    cgloo__coll_sub(c, &sub, column, nh, HIER_PHASE_ACROSS, HIER_ACROSS);
    int rc = cgloo__allgather_flat_choice(&sub, rel[nh])(&sub, scratch + first, rel);
    if (cgloo__coll_sub_end(c, &sub, rc) != CGLOO_OK)
        return rc;
    for (int j = 0; j <= nl; j++)
        rel[j] = pos[t->col_start[j]];
    cgloo__coll_sub(c, &sub, local, nl, HIER_PHASE_WITHIN, HIER_WITHIN);
    rc = cgloo__allgather_flat_choice(&sub, rel[nl])(&sub, scratch, rel);
    return cgloo__coll_sub_end(c, &sub, rc);
}

int cgloo__allgather_hierarchical(coll *c, void *recvbuf, const size_t *off)
{
    const cgloo__topology *t = cgloo__hier_topology(c);
    if (!t)
        return cgloo__allgather_flat_choice(c, off[c->size])(c, recvbuf, off);
    if (!t->uniform)
        return cgloo__allgather_ring(c, recvbuf, off);
    size_t n = (size_t)c->size + 1;
    size_t *pos = malloc(2 * n * sizeof *pos);
    uint8_t *scratch = malloc(off[c->size] ? off[c->size] : 1);
    int rc = CGLOO_OK;
    if (!pos || !scratch) {
        rc = cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for a scratch buffer of %zu bytes",
                               off[c->size]);
    } else {
        hier_pack(t, recvbuf, off, pos, scratch, c->rank);
        rc = hier_phases(c, t, scratch, pos, pos + n);
    }
    for (int k = 0; rc == CGLOO_OK && k < t->size; k++) {
        int r = t->col_ranks[k];
        memcpy((uint8_t *)recvbuf + off[r], scratch + pos[k], blocks_bytes(off, r));
    }
    free(pos);
    free(scratch);
    return rc;
}
