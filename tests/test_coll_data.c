/*
 * The data-movement collectives: allgather(v), broadcast, gather(v), scatter(v), alltoall(v) and
 * barrier. Every algorithm (forced by name, and the selector's choice) x world sizes 1, 2, 3, 4,
 * 5, 7, 8 and 16 (ranks as threads, one connected mesh per world size reused across cases) x
 * counts 0, 1, fewer than the ranks, not divisible, a prime and about a million elements x
 * 1-, 2-, 4-, 8- and 16-byte dtypes x every root (a few for 16 ranks) x in place and out of place;
 * v variants with uneven and zero counts. Every element is checked against a serial reference
 * (bytes that depend on the case, the source rank and the element index), and guard bytes
 * around every buffer must stay untouched. Also: the barrier really waits, unknown algorithm
 * names, CGLOO_BROADCAST_ALGORITHM, bad arguments, and two threads per rank running different
 * collectives at once under different tags.
 */
#include "coll_util.h"
#include "mesh.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#define TIMEOUT_MS 60000
#define NWORLDS (sizeof world_sizes / sizeof world_sizes[0])

static const int world_sizes[] = {1, 2, 3, 4, 5, 7, 8, 16};
/* Data movement depends on the element size only: one dtype of each size. */
static const cgloo_dtype sized_dtypes[] = {CGLOO_UINT8, CGLOO_FLOAT16, CGLOO_INT32, CGLOO_FLOAT64,
                                           CGLOO_COMPLEX128};
#define NSIZED (sizeof sized_dtypes / sizeof sized_dtypes[0])

static cgloo_store *store;

/* ---- one case: what it is, and how it fails ------------------------------------------------ */

typedef struct tcase {
    const char *coll, *alg;
    int rank, size, root, inplace, kind;
    size_t count;
    cgloo_dtype dtype;
    size_t esize;
    uint32_t salt; /* different for every case, so stale data from an earlier case is caught */
    uint64_t tag;
    cgloo_context *ctx;
} tcase;

static void case_fail(const tcase *t, const char *what)
{
    char detail[1024], last[512] = "";
    cgloo_context_last_error(t->ctx, last, sizeof last);
    snprintf(detail, sizeof detail,
             "%s(%s) size %d rank %d root %d count %zu esize %zu inplace %d kind %d: %s [%s]",
             t->coll, t->alg ? t->alg : "auto", t->size, t->rank, t->root, t->count, t->esize,
             t->inplace, t->kind, what, last);
    harness_fail(__FILE__, __LINE__, t->coll, detail);
}

static void case_rc(const tcase *t, int rc)
{
    if (rc != CGLOO_OK)
        case_fail(t, cgloo_status_name(rc));
}

/* ---- reference data and guarded buffers ---------------------------------------------------- */

/* elem: the bytes of element i that rank `rank` contributes in case `salt`. */
static uint64_t elem(uint32_t salt, int rank, uint64_t i)
{
    uint64_t x = (salt + 1) * 0x9E3779B97F4A7C15ull ^ ((uint64_t)rank + 1) * 0xC2B2AE3D27D4EB4Full;
    x ^= (i + 1) * 0x165667B19E3779F9ull;
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    return x ^ (x >> 32);
}

/* elem_bytes: element i's bytes, from one elem() word, or two for a 16-byte element. */
static void elem_bytes(uint8_t *out, size_t esize, uint32_t salt, int rank, uint64_t i)
{
    size_t words = (esize + 7) / 8;
    for (size_t w = 0; w < words; w++) {
        uint64_t v = elem(salt, rank, i * words + w);
        memcpy(out + w * 8, &v, esize - w * 8 < 8 ? esize - w * 8 : 8);
    }
}

static void fill(void *buf, size_t n, size_t esize, uint32_t salt, int rank, uint64_t first)
{
    for (size_t i = 0; i < n; i++)
        elem_bytes((uint8_t *)buf + i * esize, esize, salt, rank, first + i);
}

static bool same(const void *buf, size_t n, size_t esize, uint32_t salt, int rank, uint64_t first)
{
    uint8_t want[16];
    for (size_t i = 0; i < n; i++) {
        elem_bytes(want, esize, salt, rank, first + i);
        if (memcmp((const uint8_t *)buf + i * esize, want, esize) != 0)
            return false;
    }
    return true;
}

#define GUARD 64

/* gbuf_alloc returns len bytes of 0xEE with GUARD bytes of 0xA5 on each side. */
static uint8_t *gbuf_alloc(size_t len)
{
    uint8_t *p = malloc(len + 2 * GUARD + sizeof(size_t));
    CHECK(p != NULL);
    memcpy(p, &len, sizeof len);
    p += sizeof len;
    memset(p, 0xA5, GUARD);
    memset(p + GUARD, 0xEE, len);
    memset(p + GUARD + len, 0xA5, GUARD);
    return p + GUARD;
}

static bool all_bytes(const uint8_t *p, size_t len, uint8_t v)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != v)
            return false;
    return true;
}

/* gbuf_free checks the guards and frees. */
static void gbuf_free(const tcase *t, uint8_t *p)
{
    if (!p)
        return;
    size_t len;
    memcpy(&len, p - GUARD - sizeof len, sizeof len);
    if (!all_bytes(p - GUARD, GUARD, 0xA5) || !all_bytes(p + len, GUARD, 0xA5))
        case_fail(t, "a write outside the buffer");
    free(p - GUARD - sizeof len);
}

/* ---- counts and layouts -------------------------------------------------------------------- */

/* small_counts: 0, 1, fewer than the ranks, not divisible by them, a prime. */
static int small_counts(int size, size_t *out)
{
    int n = 0;
    out[n++] = 0;
    out[n++] = 1;
    if (size > 2)
        out[n++] = (size_t)size - 1;
    out[n++] = 5 * (size_t)size + 3;
    out[n++] = 1009;
    return n;
}

