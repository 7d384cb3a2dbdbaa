/*
 * allreduce's single_copy algorithm, every rank a process over shared memory, so that every
 * read crosses processes (process_vm_readv) as it does in a job:
 * - sums: exact results for counts around the blocks and the read chunk, in place and out of
 *   place, float32 sum and int32 max, many calls back to back (a rank that returned early
 *   would let the next call overwrite a vector a peer still reads); reduce_scatter's,
 *   allgather's, broadcast's, gather's, scatter's, alltoall's and reduce's too (reduce from
 *   every root, in place on it or not; at 2 ranks from 256 KiB the two share it, the other
 *   rank writing its half into the root's output);
 * - chosen: the selector picks it for a large vector over shared memory and not for a small
 *   one, nor over TCP (the flight recorder names the algorithm that ran); reduce's too;
 * - refused: with CGLOO_SHM_LARGE=copy the reads are refused; the first call finds out on
 *   every rank, runs the ring instead, and the selector stops picking single_copy; reduce's
 *   first call (a tag of its own) finds out too and runs its message-passing choice;
 * - tcp: asked for by name over TCP, it runs the ring;
 * - peer_killed: a rank killed before the call; the others fail naming it, within seconds
 *   (allreduce, and reduce with the root reading the dead rank);
 * - tags_apart: first calls of two tags in different orders on the two ranks (each tag probes
 *   on its own first call, whatever the other tag did);
 * - paths: every collective, interleaved on a tag whose rounds go through the shared-memory
 *   slots, one whose rounds go as messages, and one that probes on every call;
 * - stalled: a peer that never comes: the call times out naming the shared-memory slot on a
 *   tag that has one, and not on a tag that has none (the rounds took each path);
 * - mixed_in_place: one rank in place and the other not (2 ranks decide alike whether each
 *   reduces the whole vector, and whether to decline);
 * - push_chunks: allreduce's pushes (each rank writes its reduced block into its peers' outputs
 *   a chunk at a time) at sizes whose blocks are no multiple of the chunk, in place and out of
 *   place, one rank in place and the other not, 2 and 3 ranks;
 * - left_early: a rank whose call timed out before its peer came gets no write into its
 *   output afterwards (its gate is shut when it returns), and the late peer fails at the gate;
 *   the allreduce's pushes and the 2-rank reduce's shared half (the late rank is not the root);
 * - small_chosen: the selectors pick single_copy by default from their thresholds down to
 *   tens of KiB, not below, and the results are exact; allreduce in place declines it below
 *   16 KiB (the flight recorder names the algorithm that ran instead).
 */
#include "mesh.h"
#include "procs.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#define TIMEOUT_MS 20000

/* connect_as connects rank of w through its file store with the given transport. */
static rank_env connect_as(procs *w, cgloo_store *s, int rank, const char *transport)
{
    rank_env e = {0};
    CHECK_OK(cgloo_device_tcp_create(&mesh_loopback, &e.dev));
    cgloo_context_attr attr = {.timeout_ms = TIMEOUT_MS, .name = "copy", .transport = transport};
    CHECK_OK(cgloo_context_create(rank, w->size, &attr, &e.ctx));
    int rc = cgloo_context_connect(e.ctx, s, e.dev);
    if (rc != CGLOO_OK) {
        char detail[CGLOO_ERROR_MAX];
        cgloo_context_last_error(e.ctx, detail, sizeof detail);
        harness_fail(__FILE__, __LINE__, "cgloo_context_connect", detail);
    }
    return e;
}

static void check_rc(cgloo_context *ctx, int rc, const char *what)
{
    if (rc == CGLOO_OK)
        return;
    char detail[CGLOO_ERROR_MAX];
    cgloo_context_last_error(ctx, detail, sizeof detail);
    harness_fail(__FILE__, __LINE__, what, detail);
}

/* Rank r's element i in call k: small integers, so that float sums are exact. */
static int32_t value(int r, size_t i, int k)
{
    return (int32_t)((r * 7 + (int)(i % 101) + k * 3) % 50) - 20;
}

/* The caller tag of the checked calls: tags below 4 have shared-memory slot channels, through
 * which the single_copy rounds go; 4 to 7 keep their probe outcome but send the rounds as
 * messages; from 8 on a call probes every time. */
static uint64_t call_tag;

static const size_t counts[] = {1, 3, 5, 1001, 65536 + 3, (1u << 20) + 7};
enum { NCOUNTS = sizeof counts / sizeof counts[0] };

/* quick: under a sanitizer (SINGLE_COPY_QUICK set by ctest) the largest count and the 4-rank
 * world are left out, which take most of the time there and test nothing the others do not. */
static bool quick(void)
{
    return getenv("SINGLE_COPY_QUICK") != NULL;
}

