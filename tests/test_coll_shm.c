/*
 * The collectives' shm algorithms (allreduce, barrier, broadcast through shared-memory slots,
 * src/coll/slots.c): every dtype and op against a serial reference at sizes around a slot's
 * payload on 2 to 8 ranks; long runs of calls back to back, mixing the three and caller tags
 * (a slot reused too early shows as a wrong value); two tags at once on two threads per rank;
 * ranks outnumbering the cores; the selector's choice; every length around a lined payload's
 * edges (transport/slot.h), lined and not in turn; and failure: a rank killed while the
 * others wait on its slot (EPEER naming it, soon), a rank that never comes (ETIMEDOUT naming
 * it), and the message-based algorithms run instead where a peer is not on shared memory.
 */
#include "coll/slots.h"
#include "coll_util.h"
#include "mesh.h"
#include "procs.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define TIMEOUT_MS 30000

/* Under a sanitizer every call is some ten times slower: fewer rounds and worlds there keep the
 * suite to seconds, the plain build runs them all. */
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

static cgloo_store *store;

static rank_env connect_shm(cgloo_store *s, int rank, int size, const char *transport,
                            int timeout_ms)
{
    rank_env e = {0};
    CHECK_OK(cgloo_device_tcp_create(&mesh_loopback, &e.dev));
    cgloo_context_attr attr = {.timeout_ms = timeout_ms, .name = "slots", .transport = transport};
    CHECK_OK(cgloo_context_create(rank, size, &attr, &e.ctx));
    int rc = cgloo_context_connect(e.ctx, s, e.dev);
    if (rc != CGLOO_OK) {
        char detail[512];
        cgloo_context_last_error(e.ctx, detail, sizeof detail);
        harness_fail(__FILE__, __LINE__, "cgloo_context_connect", detail);
    }
    return e;
}

static void fail_with_detail(cgloo_context *ctx, int line, const char *what)
{
    char detail[1024], msg[1200];
    cgloo_context_last_error(ctx, detail, sizeof detail);
    snprintf(msg, sizeof msg, "rank %d: %s [%s]", cgloo_context_rank(ctx), what, detail);
    harness_fail(__FILE__, line, "shm collective", msg);
}
#define MUST(ctx, expr)                                                                            \
    do {                                                                                           \
        if ((expr) != CGLOO_OK)                                                                    \
            fail_with_detail(ctx, __LINE__, #expr);                                                \
    } while (0)

/* In a world of `size` ranks as threads over shared memory, each runs body. */
typedef struct world {
    void (*body)(cgloo_context *ctx, int rank, int size, void *arg);
    void *arg;
} world;

static void world_rank(int rank, int size, void *p)
{
    world *w = p;
    rank_env e = connect_shm(store, rank, size, "shm", TIMEOUT_MS);
    w->body(e.ctx, rank, size, w->arg);
    mesh_close(e);
}

static void in_world(int size, void (*body)(cgloo_context *, int, int, void *), void *arg)
{
    world w = {body, arg};
    CHECK_OK(cgloo_store_hash_create(&store));
    run_ranks(size, world_rank, &w);
    cgloo_store_destroy(store);
}

static const int world_sizes[] = {2, 3, 4, 5, 7, 8};
/* The sizes the long cases run: all of them, or under a sanitizer the smallest, an odd one and
 * the largest. */
static const int *long_sizes(size_t *n)
{
    static const int few[] = {2, 5, 8};
    *n = SANITIZED ? CGLOO_ARRAY_LEN(few) : CGLOO_ARRAY_LEN(world_sizes);
    return SANITIZED ? few : world_sizes;
}

/* The flight recorder names the algorithm each call ran. */
static bool dump_has(cgloo_context *ctx, const char *what)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CHECK(f != NULL);
    CHECK_OK(cgloo_context_dump(ctx, f));
    fclose(f);
    bool has = text && strstr(text, what);
    if (getenv("TEST_SHOW_DUMP"))
        fprintf(stderr, "%s", text);
    free(text);
    return has;
}

/* ---- every dtype and op ---- */

/* Element counts around one slot's payload (a round of its own) for this element size. */
static size_t counts_for(size_t esize, size_t *out)
{
    size_t per = CGLOO_SLOT_DATA / esize, n = 0;
    const size_t list[] = {0, 1, 3, 17, 255, per - 1, per, per + 1, 2 * per + 5};
    const size_t few[] = {0, 3, per + 1}; /* under a sanitizer */
    for (size_t i = 0; i < (SANITIZED ? CGLOO_ARRAY_LEN(few) : CGLOO_ARRAY_LEN(list)); i++)
        out[n++] = SANITIZED ? few[i] : list[i];
    return n;
}

