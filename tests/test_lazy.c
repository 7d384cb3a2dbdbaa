/*
 * Lazy connections (cgloo_context_attr.lazy, CGLOO_LAZY=1): pairs connect on first use.
 *
 * - crossed dials: every rank sends to and receives from every other at once, so that both
 *   ends of every pair dial together, round after round, with and without the job secret;
 *   each pair must end with exactly one connection and every message in order.
 * - per-collective counts: each rank a process, one lazy context per (collective, algorithm);
 *   the connections a collective opens and the descriptors the process gains must agree, and
 *   equal the algorithm's peers where they are known (ring allreduce 2, alltoall all).
 * - a dead peer found on first contact, a peer whose context is gone, split in lazy mode.
 * All of it over TCP (test_lazy) and over shared memory (test_lazy_shm).
 */
#include "mesh.h"

#include <dirent.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define TIMEOUT_MS 20000

static cgloo_store *store;

/* over_shm: this run's ranks reach each other over shared memory (CTest runs the suite over
 * TCP and again over shared memory, CGLOO_TRANSPORT). */
static bool over_shm(void)
{
    const char *t = getenv("CGLOO_TRANSPORT");
    return t && strcmp(t, "tcp") != 0;
}

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

/* lazy_connect is mesh_connect with a lazy context (and an optional secret). */
static rank_env lazy_connect(cgloo_store *s, int rank, int size, const char *name,
                             const char *secret, int timeout_ms)
{
    rank_env e = {0};
    CHECK_OK(cgloo_device_tcp_create(&mesh_loopback, &e.dev));
    cgloo_context_attr attr = {.timeout_ms = timeout_ms, .name = name, .lazy = 1, .secret = secret};
    CHECK_OK(cgloo_context_create(rank, size, &attr, &e.ctx));
    int rc = cgloo_context_connect(e.ctx, s, e.dev);
    if (rc != CGLOO_OK) {
        char detail[CGLOO_ERROR_MAX];
        cgloo_context_last_error(e.ctx, detail, sizeof detail);
        harness_fail(__FILE__, __LINE__, "cgloo_context_connect", detail);
    }
    CHECK(cgloo_context_connections(e.ctx) == 0); /* nothing until first use */
    return e;
}

static void check_ok_detail(cgloo_context *ctx, int rc, const char *what)
{
    if (rc == CGLOO_OK)
        return;
    char detail[CGLOO_ERROR_MAX];
    cgloo_context_last_error(ctx, detail, sizeof detail);
    harness_fail(__FILE__, __LINE__, what, detail);
}

/* ---- crossed dials --------------------------------------------------------------------------- */

#define CROSS_RANKS 8
#define CROSS_MSGS 3
#define CROSS_BIG (200 * 1024) /* above the eager limit: announced, then sent */

typedef struct cross_arg {
    const char *secret;
    int round;
} cross_arg;

static size_t cross_len(int i)
{
    return i == 1 ? CROSS_BIG : 64 + (size_t)i;
}

static void rank_cross(int rank, int size, void *argp)
{
    const cross_arg *arg = argp;
    char name[32];
    snprintf(name, sizeof name, "cross%d", arg->round);
    rank_env e = lazy_connect(store, rank, size, name, arg->secret, TIMEOUT_MS);
    cgloo_request *reqs[2 * CROSS_RANKS * CROSS_MSGS];
    uint8_t *out[CROSS_RANKS][CROSS_MSGS], *in[CROSS_RANKS][CROSS_MSGS];
    int n = 0;
    for (int peer = 0; peer < size; peer++)
        for (int i = 0; i < CROSS_MSGS && peer != rank; i++) {
            out[peer][i] = malloc(cross_len(i));
            in[peer][i] = malloc(cross_len(i));
            fill_pattern(out[peer][i], cross_len(i), (uint32_t)(rank * 1000 + peer * 10 + i));
            /* One tag for all three: only the order on the one connection tells them apart. */
            CHECK_OK(cgloo_irecv(e.ctx, in[peer][i], cross_len(i), peer, 7, &reqs[n++]));
            CHECK_OK(cgloo_isend(e.ctx, out[peer][i], cross_len(i), peer, 7, &reqs[n++]));
        }
    for (int i = 0; i < n; i++)
        check_ok_detail(e.ctx, cgloo_wait(reqs[i], TIMEOUT_MS, NULL), "wait");
    for (int peer = 0; peer < size; peer++)
        for (int i = 0; i < CROSS_MSGS && peer != rank; i++) {
            CHECK(
                check_pattern(in[peer][i], cross_len(i), (uint32_t)(peer * 1000 + rank * 10 + i)));
            free(out[peer][i]);
            free(in[peer][i]);
        }
    CHECK(cgloo_context_connections(e.ctx) == size - 1);
    CHECK_OK(cgloo_barrier(e.ctx, NULL));
    mesh_close(e);
}

