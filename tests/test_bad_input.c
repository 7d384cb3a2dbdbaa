/*
 * Bad arguments that earlier checks let through, each found by trying it under ASan: buffers
 * that overlap other than in the documented in-place form, lengths no object can have, and a
 * negative timeout on a blocking call. Each must end in EINVAL with nothing left behind (no
 * request posted, no leak), and the context must work afterwards. docs/RELIABILITY.md lists
 * every bad input tried and the test that tries it.
 */
#include "mesh.h"

#include <stdint.h>

static cgloo_store *store;

/* Every collective with sendbuf one element past recvbuf (or the reverse), on every rank of a
 * world of `size`. The ones with an in-place form refuse such overlap; the others may run, but
 * never write outside recvbuf (the buffers are exact heap allocations for ASan). */
static void rank_overlap(int rank, int size, void *arg)
{
    rank_env e = mesh_connect(store, rank, size, 10000);
    cgloo_context *ctx = e.ctx;
    const cgloo_dtype I = CGLOO_INT32;
    size_t n = 4, total = n * (size_t)size;
    int32_t *b = calloc(total + 1, sizeof *b);
    size_t counts[8];
    for (int r = 0; r < size; r++)
        counts[r] = n;
    CHECK_STATUS(cgloo_alltoall(ctx, b, b + 1, n, I, NULL), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_alltoall(ctx, b + 1, b, n, I, NULL), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_alltoallv(ctx, b, counts, b + 1, counts, I, NULL), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_reduce_scatter(ctx, b, b + 1, n, I, CGLOO_SUM, NULL), CGLOO_EINVAL);
    char detail[512];
    CHECK(cgloo_context_last_error(ctx, detail, sizeof detail) == CGLOO_EINVAL);
    CHECK(strstr(detail, "overlaps") != NULL);
    /* The others have no in-place form that such overlap could be mistaken for, or copy with
     * memmove: they run (every rank alike) and keep within recvbuf. */
    int32_t *big = calloc(total + n + 1, sizeof *big);
    size_t own = (size_t)rank * n;
    CHECK_OK(cgloo_allgather(ctx, big + own + 1, big, n, I, NULL));
    CHECK_OK(cgloo_allgatherv(ctx, big + own + 1, n, big, counts, I, NULL));
    CHECK_OK(cgloo_gather(ctx, big + own + 1, big, n, I, 0, NULL));
    CHECK_OK(cgloo_scatter(ctx, big, big + own + 1, n, I, 0, NULL));
    CHECK_OK(cgloo_broadcast(ctx, big + 1, n, I, 0, NULL));
    free(big);
    /* allreduce copies with memmove: any overlap gives the sum, in recvbuf. */
    for (size_t i = 0; i < n; i++)
        b[i] = (int32_t)(rank + 1);
    CHECK_OK(cgloo_allreduce(ctx, b, b + 1, n, I, CGLOO_SUM, NULL));
    CHECK(b[1] == size * (size + 1) / 2);
    /* The context is fine: an in-place alltoall right after. */
    for (size_t i = 0; i < total; i++)
        b[i] = (int32_t)(rank * 100 + (int)(i / n));
    CHECK_OK(cgloo_alltoall(ctx, b, b, n, I, NULL));
    for (int r = 0; r < size; r++)
        CHECK(b[(size_t)r * n] == r * 100 + rank);
    free(b);
    mesh_close(e);
}

static void test_overlap(void)
{
    int sizes[] = {1, 3};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        CHECK_OK(cgloo_store_hash_create(&store));
        run_ranks(sizes[i], rank_overlap, NULL);
        cgloo_store_destroy(store);
    }
}

/* A reduce whose root passes overlapping buffers: the root refuses before any message. */
static void test_reduce_overlap(void)
{
    cgloo_context *ctx;
    CHECK_OK(cgloo_store_hash_create(&store));
    CHECK_OK(cgloo_context_create(0, 1, NULL, &ctx));
    CHECK_OK(cgloo_context_connect(ctx, store, NULL));
    int32_t *b = calloc(9, sizeof *b);
    CHECK_STATUS(cgloo_reduce(ctx, b, b + 1, 8, CGLOO_INT32, CGLOO_SUM, 0, NULL), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_reduce(ctx, b + 1, b, 8, CGLOO_INT32, CGLOO_SUM, 0, NULL), CGLOO_EINVAL);
    CHECK_OK(cgloo_reduce(ctx, b, b, 8, CGLOO_INT32, CGLOO_SUM, 0, NULL));     /* in place */
    CHECK_OK(cgloo_reduce(ctx, b, b + 8, 1, CGLOO_INT32, CGLOO_SUM, 0, NULL)); /* adjacent */
    free(b);
    cgloo_context_destroy(ctx);
    cgloo_store_destroy(store);
}

