/*
 * Check mode (ranks as threads over loopback TCP, and once as processes): calls that disagree
 * (count, dtype, op, root, counts arrays, alltoallv pairs, different collectives, a call skipped)
 * fail on every rank with a detail naming the ranks and how they differ, or time out naming the
 * rank that did not come; never hang. Calls that agree give correct results, blocking and
 * non-blocking, from several threads under different tags; the context stays usable after a
 * mismatch. Without check mode a size disagreement stays an error.
 */
#include "mesh.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define TIMEOUT_MS 20000
#define MAX_RANKS 8

/* What each rank's call returned, and its detail. */
typedef struct outcome {
    int rc[MAX_RANKS];
    char detail[MAX_RANKS][1024];
} outcome;

typedef void (*call_fn)(cgloo_context *ctx, int rank, int size, outcome *o);

typedef struct world {
    cgloo_store *store;
    call_fn fn;
    outcome o;
    int check;      /* cgloo_context_attr.check: 1 on, -1 off, 0 CGLOO_CHECK */
    int timeout_ms; /* 0: TIMEOUT_MS */
} world;

static void record(cgloo_context *ctx, int rank, outcome *o, int rc)
{
    o->rc[rank] = rc;
    cgloo_context_last_error(ctx, o->detail[rank], sizeof o->detail[rank]);
}

static void rank_main(int rank, int size, void *arg)
{
    world *w = arg;
    cgloo_device *dev = NULL;
    CHECK_OK(cgloo_device_tcp_create(&mesh_loopback, &dev));
    cgloo_context_attr attr = {.timeout_ms = w->timeout_ms ? w->timeout_ms : TIMEOUT_MS,
                               .name = "check",
                               .check = w->check};
    cgloo_context *ctx;
    CHECK_OK(cgloo_context_create(rank, size, &attr, &ctx));
    CHECK_OK(cgloo_context_connect(ctx, w->store, dev));
    w->fn(ctx, rank, size, &w->o);
    cgloo_context_destroy(ctx);
    cgloo_device_destroy(dev);
}

static outcome *run(world *w, int size, call_fn fn)
{
    w->fn = fn;
    memset(&w->o, 0, sizeof w->o);
    CHECK_OK(cgloo_store_hash_create(&w->store));
    run_ranks(size, rank_main, w);
    cgloo_store_destroy(w->store);
    return &w->o;
}

/* every_rank_fails: every rank got want, and its detail contains each of the texts. */
static void every_rank_fails(const outcome *o, int size, int want, const char *const *texts)
{
    for (int r = 0; r < size; r++) {
        if (o->rc[r] != want)
            harness_fail(__FILE__, __LINE__, cgloo_status_name(o->rc[r]), o->detail[r]);
        for (const char *const *t = texts; *t; t++)
            if (!strstr(o->detail[r], *t))
                harness_fail(__FILE__, __LINE__, *t, o->detail[r]);
    }
}

/* ---- calls that agree --------------------------------------------------------------------- */

static void agree_call(cgloo_context *ctx, int rank, int size, outcome *o)
{
    float v[1000];
    for (int i = 0; i < 1000; i++)
        v[i] = (float)(rank + i);
    int rc = cgloo_allreduce(ctx, v, v, 1000, CGLOO_FLOAT32, CGLOO_SUM, NULL);
    for (int i = 0; rc == CGLOO_OK && i < 1000; i++)
        CHECK(v[i] == (float)(size * (size - 1) / 2 + size * i));
    int64_t b[3] = {rank, rank, rank};
    if (rc == CGLOO_OK)
        rc = cgloo_broadcast(ctx, b, 3, CGLOO_INT64, size - 1, NULL);
    CHECK(rc != CGLOO_OK || (b[0] == size - 1 && b[2] == size - 1));
    /* v variants: counts 1, 2, 3, ... */
    size_t counts[MAX_RANKS];
    int32_t mine[MAX_RANKS], all[64];
    for (int r = 0; r < size; r++)
        counts[r] = (size_t)r + 1;
    for (int i = 0; i <= rank; i++)
        mine[i] = rank;
    if (rc == CGLOO_OK)
        rc = cgloo_allgatherv(ctx, mine, counts[rank], all, counts, CGLOO_INT32, NULL);
    for (int r = 0, k = 0; rc == CGLOO_OK && r < size; r++)
        for (int i = 0; i <= r; i++)
            CHECK(all[k++] == r);
    /* alltoallv: rank r sends r + 1 elements to everyone */
    size_t send[MAX_RANKS], recv[MAX_RANKS];
    int32_t out[64], in[64];
    for (int r = 0; r < size; r++) {
        send[r] = (size_t)rank + 1;
        recv[r] = (size_t)r + 1;
    }
    for (int i = 0; i < 64; i++)
        out[i] = rank;
    if (rc == CGLOO_OK)
        rc = cgloo_alltoallv(ctx, out, send, in, recv, CGLOO_INT32, NULL);
    for (int r = 0, k = 0; rc == CGLOO_OK && r < size; r++)
        for (int i = 0; i <= r; i++)
            CHECK(in[k++] == r);
    if (rc == CGLOO_OK)
        rc = cgloo_barrier(ctx, NULL);
    record(ctx, rank, o, rc);
}