/* Rounds of fresh contexts; after each, the process holds the descriptors it held before it
 * (a connection that lost a crossing and was never closed would show). */
static void cross_rounds(const char *secret)
{
    for (int round = 0; round < 6; round++) {
        cross_arg arg = {.secret = secret, .round = round};
        CHECK_OK(cgloo_store_hash_create(&store));
        int before = count_fds();
        run_ranks(CROSS_RANKS, rank_cross, &arg);
        CHECK(count_fds() == before);
        cgloo_store_destroy(store);
    }
}

static void test_crossed_dials(void)
{
    cross_rounds(NULL);
}

static void test_crossed_dials_secret(void)
{
    if (!cgloo_secret_supported()) {
        printf("skipped: install libssl-dev\n");
        return;
    }
    cross_rounds("lazy-test-secret");
}

/* ---- connections and descriptors per collective ------------------------------------------- */

#define COUNT_RANKS 8

typedef struct count_case {
    const char *coll, *alg;
    int expect[COUNT_RANKS]; /* connections per rank; -1: not checked (only fds == conns) */
} count_case;

/* Peers per rank at P = 8: ring r +- 1; recursive doubling and halving-doubling r ^ 1, 2, 4;
 * dissemination r +- 1, 2, 4 (4 and -4 are one rank); binomial trees from root 0 a rank's
 * children and parent; a chain its two neighbours; alltoall and direct all seven, and the flat
 * and direct ones the root all seven, the others the root. Every algorithm of every collective
 * here, at least for fds == connections. */
static const count_case count_cases[] = {
    {"allreduce", "ring", {2, 2, 2, 2, 2, 2, 2, 2}},
    {"allreduce", "recursive_doubling", {3, 3, 3, 3, 3, 3, 3, 3}},
    {"allreduce", "halving_doubling", {3, 3, 3, 3, 3, 3, 3, 3}},
    {"allreduce", "bcube", {-1, -1, -1, -1, -1, -1, -1, -1}},
    {"allreduce", "direct", {7, 7, 7, 7, 7, 7, 7, 7}},
    {"barrier", "dissemination", {5, 5, 5, 5, 5, 5, 5, 5}},
    {"barrier", "all_to_one", {7, 1, 1, 1, 1, 1, 1, 1}},
    {"broadcast", "binomial", {3, 1, 2, 1, 3, 1, 2, 1}},
    {"broadcast", "pipeline", {1, 2, 2, 2, 2, 2, 2, 1}},
    {"broadcast", "flat", {7, 1, 1, 1, 1, 1, 1, 1}},
    {"broadcast", NULL, {-1, -1, -1, -1, -1, -1, -1, -1}},
    {"reduce_scatter", "ring", {2, 2, 2, 2, 2, 2, 2, 2}},
    {"reduce_scatter", "halving_doubling", {3, 3, 3, 3, 3, 3, 3, 3}},
    {"reduce", "binomial", {3, 1, 2, 1, 3, 1, 2, 1}},
    {"reduce", "reduce_scatter_gather", {-1, -1, -1, -1, -1, -1, -1, -1}},
    {"gather", "direct", {7, 1, 1, 1, 1, 1, 1, 1}},
    {"gather", "binomial", {3, 1, 2, 1, 3, 1, 2, 1}},
    {"scatter", "direct", {7, 1, 1, 1, 1, 1, 1, 1}},
    {"scatter", "binomial", {3, 1, 2, 1, 3, 1, 2, 1}},
    {"allgather", "ring", {2, 2, 2, 2, 2, 2, 2, 2}},
    {"allgather", "recursive_doubling", {3, 3, 3, 3, 3, 3, 3, 3}},
    {"alltoall", NULL, {7, 7, 7, 7, 7, 7, 7, 7}},
};