/* vcount: rank r's count in a v-variant of kind k. */
#define NKINDS 5
static size_t vcount(int kind, int r, int size)
{
    switch (kind) {
    case 0:
        return r % 3 == 1 ? 0 : (size_t)(r * 7 + 3) % 11 + 1; /* uneven, some zero */
    case 1:
        return 0; /* all zero */
    case 2:
        return r == size - 1 ? 1009 : 0; /* one rank only */
    case 3:
        return r == 0 ? 0 : 1; /* tiny */
    default:
        return r % 2 ? 1 : 300000 / (size_t)size + (size_t)r; /* large and uneven */
    }
}

/* a2a_count: elements rank i sends rank j in an alltoallv of kind k. */
static size_t a2a_count(int kind, int i, int j, int size)
{
    switch (kind) {
    case 0:
        return (i + j) % 4 == 0 ? 0 : (size_t)(i * 5 + j * 3) % 7 + 1;
    case 1:
        return 0;
    case 2:
        return i == j ? 13 : 0; /* only to itself */
    case 3:
        return j == 0 ? 1009 : 0; /* everyone to rank 0 */
    default:
        return (i + j) % 2 ? 0 : 200000 / ((size_t)size * (size_t)size) + (size_t)(i + j);
    }
}

/* prefix: displs[r] = sum of counts[0..r), returns the total. */
static size_t prefix(const size_t *counts, int n, size_t *displs)
{
    size_t sum = 0;
    for (int r = 0; r < n; r++) {
        displs[r] = sum;
        sum += counts[r];
    }
    return sum;
}

/* a few roots for big worlds, every root for small ones */
static int roots_of(int size, int *out)
{
    if (size <= 8) {
        for (int r = 0; r < size; r++)
            out[r] = r;
        return size;
    }
    out[0] = 0;
    out[1] = 1;
    out[2] = size / 2 + 1;
    out[3] = size - 1;
    return 4;
}

/* per-world loop: a fresh store and mesh for each world size, the ranks as threads */
typedef struct world_arg {
    void (*body)(rank_env *e, int rank, int size, void *arg);
    void *arg;
} world_arg;

static void world_rank(int rank, int size, void *p)
{
    world_arg *w = p;
    rank_env e = mesh_connect(store, rank, size, TIMEOUT_MS);
    w->body(&e, rank, size, w->arg);
    mesh_close(e);
}

static void in_world(int size, void (*body)(rank_env *, int, int, void *), void *arg)
{
    world_arg w = {body, arg};
    CHECK_OK(cgloo_store_hash_create(&store));
    run_ranks(size, world_rank, &w);
    cgloo_store_destroy(store);
}

/* world_skipped: COLL_DATA_WORLDS, when set, lists the worlds to run ("1 2 3 8"). The sanitizer
 * builds set it (tests/CMakeLists.txt): 3 and 5 ranks cover the folds of a world that is not a
 * power of two, 8 the deeper trees, and 16 threads under ThreadSanitizer took most of the suite's
 * minutes. */
static bool world_skipped(int size)
{
    const char *list = getenv("COLL_DATA_WORLDS");
    if (!list)
        return false;
    char *end;
    for (const char *at = list; *at; at = end) {
        long n = strtol(at, &end, 10);
        if (end == at && *at != ' ') { /* a typo must not skip every world and pass */
            harness_fail(__FILE__, __LINE__, "COLL_DATA_WORLDS is not a list of numbers", list);
            return false;
        }
        if (end == at)
            end++;
        else if (n == size)
            return false;
    }
    return true;
}

static void each_world(void (*body)(rank_env *, int, int, void *), void *arg)
{
    for (size_t i = 0; i < NWORLDS; i++)
        if (!world_skipped(world_sizes[i]))
            in_world(world_sizes[i], body, arg);
}

static tcase case_new(rank_env *e, const char *coll, const char *alg, int rank, int size,
                      uint32_t *salt)
{
    return (tcase){
        .coll = coll, .alg = alg, .rank = rank, .size = size, .ctx = e->ctx, .salt = (*salt)++};
}

/* shm_left_out: the slots' algorithm, asked for by name, is left out of 16-rank worlds and of
 * cases that move more than 64 KiB in all: every round (of 4080 bytes a block) waits for every
 * rank, and 16 threads share 2 cores. The selector still takes it for the small cases of every
 * world, and test_coll_shm runs it over several rounds. */
static bool shm_left_out(const tcase *t, size_t total_bytes)
{
    return t->alg && strcmp(t->alg, "shm") == 0 && (t->size > 8 || total_bytes > 64 * 1024);
}

static void case_dtype(tcase *t, cgloo_dtype d)
{
    t->dtype = d;
    t->esize = cgloo_dtype_size(d);
}

/* The algorithms a collective's cases run: NULL (the selector's choice), then every name the
 * registry lists, so that an algorithm added to a table is tested here without a change. */
typedef struct alg_list {
    const char *at[16];
    size_t n;
} alg_list;

static alg_list algs_of(const char *coll)
{
    const char *const *names = cgloo_algorithm_names(coll);
    alg_list l = {.at = {NULL}, .n = 1};
    CHECK(names != NULL);
    for (size_t i = 0; names[i] && l.n < sizeof l.at / sizeof l.at[0]; i++)
        l.at[l.n++] = names[i];
    return l;
}

/* ---- allgather and allgatherv -------------------------------------------------------------- */

static void run_allgather(tcase *t)
{
    size_t blk = t->count * t->esize;
    if (shm_left_out(t, blk * (size_t)t->size))
        return;
    uint8_t *recv = gbuf_alloc(blk * (size_t)t->size);
    uint8_t *send = t->inplace ? recv + blk * (size_t)t->rank : gbuf_alloc(blk);
    fill(send, t->count, t->esize, t->salt, t->rank, 0);
    cgloo_coll_opts o = {.algorithm = t->alg, .tag = t->tag};
    case_rc(t, cgloo_allgather(t->ctx, send, recv, t->count, t->dtype, &o));
    for (int r = 0; r < t->size; r++)
        if (!same(recv + blk * (size_t)r, t->count, t->esize, t->salt, r, 0))
            case_fail(t, "a block differs from its rank's data");
    if (!t->inplace)
        gbuf_free(t, send);
    gbuf_free(t, recv);
}

