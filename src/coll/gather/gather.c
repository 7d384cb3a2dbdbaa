/*
 * cgloo_gather and cgloo_gatherv: argument checks, the algorithm table and the selector. Both
 * lay the root's receive buffer out as a table of per-rank blocks (pattern/blocks.h). The root
 * may gather in place: sendbuf == recvbuf + its block's offset.
 */
#include "coll/gather/gather.h"
#include "coll/pattern/blocks.h"

/* The algorithms, in the order cgloo_algorithm_names("gather") lists them. */
typedef enum gather_algorithm {
    GATHER_DIRECT,
    GATHER_BINOMIAL,
    GATHER_ALGORITHM_COUNT
} gather_algorithm;

const coll_algorithm cgloo__gather_algorithms[GATHER_ALGORITHM_COUNT + 1] = {
    [GATHER_DIRECT] = {"direct", "every rank sends straight to the root; large blocks"},
    [GATHER_BINOMIAL] = {"binomial",
                         "subtrees gathered up a binomial tree, ceil(lg p) steps; small blocks"},
};

static const gather_fn gather_fns[GATHER_ALGORITHM_COUNT] = {
    [GATHER_DIRECT] = cgloo__gather_direct,
    [GATHER_BINOMIAL] = cgloo__gather_binomial,
};

/* The tree for tiny blocks in worlds of more than four ranks, where it spares the root p - 1
 * message handlings for lg p; direct otherwise. Measured over loopback TCP (2 cores, 4 to 16
 * ranks, one barrier per call) the two are within noise up to 8 KiB and direct is ahead above,
 * where the tree's extra copies and hops cost more than the root's receives. */
#define GATHER_SMALL_BYTES 4096

static gather_algorithm gather_select(const coll *c, size_t bytes)
{
    if (bytes <= GATHER_SMALL_BYTES && c->size > 4)
        return GATHER_BINOMIAL;
    return GATHER_DIRECT;
}

/* gather_run checks the buffers against the layout, puts the root's block in place and runs
 * the chosen algorithm. */
static int gather_run(coll *c, const void *sendbuf, void *recvbuf, const size_t *off, int root,
                      const cgloo_coll_opts *opts)
{
    size_t own = blocks_bytes(off, c->rank);
    if (own > 0 && !sendbuf)
        return cgloo__coll_error(c, CGLOO_EINVAL, "NULL sendbuf for %zu bytes", own);
    if (c->rank == root && off[c->size] > 0 && !recvbuf)
        return cgloo__coll_error(c, CGLOO_EINVAL, "NULL recvbuf at the root");
    int a = cgloo__coll_find(c, cgloo__gather_algorithms, GATHER_ALGORITHM_COUNT, opts,
                             gather_select(c, off[c->size]));
    if (a < 0)
        return a;
    uint8_t *mine = c->rank == root && own ? (uint8_t *)recvbuf + off[root] : NULL;
    if (mine && sendbuf != mine)
        memmove(mine, sendbuf, own);
    if (c->size == 1 || off[c->size] == 0)
        return CGLOO_OK;
    return gather_fns[a](c, sendbuf, recvbuf, off, root);
}

static int gather_call(cgloo_context *ctx, const char *name, const void *sendbuf, size_t sendcount,
                       void *recvbuf, const size_t *recvcounts, cgloo_dtype dtype, int root,
                       const cgloo_coll_opts *opts)
{
    coll c;
    size_t *off = NULL;
    int rc = cgloo__coll_begin(&c, ctx, name, dtype, opts);
    if (rc != CGLOO_OK)
        return rc;
    if (root < 0 || root >= c.size)
        return cgloo__coll_error(&c, CGLOO_EINVAL, "root %d is not a rank of %d", root, c.size);
    if (recvcounts && sendcount != recvcounts[c.rank])
        return cgloo__coll_error(&c, CGLOO_EINVAL, "sendcount %zu differs from recvcounts[%d] %zu",
                                 sendcount, c.rank, recvcounts[c.rank]);
    rc = cgloo__coll_blocks(&c, recvcounts, sendcount, &off);
    if (rc == CGLOO_OK)
        rc = gather_run(&c, sendbuf, recvbuf, off, root, opts);
    free(off);
    return rc;
}

int cgloo_gather(cgloo_context *ctx, const void *sendbuf, void *recvbuf, size_t count,
                 cgloo_dtype dtype, int root, const cgloo_coll_opts *opts)
{
    return gather_call(ctx, "gather", sendbuf, count, recvbuf, NULL, dtype, root, opts);
}

int cgloo_gatherv(cgloo_context *ctx, const void *sendbuf, size_t sendcount, void *recvbuf,
                  const size_t *recvcounts, cgloo_dtype dtype, int root,
                  const cgloo_coll_opts *opts)
{
    if (!recvcounts) {
        coll c;
        int rc = cgloo__coll_begin(&c, ctx, "gatherv", dtype, opts);
        return rc != CGLOO_OK ? rc : cgloo__coll_error(&c, CGLOO_EINVAL, "recvcounts is NULL");
    }
    return gather_call(ctx, "gatherv", sendbuf, sendcount, recvbuf, recvcounts, dtype, root, opts);
}