static int run_coll(cgloo_context *ctx, const count_case *c)
{
    cgloo_coll_opts opts = {.algorithm = c->alg};
    int32_t in[COUNT_RANKS * 4] = {0}, out[COUNT_RANKS * 4];
    if (!strcmp(c->coll, "allreduce"))
        return cgloo_allreduce(ctx, in, out, 4, CGLOO_INT32, CGLOO_SUM, &opts);
    if (!strcmp(c->coll, "barrier"))
        return cgloo_barrier(ctx, &opts);
    if (!strcmp(c->coll, "broadcast"))
        return cgloo_broadcast(ctx, in, 4, CGLOO_INT32, 0, &opts);
    if (!strcmp(c->coll, "allgather"))
        return cgloo_allgather(ctx, in, out, 4, CGLOO_INT32, &opts);
    if (!strcmp(c->coll, "reduce_scatter"))
        return cgloo_reduce_scatter(ctx, in, out, 4, CGLOO_INT32, CGLOO_SUM, &opts);
    if (!strcmp(c->coll, "reduce"))
        return cgloo_reduce(ctx, in, out, 4, CGLOO_INT32, CGLOO_SUM, 0, &opts);
    if (!strcmp(c->coll, "gather"))
        return cgloo_gather(ctx, in, out, 4, CGLOO_INT32, 0, &opts);
    if (!strcmp(c->coll, "scatter"))
        return cgloo_scatter(ctx, in, out, 4, CGLOO_INT32, 0, &opts);
    return cgloo_alltoall(ctx, in, out, 4, CGLOO_INT32, &opts);
}

/* store_barrier waits until every rank has set its key `what` (no connection involved). */
static void store_barrier(cgloo_store *s, const char *name, const char *what, int rank)
{
    char keys[COUNT_RANKS][64];
    const char *kp[COUNT_RANKS];
    for (int r = 0; r < COUNT_RANKS; r++) {
        snprintf(keys[r], sizeof keys[r], "%s/%s/%d", name, what, r);
        kp[r] = keys[r];
    }
    CHECK_OK(cgloo_store_set(s, kp[rank], "1", 1));
    CHECK_OK(cgloo_store_wait(s, kp, COUNT_RANKS, TIMEOUT_MS));
}

/* settle drives the context's progress for a moment (a receive from itself that never comes),
 * so that connections peers started are accepted and counted. */
static void settle(cgloo_context *ctx)
{
    cgloo_request *r;
    char b;
    CHECK_OK(cgloo_irecv(ctx, &b, 1, cgloo_context_rank(ctx), 99, &r));
    CHECK_STATUS(cgloo_wait(r, 50, NULL), CGLOO_ETIMEDOUT);
    cgloo_cancel(r);
}

/* count_rank is one rank's process: a fresh lazy context per case. Every rank counts once all
 * have finished the collective (before any leaves, which closes its connections). */
static int count_rank(const char *dir, int rank)
{
    cgloo_store *s;
    if (cgloo_store_file_create(dir, "count", &s) != CGLOO_OK)
        return 1;
    int bad = 0;
    for (size_t i = 0; i < sizeof count_cases / sizeof count_cases[0]; i++) {
        const count_case *c = &count_cases[i];
        char name[64];
        snprintf(name, sizeof name, "count%zu", i);
        rank_env e = lazy_connect(s, rank, COUNT_RANKS, name, NULL, TIMEOUT_MS);
        int fds0 = count_fds();
        store_barrier(s, name, "ready", rank); /* no rank dials before all have counted */
        int rc = run_coll(e.ctx, c);
        store_barrier(s, name, "done", rank);
        settle(e.ctx);
        int conns = cgloo_context_connections(e.ctx), fds = count_fds() - fds0;
        if (rc != CGLOO_OK || conns != fds || (c->expect[rank] >= 0 && conns != c->expect[rank])) {
            fprintf(stderr, "  rank %d: %s(%s): %s, %d connections (expected %d), %d new fds\n",
                    rank, c->coll, c->alg ? c->alg : "default", cgloo_status_name(rc), conns,
                    c->expect[rank], fds);
            bad = 1;
        }
        if (rank == 0)
            printf("  %s(%s): rank 0 opened %d connections, %d descriptors\n", c->coll,
                   c->alg ? c->alg : "default", conns, fds);
        fflush(stdout);
        store_barrier(s, name, "counted", rank);
        mesh_close(e);
    }
    cgloo_store_destroy(s);
    return bad;
}

