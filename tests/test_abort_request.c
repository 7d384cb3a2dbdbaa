/*
 * cgloo_context_abort_request over real TCP connections, ranks as threads: one thread waits
 * on a request (cgloo_wait or cgloo_test) while another aborts it by its number. The waiter
 * must return EABORTED at once, the buffer must stay untouched, a later message must go to
 * the next matching receive, a send the peer heard of must still arrive whole, the context
 * must keep working, and an abort racing completion must never free twice or touch freed
 * memory (run under ASan and TSan).
 */
#include "mesh.h"

#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <time.h>

static cgloo_store *store;

static void with_store(void (*fn)(int, int, void *), int size, void *arg)
{
    CHECK_OK(cgloo_store_hash_create(&store));
    run_ranks(size, fn, arg);
    cgloo_store_destroy(store);
}

/* A thread that ends a request as its owner: by cgloo_wait, or by polling cgloo_test. */
typedef struct waiter {
    cgloo_request *req;
    bool poll;
    int rc;
    long long ended_ms;
    pthread_t th;
} waiter;

static void *waiter_main(void *p)
{
    waiter *w = p;
    if (w->poll) {
        int done = 0;
        while (!done)
            w->rc = cgloo_test(w->req, &done, NULL);
    } else {
        w->rc = cgloo_wait(w->req, 0, NULL);
    }
    __atomic_store_n(&w->ended_ms, test_now_ms(), __ATOMIC_RELEASE);
    return NULL;
}

static void waiter_start(waiter *w, cgloo_request *req, bool poll)
{
    *w = (waiter){.req = req, .poll = poll};
    CHECK(pthread_create(&w->th, NULL, waiter_main, w) == 0);
}

/* sync_ranks: a two-rank handshake on a tag of its own, so that one side acts only once the
 * other has got this far. */
static void sync_ranks(cgloo_context *ctx, int peer)
{
    char b = 0;
    CHECK_OK(cgloo_send(ctx, &b, 1, peer, 1000, 0));
    CHECK_OK(cgloo_recv(ctx, &b, 1, peer, 1000, 0, NULL));
}

/* abort_waited aborts the request w waits on once the waiter is surely asleep in it, and
 * checks that the waiter comes back with EABORTED promptly. Returns the delay in ms. */
static long long abort_waited(cgloo_context *ctx, waiter *w, uint64_t id)
{
    test_sleep_ms(50);
    CHECK(__atomic_load_n(&w->ended_ms, __ATOMIC_ACQUIRE) == 0); /* still waiting */
    long long t0 = test_now_ms();
    CHECK_OK(cgloo_context_abort_request(ctx, id));
    pthread_join(w->th, NULL);
    long long took = w->ended_ms - t0;
    CHECK_STATUS(w->rc, CGLOO_EABORTED);
    CHECK(took < 2000); /* a poll, in fact: generous for a loaded machine */
    /* ended: aborting again finds nothing, and touches nothing */
    CHECK_STATUS(cgloo_context_abort_request(ctx, id), CGLOO_ENOTFOUND);
    return took;
}

/* ---- a receive from a peer that has not sent: released, buffer untouched, message kept ---- */

static const size_t recv_sizes[] = {100, 4u << 20}; /* eager and announced */

static void rank_recv_abort(int rank, int size, void *arg)
{
    (void)size, (void)arg;
    rank_env e = mesh_connect(store, rank, 2, 20000);
    size_t max = 4u << 20;
    uint8_t *buf = malloc(max), *buf2 = malloc(max);
    for (size_t i = 0; i < sizeof recv_sizes / sizeof recv_sizes[0]; i++) {
        size_t n = recv_sizes[i];
        uint64_t tag = 5 + i;
        if (rank == 0) {
            memset(buf, 0xaa, max);
            cgloo_request *r;
            CHECK_OK(cgloo_irecv(e.ctx, buf, max, 1, tag, &r));
            uint64_t id = cgloo_request_id(r);
            CHECK(id != 0);
            waiter w;
            waiter_start(&w, r, i % 2 == 1);
            long long took = abort_waited(e.ctx, &w, id);
            char detail[CGLOO_ERROR_MAX];
            CHECK(cgloo_context_last_error(e.ctx, detail, sizeof detail) == CGLOO_EABORTED);
            CHECK(strstr(detail, "receive from rank 1") && strstr(detail, "aborted"));
            printf("  %zu-byte receive released %lld ms after the abort\n", n, took);
            sync_ranks(e.ctx, 1); /* now rank 1 sends */
            /* The message goes to the next matching receive; the aborted buffer stays as it
             * was, also while and after the message arrives. */
            cgloo_completion c;
            CHECK_OK(cgloo_recv(e.ctx, buf2, max, 1, tag, 0, &c));
            CHECK(c.bytes == n && check_pattern(buf2, n, (uint32_t)tag));
            for (size_t k = 0; k < max; k++)
                if (buf[k] != 0xaa) {
                    CHECK(!"the aborted receive's buffer was written");
                    break;
                }
        } else {
            sync_ranks(e.ctx, 0);
            fill_pattern(buf, n, (uint32_t)tag);
            CHECK_OK(cgloo_send(e.ctx, buf, n, 0, tag, 0));
        }
    }
    /* other traffic on the context keeps working, both ways */
    int v = rank, got = -1;
    CHECK_OK(cgloo_send(e.ctx, &v, sizeof v, 1 - rank, 20, 0));
    CHECK_OK(cgloo_recv(e.ctx, &got, sizeof got, 1 - rank, 20, 0, NULL));
    CHECK(got == 1 - rank);
    CHECK_OK(cgloo_allreduce(e.ctx, &v, &got, 1, CGLOO_INT32, CGLOO_SUM, NULL));
    CHECK(got == 1);
    free(buf);
    free(buf2);
    mesh_close(e);
}