static void test_agree(void)
{
    world w = {.check = 1};
    for (int size = 2; size <= 5; size += 3) {
        outcome *o = run(&w, size, agree_call);
        for (int r = 0; r < size; r++)
            if (o->rc[r] != CGLOO_OK)
                harness_fail(__FILE__, __LINE__, cgloo_status_name(o->rc[r]), o->detail[r]);
    }
}

/* ---- calls that disagree ------------------------------------------------------------------ */

/* then_agree: after a mismatch the context still works (no collective message flowed). */
static void then_agree(cgloo_context *ctx, int size)
{
    int x = 1;
    CHECK_OK(cgloo_allreduce(ctx, &x, &x, 1, CGLOO_INT32, CGLOO_SUM, NULL));
    CHECK(x == size);
}

static void count_call(cgloo_context *ctx, int rank, int size, outcome *o)
{
    static float v[1024];
    record(ctx, rank, o,
           cgloo_allreduce(ctx, v, v, rank == 1 ? 512 : 1024, CGLOO_FLOAT32, CGLOO_SUM, NULL));
    then_agree(ctx, size);
}

static void test_count(void)
{
    world w = {.check = 1};
    const char *want[] = {"check: allreduce call 1: ranks disagree",
                          "rank 0,2: allreduce count 1024 float32 sum",
                          "rank 1: allreduce count 512 float32 sum", NULL};
    every_rank_fails(run(&w, 3, count_call), 3, CGLOO_EINVAL, want);
}

static void dtype_op_call(cgloo_context *ctx, int rank, int size, outcome *o)
{
    int32_t v[4] = {0};
    cgloo_dtype dt = rank == 2 ? CGLOO_UINT32 : CGLOO_INT32;
    record(ctx, rank, o,
           cgloo_allreduce(ctx, v, v, 4, dt, rank == 0 ? CGLOO_MAX : CGLOO_SUM, NULL));
    then_agree(ctx, size);
}

static void test_dtype_op(void)
{
    world w = {.check = 1};
    const char *want[] = {"rank 0: allreduce count 4 int32 max",
                          "rank 1: allreduce count 4 int32 sum",
                          "rank 2: allreduce count 4 uint32 sum", NULL};
    every_rank_fails(run(&w, 3, dtype_op_call), 3, CGLOO_EINVAL, want);
}

static void root_call(cgloo_context *ctx, int rank, int size, outcome *o)
{
    double v[2] = {0};
    record(ctx, rank, o, cgloo_broadcast(ctx, v, 2, CGLOO_FLOAT64, rank == 3 ? 1 : 0, NULL));
    then_agree(ctx, size);
}

static void test_root(void)
{
    world w = {.check = 1};
    const char *want[] = {"rank 0,1,2: broadcast count 2 float64 root 0",
                          "rank 3: broadcast count 2 float64 root 1", NULL};
    every_rank_fails(run(&w, 4, root_call), 4, CGLOO_EINVAL, want);
}

static void kind_call(cgloo_context *ctx, int rank, int size, outcome *o)
{
    int32_t v[8] = {0};
    int rc = rank == 1 ? cgloo_broadcast(ctx, v, 8, CGLOO_INT32, 0, NULL)
                       : cgloo_allreduce(ctx, v, v, 8, CGLOO_INT32, CGLOO_SUM, NULL);
    record(ctx, rank, o, rc);
    then_agree(ctx, size);
}

static void test_different_collectives(void)
{
    world w = {.check = 1};
    const char *want[] = {"rank 0,2: allreduce count 8 int32 sum",
                          "rank 1: broadcast count 8 int32 root 0", NULL};
    every_rank_fails(run(&w, 3, kind_call), 3, CGLOO_EINVAL, want);
}