static void types_body(cgloo_context *ctx, int rank, int size, void *arg)
{
    (void)arg;
    cgloo_coll_opts o = {.algorithm = "shm"};
    size_t max_bytes = 3 * CGLOO_SLOT_DATA + 256;
    uint8_t *buf = malloc(max_bytes), *out = malloc(max_bytes);
    CHECK(buf && out);
    for (size_t t = 0; t < CGLOO_ARRAY_LEN(all_dtypes); t++)
        for (size_t k = 0; k < CGLOO_ARRAY_LEN(all_ops); k++) {
            cgloo_dtype dt = all_dtypes[t];
            cgloo_op op = all_ops[k];
            if (!op_defined(op, dt))
                continue;
            size_t counts[16], nc = counts_for(cgloo_dtype_size(dt), counts);
            for (size_t c = 0; c < nc; c++) {
                fill_input(buf, counts[c], dt, op, rank);
                bool in_place = c % 2;
                MUST(ctx, cgloo_allreduce(ctx, buf, in_place ? buf : out, counts[c], dt, op, &o));
                if (!check_reduced(in_place ? buf : out, counts[c], dt, op, size, 0))
                    fail_with_detail(ctx, __LINE__, cgloo_dtype_name(dt));
            }
        }
    free(buf);
    free(out);
}

static void test_allreduce_types(void)
{
    size_t n;
    const int *sizes = long_sizes(&n);
    for (size_t s = 0; s < n; s++)
        in_world(sizes[s], types_body, NULL);
}

/* ---- back to back ---- */

#define ROUNDS (SANITIZED ? 200 : 1500)

/* One of the other collectives in turn, small (the selector takes its shm algorithm), with
 * values that change every round: gather's and reduce's ranks only write, scatter's only read,
 * so that a slot's reuse after each pattern is checked. */
static void other_round(cgloo_context *ctx, int rank, int size, int i, const cgloo_coll_opts *o)
{
    int32_t in[8 * 2], out[8 * 2]; /* two elements per rank, 8 ranks at most */
    int root = (i / 6) % size, k = 2 * size;
    for (int j = 0; j < k; j++)
        in[j] = i * 1000 + rank * 100 + j;
    switch (i % 6) {
    case 0:
        MUST(ctx, cgloo_allgather(ctx, in, out, 2, CGLOO_INT32, o));
        for (int j = 0; j < k; j++)
            if (out[j] != i * 1000 + j / 2 * 100 + j % 2)
                fail_with_detail(ctx, __LINE__, "allgather value");
        break;
    case 1:
        MUST(ctx, cgloo_gather(ctx, in, out, 2, CGLOO_INT32, root, o));
        for (int j = 0; rank == root && j < k; j++)
            if (out[j] != i * 1000 + j / 2 * 100 + j % 2)
                fail_with_detail(ctx, __LINE__, "gather value");
        break;
    case 2:
        MUST(ctx, cgloo_scatter(ctx, in, out, 2, CGLOO_INT32, root, o));
        for (int j = 0; j < 2; j++)
            if (out[j] != i * 1000 + root * 100 + rank * 2 + j)
                fail_with_detail(ctx, __LINE__, "scatter value");
        break;
    case 3:
        MUST(ctx, cgloo_alltoall(ctx, in, out, 2, CGLOO_INT32, o));
        for (int j = 0; j < k; j++)
            if (out[j] != i * 1000 + j / 2 * 100 + rank * 2 + j % 2)
                fail_with_detail(ctx, __LINE__, "alltoall value");
        break;
    case 4:
        MUST(ctx, cgloo_reduce_scatter(ctx, in, out, 2, CGLOO_INT32, CGLOO_SUM, o));
        for (int j = 0; j < 2; j++)
            if (out[j] != size * (i * 1000 + rank * 2 + j) + 100 * size * (size - 1) / 2)
                fail_with_detail(ctx, __LINE__, "reduce_scatter value");
        break;
    default:
        MUST(ctx, cgloo_reduce(ctx, in, out, 2, CGLOO_INT32, CGLOO_SUM, root, o));
        for (int j = 0; rank == root && j < 2; j++)
            if (out[j] != size * (i * 1000 + j) + 100 * size * (size - 1) / 2)
                fail_with_detail(ctx, __LINE__, "reduce value");
    }
}

/* One round of each collective with values that change every round, on tag `tag`: a slot
 * overwritten before its reader is done, or read before it is published, shows. */
static void mixed_round(cgloo_context *ctx, int rank, int size, int i, uint64_t tag)
{
    cgloo_coll_opts o = {.tag = tag};
    int64_t v[3] = {rank + i, rank * i, 1};
    MUST(ctx, cgloo_allreduce(ctx, v, v, 3, CGLOO_INT64, CGLOO_SUM, &o));
    int64_t s = (int64_t)size * (size - 1) / 2;
    if (v[0] != s + (int64_t)size * i || v[1] != s * i || v[2] != size)
        fail_with_detail(ctx, __LINE__, "allreduce value");
    int root = i % size;
    int32_t b[5];
    size_t n = i % 7 == 0 ? CGLOO_ARRAY_LEN(b) : 1;
    for (size_t j = 0; j < n; j++)
        b[j] = rank == root ? i * 10 + (int)j : -1;
    MUST(ctx, cgloo_broadcast(ctx, b, n, CGLOO_INT32, root, &o));
    for (size_t j = 0; j < n; j++)
        if (b[j] != i * 10 + (int)j)
            fail_with_detail(ctx, __LINE__, "broadcast value");
    if (i % 3 == 0)
        MUST(ctx, cgloo_barrier(ctx, &o));
    other_round(ctx, rank, size, i, &o);
}