static void test_counts_per_collective(void)
{
    const char *dir = test_tmpdir();
    pid_t pid[COUNT_RANKS];
    for (int r = 0; r < COUNT_RANKS; r++) {
        fflush(NULL);
        pid[r] = fork();
        CHECK(pid[r] >= 0);
        if (pid[r] == 0)
            _exit(count_rank(dir, r));
    }
    int bad = 0;
    for (int r = 0; r < COUNT_RANKS; r++) {
        int st = 0;
        waitpid(pid[r], &st, 0);
        bad += !WIFEXITED(st) || WEXITSTATUS(st) != 0;
    }
    CHECK(bad == 0);
}

/* ---- failures ----------------------------------------------------------------------------------
 */

static pthread_barrier_t gone_barrier;
static int gone_keep_device; /* rank 1 keeps its device (listener) alive, its context gone */

static void rank_gone(int rank, int size, void *arg)
{
    (void)arg;
    rank_env e = lazy_connect(store, rank, size, "gone", NULL, 4000);
    if (rank == 1) {
        cgloo_context_destroy(e.ctx);
        if (!gone_keep_device)
            cgloo_device_destroy(e.dev);
        pthread_barrier_wait(&gone_barrier); /* gone */
        pthread_barrier_wait(&gone_barrier); /* rank 0 has its error */
        if (gone_keep_device)
            cgloo_device_destroy(e.dev);
        return;
    }
    pthread_barrier_wait(&gone_barrier);
    long long t0 = test_now_ms();
    int v = 1;
    int rc = cgloo_send(e.ctx, &v, sizeof v, 1, 3, 0);
    char detail[CGLOO_ERROR_MAX];
    cgloo_context_last_error(e.ctx, detail, sizeof detail);
    long long took = test_now_ms() - t0;
    /* Over shared memory the listener is the context's own: it went with the context. */
    bool shm = over_shm(), refused = shm || !gone_keep_device;
    bool named = !refused ? strstr(detail, "to rank 1") != NULL
                 : shm    ? strstr(detail, "peer 1 (not connected): nothing listens") != NULL
                          : strstr(detail, "peer 1 (127.0.0.1:") != NULL;
    if (rc != (refused ? CGLOO_EPEER : CGLOO_ETIMEDOUT) || !named || took > (refused ? 1000 : 8000))
        harness_fail(__FILE__, __LINE__, cgloo_status_name(rc), detail);
    printf("  after %lld ms: %s\n", took, detail);
    pthread_barrier_wait(&gone_barrier);
    mesh_close(e);
}

static void gone_case(int keep_device)
{
    gone_keep_device = keep_device;
    pthread_barrier_init(&gone_barrier, NULL, 2);
    CHECK_OK(cgloo_store_hash_create(&store));
    run_ranks(2, rank_gone, NULL);
    cgloo_store_destroy(store);
    pthread_barrier_destroy(&gone_barrier);
}

/* The peer's process is gone (nothing listens at its address): refused, EPEER at once. */
static void test_dead_peer_first_contact(void)
{
    gone_case(0);
}

/* The peer's context is gone but its device still listens, and no thread of the peer serves
 * it: the kernel takes the connection and nobody answers the hello, as with a live peer that
 * does not call into the library. The send times out by its own timeout, naming the peer. Over
 * shared memory the context's listener went with it: refused at once. */
static void test_context_gone_first_contact(void)
{
    gone_case(1);
}

/* ---- split
 * --------------------------------------------------------------------------------------- */

#define SPLIT_RANKS 6
static int split_fds[2];

