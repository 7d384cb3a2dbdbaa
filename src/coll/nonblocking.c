/*
 * The non-blocking collectives: each cgloo_i<name> copies its arguments into a job (count
 * arrays, buffer pointer lists, options and the algorithm name included, so the caller may
 * free them at once) and queues it on the context's progress thread (core/progress_thread.c),
 * which runs it by calling the blocking collective. The semantics are in cgloo.h.
 */
#include "core/context.h"

/* Every argument any collective takes; each call fills what it uses. */
typedef struct coll_args {
    const void *sendbuf;
    void *recvbuf;
    size_t count;          /* the plain forms' count; the v forms' own send or receive count */
    size_t *counts;        /* copied: a v form's counts (size entries) */
    size_t *counts2;       /* copied: alltoallv's recvcounts */
    const void **sendbufs; /* copied: allreduce_multi's lists */
    void **recvbufs;
    size_t nsend, nrecv;
    cgloo_dtype dtype;
    cgloo_op op;
    int root;
    bool has_opts;
    cgloo_coll_opts opts; /* its algorithm points into the job's own copy */
} coll_args;

typedef struct coll_job {
    cgloo_job job; /* first: progress_thread.c frees the block through it */
    coll_args a;
    /* then the copied arrays and the algorithm name */
} coll_job;

static const cgloo_coll_opts *opts_of(const coll_args *a)
{
    return a->has_opts ? &a->opts : NULL;
}

static coll_args *args_of(cgloo_job *job)
{
    return &CGLOO_CONTAINER_OF(job, coll_job, job)->a;
}

/* ---- building a job ------------------------------------------------------------------------- */

/* What a call gives beyond coll_args: the arrays to copy, with their lengths. */
typedef struct job_arrays {
    const size_t *counts, *counts2;
    size_t ncounts; /* entries of each count array (the world size) */
    const void *const *sendbufs;
    void *const *recvbufs;
} job_arrays;

/* copy_out places n bytes of src at *at within the job's block and advances *at. */
static void *copy_out(uint8_t **at, const void *src, size_t n)
{
    if (!src || n == 0)
        return NULL;
    void *dst = *at;
    memcpy(dst, src, n);
    *at += (n + 15) & ~(size_t)15;
    return dst;
}

static size_t padded(size_t n)
{
    return (n + 15) & ~(size_t)15;
}

/* job_new allocates one block for the job, its arguments and copies of its arrays and
 * algorithm name. NULL when out of memory. */
static coll_job *job_new(const coll_args *a, const job_arrays *arr,
                         int (*run)(cgloo_context *, cgloo_job *))
{
    size_t counts_bytes = arr->ncounts * sizeof(size_t);
    const char *alg = a->has_opts ? a->opts.algorithm : NULL;
    size_t extra = (arr->counts ? padded(counts_bytes) : 0) +
                   (arr->counts2 ? padded(counts_bytes) : 0) + padded(a->nsend * sizeof(void *)) +
                   padded(a->nrecv * sizeof(void *)) + (alg ? strlen(alg) + 1 : 0);
    coll_job *cj = calloc(1, sizeof *cj + extra);
    if (!cj)
        return NULL;
    cj->job.run = run;
    cj->job.tag = a->has_opts ? a->opts.tag : 0;
    cj->a = *a;
    uint8_t *at = (uint8_t *)(cj + 1);
    cj->a.counts = copy_out(&at, arr->counts, counts_bytes);
    cj->a.counts2 = copy_out(&at, arr->counts2, counts_bytes);
    cj->a.sendbufs = copy_out(&at, arr->sendbufs, a->nsend * sizeof(void *));
    cj->a.recvbufs = copy_out(&at, arr->recvbufs, a->nrecv * sizeof(void *));
    if (alg)
        cj->a.opts.algorithm = copy_out(&at, alg, strlen(alg) + 1);
    return cj;
}