static void algorithm_call(cgloo_context *ctx, int rank, int size, outcome *o)
{
    float v[4] = {0};
    cgloo_coll_opts ring = {.algorithm = "ring"};
    record(ctx, rank, o,
           cgloo_allreduce(ctx, v, v, 4, CGLOO_FLOAT32, CGLOO_SUM, rank == 0 ? &ring : NULL));
    then_agree(ctx, size);
}

static void test_algorithm(void)
{
    world w = {.check = 1};
    const char *want[] = {"rank 0: allreduce count 4 float32 sum algorithm ring",
                          "rank 1,2: allreduce count 4 float32 sum algorithm recursive_doubling",
                          NULL};
    every_rank_fails(run(&w, 3, algorithm_call), 3, CGLOO_EINVAL, want);
}

/* Rank 1 refuses its own arguments (a NULL buffer): the others fail at once naming it. */
static void refused_call(cgloo_context *ctx, int rank, int size, outcome *o)
{
    float v[4] = {0};
    record(ctx, rank, o,
           cgloo_allreduce(ctx, rank == 1 ? NULL : v, v, 4, CGLOO_FLOAT32, CGLOO_SUM, NULL));
    then_agree(ctx, size);
}

static void test_refused_on_one_rank(void)
{
    world w = {.check = 1};
    long long t0 = test_now_ms();
    outcome *o = run(&w, 3, refused_call);
    CHECK(test_now_ms() - t0 < TIMEOUT_MS / 2); /* nobody waited for a timeout */
    CHECK(o->rc[1] == CGLOO_EINVAL && strstr(o->detail[1], "NULL buffer with count 4"));
    for (int r = 0; r < 3; r += 2) {
        CHECK(o->rc[r] == CGLOO_EINVAL);
        if (!strstr(o->detail[r], "rank 1: allreduce count 4 float32 sum (refused as invalid"))
            harness_fail(__FILE__, __LINE__, "refused", o->detail[r]);
    }
}

static void counts_call(cgloo_context *ctx, int rank, int size, outcome *o)
{
    size_t counts[3] = {2, 2, 2};
    if (rank == 0)
        counts[2] = 3; /* rank 0 thinks rank 2 sends 3 */
    int32_t mine[2] = {0}, all[8];
    record(ctx, rank, o, cgloo_allgatherv(ctx, mine, 2, all, counts, CGLOO_INT32, NULL));
    then_agree(ctx, size);
}

static void test_counts_array(void)
{
    world w = {.check = 1};
    const char *want[] = {"check: allgatherv call 1: ranks disagree", "rank 0: allgatherv counts#",
                          "rank 1,2: allgatherv counts#", NULL};
    every_rank_fails(run(&w, 3, counts_call), 3, CGLOO_EINVAL, want);
}

static void pairs_call(cgloo_context *ctx, int rank, int size, outcome *o)
{
    size_t send[3] = {1, 1, 1}, recv[3] = {1, 1, 1};
    if (rank == 1)
        recv[0] = 3; /* rank 0 sends 1 */
    int32_t out[8] = {0}, in[8];
    record(ctx, rank, o, cgloo_alltoallv(ctx, out, send, in, recv, CGLOO_INT32, NULL));
    then_agree(ctx, size);
}

static void test_alltoallv_pairs(void)
{
    world w = {.check = 1};
    const char *want[] = {"check: alltoallv call 1: ranks disagree",
                          "rank 1 expects 3 elements from rank 0, which sends 1", NULL};
    every_rank_fails(run(&w, 3, pairs_call), 3, CGLOO_EINVAL, want);
}

/* ---- a call skipped ----------------------------------------------------------------------- */

/* Rank 1 never makes the call (it waits past the others' timeout, then leaves). */
static void absent_call(cgloo_context *ctx, int rank, int size, outcome *o)
{
    int x = 1;
    if (rank == 1) {
        test_sleep_ms(2500);
        return;
    }
    record(ctx, rank, o, cgloo_allreduce(ctx, &x, &x, 1, CGLOO_INT32, CGLOO_SUM, NULL));
    (void)size;
}

static void test_absent_rank_times_out(void)
{
    world w = {.check = 1, .timeout_ms = 1000};
    long long t0 = test_now_ms();
    outcome *o = run(&w, 3, absent_call);
    CHECK(test_now_ms() - t0 < 15000);
    for (int r = 0; r < 3; r += 2) {
        if (o->rc[r] != CGLOO_ETIMEDOUT)
            harness_fail(__FILE__, __LINE__, cgloo_status_name(o->rc[r]), o->detail[r]);
        CHECK(strstr(o->detail[r], "check: allreduce call 1: rank 1 did not make this call"));
    }
}

