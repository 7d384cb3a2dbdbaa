/*
 * Failure handling with ranks as real processes: a rank killed (SIGKILL) or stalled (SIGSTOP)
 * while the others wait on it, a rank that never shows up at connect time, destroy with dead
 * and stalled peers, and abort from another thread. The processes meet through a file store
 * in a fresh directory. Every survivor must get a status (EPEER, ETIMEDOUT, EABORTED) within
 * its timeout, with a last error naming the rank at fault, and never hang.
 */
#include "mesh.h"
#include "procs.h"

#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_RANKS 8
#define RUN_ID "failure"
/* The expiry field of a store record that stays fresh (see src/rendezvous/full_mesh.c). */
#define NEVER_EXPIRES "7fffffffffffffff"

static void wait_ready(procs *w, cgloo_store *s, int nranks)
{
    char keys[MAX_RANKS][32];
    const char *kp[MAX_RANKS];
    for (int r = 0; r < nranks; r++) {
        snprintf(keys[r], sizeof keys[r], "ready/%d", r);
        kp[r] = keys[r];
    }
    if (cgloo_store_wait(s, kp, (size_t)nranks, 20000) != CGLOO_OK) {
        procs_kill_all(w);
        harness_fail(__FILE__, __LINE__, "ranks never became ready", NULL);
    }
}

/* rank_start connects a rank process through the file store and says it is ready. */
static rank_env rank_start(procs *w, int rank, cgloo_store **s, int timeout_ms)
{
    *s = procs_store(w);
    rank_env e = mesh_connect(*s, rank, w->size, timeout_ms);
    char key[32];
    snprintf(key, sizeof key, "ready/%d", rank);
    CHECK_OK(cgloo_store_set(*s, key, "1", 1));
    return e;
}

static void rank_finish(rank_env e, cgloo_store *s, int destroy_ms)
{
    long long t0 = test_now_ms();
    mesh_close(e);
    long long took = test_now_ms() - t0;
    if (took > destroy_ms) {
        char detail[64];
        snprintf(detail, sizeof detail, "%lld ms", took);
        harness_fail(__FILE__, __LINE__, "cgloo_context_destroy was slow", detail);
    }
    cgloo_store_destroy(s);
}

/* expect_failure checks a status, the context's last error and the rank it names. */
static void expect_failure(int line, cgloo_context *ctx, int rc, int want, const char *names)
{
    char detail[512], what[700];
    int last = cgloo_context_last_error(ctx, detail, sizeof detail);
    if (rc == want && last == want && strstr(detail, names))
        return;
    snprintf(what, sizeof what, "want %s naming '%s', got %s; last error %s: %s",
             cgloo_status_name(want), names, cgloo_status_name(rc), cgloo_status_name(last),
             detail);
    harness_fail(__FILE__, line, what, NULL);
}
#define EXPECT_FAILURE(ctx, expr, want, names)                                                     \
    expect_failure(__LINE__, (ctx), (expr), (want), (names))

/* expect_within checks that t0 was at most ms ago. */
static void expect_within(int line, long long t0, int ms)
{
    long long took = test_now_ms() - t0;
    if (took > ms) {
        char what[96];
        snprintf(what, sizeof what, "took %lld ms, more than %d", took, ms);
        harness_fail(__FILE__, line, what, NULL);
    }
}
#define EXPECT_WITHIN(t0, ms) expect_within(__LINE__, (t0), (ms))

static void victim(procs *w, int rank, void *arg)
{
    (void)arg;
    cgloo_store *s;
    rank_env e = rank_start(w, rank, &s, 20000);
    for (;;)
        pause(); /* until SIGKILL */
    (void)e;
}

/* ring_among passes a token around the ranks in live[0..n) to show they still talk. */
static void ring_among(cgloo_context *ctx, const int *live, int n, int rank)
{
    int me = 0;
    while (live[me] != rank)
        me++;
    int next = live[(me + 1) % n], prev = live[(me + n - 1) % n], got = -1;
    CHECK_OK(cgloo_send(ctx, &rank, sizeof rank, next, 50, 0));
    CHECK_OK(cgloo_recv(ctx, &got, sizeof got, prev, 50, 0, NULL));
    CHECK(got == prev);
}

/* ---- a rank killed while the others wait on it ----------------------------------------------- */