static void test_recv_abort(void)
{
    with_store(rank_recv_abort, 2, NULL);
}

/* ---- a large send aborted while its bytes flow: the peer still gets it whole ---- */

static void rank_send_abort(int rank, int size, void *arg)
{
    (void)size, (void)arg;
    rank_env e = mesh_connect(store, rank, 2, 20000);
    size_t n = 16u << 20;
    uint8_t *buf = malloc(n);
    for (int round = 0; round < 3; round++) {
        uint64_t tag = 30 + (uint64_t)round;
        if (rank == 0) {
            char posted;
            if (round > 0) /* the peer's receive is posted: the bytes flow at once */
                CHECK_OK(cgloo_recv(e.ctx, &posted, 1, 1, 1001, 0, NULL));
            fill_pattern(buf, n, (uint32_t)tag);
            cgloo_request *r;
            CHECK_OK(cgloo_isend(e.ctx, buf, n, 1, tag, &r)); /* announces it at once */
            uint64_t id = cgloo_request_id(r);
            waiter w;
            waiter_start(&w, r, round == 2);
            /* round 0: the peer has heard of the message (it is ahead of the handshake on the
             * connection) but posts its receive only later; 1 and 2: mid-flight */
            if (round == 0)
                sync_ranks(e.ctx, 1);
            else
                test_sleep_ms(2);
            int rc = cgloo_context_abort_request(e.ctx, id);
            pthread_join(w.th, NULL);
            CHECK(rc == CGLOO_OK ? w.rc == CGLOO_EABORTED : rc == CGLOO_ENOTFOUND && w.rc == 0);
            printf("  round %d: the send %s\n", round,
                   rc == CGLOO_OK ? "was aborted" : "completed first");
            memset(buf, 0, n); /* the library must not read this any more */
        } else {
            cgloo_request *r;
            uint8_t *in = malloc(n);
            if (round == 0)
                sync_ranks(e.ctx, 0);
            CHECK_OK(cgloo_irecv(e.ctx, in, n, 0, tag, &r));
            if (round > 0)
                CHECK_OK(cgloo_send(e.ctx, "p", 1, 0, 1001, 0));
            cgloo_completion c;
            CHECK_OK(cgloo_wait(r, 0, &c));
            CHECK(c.bytes == n && check_pattern(in, n, (uint32_t)tag));
            free(in);
        }
    }
    int v = rank, got = -1;
    CHECK_OK(cgloo_allreduce(e.ctx, &v, &got, 1, CGLOO_INT32, CGLOO_SUM, NULL));
    CHECK(got == 1);
    free(buf);
    mesh_close(e);
}

static void test_send_abort(void)
{
    with_store(rank_send_abort, 2, NULL);
}

/* ---- an abort racing completion, many times: either the wait gets the message and the abort
 * finds nothing, or the wait gets EABORTED and the abort says it aborted; never both, never a
 * double free or a touch of freed memory ---- */

enum { RACE_ROUNDS = 400 };

static void spin_us(int us)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        sched_yield();
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) * 1000000 + (t.tv_nsec - t0.tv_nsec) / 1000 < us);
}

static void rank_race(int rank, int size, void *arg)
{
    (void)size, (void)arg;
    rank_env e = mesh_connect(store, rank, 2, 20000);
    int aborted = 0, completed = 0;
    for (int i = 0; i < RACE_ROUNDS; i++) {
        uint64_t tag = 100 + (uint64_t)i;
        uint32_t v = (uint32_t)i * 7919u, got = 0;
        char go = 0;
        if (rank == 1) { /* sends once rank 0 waits, so that the abort meets the arrival */
            CHECK_OK(cgloo_recv(e.ctx, &go, 1, 0, 1002, 0, NULL));
            CHECK_OK(cgloo_send(e.ctx, &v, sizeof v, 0, tag, 0));
            continue;
        }
        cgloo_request *r;
        CHECK_OK(cgloo_irecv(e.ctx, &got, sizeof got, 1, tag, &r));
        uint64_t id = cgloo_request_id(r);
        waiter w;
        waiter_start(&w, r, i % 3 == 0);
        CHECK_OK(cgloo_send(e.ctx, &go, 1, 1, 1002, 0));
        spin_us((i * 37) % 30); /* about the time the message takes to arrive */
        int rc = cgloo_context_abort_request(e.ctx, id);
        pthread_join(w.th, NULL);
        if (rc == CGLOO_OK) {
            CHECK_STATUS(w.rc, CGLOO_EABORTED);
            aborted++;
        } else {
            CHECK_STATUS(rc, CGLOO_ENOTFOUND);
            CHECK_OK(w.rc);
            CHECK(got == v);
            completed++;
        }
    }
    if (rank == 0)
        printf("  %d rounds: %d aborted, %d completed first\n", RACE_ROUNDS, aborted, completed);
    sync_ranks(e.ctx, 1 - rank);
    mesh_close(e);
}