static void allreduce_checked(cgloo_context *ctx, int size, int rank, size_t n, int k, bool inplace,
                              const char *alg)
{
    float *in = malloc(n * sizeof *in), *out = inplace ? in : malloc(n * sizeof *out);
    int32_t *ii = malloc(n * sizeof *ii);
    CHECK(in && out && ii);
    for (size_t i = 0; i < n; i++) {
        in[i] = (float)value(rank, i, k);
        ii[i] = value(rank, i, k);
    }
    cgloo_coll_opts o = {.algorithm = alg, .tag = call_tag};
    check_rc(ctx, cgloo_allreduce(ctx, in, out, n, CGLOO_FLOAT32, CGLOO_SUM, &o), "sum");
    check_rc(ctx, cgloo_allreduce(ctx, ii, ii, n, CGLOO_INT32, CGLOO_MAX, &o), "max");
    for (size_t i = 0; i < n; i++) {
        int32_t sum = 0, max = INT32_MIN;
        for (int r = 0; r < size; r++) {
            sum += value(r, i, k);
            max = value(r, i, k) > max ? value(r, i, k) : max;
        }
        if (out[i] != (float)sum || ii[i] != max) {
            char detail[128];
            snprintf(detail, sizeof detail, "count %zu call %d element %zu: %g/%d, want %d/%d", n,
                     k, i, (double)out[i], ii[i], sum, max);
            harness_fail(__FILE__, __LINE__, "wrong result", detail);
        }
    }
    if (!inplace)
        free(out);
    free(in);
    free(ii);
}

/* rs_checked: reduce_scatter of n elements per rank, in place (this rank's block of the
 * input) or not. */
static void rs_checked(cgloo_context *ctx, int size, int rank, size_t n, int k, bool inplace)
{
    size_t all = n * (size_t)size;
    float *in = malloc(all * sizeof *in), *out = inplace ? in + n * (size_t)rank : malloc(n * 4);
    CHECK(in && out);
    for (size_t i = 0; i < all; i++)
        in[i] = (float)value(rank, i, k);
    cgloo_coll_opts o = {.algorithm = "single_copy", .tag = call_tag};
    check_rc(ctx, cgloo_reduce_scatter(ctx, in, out, n, CGLOO_FLOAT32, CGLOO_SUM, &o), "rs");
    for (size_t i = 0; i < n; i++) {
        size_t at = n * (size_t)rank + i;
        int32_t sum = 0;
        for (int r = 0; r < size; r++)
            sum += value(r, at, k);
        if (out[i] != (float)sum)
            harness_fail(__FILE__, __LINE__, "wrong reduce_scatter result", NULL);
    }
    if (!inplace)
        free(out);
    free(in);
}

/* ag_checked: allgather of n elements per rank, in place (this rank's block of the output) or
 * not. */
static void ag_checked(cgloo_context *ctx, int size, int rank, size_t n, int k, bool inplace)
{
    size_t all = n * (size_t)size;
    int32_t *out = malloc(all * sizeof *out),
            *in = inplace ? out + n * (size_t)rank : malloc(n * 4);
    CHECK(in && out);
    for (size_t i = 0; i < n; i++)
        in[i] = value(rank, i, k);
    cgloo_coll_opts o = {.algorithm = "single_copy", .tag = call_tag};
    check_rc(ctx, cgloo_allgather(ctx, in, out, n, CGLOO_INT32, &o), "allgather");
    for (size_t i = 0; i < all; i++)
        if (out[i] != value((int)(i / n), i % n, k))
            harness_fail(__FILE__, __LINE__, "wrong allgather result", NULL);
    if (!inplace)
        free(in);
    free(out);
}

/* rooted_checked: broadcast, gather and scatter of n elements per rank from root. */
static void rooted_checked(cgloo_context *ctx, int size, int rank, size_t n, int k, int root)
{
    size_t all = n * (size_t)size;
    int32_t *big = malloc(all * sizeof *big), *one = malloc(n * sizeof *one);
    CHECK(big && one);
    cgloo_coll_opts o = {.algorithm = "single_copy", .tag = call_tag};
    for (size_t i = 0; i < n; i++)
        one[i] = rank == root ? value(root, i, k) : -1;
    check_rc(ctx, cgloo_broadcast(ctx, one, n, CGLOO_INT32, root, &o), "broadcast");
    for (size_t i = 0; i < n; i++)
        if (one[i] != value(root, i, k))
            harness_fail(__FILE__, __LINE__, "wrong broadcast result", NULL);
    for (size_t i = 0; i < n; i++)
        one[i] = value(rank, i, k);
    check_rc(ctx, cgloo_gather(ctx, one, big, n, CGLOO_INT32, root, &o), "gather");
    for (size_t i = 0; rank == root && i < all; i++)
        if (big[i] != value((int)(i / n), i % n, k))
            harness_fail(__FILE__, __LINE__, "wrong gather result", NULL);
    for (size_t i = 0; rank == root && i < all; i++)
        big[i] = value((int)(i / n), i % n, k + 1);
    check_rc(ctx, cgloo_scatter(ctx, big, one, n, CGLOO_INT32, root, &o), "scatter");
    for (size_t i = 0; i < n; i++)
        if (one[i] != value(rank, i, k + 1))
            harness_fail(__FILE__, __LINE__, "wrong scatter result", NULL);
    free(big);
    free(one);
}

