/*
 * Non-blocking collectives (ranks as threads over loopback TCP): every collective started
 * before any is waited for, results checked; many in flight from several threads per rank under
 * different tags, issued in different orders on different ranks; program order kept against a
 * blocking collective; overlap of a computation with a large transfer (collective and
 * point-to-point); cancel of a queued and of a running collective; timeouts; abort; destroy
 * with collectives in flight; bad arguments. A killed peer is in test_failure.c.
 */
#include "mesh.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#define TIMEOUT_MS 20000

static float *floats(size_t n, float v)
{
    float *f = malloc(n * sizeof *f);
    CHECK(f);
    for (size_t i = 0; i < n; i++)
        f[i] = v;
    return f;
}

static bool all_equal(const float *f, size_t n, float v)
{
    for (size_t i = 0; i < n; i++)
        if (f[i] != v)
            return false;
    return true;
}

static void wait_ok(cgloo_context *ctx, cgloo_request *r)
{
    int rc = cgloo_wait(r, 0, NULL);
    if (rc != CGLOO_OK) {
        char detail[512];
        cgloo_context_last_error(ctx, detail, sizeof detail);
        harness_fail(__FILE__, __LINE__, cgloo_status_name(rc), detail);
    }
}

/* ---- every collective in flight at once ------------------------------------------------------ */

enum { N = 1000 }; /* elements per block */

typedef struct all_bufs {
    float *ar, *rs_in, rs_out[N], *ag_out, bc[N], red[N], *ga_out, sc_out[N], *a2a_in, *a2a_out;
    float *agv_out, *a2av_in, *a2av_out, multi_a[N], multi_b[N];
    size_t counts[16];
} all_bufs;

static void all_bufs_init(all_bufs *b, int rank, int size)
{
    size_t all = (size_t)size * N;
    b->ar = floats(N, (float)rank);
    b->rs_in = floats(all, 1);
    b->ag_out = floats(all, -1);
    b->ga_out = floats(all, -1);
    b->a2a_in = floats(all, (float)rank);
    b->a2a_out = floats(all, -1);
    b->agv_out = floats(all, -1);
    b->a2av_in = floats(all, (float)rank);
    b->a2av_out = floats(all, -1);
    for (int i = 0; i < N; i++) {
        b->bc[i] = rank == 1 % size ? 7.0f : 0.0f;
        b->red[i] = -1;
        b->sc_out[i] = -1;
        b->multi_a[i] = 1;
        b->multi_b[i] = 2;
    }
    for (int r = 0; r < size; r++)
        b->counts[r] = N;
}

static void all_bufs_check(all_bufs *b, int rank, int size)
{
    size_t all = (size_t)size * N;
    float rank_sum = (float)(size * (size - 1) / 2);
    CHECK(all_equal(b->ar, N, rank_sum));
    CHECK(all_equal(b->rs_out, N, (float)size));
    CHECK(all_equal(b->rs_in, N, (float)size)); /* reduce_scatterv in place: at the front */
    CHECK(all_equal(b->bc, N, 7.0f));
    CHECK(all_equal(b->multi_a, N, 3.0f * (float)size));
    CHECK(all_equal(b->multi_b, N, 3.0f * (float)size));
    if (rank == 0)
        CHECK(all_equal(b->red, N, 2.0f * (float)size));
    CHECK(all_equal(b->sc_out, N, 2.0f * (float)rank));
    for (int r = 0; r < size; r++) {
        CHECK(all_equal(b->ag_out + (size_t)r * N, N, (float)r));
        CHECK(all_equal(b->agv_out + (size_t)r * N, N, (float)r));
        CHECK(all_equal(b->a2a_out + (size_t)r * N, N, (float)r));
        CHECK(all_equal(b->a2av_out + (size_t)r * N, N, (float)r));
        if (rank == 0)
            CHECK(all_equal(b->ga_out + (size_t)r * N, N, (float)r));
    }
    (void)all;
    float *bufs[] = {b->ar,      b->rs_in,   b->ag_out,  b->ga_out,  b->a2a_in,
                     b->a2a_out, b->agv_out, b->a2av_in, b->a2av_out};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
}

