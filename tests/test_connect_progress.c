/*
 * What a failed full-mesh connect says, and what it does not fail on. Ranks are threads over
 * the in-memory store, each with its own TCP device on loopback; absent ranks are records
 * that point at a listener that never answers or at a port where nothing listens.
 *
 * - A connect that times out says on every rank how far it got: how many peers it connected
 *   to, which ranks it still waited for and, for the first few, why (in the store phase: how
 *   many addresses it read and which are missing).
 * - A connect that makes progress is not a stall: every connection made moves its deadline a
 *   timeout on, so a mesh that takes longer in all than the timeout still connects.
 * - A hello that arrives after its context gave up, or at a device whose listener is going
 *   away, is turned away quietly: the dialler dials again until its own deadline and never
 *   fails with EPROTO; when the context comes back, the redial connects.
 */
#include "cgloo_impl.h"
#include "core/context.h"
#include "mesh.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#define NAME "test" /* the context name mesh.h uses */
#define WORLD 7
#define NEVER_EXPIRES "7fffffffffffffff"

static cgloo_store *store;

static void publish_record(const char *name, int rank, const char *addr, uint64_t nonce)
{
    char key[64], val[128];
    snprintf(key, sizeof key, "%s/addr/%d", name, rank);
    int n = snprintf(val, sizeof val, "cgloo2 %s %016" PRIx64 " " NEVER_EXPIRES, addr, nonce);
    CHECK_OK(cgloo_store_set(store, key, val, (size_t)n));
}

/* loopback_socket binds a TCP socket to 127.0.0.1 on a free port and writes "127.0.0.1:port". */
static int loopback_socket(char *addr, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t slen = sizeof sa;
    CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&sa, &slen) == 0);
    snprintf(addr, len, "127.0.0.1:%d", ntohs(sa.sin_port));
    return fd;
}

/* expect_detail fails unless detail holds every one of the NULL-ended phrases. */
static void expect_detail(int line, int rank, int rc, int want, const char *detail, ...)
{
    va_list ap;
    va_start(ap, detail);
    const char *missing = rc != want ? cgloo_status_name(want) : NULL;
    for (const char *p = va_arg(ap, const char *); p && !missing; p = va_arg(ap, const char *))
        if (!strstr(detail, p))
            missing = p;
    va_end(ap);
    if (!missing)
        return;
    char what[1400];
    snprintf(what, sizeof what, "rank %d: got %s, want '%s' in: %s", rank, cgloo_status_name(rc),
             missing, detail);
    harness_fail(__FILE__, line, what, NULL);
}

/* connect_rank makes a context of `name` for rank of size and connects it; gives the status and
 * the context's detail. The device is the caller's when dev is not NULL. */
static int connect_rank(const char *name, int rank, int size, int timeout_ms, cgloo_device *dev,
                        char *detail, size_t len)
{
    cgloo_device *own = NULL;
    if (!dev)
        CHECK_OK(cgloo_device_tcp_create(&mesh_loopback, &own));
    cgloo_context *ctx;
    cgloo_context_attr attr = {.timeout_ms = timeout_ms, .name = name};
    CHECK_OK(cgloo_context_create(rank, size, &attr, &ctx));
    int rc = cgloo_context_connect(ctx, store, dev ? dev : own);
    detail[0] = '\0';
    if (rc != CGLOO_OK)
        cgloo_context_last_error(ctx, detail, len);
    cgloo_context_destroy(ctx);
    cgloo_device_destroy(own);
    return rc;
}

/* ---- the transport phase: ranks 2 and 5 of 7 published addresses but never connect ---------- */

/* Rank 2's address is a listener that never accepts (a dial connects, and no acknowledgement
 * comes); rank 5's a port where nothing listens (a dial is refused). */
