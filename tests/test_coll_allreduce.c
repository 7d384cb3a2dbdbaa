/*
 * Allreduce: every algorithm x dtype x op, world sizes 1, 2, 3, 4, 5, 7, 8 and 16 (ranks as
 * threads, one connected mesh per world size), counts 0, 1, fewer than the ranks, not divisible
 * by them, a prime, and a million elements; in place and out of place; several input and output
 * buffers; bool bytes other than 0 and 1; a caller-supplied reduction; selection by name and by
 * environment.
 */
#include "coll_util.h"
#include "mesh.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static const char *const algorithms[] = {
    "ring",   "halving_doubling", "bcube",        "recursive_doubling",
    "direct", "single_copy",      "hierarchical", "shm",
    NULL};
#define NALGO (sizeof algorithms / sizeof algorithms[0])

static cgloo_store *store;

/* one_case runs one allreduce and checks it; out of place when in_place is 0. */
static void one_case(cgloo_context *ctx, const char *algo, int radix, cgloo_dtype t, cgloo_op op,
                     size_t count, int in_place)
{
    int rank = cgloo_context_rank(ctx), size = cgloo_context_size(ctx);
    size_t es = cgloo_dtype_size(t);
    uint8_t *in = malloc(count * es + 1), *out = malloc(count * es + 1);
    fill_input(in, count, t, op, rank);
    cgloo_coll_opts o = {.algorithm = algo, .radix = radix};
    int rc = in_place ? cgloo_allreduce(ctx, in, in, count, t, op, &o)
                      : cgloo_allreduce(ctx, in, out, count, t, op, &o);
    if (!op_defined(op, t)) {
        CHECK_STATUS(rc, CGLOO_EINVAL);
    } else {
        if (rc != CGLOO_OK) {
            char detail[512];
            cgloo_context_last_error(ctx, detail, sizeof detail);
            fprintf(stderr, "  %s %s %s count %zu size %d: %s\n", algo ? algo : "auto",
                    cgloo_dtype_name(t), cgloo_op_name(op), count, size, detail);
        }
        CHECK_OK(rc);
        CHECK(check_reduced(in_place ? in : out, count, t, op, size, 0));
        if (!in_place) { /* the input is only read */
            uint8_t *again = malloc(count * es + 1);
            fill_input(again, count, t, op, rank);
            CHECK(memcmp(again, in, count * es) == 0);
            free(again);
        }
    }
    free(in);
    free(out);
}

static void rank_matrix(int rank, int size, void *arg)
{
    rank_env e = mesh_connect(store, rank, size, 30000);
    size_t counts[] = {0, 1, (size_t)size - 1, (size_t)size * 3 + 1, 1009};
    for (size_t a = 0; a < NALGO; a++)
        for (size_t d = 0; d < sizeof all_dtypes / sizeof all_dtypes[0]; d++)
            for (size_t o = 0; o < sizeof all_ops / sizeof all_ops[0]; o++)
                for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++)
                    one_case(e.ctx, algorithms[a], 0, all_dtypes[d], all_ops[o], counts[k],
                             (int)(k + o) % 2);
    /* bcube with other radixes */
    for (int radix = 3; radix <= 5; radix++)
        for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++)
            one_case(e.ctx, "bcube", radix, CGLOO_INT32, CGLOO_SUM, counts[k], 0);
    mesh_close(e);
}

static void run_world(int size, void (*fn)(int, int, void *))
{
    CHECK_OK(cgloo_store_hash_create(&store));
    run_ranks(size, fn, NULL);
    cgloo_store_destroy(store);
}

static void test_matrix_small(void)
{
    static const int sizes[] = {1, 2, 3, 4, 5};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        run_world(sizes[i], rank_matrix);
}

static void test_matrix_7_8(void)
{
    run_world(7, rank_matrix);
    run_world(8, rank_matrix);
}

static void test_matrix_16(void)
{
    run_world(16, rank_matrix);
}

/* ---- large vectors ---- */

static void rank_large(int rank, int size, void *arg)
{
    rank_env e = mesh_connect(store, rank, size, 60000);
    size_t big = 1000003; /* a prime above a million */
    for (size_t a = 0; a < NALGO; a++) {
        one_case(e.ctx, algorithms[a], 0, CGLOO_FLOAT32, CGLOO_SUM, big, a % 2);
        one_case(e.ctx, algorithms[a], 0, CGLOO_INT32, CGLOO_BXOR, big, (a + 1) % 2);
    }
    one_case(e.ctx, "ring", 0, CGLOO_FLOAT16, CGLOO_SUM, 4u << 20, 1);
    one_case(e.ctx, "ring", 0, CGLOO_BFLOAT16, CGLOO_MAX, 3u << 20, 0);
    /* elements of 8 and 16 bytes over 1 and 2 MiB, several 512 KiB ring segments (a smaller
     * count than above: sanitizer builds pay for every element checked) */
    one_case(e.ctx, "ring", 0, CGLOO_COMPLEX64, CGLOO_PRODUCT, 131101, 1);
    one_case(e.ctx, "halving_doubling", 0, CGLOO_COMPLEX128, CGLOO_SUM, 131101, 0);
    mesh_close(e);
}

