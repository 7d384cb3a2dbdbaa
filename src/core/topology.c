/*
 * The host topology of a context (topology.h): which ranks share a host, their local ranks, the
 * hosts' leaders and the columns of per-chunk leaders.
 */
#include "core/topology.h"
#include "core/context.h"
#include "transport/transport.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

/* What a rank publishes after its address when it uses shared memory (rendezvous/local_peers.c
 * writes it). */
#define TOPOLOGY_HOST_TAG "|host="

/* topology_alloc allocates t and its arrays in one block, sized for any host count. */
static cgloo__topology *topology_alloc(int size)
{
    size_t n = (size_t)size;
    cgloo__topology *t = calloc(1, sizeof *t + (6 * n + 2) * sizeof(int));
    if (!t)
        return NULL;
    int *p = (int *)(t + 1);
    t->size = size;
    t->host_of = p;
    t->local_rank = p + n;
    t->host_ranks = p + 2 * n;
    t->col_ranks = p + 3 * n;
    t->host_start = p + 4 * n;    /* n_hosts + 1 <= n + 1 */
    t->col_start = p + 5 * n + 1; /* max_local + 1 <= n + 1 */
    return t;
}

/* topology_assign numbers the hosts in the order of their lowest rank: equal known ids share
 * one, an unknown id is a host of its own. */
static void topology_assign(cgloo__topology *t, const uint64_t *ids, const bool *known)
{
    for (int r = 0; r < t->size; r++) {
        int h = -1;
        for (int q = 0; known[r] && q < r && h < 0; q++)
            if (known[q] && ids[q] == ids[r])
                h = t->host_of[q];
        t->host_of[r] = h >= 0 ? h : t->n_hosts++;
    }
}

/* topology_index fills the host lists, local ranks and columns from host_of. */
static void topology_index(cgloo__topology *t)
{
    int *count = t->host_start + 1; /* counted in place, then summed */
    for (int r = 0; r < t->size; r++)
        t->local_rank[r] = count[t->host_of[r]]++;
    t->max_local = 0;
    t->uniform = true;
    for (int h = 0; h < t->n_hosts; h++) {
        t->uniform = t->uniform && count[h] == count[0];
        t->max_local = CGLOO_MAX(t->max_local, count[h]);
        t->host_start[h + 1] += t->host_start[h];
    }
    for (int r = 0; r < t->size; r++)
        t->host_ranks[t->host_start[t->host_of[r]] + t->local_rank[r]] = r;
    t->contiguous = true;
    for (int h = 0; h < t->n_hosts; h++) {
        int first = t->host_start[h], last = t->host_start[h + 1] - 1;
        t->contiguous = t->contiguous && t->host_ranks[last] - t->host_ranks[first] == last - first;
    }
    int at = 0;
    for (int i = 0; i < t->max_local; i++) {
        t->col_start[i] = at;
        for (int h = 0; h < t->n_hosts; h++)
            if (t->host_start[h] + i < t->host_start[h + 1])
                t->col_ranks[at++] = t->host_ranks[t->host_start[h] + i];
    }
    t->col_start[t->max_local] = at;
}

int cgloo__topology_build(int size, const uint64_t *ids, const bool *known, cgloo__topology **out)
{
    *out = NULL;
    cgloo__topology *t = topology_alloc(size);
    if (!t)
        return CGLOO_ENOMEM;
    topology_assign(t, ids, known);
    topology_index(t);
    *out = t;
    return CGLOO_OK;
}

/* topology_parse reads the identity in an address ("...|host=<16 hex>"); false when none. */
static bool topology_parse(const char *text, uint64_t *id)
{
    const char *tag = text ? strstr(text, TOPOLOGY_HOST_TAG) : NULL;
    return tag && sscanf(tag + strlen(TOPOLOGY_HOST_TAG), "%16" SCNx64, id) == 1;
}

int cgloo__topology_from_addresses(int size, int self, const char *const *addrs, const char *mine,
                                   cgloo__topology **out)
{
    uint64_t *ids = calloc((size_t)size, sizeof *ids);
    bool *known = calloc((size_t)size, sizeof *known);
    int rc = ids && known ? CGLOO_OK : CGLOO_ENOMEM;
    for (int r = 0; rc == CGLOO_OK && r < size; r++)
        known[r] = topology_parse(r == self ? mine : addrs[r], &ids[r]);
    if (rc == CGLOO_OK)
        rc = cgloo__topology_build(size, ids, known, out);
    free(ids);
    free(known);
    return rc;
}

int cgloo__topology_sub(const cgloo__topology *parent, const int *members, int n,
                        cgloo__topology **out)
{
    uint64_t *ids = calloc((size_t)n, sizeof *ids);
    bool *known = calloc((size_t)n, sizeof *known);
    int rc = ids && known ? CGLOO_OK : CGLOO_ENOMEM;
    for (int i = 0; rc == CGLOO_OK && i < n; i++) {
        known[i] = parent != NULL;
        ids[i] = parent ? (uint64_t)parent->host_of[members[i]] : 0;
    }
    if (rc == CGLOO_OK)
        rc = cgloo__topology_build(n, ids, known, out);
    free(ids);
    free(known);
    return rc;
}

void cgloo__topology_free(cgloo__topology *t)
{
    free(t);
}

int cgloo__ctx_topology_set(cgloo_context *ctx, const cgloo__peer_record *recs, const char *mine)
{
    const char **addrs = calloc((size_t)ctx->size, sizeof *addrs);
    int rc = addrs ? CGLOO_OK : CGLOO_ENOMEM;
    for (int r = 0; addrs && r < ctx->size; r++)
        addrs[r] = recs[r].address;
    cgloo__topology *t = NULL;
    if (rc == CGLOO_OK)
        rc = cgloo__topology_from_addresses(ctx->size, ctx->rank, addrs, mine, &t);
    free(addrs);
    if (rc != CGLOO_OK)
        return cgloo__ctx_error(ctx, rc, "rank %d: no memory for the host topology", ctx->rank);
    cgloo__topology_free(ctx->topo);
    ctx->topo = t;
    return CGLOO_OK;
}
