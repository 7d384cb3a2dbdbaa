/*
 * The flight recorder: a dump after a few operations shows them (collectives and the caller's
 * point-to-point calls); the ring keeps the latest N; a timeout (one rank frozen) writes the
 * dump to the log naming the peer and step the operation was waiting for; the opt-in signal
 * writes it from a child process with async-signal-safe calls, and no handler is installed
 * without the opt-in; a recorder of 0 entries is off; dumping while other threads run
 * collectives is safe (the sanitizer builds run this).
 */
#include "mesh.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define TIMEOUT_MS 20000

/* dump_text: the context's dump as a string (static buffer). */
static const char *dump_text(cgloo_context *ctx)
{
    static _Thread_local char text[64 * 1024]; /* ranks are threads */
    memset(text, 0, sizeof text);
    FILE *f = fmemopen(text, sizeof text - 1, "w");
    CHECK(f);
    CHECK_OK(cgloo_context_dump(ctx, f));
    fclose(f);
    return text;
}

static void require(const char *text, const char *want)
{
    if (!strstr(text, want))
        harness_fail(__FILE__, __LINE__, want, text);
}

/* ---- a dump after a few operations -------------------------------------------------------- */

static void few_ops(int rank, int size, void *arg)
{
    rank_env e = mesh_connect(arg, rank, size, TIMEOUT_MS);
    float v[16] = {1};
    CHECK_OK(cgloo_allreduce(e.ctx, v, v, 16, CGLOO_FLOAT32, CGLOO_SUM, NULL));
    CHECK_OK(cgloo_broadcast(e.ctx, v, 4, CGLOO_FLOAT32, 1, &(cgloo_coll_opts){.tag = 9}));
    CHECK_OK(cgloo_barrier(e.ctx, NULL));
    int64_t x = rank;
    if (rank == 0)
        CHECK_OK(cgloo_send(e.ctx, &x, sizeof x, 1, 77, 0));
    else
        CHECK_OK(cgloo_recv(e.ctx, &x, sizeof x, 0, 77, 0, NULL));
    const char *t = dump_text(e.ctx);
    require(t, "flight recorder of context 'test', rank ");
    require(t, "#1 allreduce(direct) tag 0 count 16 float32: started ");
    require(t, "#2 broadcast(");
    require(t, "tag 9 count 4 float32 root 1");
    require(t, "#3 barrier(");
    require(t, rank == 0 ? "#4 send tag 77 bytes 8 peer 1" : "#4 recv tag 77 bytes 8 peer 0");
    CHECK(!strstr(t, "running"));
    CHECK(!strstr(t, "failed"));
    mesh_close(e);
}

static void test_dump_shows_ops(void)
{
    cgloo_store *s;
    CHECK_OK(cgloo_store_hash_create(&s));
    run_ranks(2, few_ops, s);
    cgloo_store_destroy(s);
}

/* ---- the ring keeps the latest; 0 turns it off -------------------------------------------- */

static void test_ring_wraps(void)
{
    cgloo_context *ctx;
    cgloo_context_attr attr = {.name = "ring", .flight_recorder = 4};
    CHECK_OK(cgloo_context_create(0, 1, &attr, &ctx));
    CHECK_OK(cgloo_context_connect(ctx, NULL, NULL));
    int x = 1;
    for (int i = 0; i < 10; i++)
        CHECK_OK(cgloo_allreduce(ctx, &x, &x, 1, CGLOO_INT32, CGLOO_SUM, NULL));
    const char *t = dump_text(ctx);
    require(t, "operations 7 to 10");
    require(t, "#7 allreduce");
    require(t, "#10 allreduce");
    CHECK(!strstr(t, "#6 "));
    cgloo_context_destroy(ctx);
}