static void transport_rank(int rank, int size, void *arg)
{
    (void)arg;
    if (rank == 2 || rank == 5)
        return;
    char detail[CGLOO_ERROR_MAX];
    int rc = connect_rank(NAME, rank, size, 3000, NULL, detail, sizeof detail);
    /* The lower ranks wait for hellos from both; the ranks between dial 2 and wait for 5; rank 6
     * dials both. */
    const char *why2 = rank < 2 ? "2 (no hello arrived)" : "2 (hello sent, no acknowledgement)";
    const char *why5 = rank < 5 ? "5 (no hello arrived)" : "5 (dial refused)";
    expect_detail(__LINE__, rank, rc, CGLOO_ETIMEDOUT, detail, "connected to 4 of 6 peers",
                  "waiting for ranks ", why2, why5, NULL);
    if (rank < 2)
        expect_detail(__LINE__, rank, rc, CGLOO_ETIMEDOUT, detail,
                      "rank 2 (at 127.0.0.1:", "did not connect to this rank's address", NULL);
    else
        expect_detail(__LINE__, rank, rc, CGLOO_ETIMEDOUT, detail,
                      "could not connect to rank 2 at 127.0.0.1:", NULL);
}

static void test_transport_progress(void)
{
    CHECK_OK(cgloo_store_hash_create(&store));
    char silent_addr[64], closed_addr[64];
    int silent = loopback_socket(silent_addr, sizeof silent_addr);
    CHECK(listen(silent, 16) == 0);
    int closed = loopback_socket(closed_addr, sizeof closed_addr); /* bound, not listening */
    publish_record(NAME, 2, silent_addr, 0x2222);
    publish_record(NAME, 5, closed_addr, 0x5555);
    run_ranks(WORLD, transport_rank, NULL);
    close(silent);
    close(closed);
    cgloo_store_destroy(store);
}

/* ---- the store phase: rank 2 never publishes, rank 5's key holds an earlier run's record ---- */

static void store_rank(int rank, int size, void *arg)
{
    (void)arg;
    if (rank == 2 || rank == 5)
        return;
    char detail[CGLOO_ERROR_MAX];
    int rc = connect_rank(NAME, rank, size, 1500, NULL, detail, sizeof detail);
    expect_detail(__LINE__, rank, rc, CGLOO_ETIMEDOUT, detail,
                  "read the addresses of 4 of 6 peers within 1500 ms",
                  "missing: ranks 2 (not published), 5 (an earlier run's record)",
                  "rank 2 never published its address ('test/addr/2')", NULL);
}

static void test_store_progress(void)
{
    CHECK_OK(cgloo_store_hash_create(&store));
    CHECK_OK(cgloo_store_set(store, NAME "/addr/5", "cgloo2 done", 11));
    run_ranks(WORLD, store_rank, NULL);
    cgloo_store_destroy(store);
}

/* A rank alone in a world of 40: the list names the first sixteen, the reason for the first
 * four, and counts the rest. */
static void test_many_missing(void)
{
    CHECK_OK(cgloo_store_hash_create(&store));
    char detail[CGLOO_ERROR_MAX];
    int rc = connect_rank(NAME, 0, 40, 300, NULL, detail, sizeof detail);
    expect_detail(__LINE__, 0, rc, CGLOO_ETIMEDOUT, detail,
                  "read the addresses of 0 of 39 peers within 300 ms",
                  "missing: ranks 1 (not published), 2 (not published), 3 (not published), "
                  "4 (not published), 5, 6, 7, ",
                  ", 16, ... (and 23 more)", NULL);
    CHECK(strlen(detail) < CGLOO_ERROR_MAX - 1);
    cgloo_store_destroy(store);
}

/* ---- late hellos ------------------------------------------------------------------------------
 */

typedef struct late_dial {
    pthread_t thread;
    const char *name;
    int timeout_ms, rc;
    char detail[CGLOO_ERROR_MAX];
} late_dial;

static void *late_dial_main(void *arg)
{
    late_dial *d = arg;
    d->rc = connect_rank(d->name, 1, 2, d->timeout_ms, NULL, d->detail, sizeof d->detail);
    return NULL;
}

static void late_dial_start(late_dial *d, const char *name, int timeout_ms)
{
    *d = (late_dial){.name = name, .timeout_ms = timeout_ms};
    CHECK(pthread_create(&d->thread, NULL, late_dial_main, d) == 0);
}