static void lagging_call(cgloo_context *ctx, int rank, int size, outcome *o)
{
    int x = 1, rc = CGLOO_OK;
    /* ranks 0 and 2 make two calls, rank 1 skips the first: its first call meets theirs, an
     * allreduce against a barrier, and all three fail it; their second finds rank 1 gone */
    if (rank != 1)
        rc = cgloo_barrier(ctx, NULL);
    if (rc != CGLOO_OK) {
        record(ctx, rank, o, rc);
        /* their second call: rank 1 has gone, or goes, meanwhile */
        CHECK(cgloo_allreduce(ctx, &x, &x, 1, CGLOO_INT32, CGLOO_SUM, NULL) != CGLOO_OK);
        return;
    }
    record(ctx, rank, o, cgloo_allreduce(ctx, &x, &x, 1, CGLOO_INT32, CGLOO_SUM, NULL));
    (void)size;
}

static void test_lagging_rank(void)
{
    world w = {.check = 1, .timeout_ms = 1500};
    outcome *o = run(&w, 3, lagging_call);
    const char *want[] = {"rank 0,2: barrier", "rank 1: allreduce count 1 int32 sum", NULL};
    every_rank_fails(o, 3, CGLOO_EINVAL, want);
}

/* ---- non-blocking and several threads ----------------------------------------------------- */

typedef struct thread_arg {
    cgloo_context *ctx;
    int rank, size;
    uint64_t tag;
} thread_arg;

static void *tagged_thread(void *p)
{
    thread_arg *a = p;
    cgloo_coll_opts opts = {.tag = a->tag};
    for (int i = 0; i < 30; i++) {
        int64_t v[5] = {a->rank, 1, 2, 3, (int64_t)a->tag};
        CHECK_OK(cgloo_allreduce(a->ctx, v, v, 5, CGLOO_INT64, CGLOO_SUM, &opts));
        CHECK(v[0] == a->size * (a->size - 1) / 2 && v[4] == (int64_t)a->tag * a->size);
    }
    return NULL;
}

static void threads_call(cgloo_context *ctx, int rank, int size, outcome *o)
{
    pthread_t th[2];
    thread_arg args[2];
    for (int i = 0; i < 2; i++) {
        args[i] = (thread_arg){.ctx = ctx, .rank = rank, .size = size, .tag = (uint64_t)i + 1};
        CHECK(pthread_create(&th[i], NULL, tagged_thread, &args[i]) == 0);
    }
    /* meanwhile, non-blocking collectives under tag 0 */
    float a[64], b[64];
    for (int i = 0; i < 64; i++)
        a[i] = b[i] = 1;
    cgloo_request *r1, *r2;
    CHECK_OK(cgloo_iallreduce(ctx, a, a, 64, CGLOO_FLOAT32, CGLOO_SUM, NULL, &r1));
    CHECK_OK(cgloo_iallreduce(ctx, b, b, 64, CGLOO_FLOAT32, CGLOO_MAX, NULL, &r2));
    CHECK_OK(cgloo_wait(r1, 0, NULL));
    CHECK_OK(cgloo_wait(r2, 0, NULL));
    CHECK(a[63] == (float)size && b[0] == 1);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    /* a non-blocking call that disagrees fails on every rank too */
    cgloo_request *r3;
    CHECK_OK(cgloo_iallreduce(ctx, a, a, rank ? 32 : 64, CGLOO_FLOAT32, CGLOO_SUM, NULL, &r3));
    record(ctx, rank, o, cgloo_wait(r3, 0, NULL));
}

static void test_nonblocking_and_threads(void)
{
    world w = {.check = 1};
    const char *want[] = {"rank 0: allreduce count 64", "rank 1,2: allreduce count 32", NULL};
    every_rank_fails(run(&w, 3, threads_call), 3, CGLOO_EINVAL, want);
}

/* ---- ranks as real processes ------------------------------------------------------------- */

/* process_rank: one rank of a world of processes meeting in a file store; a mismatch, then a
 * call that agrees. Exits 0 when both went as they should. */