/* start_all starts one of every non-blocking collective; reqs gets 15 requests. */
static void start_all(cgloo_context *ctx, all_bufs *b, int rank, int size, cgloo_request **reqs)
{
    float own[N], scatter_src[16 * N];
    for (int i = 0; i < N; i++)
        own[i] = (float)rank;
    for (int i = 0; i < size * N; i++)
        scatter_src[i] = 2.0f * (float)(i / N);
    float *multi_in[] = {b->multi_a, b->multi_b};
    int k = 0;
    CHECK_OK(cgloo_iallreduce(ctx, b->ar, b->ar, N, CGLOO_FLOAT32, CGLOO_SUM, NULL, &reqs[k++]));
    CHECK_OK(cgloo_ireduce_scatter(ctx, b->rs_in, b->rs_out, N, CGLOO_FLOAT32, CGLOO_SUM, NULL,
                                   &reqs[k++]));
    CHECK_OK(cgloo_iallgather(ctx, own, b->ag_out, N, CGLOO_FLOAT32, NULL, &reqs[k++]));
    CHECK_OK(cgloo_ibroadcast(ctx, b->bc, N, CGLOO_FLOAT32, 1 % size, NULL, &reqs[k++]));
    CHECK_OK(cgloo_ireduce(ctx, b->multi_b, b->red, N, CGLOO_FLOAT32, CGLOO_SUM, 0, NULL,
                           &reqs[k++])); /* multi_b is 2 until allreduce_multi below runs */
    CHECK_OK(cgloo_igather(ctx, own, b->ga_out, N, CGLOO_FLOAT32, 0, NULL, &reqs[k++]));
    CHECK_OK(cgloo_iscatter(ctx, scatter_src, b->sc_out, N, CGLOO_FLOAT32, 0, NULL, &reqs[k++]));
    CHECK_OK(cgloo_ialltoall(ctx, b->a2a_in, b->a2a_out, N, CGLOO_FLOAT32, NULL, &reqs[k++]));
    CHECK_OK(
        cgloo_iallgatherv(ctx, own, N, b->agv_out, b->counts, CGLOO_FLOAT32, NULL, &reqs[k++]));
    CHECK_OK(cgloo_ialltoallv(ctx, b->a2av_in, b->counts, b->a2av_out, b->counts, CGLOO_FLOAT32,
                              NULL, &reqs[k++]));
    CHECK_OK(cgloo_ireduce_scatterv(ctx, b->rs_in, b->rs_in, b->counts, CGLOO_FLOAT32, CGLOO_SUM,
                                    NULL, &reqs[k++]));
    CHECK_OK(cgloo_iallreduce_multi(ctx, (const void *const *)multi_in, 2, (void *const *)multi_in,
                                    2, N, CGLOO_FLOAT32, CGLOO_SUM, NULL, &reqs[k++]));
    CHECK_OK(cgloo_igatherv(ctx, own, N, b->ga_out, b->counts, CGLOO_FLOAT32, 0, NULL, &reqs[k++]));
    CHECK_OK(cgloo_iscatterv(ctx, scatter_src, b->counts, b->sc_out, N, CGLOO_FLOAT32, 0, NULL,
                             &reqs[k++]));
    CHECK_OK(cgloo_ibarrier(ctx, NULL, &reqs[k++]));
    /* The counts and the caller's stack arrays of pointers were copied; scribble on them. */
    memset(b->counts, 0xff, sizeof b->counts);
    multi_in[0] = multi_in[1] = NULL;
    /* own and scatter_src are buffers, not copied: wait before they leave scope. */
    for (int i = k - 1; i >= 0; i--) /* in reverse: completion order is the issue order anyway */
        wait_ok(ctx, reqs[i]);
}