static void killed_survivor(procs *w, int rank, void *arg)
{
    (void)arg;
    cgloo_store *s;
    rank_env e = rank_start(w, rank, &s, 20000);
    CHECK_OK(cgloo_context_set_timeout(e.ctx, 10000));
    int dead = w->size - 1, v;
    long long t0 = test_now_ms();
    if (rank == 0) {
        /* From a set that includes the dead rank. Rank 2 may finish and leave before rank 0
         * sees the crash: a departure must not be what fails the receive. */
        int srcs[] = {1, 2, dead};
        EXPECT_FAILURE(e.ctx, cgloo_recv_any(e.ctx, &v, sizeof v, srcs, 3, 1, 0, NULL), CGLOO_EPEER,
                       "peer 3");
    } else if (rank == 1) {
        EXPECT_FAILURE(e.ctx, cgloo_recv(e.ctx, &v, sizeof v, dead, 1, 0, NULL), CGLOO_EPEER,
                       "peer 3");
    } else {
        /* A large receive and a large send, both waiting on the dead rank. */
        size_t n = 4u << 20;
        uint8_t *in = malloc(n), *out = calloc(1, n);
        cgloo_request *rr, *sr;
        CHECK_OK(cgloo_irecv(e.ctx, in, n, dead, 1, &rr));
        CHECK_OK(cgloo_isend(e.ctx, out, n, dead, 2, &sr));
        EXPECT_FAILURE(e.ctx, cgloo_wait(rr, 0, NULL), CGLOO_EPEER, "peer 3");
        EXPECT_FAILURE(e.ctx, cgloo_wait(sr, 0, NULL), CGLOO_EPEER, "peer 3");
        free(in);
        free(out);
    }
    EXPECT_WITHIN(t0, 5000);
    /* The failure sticks to the dead rank's connection, and only to it. */
    EXPECT_FAILURE(e.ctx, cgloo_send(e.ctx, &v, sizeof v, dead, 3, 0), CGLOO_EPEER, "peer 3");
    EXPECT_FAILURE(e.ctx, cgloo_recv(e.ctx, &v, sizeof v, dead, 3, 0, NULL), CGLOO_EPEER, "peer 3");
    static const int live[] = {0, 1, 2};
    ring_among(e.ctx, live, 3, rank);
    rank_finish(e, s, 3000);
}

static void test_kill_blocked_on_dead(void)
{
    procs w;
    procs_init(&w, 4, RUN_ID);
    for (int r = 0; r < 3; r++)
        procs_spawn(&w, r, killed_survivor, NULL);
    procs_spawn(&w, 3, victim, NULL);
    cgloo_store *s = procs_store(&w);
    wait_ready(&w, s, 4);
    test_sleep_ms(300); /* let the survivors block */
    kill(w.pid[3], SIGKILL);
    int status = procs_reap(&w, 3, 5000);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    procs_expect_ok(&w, 3, 15000);
    cgloo_store_destroy(s);
}

/* ---- a rank killed during non-blocking collectives ------------------------------------------ */

/* Every survivor has an alltoall (which needs the dead rank directly) and an allreduce queued
 * behind it when rank 3 dies: the first fails naming rank 3, the second fails too, and no wait
 * outlasts the timeout. */
static void nonblocking_survivor(procs *w, int rank, void *arg)
{
    (void)arg;
    cgloo_store *s;
    rank_env e = rank_start(w, rank, &s, 20000);
    CHECK_OK(cgloo_context_set_timeout(e.ctx, 10000));
    size_t n = 1u << 18; /* floats per block: large messages */
    float *in = calloc(n * 4, sizeof *in), *out = calloc(n * 4, sizeof *out);
    cgloo_request *a2a, *ar;
    long long t0 = test_now_ms();
    CHECK_OK(cgloo_ialltoall(e.ctx, in, out, n, CGLOO_FLOAT32, NULL, &a2a));
    CHECK_OK(cgloo_iallreduce(e.ctx, in, in, n, CGLOO_FLOAT32, CGLOO_SUM, NULL, &ar));
    EXPECT_FAILURE(e.ctx, cgloo_wait(a2a, 0, NULL), CGLOO_EPEER, "rank 3");
    CHECK(cgloo_wait(ar, 0, NULL) != CGLOO_OK);
    EXPECT_WITHIN(t0, 8000);
    free(in);
    free(out);
    rank_finish(e, s, 3000);
}

static void test_kill_during_nonblocking(void)
{
    procs w;
    procs_init(&w, 4, RUN_ID);
    for (int r = 0; r < 3; r++)
        procs_spawn(&w, r, nonblocking_survivor, NULL);
    procs_spawn(&w, 3, victim, NULL);
    cgloo_store *s = procs_store(&w);
    wait_ready(&w, s, 4);
    test_sleep_ms(300); /* let the survivors start their collectives */
    kill(w.pid[3], SIGKILL);
    procs_reap(&w, 3, 5000);
    procs_expect_ok(&w, 3, 15000);
    cgloo_store_destroy(s);
}

/* Rank 2 answers rank 0's large message with READY, then stops reading and is killed while
 * rank 0 is still writing the DATA; rank 1 waits on rank 2 meanwhile. */
#define MID_LEN (64u << 20)

