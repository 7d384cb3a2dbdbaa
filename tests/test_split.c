/*
 * Sub-contexts (cgloo_context_split) over real TCP connections: ranks as threads for the
 * semantics (even/odd at 4 and 5 ranks, key order, negative colors, a dup, nested splits, many
 * splits without leaking descriptors, siblings using the same tag at once, bad arguments), and
 * ranks as processes for a rank killed during a split, which every survivor must report naming
 * it, within its timeout.
 */
#include "mesh.h"

#include <dirent.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define TIMEOUT_MS 20000

static cgloo_store *store;

static void with_store(void (*fn)(int, int, void *), int size, void *arg)
{
    CHECK_OK(cgloo_store_hash_create(&store));
    run_ranks(size, fn, arg);
    cgloo_store_destroy(store);
}

/* split_ok splits and fails the test with the context's detail when the split fails. */
static cgloo_context *split_ok(cgloo_context *parent, int color, int key)
{
    cgloo_context *child = (cgloo_context *)&child; /* must be overwritten */
    int rc = cgloo_context_split(parent, color, key, &child);
    if (rc != CGLOO_OK) {
        char detail[CGLOO_ERROR_MAX];
        cgloo_context_last_error(parent, detail, sizeof detail);
        harness_fail(__FILE__, __LINE__, "cgloo_context_split", detail);
    }
    CHECK(child != (cgloo_context *)&child);
    return child;
}

/* sum_check allreduces `value` (count copies) over ctx and checks the sum against want. */
static void sum_check(cgloo_context *ctx, int64_t value, int64_t want, size_t count, uint64_t tag)
{
    int64_t *buf = malloc(count * sizeof *buf);
    CHECK(buf != NULL);
    for (size_t i = 0; i < count; i++)
        buf[i] = value + (int64_t)i;
    cgloo_coll_opts opts = {.tag = tag};
    CHECK_OK(cgloo_allreduce(ctx, buf, buf, count, CGLOO_INT64, CGLOO_SUM, &opts));
    int n = cgloo_context_size(ctx);
    for (size_t i = 0; i < count; i++)
        CHECK(buf[i] == want + (int64_t)n * (int64_t)i);
    free(buf);
}

/* gather_check allgathers `value` over ctx and checks that entry r is want[r]. */
static void gather_check(cgloo_context *ctx, int value, const int *want)
{
    int n = cgloo_context_size(ctx), got[64];
    CHECK(n <= 64);
    CHECK_OK(cgloo_allgather(ctx, &value, got, 1, CGLOO_INT32, NULL));
    for (int r = 0; r < n; r++)
        CHECK(got[r] == want[r]);
}

/* ---- even and odd ranks, parent and children used in turn ---------------------------------- */

static void rank_even_odd(int rank, int size, void *arg)
{
    (void)arg;
    rank_env e = mesh_connect(store, rank, size, TIMEOUT_MS);
    cgloo_context *child = split_ok(e.ctx, rank % 2, rank);
    int csize = (size + 1 - rank % 2) / 2;
    CHECK(cgloo_context_rank(child) == rank / 2);
    CHECK(cgloo_context_size(child) == csize);
    int want[64], wsum = 0;
    for (int c = 0; c < csize; c++) {
        want[c] = 2 * c + rank % 2; /* the parent rank of child rank c */
        wsum += want[c];
    }
    for (int round = 0; round < 3; round++) {
        sum_check(child, rank, wsum, 1000, 0);
        sum_check(e.ctx, rank, size * (size - 1) / 2, 1000, 0);
        gather_check(child, rank, want);
        CHECK_OK(cgloo_barrier(e.ctx, NULL));
    }
    cgloo_context_destroy(child);
    sum_check(e.ctx, rank, size * (size - 1) / 2, 10, 0); /* the parent outlives its child */
    mesh_close(e);
}

static void test_even_odd_4(void)
{
    with_store(rank_even_odd, 4, NULL);
}

static void test_even_odd_5(void)
{
    with_store(rank_even_odd, 5, NULL);
}

/* ---- key order ---------------------------------------------------------------------------- */