static void back_to_back_body(cgloo_context *ctx, int rank, int size, void *arg)
{
    (void)arg;
    for (int i = 0; i < ROUNDS; i++)
        mixed_round(ctx, rank, size, i, (uint64_t)(i / 100 % 2) * 5); /* tag 5: messages */
}

static void test_back_to_back(void)
{
    size_t n;
    const int *sizes = long_sizes(&n);
    for (size_t s = 0; s < n; s++)
        in_world(sizes[s], back_to_back_body, NULL);
}

/* A broadcast larger than a slot from each root in turn: the root refills a slot two rounds
 * later, only once its reader is done with it. */
static void big_broadcast_body(cgloo_context *ctx, int rank, int size, void *arg)
{
    (void)arg;
    size_t n = 5 * CGLOO_SLOT_DATA + 7;
    uint8_t *b = malloc(n);
    CHECK(b != NULL);
    cgloo_coll_opts o = {.algorithm = "shm"};
    for (int i = 0; i < 40; i++) {
        int root = i % size;
        if (rank == root)
            fill_pattern(b, n, (uint32_t)i);
        else
            memset(b, 0, n);
        MUST(ctx, cgloo_broadcast(ctx, b, n, CGLOO_UINT8, root, &o));
        if (!check_pattern(b, n, (uint32_t)i))
            fail_with_detail(ctx, __LINE__, "broadcast bytes");
    }
    free(b);
}

static void test_big_broadcast(void)
{
    in_world(2, big_broadcast_body, NULL);
    in_world(5, big_broadcast_body, NULL);
}

/* ---- lined payloads (transport/slot.h): every length around the lines' edges ---- */

/* Every byte length from 1 to past the lined ones, through the shm allreduce (uint8 sums: rank
 * r gives byte i the value r + i) and allgather (each rank's pattern), so that a byte gathered
 * from the wrong line or a line published before its data shows. Each length runs twice, after
 * a long one the first time (a contiguous payload over the same buffer's lines before it:
 * their stale bytes must not pass for a line's op number), and allgatherv gives each rank a
 * length of its own (lined to one peer, not to another). */
static void lined_body(cgloo_context *ctx, int rank, int size, void *arg)
{
    (void)arg;
    enum { MAX = CGLOO_SLOT_LINED_MAX + 8, LONG = 1000 };
    uint8_t sum[LONG], all[LONG * 8];
    cgloo_coll_opts o = {.algorithm = "shm"};
    for (size_t k = 0; k < 2 * MAX; k++) {
        size_t n = k % 2 ? k / 2 + 1 : LONG;
        for (size_t i = 0; i < n; i++)
            sum[i] = (uint8_t)(rank + i);
        MUST(ctx, cgloo_allreduce(ctx, sum, sum, n, CGLOO_UINT8, CGLOO_SUM, &o));
        for (size_t i = 0; i < n; i++)
            if (sum[i] != (uint8_t)(size * (size - 1) / 2 + size * (int)i))
                fail_with_detail(ctx, __LINE__, "a lined allreduce's byte");
        fill_pattern(all + n * (size_t)rank, n, (uint32_t)(n * 100 + (size_t)rank));
        MUST(ctx, cgloo_allgather(ctx, all + n * (size_t)rank, all, n, CGLOO_UINT8, &o));
        for (int r = 0; r < size; r++)
            if (!check_pattern(all + n * (size_t)r, n, (uint32_t)(n * 100 + (size_t)r)))
                fail_with_detail(ctx, __LINE__, "a lined allgather's block");
    }
    size_t counts[8], displs[8];
    for (size_t n = 1; n <= MAX; n += 7) { /* rank r gives n + 40 r bytes */
        for (int r = 0; r < size; r++) {
            counts[r] = n + 40 * (size_t)r;
            displs[r] = r ? displs[r - 1] + counts[r - 1] : 0;
        }
        fill_pattern(all + displs[rank], counts[rank], (uint32_t)(n * 7 + (size_t)rank));
        MUST(ctx,
             cgloo_allgatherv(ctx, all + displs[rank], counts[rank], all, counts, CGLOO_UINT8, &o));
        for (int r = 0; r < size; r++)
            if (!check_pattern(all + displs[r], counts[r], (uint32_t)(n * 7 + (size_t)r)))
                fail_with_detail(ctx, __LINE__, "a lined allgatherv's block");
    }
}

/* Ranks that disagree on a length, lined or not, fail at once naming it (EPROTO), rather than
 * wait for lines that never come: rank 0 gives 100 bytes (two lines), rank 1 each of these. */