static void mid_transfer_victim(procs *w, int rank, void *arg)
{
    (void)arg;
    cgloo_store *s;
    rank_env e = rank_start(w, rank, &s, 20000);
    uint8_t *in = malloc(MID_LEN);
    cgloo_request *r;
    CHECK_OK(cgloo_irecv(e.ctx, in, MID_LEN, 0, 9, &r));
    int v;
    /* The small message follows the announcement, so READY has gone out once it is here. */
    CHECK_OK(cgloo_recv(e.ctx, &v, sizeof v, 0, 10, 0, NULL));
    CHECK_OK(cgloo_store_set(s, "stalled", "1", 1));
    for (;;)
        pause();
}

static void mid_transfer_survivor(procs *w, int rank, void *arg)
{
    (void)arg;
    cgloo_store *s;
    rank_env e = rank_start(w, rank, &s, 20000);
    CHECK_OK(cgloo_context_set_timeout(e.ctx, 10000));
    int v = 1;
    long long t0 = test_now_ms();
    if (rank == 0) {
        uint8_t *out = calloc(1, MID_LEN);
        cgloo_request *r;
        CHECK_OK(cgloo_isend(e.ctx, out, MID_LEN, 2, 9, &r));
        CHECK_OK(cgloo_send(e.ctx, &v, sizeof v, 2, 10, 0));
        EXPECT_FAILURE(e.ctx, cgloo_wait(r, 0, NULL), CGLOO_EPEER, "peer 2");
        free(out);
    } else {
        EXPECT_FAILURE(e.ctx, cgloo_recv(e.ctx, &v, sizeof v, 2, 1, 0, NULL), CGLOO_EPEER,
                       "peer 2");
    }
    EXPECT_WITHIN(t0, 8000);
    static const int live[] = {0, 1};
    ring_among(e.ctx, live, 2, rank);
    rank_finish(e, s, 3000);
}

static void test_kill_mid_transfer(void)
{
    procs w;
    procs_init(&w, 3, RUN_ID);
    procs_spawn(&w, 0, mid_transfer_survivor, NULL);
    procs_spawn(&w, 1, mid_transfer_survivor, NULL);
    procs_spawn(&w, 2, mid_transfer_victim, NULL);
    cgloo_store *s = procs_store(&w);
    wait_ready(&w, s, 3);
    void *v;
    size_t n;
    if (cgloo_store_get(s, "stalled", 10000, &v, &n) != CGLOO_OK) {
        procs_kill_all(&w);
        harness_fail(__FILE__, __LINE__, "rank 2 never got its READY out", NULL);
    }
    cgloo_free(v);
    test_sleep_ms(200); /* rank 0 fills the socket and waits to write more */
    kill(w.pid[2], SIGKILL);
    procs_reap(&w, 2, 5000);
    procs_expect_ok(&w, 2, 15000);
    cgloo_store_destroy(s);
}

/* Rank 4 dies. Rank 1 and rank 3 wait on it; rank 0 waits on rank 1 and rank 2 on rank 3, both
 * alive. Rank 1 reports its failure to rank 0 over their healthy connection; rank 3 gives up
 * and destroys its context, which rank 2 sees as its peer closing. */
static void chain_rank(procs *w, int rank, void *arg)
{
    (void)arg;
    cgloo_store *s;
    rank_env e = rank_start(w, rank, &s, 20000);
    CHECK_OK(cgloo_context_set_timeout(e.ctx, 10000));
    int v = 0;
    long long t0 = test_now_ms();
    switch (rank) {
    case 0:
        CHECK_OK(cgloo_recv(e.ctx, &v, sizeof v, 1, 2, 0, NULL));
        CHECK(v == CGLOO_EPEER);
        EXPECT_FAILURE(e.ctx, cgloo_recv(e.ctx, &v, sizeof v, 4, 1, 0, NULL), CGLOO_EPEER,
                       "peer 4");
        break;
    case 1:
        v = cgloo_recv(e.ctx, &v, sizeof v, 4, 1, 0, NULL);
        EXPECT_FAILURE(e.ctx, v, CGLOO_EPEER, "peer 4");
        CHECK_OK(cgloo_send(e.ctx, &v, sizeof v, 0, 2, 0));
        break;
    case 2:
        EXPECT_FAILURE(e.ctx, cgloo_recv(e.ctx, &v, sizeof v, 3, 1, 0, NULL), CGLOO_EPEER,
                       "peer 3");
        break;
    case 3:
        EXPECT_FAILURE(e.ctx, cgloo_recv(e.ctx, &v, sizeof v, 4, 1, 0, NULL), CGLOO_EPEER,
                       "peer 4");
        rank_finish(e, s, 3000);
        return;
    }
    EXPECT_WITHIN(t0, 5000);
    if (rank != 2) {
        static const int live[] = {0, 1};
        ring_among(e.ctx, live, 2, rank);
    }
    rank_finish(e, s, 3000);
}