static void test_zero_disables(void)
{
    cgloo_context *ctx;
    cgloo_context_attr attr = {.name = "off", .flight_recorder = -1};
    CHECK_OK(cgloo_context_create(0, 1, &attr, &ctx));
    CHECK_STATUS(cgloo_context_dump(ctx, stderr), CGLOO_ENOTSUP);
    cgloo_context_destroy(ctx);
    setenv("CGLOO_FLIGHT_RECORDER", "0", 1);
    attr.flight_recorder = 0;
    CHECK_OK(cgloo_context_create(0, 1, &attr, &ctx));
    CHECK_STATUS(cgloo_context_dump(ctx, stderr), CGLOO_ENOTSUP);
    cgloo_context_destroy(ctx);
    setenv("CGLOO_FLIGHT_RECORDER", "70000", 1);
    CHECK_STATUS(cgloo_context_create(0, 1, &attr, &ctx), CGLOO_EINVAL);
    unsetenv("CGLOO_FLIGHT_RECORDER");
    CHECK_STATUS(cgloo_context_dump(NULL, stderr), CGLOO_EINVAL);
}

/* ---- a timeout logs the dump -------------------------------------------------------------- */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_text[64 * 1024];

static void log_sink(cgloo_log_level level, const char *line, void *user)
{
    (void)user;
    if (level != CGLOO_LOG_ERROR)
        return;
    pthread_mutex_lock(&log_lock);
    size_t n = strlen(log_text);
    snprintf(log_text + n, sizeof log_text - n, "%s\n", line);
    pthread_mutex_unlock(&log_lock);
}

/* Rank 1 is frozen (it makes no call until rank 0 has timed out). */
static void frozen_peer(int rank, int size, void *arg)
{
    rank_env e = mesh_connect(arg, rank, size, 1000);
    if (rank == 1) {
        test_sleep_ms(2000);
    } else {
        CHECK_STATUS(cgloo_barrier(e.ctx, &(cgloo_coll_opts){.tag = 3}), CGLOO_ETIMEDOUT);
        char detail[1024];
        cgloo_context_last_error(e.ctx, detail, sizeof detail);
        require(detail, "receive from rank 1 failed: timed out");
    }
    mesh_close(e);
}

static void test_timeout_logs_dump(void)
{
    cgloo_log_set_sink(log_sink, NULL);
    cgloo_log_set_level(CGLOO_LOG_ERROR);
    cgloo_store *s;
    CHECK_OK(cgloo_store_hash_create(&s));
    run_ranks(2, frozen_peer, s);
    cgloo_store_destroy(s);
    cgloo_log_set_level(CGLOO_LOG_OFF);
    require(log_text, "cgloo error [0/2] flight recorder of context 'test', rank 0 of 2");
    require(log_text, "#1 barrier(");
    require(log_text, "tag 3");
    require(log_text, "running, waiting for rank 1: receive, step 0");
}

/* A caller's receive that times out logs the dump too, with the receive still running. */
static void test_p2p_timeout_logs_dump(void)
{
    cgloo_log_set_sink(log_sink, NULL);
    cgloo_log_set_level(CGLOO_LOG_ERROR);
    cgloo_context *ctx;
    cgloo_context_attr attr = {.name = "p2p"};
    CHECK_OK(cgloo_context_create(0, 1, &attr, &ctx));
    CHECK_OK(cgloo_context_connect(ctx, NULL, NULL));
    int x;
    CHECK_STATUS(cgloo_recv(ctx, &x, sizeof x, 0, 5, 100, NULL), CGLOO_ETIMEDOUT);
    cgloo_log_set_level(CGLOO_LOG_OFF);
    require(log_text, "flight recorder of context 'p2p', rank 0 of 1");
    require(log_text, "#1 recv tag 5 bytes 4 peer 0: started ");
    require(log_text, "running");
    require(dump_text(ctx), "#1 recv tag 5 bytes 4 peer 0: started ");
    require(dump_text(ctx), "failed: ETIMEDOUT");
    cgloo_context_destroy(ctx);
}

/* ---- the opt-in signal -------------------------------------------------------------------- */