static void lined_disagree_body(cgloo_context *ctx, int rank, int size, void *arg)
{
    (void)size;
    size_t theirs = *(const size_t *)arg, n = rank == 0 ? 100 : theirs;
    uint8_t buf[300] = {0}; /* the longest of test_lined's lengths */
    cgloo_coll_opts o = {.algorithm = "shm"};
    long long t0 = test_now_ms();
    int rc = cgloo_allreduce(ctx, buf, buf, n, CGLOO_UINT8, CGLOO_SUM, &o);
    char detail[512];
    cgloo_context_last_error(ctx, detail, sizeof detail);
    if (rc != CGLOO_EPROTO || !strstr(detail, "were expected"))
        fail_with_detail(ctx, __LINE__, "a length the peer disagrees with");
    CHECK(test_now_ms() - t0 < TIMEOUT_MS / 2);
}

static void test_lined(void)
{
    in_world(2, lined_body, NULL);
    in_world(3, lined_body, NULL);
    static const size_t theirs[] = {40, 48, 49, 160, CGLOO_SLOT_LINED_MAX, 300};
    for (size_t i = 0; i < CGLOO_ARRAY_LEN(theirs); i++)
        in_world(2, lined_disagree_body, (void *)&theirs[i]);
}

/* Two threads per rank, each running collectives on its own tag at once (tags 1 and 2: two
 * channels). */
typedef struct tagged {
    cgloo_context *ctx;
    int rank, size;
    uint64_t tag;
} tagged;

static void *tagged_thread(void *p)
{
    tagged *t = p;
    for (int i = 0; i < ROUNDS / 4; i++)
        mixed_round(t->ctx, t->rank, t->size, i, t->tag);
    return NULL;
}

static void two_tags_body(cgloo_context *ctx, int rank, int size, void *arg)
{
    (void)arg;
    pthread_t th;
    tagged a = {ctx, rank, size, 1}, b = {ctx, rank, size, 2};
    CHECK(pthread_create(&th, NULL, tagged_thread, &a) == 0);
    tagged_thread(&b);
    pthread_join(th, NULL);
}

static void test_two_tags(void)
{
    in_world(2, two_tags_body, NULL);
    in_world(3, two_tags_body, NULL);
}

/* ---- the other collectives' shm algorithms ---- */

/* The byte that rank `src` gives rank `dst` at index i of case `salt` (dst -1: the same for
 * every rank, as allgather and gather give). */
static uint8_t mv_byte(int salt, int src, int dst, size_t i)
{
    return (uint8_t)(salt * 53 + src * 31 + (dst + 1) * 7 + (int)(i * 13 % 251));
}

static void mv_fill(uint8_t *p, size_t n, int salt, int src, int dst)
{
    for (size_t i = 0; i < n; i++)
        p[i] = mv_byte(salt, src, dst, i);
}

static bool mv_same(const uint8_t *p, size_t n, int salt, int src, int dst)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != mv_byte(salt, src, dst, i))
            return false;
    return true;
}

/* Block bytes around one slot's payload: a round of its own, and more than one. */
static size_t mv_sizes(size_t *out)
{
    const size_t list[] = {0,
                           1,
                           17,
                           CGLOO_SLOT_DATA - 1,
                           CGLOO_SLOT_DATA,
                           CGLOO_SLOT_DATA + 1,
                           2 * CGLOO_SLOT_DATA + 5};
    const size_t few[] = {1, CGLOO_SLOT_DATA + 1}; /* under a sanitizer */
    size_t n = SANITIZED ? CGLOO_ARRAY_LEN(few) : CGLOO_ARRAY_LEN(list);
    memcpy(out, SANITIZED ? few : list, n * sizeof *out);
    return n;
}

/* uneven: rank r's block in the v forms, from b: some empty, some longer than b. */
static size_t uneven(size_t b, int r)
{
    return r % 3 == 1 ? 0 : b + (size_t)r * 5;
}

/* a2a_bytes: what rank i sends rank j in the alltoallv case: uneven per pair, so that pairs
 * need different numbers of rounds. */
static size_t a2a_bytes(size_t b, int i, int j)
{
    return (size_t)((i + 2 * j) % 3) * b + (size_t)(i == j);
}

static void prefix_sums(const size_t *counts, int n, size_t *off)
{
    off[0] = 0;
    for (int r = 0; r < n; r++)
        off[r + 1] = off[r] + counts[r];
}

typedef struct mv_case {
    cgloo_context *ctx;
    int rank, size, salt, root;
    size_t b; /* the block size the case starts from */
    bool v;   /* the v form, with uneven blocks */
} mv_case;

static const cgloo_coll_opts shm_opts = {.algorithm = "shm"};

static void mv_allgather(const mv_case *m, const size_t *counts)
{
    size_t off[SLOTS_MAX_RANKS + 1];
    prefix_sums(counts, m->size, off);
    uint8_t *out = malloc(off[m->size] + 1), *in = malloc(counts[m->rank] + 1);
    CHECK(out && in);
    mv_fill(in, counts[m->rank], m->salt, m->rank, -1);
    int rc =
        m->v ? cgloo_allgatherv(m->ctx, in, counts[m->rank], out, counts, CGLOO_UINT8, &shm_opts)
             : cgloo_allgather(m->ctx, in, out, m->b, CGLOO_UINT8, &shm_opts);
    MUST(m->ctx, rc);
    for (int r = 0; r < m->size; r++)
        if (!mv_same(out + off[r], counts[r], m->salt, r, -1))
            fail_with_detail(m->ctx, __LINE__, "allgather block");
    free(out);
    free(in);
}