static void test_kill_blocked_on_alive(void)
{
    procs w;
    procs_init(&w, 5, RUN_ID);
    for (int r = 0; r < 4; r++)
        procs_spawn(&w, r, chain_rank, NULL);
    procs_spawn(&w, 4, victim, NULL);
    cgloo_store *s = procs_store(&w);
    wait_ready(&w, s, 5);
    test_sleep_ms(300);
    kill(w.pid[4], SIGKILL);
    procs_reap(&w, 4, 5000);
    procs_expect_ok(&w, 4, 15000);
    cgloo_store_destroy(s);
}

/* ---- a collective's bystander: the revoke -----------------------------------------------------
 */

/* Rank 3 dies; ranks 0 to 2 run a recursive-doubling allreduce, whose first step pairs 0 with
 * 1 and 2 with 3, and whose second pairs 0 with 2 and 1 with 3. Rank 2 fails at its first step
 * and rank 1 at its second, both on the dead rank; rank 0 needs only live ranks and waits on
 * rank 2. The notice of rank 2 (or 1) ends rank 0's wait at once, naming rank 3, instead of at
 * rank 0's 10 s timeout; the next collective fails at once on every rank; point-to-point among
 * the living still works. */
static void revoke_rank(procs *w, int rank, void *arg)
{
    (void)arg;
    cgloo_store *s;
    rank_env e = rank_start(w, rank, &s, 20000);
    CHECK_OK(cgloo_context_set_timeout(e.ctx, 10000));
    cgloo_coll_opts opts = {.algorithm = "recursive_doubling"};
    float x = 1;
    void *dead;
    size_t len;
    CHECK_OK(cgloo_store_get(s, "victim-dead", 15000, &dead, &len)); /* the parent reaped it */
    cgloo_free(dead);
    long long t0 = test_now_ms();
    EXPECT_FAILURE(e.ctx, cgloo_allreduce(e.ctx, &x, &x, 1, CGLOO_FLOAT32, CGLOO_SUM, &opts),
                   CGLOO_EPEER, "rank 3");
    EXPECT_WITHIN(t0, 5000);
    t0 = test_now_ms();
    EXPECT_FAILURE(e.ctx, cgloo_barrier(e.ctx, NULL), CGLOO_EPEER, "revoked");
    EXPECT_WITHIN(t0, 1000);
    static const int live[] = {0, 1, 2};
    ring_among(e.ctx, live, 3, rank);
    rank_finish(e, s, 3000);
}

static void test_revoke_reaches_bystander(void)
{
    procs w;
    procs_init(&w, 4, RUN_ID);
    for (int r = 0; r < 3; r++)
        procs_spawn(&w, r, revoke_rank, NULL);
    procs_spawn(&w, 3, victim, NULL);
    cgloo_store *s = procs_store(&w);
    wait_ready(&w, s, 4);
    kill(w.pid[3], SIGKILL);
    procs_reap(&w, 3, 5000);
    CHECK_OK(cgloo_store_set(s, "victim-dead", "1", 1));
    procs_expect_ok(&w, 3, 15000);
    cgloo_store_destroy(s);
}

/* ---- a rank that stalls without closing ------------------------------------------------------ */

#define STALL_TIMEOUT_MS 1500

static void stall_survivor(procs *w, int rank, void *arg)
{
    (void)arg;
    cgloo_store *s;
    rank_env e = rank_start(w, rank, &s, 20000);
    CHECK_OK(cgloo_context_set_timeout(e.ctx, STALL_TIMEOUT_MS));
    int v;
    long long t0 = test_now_ms();
    EXPECT_FAILURE(e.ctx, cgloo_recv(e.ctx, &v, sizeof v, 2, 1, 0, NULL), CGLOO_ETIMEDOUT,
                   "rank 2");
    long long took = test_now_ms() - t0;
    CHECK(took >= STALL_TIMEOUT_MS - 100);
    EXPECT_WITHIN(t0, STALL_TIMEOUT_MS + 2500);
    /* A large send it never answers times out too, and is withdrawn. */
    size_t n = 1u << 20;
    uint8_t *out = calloc(1, n);
    t0 = test_now_ms();
    EXPECT_FAILURE(e.ctx, cgloo_send(e.ctx, out, n, 2, 2, 500), CGLOO_ETIMEDOUT, "rank 2");
    EXPECT_WITHIN(t0, 3000);
    free(out);
    static const int live[] = {0, 1};
    ring_among(e.ctx, live, 2, rank);
    /* Destroy gives the stalled peer a short linger, no more. */
    rank_finish(e, s, 3000);
}

static void test_stall(void)
{
    procs w;
    procs_init(&w, 3, RUN_ID);
    procs_spawn(&w, 0, stall_survivor, NULL);
    procs_spawn(&w, 1, stall_survivor, NULL);
    procs_spawn(&w, 2, victim, NULL);
    cgloo_store *s = procs_store(&w);
    wait_ready(&w, s, 3);
    kill(w.pid[2], SIGSTOP);
    procs_expect_ok(&w, 2, 15000);
    procs_kill_all(&w);
    cgloo_store_destroy(s);
}