static void process_rank(const char *dir, int rank, int size)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    cgloo_store *s;
    cgloo_device *dev;
    cgloo_context *ctx;
    cgloo_context_attr attr = {.timeout_ms = TIMEOUT_MS, .name = "procs", .check = 1};
    CHECK_OK(cgloo_store_file_create(dir, "check", &s));
    CHECK_OK(cgloo_device_tcp_create(&mesh_loopback, &dev));
    CHECK_OK(cgloo_context_create(rank, size, &attr, &ctx));
    CHECK_OK(cgloo_context_connect(ctx, s, dev));
    double v[100] = {0};
    int rc = cgloo_reduce(ctx, v, v, 100, CGLOO_FLOAT64, CGLOO_SUM, rank == size - 1, NULL);
    char detail[1024];
    cgloo_context_last_error(ctx, detail, sizeof detail);
    if (rc != CGLOO_EINVAL || !strstr(detail, "rank 0,1: reduce count 100 float64 sum root 0") ||
        !strstr(detail, "rank 2: reduce count 100 float64 sum root 1"))
        harness_fail(__FILE__, __LINE__, cgloo_status_name(rc), detail);
    then_agree(ctx, size);
    cgloo_context_destroy(ctx);
    cgloo_device_destroy(dev);
    cgloo_store_destroy(s);
}

static void test_processes(void)
{
    enum { SIZE = 3 };
    const char *dir = test_tmpdir();
    pid_t pid[SIZE];
    fflush(NULL);
    for (int r = 0; r < SIZE; r++) {
        pid[r] = fork();
        CHECK(pid[r] >= 0);
        if (pid[r] == 0) {
            process_rank(dir, r, SIZE);
            _exit(0);
        }
    }
    int bad = 0;
    for (int r = 0; r < SIZE; r++) {
        int status = 0;
        CHECK(waitpid(pid[r], &status, 0) == pid[r]);
        bad += !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    }
    CHECK(bad == 0);
}

/* ---- switches ----------------------------------------------------------------------------- */

/* Without check mode, a size disagreement still fails (EPROTO or ETRUNC on the wire, or a
 * timeout), and never writes past a buffer (the sanitizer builds run this too). */
static void unchecked_call(cgloo_context *ctx, int rank, int size, outcome *o)
{
    float *v = calloc(1024, sizeof *v);
    CHECK(v);
    record(ctx, rank, o,
           cgloo_allreduce(ctx, v, v, rank == 1 ? 512 : 1024, CGLOO_FLOAT32, CGLOO_SUM, NULL));
    free(v);
    (void)size;
}

static void test_unchecked_stays_an_error(void)
{
    world w = {.check = -1, .timeout_ms = 2000};
    setenv("CGLOO_CHECK", "1", 1); /* the attribute's -1 wins */
    outcome *o = run(&w, 2, unchecked_call);
    for (int r = 0; r < 2; r++) {
        CHECK(o->rc[r] != CGLOO_OK);
        CHECK(!strstr(o->detail[r], "check:"));
    }
}

static void test_env_turns_it_on(void)
{
    world w = {.check = 0};
    setenv("CGLOO_CHECK", "1", 1);
    const char *want[] = {"check: allreduce call 1: ranks disagree", NULL};
    every_rank_fails(run(&w, 3, count_call), 3, CGLOO_EINVAL, want);
    setenv("CGLOO_CHECK", "2", 1);
    cgloo_context *ctx;
    cgloo_context_attr attr = {.name = "env"};
    CHECK_STATUS(cgloo_context_create(0, 1, &attr, &ctx), CGLOO_EINVAL);
    char detail[256];
    cgloo_last_error(detail, sizeof detail);
    CHECK(strstr(detail, "CGLOO_CHECK='2'"));
    unsetenv("CGLOO_CHECK");
}

static const test_case tests[] = {
    {"agree", test_agree, 60},
    {"count", test_count, 30},
    {"dtype_op", test_dtype_op, 30},
    {"root", test_root, 30},
    {"different_collectives", test_different_collectives, 30},
    {"algorithm", test_algorithm, 30},
    {"refused_on_one_rank", test_refused_on_one_rank, 30},
    {"counts_array", test_counts_array, 30},
    {"alltoallv_pairs", test_alltoallv_pairs, 30},
    {"lagging_rank", test_lagging_rank, 30},
    {"absent_rank_times_out", test_absent_rank_times_out, 30},
    {"nonblocking_and_threads", test_nonblocking_and_threads, 60},
    {"processes", test_processes, 60},
    {"unchecked_stays_an_error", test_unchecked_stays_an_error, 30},
    {"env_turns_it_on", test_env_turns_it_on, 30},
};
TEST_MAIN(tests)