static void allgather_body(rank_env *e, int rank, int size, void *arg)
{
    const alg_list algs = algs_of("allgather");
    uint32_t salt = 1;
    size_t counts[8];
    int nc = small_counts(size, counts);
    for (size_t a = 0; a < algs.n; a++)
        for (int c = 0; c < nc; c++)
            for (size_t d = 0; d < NSIZED; d++)
                for (int ip = 0; ip < 2; ip++) {
                    tcase t = case_new(e, "allgather", algs.at[a], rank, size, &salt);
                    case_dtype(&t, sized_dtypes[d]);
                    t.count = counts[c];
                    t.inplace = ip;
                    run_allgather(&t);
                }
    for (size_t a = 0; a < algs.n; a++) { /* about a million elements gathered */
        tcase t = case_new(e, "allgather", algs.at[a], rank, size, &salt);
        case_dtype(&t, a == 1 ? CGLOO_INT32 : CGLOO_UINT8);
        t.count = 1000003 / (size_t)size + 1;
        t.inplace = (int)a % 2;
        run_allgather(&t);
    }
}

static void test_allgather(void)
{
    each_world(allgather_body, NULL);
}

static void run_allgatherv(tcase *t)
{
    size_t counts[16], displs[16];
    for (int r = 0; r < t->size; r++)
        counts[r] = vcount(t->kind, r, t->size);
    size_t total = prefix(counts, t->size, displs), es = t->esize;
    if (shm_left_out(t, total * es))
        return;
    uint8_t *recv = gbuf_alloc(total * es);
    uint8_t *send = t->inplace ? recv + displs[t->rank] * es : gbuf_alloc(counts[t->rank] * es);
    fill(send, counts[t->rank], es, t->salt, t->rank, 0);
    cgloo_coll_opts o = {.algorithm = t->alg, .tag = t->tag};
    case_rc(t, cgloo_allgatherv(t->ctx, send, counts[t->rank], recv, counts, t->dtype, &o));
    for (int r = 0; r < t->size; r++)
        if (!same(recv + displs[r] * es, counts[r], es, t->salt, r, 0))
            case_fail(t, "a block differs from its rank's data");
    if (!t->inplace)
        gbuf_free(t, send);
    gbuf_free(t, recv);
}

static void allgatherv_body(rank_env *e, int rank, int size, void *arg)
{
    const alg_list algs = algs_of("allgather");
    uint32_t salt = 1;
    for (size_t a = 0; a < algs.n; a++)
        for (int k = 0; k < NKINDS; k++)
            for (size_t d = 0; d < NSIZED; d += (k == NKINDS - 1 ? 3 : 1))
                for (int ip = 0; ip < 2; ip++) {
                    tcase t = case_new(e, "allgatherv", algs.at[a], rank, size, &salt);
                    case_dtype(&t, sized_dtypes[d]);
                    t.kind = k;
                    t.inplace = ip;
                    run_allgatherv(&t);
                }
}

static void test_allgatherv(void)
{
    each_world(allgatherv_body, NULL);
}

/* ---- broadcast ----------------------------------------------------------------------------- */

static void run_broadcast(tcase *t)
{
    uint8_t *buf = gbuf_alloc(t->count * t->esize);
    if (t->rank == t->root)
        fill(buf, t->count, t->esize, t->salt, t->root, 0);
    cgloo_coll_opts o = {.algorithm = t->alg, .tag = t->tag};
    case_rc(t, cgloo_broadcast(t->ctx, buf, t->count, t->dtype, t->root, &o));
    if (!same(buf, t->count, t->esize, t->salt, t->root, 0))
        case_fail(t, "the data differs from the root's");
    gbuf_free(t, buf);
}

static void broadcast_body(rank_env *e, int rank, int size, void *arg)
{
    const alg_list algs = algs_of("broadcast");
    uint32_t salt = 1;
    size_t counts[8];
    int roots[16], nc = small_counts(size, counts), nr = roots_of(size, roots);
    for (size_t a = 0; a < algs.n; a++)
        for (int c = 0; c < nc; c++)
            for (int r = 0; r < nr; r++)
                for (size_t d = (size_t)(c + r) % 2; d < NSIZED; d += 2) {
                    tcase t = case_new(e, "broadcast", algs.at[a], rank, size, &salt);
                    case_dtype(&t, sized_dtypes[d]);
                    t.count = counts[c];
                    t.root = roots[r];
                    run_broadcast(&t);
                }
    /* large: a million bytes (the last segment shorter) from the first rank and 4 MiB of int32
     * (whole segments) from the last, with each algorithm; 8 MB of float64 down the chain */
    for (size_t a = 0; a < algs.n; a++)
        for (int r = 0; r < 2; r++) {
            tcase t = case_new(e, "broadcast", algs.at[a], rank, size, &salt);
            case_dtype(&t, r ? CGLOO_INT32 : CGLOO_UINT8);
            t.count = r ? 1 << 20 : 1000003;
            t.root = r ? size - 1 : 0;
            run_broadcast(&t);
        }
    tcase t = case_new(e, "broadcast", "pipeline", rank, size, &salt);
    case_dtype(&t, CGLOO_FLOAT64);
    t.count = 1000000;
    t.root = size / 2;
    run_broadcast(&t);
}

static void test_broadcast(void)
{
    each_world(broadcast_body, NULL);
}

/* ---- gather and gatherv -------------------------------------------------------------------- */