/* ---- destroy with peers dead, busy or stalled ------------------------------------------------ */

/* Rank 2 is killed; rank 1 is alive but busy (it does not drive its context for 3 s); rank 0
 * destroys right away with a large send to rank 1 withdrawn half-way. */
static void destroy_rank(procs *w, int rank, void *arg)
{
    (void)arg;
    cgloo_store *s;
    rank_env e = rank_start(w, rank, &s, 20000);
    if (rank == 1) {
        test_sleep_ms(3000);
        rank_finish(e, s, 2000);
        return;
    }
    void *v;
    size_t n;
    CHECK_OK(cgloo_store_get(s, "killed", 20000, &v, &n));
    cgloo_free(v);
    size_t len = 8u << 20;
    uint8_t *out = calloc(1, len);
    cgloo_request *r;
    CHECK_OK(cgloo_isend(e.ctx, out, len, 1, 1, &r));
    int done = 0;
    CHECK_OK(cgloo_test(r, &done, NULL));
    if (!done)
        cgloo_cancel(r);
    free(out);
    rank_finish(e, s, 2800);
}

static void test_destroy_dead_and_busy(void)
{
    procs w;
    procs_init(&w, 3, RUN_ID);
    procs_spawn(&w, 0, destroy_rank, NULL);
    procs_spawn(&w, 1, destroy_rank, NULL);
    procs_spawn(&w, 2, victim, NULL);
    cgloo_store *s = procs_store(&w);
    wait_ready(&w, s, 3);
    kill(w.pid[2], SIGKILL);
    procs_reap(&w, 2, 5000);
    CHECK_OK(cgloo_store_set(s, "killed", "1", 1));
    procs_expect_ok(&w, 2, 15000);
    cgloo_store_destroy(s);
}

/* ---- connect with a rank that never shows up ------------------------------------------------- */

#define CONNECT_TIMEOUT_MS 1500

static void connect_missing(procs *w, int rank, void *arg)
{
    (void)arg;
    cgloo_store *s = procs_store(w);
    cgloo_device *dev;
    cgloo_context *ctx;
    CHECK_OK(cgloo_device_tcp_create(NULL, &dev));
    cgloo_context_attr attr = {.timeout_ms = CONNECT_TIMEOUT_MS, .name = "test"};
    CHECK_OK(cgloo_context_create(rank, w->size, &attr, &ctx));
    long long t0 = test_now_ms();
    EXPECT_FAILURE(ctx, cgloo_context_connect(ctx, s, dev), CGLOO_ETIMEDOUT, "rank 2");
    CHECK(test_now_ms() - t0 >= CONNECT_TIMEOUT_MS - 100);
    EXPECT_WITHIN(t0, CONNECT_TIMEOUT_MS + 2500);
    /* A failed connect leaves nothing behind; a later call still says "not connected". */
    int x = 0;
    CHECK_STATUS(cgloo_send(ctx, &x, sizeof x, 0, 1, 0), CGLOO_ESTATE);
    long long t1 = test_now_ms();
    cgloo_context_destroy(ctx);
    cgloo_device_destroy(dev);
    EXPECT_WITHIN(t1, 1000);
    cgloo_store_destroy(s);
}

static void test_connect_missing_rank(void)
{
    /* Rank 2 of 3 never publishes an address. */
    procs w;
    procs_init(&w, 3, RUN_ID);
    procs_spawn(&w, 0, connect_missing, NULL);
    procs_spawn(&w, 1, connect_missing, NULL);
    procs_expect_ok(&w, 2, 15000);

    /* Rank 2 published an address (a listener that accepts and says nothing) but never
     * dials: the ranks it should have dialled give up at their timeout. */
    procs_init(&w, 3, RUN_ID);
    cgloo_store *s = procs_store(&w);
    cgloo_device *silent;
    char addr[64], rec[128];
    CHECK_OK(cgloo_device_tcp_create(NULL, &silent));
    CHECK_OK(cgloo_device_address(silent, addr, sizeof addr));
    int n = snprintf(rec, sizeof rec, "cgloo2 %s 00000000deadbeef " NEVER_EXPIRES, addr);
    CHECK_OK(cgloo_store_set(s, "test/addr/2", rec, (size_t)n));
    procs_spawn(&w, 0, connect_missing, NULL);
    procs_spawn(&w, 1, connect_missing, NULL);
    procs_expect_ok(&w, 2, 15000);
    cgloo_device_destroy(silent);
    cgloo_store_destroy(s);
}

/* ---- abort from another thread --------------------------------------------------------------- */

static cgloo_store *abort_store;