/* start checks what can be checked at once, builds the job and queues it. */
static int start(cgloo_context *ctx, coll_args *a, const cgloo_coll_opts *opts,
                 const job_arrays *arr, int (*run)(cgloo_context *, cgloo_job *),
                 cgloo_request **out)
{
    if (!ctx || !out || cgloo_dtype_size(a->dtype) == 0)
        return CGLOO_EINVAL;
    if (opts) {
        a->has_opts = true;
        a->opts = *opts;
    }
    job_arrays sized = *arr;
    sized.ncounts = (size_t)ctx->size;
    coll_job *cj = job_new(a, &sized, run);
    if (!cj)
        return CGLOO_ENOMEM;
    return cgloo__pt_submit(ctx, &cj->job, out);
}

static const job_arrays NO_ARRAYS;

/* ---- the runs: the blocking calls, on the progress thread ------------------------------------ */

static int run_allreduce(cgloo_context *ctx, cgloo_job *job)
{
    coll_args *a = args_of(job);
    return cgloo_allreduce(ctx, a->sendbuf, a->recvbuf, a->count, a->dtype, a->op, opts_of(a));
}

static int run_allreduce_multi(cgloo_context *ctx, cgloo_job *job)
{
    coll_args *a = args_of(job);
    return cgloo_allreduce_multi(ctx, a->sendbufs, a->nsend, a->recvbufs, a->nrecv, a->count,
                                 a->dtype, a->op, opts_of(a));
}

static int run_reduce_scatter(cgloo_context *ctx, cgloo_job *job)
{
    coll_args *a = args_of(job);
    return cgloo_reduce_scatter(ctx, a->sendbuf, a->recvbuf, a->count, a->dtype, a->op, opts_of(a));
}

static int run_reduce_scatterv(cgloo_context *ctx, cgloo_job *job)
{
    coll_args *a = args_of(job);
    return cgloo_reduce_scatterv(ctx, a->sendbuf, a->recvbuf, a->counts, a->dtype, a->op,
                                 opts_of(a));
}

static int run_allgather(cgloo_context *ctx, cgloo_job *job)
{
    coll_args *a = args_of(job);
    return cgloo_allgather(ctx, a->sendbuf, a->recvbuf, a->count, a->dtype, opts_of(a));
}

static int run_allgatherv(cgloo_context *ctx, cgloo_job *job)
{
    coll_args *a = args_of(job);
    return cgloo_allgatherv(ctx, a->sendbuf, a->count, a->recvbuf, a->counts, a->dtype, opts_of(a));
}

static int run_broadcast(cgloo_context *ctx, cgloo_job *job)
{
    coll_args *a = args_of(job);
    return cgloo_broadcast(ctx, a->recvbuf, a->count, a->dtype, a->root, opts_of(a));
}

static int run_reduce(cgloo_context *ctx, cgloo_job *job)
{
    coll_args *a = args_of(job);
    return cgloo_reduce(ctx, a->sendbuf, a->recvbuf, a->count, a->dtype, a->op, a->root,
                        opts_of(a));
}

static int run_gather(cgloo_context *ctx, cgloo_job *job)
{
    coll_args *a = args_of(job);
    return cgloo_gather(ctx, a->sendbuf, a->recvbuf, a->count, a->dtype, a->root, opts_of(a));
}

static int run_gatherv(cgloo_context *ctx, cgloo_job *job)
{
    coll_args *a = args_of(job);
    return cgloo_gatherv(ctx, a->sendbuf, a->count, a->recvbuf, a->counts, a->dtype, a->root,
                         opts_of(a));
}

static int run_scatter(cgloo_context *ctx, cgloo_job *job)
{
    coll_args *a = args_of(job);
    return cgloo_scatter(ctx, a->sendbuf, a->recvbuf, a->count, a->dtype, a->root, opts_of(a));
}

static int run_scatterv(cgloo_context *ctx, cgloo_job *job)
{
    coll_args *a = args_of(job);
    return cgloo_scatterv(ctx, a->sendbuf, a->counts, a->recvbuf, a->count, a->dtype, a->root,
                          opts_of(a));
}

static int run_alltoall(cgloo_context *ctx, cgloo_job *job)
{
    coll_args *a = args_of(job);
    return cgloo_alltoall(ctx, a->sendbuf, a->recvbuf, a->count, a->dtype, opts_of(a));
}