static void rank_all(int rank, int size, void *arg)
{
    rank_env e = mesh_connect(arg, rank, size, TIMEOUT_MS);
    all_bufs b;
    cgloo_request *reqs[15];
    all_bufs_init(&b, rank, size);
    start_all(e.ctx, &b, rank, size, reqs);
    all_bufs_check(&b, rank, size);
    mesh_close(e);
}

static void test_all_collectives(void)
{
    for (int size = 1; size <= 4; size += 3) {
        cgloo_store *s;
        CHECK_OK(cgloo_store_hash_create(&s));
        run_ranks(size, rank_all, s);
        cgloo_store_destroy(s);
    }
}

/* ---- many in flight from several threads ------------------------------------------------------
 */

enum { THREADS = 3, ROUNDS = 8, BATCH = 6 };

typedef struct thread_arg {
    cgloo_context *ctx;
    int rank, size, t;
} thread_arg;

/* batch_sizes: element counts from 1 to a quarter of a million (eager and large messages). */
static size_t batch_count(int round, int i)
{
    static const size_t counts[] = {1, 7, 1000, 16384, 70000, 262144};
    return counts[(round + i) % 6];
}

/* Each thread runs ROUNDS batches of BATCH allreduces under its own tag, waiting for a batch
 * with cgloo_test polling for some requests and cgloo_wait for the rest. Threads start in a
 * different order on every rank, so their collectives interleave differently. */
static void *thread_many(void *p)
{
    thread_arg *a = p;
    cgloo_coll_opts opts = {.tag = (uint64_t)a->t + 1};
    test_sleep_ms(((a->rank + a->t) % THREADS) * 3);
    for (int round = 0; round < ROUNDS; round++) {
        float *bufs[BATCH];
        cgloo_request *reqs[BATCH];
        for (int i = 0; i < BATCH; i++) {
            size_t n = batch_count(round, i);
            bufs[i] = floats(n, (float)(a->rank + a->t + i));
            CHECK_OK(cgloo_iallreduce(a->ctx, bufs[i], bufs[i], n, CGLOO_FLOAT32, CGLOO_SUM, &opts,
                                      &reqs[i]));
        }
        for (int i = 0; i < BATCH; i++) {
            int completed = 0;
            while (i % 2 && !completed)
                CHECK_OK(cgloo_test(reqs[i], &completed, NULL));
            if (!completed)
                wait_ok(a->ctx, reqs[i]);
            float want = (float)(a->size * (a->size - 1) / 2 + a->size * (a->t + i));
            CHECK(all_equal(bufs[i], batch_count(round, i), want));
            free(bufs[i]);
        }
    }
    return NULL;
}