typedef struct abort_arg {
    cgloo_context *ctx;
    long long aborted_at;
    int rc;
    long long returned_at;
} abort_arg;

static void *blocked_recv(void *p)
{
    abort_arg *a = p;
    int v;
    a->rc = cgloo_recv(a->ctx, &v, sizeof v, 1, 1, 0, NULL);
    a->returned_at = test_now_ms();
    return NULL;
}

static void *polling_test(void *p)
{
    abort_arg *a = p;
    int v, done = 0, rc;
    cgloo_request *r;
    CHECK_OK(cgloo_irecv(a->ctx, &v, sizeof v, 2, 1, &r));
    do
        rc = cgloo_test(r, &done, NULL);
    while (rc == CGLOO_OK && !done);
    if (!done)
        cgloo_cancel(r);
    a->rc = rc;
    a->returned_at = test_now_ms();
    return NULL;
}

static void abort_rank(int rank, int size, void *arg)
{
    rank_env e = mesh_connect(abort_store, rank, size, 20000);
    CHECK_OK(cgloo_context_set_timeout(e.ctx, 10000));
    int v;
    if (rank != 0) {
        /* The aborted rank closes its connections: its peers see it go. */
        long long t0 = test_now_ms();
        EXPECT_FAILURE(e.ctx, cgloo_recv(e.ctx, &v, sizeof v, 0, 5, 0, NULL), CGLOO_EPEER,
                       "peer 0");
        EXPECT_WITHIN(t0, 5000);
        static const int live[] = {1, 2};
        ring_among(e.ctx, live, 2, rank);
        mesh_close(e);
        return;
    }
    cgloo_request *early;
    CHECK_OK(cgloo_irecv(e.ctx, &v, sizeof v, 2, 7, &early));
    abort_arg a = {.ctx = e.ctx}, b = {.ctx = e.ctx};
    pthread_t ta, tb;
    CHECK(pthread_create(&ta, NULL, blocked_recv, &a) == 0);
    CHECK(pthread_create(&tb, NULL, polling_test, &b) == 0);
    test_sleep_ms(300);
    long long t0 = test_now_ms();
    cgloo_context_abort(e.ctx);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK_STATUS(a.rc, CGLOO_EABORTED);
    CHECK_STATUS(b.rc, CGLOO_EABORTED);
    CHECK(a.returned_at - t0 < 1000 && b.returned_at - t0 < 1000);
    /* Everything after the abort fails the same way, at once. */
    CHECK_STATUS(cgloo_wait(early, 0, NULL), CGLOO_EABORTED);
    t0 = test_now_ms();
    CHECK_STATUS(cgloo_recv(e.ctx, &v, sizeof v, 1, 1, 0, NULL), CGLOO_EABORTED);
    CHECK_STATUS(cgloo_send(e.ctx, &v, sizeof v, 1, 1, 0), CGLOO_EABORTED);
    CHECK_STATUS(cgloo_send(e.ctx, &v, sizeof v, 0, 1, 0), CGLOO_EABORTED);
    cgloo_request *r;
    CHECK_STATUS(cgloo_irecv(e.ctx, &v, sizeof v, 2, 1, &r), CGLOO_EABORTED);
    EXPECT_WITHIN(t0, 100);
    char detail[256];
    CHECK(cgloo_context_last_error(e.ctx, detail, sizeof detail) == CGLOO_EABORTED);
    cgloo_context_abort(e.ctx); /* twice is fine */
    t0 = test_now_ms();
    mesh_close(e);
    EXPECT_WITHIN(t0, 2500);
}

static void test_abort(void)
{
    CHECK_OK(cgloo_store_hash_create(&abort_store));
    run_ranks(3, abort_rank, NULL);
    cgloo_store_destroy(abort_store);
}

/* ---- abort from another thread while connect waits for a peer ---------------------------- */

static void *abort_later(void *p)
{
    test_sleep_ms(200);
    cgloo_context_abort(p);
    return NULL;
}

/* connect_then_abort connects `rank` of 2 whose peer's record exists but who never shows up
 * (rank 0 waits to accept; rank 1 dials a port that refuses), aborts from another thread, and
 * expects EABORTED long before the 10 s timeout, with the context still safe to destroy. */