/* run_gather: t->kind < 0 is gather of t->count each, else gatherv of that kind. */
static void run_gather(tcase *t)
{
    size_t counts[16], displs[16], es = t->esize;
    for (int r = 0; r < t->size; r++)
        counts[r] = t->kind < 0 ? t->count : vcount(t->kind, r, t->size);
    size_t total = prefix(counts, t->size, displs), mine = counts[t->rank];
    if (shm_left_out(t, total * es))
        return;
    bool root = t->rank == t->root;
    /* non-roots pass NULL or a buffer that must stay untouched */
    uint8_t *recv = root || t->salt % 2 ? gbuf_alloc(total * es) : NULL;
    uint8_t *send = root && t->inplace ? recv + displs[t->rank] * es : gbuf_alloc(mine * es);
    fill(send, mine, es, t->salt, t->rank, 0);
    cgloo_coll_opts o = {.algorithm = t->alg, .tag = t->tag};
    int rc = t->kind < 0 ? cgloo_gather(t->ctx, send, recv, t->count, t->dtype, t->root, &o)
                         : cgloo_gatherv(t->ctx, send, mine, recv, counts, t->dtype, t->root, &o);
    case_rc(t, rc);
    for (int r = 0; root && r < t->size; r++)
        if (!same(recv + displs[r] * es, counts[r], es, t->salt, r, 0))
            case_fail(t, "a block at the root differs from its rank's data");
    if (!root && recv && !all_bytes(recv, total * es, 0xEE))
        case_fail(t, "a non-root's recvbuf was written");
    if (!(root && t->inplace))
        gbuf_free(t, send);
    gbuf_free(t, recv);
}

static void gather_body(rank_env *e, int rank, int size, void *arg)
{
    const alg_list algs = algs_of("gather");
    uint32_t salt = 1;
    size_t counts[8];
    int roots[16], nc = small_counts(size, counts), nr = roots_of(size, roots);
    for (size_t a = 0; a < algs.n; a++)
        for (int r = 0; r < nr; r++) {
            for (int c = 0; c < nc; c++)
                for (size_t d = (size_t)(c + r) % 2; d < NSIZED; d += 2) {
                    tcase t = case_new(e, "gather", algs.at[a], rank, size, &salt);
                    case_dtype(&t, sized_dtypes[d]);
                    t.kind = -1;
                    t.count = counts[c];
                    t.root = roots[r];
                    t.inplace = (int)(d / 2 + (size_t)c) % 2;
                    run_gather(&t);
                }
            for (int k = 0; k < NKINDS - 1; k++) {
                tcase t = case_new(e, "gatherv", algs.at[a], rank, size, &salt);
                case_dtype(&t, sized_dtypes[(k + r) % NSIZED]);
                t.kind = k;
                t.root = roots[r];
                t.inplace = (k + r) % 2;
                run_gather(&t);
            }
        }
    for (size_t a = 0; a < algs.n; a++)
        for (int r = 0; r < 2; r++) { /* large: a million elements, and large uneven gatherv */
            tcase t = case_new(e, "gather", algs.at[a], rank, size, &salt);
            case_dtype(&t, r ? CGLOO_INT32 : CGLOO_UINT8);
            t.kind = -1;
            t.count = 1000003 / (size_t)size + 1;
            t.root = r ? size / 2 : 0;
            t.inplace = r;
            run_gather(&t);
            t = case_new(e, "gatherv", algs.at[a], rank, size, &salt);
            case_dtype(&t, CGLOO_INT32);
            t.kind = NKINDS - 1;
            t.root = r ? size - 1 : 0;
            run_gather(&t);
        }
}

static void test_gather(void)
{
    each_world(gather_body, NULL);
}

/* ---- scatter and scatterv ------------------------------------------------------------------ */

/* run_scatter: t->kind < 0 is scatter of t->count each, else scatterv of that kind. The root's
 * buffer holds elements 0..total of the root's data; rank r gets its range of it. */
static void run_scatter(tcase *t)
{
    size_t counts[16] = {0}, displs[16], es = t->esize; /* zeroed: GCC cannot see rank < size */
    for (int r = 0; r < t->size; r++)
        counts[r] = t->kind < 0 ? t->count : vcount(t->kind, r, t->size);
    size_t total = prefix(counts, t->size, displs), mine = counts[t->rank];
    if (shm_left_out(t, total * es))
        return;
    bool root = t->rank == t->root;
    uint8_t *send = root ? gbuf_alloc(total * es) : NULL;
    if (root)
        fill(send, total, es, t->salt, t->root, 0);
    uint8_t *recv = root && t->inplace ? send + displs[t->rank] * es : gbuf_alloc(mine * es);
    cgloo_coll_opts o = {.algorithm = t->alg, .tag = t->tag};
    int rc = t->kind < 0 ? cgloo_scatter(t->ctx, send, recv, t->count, t->dtype, t->root, &o)
                         : cgloo_scatterv(t->ctx, send, counts, recv, mine, t->dtype, t->root, &o);
    case_rc(t, rc);
    if (!same(recv, mine, es, t->salt, t->root, displs[t->rank]))
        case_fail(t, "the block differs from the root's data");
    if (root && !same(send, total, es, t->salt, t->root, 0))
        case_fail(t, "the root's sendbuf changed");
    if (!(root && t->inplace))
        gbuf_free(t, recv);
    gbuf_free(t, send);
}

