/*
 * Hierarchical broadcast: from the root to one rank on every other host, then within each host
 * (coll/hierarchical.h has the phases and the topology).
 *
 * Across hosts the root and the leaders of the other hosts (local rank 0) broadcast among
 * themselves with broadcast's selector over H ranks (H hosts); then each of them broadcasts
 * within its host (the root on its own host) with the selector over the host's L ranks. The
 * message crosses the links between hosts H - 1 times, where a flat tree or chain over ranks
 * in rank order may cross them once per rank. Latency: the across-host broadcast's steps plus
 * one within the host for small data on a few ranks (flat), ceil(lg L) for larger.
 * Preconditions: none. One host, or one rank per host: the flat algorithm the selector picks.
 */
#include "coll/broadcast/broadcast.h"
#include "coll/hierarchical.h"

int cgloo__broadcast_hierarchical(coll *c, void *buf, size_t bytes, int root)
{
    const cgloo__topology *t = cgloo__hier_topology(c);
    if (!t)
        return cgloo__broadcast_flat_choice(c, bytes)(c, buf, bytes, root);
    int me = c->rank, home = t->host_of[root], host = t->host_of[me], nh, nl;
    const int *leaders = cgloo__topology_column(t, 0, &nh);
    int *reps = malloc((size_t)nh * sizeof *reps);
    if (!reps)
        return cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for %d hosts", nh);
    memcpy(reps, leaders, (size_t)nh * sizeof *reps);
    reps[home] = root; /* the root speaks for its host */
    coll sub;
    int rc = CGLOO_OK;
    cgloo__coll_sub(c, &sub, reps, nh, HIER_PHASE_ACROSS, HIER_ACROSS);
    if (sub.rank >= 0) {
        rc = cgloo__broadcast_flat_choice(&sub, bytes)(&sub, buf, bytes, home);
        rc = cgloo__coll_sub_end(c, &sub, rc);
    }
    const int *local = cgloo__topology_host(t, host, &nl);
    if (rc == CGLOO_OK && nl > 1) {
        cgloo__coll_sub(c, &sub, local, nl, HIER_PHASE_WITHIN, HIER_WITHIN);
        int from = host == home ? t->local_rank[root] : 0;
        rc = cgloo__broadcast_flat_choice(&sub, bytes)(&sub, buf, bytes, from);
        rc = cgloo__coll_sub_end(c, &sub, rc);
    }
    free(reps);
    return rc;
}