static void mv_gather(const mv_case *m, const size_t *counts)
{
    size_t off[SLOTS_MAX_RANKS + 1];
    prefix_sums(counts, m->size, off);
    bool root = m->rank == m->root;
    uint8_t *out = root ? malloc(off[m->size] + 1) : NULL, *in = malloc(counts[m->rank] + 1);
    CHECK(in && (out || !root));
    mv_fill(in, counts[m->rank], m->salt, m->rank, -1);
    int rc = m->v ? cgloo_gatherv(m->ctx, in, counts[m->rank], out, counts, CGLOO_UINT8, m->root,
                                  &shm_opts)
                  : cgloo_gather(m->ctx, in, out, m->b, CGLOO_UINT8, m->root, &shm_opts);
    MUST(m->ctx, rc);
    for (int r = 0; root && r < m->size; r++)
        if (!mv_same(out + off[r], counts[r], m->salt, r, -1))
            fail_with_detail(m->ctx, __LINE__, "gather block");
    free(out);
    free(in);
}

static void mv_scatter(const mv_case *m, const size_t *counts)
{
    size_t off[SLOTS_MAX_RANKS + 1];
    prefix_sums(counts, m->size, off);
    bool root = m->rank == m->root;
    uint8_t *in = root ? malloc(off[m->size] + 1) : NULL, *out = malloc(counts[m->rank] + 1);
    CHECK(out && (in || !root));
    for (int r = 0; root && r < m->size; r++)
        mv_fill(in + off[r], counts[r], m->salt, m->root, r);
    int rc = m->v ? cgloo_scatterv(m->ctx, in, counts, out, counts[m->rank], CGLOO_UINT8, m->root,
                                   &shm_opts)
                  : cgloo_scatter(m->ctx, in, out, m->b, CGLOO_UINT8, m->root, &shm_opts);
    MUST(m->ctx, rc);
    if (!mv_same(out, counts[m->rank], m->salt, m->root, m->rank))
        fail_with_detail(m->ctx, __LINE__, "scatter block");
    free(in);
    free(out);
}

static void mv_alltoall(const mv_case *m)
{
    size_t sc[SLOTS_MAX_RANKS], rc_[SLOTS_MAX_RANKS], soff[SLOTS_MAX_RANKS + 1],
        roff[SLOTS_MAX_RANKS + 1];
    for (int j = 0; j < m->size; j++) {
        sc[j] = m->v ? a2a_bytes(m->b, m->rank, j) : m->b;
        rc_[j] = m->v ? a2a_bytes(m->b, j, m->rank) : m->b;
    }
    prefix_sums(sc, m->size, soff);
    prefix_sums(rc_, m->size, roff);
    uint8_t *in = malloc(soff[m->size] + 1), *out = malloc(roff[m->size] + 1);
    CHECK(in && out);
    for (int j = 0; j < m->size; j++)
        mv_fill(in + soff[j], sc[j], m->salt, m->rank, j);
    int rc = m->v ? cgloo_alltoallv(m->ctx, in, sc, out, rc_, CGLOO_UINT8, &shm_opts)
                  : cgloo_alltoall(m->ctx, in, out, m->b, CGLOO_UINT8, &shm_opts);
    MUST(m->ctx, rc);
    for (int j = 0; j < m->size; j++)
        if (!mv_same(out + roff[j], rc_[j], m->salt, j, m->rank))
            fail_with_detail(m->ctx, __LINE__, "alltoall block");
    free(in);
    free(out);
}

/* Every data-moving shm algorithm, plain and v, at block sizes around a slot's payload, from
 * the first, a middle and the last rank as root. */
static void movement_body(cgloo_context *ctx, int rank, int size, void *arg)
{
    (void)arg;
    size_t sizes[8], ns = mv_sizes(sizes);
    int salt = 1;
    for (size_t k = 0; k < ns; k++)
        for (int v = 0; v < 2; v++) {
            size_t counts[SLOTS_MAX_RANKS];
            for (int r = 0; r < size; r++)
                counts[r] = v ? uneven(sizes[k], r) : sizes[k];
            int roots[3] = {0, size / 2, size - 1};
            for (int i = 0; i < 3; i++) {
                mv_case m = {ctx, rank, size, salt++, roots[i], sizes[k], v};
                mv_gather(&m, counts);
                mv_scatter(&m, counts);
            }
            mv_case m = {ctx, rank, size, salt++, 0, sizes[k], v};
            mv_allgather(&m, counts);
            mv_alltoall(&m);
        }
    CHECK(dump_has(ctx, "alltoallv(shm)"));
}

static void test_movement(void)
{
    const int sizes[] = {2, 3, 5};
    for (size_t s = 0; s < CGLOO_ARRAY_LEN(sizes); s += SANITIZED ? 2 : 1)
        in_world(sizes[s], movement_body, NULL);
}

