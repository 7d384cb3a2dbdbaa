/*
 * Stores that outlive a run: consecutive runs on one store namespace (no run id) over the file
 * store and the TCP store, each rank with its own store handle as separate processes would
 * have; what an earlier run that died during its rendezvous left (an expired record, a done
 * mark, a stray count) is ignored; two runs that overlap fail at once with EBUSY and a message
 * saying so, never hang or report a protocol violation.
 */
#include "mesh.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#define RUNS 15
#define TIMEOUT_MS 10000

typedef struct world {
    const char *url; /* every rank opens its own handle */
    int size;
} world;

static cgloo_store *open_store(const char *url)
{
    cgloo_store *s;
    CHECK_OK(cgloo_store_open(url, TIMEOUT_MS, &s));
    return s;
}

/* rank_run connects one rank and runs an allreduce that proves the mesh is this run's. */
static void rank_run(int rank, int size, void *arg)
{
    const world *w = arg;
    cgloo_store *s = open_store(w->url);
    rank_env e = mesh_connect(s, rank, size, TIMEOUT_MS);
    int64_t v = rank + 1;
    CHECK_OK(cgloo_allreduce(e.ctx, &v, &v, 1, CGLOO_INT64, CGLOO_SUM, NULL));
    CHECK(v == (int64_t)size * (size + 1) / 2);
    mesh_close(e);
    cgloo_store_destroy(s);
}

static void consecutive_runs(const char *url)
{
    world w = {url, 3};
    for (int run = 0; run < RUNS; run++)
        run_ranks(w.size, rank_run, &w);
    /* a clean run leaves none of its rendezvous keys behind */
    cgloo_store *s = open_store(url);
    const char *keys[] = {"test/addr/0", "test/addr/1", "test/joins/0"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        int present = 1;
        CHECK_OK(cgloo_store_check(s, &keys[i], 1, &present));
        CHECK(!present);
    }
    cgloo_store_destroy(s);
}

static void test_consecutive_file(void)
{
    char url[600];
    snprintf(url, sizeof url, "file://%s", test_tmpdir());
    consecutive_runs(url);
}

static void test_consecutive_tcp(void)
{
    cgloo_store_server *srv;
    CHECK_OK(cgloo_store_server_start("127.0.0.1", 0, &srv));
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", cgloo_store_server_port(srv));
    consecutive_runs(url);
    cgloo_store_server_stop(srv);
}

/* ---- what a run that died during its rendezvous leaves ----------------------------------------
 */

static int64_t unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* leave_record writes rank's record as a dead run would have, expiring at `expiry`. */
static void leave_record(cgloo_store *s, int rank, int64_t expiry)
{
    char key[32], rec[128];
    snprintf(key, sizeof key, "test/addr/%d", rank);
    int n = snprintf(rec, sizeof rec, "cgloo2 127.0.0.1:1 00000000000000aa %016" PRIx64,
                     (uint64_t)expiry);
    CHECK_OK(cgloo_store_set(s, key, rec, (size_t)n));
    snprintf(key, sizeof key, "test/joins/%d", rank);
    int64_t joins;
    CHECK_OK(cgloo_store_add(s, key, 1, &joins));
}

static void test_leftovers_are_ignored(void)
{
    char url[600];
    snprintf(url, sizeof url, "file://%s", test_tmpdir());
    cgloo_store *s = open_store(url);
    leave_record(s, 1, unix_ms() - 1000); /* expired: its run is long over */
    leave_record(s, 2, unix_ms() - 1);
    CHECK_OK(cgloo_store_set(s, "test/addr/0", "cgloo2 done", 11)); /* a done mark */
    world w = {url, 3};
    long long t0 = test_now_ms();
    run_ranks(w.size, rank_run, &w);
    CHECK(test_now_ms() - t0 < 5000);
    /* An expired record that a fresh one replaces only late: the readers wait for it. */
    leave_record(s, 1, unix_ms() - 1);
    run_ranks(w.size, rank_run, &w);
    cgloo_store_destroy(s);
}

/* ---- overlapping runs --------------------------------------------------------------------------
 */

typedef struct overlap {
    const char *url;
    int status;
    char detail[512];
    long long took_ms;
} overlap;

/* join_run connects rank 0 of a 2-rank run and keeps the outcome. */
static void *join_run(void *p)
{
    overlap *o = p;
    cgloo_store *s = open_store(o->url);
    cgloo_device *dev;
    cgloo_context *ctx;
    CHECK_OK(cgloo_device_tcp_create(NULL, &dev));
    cgloo_context_attr attr = {.timeout_ms = TIMEOUT_MS, .name = "test"};
    CHECK_OK(cgloo_context_create(0, 2, &attr, &ctx));
    long long t0 = test_now_ms();
    o->status = cgloo_context_connect(ctx, s, dev);
    o->took_ms = test_now_ms() - t0;
    cgloo_context_last_error(ctx, o->detail, sizeof o->detail);
    if (o->status == CGLOO_OK)
        CHECK_OK(cgloo_barrier(ctx, NULL));
    cgloo_context_destroy(ctx);
    cgloo_device_destroy(dev);
    cgloo_store_destroy(s);
    return NULL;
}

static void rank1_of_2(int rank, int size, void *arg)
{
    (void)rank;
    (void)size;
    rank_env e = mesh_connect(arg, 1, 2, TIMEOUT_MS);
    CHECK_OK(cgloo_barrier(e.ctx, NULL));
    mesh_close(e);
}

/* Run A's rank 0 waits in its rendezvous; run B's rank 0 starts on the same namespace and
 * fails at once; then A's rank 1 arrives and A connects as if B had never been there. */
static void test_overlap_fails_fast(void)
{
    char url[600];
    snprintf(url, sizeof url, "file://%s", test_tmpdir());
    overlap a = {url, -1, "", 0}, b = {url, -1, "", 0};
    pthread_t ta;
    CHECK(pthread_create(&ta, NULL, join_run, &a) == 0);
    test_sleep_ms(300); /* A has published */
    join_run(&b);
    CHECK(b.status == CGLOO_EBUSY);
    CHECK(b.took_ms < 2000);
    if (!strstr(b.detail, "another run"))
        harness_fail(__FILE__, __LINE__, "the overlap is not named", b.detail);
    cgloo_store *s = open_store(url);
    run_ranks(1, rank1_of_2, s);
    pthread_join(ta, NULL);
    if (a.status != CGLOO_OK)
        harness_fail(__FILE__, __LINE__, cgloo_status_name(a.status), a.detail);
    cgloo_store_destroy(s);
}

static const test_case tests[] = {
    {"consecutive_file", test_consecutive_file, 120},
    {"consecutive_tcp", test_consecutive_tcp, 120},
    {"leftovers_are_ignored", test_leftovers_are_ignored, 60},
    {"overlap_fails_fast", test_overlap_fails_fast, 60},
};
TEST_MAIN(tests)