static void signal_child(const char *file)
{
    setenv("CGLOO_DUMP_FILE", file, 1);
    setenv("CGLOO_DUMP_SIGNAL", "SIGUSR2", 1);
    cgloo_context *ctx;
    cgloo_context_attr attr = {.name = "sig"};
    if (cgloo_context_create(0, 1, &attr, &ctx) != CGLOO_OK ||
        cgloo_context_connect(ctx, NULL, NULL) != CGLOO_OK)
        _exit(2);
    int x = 1;
    for (int i = 0; i < 3; i++)
        if (cgloo_allreduce(ctx, &x, &x, 1, CGLOO_INT32, CGLOO_SUM, NULL) != CGLOO_OK)
            _exit(3);
    raise(SIGUSR2);
    cgloo_context_destroy(ctx);
    raise(SIGUSR2); /* still installed, writes nothing for a destroyed context */
    _exit(0);
}

static void test_signal_dump(void)
{
    char file[600];
    snprintf(file, sizeof file, "%s/dump.txt", test_tmpdir());
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        signal_child(file);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    char text[8192] = "";
    FILE *f = fopen(file, "r");
    CHECK(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    require(text, "flight recorder of context 'sig', rank 0 of 1: operations 1 to 3");
    require(text, "#3 allreduce");
    require(text, "done");
}

static void test_no_handler_without_opt_in(void)
{
    cgloo_context *ctx;
    cgloo_context_attr attr = {.name = "quiet"};
    CHECK_OK(cgloo_context_create(0, 1, &attr, &ctx));
    struct sigaction sa;
    CHECK(sigaction(SIGUSR2, NULL, &sa) == 0);
    CHECK(sa.sa_handler == SIG_DFL);
    cgloo_context_destroy(ctx);
    setenv("CGLOO_DUMP_SIGNAL", "SIGNOPE", 1);
    CHECK_STATUS(cgloo_context_create(0, 1, &attr, &ctx), CGLOO_EINVAL);
    unsetenv("CGLOO_DUMP_SIGNAL");
}

/* ---- dumping while collectives run -------------------------------------------------------- */

typedef struct busy {
    cgloo_context *ctx;
    volatile int stop;
} busy;

static void *busy_thread(void *p)
{
    busy *b = p;
    cgloo_coll_opts opts = {.tag = 1};
    int x = 1;
    while (!__atomic_load_n(&b->stop, __ATOMIC_RELAXED))
        CHECK_OK(cgloo_allreduce(b->ctx, &x, &x, 1, CGLOO_INT32, CGLOO_SUM, &opts));
    return NULL;
}

static void test_dump_while_running(void)
{
    cgloo_context_attr attr = {.name = "busy", .flight_recorder = 8};
    busy b = {0};
    CHECK_OK(cgloo_context_create(0, 1, &attr, &b.ctx));
    CHECK_OK(cgloo_context_connect(b.ctx, NULL, NULL));
    int x = 1;
    CHECK_OK(cgloo_allreduce(b.ctx, &x, &x, 1, CGLOO_INT32, CGLOO_SUM, NULL));
    pthread_t th;
    CHECK(pthread_create(&th, NULL, busy_thread, &b) == 0);
    int whole = 0; /* dumps that caught an entry whole while the ring turned */
    for (int i = 0; i < 200; i++) {
        const char *t = dump_text(b.ctx);
        require(t, "flight recorder of context 'busy'");
        whole += strstr(t, "allreduce") != NULL;
    }
    CHECK(whole > 0);
    __atomic_store_n(&b.stop, 1, __ATOMIC_RELAXED);
    pthread_join(th, NULL);
    cgloo_context_destroy(b.ctx);
}

static const test_case tests[] = {
    {"dump_shows_ops", test_dump_shows_ops, 30},
    {"ring_wraps", test_ring_wraps, 10},
    {"zero_disables", test_zero_disables, 10},
    {"timeout_logs_dump", test_timeout_logs_dump, 30},
    {"p2p_timeout_logs_dump", test_p2p_timeout_logs_dump, 20},
    {"signal_dump", test_signal_dump, 20},
    {"no_handler_without_opt_in", test_no_handler_without_opt_in, 10},
    {"dump_while_running", test_dump_while_running, 30},
};
TEST_MAIN(tests)