static void scatter_body(rank_env *e, int rank, int size, void *arg)
{
    const alg_list algs = algs_of("scatter");
    uint32_t salt = 1;
    size_t counts[8];
    int roots[16], nc = small_counts(size, counts), nr = roots_of(size, roots);
    for (size_t a = 0; a < algs.n; a++)
        for (int r = 0; r < nr; r++) {
            for (int c = 0; c < nc; c++)
                for (size_t d = (size_t)(c + r) % 2; d < NSIZED; d += 2) {
                    tcase t = case_new(e, "scatter", algs.at[a], rank, size, &salt);
                    case_dtype(&t, sized_dtypes[d]);
                    t.kind = -1;
                    t.count = counts[c];
                    t.root = roots[r];
                    t.inplace = (int)(d / 2 + (size_t)c) % 2;
                    run_scatter(&t);
                }
            for (int k = 0; k < NKINDS - 1; k++) {
                tcase t = case_new(e, "scatterv", algs.at[a], rank, size, &salt);
                case_dtype(&t, sized_dtypes[(k + r) % NSIZED]);
                t.kind = k;
                t.root = roots[r];
                t.inplace = (k + r) % 2;
                run_scatter(&t);
            }
        }
    for (size_t a = 0; a < algs.n; a++)
        for (int r = 0; r < 2; r++) {
            tcase t = case_new(e, "scatter", algs.at[a], rank, size, &salt);
            case_dtype(&t, r ? CGLOO_INT32 : CGLOO_UINT8);
            t.kind = -1;
            t.count = 1000003 / (size_t)size + 1;
            t.root = r ? size / 2 : 0;
            t.inplace = r;
            run_scatter(&t);
            t = case_new(e, "scatterv", algs.at[a], rank, size, &salt);
            case_dtype(&t, CGLOO_INT32);
            t.kind = NKINDS - 1;
            t.root = r ? size - 1 : 0;
            run_scatter(&t);
        }
}

static void test_scatter(void)
{
    each_world(scatter_body, NULL);
}

/* ---- alltoall and alltoallv ---------------------------------------------------------------- */

/* run_alltoall: t->kind < 0 is alltoall of t->count per block, else alltoallv of that kind.
 * Element k of the block rank i sends rank j is elem(salt, i, j << 32 | k). */
static void run_alltoall(tcase *t)
{
    size_t sc[16], rc_[16], sd[16], rd[16], es = t->esize;
    for (int j = 0; j < t->size; j++) {
        sc[j] = t->kind < 0 ? t->count : a2a_count(t->kind, t->rank, j, t->size);
        rc_[j] = t->kind < 0 ? t->count : a2a_count(t->kind, j, t->rank, t->size);
    }
    size_t stotal = prefix(sc, t->size, sd), rtotal = prefix(rc_, t->size, rd);
    size_t most = 0; /* the most any rank sends: every rank leaves the case out or none */
    for (int i = 0; i < t->size; i++) {
        size_t sent = 0;
        for (int j = 0; j < t->size; j++)
            sent += t->kind < 0 ? t->count : a2a_count(t->kind, i, j, t->size);
        most = sent > most ? sent : most;
    }
    if (shm_left_out(t, most * es))
        return;
    uint8_t *send = gbuf_alloc((stotal > rtotal ? stotal : rtotal) * es);
    uint8_t *recv = t->inplace ? send : gbuf_alloc(rtotal * es);
    for (int j = 0; j < t->size; j++)
        fill(send + sd[j] * es, sc[j], es, t->salt, t->rank, (uint64_t)j << 32);
    cgloo_coll_opts o = {.algorithm = t->alg, .tag = t->tag};
    int rc = t->kind < 0 ? cgloo_alltoall(t->ctx, send, recv, t->count, t->dtype, &o)
                         : cgloo_alltoallv(t->ctx, send, sc, recv, rc_, t->dtype, &o);
    case_rc(t, rc);
    for (int i = 0; i < t->size; i++)
        if (!same(recv + rd[i] * es, rc_[i], es, t->salt, i, (uint64_t)t->rank << 32))
            case_fail(t, "a received block differs from its sender's data");
    if (!t->inplace)
        gbuf_free(t, recv);
    gbuf_free(t, send);
}

static void alltoall_body(rank_env *e, int rank, int size, void *arg)
{
    const alg_list algs = algs_of("alltoall");
    uint32_t salt = 1;
    size_t counts[8];
    int nc = small_counts(size, counts);
    for (size_t a = 0; a < algs.n; a++) {
        for (int c = 0; c < nc; c++)
            for (size_t d = 0; d < NSIZED; d++)
                for (int ip = 0; ip < 2; ip++) {
                    tcase t = case_new(e, "alltoall", algs.at[a], rank, size, &salt);
                    case_dtype(&t, sized_dtypes[d]);
                    t.kind = -1;
                    t.count = counts[c];
                    t.inplace = ip;
                    run_alltoall(&t);
                }
        for (int k = 0; k < NKINDS; k++)
            for (int ip = 0; ip < 2; ip++) {
                tcase t = case_new(e, "alltoallv", algs.at[a], rank, size, &salt);
                case_dtype(&t, sized_dtypes[(k + ip) % NSIZED]);
                t.kind = k;
                t.inplace = ip;
                run_alltoall(&t);
            }
        tcase t = case_new(e, "alltoall", algs.at[a], rank, size, &salt);
        case_dtype(&t, CGLOO_UINT8); /* each rank sends about a million elements */
        t.kind = -1;
        t.count = 1000003 / (size_t)size + 1;
        t.inplace = (int)a;
        run_alltoall(&t);
    }
}

static void test_alltoall(void)
{
    each_world(alltoall_body, NULL);
}

/* ---- barrier ------------------------------------------------------------------------------- */

typedef struct barrier_arg {
    const char *alg; /* NULL: the selector's choice */
    int entered;     /* ranks that have entered the current round (atomic) */
    int sleeper;
    long long enter_ms; /* when the sleeper entered (atomic) */
} barrier_arg;

/* In each round every rank counts itself in, then enters the barrier; nobody may leave before
 * the whole round has counted itself in. */
static void barrier_body(rank_env *e, int rank, int size, void *arg)
{
    barrier_arg *b = arg;
    cgloo_coll_opts o = {.algorithm = b->alg};
    for (int round = 1; round <= 30; round++) {
        if (round % 10 == 0 && rank == round % size)
            test_sleep_ms(20); /* a late rank now and then */
        __atomic_add_fetch(&b->entered, 1, __ATOMIC_SEQ_CST);
        CHECK_OK(cgloo_barrier(e->ctx, &o));
        CHECK(__atomic_load_n(&b->entered, __ATOMIC_SEQ_CST) >= round * size);
        CHECK_OK(cgloo_barrier(e->ctx, &o)); /* so the next round's count waits for this check */
    }
}