static void connect_then_abort(int rank)
{
    cgloo_store *s;
    cgloo_device *dev, *absent;
    CHECK_OK(cgloo_store_hash_create(&s));
    CHECK_OK(cgloo_device_tcp_create(NULL, &dev));
    CHECK_OK(cgloo_device_tcp_create(NULL, &absent));
    char addr[64], rec[128], key[32];
    CHECK_OK(cgloo_device_address(absent, addr, sizeof addr));
    if (rank == 1)
        cgloo_device_destroy(absent); /* its port now refuses: rank 1 keeps redialling */
    int n = snprintf(rec, sizeof rec, "cgloo2 %s 00000000000000aa " NEVER_EXPIRES, addr);
    snprintf(key, sizeof key, "test/addr/%d", 1 - rank);
    CHECK_OK(cgloo_store_set(s, key, rec, (size_t)n));
    cgloo_context *ctx;
    cgloo_context_attr attr = {.timeout_ms = 10000, .name = "test"};
    CHECK_OK(cgloo_context_create(rank, 2, &attr, &ctx));
    pthread_t th;
    CHECK(pthread_create(&th, NULL, abort_later, ctx) == 0);
    long long t0 = test_now_ms();
    CHECK_STATUS(cgloo_context_connect(ctx, s, dev), CGLOO_EABORTED);
    CHECK(test_now_ms() - t0 < 2000);
    pthread_join(th, NULL);
    char detail[512];
    CHECK_STATUS(cgloo_context_last_error(ctx, detail, sizeof detail), CGLOO_EABORTED);
    CHECK_STATUS(cgloo_send(ctx, "x", 1, 1 - rank, 1, 100), CGLOO_ESTATE);
    cgloo_context_destroy(ctx);
    if (rank == 0)
        cgloo_device_destroy(absent);
    cgloo_device_destroy(dev);
    cgloo_store_destroy(s);
}

static void test_abort_during_connect(void)
{
    connect_then_abort(0);
    connect_then_abort(1);
}

/* ---- a peer's store record that is not what a rank publishes: ESTORE at once, naming it --- */

static void test_malformed_records(void)
{
    static const char *const bad[] = {
        "cgloo2 127.0.0.1:1 " NEVER_EXPIRES,                       /* no nonce */
        "cgloo2  00000000000000aa " NEVER_EXPIRES,                 /* no address */
        "cgloo2 127.0.0.1:1 0000000000000AA " NEVER_EXPIRES,       /* nonce too short, upper case */
        "cgloo2 127.0.0.1 :1 00000000000000aa " NEVER_EXPIRES,     /* a space in the address */
        "cgloo1 127.0.0.1:1 00000000000000aa",                     /* an older record version */
        "cgloo2 127.0.0.1:1 00000000000000aa",                     /* no expiry */
        "cgloo2 127.0.0.1:1 00000000000000aa 7fffffff",            /* expiry too short */
        "cgloo2 127.0.0.1:1 00000000000000aa " NEVER_EXPIRES " x", /* bytes after the expiry */
        "cgloo2 no-such-host-or-port 00000000000000aa " NEVER_EXPIRES, /* no TCP address */
        "cgloo2 127.0.0.1:1 00000000000000aa " NEVER_EXPIRES "\n",
        "cgloo2 "
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:1 "
        "00000000000000aa " NEVER_EXPIRES, /* address too long */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cgloo_store *s;
        cgloo_device *dev;
        cgloo_context *ctx;
        CHECK_OK(cgloo_store_hash_create(&s));
        CHECK_OK(cgloo_device_tcp_create(NULL, &dev));
        CHECK_OK(cgloo_store_set(s, "test/addr/0", bad[i], strlen(bad[i])));
        cgloo_context_attr attr = {.timeout_ms = 5000, .name = "test"};
        CHECK_OK(cgloo_context_create(1, 2, &attr, &ctx));
        long long t0 = test_now_ms();
        CHECK_STATUS(cgloo_context_connect(ctx, s, dev), CGLOO_ESTORE);
        CHECK(test_now_ms() - t0 < 2000);
        char detail[512];
        cgloo_context_last_error(ctx, detail, sizeof detail);
        CHECK(strstr(detail, "rank 0") != NULL);
        cgloo_context_destroy(ctx);
        cgloo_device_destroy(dev);
        cgloo_store_destroy(s);
    }
}

/* An empty value where a peer's record belongs is no record yet (torch's TCPStore answers a
 * get of a key deleted after the wait so): the rank waits for one, and its timeout says the
 * peer never published, not that its record is malformed. */
static void test_empty_record_waits(void)
{
    cgloo_store *s;
    cgloo_device *dev;
    cgloo_context *ctx;
    CHECK_OK(cgloo_store_hash_create(&s));
    CHECK_OK(cgloo_device_tcp_create(NULL, &dev));
    CHECK_OK(cgloo_store_set(s, "test/addr/0", "", 0));
    cgloo_context_attr attr = {.timeout_ms = 1000, .name = "test"};
    CHECK_OK(cgloo_context_create(1, 2, &attr, &ctx));
    CHECK_STATUS(cgloo_context_connect(ctx, s, dev), CGLOO_ETIMEDOUT);
    char detail[512];
    cgloo_context_last_error(ctx, detail, sizeof detail);
    CHECK(strstr(detail, "rank 0 never published") != NULL);
    CHECK(strstr(detail, "malformed") == NULL);
    cgloo_context_destroy(ctx);
    cgloo_device_destroy(dev);
    cgloo_store_destroy(s);
}