/* bytes_broadcast_checked: broadcasts of every length from 1 to 2 P + 1 bytes from root, so
 * that the root's share (the last bytes / P, where the rounds go through the slots) is empty,
 * one byte, and more, each byte its own value. */
static void bytes_broadcast_checked(cgloo_context *ctx, int size, int rank, int root)
{
    uint8_t buf[64];
    cgloo_coll_opts o = {.algorithm = "single_copy", .tag = call_tag};
    for (size_t n = 1; n <= 2 * (size_t)size + 1 && n <= sizeof buf; n++) {
        for (size_t i = 0; i < n; i++)
            buf[i] = rank == root ? (uint8_t)(n * 16 + i) : 0xee;
        check_rc(ctx, cgloo_broadcast(ctx, buf, n, CGLOO_UINT8, root, &o), "byte broadcast");
        for (size_t i = 0; i < n; i++)
            if (buf[i] != (uint8_t)(n * 16 + i))
                harness_fail(__FILE__, __LINE__, "wrong byte broadcast result", NULL);
    }
}

/* a2a_checked: alltoall of n elements per pair. */
static void a2a_checked(cgloo_context *ctx, int size, int rank, size_t n, int k)
{
    size_t all = n * (size_t)size;
    int32_t *in = malloc(all * sizeof *in), *out = malloc(all * sizeof *out);
    CHECK(in && out);
    for (size_t i = 0; i < all; i++) /* block q carries (rank, q) */
        in[i] = value(rank * 16 + (int)(i / n), i % n, k);
    cgloo_coll_opts o = {.algorithm = "single_copy", .tag = call_tag};
    check_rc(ctx, cgloo_alltoall(ctx, in, out, n, CGLOO_INT32, &o), "alltoall");
    for (size_t i = 0; i < all; i++)
        if (out[i] != value((int)(i / n) * 16 + rank, i % n, k))
            harness_fail(__FILE__, __LINE__, "wrong alltoall result", NULL);
    free(in);
    free(out);
}

/* reduce_checked: reduce to root of n elements, float32 sum and int32 max, in place on the
 * root or not; the result is checked on the root, and the non-root ranks' inputs must be left
 * as they were. On the tag after call_tag, of the same kind (below 4, 4 to 7, from 8): its own
 * probe, which the refused case needs apart from the allreduce's. */
static void reduce_checked(cgloo_context *ctx, int size, int rank, size_t n, int k, int root,
                           bool inplace, const char *alg)
{
    float *in = malloc(n * sizeof *in), *out = inplace ? in : malloc(n * sizeof *out);
    int32_t *ii = malloc(n * sizeof *ii);
    CHECK(in && out && ii);
    for (size_t i = 0; i < n; i++) {
        in[i] = (float)value(rank, i, k);
        ii[i] = value(rank, i, k);
    }
    cgloo_coll_opts o = {.algorithm = alg, .tag = call_tag + 1};
    check_rc(ctx, cgloo_reduce(ctx, in, out, n, CGLOO_FLOAT32, CGLOO_SUM, root, &o), "reduce sum");
    check_rc(ctx, cgloo_reduce(ctx, ii, ii, n, CGLOO_INT32, CGLOO_MAX, root, &o), "reduce max");
    for (size_t i = 0; i < n; i++) {
        int32_t sum = 0, max = INT32_MIN;
        for (int r = 0; r < size; r++) {
            sum += value(r, i, k);
            max = value(r, i, k) > max ? value(r, i, k) : max;
        }
        bool ok = rank == root ? out[i] == (float)sum && ii[i] == max
                               : in[i] == (float)value(rank, i, k) && ii[i] == value(rank, i, k);
        if (!ok) {
            char detail[128];
            snprintf(detail, sizeof detail, "root %d count %zu call %d element %zu: %g/%d", root, n,
                     k, i, (double)(rank == root ? out[i] : in[i]), ii[i]);
            harness_fail(__FILE__, __LINE__, "wrong reduce result", detail);
        }
    }
    if (!inplace)
        free(out);
    free(in);
    free(ii);
}

/* ---- sums ------------------------------------------------------------------------------------ */