/* The reductions: reduce from every root, reduce_scatter and reduce_scatterv with uneven
 * blocks, in place and not, for a few dtypes and ops, at counts around a slot's payload. */
static void rs_case(cgloo_context *ctx, int rank, int size, cgloo_dtype dt, cgloo_op op, size_t n,
                    bool v, bool in_place)
{
    size_t es = cgloo_dtype_size(dt), counts[SLOTS_MAX_RANKS], off[SLOTS_MAX_RANKS + 1];
    for (int r = 0; r < size; r++)
        counts[r] = v ? uneven(n, r) : n;
    prefix_sums(counts, size, off);
    uint8_t *in = malloc(off[size] * es + 16), *out = malloc(counts[rank] * es + 16);
    CHECK(in && out);
    fill_input(in, off[size], dt, op, rank);
    void *dst = in_place ? in + off[rank] * es : out;
    int rc = v ? cgloo_reduce_scatterv(ctx, in, dst, counts, dt, op, &shm_opts)
               : cgloo_reduce_scatter(ctx, in, dst, n, dt, op, &shm_opts);
    MUST(ctx, rc);
    if (!check_reduced(dst, counts[rank], dt, op, size, off[rank]))
        fail_with_detail(ctx, __LINE__, "reduce_scatter block");
    free(in);
    free(out);
}

static void reduce_case(cgloo_context *ctx, int rank, int size, cgloo_dtype dt, cgloo_op op,
                        size_t n, int root, bool in_place)
{
    size_t es = cgloo_dtype_size(dt);
    uint8_t *in = malloc(n * es + 16), *out = malloc(n * es + 16);
    CHECK(in && out);
    fill_input(in, n, dt, op, rank);
    void *dst = in_place && rank == root ? in : out;
    MUST(ctx, cgloo_reduce(ctx, in, dst, n, dt, op, root, &shm_opts));
    if (rank == root && !check_reduced(dst, n, dt, op, size, 0))
        fail_with_detail(ctx, __LINE__, "reduce result");
    free(in);
    free(out);
}

static void reductions_body(cgloo_context *ctx, int rank, int size, void *arg)
{
    (void)arg;
    const struct {
        cgloo_dtype dt;
        cgloo_op op;
    } kinds[] = {{CGLOO_INT32, CGLOO_SUM},
                 {CGLOO_FLOAT64, CGLOO_PRODUCT},
                 {CGLOO_FLOAT16, CGLOO_MAX},
                 {CGLOO_COMPLEX128, CGLOO_SUM},
                 {CGLOO_UINT8, CGLOO_BXOR}};
    for (size_t k = 0; k < CGLOO_ARRAY_LEN(kinds); k++) {
        size_t per = CGLOO_SLOT_DATA / cgloo_dtype_size(kinds[k].dt);
        const size_t list[] = {1, 5, per - 1, per, per + 1, 2 * per + 3};
        for (size_t c = SANITIZED ? 3 : 0; c < CGLOO_ARRAY_LEN(list); c += SANITIZED ? 2 : 1) {
            for (int v = 0; v < 2; v++)
                rs_case(ctx, rank, size, kinds[k].dt, kinds[k].op, list[c], v, (c + k + v) % 2);
            for (int root = 0; root < size; root++)
                reduce_case(ctx, rank, size, kinds[k].dt, kinds[k].op, list[c], root,
                            (c + (size_t)root) % 2);
        }
    }
    CHECK(dump_has(ctx, "reduce(shm)"));
}

static void test_reductions(void)
{
    const int sizes[] = {2, 3, 5};
    for (size_t s = 0; s < CGLOO_ARRAY_LEN(sizes); s += SANITIZED ? 2 : 1)
        in_world(sizes[s], reductions_body, NULL);
}

/* ---- more ranks than cores ---- */

static void test_oversubscribed(void)
{
    /* The context reads it at create: ranks then yield at once and sleep after the spin. */
    CHECK(setenv("CGLOO_LOCAL_SIZE", "8", 1) == 0);
    in_world(8, back_to_back_body, NULL);
    CHECK(setenv("CGLOO_SPIN_US", "0", 1) == 0); /* every wait sleeps */
    in_world(4, back_to_back_body, NULL);
    CHECK(unsetenv("CGLOO_SPIN_US") == 0);
    CHECK(unsetenv("CGLOO_LOCAL_SIZE") == 0);
}

/* ---- the selector ---- */