/* A rank that sleeps 100 ms before entering delays every rank's exit: nobody leaves before the
 * sleeper's entry time, which it publishes just before it enters. */
static void barrier_delay_body(rank_env *e, int rank, int size, void *arg)
{
    barrier_arg *b = arg;
    cgloo_coll_opts o = {.algorithm = b->alg};
    CHECK_OK(cgloo_barrier(e->ctx, &o));
    if (rank == b->sleeper) {
        long long t0 = test_now_ms();
        test_sleep_ms(100);
        long long now = test_now_ms();
        CHECK(now - t0 >= 100);
        __atomic_store_n(&b->enter_ms, now, __ATOMIC_SEQ_CST);
    }
    CHECK_OK(cgloo_barrier(e->ctx, &o));
    long long left = test_now_ms(), entered = __atomic_load_n(&b->enter_ms, __ATOMIC_SEQ_CST);
    if (entered == 0 || left < entered) {
        char detail[128];
        snprintf(detail, sizeof detail, "size %d rank %d left at %lld, the sleeper entered at %lld",
                 size, rank, left, entered);
        harness_fail(__FILE__, __LINE__, "barrier left early", detail);
    }
}

static void test_barrier(void)
{
    const alg_list algs = algs_of("barrier");
    for (size_t a = 0; a < algs.n; a++)
        for (size_t i = 0; i < NWORLDS; i++) {
            int size = world_sizes[i];
            if (world_skipped(size))
                continue;
            barrier_arg b = {.alg = algs.at[a]};
            in_world(size, barrier_body, &b);
            /* sleepers: rank 0 (the all-to-one root), a middle rank and the last */
            for (int s = 0; s < 3; s++) {
                barrier_arg d = {.alg = algs.at[a], .sleeper = (size - 1) * s / 2};
                in_world(size, barrier_delay_body, &d);
            }
        }
}

/* ---- algorithm names, unknown names, the environment --------------------------------------- */

static void names_match(const char *coll, const char *const *want)
{
    const char *const *got = cgloo_algorithm_names(coll);
    CHECK(got != NULL);
    size_t i = 0;
    for (; want[i]; i++)
        CHECK(got[i] && strcmp(got[i], want[i]) == 0);
    CHECK(got[i] == NULL);
}

static void test_algorithm_names(void)
{
    names_match("allgather", (const char *const[]){"ring", "recursive_doubling", "single_copy",
                                                   "hierarchical", "shm", NULL});
    names_match("allgatherv", (const char *const[]){"ring", "recursive_doubling", "single_copy",
                                                    "hierarchical", "shm", NULL});
    names_match("broadcast", (const char *const[]){"binomial", "pipeline", "flat", "single_copy",
                                                   "hierarchical", "shm", NULL});
    names_match("gather", (const char *const[]){"direct", "binomial", "single_copy", "shm", NULL});
    names_match("gatherv", (const char *const[]){"direct", "binomial", "single_copy", "shm", NULL});
    names_match("scatter", (const char *const[]){"direct", "binomial", "single_copy", "shm", NULL});
    names_match("scatterv",
                (const char *const[]){"direct", "binomial", "single_copy", "shm", NULL});
    names_match("alltoall", (const char *const[]){"pairwise", "single_copy", "shm", NULL});
    names_match("alltoallv", (const char *const[]){"pairwise", "single_copy", "shm", NULL});
    names_match("barrier", (const char *const[]){"dissemination", "all_to_one", "shm", NULL});
}

static void expect_unsupported(cgloo_context *ctx, int rc)
{
    char detail[512];
    CHECK_STATUS(rc, CGLOO_ENOTSUP);
    CHECK(cgloo_context_last_error(ctx, detail, sizeof detail) == CGLOO_ENOTSUP);
    CHECK(strstr(detail, "no_such") != NULL);
}

/* Every collective refuses an unknown name on every rank, even with nothing to move. */
static void unknown_body(rank_env *e, int rank, int size, void *arg)
{
    cgloo_context *ctx = e->ctx;
    cgloo_coll_opts o = {.algorithm = "no_such"};
    int32_t buf[64] = {0}, out[64];
    size_t counts[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    for (size_t n = 0; n < 2; n++) {
        expect_unsupported(ctx, cgloo_allgather(ctx, buf, out, n, CGLOO_INT32, &o));
        expect_unsupported(ctx, cgloo_allgatherv(ctx, buf, 1, out, counts, CGLOO_INT32, &o));
        expect_unsupported(ctx, cgloo_broadcast(ctx, buf, n, CGLOO_INT32, 0, &o));
        expect_unsupported(ctx, cgloo_gather(ctx, buf, out, n, CGLOO_INT32, 1, &o));
        expect_unsupported(ctx, cgloo_gatherv(ctx, buf, 1, out, counts, CGLOO_INT32, 0, &o));
        expect_unsupported(ctx, cgloo_scatter(ctx, buf, out, n, CGLOO_INT32, 2, &o));
        expect_unsupported(ctx, cgloo_scatterv(ctx, buf, counts, out, 1, CGLOO_INT32, 0, &o));
        expect_unsupported(ctx, cgloo_alltoall(ctx, buf, out, n, CGLOO_INT32, &o));
        expect_unsupported(ctx, cgloo_alltoallv(ctx, buf, counts, out, counts, CGLOO_INT32, &o));
        expect_unsupported(ctx, cgloo_barrier(ctx, &o));
    }
    CHECK_OK(cgloo_barrier(ctx, NULL)); /* and the context still works */
}

static void test_unknown_algorithm(void)
{
    in_world(3, unknown_body, NULL);
}

/* A broadcast whose ranks disagree on the count fails on the receiver with EPROTO, and the
 * detail names the algorithm that ran: this is how the test sees which one was chosen. */
/* selector_choice: what the selector takes for a small broadcast: shm where every peer is on
 * shared memory (which a barrier's entry in the flight recorder shows), else flat. */
static const char *selector_choice(cgloo_context *ctx)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CHECK(f != NULL);
    CHECK_OK(cgloo_barrier(ctx, NULL));
    CHECK_OK(cgloo_context_dump(ctx, f));
    fclose(f);
    bool shm = text && strstr(text, "barrier(shm)");
    free(text);
    return shm ? "shm" : "flat";
}