static void sums_rank(procs *w, int rank, void *arg)
{
    (void)arg;
    cgloo_store *s = procs_store(w);
    rank_env e = connect_as(w, s, rank, "shm");
    for (int c = 0; c < NCOUNTS - quick(); c++)
        for (int k = 0; k < (counts[c] > 100000 ? 3 : 10); k++) {
            allreduce_checked(e.ctx, w->size, rank, counts[c], k, k % 2 == 0, "single_copy");
            rs_checked(e.ctx, w->size, rank, counts[c], k, k % 2 == 1);
            ag_checked(e.ctx, w->size, rank, counts[c], k, k % 2 == 0);
            rooted_checked(e.ctx, w->size, rank, counts[c], k, k % w->size);
            a2a_checked(e.ctx, w->size, rank, counts[c], k);
            reduce_checked(e.ctx, w->size, rank, counts[c], k, (k + 1) % w->size, k % 3 == 0,
                           "single_copy");
        }
    mesh_close(e);
    cgloo_store_destroy(s);
}

static void run_world(int size, procs_fn fn, const char *env, const char *value_)
{
    procs w;
    procs_init(&w, size, "single_copy");
    if (env)
        setenv(env, value_, 1);
    for (int r = 0; r < size; r++)
        procs_spawn(&w, r, fn, NULL);
    if (env)
        unsetenv(env);
    procs_expect_ok(&w, size, 60000);
}

static void test_sums(void)
{
    run_world(2, sums_rank, NULL, NULL);
    run_world(3, sums_rank, NULL, NULL);
    if (!quick())
        run_world(4, sums_rank, NULL, NULL);
}

/* ---- which algorithm ran ------------------------------------------------------------------- */

/* dumped_algorithm: the flight recorder's dump names the algorithm `alg` for some call. */
static bool dumped_algorithm(cgloo_context *ctx, const char *alg)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CHECK(f != NULL);
    CHECK_OK(cgloo_context_dump(ctx, f));
    fclose(f);
    bool found = strstr(text, alg) != NULL;
    free(text);
    return found;
}

static void chosen_rank(procs *w, int rank, void *arg)
{
    const char *transport = arg;
    cgloo_store *s = procs_store(w);
    rank_env e = connect_as(w, s, rank, transport);
    allreduce_checked(e.ctx, w->size, rank, 1u << 20, 0, false, NULL);
    bool large = dumped_algorithm(e.ctx, "allreduce(single_copy)");
    allreduce_checked(e.ctx, w->size, rank, 1000, 1, false, NULL);
    CHECK(large == (strcmp(transport, "shm") == 0 && !getenv("CGLOO_SHM_LARGE")));
    reduce_checked(e.ctx, w->size, rank, 1u << 18, 2, 1, false, NULL);
    bool reduce_large = dumped_algorithm(e.ctx, "reduce(single_copy)");
    CHECK(reduce_large == (strcmp(transport, "shm") == 0 && !getenv("CGLOO_SHM_LARGE")));
    mesh_close(e);
    cgloo_store_destroy(s);
}

static void test_chosen(void)
{
    procs w;
    procs_init(&w, 2, "chosen");
    for (int r = 0; r < 2; r++)
        procs_spawn(&w, r, chosen_rank, "shm");
    procs_expect_ok(&w, 2, 30000);
    procs_init(&w, 2, "chosen_tcp");
    for (int r = 0; r < 2; r++)
        procs_spawn(&w, r, chosen_rank, "tcp");
    procs_expect_ok(&w, 2, 30000);
}

/* ---- refused, and over TCP ------------------------------------------------------------------ */

static void fallback_rank(procs *w, int rank, void *arg)
{
    cgloo_store *s = procs_store(w);
    rank_env e = connect_as(w, s, rank, arg);
    for (int k = 0; k < 3; k++) /* reduce's tag: the probe, then calls that know */
        reduce_checked(e.ctx, w->size, rank, (1u << 18) + 1, k, k % w->size, k == 1, "single_copy");
    for (int k = 0; k < 3; k++) /* the probe, then calls that know */
        allreduce_checked(e.ctx, w->size, rank, (1u << 18) + 1, k, k == 1, "single_copy");
    /* The selector no longer picks it once refused. */
    allreduce_checked(e.ctx, w->size, rank, 1u << 20, 4, false, NULL);
    CHECK(!dumped_algorithm(e.ctx, "allreduce(single_copy)"));
    reduce_checked(e.ctx, w->size, rank, 1u << 20, 5, 0, false, NULL);
    CHECK(!dumped_algorithm(e.ctx, "reduce(single_copy)"));
    mesh_close(e);
    cgloo_store_destroy(s);
}