static void selector_body(cgloo_context *ctx, int rank, int size, void *arg)
{
    const char *transport = arg;
    float x = 1;
    MUST(ctx, cgloo_allreduce(ctx, &x, &x, 1, CGLOO_FLOAT32, CGLOO_SUM, NULL));
    MUST(ctx, cgloo_barrier(ctx, NULL));
    MUST(ctx, cgloo_broadcast(ctx, &x, 1, CGLOO_FLOAT32, 0, NULL));
    CHECK(x == (float)size);
    CHECK(dump_has(ctx, "(shm)") == (strcmp(transport, "shm") == 0));
    for (int i = 0; i < 6; i++)
        other_round(ctx, rank, size, i, NULL);
    const char *others[] = {"allgather(shm)", "gather(shm)",         "scatter(shm)",
                            "alltoall(shm)",  "reduce_scatter(shm)", "reduce(shm)"};
    for (size_t i = 0; i < CGLOO_ARRAY_LEN(others); i++)
        CHECK(dump_has(ctx, others[i]) == (strcmp(transport, "shm") == 0));
    /* Tags without a channel use messages, also when the slots are asked for by name. */
    cgloo_coll_opts o = {.tag = CGLOO_SLOT_CHANNELS, .algorithm = "shm"};
    x = (float)rank;
    MUST(ctx, cgloo_allreduce(ctx, &x, &x, 1, CGLOO_FLOAT32, CGLOO_SUM, &o));
    CHECK(x == (float)(size * (size - 1) / 2));
}

static void selector_rank(int rank, int size, void *arg)
{
    rank_env e = connect_shm(store, rank, size, arg, TIMEOUT_MS);
    selector_body(e.ctx, rank, size, arg);
    mesh_close(e);
}

static void test_selector(void)
{
    const char *transports[] = {"shm", "tcp"};
    for (int t = 0; t < 2; t++) {
        CHECK_OK(cgloo_store_hash_create(&store));
        run_ranks(3, selector_rank, (void *)transports[t]);
        cgloo_store_destroy(store);
    }
}

/* Over TCP the shm algorithms asked for by name run the selector's message-based choice
 * instead, under its name, so that every listed algorithm runs everywhere. */
static void tcp_rank(int rank, int size, void *arg)
{
    /* arg: every rank over TCP, or only the last (the others share memory among themselves) */
    const char *transport = arg && rank != size - 1 ? "auto" : "tcp";
    rank_env e = connect_shm(store, rank, size, transport, TIMEOUT_MS);
    cgloo_coll_opts o = {.algorithm = "shm"};
    int v = rank + 1;
    MUST(e.ctx, cgloo_allreduce(e.ctx, &v, &v, 1, CGLOO_INT32, CGLOO_SUM, &o));
    CHECK(v == size * (size + 1) / 2);
    MUST(e.ctx, cgloo_barrier(e.ctx, &o));
    v = rank == 0 ? 42 : 0;
    MUST(e.ctx, cgloo_broadcast(e.ctx, &v, 1, CGLOO_INT32, 0, &o));
    CHECK(v == 42);
    for (int i = 0; i < 6; i++)
        other_round(e.ctx, rank, size, i, &o);
    CHECK(!dump_has(e.ctx, "(shm)"));
    mesh_close(e);
}

static void test_fallback_over_tcp(void)
{
    CHECK_OK(cgloo_store_hash_create(&store));
    run_ranks(3, tcp_rank, NULL);
    cgloo_store_destroy(store);
}

/* One peer over TCP, the others on shared memory: no rank has slots to every peer, so every
 * rank runs the message-based choice. */
static void test_fallback_one_peer_tcp(void)
{
    CHECK_OK(cgloo_store_hash_create(&store));
    run_ranks(4, tcp_rank, (void *)"one");
    cgloo_store_destroy(store);
}

/* ---- a rank that never comes ---- */

static void stalled_rank(int rank, int size, void *arg)
{
    const char *algo = arg;
    rank_env e = connect_shm(store, rank, size, "shm", TIMEOUT_MS);
    MUST(e.ctx, cgloo_barrier(e.ctx, NULL));
    if (rank != size - 1) {
        cgloo_coll_opts o = {.algorithm = "shm", .timeout_ms = 400};
        int v = 1, w[16] = {0}, rc;
        long long t0 = test_now_ms();
        if (strcmp(algo, "allreduce") == 0)
            rc = cgloo_allreduce(e.ctx, &v, &v, 1, CGLOO_INT32, CGLOO_SUM, &o);
        else if (strcmp(algo, "barrier") == 0)
            rc = cgloo_barrier(e.ctx, &o);
        else if (strcmp(algo, "scatter") == 0) /* from the missing rank */
            rc = cgloo_scatter(e.ctx, w, &v, 1, CGLOO_INT32, size - 1, &o);
        else if (strcmp(algo, "alltoall") == 0)
            rc = cgloo_alltoall(e.ctx, w, w + size, 1, CGLOO_INT32, &o);
        else
            rc = cgloo_broadcast(e.ctx, &v, 1, CGLOO_INT32, size - 1, &o);
        CHECK_STATUS(rc, CGLOO_ETIMEDOUT);
        CHECK(test_now_ms() - t0 < 5000);
        char detail[1024], want[64];
        cgloo_context_last_error(e.ctx, detail, sizeof detail);
        snprintf(want, sizeof want, "rank %d", size - 1);
        if (!strstr(detail, want) || !strstr(detail, algo))
            harness_fail(__FILE__, __LINE__, "the timeout names the missing rank", detail);
    }
    /* The last rank never calls; everyone waits for the others' verdict before closing. */
    CHECK_OK(cgloo_store_add(store, "stalled", 1, NULL));
    for (int64_t n = 0; n < size; test_sleep_ms(5))
        CHECK_OK(cgloo_store_add(store, "stalled", 0, &n));
    mesh_close(e);
}