static void rank_split(int rank, int size, void *arg)
{
    (void)arg;
    rank_env e = lazy_connect(store, rank, size, "split", NULL, TIMEOUT_MS);
    for (int i = 0; i < 8; i++) {
        if (i == 1 || i == 7) {
            CHECK_OK(cgloo_barrier(e.ctx, NULL));
            settle(e.ctx); /* a crossed dial's socket closes when its rank next reads */
            CHECK_OK(cgloo_barrier(e.ctx, NULL));
            if (rank == 0)
                split_fds[i == 7] = count_fds();
            CHECK_OK(cgloo_barrier(e.ctx, NULL));
        }
        cgloo_context *child = NULL;
        check_ok_detail(e.ctx, cgloo_context_split(e.ctx, rank % 2, rank, &child), "split");
        /* Ranks that finished their split may have dialled this child already. */
        CHECK(cgloo_context_connections(child) <= 2);
        int one = rank;
        cgloo_coll_opts ring = {.algorithm = "ring"};
        check_ok_detail(child, cgloo_allreduce(child, &one, &one, 1, CGLOO_INT32, CGLOO_SUM, &ring),
                        "allreduce");
        CHECK(one == (rank % 2 ? 1 + 3 + 5 : 0 + 2 + 4));
        /* A ring of three: both others (fewer once a sibling rank's child has left). */
        CHECK(cgloo_context_connections(child) <= 2);
        cgloo_context_destroy(child);
    }
    mesh_close(e);
}

/* Children of a lazy parent are lazy; once the parent's exchanges have made their connections,
 * making and destroying children leaves no descriptor behind. */
static void test_split_lazy(void)
{
    CHECK_OK(cgloo_store_hash_create(&store));
    run_ranks(SPLIT_RANKS, rank_split, NULL);
    cgloo_store_destroy(store);
    if (split_fds[0] != split_fds[1]) {
        char d[64];
        snprintf(d, sizeof d, "%d before, %d after", split_fds[0], split_fds[1]);
        harness_fail(__FILE__, __LINE__, "descriptors leaked", d);
    }
}

/* ---- the store after a run ------------------------------------------------------------------ */

static const char *clean_dir;

static void rank_clean(int rank, int size, void *arg)
{
    (void)arg;
    cgloo_store *s;
    CHECK_OK(cgloo_store_file_create(clean_dir, "clean", &s));
    rank_env e = lazy_connect(s, rank, size, "clean", NULL, TIMEOUT_MS);
    int64_t v = rank;
    CHECK_OK(cgloo_allreduce(e.ctx, &v, &v, 1, CGLOO_INT64, CGLOO_SUM, NULL));
    mesh_close(e);
    cgloo_store_destroy(s);
}

/* count_files counts the keys' files under dir, recursively (a file store's counters leave
 * lock files, "l.*", behind, in full-mesh runs too). */
static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *ent;
    while (d && (ent = readdir(d)) != NULL) {
        char path[1024];
        if (!strcmp(ent->d_name, ".") || !strcmp(ent->d_name, ".."))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
        n += ent->d_type == DT_DIR ? count_files(path) : strncmp(ent->d_name, "l.", 2) != 0;
    }
    if (d)
        closedir(d);
    return n;
}

/* A lazy run removes every key it wrote (records, claims, its clean-up's counters) once every
 * rank has read the records, as a full-mesh run does. */
static void test_store_left_clean(void)
{
    clean_dir = test_tmpdir();
    for (int round = 0; round < 2; round++) {
        run_ranks(5, rank_clean, NULL);
        CHECK(count_files(clean_dir) == 0);
    }
}

static const test_case tests[] = {
    {"store_left_clean", test_store_left_clean, 60},
    {"crossed_dials", test_crossed_dials, 120},
    {"crossed_dials_secret", test_crossed_dials_secret, 120},
    {"counts_per_collective", test_counts_per_collective, 120},
    {"dead_peer_first_contact", test_dead_peer_first_contact, 60},
    {"context_gone_first_contact", test_context_gone_first_contact, 60},
    {"split_lazy", test_split_lazy, 120},
};

TEST_MAIN(tests)