static void test_refused(void)
{
    procs w;
    procs_init(&w, 3, "refused");
    setenv("CGLOO_SHM_LARGE", "copy", 1);
    for (int r = 0; r < 3; r++)
        procs_spawn(&w, r, fallback_rank, "shm");
    unsetenv("CGLOO_SHM_LARGE");
    procs_expect_ok(&w, 3, 30000);
}

static void test_tcp(void)
{
    procs w;
    procs_init(&w, 3, "tcp");
    for (int r = 0; r < 3; r++)
        procs_spawn(&w, r, fallback_rank, "tcp");
    procs_expect_ok(&w, 3, 30000);
}

/* ---- a rank killed --------------------------------------------------------------------------- */

/* killed_call runs arg's collective ("allreduce", or "reduce" to root 0) by single_copy. */
static int killed_call(cgloo_context *ctx, const char *coll, float *v, size_t n)
{
    cgloo_coll_opts o = {.algorithm = "single_copy", .tag = call_tag};
    if (strcmp(coll, "reduce") == 0)
        return cgloo_reduce(ctx, v, v, n, CGLOO_FLOAT32, CGLOO_SUM, 0, &o);
    return cgloo_allreduce(ctx, v, v, n, CGLOO_FLOAT32, CGLOO_SUM, &o);
}

static void killed_rank(procs *w, int rank, void *arg)
{
    cgloo_store *s = procs_store(w);
    rank_env e = connect_as(w, s, rank, "shm");
    size_t n = 1u << 20;
    float *v = calloc(n, sizeof *v);
    CHECK(v != NULL);
    CHECK_OK(killed_call(e.ctx, arg, v, n)); /* probed */
    CHECK_OK(cgloo_barrier(e.ctx, NULL));
    if (rank == w->size - 1)
        raise(SIGKILL);
    long long t0 = test_now_ms();
    int rc = killed_call(e.ctx, arg, v, n);
    char detail[CGLOO_ERROR_MAX];
    cgloo_context_last_error(e.ctx, detail, sizeof detail);
    CHECK(rc == CGLOO_EPEER);
    char dead[24];
    snprintf(dead, sizeof dead, "rank %d", w->size - 1);
    CHECK(strstr(detail, dead) != NULL);
    CHECK(test_now_ms() - t0 < 5000);
    free(v);
    mesh_close(e);
    cgloo_store_destroy(s);
}

static void test_peer_killed(void)
{
    static const char *const colls[] = {"allreduce", "reduce"};
    for (size_t i = 0; i < 2; i++) {
        procs w;
        procs_init(&w, 3, "killed");
        for (int r = 0; r < 3; r++)
            procs_spawn(&w, r, killed_rank, (void *)colls[i]);
        procs_expect_ok(&w, 2, 30000);
        int status = procs_reap(&w, 2, 5000);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    }
}

/* ---- first calls of two tags in different orders --------------------------------------------- */

static void tags_rank(procs *w, int rank, void *arg)
{
    (void)arg;
    cgloo_store *s = procs_store(w);
    rank_env e = connect_as(w, s, rank, "shm");
    size_t n = 1u << 18;
    float *a = calloc(n, sizeof *a), *b = calloc(n, sizeof *b);
    CHECK(a && b);
    cgloo_coll_opts t1 = {.algorithm = "single_copy", .tag = 1};
    cgloo_coll_opts t2 = {.algorithm = "single_copy", .tag = 2};
    if (rank == 0) { /* tag 1 finishes here before tag 2 starts */
        check_rc(e.ctx, cgloo_allreduce(e.ctx, a, a, n, CGLOO_FLOAT32, CGLOO_SUM, &t1), "tag 1");
        check_rc(e.ctx, cgloo_allreduce(e.ctx, b, b, n, CGLOO_FLOAT32, CGLOO_SUM, &t2), "tag 2");
    } else { /* both at once, tag 2 first */
        cgloo_request *r1, *r2;
        CHECK_OK(cgloo_iallreduce(e.ctx, b, b, n, CGLOO_FLOAT32, CGLOO_SUM, &t2, &r2));
        CHECK_OK(cgloo_iallreduce(e.ctx, a, a, n, CGLOO_FLOAT32, CGLOO_SUM, &t1, &r1));
        check_rc(e.ctx, cgloo_wait(r2, 0, NULL), "tag 2");
        check_rc(e.ctx, cgloo_wait(r1, 0, NULL), "tag 1");
    }
    free(a);
    free(b);
    mesh_close(e);
    cgloo_store_destroy(s);
}

static void test_tags_apart(void)
{
    for (int round = 0; round < 3; round++) {
        procs w;
        procs_init(&w, 2, "tags");
        for (int r = 0; r < 2; r++)
            procs_spawn(&w, r, tags_rank, NULL);
        procs_expect_ok(&w, 2, 30000);
    }
}