static void test_stalled_peer(void)
{
    const char *algos[] = {"allreduce", "barrier", "broadcast", "scatter", "alltoall"};
    for (size_t a = 0; a < CGLOO_ARRAY_LEN(algos); a++) {
        CHECK_OK(cgloo_store_hash_create(&store));
        run_ranks(3, stalled_rank, (void *)algos[a]);
        cgloo_store_destroy(store);
    }
}

/* ---- a rank killed while the others wait on its slot ---- */

#define NPROC 3

static void victim(procs *w, int rank, void *arg)
{
    (void)arg;
    cgloo_store *s = procs_store(w);
    rank_env e = connect_shm(s, rank, NPROC, "shm", 10000);
    for (int i = 0; i < 50; i++) /* the slots in use, then it stops coming */
        MUST(e.ctx, cgloo_barrier(e.ctx, NULL));
    CHECK_OK(cgloo_store_set(s, "victim_ready", "1", 1));
    for (;;)
        pause();
}

static void survivor(procs *w, int rank, void *arg)
{
    const char *algo = arg;
    cgloo_store *s = procs_store(w);
    rank_env e = connect_shm(s, rank, NPROC, "shm", 10000);
    for (int i = 0; i < 50; i++)
        MUST(e.ctx, cgloo_barrier(e.ctx, NULL));
    long long t0 = test_now_ms();
    int v[4] = {1, 2, 3, 4}, out[4 * NPROC], rc;
    if (strcmp(algo, "allreduce") == 0)
        rc = cgloo_allreduce(e.ctx, v, v, 4, CGLOO_INT32, CGLOO_SUM, NULL);
    else if (strcmp(algo, "barrier") == 0)
        rc = cgloo_barrier(e.ctx, NULL);
    else if (strcmp(algo, "reduce") == 0) /* the root waits on the dead rank's slot */
        rc = cgloo_reduce(e.ctx, v, out, 4, CGLOO_INT32, CGLOO_SUM, 0, NULL);
    else if (strcmp(algo, "scatter") == 0) /* the dead rank is the root */
        rc = cgloo_scatter(e.ctx, out, v, 1, CGLOO_INT32, 2, NULL);
    else if (strcmp(algo, "allgather") == 0)
        rc = cgloo_allgather(e.ctx, v, out, 1, CGLOO_INT32, NULL);
    else
        rc = cgloo_broadcast(e.ctx, v, 4, CGLOO_INT32, 2, NULL);
    if (strcmp(algo, "reduce") == 0 && rank != 0) { /* it only published */
        CHECK_OK(rc);
        rc = cgloo_barrier(e.ctx, NULL);
    }
    CHECK_STATUS(rc, CGLOO_EPEER);
    CHECK(test_now_ms() - t0 < 8000); /* the timeout is 10 s: the death was noticed */
    char detail[1024];
    cgloo_context_last_error(e.ctx, detail, sizeof detail);
    if (!strstr(detail, "rank 2") || !strstr(detail, "(shm)"))
        harness_fail(__FILE__, __LINE__, "the error names the dead rank", detail);
    mesh_close(e);
    cgloo_store_destroy(s);
}

static void killed_once(const char *algo)
{
    procs w;
    procs_init(&w, NPROC, "cshm");
    procs_spawn(&w, 2, victim, NULL);
    procs_spawn(&w, 0, survivor, (void *)algo);
    procs_spawn(&w, 1, survivor, (void *)algo);
    cgloo_store *s = procs_store(&w);
    const char *key = "victim_ready";
    CHECK_OK(cgloo_store_wait(s, &key, 1, 20000));
    test_sleep_ms(300); /* the survivors wait on its slot, past the spin: asleep */
    kill(w.pid[2], SIGKILL);
    procs_reap(&w, 2, 5000);
    procs_expect_ok(&w, 2, 20000);
    cgloo_store_destroy(s);
}

static void test_killed_mid_collective(void)
{
    killed_once("allreduce");
    killed_once("barrier");
    killed_once("broadcast");
    killed_once("reduce");
    killed_once("scatter");
    killed_once("allgather");
}

static const test_case tests[] = {
    {"allreduce_types", test_allreduce_types, 120},
    {"back_to_back", test_back_to_back, 120},
    {"big_broadcast", test_big_broadcast, 60},
    {"movement", test_movement, 120},
    {"reductions", test_reductions, 120},
    {"two_tags", test_two_tags, 60},
    {"lined", test_lined, 60},
    {"oversubscribed", test_oversubscribed, 120},
    {"selector", test_selector, 60},
    {"fallback_over_tcp", test_fallback_over_tcp, 30},
    {"fallback_one_peer_tcp", test_fallback_one_peer_tcp, 30},
    {"stalled_peer", test_stalled_peer, 60},
    {"killed_mid_collective", test_killed_mid_collective, 60},
};

TEST_MAIN(tests)