/* Rank 0 of "late" gave up (its connect timed out before rank 1 came) and its device is kept:
 * rank 1 dials it while rank 0 of another context, "busy", waits on the same device for a rank
 * 1 that never dials and so serves it, turning rank 1's hello away (no context of that name is
 * connecting there). Rank 1 dials again, and connects once rank 0 of "late" tries again. */
typedef struct busy_rank {
    pthread_t thread;
    cgloo_device *dev;
    int rc;
    char detail[CGLOO_ERROR_MAX];
} busy_rank;

static void *busy_main(void *arg)
{
    busy_rank *b = arg;
    b->rc = connect_rank("busy", 0, 2, 4000, b->dev, b->detail, sizeof b->detail);
    return NULL;
}

static int rejects_seen;
static void count_rejects(cgloo_log_level level, const char *line, void *user)
{
    (void)level, (void)user;
    if (strstr(line, "no connecting context matches"))
        __atomic_add_fetch(&rejects_seen, 1, __ATOMIC_RELAXED);
}

static void test_late_hello_redialled(void)
{
    CHECK_OK(cgloo_store_hash_create(&store));
    cgloo_log_set_sink(count_rejects, NULL);
    cgloo_log_set_level(CGLOO_LOG_WARN);
    cgloo_device *dev0;
    CHECK_OK(cgloo_device_tcp_create(&mesh_loopback, &dev0));
    cgloo_context *late0;
    CHECK_OK(cgloo_context_create(0, 2, &(cgloo_context_attr){.timeout_ms = 200, .name = "late"},
                                  &late0));
    CHECK_STATUS(cgloo_context_connect(late0, store, dev0), CGLOO_ETIMEDOUT);
    publish_record("busy", 1, "127.0.0.1:9", 0x1111);
    busy_rank b0 = {.dev = dev0};
    CHECK(pthread_create(&b0.thread, NULL, busy_main, &b0) == 0);
    late_dial d;
    late_dial_start(&d, "late", 10000);
    long long until = test_now_ms() + 8000;
    while (__atomic_load_n(&rejects_seen, __ATOMIC_RELAXED) < 2 && test_now_ms() < until)
        test_sleep_ms(10);
    CHECK(__atomic_load_n(&rejects_seen, __ATOMIC_RELAXED) >= 2); /* turned away, dialled again */
    CHECK_OK(cgloo_context_set_timeout(late0, 10000));
    CHECK_OK(cgloo_context_connect(late0, store, dev0));
    pthread_join(d.thread, NULL);
    if (d.rc != CGLOO_OK)
        harness_fail(__FILE__, __LINE__, "rank 1 of 'late' did not connect", d.detail);
    pthread_join(b0.thread, NULL);
    expect_detail(__LINE__, 0, b0.rc, CGLOO_ETIMEDOUT, b0.detail,
                  "waiting for rank 1 (no hello arrived)", NULL);
    cgloo_log_set_sink(NULL, NULL);
    cgloo_context_destroy(late0);
    cgloo_device_destroy(dev0);
    cgloo_store_destroy(store);
}

/* Rank 0 gave up and then its device goes away with rank 1's dial still waiting in its
 * listener's queue: the listener's close resets it. Rank 1 dials again (refused now) until its
 * deadline, and fails with a status that says so, not with EPROTO. */
static void test_late_hello_reset(void)
{
    CHECK_OK(cgloo_store_hash_create(&store));
    cgloo_device *dev0;
    CHECK_OK(cgloo_device_tcp_create(&mesh_loopback, &dev0));
    cgloo_context *ctx0;
    CHECK_OK(
        cgloo_context_create(0, 2, &(cgloo_context_attr){.timeout_ms = 200, .name = NAME}, &ctx0));
    CHECK_STATUS(cgloo_context_connect(ctx0, store, dev0), CGLOO_ETIMEDOUT);
    late_dial d;
    late_dial_start(&d, NAME, 2500);
    test_sleep_ms(500); /* rank 1 has dialled: its hello waits in rank 0's listen queue */
    cgloo_context_destroy(ctx0);
    cgloo_device_destroy(dev0);
    pthread_join(d.thread, NULL);
    expect_detail(__LINE__, 1, d.rc, CGLOO_ECONNREFUSED, d.detail, "connected to 0 of 1 peers",
                  "waiting for rank 0 (dial refused)", "could not connect to rank 0", NULL);
    cgloo_store_destroy(store);
}