/* ---- the rounds through the slots and as messages ---------------------------------------- */

static void paths_rank(procs *w, int rank, void *arg)
{
    (void)arg;
    cgloo_store *s = procs_store(w);
    rank_env e = connect_as(w, s, rank, "shm");
    static const uint64_t tags[] = {2, 5, 9};
    static const size_t sizes[] = {1, 1001, 65536 + 3};
    for (int k = 0; k < 4; k++)
        for (int c = 0; c < 3; c++)
            for (int t = 0; t < 3; t++) {
                call_tag = tags[t];
                allreduce_checked(e.ctx, w->size, rank, sizes[c], k, k % 2 == 0, "single_copy");
                rs_checked(e.ctx, w->size, rank, sizes[c], k, k % 2 == 1);
                ag_checked(e.ctx, w->size, rank, sizes[c], k, k % 2 == 0);
                rooted_checked(e.ctx, w->size, rank, sizes[c], k, (k + t) % w->size);
                a2a_checked(e.ctx, w->size, rank, sizes[c], k);
                reduce_checked(e.ctx, w->size, rank, sizes[c], k, (k + t) % w->size, k % 3 == 0,
                               "single_copy");
            }
    /* Blocks of several chunks, every root in place: the shared reduce (slots) and the root's
     * alone (rounds as messages). */
    for (int t = 0; t < 2; t++)
        for (int root = 0; root < w->size; root++) {
            call_tag = tags[t];
            reduce_checked(e.ctx, w->size, rank, (1u << 17) + 5, root, root, true, "single_copy");
            bytes_broadcast_checked(e.ctx, w->size, rank, root);
        }
    call_tag = 0;
    mesh_close(e);
    cgloo_store_destroy(s);
}

static void test_paths(void)
{
    run_world(2, paths_rank, NULL, NULL);
    run_world(3, paths_rank, NULL, NULL);
}

/* mixed_rank: one rank in place and the other not, in turns, at sizes where 2 ranks out of
 * place reduce the whole vector and where they split it: the ranks must pick the same way
 * (each learns in the first round whether the other is in place). */
static void mixed_rank(procs *w, int rank, void *arg)
{
    (void)arg;
    cgloo_store *s = procs_store(w);
    rank_env e = connect_as(w, s, rank, "shm");
    static const size_t sizes[] = {1001, 65536 + 3, (1u << 17) + 1, (1u << 18) + 5};
    for (int k = 0; k < 6; k++)
        for (int c = 0; c < 4; c++) {
            allreduce_checked(e.ctx, w->size, rank, sizes[c], k, (rank + k) % 2 == 0,
                              "single_copy");
            allreduce_checked(e.ctx, w->size, rank, sizes[c], k, (rank + k) % 3 == 0, NULL);
        }
    mesh_close(e);
    cgloo_store_destroy(s);
}

static void test_mixed_in_place(void)
{
    run_world(2, mixed_rank, NULL, NULL);
}

/* stalled_rank: the last rank never joins; rank 0's broadcasts time out, the one on a tag with
 * a slot channel in its slot, the one on a tag without in a message. */
static void stalled_rank(procs *w, int rank, void *arg)
{
    (void)arg;
    cgloo_store *s = procs_store(w);
    rank_env e = connect_as(w, s, rank, "shm");
    const char *done = "stalled_done";
    if (rank == 0) {
        static const uint64_t tags[] = {1, 6};
        for (int t = 0; t < 2; t++) {
            int32_t v[256] = {0};
            cgloo_coll_opts o = {.algorithm = "single_copy", .tag = tags[t], .timeout_ms = 300};
            CHECK(cgloo_broadcast(e.ctx, v, 256, CGLOO_INT32, 0, &o) == CGLOO_ETIMEDOUT);
            char detail[CGLOO_ERROR_MAX];
            cgloo_context_last_error(e.ctx, detail, sizeof detail);
            if ((strstr(detail, "shared-memory slot") != NULL) != (tags[t] < 4))
                harness_fail(__FILE__, __LINE__, "timed out on the wrong path", detail);
        }
        CHECK_OK(cgloo_store_set(s, done, "1", 1));
    } else {
        CHECK_OK(cgloo_store_wait(s, &done, 1, 30000));
    }
    mesh_close(e);
    cgloo_store_destroy(s);
}

static void test_stalled(void)
{
    procs w;
    procs_init(&w, 2, "stalled");
    for (int r = 0; r < 2; r++)
        procs_spawn(&w, r, stalled_rank, NULL);
    procs_expect_ok(&w, 2, 30000);
}

/* ---- pushes --------------------------------------------------------------------------------- */