static void rank_keys(int rank, int size, void *arg)
{
    (void)arg;
    rank_env e = mesh_connect(store, rank, size, TIMEOUT_MS);
    cgloo_context *rev = split_ok(e.ctx, 0, size - rank); /* reversed */
    CHECK(cgloo_context_rank(rev) == size - 1 - rank);
    int want[64];
    for (int c = 0; c < size; c++)
        want[c] = size - 1 - c;
    gather_check(rev, rank, want);
    /* Equal keys keep the parent's order: odd ranks (key 0) first, then even ones (key 1). */
    cgloo_context *ties = split_ok(e.ctx, 3, rank % 2 == 0);
    int odd = size / 2;
    CHECK(cgloo_context_rank(ties) == (rank % 2 ? rank / 2 : odd + rank / 2));
    cgloo_context_destroy(rev);
    cgloo_context_destroy(ties);
    mesh_close(e);
}

static void test_key_order(void)
{
    with_store(rank_keys, 5, NULL);
}

/* ---- negative colors, a dup, a size-1 parent ----------------------------------------------- */

static void rank_undefined(int rank, int size, void *arg)
{
    (void)arg;
    rank_env e = mesh_connect(store, rank, size, TIMEOUT_MS);
    int color = rank == 0 ? CGLOO_UNDEFINED : rank == 1 ? -7 : 4;
    cgloo_context *child = split_ok(e.ctx, color, 0);
    if (rank < 2) {
        CHECK(child == NULL);
    } else {
        CHECK(cgloo_context_rank(child) == rank - 2);
        CHECK(cgloo_context_size(child) == size - 2);
        sum_check(child, rank, (size - 1) * size / 2 - 1, 7, 0);
    }
    /* A rank alone in its color gets a context of one rank. */
    cgloo_context *alone = split_ok(e.ctx, rank, 0);
    CHECK(cgloo_context_size(alone) == 1 && cgloo_context_rank(alone) == 0);
    sum_check(alone, rank, rank, 3, 0);
    /* Every rank in one color: a duplicate of the parent. */
    cgloo_context *dup = split_ok(e.ctx, 9, 0);
    CHECK(cgloo_context_rank(dup) == rank && cgloo_context_size(dup) == size);
    sum_check(dup, rank, size * (size - 1) / 2, 100, 0);
    cgloo_context_destroy(child);
    cgloo_context_destroy(alone);
    cgloo_context_destroy(dup);
    mesh_close(e);
}

static void test_undefined_and_dup(void)
{
    with_store(rank_undefined, 4, NULL);
}

static void test_one_rank(void)
{
    cgloo_context *ctx, *child;
    CHECK_OK(cgloo_context_create(0, 1, NULL, &ctx));
    CHECK_OK(cgloo_context_connect(ctx, NULL, NULL));
    child = split_ok(ctx, 0, 0);
    CHECK(cgloo_context_size(child) == 1);
    sum_check(child, 5, 5, 4, 0);
    CHECK_OK(cgloo_context_split(ctx, CGLOO_UNDEFINED, 0, &child) == CGLOO_OK && child == NULL
                 ? CGLOO_OK
                 : CGLOO_EIO);
    cgloo_context_destroy(ctx);
}

/* ---- nested splits ------------------------------------------------------------------------ */

static void rank_nested(int rank, int size, void *arg)
{
    (void)arg;
    rank_env e = mesh_connect(store, rank, size, TIMEOUT_MS);
    cgloo_context *half = split_ok(e.ctx, rank < size / 2, rank); /* 0..2 and 3..6 */
    int hr = cgloo_context_rank(half);
    cgloo_context *quarter = split_ok(half, hr % 2, -hr);
    int hsize = cgloo_context_size(half);
    int qsize = (hsize + 1 - hr % 2) / 2;
    CHECK(cgloo_context_size(quarter) == qsize);
    CHECK(cgloo_context_rank(quarter) == qsize - 1 - hr / 2);
    int base = rank < size / 2 ? 0 : size / 2, want = 0;
    for (int h = hr % 2; h < hsize; h += 2)
        want += base + h;
    sum_check(quarter, rank, want, 50, 0);
    sum_check(half, rank, rank < size / 2 ? 3 : 3 + 4 + 5 + 6, 50, 0);
    sum_check(e.ctx, rank, size * (size - 1) / 2, 50, 0);
    cgloo_context_destroy(half); /* before its own child */
    sum_check(quarter, rank, want, 5, 0);
    cgloo_context_destroy(quarter);
    /* A child outlives its parent and the parent's device (which it holds), and splits again
     * through that device. */
    cgloo_context *dup = split_ok(e.ctx, 0, rank);
    mesh_close(e);
    sum_check(dup, rank, size * (size - 1) / 2, 5, 0);
    cgloo_context *again = split_ok(dup, rank % 2, rank);
    cgloo_context_destroy(dup);
    CHECK(cgloo_context_size(again) == (size + 1 - rank % 2) / 2);
    CHECK_OK(cgloo_barrier(again, NULL));
    cgloo_context_destroy(again);
}