/* ---- progress moves the deadline: peers that come one by one, 400 ms apart ----------------- */

#define SLOW_WORLD 7
#define SLOW_GAP_MS 400
#define SLOW_TIMEOUT_MS 1200

typedef struct slow_rank {
    pthread_t thread;
    cgloo_context *ctx;
    cgloo_device *dev;
    int delay_ms, rc;
    long long took_ms;
    char detail[CGLOO_ERROR_MAX];
} slow_rank;

static pthread_barrier_t slow_done;

/* slow_main connects its rank after its delay, then closes it together with the others (a
 * context's close waits a short linger for its peers to close too). */
static void *slow_main(void *arg)
{
    slow_rank *s = arg;
    test_sleep_ms(s->delay_ms);
    long long start = test_now_ms();
    s->rc = cgloo_context_connect(s->ctx, store, s->dev);
    s->took_ms = test_now_ms() - start;
    if (s->rc != CGLOO_OK)
        cgloo_context_last_error(s->ctx, s->detail, sizeof s->detail);
    pthread_barrier_wait(&slow_done);
    cgloo_context_destroy(s->ctx);
    cgloo_device_destroy(s->dev);
    return NULL;
}

/* Rank 0 (timeout 1.2 s) accepts from ranks 1 to 6, whose records are in the store from the
 * start but who begin to connect 400 ms apart: rank 0's mesh takes 2.4 s, twice its timeout, and
 * connects, because each new connection comes within a timeout of the one before. */
static void test_progress_moves_deadline(void)
{
    CHECK_OK(cgloo_store_hash_create(&store));
    slow_rank r[SLOW_WORLD] = {0};
    for (int k = 0; k < SLOW_WORLD; k++) {
        CHECK_OK(cgloo_device_tcp_create(&mesh_loopback, &r[k].dev));
        cgloo_context_attr attr = {.timeout_ms = k == 0 ? SLOW_TIMEOUT_MS : 20000, .name = "slow"};
        CHECK_OK(cgloo_context_create(k, SLOW_WORLD, &attr, &r[k].ctx));
        r[k].delay_ms = k * SLOW_GAP_MS;
        char addr[CGLOO_TRANSPORT_ADDR_MAX];
        CHECK_OK(cgloo_device_address(r[k].dev, addr, sizeof addr));
        if (k > 0) /* rank 0 reads every record at once; only the connections come late */
            publish_record("slow", k, addr, r[k].ctx->nonce);
    }
    CHECK(pthread_barrier_init(&slow_done, NULL, SLOW_WORLD) == 0);
    for (int k = 0; k < SLOW_WORLD; k++)
        CHECK(pthread_create(&r[k].thread, NULL, slow_main, &r[k]) == 0);
    for (int k = 0; k < SLOW_WORLD; k++)
        pthread_join(r[k].thread, NULL);
    pthread_barrier_destroy(&slow_done);
    for (int k = 0; k < SLOW_WORLD; k++)
        if (r[k].rc != CGLOO_OK)
            harness_fail(__FILE__, __LINE__, "a rank of the slow mesh did not connect",
                         r[k].detail);
    CHECK(r[0].took_ms > SLOW_TIMEOUT_MS); /* longer than its timeout in all */
    cgloo_store_destroy(store);
}

static const test_case tests[] = {
    {"transport_progress", test_transport_progress, 60},
    {"store_progress", test_store_progress, 60},
    {"many_missing", test_many_missing, 30},
    {"late_hello_redialled", test_late_hello_redialled, 60},
    {"late_hello_reset", test_late_hello_reset, 30},
    {"progress_moves_deadline", test_progress_moves_deadline, 60},
};
TEST_MAIN(tests)