/* push_rank: counts whose blocks end inside a 256 KiB chunk (the single_copy chunk), from 2 MiB
 * blocks down to blocks shorter than a chunk; at 2 ranks the vectors are large enough that
 * out of place splits in blocks (above 64 KiB). */
static void push_rank(procs *w, int rank, void *arg)
{
    (void)arg;
    cgloo_store *s = procs_store(w);
    rank_env e = connect_as(w, s, rank, "shm");
    static const size_t sizes[] = {(1u << 19) * 3 + 5, (1u << 18) + 65536 + 1, 3 * 65536 + 1};
    for (int k = 0; k < 4; k++)
        for (size_t c = 0; c < 3; c++) {
            bool apart = w->size == 2 && k == 3 && sizes[c] * sizeof(float) >= (1u << 20);
            allreduce_checked(e.ctx, w->size, rank, sizes[c], k, apart ? rank == 0 : k % 2 == 1,
                              "single_copy");
        }
    mesh_close(e);
    cgloo_store_destroy(s);
}

static void test_push_chunks(void)
{
    run_world(2, push_rank, NULL, NULL);
    run_world(3, push_rank, NULL, NULL);
}

/* left_call: the allreduce, or the reduce to rank 1 (`arg`), of n floats. */
static int left_call(cgloo_context *ctx, const char *kind, float *in, float *out, size_t n,
                     const cgloo_coll_opts *o)
{
    if (strcmp(kind, "reduce") == 0)
        return cgloo_reduce(ctx, in, out, n, CGLOO_FLOAT32, CGLOO_SUM, 1, o);
    return cgloo_allreduce(ctx, in, out, n, CGLOO_FLOAT32, CGLOO_SUM, o);
}

/* left_rank: rank 1 calls first, with a short timeout, and returns ETIMEDOUT before rank 0
 * calls; rank 0 then finds rank 1's addresses in the slot and would write its block into rank
 * 1's output (the allreduce's pushes; the reduce's other half, rank 1 its root): the gate rank
 * 1 shut must stop it, rank 0's error say so (which shows the pushing path ran), and rank 1's
 * output keep what it held. */
static void left_rank(procs *w, int rank, void *arg)
{
    const char *kind = arg;
    cgloo_store *s = procs_store(w);
    rank_env e = connect_as(w, s, rank, "shm");
    size_t n = 1u << 19; /* 2 MiB: blocks, pushed */
    float *in = calloc(n, sizeof *in), *out = calloc(n, sizeof *out);
    CHECK(in && out);
    cgloo_coll_opts o = {.algorithm = "single_copy", .tag = 1};
    CHECK_OK(left_call(e.ctx, kind, in, out, n, &o)); /* probed */
    for (size_t i = 0; i < n; i++)
        out[i] = -1;
    const char *left = "left_returned", *late = "late_returned";
    o.timeout_ms = 300;
    if (rank == 1) {
        CHECK(left_call(e.ctx, kind, in, out, n, &o) == CGLOO_ETIMEDOUT);
        CHECK_OK(cgloo_store_set(s, left, "1", 1));
        CHECK_OK(cgloo_store_wait(s, &late, 1, 30000));
        for (size_t i = 0; i < n; i++)
            if (out[i] != -1) {
                char detail[96];
                snprintf(detail, sizeof detail, "%s: element %zu is %g", kind, i, (double)out[i]);
                harness_fail(__FILE__, __LINE__, "written after the call returned", detail);
            }
    } else {
        CHECK_OK(cgloo_store_wait(s, &left, 1, 30000));
        CHECK(left_call(e.ctx, kind, in, out, n, &o) != CGLOO_OK);
        char why[512];
        cgloo_context_last_error(e.ctx, why, sizeof why);
        if (!strstr(why, "left the collective"))
            harness_fail(__FILE__, __LINE__, "not stopped at the gate", why);
        CHECK_OK(cgloo_store_set(s, late, "1", 1));
    }
    free(in);
    free(out);
    mesh_close(e);
    cgloo_store_destroy(s);
}

static void test_left_early(void)
{
    static const char *const kinds[] = {"allreduce", "reduce"};
    for (int k = 0; k < 2; k++) {
        procs w;
        procs_init(&w, 2, "left");
        for (int r = 0; r < 2; r++)
            procs_spawn(&w, r, left_rank, (void *)kinds[k]);
        procs_expect_ok(&w, 2, 30000);
    }
}

/* ---- small sizes chosen by default ---------------------------------------------------------- */

/* chosen_at runs collective `kind` of `bytes` in all (int32, the default algorithm, checked)
 * and says whether the flight recorder names single_copy for it: the recorder keeps every
 * call, so the sizes of one collective go from small to large. */