/* Under a sanitizer (COLL_ALLREDUCE_QUICK set by ctest) 2 and 3 ranks only, a power of two and
 * a fold: the plain build runs all four (56 s of the ASan suite's two minutes went here). */
static void test_large(void)
{
    static const int sizes[] = {2, 3, 4, 5};
    size_t n = getenv("COLL_ALLREDUCE_QUICK") ? 2 : sizeof sizes / sizeof sizes[0];
    for (size_t i = 0; i < n; i++)
        run_world(sizes[i], rank_large);
}

/* ---- bool: any non-zero byte is true, and every output byte is 0 or 1 ---- */

/* bool_byte: coll_util's truth value for (op, rank, i), as 0 or one of many non-zero bytes. */
static uint8_t bool_byte(cgloo_op op, int rank, size_t i)
{
    uint8_t truth = input_value(op, CGLOO_BOOL, rank, i).re != 0;
    return truth ? (uint8_t)(1 + (i * 37 + (size_t)rank * 11) % 255) : 0;
}

static void rank_bool_bytes(int rank, int size, void *arg)
{
    rank_env e = mesh_connect(store, rank, size, 30000);
    enum { n = 300 };
    uint8_t buf[n];
    for (size_t a = 0; a < NALGO; a++)
        for (size_t o = 0; o < sizeof all_ops / sizeof all_ops[0]; o++) {
            for (size_t i = 0; i < n; i++)
                buf[i] = bool_byte(all_ops[o], rank, i);
            cgloo_coll_opts opts = {.algorithm = algorithms[a]};
            CHECK_OK(cgloo_allreduce(e.ctx, buf, buf, n, CGLOO_BOOL, all_ops[o], &opts));
            CHECK(check_reduced(buf, n, CGLOO_BOOL, all_ops[o], size, 0));
        }
    mesh_close(e);
}

static void test_bool_bytes(void)
{
    static const int sizes[] = {2, 3, 5, 8}; /* one rank reduces nothing: its bytes stay */
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        run_world(sizes[i], rank_bool_bytes);
}

/* ---- several buffers per rank ---- */

static void rank_multi(int rank, int size, void *arg)
{
    rank_env e = mesh_connect(store, rank, size, 30000);
    enum { NB = 3 };
    size_t count = 5000;
    int32_t *ins[NB], *outs[2];
    for (int b = 0; b < NB; b++) {
        ins[b] = malloc(count * sizeof(int32_t));
        for (size_t i = 0; i < count; i++)
            ins[b][i] = (int32_t)(i % 100) + b + rank;
    }
    outs[0] = ins[1]; /* an output aliasing an input */
    outs[1] = malloc(count * sizeof(int32_t));
    CHECK_OK(cgloo_allreduce_multi(e.ctx, (const void *const *)ins, NB, (void *const *)outs, 2,
                                   count, CGLOO_INT32, CGLOO_SUM, NULL));
    for (size_t i = 0; i < count; i++) {
        /* sum over ranks and buffers of (i % 100) + b + r */
        int32_t want =
            (int32_t)(size * NB * (int)(i % 100) + size * (0 + 1 + 2) + NB * size * (size - 1) / 2);
        CHECK(outs[0][i] == want && outs[1][i] == want);
    }
    CHECK_STATUS(cgloo_allreduce_multi(e.ctx, NULL, 0, (void *const *)outs, 2, count, CGLOO_INT32,
                                       CGLOO_SUM, NULL),
                 CGLOO_EINVAL);
    for (int b = 0; b < NB; b++)
        free(ins[b]);
    free(outs[1]);
    mesh_close(e);
}

static void test_multi(void)
{
    run_world(1, rank_multi);
    run_world(3, rank_multi);
    run_world(4, rank_multi);
}

/* ---- a caller-supplied reduction: the max of absolute values of int64 ---- */

static void absmax(void *inout, const void *in, size_t n, cgloo_dtype t, void *user)
{
    int64_t *a = inout;
    const int64_t *b = in;
    for (size_t i = 0; i < n; i++) {
        int64_t x = a[i] < 0 ? -a[i] : a[i], y = b[i] < 0 ? -b[i] : b[i];
        a[i] = x > y ? x : y;
    }
    (*(int *)user)++;
}

static void rank_custom(int rank, int size, void *arg)
{
    rank_env e = mesh_connect(store, rank, size, 30000);
    int calls = 0;
    for (size_t a = 0; a < NALGO; a++) {
        int64_t v[100];
        for (int i = 0; i < 100; i++)
            v[i] = (rank % 2 ? -1 : 1) * (int64_t)(rank * 100 + i);
        cgloo_coll_opts o = {
            .algorithm = algorithms[a], .reduce_fn = absmax, .reduce_user = &calls};
        CHECK_OK(cgloo_allreduce(e.ctx, v, v, 100, CGLOO_INT64, CGLOO_BAND, &o));
        for (int i = 0; i < 100; i++)
            CHECK(v[i] == (int64_t)((size - 1) * 100 + i));
    }
    CHECK(size == 1 || calls > 0);
    mesh_close(e);
}