/* Lengths past PTRDIFF_MAX (a negative count passed as size_t) and negative timeouts. */
static void rank_p2p_limits(int rank, int size, void *arg)
{
    rank_env e = mesh_connect(store, rank, size, 10000);
    cgloo_context *ctx = e.ctx;
    int peer = 1 - rank, v = 0, srcs[] = {peer};
    cgloo_request *r = NULL;
    size_t huge[] = {(size_t)PTRDIFF_MAX + 1, SIZE_MAX, (size_t)(long)-5};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        CHECK_STATUS(cgloo_isend(ctx, &v, huge[i], peer, 1, &r), CGLOO_EINVAL);
        CHECK_STATUS(cgloo_isend(ctx, &v, huge[i], rank, 1, &r), CGLOO_EINVAL);
        CHECK_STATUS(cgloo_irecv(ctx, &v, huge[i], peer, 1, &r), CGLOO_EINVAL);
        CHECK_STATUS(cgloo_irecv_any(ctx, &v, huge[i], srcs, 1, 1, &r), CGLOO_EINVAL);
        CHECK_STATUS(cgloo_send(ctx, &v, huge[i], peer, 1, 0), CGLOO_EINVAL);
    }
    CHECK(r == NULL);
    /* A negative timeout posts nothing: the message sent next goes to the receive after it. */
    int got = -1;
    CHECK_STATUS(cgloo_recv(ctx, &got, sizeof got, peer, 2, -1, NULL), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_recv_any(ctx, &got, sizeof got, srcs, 1, 2, -1, NULL), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_send(ctx, &rank, sizeof rank, peer, 2, -1), CGLOO_EINVAL);
    CHECK_OK(cgloo_send(ctx, &rank, sizeof rank, peer, 2, 0));
    CHECK_OK(cgloo_recv(ctx, &got, sizeof got, peer, 2, 0, NULL));
    CHECK(got == peer);
    /* cgloo_wait with a negative timeout leaves the request to wait on again. */
    CHECK_OK(cgloo_irecv(ctx, &got, sizeof got, peer, 3, &r));
    CHECK_STATUS(cgloo_wait(r, -1, NULL), CGLOO_EINVAL);
    CHECK_OK(cgloo_send(ctx, &rank, sizeof rank, peer, 3, 0));
    CHECK_OK(cgloo_wait(r, 0, NULL));
    CHECK(got == peer);
    mesh_close(e);
}

static void test_p2p_limits(void)
{
    CHECK_OK(cgloo_store_hash_create(&store));
    run_ranks(2, rank_p2p_limits, NULL);
    cgloo_store_destroy(store);
}

/* ---- stores ---- */

/* store_limits: what every backend refuses, and a 1 MiB value with odd keys round trip. */
static void store_limits(cgloo_store *s, const char *name)
{
    fprintf(stderr, "     store %s\n", name);
    void *v = NULL;
    size_t n = 0;
    int all = 0;
    int64_t r;
    const char *keys[] = {"a/../../b", "..", "/etc/passwd"};
    CHECK_STATUS(cgloo_store_set(s, "k", "x", SIZE_MAX), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_store_set(s, "k", "x", (size_t)CGLOO_STORE_VALUE_MAX + 1), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_store_set(s, NULL, "x", 1), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_store_get(s, "k", -1, &v, &n), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_store_get(s, "k", 10, NULL, &n), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_store_wait(s, keys, 3, -1), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_store_wait(s, NULL, 3, 10), CGLOO_EINVAL);
    CHECK_OK(cgloo_store_wait(s, keys, 0, 10)); /* nothing to wait for */
    CHECK_STATUS(cgloo_store_check(s, keys, SIZE_MAX, &all), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_store_check(s, keys, 3, NULL), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_store_add(s, NULL, 1, &r), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_store_delete(s, NULL), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_store_multi_get(s, keys, SIZE_MAX, 10, &v, &n), CGLOO_EINVAL);
    size_t big = 1u << 20;
    uint8_t *val = malloc(big);
    fill_pattern(val, big, 7);
    for (size_t i = 0; i < 3; i++) {
        CHECK_OK(cgloo_store_set(s, keys[i], val, big));
        CHECK_OK(cgloo_store_get(s, keys[i], 1000, &v, &n));
        CHECK(n == big && memcmp(v, val, big) == 0);
        cgloo_free(v);
    }
    free(val);
}

static void test_store_limits(void)
{
    cgloo_store *s, *p;
    CHECK_OK(cgloo_store_hash_create(&s));
    store_limits(s, "hash");
    CHECK_OK(cgloo_store_prefix_create(s, "pre/../fix", &p));
    store_limits(p, "prefix");
    cgloo_store_destroy(p);
    cgloo_store_destroy(s);
    const char *dir = test_tmpdir();
    CHECK_OK(cgloo_store_file_create(dir, NULL, &s));
    store_limits(s, "file");
    cgloo_store_destroy(s);
    cgloo_store_server *srv;
    CHECK_OK(cgloo_store_server_start("127.0.0.1", 0, &srv));
    CHECK_OK(cgloo_store_tcp_connect("127.0.0.1", cgloo_store_server_port(srv), 5000, &s));
    store_limits(s, "tcp");
    cgloo_store_destroy(s);
    cgloo_store_server_stop(srv);
}

static const test_case tests[] = {
    {"overlap", test_overlap, 60},
    {"reduce_overlap", test_reduce_overlap, 30},
    {"p2p_limits", test_p2p_limits, 30},
    {"store_limits", test_store_limits, 30},
};
TEST_MAIN(tests)
