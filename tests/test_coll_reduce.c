/*
 * reduce_scatter, reduce_scatterv and reduce over real TCP connections, ranks as threads: every
 * algorithm x every dtype x every op (bitwise ops on floats must be EINVAL) x world sizes 1 to
 * 16 x element counts 0, 1, fewer than the ranks, not divisible, a prime, and over a million for
 * a few dtype/op pairs; every root; in place (both forms) and out of place; a caller's
 * reduction; the environment choosing the algorithm; bad arguments; and the in-place building
 * blocks that ring allreduce and reduce use, with uneven blocks. Every result is compared with
 * the serial reference of coll_util.h, and guard bytes around every output catch stray writes.
 */
#include "coll/coll.h"
#include "coll/reduce_scatter/reduce_scatter.h"

#include "coll_util.h"
#include "mesh.h"

#include <stdlib.h>

#define GUARD 64 /* bytes before and after every buffer a collective may write */
#define LARGE_COUNT 1000003u

static cgloo_store *store;

static const char *const rs_algorithms[] = {"ring", "halving_doubling", "shm"};
static const char *const reduce_algorithms[] = {"binomial", "reduce_scatter_gather", "shm"};

/* shm_left_out: the slots' algorithm, asked for by name, is left out of the 16-rank matrix and
 * of the million-element cases: every round waits for every rank, 16 threads share 2 cores, and
 * a million elements take a thousand rounds (some ten times the suite's time). The selector
 * still takes it for the small cases of every world (the automatic runs), and test_coll_shm runs
 * it over several rounds. */
static bool shm_left_out(const char *alg, int size, size_t count)
{
    return strcmp(alg, "shm") == 0 && (size > 8 || count >= LARGE_COUNT / 16);
}

/* ---- helpers ---- */

/* A buffer of `bytes` with GUARD bytes of a known pattern on each side. */
typedef struct guarded {
    uint8_t *base;
    uint8_t *p; /* the usable bytes */
    size_t bytes;
} guarded;

static guarded guarded_alloc(size_t bytes)
{
    guarded g = {.base = malloc(bytes + 2 * GUARD), .bytes = bytes};
    CHECK(g.base);
    memset(g.base, 0xA5, bytes + 2 * GUARD);
    g.p = g.base + GUARD;
    return g;
}

static int guards_intact(const guarded *g)
{
    for (size_t i = 0; i < GUARD; i++)
        if (g->base[i] != 0xA5 || g->p[g->bytes + i] != 0xA5)
            return 0;
    return 1;
}

static void case_fail(int line, const char *desc, cgloo_context *ctx, int rc, const char *what)
{
    char detail[1024], last[600] = "";
    if (ctx && rc != CGLOO_OK)
        cgloo_context_last_error(ctx, last, sizeof last);
    if (ctx)
        snprintf(detail, sizeof detail, "%s: got %s (%s)", desc, cgloo_status_name(rc), last);
    else
        snprintf(detail, sizeof detail, "%s", desc);
    harness_fail(__FILE__, line, what, detail);
}