static int run_alltoallv(cgloo_context *ctx, cgloo_job *job)
{
    coll_args *a = args_of(job);
    return cgloo_alltoallv(ctx, a->sendbuf, a->counts, a->recvbuf, a->counts2, a->dtype,
                           opts_of(a));
}

static int run_barrier(cgloo_context *ctx, cgloo_job *job)
{
    return cgloo_barrier(ctx, opts_of(args_of(job)));
}

/* ---- the public calls ------------------------------------------------------------------------ */

int cgloo_iallreduce(cgloo_context *ctx, const void *sendbuf, void *recvbuf, size_t count,
                     cgloo_dtype dtype, cgloo_op op, const cgloo_coll_opts *opts,
                     cgloo_request **req)
{
    coll_args a = {
        .sendbuf = sendbuf, .recvbuf = recvbuf, .count = count, .dtype = dtype, .op = op};
    return start(ctx, &a, opts, &NO_ARRAYS, run_allreduce, req);
}

int cgloo_iallreduce_multi(cgloo_context *ctx, const void *const *sendbufs, size_t nsend,
                           void *const *recvbufs, size_t nrecv, size_t count, cgloo_dtype dtype,
                           cgloo_op op, const cgloo_coll_opts *opts, cgloo_request **req)
{
    if ((nsend && !sendbufs) || (nrecv && !recvbufs) || nsend > SIZE_MAX / sizeof(void *) ||
        nrecv > SIZE_MAX / sizeof(void *))
        return CGLOO_EINVAL;
    coll_args a = {.count = count, .dtype = dtype, .op = op, .nsend = nsend, .nrecv = nrecv};
    job_arrays arr = {.sendbufs = sendbufs, .recvbufs = recvbufs};
    return start(ctx, &a, opts, &arr, run_allreduce_multi, req);
}

int cgloo_ireduce_scatter(cgloo_context *ctx, const void *sendbuf, void *recvbuf, size_t count,
                          cgloo_dtype dtype, cgloo_op op, const cgloo_coll_opts *opts,
                          cgloo_request **req)
{
    coll_args a = {
        .sendbuf = sendbuf, .recvbuf = recvbuf, .count = count, .dtype = dtype, .op = op};
    return start(ctx, &a, opts, &NO_ARRAYS, run_reduce_scatter, req);
}

int cgloo_ireduce_scatterv(cgloo_context *ctx, const void *sendbuf, void *recvbuf,
                           const size_t *recvcounts, cgloo_dtype dtype, cgloo_op op,
                           const cgloo_coll_opts *opts, cgloo_request **req)
{
    if (!recvcounts)
        return CGLOO_EINVAL;
    coll_args a = {.sendbuf = sendbuf, .recvbuf = recvbuf, .dtype = dtype, .op = op};
    job_arrays arr = {.counts = recvcounts};
    return start(ctx, &a, opts, &arr, run_reduce_scatterv, req);
}

int cgloo_iallgather(cgloo_context *ctx, const void *sendbuf, void *recvbuf, size_t count,
                     cgloo_dtype dtype, const cgloo_coll_opts *opts, cgloo_request **req)
{
    coll_args a = {.sendbuf = sendbuf, .recvbuf = recvbuf, .count = count, .dtype = dtype};
    return start(ctx, &a, opts, &NO_ARRAYS, run_allgather, req);
}

int cgloo_iallgatherv(cgloo_context *ctx, const void *sendbuf, size_t sendcount, void *recvbuf,
                      const size_t *recvcounts, cgloo_dtype dtype, const cgloo_coll_opts *opts,
                      cgloo_request **req)
{
    if (!recvcounts)
        return CGLOO_EINVAL;
    coll_args a = {.sendbuf = sendbuf, .recvbuf = recvbuf, .count = sendcount, .dtype = dtype};
    job_arrays arr = {.counts = recvcounts};
    return start(ctx, &a, opts, &arr, run_allgatherv, req);
}

int cgloo_ibroadcast(cgloo_context *ctx, void *buf, size_t count, cgloo_dtype dtype, int root,
                     const cgloo_coll_opts *opts, cgloo_request **req)
{
    coll_args a = {.recvbuf = buf, .count = count, .dtype = dtype, .root = root};
    return start(ctx, &a, opts, &NO_ARRAYS, run_broadcast, req);
}