static void test_custom_fn(void)
{
    run_world(1, rank_custom);
    run_world(5, rank_custom);
}

/* ---- selection by environment, unknown names, bad arguments ---- */

static void rank_selection(int rank, int size, void *arg)
{
    rank_env e = mesh_connect(store, rank, size, 30000);
    int32_t v[10] = {0};
    cgloo_coll_opts bogus = {.algorithm = "no_such_algorithm"};
    CHECK_STATUS(cgloo_allreduce(e.ctx, v, v, 10, CGLOO_INT32, CGLOO_SUM, &bogus), CGLOO_ENOTSUP);
    char detail[512];
    cgloo_context_last_error(e.ctx, detail, sizeof detail);
    CHECK(strstr(detail, "no_such_algorithm") && strstr(detail, "ring"));
    /* CGLOO_ALLREDUCE_ALGORITHM was set by the test before the ranks started */
    for (int i = 0; i < 10; i++)
        v[i] = rank;
    CHECK_OK(cgloo_allreduce(e.ctx, v, v, 10, CGLOO_INT32, CGLOO_SUM, NULL));
    CHECK(v[3] == size * (size - 1) / 2);
    CHECK_STATUS(cgloo_allreduce(e.ctx, NULL, v, 10, CGLOO_INT32, CGLOO_SUM, NULL), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_allreduce(e.ctx, v, v, 10, (cgloo_dtype)99, CGLOO_SUM, NULL), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_allreduce(e.ctx, v, v, 10, CGLOO_INT32, (cgloo_op)99, NULL), CGLOO_EINVAL);
    cgloo_coll_opts bad_tag = {.tag = 1ull << 47};
    CHECK_STATUS(cgloo_allreduce(e.ctx, v, v, 10, CGLOO_INT32, CGLOO_SUM, &bad_tag), CGLOO_EINVAL);
    mesh_close(e);
}

static void test_selection(void)
{
    setenv("CGLOO_ALLREDUCE_ALGORITHM", "bcube", 1);
    run_world(3, rank_selection);
    setenv("CGLOO_ALLREDUCE_ALGORITHM", "typo", 1);
    cgloo_context *ctx;
    CHECK_OK(cgloo_context_create(0, 1, NULL, &ctx));
    CHECK_OK(cgloo_context_connect(ctx, NULL, NULL));
    int v = 1;
    CHECK_STATUS(cgloo_allreduce(ctx, &v, &v, 1, CGLOO_INT32, CGLOO_SUM, NULL), CGLOO_ENOTSUP);
    cgloo_context_destroy(ctx);
    const char *const *names = cgloo_algorithm_names("allreduce");
    CHECK(names && strcmp(names[0], "ring") == 0);
    CHECK(cgloo_algorithm_names("nothing") == NULL);
}

/* ---- two threads per rank, each running allreduces with its own tag ---- */

typedef struct thread_job {
    cgloo_context *ctx;
    uint64_t tag;
} thread_job;

static void *allreduce_thread(void *p)
{
    thread_job *j = p;
    int size = cgloo_context_size(j->ctx);
    for (int iter = 0; iter < 50; iter++) {
        int64_t v[300];
        for (int i = 0; i < 300; i++)
            v[i] = (int64_t)j->tag * 1000 + i;
        cgloo_coll_opts o = {.tag = j->tag, .algorithm = iter % 2 ? "ring" : NULL};
        CHECK_OK(cgloo_allreduce(j->ctx, v, v, 300, CGLOO_INT64, CGLOO_SUM, &o));
        for (int i = 0; i < 300; i++)
            CHECK(v[i] == size * ((int64_t)j->tag * 1000 + i));
    }
    return NULL;
}

static void rank_threads(int rank, int size, void *arg)
{
    rank_env e = mesh_connect(store, rank, size, 30000);
    pthread_t th[3];
    thread_job jobs[3];
    for (int t = 0; t < 3; t++) {
        jobs[t] = (thread_job){e.ctx, (uint64_t)t + 1};
        pthread_create(&th[t], NULL, allreduce_thread, &jobs[t]);
    }
    for (int t = 0; t < 3; t++)
        pthread_join(th[t], NULL);
    mesh_close(e);
}

static void test_threads(void)
{
    run_world(3, rank_threads);
}

static const test_case tests[] = {
    {"matrix_small", test_matrix_small, 120},
    {"matrix_7_8", test_matrix_7_8, 120},
    {"matrix_16", test_matrix_16, 180},
    {"large", test_large, 240},
    {"bool_bytes", test_bool_bytes, 60},
    {"multi", test_multi, 60},
    {"custom_fn", test_custom_fn, 60},
    {"selection", test_selection, 60},
    {"threads", test_threads, 60},
};
TEST_MAIN(tests)