static void mismatch_body(rank_env *e, int rank, int size, void *arg)
{
    const char *want = arg ? arg : selector_choice(e->ctx);
    uint8_t buf[16] = {0};
    cgloo_coll_opts o = {.timeout_ms = 5000};
    int rc = cgloo_broadcast(e->ctx, buf, rank == 0 ? 10 : 12, CGLOO_UINT8, 0, &o);
    if (rank == 1) {
        char detail[512], name[64];
        CHECK_STATUS(rc, CGLOO_EPROTO);
        cgloo_context_last_error(e->ctx, detail, sizeof detail);
        snprintf(name, sizeof name, "broadcast(%s)", want);
        if (!strstr(detail, name))
            harness_fail(__FILE__, __LINE__, name, detail);
    }
}

static void env_body(rank_env *e, int rank, int size, void *arg)
{
    uint8_t buf[3000];
    if (rank == 0)
        fill(buf, sizeof buf, 1, 7, 0, 0);
    cgloo_coll_opts o = {.algorithm = arg};
    int rc = cgloo_broadcast(e->ctx, buf, sizeof buf, CGLOO_UINT8, 0, &o);
    if (strcmp(getenv("CGLOO_BROADCAST_ALGORITHM"), "no_such") == 0 && !arg) {
        expect_unsupported(e->ctx, rc);
        return;
    }
    CHECK_OK(rc);
    CHECK(same(buf, sizeof buf, 1, 7, 0, 0));
}

static void test_env_selects(void)
{
    /* The harness runs each test in its own child process: the variable dies with it. */
    CHECK(setenv("CGLOO_BROADCAST_ALGORITHM", "no_such", 1) == 0);
    in_world(3, env_body, NULL);
    in_world(3, env_body, (void *)"pipeline"); /* opts.algorithm wins over the variable */
    CHECK(setenv("CGLOO_BROADCAST_ALGORITHM", "pipeline", 1) == 0);
    in_world(3, env_body, NULL);
    in_world(2, mismatch_body, (void *)"pipeline");
    CHECK(setenv("CGLOO_BROADCAST_ALGORITHM", "binomial", 1) == 0);
    in_world(2, mismatch_body, (void *)"binomial");
    CHECK(unsetenv("CGLOO_BROADCAST_ALGORITHM") == 0);
    in_world(2, mismatch_body, NULL); /* the selector's choice for 10 bytes */
}

/* ---- bad arguments ------------------------------------------------------------------------- */

#define EINVAL_(expr) CHECK_STATUS(expr, CGLOO_EINVAL)

/* Calls every rank rejects the same way, before any message: no rank waits for another. */
static void bad_args_body(rank_env *e, int rank, int size, void *arg)
{
    cgloo_context *ctx = e->ctx;
    int32_t buf[64] = {0}, out[64] = {0};
    size_t counts[3] = {1, 1, 1}, wrong[3] = {2, 2, 2};
    const cgloo_dtype I = CGLOO_INT32;
    EINVAL_(cgloo_allgather(NULL, buf, out, 1, I, NULL));
    EINVAL_(cgloo_allgather(ctx, NULL, out, 1, I, NULL));
    EINVAL_(cgloo_allgather(ctx, buf, NULL, 1, I, NULL));
    EINVAL_(cgloo_allgather(ctx, buf, out, 1, CGLOO_DTYPE_COUNT, NULL));
    EINVAL_(cgloo_allgather(ctx, buf, out, SIZE_MAX / 2, I, NULL));
    EINVAL_(cgloo_allgather(ctx, buf, out, 1, I, &(cgloo_coll_opts){.tag = 1ull << 50}));
    EINVAL_(cgloo_allgatherv(ctx, buf, 1, out, NULL, I, NULL));
    EINVAL_(cgloo_allgatherv(ctx, buf, 1, out, wrong, I, NULL));
    EINVAL_(cgloo_allgatherv(ctx, NULL, 1, out, counts, I, NULL));
    EINVAL_(cgloo_allgatherv(ctx, buf, 1, NULL, counts, I, NULL));
    EINVAL_(cgloo_broadcast(NULL, buf, 1, I, 0, NULL));
    EINVAL_(cgloo_broadcast(ctx, buf, 1, I, -1, NULL));
    EINVAL_(cgloo_broadcast(ctx, buf, 1, I, size, NULL));
    EINVAL_(cgloo_broadcast(ctx, NULL, 1, I, 0, NULL));
    EINVAL_(cgloo_gather(ctx, buf, out, 1, I, size, NULL));
    EINVAL_(cgloo_gather(ctx, buf, out, 1, I, -1, NULL));
    EINVAL_(cgloo_gather(ctx, NULL, out, 1, I, 0, NULL));
    EINVAL_(cgloo_gatherv(ctx, buf, 1, out, NULL, I, 0, NULL));
    EINVAL_(cgloo_gatherv(ctx, buf, 1, out, wrong, I, 0, NULL));
    EINVAL_(cgloo_scatter(ctx, buf, out, 1, I, size, NULL));
    EINVAL_(cgloo_scatter(ctx, buf, NULL, 1, I, 0, NULL));
    EINVAL_(cgloo_scatterv(ctx, buf, NULL, out, 1, I, 0, NULL));
    EINVAL_(cgloo_scatterv(ctx, buf, wrong, out, 1, I, 0, NULL));
    EINVAL_(cgloo_alltoall(ctx, NULL, out, 1, I, NULL));
    EINVAL_(cgloo_alltoall(ctx, buf, NULL, 1, I, NULL));
    EINVAL_(cgloo_alltoallv(ctx, buf, NULL, out, counts, I, NULL));
    EINVAL_(cgloo_alltoallv(ctx, buf, counts, out, NULL, I, NULL));
    EINVAL_(cgloo_alltoallv(ctx, buf, counts, out, wrong, I, NULL));
    EINVAL_(cgloo_alltoallv(ctx, NULL, counts, out, counts, I, NULL));
    EINVAL_(cgloo_barrier(NULL, NULL));
    char detail[512];
    CHECK(cgloo_context_last_error(ctx, detail, sizeof detail) == CGLOO_EINVAL);
    CHECK(strstr(detail, "alltoallv") != NULL);
    /* count 0 needs no buffers, and the context still works */
    CHECK_OK(cgloo_allgather(ctx, NULL, NULL, 0, I, NULL));
    CHECK_OK(cgloo_broadcast(ctx, NULL, 0, I, 1, NULL));
    CHECK_OK(cgloo_gather(ctx, NULL, NULL, 0, I, 2, NULL));
    CHECK_OK(cgloo_scatter(ctx, NULL, NULL, 0, I, 0, NULL));
    CHECK_OK(cgloo_alltoall(ctx, NULL, NULL, 0, I, NULL));
    size_t zero[3] = {0, 0, 0};
    CHECK_OK(cgloo_allgatherv(ctx, NULL, 0, NULL, zero, I, NULL));
    CHECK_OK(cgloo_gatherv(ctx, NULL, 0, NULL, zero, I, 0, NULL));
    CHECK_OK(cgloo_scatterv(ctx, NULL, zero, NULL, 0, I, 0, NULL));
    CHECK_OK(cgloo_alltoallv(ctx, NULL, zero, NULL, zero, I, NULL));
    buf[0] = rank;
    CHECK_OK(cgloo_allgather(ctx, buf, out, 1, I, NULL));
    for (int r = 0; r < size; r++)
        CHECK(out[r] == r);
}