/* ---- an interrupt check ends long waits with EINTR, as a binding's Ctrl-C needs ----------- */

typedef struct interrupt_state {
    long long start_ms, fire_after_ms;
    int calls;
} interrupt_state;

static int interrupt_after(void *user)
{
    interrupt_state *s = user;
    s->calls++;
    return test_now_ms() - s->start_ms >= s->fire_after_ms;
}

static void interrupt_arm(interrupt_state *s, cgloo_context *ctx, long long after_ms)
{
    *s = (interrupt_state){.start_ms = test_now_ms(), .fire_after_ms = after_ms};
    CHECK_OK(cgloo_context_set_interrupt_check(ctx, interrupt_after, s));
}

static void rank_interrupt(int rank, int size, void *arg)
{
    cgloo_store *s = arg;
    rank_env e = mesh_connect(s, rank, size, 10000);
    interrupt_state st;
    int v = 0;
    if (rank == 0) {
        /* A wait that nothing will satisfy ends within a check period of the interrupt, and the
         * request stays pending: it completes once the peer sends after all. */
        cgloo_request *r;
        CHECK_OK(cgloo_irecv(e.ctx, &v, sizeof v, 1, 5, &r));
        interrupt_arm(&st, e.ctx, 300);
        CHECK_STATUS(cgloo_wait(r, 0, NULL), CGLOO_EINTR);
        CHECK(test_now_ms() - st.start_ms < 300 + 3 * CGLOO_INTERRUPT_CHECK_MS);
        CHECK(st.calls >= 2);
        CHECK_OK(cgloo_context_set_interrupt_check(e.ctx, NULL, NULL));
        CHECK_OK(cgloo_send(e.ctx, &v, sizeof v, 1, 6, 0)); /* "now send" */
        CHECK_OK(cgloo_wait(r, 0, NULL));
        CHECK(v == 42);
        /* A collective the peer never joins stops the same way. */
        interrupt_arm(&st, e.ctx, 200);
        CHECK_STATUS(cgloo_barrier(e.ctx, NULL), CGLOO_EINTR);
        char detail[512];
        CHECK_STATUS(cgloo_context_last_error(e.ctx, detail, sizeof detail), CGLOO_EINTR);
        CHECK(strstr(detail, "barrier") != NULL);
        CHECK_OK(cgloo_send(e.ctx, &v, sizeof v, 1, 7, 0)); /* "done" */
    } else {
        CHECK_OK(cgloo_recv(e.ctx, &v, sizeof v, 0, 6, 0, NULL));
        v = 42;
        CHECK_OK(cgloo_send(e.ctx, &v, sizeof v, 0, 5, 0));
        CHECK_OK(cgloo_recv(e.ctx, &v, sizeof v, 0, 7, 0, NULL));
    }
    mesh_close(e);
}

static void test_interrupt_check(void)
{
    cgloo_store *s;
    CHECK_OK(cgloo_store_hash_create(&s));
    run_ranks(2, rank_interrupt, s);
    cgloo_store_destroy(s);
    /* A connect waiting for a rank that never publishes stops too. */
    CHECK_OK(cgloo_store_hash_create(&s));
    cgloo_device *dev;
    cgloo_context *ctx;
    CHECK_OK(cgloo_device_tcp_create(NULL, &dev));
    cgloo_context_attr attr = {.timeout_ms = 10000, .name = "test"};
    CHECK_OK(cgloo_context_create(0, 2, &attr, &ctx));
    interrupt_state st;
    interrupt_arm(&st, ctx, 200);
    CHECK_STATUS(cgloo_context_connect(ctx, s, dev), CGLOO_EINTR);
    CHECK(test_now_ms() - st.start_ms < 200 + 3 * CGLOO_INTERRUPT_CHECK_MS);
    cgloo_context_destroy(ctx);
    cgloo_device_destroy(dev);
    cgloo_store_destroy(s);
}

static const test_case tests[] = {
    {"kill_blocked_on_dead", test_kill_blocked_on_dead, 30},
    {"kill_blocked_on_alive", test_kill_blocked_on_alive, 30},
    {"revoke_reaches_bystander", test_revoke_reaches_bystander, 30},
    {"kill_mid_transfer", test_kill_mid_transfer, 30},
    {"kill_during_nonblocking", test_kill_during_nonblocking, 30},
    {"stall", test_stall, 30},
    {"destroy_dead_and_busy", test_destroy_dead_and_busy, 30},
    {"connect_missing_rank", test_connect_missing_rank, 30},
    {"abort", test_abort, 30},
    {"abort_during_connect", test_abort_during_connect, 30},
    {"malformed_records", test_malformed_records, 30},
    {"empty_record_waits", test_empty_record_waits, 30},
    {"interrupt_check", test_interrupt_check, 30},
};
TEST_MAIN(tests)