int cgloo_ireduce(cgloo_context *ctx, const void *sendbuf, void *recvbuf, size_t count,
                  cgloo_dtype dtype, cgloo_op op, int root, const cgloo_coll_opts *opts,
                  cgloo_request **req)
{
    coll_args a = {.sendbuf = sendbuf,
                   .recvbuf = recvbuf,
                   .count = count,
                   .dtype = dtype,
                   .op = op,
                   .root = root};
    return start(ctx, &a, opts, &NO_ARRAYS, run_reduce, req);
}

int cgloo_igather(cgloo_context *ctx, const void *sendbuf, void *recvbuf, size_t count,
                  cgloo_dtype dtype, int root, const cgloo_coll_opts *opts, cgloo_request **req)
{
    coll_args a = {
        .sendbuf = sendbuf, .recvbuf = recvbuf, .count = count, .dtype = dtype, .root = root};
    return start(ctx, &a, opts, &NO_ARRAYS, run_gather, req);
}

int cgloo_igatherv(cgloo_context *ctx, const void *sendbuf, size_t sendcount, void *recvbuf,
                   const size_t *recvcounts, cgloo_dtype dtype, int root,
                   const cgloo_coll_opts *opts, cgloo_request **req)
{
    if (!recvcounts)
        return CGLOO_EINVAL;
    coll_args a = {
        .sendbuf = sendbuf, .recvbuf = recvbuf, .count = sendcount, .dtype = dtype, .root = root};
    job_arrays arr = {.counts = recvcounts};
    return start(ctx, &a, opts, &arr, run_gatherv, req);
}

int cgloo_iscatter(cgloo_context *ctx, const void *sendbuf, void *recvbuf, size_t count,
                   cgloo_dtype dtype, int root, const cgloo_coll_opts *opts, cgloo_request **req)
{
    coll_args a = {
        .sendbuf = sendbuf, .recvbuf = recvbuf, .count = count, .dtype = dtype, .root = root};
    return start(ctx, &a, opts, &NO_ARRAYS, run_scatter, req);
}

int cgloo_iscatterv(cgloo_context *ctx, const void *sendbuf, const size_t *sendcounts,
                    void *recvbuf, size_t recvcount, cgloo_dtype dtype, int root,
                    const cgloo_coll_opts *opts, cgloo_request **req)
{
    if (!sendcounts)
        return CGLOO_EINVAL;
    coll_args a = {
        .sendbuf = sendbuf, .recvbuf = recvbuf, .count = recvcount, .dtype = dtype, .root = root};
    job_arrays arr = {.counts = sendcounts};
    return start(ctx, &a, opts, &arr, run_scatterv, req);
}

int cgloo_ialltoall(cgloo_context *ctx, const void *sendbuf, void *recvbuf, size_t count,
                    cgloo_dtype dtype, const cgloo_coll_opts *opts, cgloo_request **req)
{
    coll_args a = {.sendbuf = sendbuf, .recvbuf = recvbuf, .count = count, .dtype = dtype};
    return start(ctx, &a, opts, &NO_ARRAYS, run_alltoall, req);
}

int cgloo_ialltoallv(cgloo_context *ctx, const void *sendbuf, const size_t *sendcounts,
                     void *recvbuf, const size_t *recvcounts, cgloo_dtype dtype,
                     const cgloo_coll_opts *opts, cgloo_request **req)
{
    if (!sendcounts || !recvcounts)
        return CGLOO_EINVAL;
    coll_args a = {.sendbuf = sendbuf, .recvbuf = recvbuf, .dtype = dtype};
    job_arrays arr = {.counts = sendcounts, .counts2 = recvcounts};
    return start(ctx, &a, opts, &arr, run_alltoallv, req);
}

int cgloo_ibarrier(cgloo_context *ctx, const cgloo_coll_opts *opts, cgloo_request **req)
{
    coll_args a = {.dtype = CGLOO_UINT8};
    return start(ctx, &a, opts, &NO_ARRAYS, run_barrier, req);
}