/* The root's own buffers are checked on the root alone: try them where nobody waits on it. */
static void bad_root_buffers(void)
{
    cgloo_context *ctx;
    int32_t buf[4] = {0};
    CHECK_OK(cgloo_context_create(0, 1, NULL, &ctx));
    CHECK_OK(cgloo_context_connect(ctx, NULL, NULL));
    EINVAL_(cgloo_gather(ctx, buf, NULL, 1, CGLOO_INT32, 0, NULL));
    EINVAL_(cgloo_scatter(ctx, NULL, buf, 1, CGLOO_INT32, 0, NULL));
    cgloo_context_destroy(ctx);
    CHECK_OK(cgloo_context_create(0, 2, NULL, &ctx)); /* not connected */
    CHECK_STATUS(cgloo_barrier(ctx, NULL), CGLOO_ESTATE);
    cgloo_context_destroy(ctx);
}

static void test_bad_arguments(void)
{
    in_world(3, bad_args_body, NULL);
    bad_root_buffers();
}

/* ---- two threads per rank, different collectives, different tags --------------------------- */

typedef struct worker {
    pthread_t thread;
    cgloo_context *ctx;
    int rank, size, which;
} worker;

static void *worker_main(void *p)
{
    worker *w = p;
    uint32_t salt = 1000u * (uint32_t)w->which;
    for (int i = 0; i < 25; i++) {
        tcase t = {.rank = w->rank, .size = w->size, .ctx = w->ctx, .salt = salt++};
        t.tag = 1 + (uint64_t)w->which;
        cgloo_coll_opts o = {.tag = 1 + (uint64_t)w->which};
        case_dtype(&t, CGLOO_INT32);
        if (w->which == 0) { /* allgather, then a barrier, under tag 1 */
            t.coll = "allgather";
            t.alg = i % 2 ? "ring" : "recursive_doubling";
            t.count = 1009;
            run_allgather(&t);
            CHECK_OK(cgloo_barrier(w->ctx, &o));
        } else { /* alltoall, then a broadcast, under tag 2 */
            t.coll = "alltoall";
            t.alg = "pairwise";
            t.kind = -1;
            t.count = 333 + (size_t)i;
            run_alltoall(&t);
            t.coll = "broadcast";
            t.alg = i % 2 ? "pipeline" : "binomial";
            t.root = i % w->size;
            t.count = i % 5 == 0 ? 300000 : 77;
            run_broadcast(&t);
        }
    }
    return NULL;
}

static void threads_body(rank_env *e, int rank, int size, void *arg)
{
    worker w[2];
    for (int i = 0; i < 2; i++) {
        w[i] = (worker){.ctx = e->ctx, .rank = rank, .size = size, .which = i};
        CHECK(pthread_create(&w[i].thread, NULL, worker_main, &w[i]) == 0);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(w[i].thread, NULL);
}

static void test_concurrent_tags(void)
{
    in_world(4, threads_body, NULL);
    in_world(5, threads_body, NULL);
}

static const test_case tests[] = {
    {"allgather", test_allgather, 240},
    {"allgatherv", test_allgatherv, 120},
    {"broadcast", test_broadcast, 240},
    {"gather", test_gather, 240},
    {"scatter", test_scatter, 240},
    {"alltoall", test_alltoall, 240},
    {"barrier", test_barrier, 60},
    {"algorithm_names", test_algorithm_names, 10},
    {"unknown_algorithm", test_unknown_algorithm, 30},
    {"env_selects", test_env_selects, 60},
    {"bad_arguments", test_bad_arguments, 30},
    {"concurrent_tags", test_concurrent_tags, 60},
};

TEST_MAIN(tests)