static void test_nested(void)
{
    with_store(rank_nested, 7, NULL);
}

/* ---- many splits: no descriptor leaks ------------------------------------------------------- */

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static int fds_before, fds_after;

static void rank_many(int rank, int size, void *arg)
{
    (void)arg;
    rank_env e = mesh_connect(store, rank, size, TIMEOUT_MS);
    CHECK_OK(cgloo_barrier(e.ctx, NULL));
    if (rank == 0)
        fds_before = count_fds();
    CHECK_OK(cgloo_barrier(e.ctx, NULL));
    for (int i = 0; i < 25; i++) {
        cgloo_context *child = split_ok(e.ctx, (rank + i) % 2, rank);
        int one = 1;
        CHECK_OK(cgloo_allreduce(child, &one, &one, 1, CGLOO_INT32, CGLOO_SUM, NULL));
        CHECK(one == cgloo_context_size(child));
        cgloo_context_destroy(child);
    }
    CHECK_OK(cgloo_barrier(e.ctx, NULL));
    if (rank == 0)
        fds_after = count_fds();
    CHECK_OK(cgloo_barrier(e.ctx, NULL));
    mesh_close(e);
}

static void test_many_splits(void)
{
    with_store(rank_many, 4, NULL);
    if (fds_after != fds_before) {
        char d[64];
        snprintf(d, sizeof d, "%d before, %d after", fds_before, fds_after);
        harness_fail(__FILE__, __LINE__, "descriptors leaked", d);
    }
}

/* ---- siblings and the parent with the same tag at once ------------------------------------- */

static void rank_siblings(int rank, int size, void *arg)
{
    (void)arg;
    rank_env e = mesh_connect(store, rank, size, TIMEOUT_MS);
    cgloo_context *child = split_ok(e.ctx, rank % 2, rank);
    int csize = cgloo_context_size(child), wsum = 0;
    for (int c = 0; c < csize; c++)
        wsum += 2 * c + rank % 2;
    for (int i = 0; i < 20; i++) {
        /* Both siblings run tag 5 at once; the parent's point-to-point tag 5 crosses them. */
        int peer = rank ^ 1, got = -1;
        cgloo_request *rq;
        bool paired = peer < size;
        if (paired)
            CHECK_OK(cgloo_irecv(e.ctx, &got, sizeof got, peer, 5, &rq));
        sum_check(child, rank * (i + 1), wsum * (i + 1), 3000, 5);
        if (paired) {
            CHECK_OK(cgloo_send(e.ctx, &rank, sizeof rank, peer, 5, 0));
            CHECK_OK(cgloo_wait(rq, 0, NULL));
            CHECK(got == peer);
        }
    }
    cgloo_context_destroy(child);
    mesh_close(e);
}

static void test_siblings_same_tag(void)
{
    with_store(rank_siblings, 5, NULL);
}

/* ---- the job secret and check mode are inherited ------------------------------------------ */

static void rank_inherit(int rank, int size, void *arg)
{
    const char *secret = arg;
    rank_env e = {0};
    CHECK_OK(cgloo_device_tcp_create(&mesh_loopback, &e.dev));
    cgloo_context_attr attr = {
        .timeout_ms = TIMEOUT_MS, .name = "inherit", .secret = secret, .check = 1};
    CHECK_OK(cgloo_context_create(rank, size, &attr, &e.ctx));
    CHECK_OK(cgloo_context_connect(e.ctx, store, e.dev));
    cgloo_context *child = split_ok(e.ctx, rank % 2, rank);
    int csize = cgloo_context_size(child), wsum = 0;
    for (int c = 0; c < csize; c++)
        wsum += 2 * c + rank % 2;
    sum_check(child, rank, wsum, 10, 0);
    /* Check mode came along: a count that differs on one rank fails on every rank, at once. */
    int64_t buf[2] = {0, 0};
    size_t count = cgloo_context_rank(child) == 0 ? 1 : 2;
    CHECK_STATUS(cgloo_allreduce(child, buf, buf, count, CGLOO_INT64, CGLOO_SUM, NULL),
                 CGLOO_EINVAL);
    sum_check(child, rank, wsum, 10, 0); /* still usable after a check failure */
    cgloo_context_destroy(child);
    mesh_close(e);
}