static void test_race(void)
{
    with_store(rank_race, 2, NULL);
}

/* ---- no waiter yet, sets, bad arguments ---- */

static void rank_no_waiter(int rank, int size, void *arg)
{
    (void)size, (void)arg;
    rank_env e = mesh_connect(store, rank, 2, 20000);
    if (rank == 0) {
        int got = -1, srcs[] = {1};
        cgloo_request *r, *s;
        CHECK_OK(cgloo_irecv_any(e.ctx, &got, sizeof got, srcs, 1, 40, &r));
        CHECK_OK(cgloo_context_abort_request(e.ctx, cgloo_request_id(r)));
        int done = 0;
        CHECK_STATUS(cgloo_test(r, &done, NULL), CGLOO_EABORTED);
        CHECK(done == 1);
        /* a send to oneself completes at once: nothing left to abort, wait still succeeds */
        CHECK_OK(cgloo_isend(e.ctx, &got, sizeof got, 0, 41, &s));
        CHECK_STATUS(cgloo_context_abort_request(e.ctx, cgloo_request_id(s)), CGLOO_ENOTFOUND);
        CHECK_OK(cgloo_wait(s, 0, NULL));
        CHECK_OK(cgloo_recv(e.ctx, &got, sizeof got, 0, 41, 0, NULL));
        /* a pending request aborted, then cancelled rather than waited for: freed once */
        CHECK_OK(cgloo_irecv(e.ctx, &got, sizeof got, 1, 42, &r));
        CHECK_OK(cgloo_context_abort_request(e.ctx, cgloo_request_id(r)));
        cgloo_cancel(r);
        CHECK_STATUS(cgloo_context_abort_request(NULL, 1), CGLOO_EINVAL);
        CHECK_STATUS(cgloo_context_abort_request(e.ctx, 0), CGLOO_EINVAL);
        CHECK_STATUS(cgloo_context_abort_request(e.ctx, 1u << 30), CGLOO_ENOTFOUND);
        CHECK(cgloo_request_id(NULL) == 0);
    }
    sync_ranks(e.ctx, 1 - rank);
    mesh_close(e);
}

static void test_no_waiter(void)
{
    with_store(rank_no_waiter, 2, NULL);
}

/* ---- non-blocking collectives: a running one stopped, a queued one withdrawn; the
 * context's point-to-point traffic keeps working ---- */

static void rank_collective(int rank, int size, void *arg)
{
    (void)size, (void)arg;
    rank_env e = mesh_connect(store, rank, 2, 20000);
    if (rank == 0) {
        /* rank 1 never joins: the first runs until aborted, the second stays queued */
        static float v[1024], u[1024];
        cgloo_request *running, *queued;
        CHECK_OK(cgloo_iallreduce(e.ctx, v, v, 1024, CGLOO_FLOAT32, CGLOO_SUM, NULL, &running));
        CHECK_OK(cgloo_ibarrier(e.ctx, NULL, &queued));
        CHECK_OK(cgloo_context_abort_request(e.ctx, cgloo_request_id(queued)));
        int done = 0;
        CHECK_STATUS(cgloo_test(queued, &done, NULL), CGLOO_EABORTED);
        CHECK(done == 1);
        waiter w;
        waiter_start(&w, running, false);
        long long took = abort_waited(e.ctx, &w, cgloo_request_id(running));
        printf("  running allreduce released %lld ms after the abort\n", took);
        char detail[CGLOO_ERROR_MAX];
        cgloo_context_last_error(e.ctx, detail, sizeof detail);
        CHECK(strstr(detail, "unfit for collectives"));
        /* one the waiter runs itself (no progress thread has started it yet) */
        CHECK_OK(cgloo_iallreduce(e.ctx, u, u, 1024, CGLOO_FLOAT32, CGLOO_SUM, NULL, &running));
        waiter_start(&w, running, false);
        abort_waited(e.ctx, &w, cgloo_request_id(running));
    }
    int x = rank, got = -1;
    CHECK_OK(cgloo_send(e.ctx, &x, sizeof x, 1 - rank, 50, 0));
    CHECK_OK(cgloo_recv(e.ctx, &got, sizeof got, 1 - rank, 50, 0, NULL));
    CHECK(got == 1 - rank);
    mesh_close(e);
}

static void test_collective(void)
{
    with_store(rank_collective, 2, NULL);
}

static const test_case tests[] = {
    {"recv_abort", test_recv_abort, 60},
    {"send_abort", test_send_abort, 60},
    {"race", test_race, 120},
    {"no_waiter", test_no_waiter, 30},
    {"collective", test_collective, 60},
};
TEST_MAIN(tests)