#define CASE_CHECK(cond, desc)                                                                     \
    do {                                                                                           \
        if (!(cond))                                                                               \
            case_fail(__LINE__, desc, NULL, CGLOO_OK, #cond);                                      \
    } while (0)
#define CASE_STATUS(ctx, expr, want, desc)                                                         \
    do {                                                                                           \
        int case_rc_ = (expr);                                                                     \
        if (case_rc_ != (want))                                                                    \
            case_fail(__LINE__, desc, ctx, case_rc_, #expr);                                       \
    } while (0)

static int inputs_intact(const void *buf, size_t count, cgloo_dtype t, cgloo_op op, int rank)
{
    for (size_t i = 0; i < count; i++) {
        size_t esize = cgloo_dtype_size(t);
        uint64_t tmp[2]; /* the largest element, complex128 */
        store_value(tmp, 0, t, input_value(op, t, rank, i));
        if (memcmp((const uint8_t *)buf + i * esize, tmp, esize) != 0)
            return 0;
    }
    return 1;
}

/* Inputs and the reference for one (dtype, op), made once when a test reuses them on large
 * vectors: the values fill_input and check_reduced give, cheaper to compare (memcmp) than to
 * recompute for every case, which matters in the sanitizer builds. */
typedef struct prepared {
    const uint8_t *input;  /* this rank's input */
    const uint8_t *expect; /* the reduction over all ranks */
} prepared;

static void case_fill(void *buf, size_t n, const prepared *p, cgloo_dtype t, cgloo_op op, int rank)
{
    if (!p)
        fill_input(buf, n, t, op, rank);
    else if (n)
        memcpy(buf, p->input, n * cgloo_dtype_size(t));
}

/* case_reduced: out holds reference elements first .. first + n. */
static int case_reduced(const void *out, size_t n, const prepared *p, cgloo_dtype t, cgloo_op op,
                        int size, size_t first)
{
    size_t esize = cgloo_dtype_size(t);
    if (p && (n == 0 || memcmp(out, p->expect + first * esize, n * esize) == 0))
        return 1;
    return check_reduced(out, n, t, op, size, first); /* the verdict, e.g. for -0.0 */
}

static int case_inputs_intact(const void *buf, size_t n, const prepared *p, cgloo_dtype t,
                              cgloo_op op, int rank)
{
    if (p)
        return n == 0 || memcmp(buf, p->input, n * cgloo_dtype_size(t)) == 0;
    return inputs_intact(buf, n, t, op, rank);
}

/* ---- one reduce_scatter(v) case ---- */

enum placement { OUT_OF_PLACE, IN_PLACE_BLOCK, IN_PLACE_FRONT };
static const char *const placement_names[] = {"out of place", "in place (block)",
                                              "in place (front)"};

typedef struct rs_case {
    const char *alg;
    cgloo_dtype t;
    cgloo_op op;
    const size_t *counts; /* size entries */
    int v;                /* reduce_scatterv; else every count is counts[0] */
    enum placement place;
    cgloo_reduce_fn fn; /* a caller's reduction, or NULL */
    void *fn_user;
    const prepared *prep; /* or NULL */
} rs_case;

static int rs_call(cgloo_context *ctx, const rs_case *k, const void *send, void *recv)
{
    cgloo_coll_opts opts = {.algorithm = k->alg, .reduce_fn = k->fn, .reduce_user = k->fn_user};
    if (k->v)
        return cgloo_reduce_scatterv(ctx, send, recv, k->counts, k->t, k->op, &opts);
    return cgloo_reduce_scatter(ctx, send, recv, k->counts[0], k->t, k->op, &opts);
}

static void run_rs_case(cgloo_context *ctx, int rank, int size, const rs_case *k)
{
    size_t esize = cgloo_dtype_size(k->t), first = 0, total = 0;
    for (int r = 0; r < size; r++) {
        first += r < rank ? k->counts[r] : 0;
        total += k->counts[r];
    }
    size_t mine = k->counts[rank];
    char desc[256];
    snprintf(desc, sizeof desc, "%s(%s) %s %s counts[rank]=%zu total=%zu %s rank %d/%d",
             k->v ? "reduce_scatterv" : "reduce_scatter", k->alg ? k->alg : "auto",
             cgloo_dtype_name(k->t), cgloo_op_name(k->op), mine, total, placement_names[k->place],
             rank, size);
    guarded send = guarded_alloc(total * esize);
    guarded recv = guarded_alloc(mine * esize);
    case_fill(send.p, total, k->prep, k->t, k->op, rank);
    uint8_t *out = k->place == OUT_OF_PLACE     ? recv.p
                   : k->place == IN_PLACE_FRONT ? send.p
                                                : send.p + first * esize;
    if (k->fn == NULL && !op_defined(k->op, k->t)) {
        CASE_STATUS(ctx, rs_call(ctx, k, send.p, out), CGLOO_EINVAL, desc);
    } else {
        CASE_STATUS(ctx, rs_call(ctx, k, send.p, out), CGLOO_OK, desc);
        CASE_CHECK(case_reduced(out, mine, k->prep, k->t, k->op, size, first), desc);
        if (k->place == OUT_OF_PLACE)
            CASE_CHECK(case_inputs_intact(send.p, total, k->prep, k->t, k->op, rank), desc);
    }
    CASE_CHECK(guards_intact(&send) && guards_intact(&recv), desc);
    free(send.base);
    free(recv.base);
}

/* ---- one reduce case ---- */

typedef struct reduce_case {
    const char *alg;
    cgloo_dtype t;
    cgloo_op op;
    size_t count;
    int root;
    int in_place;       /* on the root */
    int nonroot_buffer; /* non-roots pass a buffer (that must stay untouched) instead of NULL */
    cgloo_reduce_fn fn;
    void *fn_user;
    const prepared *prep;
} reduce_case;

static void run_reduce_case(cgloo_context *ctx, int rank, int size, const reduce_case *k)
{
    size_t esize = cgloo_dtype_size(k->t);
    char desc[256];
    snprintf(desc, sizeof desc, "reduce(%s) %s %s count=%zu root=%d%s rank %d/%d",
             k->alg ? k->alg : "auto", cgloo_dtype_name(k->t), cgloo_op_name(k->op), k->count,
             k->root, k->in_place ? " in place" : "", rank, size);
    guarded send = guarded_alloc(k->count * esize);
    guarded recv = guarded_alloc(k->count * esize);
    case_fill(send.p, k->count, k->prep, k->t, k->op, rank);
    int root = rank == k->root;
    void *out = root ? (k->in_place ? send.p : recv.p) : k->nonroot_buffer ? recv.p : NULL;
    cgloo_coll_opts opts = {.algorithm = k->alg, .reduce_fn = k->fn, .reduce_user = k->fn_user};
    int rc = cgloo_reduce(ctx, send.p, out, k->count, k->t, k->op, k->root, &opts);
    if (k->fn == NULL && !op_defined(k->op, k->t)) {
        CASE_STATUS(ctx, rc, CGLOO_EINVAL, desc);
    } else {
        CASE_STATUS(ctx, rc, CGLOO_OK, desc);
        if (root)
            CASE_CHECK(case_reduced(out, k->count, k->prep, k->t, k->op, size, 0), desc);
        if (!root || !k->in_place)
            CASE_CHECK(case_inputs_intact(send.p, k->count, k->prep, k->t, k->op, rank), desc);
        if (!root) {
            uint8_t untouched[GUARD];
            memset(untouched, 0xA5, sizeof untouched);
            for (size_t i = 0; i < recv.bytes; i += GUARD)
                CASE_CHECK(memcmp(recv.p + i, untouched, CGLOO_MIN(GUARD, recv.bytes - i)) == 0,
                           desc);
        }
    }
    CASE_CHECK(guards_intact(&send) && guards_intact(&recv), desc);
    free(send.base);
    free(recv.base);
}

/* ---- the full matrix at one world size ---- */

/* The small counts: 0, 1, fewer than the ranks, not divisible by them, a prime. */
static int small_counts(int size, size_t *out)
{
    int n = 0;
    out[n++] = 0;
    out[n++] = 1;
    if (size > 2)
        out[n++] = (size_t)size - 1;
    out[n++] = 2 * (size_t)size + 3;
    out[n++] = 97;
    return n;
}

/* v patterns: uneven with zeros, everything on the last rank, near-prime, all empty. */
static void v_counts(int pattern, int size, size_t *counts)
{
    for (int r = 0; r < size; r++) {
        switch (pattern) {
        case 0:
            counts[r] = (size_t)(r * 5 + 2) % 4;
            break;
        case 1:
            counts[r] = r == size - 1 ? 13 : 0;
            break;
        case 2:
            counts[r] = 31 + (size_t)r * 3;
            break;
        default:
            counts[r] = 0;
            break;
        }
    }
}

static void matrix_rs(cgloo_context *ctx, int rank, int size, int *seq)
{
    size_t counts[8], vcounts[16];
    int ncounts = small_counts(size, counts);
    for (size_t a = 0; a < CGLOO_ARRAY_LEN(rs_algorithms); a++)
        for (size_t d = 0; d < CGLOO_ARRAY_LEN(all_dtypes); d++)
            for (size_t o = 0; o < CGLOO_ARRAY_LEN(all_ops); o++) {
                rs_case k = {.alg = rs_algorithms[a], .t = all_dtypes[d], .op = all_ops[o]};
                if (shm_left_out(k.alg, size, 0))
                    continue;
                for (int c = 0; c < ncounts; c++) {
                    size_t same[16];
                    for (int r = 0; r < size; r++)
                        same[r] = counts[c];
                    k.counts = same;
                    k.place = (enum placement)((*seq)++ % 3);
                    run_rs_case(ctx, rank, size, &k);
                }
                k.v = 1;
                for (int pattern = 0; pattern < 4; pattern++) {
                    v_counts(pattern, size, vcounts);
                    k.counts = vcounts;
                    k.place = (enum placement)((*seq)++ % 3);
                    run_rs_case(ctx, rank, size, &k);
                }
            }
}

static void matrix_reduce(cgloo_context *ctx, int rank, int size, int *seq)
{
    size_t counts[8];
    int ncounts = small_counts(size, counts);
    for (size_t a = 0; a < CGLOO_ARRAY_LEN(reduce_algorithms); a++)
        for (size_t d = 0; d < CGLOO_ARRAY_LEN(all_dtypes); d++)
            for (size_t o = 0; o < CGLOO_ARRAY_LEN(all_ops); o++)
                for (int c = 0; c < ncounts && !shm_left_out(reduce_algorithms[a], size, 0); c++) {
                    int s = (*seq)++;
                    reduce_case k = {.alg = reduce_algorithms[a],
                                     .t = all_dtypes[d],
                                     .op = all_ops[o],
                                     .count = counts[c],
                                     .root = s % size, /* every root, many times over */
                                     .in_place = s / size % 2,
                                     .nonroot_buffer = s % 3 == 0};
                    run_reduce_case(ctx, rank, size, &k);
                }
}

/* Every root with both algorithms and the automatic choice, in and out of place; and the
 * automatic choice of reduce_scatter at small sizes. */
static void sweep_roots(cgloo_context *ctx, int rank, int size)
{
    size_t counts[16];
    for (int place = 0; place < 3; place++) {
        v_counts(place, size, counts);
        rs_case k = {.t = CGLOO_UINT8,
                     .op = CGLOO_MAX,
                     .counts = counts,
                     .v = 1,
                     .place = (enum placement)place};
        run_rs_case(ctx, rank, size, &k);
    }
    const char *algs[] = {"binomial", "reduce_scatter_gather", NULL};
    for (int root = 0; root < size; root++)
        for (size_t a = 0; a < CGLOO_ARRAY_LEN(algs); a++) {
            reduce_case k = {.alg = algs[a],
                             .t = CGLOO_INT32,
                             .op = CGLOO_SUM,
                             .count = 2 * (size_t)size + 1,
                             .root = root,
                             .in_place = root % 2};
            run_reduce_case(ctx, rank, size, &k);
        }
}

static void rank_matrix(int rank, int size, void *arg)
{
    rank_env e = mesh_connect(store, rank, size, 60000);
    int seq = 0;
    matrix_rs(e.ctx, rank, size, &seq);
    matrix_reduce(e.ctx, rank, size, &seq);
    sweep_roots(e.ctx, rank, size);
    if (rank == 0)
        fprintf(stderr, "  %d ranks: %d matrix cases\n", size, seq + 3 + 3 * size);
    mesh_close(e);
}

static void with_store(int size, void (*fn)(int, int, void *), void *arg)
{
    CHECK_OK(cgloo_store_hash_create(&store));
    run_ranks(size, fn, arg);
    cgloo_store_destroy(store);
}

#define WORLD_TEST(n)                                                                              \
    static void test_matrix_##n(void)                                                              \
    {                                                                                              \
        with_store(n, rank_matrix, NULL);                                                          \
    }
WORLD_TEST(1)
WORLD_TEST(2)
WORLD_TEST(3)
WORLD_TEST(4)
WORLD_TEST(5)
WORLD_TEST(7)
WORLD_TEST(8)
WORLD_TEST(16)

/* ---- over a million elements: float32 sum and int32 bxor, every algorithm ---- */

static const cgloo_dtype large_types[] = {CGLOO_FLOAT32, CGLOO_INT32};
static const cgloo_op large_ops[] = {CGLOO_SUM, CGLOO_BXOR};

/* Equal blocks, uneven blocks (one empty), and the element count all of them fit in. */
static size_t large_counts(int size, size_t *same, size_t *uneven)
{
    size_t total_same = 0, total_uneven = 0;
    for (int r = 0; r < size; r++) {
        same[r] = LARGE_COUNT / (size_t)size + 1;
        uneven[r] = r == 1 ? 0 : LARGE_COUNT / (size_t)size + (size_t)r * 4099;
        total_same += same[r];
        total_uneven += uneven[r];
    }
    return CGLOO_MAX(CGLOO_MAX(total_same, total_uneven), (size_t)LARGE_COUNT);
}

/* 16 ranks: float32 sum only, to keep the sanitizer builds' run time moderate. */
static int large_kinds(int size)
{
    return size > 8 ? 1 : 2;
}

typedef struct large_arg {
    uint8_t *expect[2];
} large_arg;

static uint8_t *large_values(cgloo_dtype t, cgloo_op op, int size, int rank, size_t n)
{
    uint8_t *buf = malloc(n * cgloo_dtype_size(t));
    CHECK(buf);
    for (size_t i = 0; i < n; i++)
        store_value(buf, i, t,
                    rank < 0 ? reference_value(op, t, size, i) : input_value(op, t, rank, i));
    return buf;
}

static void large_one(cgloo_context *ctx, int rank, int size, int i, const prepared *prep)
{
    size_t same[16], uneven[16];
    large_counts(size, same, uneven);
    for (size_t a = 0; a < CGLOO_ARRAY_LEN(rs_algorithms); a++) {
        if (shm_left_out(rs_algorithms[a], size, LARGE_COUNT))
            continue;
        rs_case k = {.alg = rs_algorithms[a],
                     .t = large_types[i],
                     .op = large_ops[i],
                     .counts = same,
                     .place = (enum placement)((a + (size_t)i) % 3),
                     .prep = prep};
        run_rs_case(ctx, rank, size, &k);
        k.v = 1;
        k.counts = uneven;
        k.place = (enum placement)((a + (size_t)i + 1) % 3);
        run_rs_case(ctx, rank, size, &k);
    }
    for (size_t a = 0; a < CGLOO_ARRAY_LEN(reduce_algorithms); a++) {
        if (shm_left_out(reduce_algorithms[a], size, LARGE_COUNT))
            continue;
        reduce_case k = {.alg = reduce_algorithms[a],
                         .t = large_types[i],
                         .op = large_ops[i],
                         .count = LARGE_COUNT,
                         .root = (int)(a + (size_t)i) % size,
                         .in_place = (int)a,
                         .prep = prep};
        run_reduce_case(ctx, rank, size, &k);
    }
    if (i != 0)
        return;
    /* the automatic choice at this size too (once: it runs the algorithms above) */
    rs_case k = {.t = large_types[i], .op = large_ops[i], .counts = same, .prep = prep};
    run_rs_case(ctx, rank, size, &k);
    reduce_case r = {.t = large_types[i],
                     .op = large_ops[i],
                     .count = LARGE_COUNT,
                     .root = size - 1,
                     .prep = prep};
    run_reduce_case(ctx, rank, size, &r);
}

static void rank_large(int rank, int size, void *arg)
{
    const large_arg *la = arg;
    rank_env e = mesh_connect(store, rank, size, 120000);
    size_t same[16], uneven[16], n = large_counts(size, same, uneven);
    for (int i = 0; i < large_kinds(size); i++) {
        uint8_t *input = large_values(large_types[i], large_ops[i], size, rank, n);
        prepared prep = {.input = input, .expect = la->expect[i]};
        large_one(e.ctx, rank, size, i, &prep);
        free(input);
    }
    mesh_close(e);
}

static void run_large(int size)
{
    size_t same[16], uneven[16], n = large_counts(size, same, uneven);
    large_arg la;
    for (int i = 0; i < 2; i++)
        la.expect[i] =
            i < large_kinds(size) ? large_values(large_types[i], large_ops[i], size, -1, n) : NULL;
    with_store(size, rank_large, &la);
    free(la.expect[0]);
    free(la.expect[1]);
}

#define LARGE_TEST(n)                                                                              \
    static void test_large_##n(void)                                                               \
    {                                                                                              \
        run_large(n);                                                                              \
    }
LARGE_TEST(1)
LARGE_TEST(2)
LARGE_TEST(3)
LARGE_TEST(5)
LARGE_TEST(8)
LARGE_TEST(16)

/* ---- the in-place building blocks, called directly with uneven blocks ---- */

typedef int (*inplace_fn)(coll *c, void *buf, const size_t *offsets, unsigned step_base);

static void run_inplace(cgloo_context *ctx, int rank, int size, inplace_fn fn, const char *name,
                        cgloo_dtype t, cgloo_op op, const size_t *off)
{
    char desc[160];
    snprintf(desc, sizeof desc, "%s %s %s total=%zu rank %d/%d", name, cgloo_dtype_name(t),
             cgloo_op_name(op), off[size], rank, size);
    coll c;
    CASE_STATUS(ctx, cgloo__coll_begin(&c, ctx, "reduce_scatter", t, NULL), CGLOO_OK, desc);
    CASE_STATUS(ctx, cgloo__coll_set_op(&c, op, NULL), CGLOO_OK, desc);
    c.algorithm = name;
    guarded buf = guarded_alloc(off[size] * c.esize);
    fill_input(buf.p, off[size], t, op, rank);
    /* step numbers that wrap past 255, as a caller composing phases may use */
    CASE_STATUS(ctx, fn(&c, buf.p, off, 250), CGLOO_OK, desc);
    CASE_CHECK(check_reduced(buf.p + off[rank] * c.esize, off[rank + 1] - off[rank], t, op, size,
                             off[rank]),
               desc);
    CASE_CHECK(guards_intact(&buf), desc);
    free(buf.base);
}

static void rank_inplace(int rank, int size, void *arg)
{
    rank_env e = mesh_connect(store, rank, size, 60000);
    /* Uneven blocks: empty ones, tiny ones, and one spanning several 512 KiB ring segments with
     * a partial last one (float32: 131072 elements a segment). */
    size_t counts[16], off[17] = {0};
    for (int r = 0; r < size; r++)
        counts[r] = r % 3 == 1 ? 0 : r == 2 ? 3 * 131072 + 1234 : 7 + (size_t)r * 11;
    for (int r = 0; r < size; r++)
        off[r + 1] = off[r] + counts[r];
    struct {
        cgloo_dtype t;
        cgloo_op op;
    } cases[] = {{CGLOO_FLOAT32, CGLOO_SUM},
                 {CGLOO_INT8, CGLOO_BXOR},
                 {CGLOO_INT64, CGLOO_MAX},
                 {CGLOO_BFLOAT16, CGLOO_PRODUCT}};
    for (size_t i = 0; i < CGLOO_ARRAY_LEN(cases); i++) {
        run_inplace(e.ctx, rank, size, cgloo__reduce_scatter_ring_inplace, "ring", cases[i].t,
                    cases[i].op, off);
        run_inplace(e.ctx, rank, size, cgloo__reduce_scatter_halving_doubling_inplace,
                    "halving_doubling", cases[i].t, cases[i].op, off);
    }
    /* every block empty */
    size_t zero[17] = {0};
    run_inplace(e.ctx, rank, size, cgloo__reduce_scatter_ring_inplace, "ring", CGLOO_INT32,
                CGLOO_SUM, zero);
    mesh_close(e);
}

static void test_inplace_internal(void)
{
    static const int sizes[] = {1, 2, 3, 4, 6, 7};
    for (size_t i = 0; i < CGLOO_ARRAY_LEN(sizes); i++)
        with_store(sizes[i], rank_inplace, NULL);
}

/* ---- a caller-supplied reduction ---- */

typedef struct fsum_user {
    int calls;
    int bad_dtype;
} fsum_user;

static void test_fsum(void *inout, const void *in, size_t count, cgloo_dtype dtype, void *user)
{
    fsum_user *u = user;
    float *a = inout;
    const float *b = in;
    for (size_t i = 0; i < count; i++)
        a[i] += b[i];
    u->calls++;
    u->bad_dtype |= dtype != CGLOO_FLOAT32;
}

static void rank_reduce_fn(int rank, int size, void *arg)
{
    rank_env e = mesh_connect(store, rank, size, 60000);
    size_t counts[16];
    for (int r = 0; r < size; r++)
        counts[r] = 1000 + (size_t)r;
    for (size_t a = 0; a < CGLOO_ARRAY_LEN(rs_algorithms); a++) {
        fsum_user u = {0};
        /* the function replaces the op: even a bitwise op on floats is then accepted */
        rs_case k = {.alg = rs_algorithms[a],
                     .t = CGLOO_FLOAT32,
                     .op = CGLOO_SUM,
                     .counts = counts,
                     .v = 1,
                     .fn = test_fsum,
                     .fn_user = &u};
        run_rs_case(e.ctx, rank, size, &k);
        /* every rank reduces, except the ranks halving-doubling folds away */
        int p2 = 1;
        while (p2 * 2 <= size)
            p2 *= 2;
        int folded = a == 1 && rank % 2 == 0 && rank < 2 * (size - p2);
        CHECK(!u.bad_dtype && (folded || u.calls > 0));
        float x[4] = {1, 2, 3, 4}, y[1];
        cgloo_coll_opts opts = {
            .algorithm = rs_algorithms[a], .reduce_fn = test_fsum, .reduce_user = &u};
        CHECK_OK(cgloo_reduce_scatter(e.ctx, x, y, 1, CGLOO_FLOAT32, CGLOO_BXOR, &opts));
        CHECK(y[0] == (float)(size * (rank + 1)));
    }
    for (size_t a = 0; a < CGLOO_ARRAY_LEN(reduce_algorithms); a++) {
        fsum_user u = {0};
        reduce_case k = {.alg = reduce_algorithms[a],
                         .t = CGLOO_FLOAT32,
                         .op = CGLOO_SUM,
                         .count = 4099,
                         .root = 1,
                         .fn = test_fsum,
                         .fn_user = &u};
        run_reduce_case(e.ctx, rank, size, &k);
        CHECK(!u.bad_dtype && (rank != 1 || u.calls > 0));
    }
    mesh_close(e);
}

static void test_reduce_fn(void)
{
    with_store(4, rank_reduce_fn, NULL);
    with_store(3, rank_reduce_fn, NULL);
}

/* ---- CGLOO_REDUCE_SCATTER_ALGORITHM and CGLOO_REDUCE_ALGORITHM ---- */

static void rank_env_choice(int rank, int size, void *arg)
{
    int want = *(int *)arg;
    rank_env e = mesh_connect(store, rank, size, 60000);
    size_t n = 10;
    int32_t send[40], recv[10];
    fill_input(send, n * (size_t)size, CGLOO_INT32, CGLOO_SUM, rank);
    CHECK_STATUS(cgloo_reduce_scatter(e.ctx, send, recv, n, CGLOO_INT32, CGLOO_SUM, NULL), want);
    if (want == CGLOO_OK)
        CHECK(check_reduced(recv, n, CGLOO_INT32, CGLOO_SUM, size, n * (size_t)rank));
    CHECK_STATUS(cgloo_reduce(e.ctx, send, recv, n, CGLOO_INT32, CGLOO_SUM, 0, NULL), want);
    if (want == CGLOO_OK && rank == 0)
        CHECK(check_reduced(recv, n, CGLOO_INT32, CGLOO_SUM, size, 0));
    if (want != CGLOO_OK) {
        char detail[512];
        cgloo_context_last_error(e.ctx, detail, sizeof detail);
        CHECK(strstr(detail, "bogus") != NULL);
    }
    /* opts.algorithm wins over the environment */
    cgloo_coll_opts opts = {.algorithm = "ring"};
    CHECK_OK(cgloo_reduce_scatter(e.ctx, send, recv, n, CGLOO_INT32, CGLOO_SUM, &opts));
    CHECK(check_reduced(recv, n, CGLOO_INT32, CGLOO_SUM, size, n * (size_t)rank));
    opts.algorithm = "binomial";
    CHECK_OK(cgloo_reduce(e.ctx, send, recv, n, CGLOO_INT32, CGLOO_SUM, 2, &opts));
    if (rank == 2)
        CHECK(check_reduced(recv, n, CGLOO_INT32, CGLOO_SUM, size, 0));
    mesh_close(e);
}

static void test_env_choice(void)
{
    int ok = CGLOO_OK, notsup = CGLOO_ENOTSUP;
    setenv("CGLOO_REDUCE_SCATTER_ALGORITHM", "halving_doubling", 1);
    setenv("CGLOO_REDUCE_ALGORITHM", "reduce_scatter_gather", 1);
    with_store(4, rank_env_choice, &ok);
    setenv("CGLOO_REDUCE_SCATTER_ALGORITHM", "ring", 1);
    setenv("CGLOO_REDUCE_ALGORITHM", "binomial", 1);
    with_store(3, rank_env_choice, &ok);
    /* a name no collective has: every rank fails before sending anything */
    setenv("CGLOO_REDUCE_SCATTER_ALGORITHM", "bogus", 1);
    setenv("CGLOO_REDUCE_ALGORITHM", "bogus", 1);
    with_store(3, rank_env_choice, &notsup);
}

/* ---- bad arguments, on a one-rank context (the checks happen before any message) ---- */

static void test_bad_arguments(void)
{
    cgloo_context *ctx;
    CHECK_OK(cgloo_context_create(0, 1, NULL, &ctx));
    float f[8] = {0};
    int32_t i[8] = {0};
    size_t counts[1] = {4};
    cgloo_coll_opts nope = {.algorithm = "nope"};
    /* not connected yet */
    CHECK_STATUS(cgloo_reduce(ctx, f, f, 1, CGLOO_FLOAT32, CGLOO_SUM, 0, NULL), CGLOO_ESTATE);
    CHECK_OK(cgloo_context_connect(ctx, NULL, NULL));
    /* NULL buffers with elements, NULL recvcounts */
    CHECK_STATUS(cgloo_reduce_scatter(ctx, NULL, f, 1, CGLOO_FLOAT32, CGLOO_SUM, NULL),
                 CGLOO_EINVAL);
    CHECK_STATUS(cgloo_reduce_scatter(ctx, f, NULL, 1, CGLOO_FLOAT32, CGLOO_SUM, NULL),
                 CGLOO_EINVAL);
    CHECK_STATUS(cgloo_reduce_scatterv(ctx, f, f, NULL, CGLOO_FLOAT32, CGLOO_SUM, NULL),
                 CGLOO_EINVAL);
    CHECK_STATUS(cgloo_reduce_scatterv(ctx, NULL, f, counts, CGLOO_FLOAT32, CGLOO_SUM, NULL),
                 CGLOO_EINVAL);
    CHECK_STATUS(cgloo_reduce(ctx, NULL, f, 1, CGLOO_FLOAT32, CGLOO_SUM, 0, NULL), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_reduce(ctx, f, NULL, 1, CGLOO_FLOAT32, CGLOO_SUM, 0, NULL), CGLOO_EINVAL);
    /* no elements: NULL buffers are fine */
    CHECK_OK(cgloo_reduce_scatter(ctx, NULL, NULL, 0, CGLOO_FLOAT32, CGLOO_SUM, NULL));
    CHECK_OK(cgloo_reduce(ctx, NULL, NULL, 0, CGLOO_FLOAT32, CGLOO_SUM, 0, NULL));
    /* root out of range */
    CHECK_STATUS(cgloo_reduce(ctx, f, f, 1, CGLOO_FLOAT32, CGLOO_SUM, 1, NULL), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_reduce(ctx, f, f, 1, CGLOO_FLOAT32, CGLOO_SUM, -1, NULL), CGLOO_EINVAL);
    /* overflowing counts, partial overlap */
    CHECK_STATUS(cgloo_reduce_scatter(ctx, f, f + 4, SIZE_MAX / 2, CGLOO_FLOAT32, CGLOO_SUM, NULL),
                 CGLOO_EINVAL);
    CHECK_STATUS(cgloo_reduce(ctx, f, f, SIZE_MAX / 2, CGLOO_FLOAT32, CGLOO_SUM, 0, NULL),
                 CGLOO_EINVAL);
    CHECK_STATUS(cgloo_reduce_scatter(ctx, f, f + 1, 4, CGLOO_FLOAT32, CGLOO_SUM, NULL),
                 CGLOO_EINVAL);
    /* bitwise ops on floats, bad op or dtype, unknown algorithms */
    CHECK_STATUS(cgloo_reduce_scatter(ctx, f, f, 1, CGLOO_FLOAT32, CGLOO_BAND, NULL), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_reduce(ctx, f, f, 1, CGLOO_FLOAT64, CGLOO_BXOR, 0, NULL), CGLOO_EINVAL);
    /* complex numbers have no order */
    CHECK_STATUS(cgloo_reduce(ctx, f, f, 1, CGLOO_COMPLEX64, CGLOO_MIN, 0, NULL), CGLOO_EINVAL);
    char why[512];
    cgloo_context_last_error(ctx, why, sizeof why);
    CHECK(strstr(why, "op min is not defined for dtype complex64") != NULL);
    CHECK_STATUS(cgloo_reduce(ctx, i, i, 1, CGLOO_INT32, (cgloo_op)99, 0, NULL), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_reduce(ctx, i, i, 1, (cgloo_dtype)99, CGLOO_SUM, 0, NULL), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_reduce_scatter(ctx, i, i, 1, CGLOO_INT32, CGLOO_SUM, &nope), CGLOO_ENOTSUP);
    CHECK_STATUS(cgloo_reduce_scatterv(ctx, i, i, counts, CGLOO_INT32, CGLOO_SUM, &nope),
                 CGLOO_ENOTSUP);
    CHECK_STATUS(cgloo_reduce(ctx, i, i, 1, CGLOO_INT32, CGLOO_SUM, 0, &nope), CGLOO_ENOTSUP);
    char detail[512];
    cgloo_context_last_error(ctx, detail, sizeof detail);
    CHECK(strstr(detail, "nope") && strstr(detail, "binomial"));
    cgloo_context_destroy(ctx);
}

/* ---- a rank that never comes: the others time out, and the error names step and peer ---- */

static int absent_done; /* ranks that have seen their timeout (atomic builtins) */

static void rank_absent(int rank, int size, void *arg)
{
    rank_env e = mesh_connect(store, rank, size, 60000);
    if (rank != 2) {
        int32_t send[3 * 100] = {0}, recv[100];
        cgloo_coll_opts opts = {.algorithm = "ring", .timeout_ms = 300};
        long long t0 = test_now_ms();
        int rc = cgloo_reduce_scatter(e.ctx, send, recv, 100, CGLOO_INT32, CGLOO_SUM, &opts);
        long long took = test_now_ms() - t0;
        char detail[512];
        cgloo_context_last_error(e.ctx, detail, sizeof detail);
        __atomic_add_fetch(&absent_done, 1, __ATOMIC_RELEASE);
        CASE_CHECK(rc == CGLOO_ETIMEDOUT, detail);
        CASE_CHECK(took >= 250 && took < 5000, detail); /* bounded by the call's timeout */
        CASE_CHECK(strstr(detail, "reduce_scatter(ring)") && strstr(detail, "step ") &&
                       strstr(detail, "rank "),
                   detail);
    }
    /* Everyone stays connected until both have timed out, so they see a timeout rather than
     * a peer that left. */
    while (__atomic_load_n(&absent_done, __ATOMIC_ACQUIRE) < 2)
        test_sleep_ms(10);
    mesh_close(e);
}

static void test_absent_rank(void)
{
    with_store(3, rank_absent, NULL);
}

/* ---- the algorithm names ---- */

static int has_name(const char *const *names, const char *want)
{
    for (; names && *names; names++)
        if (strcmp(*names, want) == 0)
            return 1;
    return 0;
}

static void test_algorithm_names(void)
{
    const char *const *rs = cgloo_algorithm_names("reduce_scatter");
    CHECK(has_name(rs, "ring") && has_name(rs, "halving_doubling"));
    CHECK(has_name(cgloo_algorithm_names("reduce_scatterv"), "ring"));
    const char *const *r = cgloo_algorithm_names("reduce");
    CHECK(has_name(r, "binomial") && has_name(r, "reduce_scatter_gather"));
}

static const test_case tests[] = {
    {"bad_arguments", test_bad_arguments, 30},
    {"algorithm_names", test_algorithm_names, 10},
    {"matrix_1", test_matrix_1, 120},
    {"matrix_2", test_matrix_2, 120},
    {"matrix_3", test_matrix_3, 120},
    {"matrix_4", test_matrix_4, 120},
    {"matrix_5", test_matrix_5, 120},
    {"matrix_7", test_matrix_7, 180},
    {"matrix_8", test_matrix_8, 180},
    {"matrix_16", test_matrix_16, 300},
    {"large_1", test_large_1, 120},
    {"large_2", test_large_2, 120},
    {"large_3", test_large_3, 120},
    {"large_5", test_large_5, 180},
    {"large_8", test_large_8, 180},
    {"large_16", test_large_16, 300},
    {"inplace_internal", test_inplace_internal, 120},
    {"reduce_fn", test_reduce_fn, 60},
    {"env_choice", test_env_choice, 60},
    {"absent_rank", test_absent_rank, 30},
};

TEST_MAIN(tests)