static void rank_many(int rank, int size, void *arg)
{
    rank_env e = mesh_connect(arg, rank, size, TIMEOUT_MS);
    pthread_t th[THREADS];
    thread_arg ta[THREADS];
    for (int t = 0; t < THREADS; t++) {
        ta[t] = (thread_arg){e.ctx, rank, size, t};
        CHECK(pthread_create(&th[t], NULL, thread_many, &ta[t]) == 0);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    mesh_close(e);
}

static void test_many_threads(void)
{
    cgloo_store *s;
    CHECK_OK(cgloo_store_hash_create(&s));
    run_ranks(3, rank_many, s);
    cgloo_store_destroy(s);
}

/* ---- program order against blocking collectives -----------------------------------------------
 */

/* A non-blocking allreduce, then a blocking one on the same buffer size and tag: the blocking
 * call waits for the first to finish, so each gets its own sum on every rank. */
static void rank_order(int rank, int size, void *arg)
{
    rank_env e = mesh_connect(arg, rank, size, TIMEOUT_MS);
    size_t n = 300000;
    for (int round = 0; round < 5; round++) {
        float *x = floats(n, 1), *y = floats(n, 10);
        cgloo_request *r;
        CHECK_OK(cgloo_iallreduce(e.ctx, x, x, n, CGLOO_FLOAT32, CGLOO_SUM, NULL, &r));
        CHECK_OK(cgloo_allreduce(e.ctx, y, y, n, CGLOO_FLOAT32, CGLOO_SUM, NULL));
        CHECK(all_equal(y, n, 10.0f * (float)size));
        wait_ok(e.ctx, r);
        CHECK(all_equal(x, n, (float)size));
        free(x);
        free(y);
    }
    mesh_close(e);
}

static void test_order_with_blocking(void)
{
    cgloo_store *s;
    CHECK_OK(cgloo_store_hash_create(&s));
    run_ranks(3, rank_order, s);
    cgloo_store_destroy(s);
}

/* ---- overlap ------------------------------------------------------------------------------------
 */

/* compute_ms spins on arithmetic for ms milliseconds (a computation, not a sleep). */
static double compute_ms(int ms)
{
    long long until = test_now_ms() + ms;
    volatile double acc = 0;
    while (test_now_ms() < until)
        for (int i = 0; i < 10000; i++)
            acc += i * 0.5;
    return acc;
}

typedef struct overlap_result {
    long long alone_ms, wait_ms;
} overlap_result;

typedef struct overlap_arg {
    overlap_result res[2]; /* collective, point-to-point */
    cgloo_store *store;
} overlap_arg;

/* A 32 MiB allreduce alone, then started before a computation four times as long: by the end
 * of the computation little is left to wait for (under a quarter of the time alone). Then the same
 * for a point-to-point transfer on a context whose progress thread the attribute started. */
static void rank_overlap(int rank, int size, void *arg)
{
    overlap_result *res = ((overlap_arg *)arg)->res;
    rank_env e = mesh_connect(((overlap_arg *)arg)->store, rank, size, TIMEOUT_MS);
    size_t n = 8u << 20;
    float *x = floats(n, 1);
    CHECK_OK(cgloo_barrier(e.ctx, NULL));
    long long t0 = test_now_ms();
    CHECK_OK(cgloo_allreduce(e.ctx, x, x, n, CGLOO_FLOAT32, CGLOO_SUM, NULL));
    long long alone = test_now_ms() - t0;
    CHECK_OK(cgloo_barrier(e.ctx, NULL));
    cgloo_request *r;
    CHECK_OK(cgloo_iallreduce(e.ctx, x, x, n, CGLOO_FLOAT32, CGLOO_SUM, NULL, &r));
    compute_ms((int)(4 * alone + 50));
    t0 = test_now_ms();
    wait_ok(e.ctx, r);
    long long waited = test_now_ms() - t0;
    CHECK(all_equal(x, n, (float)(size * size)));
    if (rank == 0)
        res[0] = (overlap_result){alone, waited};
    mesh_close(e);
    /* point to point, on a context whose progress thread the attribute started at connect:
     * each rank sends 32 MiB to the other while both compute */
    cgloo_context_attr attr = {.timeout_ms = TIMEOUT_MS, .name = "p2p", .progress_thread = 1};
    CHECK_OK(cgloo_device_tcp_create(NULL, &e.dev));
    CHECK_OK(cgloo_context_create(rank, size, &attr, &e.ctx));
    CHECK_OK(cgloo_context_connect(e.ctx, ((overlap_arg *)arg)->store, e.dev));
    CHECK_OK(cgloo_barrier(e.ctx, NULL));
    CHECK_OK(cgloo_irecv(e.ctx, x, n * sizeof *x, 1 - rank, 9, &r));
    cgloo_request *sr;
    float *y = floats(n, (float)rank);
    CHECK_OK(cgloo_isend(e.ctx, y, n * sizeof *y, 1 - rank, 9, &sr));
    compute_ms((int)(4 * alone + 50));
    t0 = test_now_ms();
    wait_ok(e.ctx, r);
    wait_ok(e.ctx, sr);
    waited = test_now_ms() - t0;
    CHECK(all_equal(x, n, (float)(1 - rank)));
    if (rank == 0)
        res[1] = (overlap_result){alone, waited};
    free(x);
    free(y);
    mesh_close(e);
}

static void test_overlap(void)
{
    overlap_arg arg;
    CHECK_OK(cgloo_store_hash_create(&arg.store));
    run_ranks(2, rank_overlap, &arg);
    cgloo_store_destroy(arg.store);
    for (int i = 0; i < 2; i++) {
        char what[128];
        snprintf(what, sizeof what, "%s: alone %lld ms, waited %lld ms after the computation",
                 i ? "isend/irecv" : "iallreduce", arg.res[i].alone_ms, arg.res[i].wait_ms);
        fprintf(stderr, "  overlap %s\n", what);
        if (arg.res[i].wait_ms * 4 > arg.res[i].alone_ms + 40)
            harness_fail(__FILE__, __LINE__, "the transfer did not move during the computation",
                         what);
    }
}

/* ---- cancel, timeouts, abort, destroy -------------------------------------------------------- */

/* Rank 0 queues two allreduces before rank 1 joins: the second is cancelled while queued (it
 * never reaches the wire), the first completes once rank 1 runs it. Then rank 0 starts a
 * barrier rank 1 never enters, and cancels it while it runs: cancel returns at once. */
static void rank_cancel(int rank, int size, void *arg)
{
    rank_env e = mesh_connect(arg, rank, size, TIMEOUT_MS);
    float a[4] = {1, 1, 1, 1}, b[4] = {5, 5, 5, 5};
    char go = 1; /* the signals: never a buffer an operation in flight may write */
    if (rank == 0) {
        cgloo_request *ra, *rb, *rc;
        CHECK_OK(cgloo_iallreduce(e.ctx, a, a, 4, CGLOO_FLOAT32, CGLOO_SUM, NULL, &ra));
        CHECK_OK(cgloo_iallreduce(e.ctx, b, b, 4, CGLOO_FLOAT32, CGLOO_SUM, NULL, &rb));
        cgloo_cancel(rb);
        CHECK_OK(cgloo_send(e.ctx, &go, 1, 1, 1, 0)); /* "go" */
        wait_ok(e.ctx, ra);
        CHECK(all_equal(a, 4, 2.0f) && all_equal(b, 4, 5.0f));
        cgloo_coll_opts tagged = {.tag = 3};
        CHECK_OK(cgloo_ibarrier(e.ctx, &tagged, &rc));
        test_sleep_ms(100);
        long long t0 = test_now_ms();
        cgloo_cancel(rc);
        CHECK(test_now_ms() - t0 < 1000);
        CHECK_OK(cgloo_send(e.ctx, &go, 1, 1, 2, 0)); /* "cancelled" */
    } else {
        CHECK_OK(cgloo_recv(e.ctx, &go, 1, 0, 1, 0, NULL));
        CHECK_OK(cgloo_allreduce(e.ctx, a, a, 4, CGLOO_FLOAT32, CGLOO_SUM, NULL));
        CHECK(all_equal(a, 4, 2.0f));
        CHECK_OK(cgloo_recv(e.ctx, &go, 1, 0, 2, 0, NULL));
    }
    mesh_close(e);
}

static void test_cancel(void)
{
    cgloo_store *s;
    CHECK_OK(cgloo_store_hash_create(&s));
    run_ranks(2, rank_cancel, s);
    cgloo_store_destroy(s);
}

/* Rank 1 joins late: cgloo_test says pending meanwhile. A collective whose own timeout passes
 * fails with the blocking call's detail (naming the collective and the rank it waited for); a
 * wait whose own timeout passes first stops the collective and ends the request. */
static void rank_timeouts(int rank, int size, void *arg)
{
    rank_env e = mesh_connect(arg, rank, size, TIMEOUT_MS);
    float a[4] = {1, 1, 1, 1};
    char go = 1; /* the signals: never a buffer an operation in flight may write */
    if (rank == 0) {
        cgloo_request *r;
        CHECK_OK(cgloo_iallreduce(e.ctx, a, a, 4, CGLOO_FLOAT32, CGLOO_SUM, NULL, &r));
        int completed = 1;
        test_sleep_ms(50);
        CHECK_OK(cgloo_test(r, &completed, NULL));
        CHECK(!completed);
        CHECK_OK(cgloo_send(e.ctx, &go, 1, 1, 1, 0)); /* "join now" */
        wait_ok(e.ctx, r);
        CHECK(all_equal(a, 4, 2.0f));
        cgloo_coll_opts quick = {.timeout_ms = 300, .tag = 5};
        CHECK_OK(cgloo_ibarrier(e.ctx, &quick, &r));
        long long t0 = test_now_ms();
        CHECK_STATUS(cgloo_wait(r, 0, NULL), CGLOO_ETIMEDOUT);
        CHECK(test_now_ms() - t0 < 2000);
        char detail[512];
        CHECK(cgloo_context_last_error(e.ctx, detail, sizeof detail) == CGLOO_ETIMEDOUT);
        CHECK(strstr(detail, "barrier") && strstr(detail, "rank 1"));
        cgloo_coll_opts slow = {.tag = 6};
        CHECK_OK(cgloo_ibarrier(e.ctx, &slow, &r));
        t0 = test_now_ms();
        CHECK_STATUS(cgloo_wait(r, 100, NULL), CGLOO_ETIMEDOUT);
        CHECK(test_now_ms() - t0 < 1000);
        CHECK(cgloo_context_last_error(e.ctx, detail, sizeof detail) == CGLOO_ETIMEDOUT);
        CHECK(strstr(detail, "stopped") != NULL);
        CHECK_OK(cgloo_send(e.ctx, &go, 1, 1, 2, 0)); /* "done" */
    } else {
        CHECK_OK(cgloo_recv(e.ctx, &go, 1, 0, 1, 0, NULL));
        CHECK_OK(cgloo_allreduce(e.ctx, a, a, 4, CGLOO_FLOAT32, CGLOO_SUM, NULL));
        CHECK_OK(cgloo_recv(e.ctx, &go, 1, 0, 2, 0, NULL));
    }
    mesh_close(e);
}

static void test_timeouts(void)
{
    cgloo_store *s;
    CHECK_OK(cgloo_store_hash_create(&s));
    run_ranks(2, rank_timeouts, s);
    cgloo_store_destroy(s);
}

/* Rank 0 starts collectives rank 1 never joins, then aborts (the waits end with EABORTED) or
 * destroys the context with them in flight (it returns within the linger, nothing leaks). */
static void rank_abort_destroy(int rank, int size, void *arg)
{
    cgloo_store **stores = arg;
    rank_env e = mesh_connect(stores[0], rank, size, TIMEOUT_MS);
    size_t n = 1u << 20;
    float *x = floats(n, 1);
    if (rank == 0) {
        cgloo_request *r1, *r2;
        CHECK_OK(cgloo_iallreduce(e.ctx, x, x, n, CGLOO_FLOAT32, CGLOO_SUM, NULL, &r1));
        CHECK_OK(cgloo_ibarrier(e.ctx, NULL, &r2));
        test_sleep_ms(50);
        cgloo_context_abort(e.ctx);
        CHECK_STATUS(cgloo_wait(r1, 0, NULL), CGLOO_EABORTED);
        CHECK_STATUS(cgloo_wait(r2, 0, NULL), CGLOO_EABORTED);
        CHECK_STATUS(cgloo_ibarrier(e.ctx, NULL, &r1), CGLOO_EABORTED);
    } else {
        /* the peer's abort closes its connections: a receive from it fails */
        CHECK_STATUS(cgloo_recv(e.ctx, x, 4, 0, 1, 0, NULL), CGLOO_EPEER);
    }
    mesh_close(e);
    /* a fresh pair of contexts: destroy with collectives in flight */
    e = mesh_connect(stores[1], rank, size, TIMEOUT_MS);
    if (rank == 0) {
        cgloo_request *r;
        CHECK_OK(cgloo_iallreduce(e.ctx, x, x, n, CGLOO_FLOAT32, CGLOO_SUM, NULL, &r));
        CHECK_OK(cgloo_ibroadcast(e.ctx, x, n, CGLOO_FLOAT32, 0, NULL, &r));
        test_sleep_ms(50);
        long long t0 = test_now_ms();
        mesh_close(e);
        CHECK(test_now_ms() - t0 < 3000);
    } else {
        CHECK_STATUS(cgloo_recv(e.ctx, x, 4, 0, 1, 0, NULL), CGLOO_EPEER);
        mesh_close(e);
    }
    free(x);
}

static void test_abort_and_destroy(void)
{
    cgloo_store *s[2];
    CHECK_OK(cgloo_store_hash_create(&s[0]));
    CHECK_OK(cgloo_store_hash_create(&s[1]));
    run_ranks(2, rank_abort_destroy, s);
    cgloo_store_destroy(s[0]);
    cgloo_store_destroy(s[1]);
}

/* ---- bad arguments ----------------------------------------------------------------------------
 */

static void test_bad_arguments(void)
{
    cgloo_context *ctx;
    cgloo_request *r = NULL;
    float a[4];
    CHECK_OK(cgloo_context_create(0, 2, NULL, &ctx));
    CHECK_STATUS(cgloo_iallreduce(NULL, a, a, 4, CGLOO_FLOAT32, CGLOO_SUM, NULL, &r), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_iallreduce(ctx, a, a, 4, CGLOO_FLOAT32, CGLOO_SUM, NULL, NULL),
                 CGLOO_EINVAL);
    CHECK_STATUS(cgloo_iallreduce(ctx, a, a, 4, (cgloo_dtype)99, CGLOO_SUM, NULL, &r),
                 CGLOO_EINVAL);
    CHECK_STATUS(cgloo_iallgatherv(ctx, a, 1, a, NULL, CGLOO_FLOAT32, NULL, &r), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_ialltoallv(ctx, a, NULL, a, NULL, CGLOO_FLOAT32, NULL, &r), CGLOO_EINVAL);
    CHECK_STATUS(
        cgloo_iallreduce_multi(ctx, NULL, 2, NULL, 0, 4, CGLOO_FLOAT32, CGLOO_SUM, NULL, &r),
        CGLOO_EINVAL);
    /* not connected */
    CHECK_STATUS(cgloo_ibarrier(ctx, NULL, &r), CGLOO_ESTATE);
    CHECK(r == NULL);
    cgloo_context_destroy(ctx);
    /* Argument errors only the collective sees come from the wait, with the blocking detail. */
    CHECK_OK(cgloo_context_create(0, 1, NULL, &ctx));
    CHECK_OK(cgloo_context_connect(ctx, NULL, NULL));
    CHECK_OK(cgloo_ibroadcast(ctx, a, 4, CGLOO_FLOAT32, 5, NULL, &r));
    CHECK_STATUS(cgloo_wait(r, 0, NULL), CGLOO_EINVAL);
    char detail[256];
    cgloo_context_last_error(ctx, detail, sizeof detail);
    CHECK(strstr(detail, "root") != NULL);
    cgloo_context_destroy(ctx);
}

static const test_case tests[] = {
    {"all_collectives", test_all_collectives, 60},
    {"many_threads", test_many_threads, 120},
    {"order_with_blocking", test_order_with_blocking, 60},
    {"overlap", test_overlap, 60},
    {"cancel", test_cancel, 30},
    {"timeouts", test_timeouts, 30},
    {"abort_and_destroy", test_abort_and_destroy, 30},
    {"bad_arguments", test_bad_arguments, 30},
};
TEST_MAIN(tests)
