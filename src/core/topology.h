/*
 * Which ranks of a context share a host, for the hierarchical collectives (coll/hierarchical.h).
 *
 * A host is a host identity as the rendezvous records carry it (rendezvous/local_peers.c: boot
 * id plus IPC and network namespace, published as "|host=<hex>" by a rank whose context uses
 * shared memory): ranks whose records carry the same identity share memory, and a rank that
 * published none counts as a host of its own. Every rank reads the same records, so every rank
 * computes the same topology; the collectives rely on that, as on every rank running the same
 * algorithm. Computed once at connect (full mesh or lazy) and for each child of a split (from
 * its parent's), read without a lock afterwards (it never changes).
 *
 * Hosts are numbered in the order of their lowest rank, and the ranks of a host are in rank
 * order; a host's "local rank" is a rank's index in it and its leader is its local rank 0.
 * Column i is the ranks of local rank i, one per host that has that many, in host order: the
 * per-chunk leaders of the hierarchical algorithms (column 0 is the leaders).
 */
#ifndef CGLOO_TOPOLOGY_H
#define CGLOO_TOPOLOGY_H

#include "cgloo_impl.h"

typedef struct cgloo__topology {
    int size;        /* ranks */
    int n_hosts;     /* hosts */
    int max_local;   /* ranks on the largest host */
    bool uniform;    /* every host has max_local ranks */
    bool contiguous; /* every host's ranks are consecutive numbers */
    int *host_of;    /* [size] host of each rank */
    int *local_rank; /* [size] index of each rank in its host */
    int *host_start; /* [n_hosts + 1] where each host's ranks start in host_ranks */
    int *host_ranks; /* [size] ranks host by host */
    int *col_start;  /* [max_local + 1] where each column starts in col_ranks */
    int *col_ranks;  /* [size] ranks column by column, in host order within a column */
} cgloo__topology;

/* cgloo__topology_build makes the topology of `size` ranks whose host identities are ids[r]
 * (meaningful where known[r]; a rank without one is a host of its own). ENOMEM. Free with
 * cgloo__topology_free. */
int cgloo__topology_build(int size, const uint64_t *ids, const bool *known, cgloo__topology **out);
/* cgloo__topology_from_addresses builds it from the rendezvous records' addresses, before the
 * identities are cut off them: addrs[r] for every rank but `self`, whose identity suffix is
 * `mine` ("" when it published none). ENOMEM. */
int cgloo__topology_from_addresses(int size, int self, const char *const *addrs, const char *mine,
                                   cgloo__topology **out);
/* cgloo__topology_sub makes the topology of a child context whose rank i is rank members[i]
 * of the parent's topology (n members). NULL parent: every member its own host. ENOMEM. */
int cgloo__topology_sub(const cgloo__topology *parent, const int *members, int n,
                        cgloo__topology **out);
void cgloo__topology_free(cgloo__topology *t);

/* cgloo__ctx_topology_set gives ctx the topology of its connect's records (indexed by rank,
 * their addresses still carrying the identities), `mine` being this rank's own suffix
 * (rendezvous/local_peers.h). Call before the identities are cut off. ENOMEM (recorded). */
struct cgloo_context;
struct cgloo__peer_record;
int cgloo__ctx_topology_set(struct cgloo_context *ctx, const struct cgloo__peer_record *recs,
                            const char *mine);

/* The ranks of host h and of column i, and how many. */
static inline const int *cgloo__topology_host(const cgloo__topology *t, int h, int *n)
{
    *n = t->host_start[h + 1] - t->host_start[h];
    return t->host_ranks + t->host_start[h];
}
static inline const int *cgloo__topology_column(const cgloo__topology *t, int i, int *n)
{
    *n = t->col_start[i + 1] - t->col_start[i];
    return t->col_ranks + t->col_start[i];
}

#endif