static bool chosen_at(cgloo_context *ctx, int size, int rank, const char *kind, size_t bytes)
{
    size_t n = bytes / sizeof(int32_t) / (strcmp(kind, "broadcast") ? (size_t)size : 1);
    char name[64];
    snprintf(name, sizeof name, "%s(single_copy)", kind);
    if (strcmp(kind, "allreduce") == 0)
        allreduce_checked(ctx, size, rank, n * (size_t)size, 0, false, NULL);
    else if (strcmp(kind, "broadcast") == 0) {
        int32_t *v = calloc(n, sizeof *v);
        CHECK(v != NULL);
        for (size_t i = 0; rank == 1 && i < n; i++)
            v[i] = value(1, i, 0);
        check_rc(ctx, cgloo_broadcast(ctx, v, n, CGLOO_INT32, 1, NULL), "broadcast");
        for (size_t i = 0; i < n; i++)
            CHECK(v[i] == value(1, i, 0));
        free(v);
    } else {
        int32_t *in = calloc(n * (size_t)size, sizeof *in), *out = calloc(n * (size_t)size, 4);
        CHECK(in && out);
        for (size_t i = 0; i < n * (size_t)size; i++)
            in[i] = value(rank, i, 0);
        int rc =
            strcmp(kind, "gather") == 0      ? cgloo_gather(ctx, in, out, n, CGLOO_INT32, 0, NULL)
            : strcmp(kind, "scatter") == 0   ? cgloo_scatter(ctx, in, out, n, CGLOO_INT32, 0, NULL)
            : strcmp(kind, "allgather") == 0 ? cgloo_allgather(ctx, in, out, n, CGLOO_INT32, NULL)
                                             : cgloo_alltoall(ctx, in, out, n, CGLOO_INT32, NULL);
        check_rc(ctx, rc, kind);
        for (size_t i = 0; strcmp(kind, "alltoall") == 0 && i < n * (size_t)size; i++)
            CHECK(out[i] == value((int)(i / n), (size_t)rank * n + i % n, 0));
        for (size_t i = 0; strcmp(kind, "allgather") == 0 && i < n * (size_t)size; i++)
            CHECK(out[i] == value((int)(i / n), i % n, 0));
        free(in);
        free(out);
    }
    return dumped_algorithm(ctx, name);
}

/* small_rank: at 2 ranks over shared memory the selectors pick single_copy well below the 1 MiB
 * they started from, and not far below their thresholds (bytes in all, as the selectors count
 * them: below, then from the threshold up). */
static void small_rank(procs *w, int rank, void *arg)
{
    (void)arg;
    static const struct {
        const char *kind;
        size_t below, from;
    } cases[] = {
        {"allreduce", 32 * 1024, 64 * 1024}, {"broadcast", 32 * 1024, 64 * 1024},
        {"gather", 16 * 1024, 128 * 1024},   {"scatter", 16 * 1024, 128 * 1024},
        {"alltoall", 16 * 1024, 128 * 1024}, {"allgather", 64 * 1024, 128 * 1024},
    };
    cgloo_store *s = procs_store(w);
    rank_env e = connect_as(w, s, rank, "shm");
    /* Asked for by name, in place below 16 KiB the single copy declines after its first round. */
    allreduce_checked(e.ctx, w->size, rank, 2 * 1024, 0, true, "single_copy");
    if (dumped_algorithm(e.ctx, "allreduce(single_copy)"))
        harness_fail(__FILE__, __LINE__, "single_copy ran in place", "allreduce of 8 KiB");
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        if (chosen_at(e.ctx, w->size, rank, cases[k].kind, cases[k].below))
            harness_fail(__FILE__, __LINE__, "single_copy chosen too small", cases[k].kind);
        if (!chosen_at(e.ctx, w->size, rank, cases[k].kind, cases[k].from))
            harness_fail(__FILE__, __LINE__, "single_copy not chosen", cases[k].kind);
    }
    mesh_close(e);
    cgloo_store_destroy(s);
}

static void test_small_chosen(void)
{
    procs w;
    procs_init(&w, 2, "small");
    for (int r = 0; r < 2; r++)
        procs_spawn(&w, r, small_rank, NULL);
    procs_expect_ok(&w, 2, 30000);
}

static const test_case tests[] = {
    {"sums", test_sums, 120},
    {"chosen", test_chosen, 60},
    {"refused", test_refused, 60},
    {"tcp", test_tcp, 60},
    {"peer_killed", test_peer_killed, 60},
    {"tags_apart", test_tags_apart, 100},
    {"paths", test_paths, 100},
    {"stalled", test_stalled, 60},
    {"mixed_in_place", test_mixed_in_place, 60},
    {"push_chunks", test_push_chunks, 100},
    {"left_early", test_left_early, 60},
    {"small_chosen", test_small_chosen, 60},
};

TEST_MAIN(tests)