static void test_inherit_secret_and_check(void)
{
    if (!cgloo_secret_supported()) {
        printf("skipped: install libssl-dev\n");
        return;
    }
    with_store(rank_inherit, 4, "split-secret");
}

/* ---- bad arguments -------------------------------------------------------------------------- */

static void test_bad_args(void)
{
    cgloo_context *ctx, *out = NULL;
    char detail[CGLOO_ERROR_MAX];
    CHECK_STATUS(cgloo_context_split(NULL, 0, 0, &out), CGLOO_EINVAL);
    CHECK(out == NULL);
    CHECK_OK(cgloo_context_create(0, 2, NULL, &ctx));
    CHECK_STATUS(cgloo_context_split(ctx, 0, 0, NULL), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_context_split(ctx, 0, 0, &out), CGLOO_ESTATE); /* not connected */
    CHECK(out == NULL);
    CHECK(cgloo_last_error(detail, sizeof detail) == CGLOO_ESTATE && strstr(detail, "split"));
    cgloo_context_destroy(ctx);
}

/* ---- a rank killed during a split (processes) ---------------------------------------------- */

#define KILL_SIZE 4
/* A survivor that waits on a live rank learns of the death only when its wait times out (the
 * detail then names the failed rank too). */
#define KILL_TIMEOUT_MS 5000

static void kill_rank(const char *dir, int rank)
{
    cgloo_store *s;
    CHECK_OK(cgloo_store_file_create(dir, "split", &s));
    rank_env e = mesh_connect(s, rank, KILL_SIZE, KILL_TIMEOUT_MS);
    if (rank == KILL_SIZE - 1) {
        CHECK_OK(cgloo_store_set(s, "victim_ready", "1", 1));
        for (;;)
            pause(); /* connected, never splits: killed by the test */
    }
    long long t0 = test_now_ms();
    cgloo_context *child = NULL;
    int rc = cgloo_context_split(e.ctx, rank % 2, rank, &child);
    char detail[CGLOO_ERROR_MAX];
    cgloo_context_last_error(e.ctx, detail, sizeof detail);
    if (rc == CGLOO_OK || child || !strstr(detail, "rank 3") ||
        test_now_ms() - t0 > 3 * KILL_TIMEOUT_MS) {
        fprintf(stderr, "  rank %d: split gave %s: %s\n", rank, cgloo_status_name(rc), detail);
        _exit(1);
    }
    mesh_close(e);
    cgloo_store_destroy(s);
    _exit(0);
}

static void test_rank_killed(void)
{
    const char *dir = test_tmpdir();
    pid_t pid[KILL_SIZE];
    for (int r = 0; r < KILL_SIZE; r++) {
        fflush(NULL);
        pid[r] = fork();
        CHECK(pid[r] >= 0);
        if (pid[r] == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            kill_rank(dir, r);
        }
    }
    cgloo_store *s;
    CHECK_OK(cgloo_store_file_create(dir, "split", &s));
    const char *key = "victim_ready";
    CHECK_OK(cgloo_store_wait(s, &key, 1, 20000));
    cgloo_store_destroy(s);
    test_sleep_ms(300); /* the survivors wait in the split */
    kill(pid[KILL_SIZE - 1], SIGKILL);
    int bad = 0;
    for (int r = 0; r < KILL_SIZE; r++) {
        int status = 0;
        waitpid(pid[r], &status, 0);
        if (r < KILL_SIZE - 1 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
            bad++;
    }
    CHECK(bad == 0);
}

static const test_case tests[] = {
    {"even_odd_4", test_even_odd_4, 60},
    {"even_odd_5", test_even_odd_5, 60},
    {"key_order", test_key_order, 60},
    {"undefined_and_dup", test_undefined_and_dup, 60},
    {"one_rank", test_one_rank, 30},
    {"nested", test_nested, 60},
    {"many_splits", test_many_splits, 120},
    {"siblings_same_tag", test_siblings_same_tag, 120},
    {"inherit_secret_and_check", test_inherit_secret_and_check, 60},
    {"bad_args", test_bad_args, 30},
    {"rank_killed", test_rank_killed, 60},
};

TEST_MAIN(tests)
