/*
 * The algorithm registry, row by row of src/coll/collectives.h: cgloo_algorithm_names lists the
 * expected names in their order; every listed name finds its own table entry, whether it comes
 * from cgloo_coll_opts.algorithm or from CGLOO_<NAME>_ALGORITHM; every listed algorithm, forced
 * either way, runs its collective to the right result on 1, 2, 3, 4, 5, 7 and 8 ranks (3 and 4
 * through the variable); and an unknown name in the variable fails with ENOTSUP. The names to
 * force come from the registry, so an algorithm added to a table is run here with no change; a
 * row added to collectives.h fails until this file expects its names and knows how to call it.
 */
#include "coll/coll.h"

#include "mesh.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

#define TIMEOUT_MS 60000
#define COUNT 5 /* elements per rank in the plain forms */
#define MAX_RANKS 8

/* ---- what is expected ---------------------------------------------------------------------- */

static const struct expected {
    const char *row;
    const char *names[10]; /* NULL-terminated */
} expected[] = {
    {"allreduce",
     {"ring", "halving_doubling", "bcube", "recursive_doubling", "direct", "single_copy",
      "hierarchical", "shm"}},
    {"reduce_scatter", {"ring", "halving_doubling", "single_copy", "hierarchical", "shm"}},
    {"reduce_scatterv", {"ring", "halving_doubling", "single_copy", "hierarchical", "shm"}},
    {"allgather", {"ring", "recursive_doubling", "single_copy", "hierarchical", "shm"}},
    {"allgatherv", {"ring", "recursive_doubling", "single_copy", "hierarchical", "shm"}},
    {"broadcast", {"binomial", "pipeline", "flat", "single_copy", "hierarchical", "shm"}},
    {"reduce", {"binomial", "reduce_scatter_gather", "single_copy", "shm"}},
    {"gather", {"direct", "binomial", "single_copy", "shm"}},
    {"gatherv", {"direct", "binomial", "single_copy", "shm"}},
    {"scatter", {"direct", "binomial", "single_copy", "shm"}},
    {"scatterv", {"direct", "binomial", "single_copy", "shm"}},
    {"alltoall", {"pairwise", "single_copy", "shm"}},
    {"alltoallv", {"pairwise", "single_copy", "shm"}},
    {"barrier", {"dissemination", "all_to_one", "shm"}},
};

/* The rows as the library sees them: name and table. */
static const struct row {
    const char *name;
    const coll_algorithm *table;
} rows[] = {
#define ROW(name, table, kind) {#name, cgloo__##table##_algorithms},
    CGLOO_COLLECTIVES(ROW)
#undef ROW
};

static const struct expected *expected_for(const char *row)
{
    for (size_t i = 0; i < CGLOO_ARRAY_LEN(expected); i++)
        if (strcmp(expected[i].row, row) == 0)
            return &expected[i];
    harness_fail(__FILE__, __LINE__, "no expected names for a row of collectives.h", row);
    return NULL;
}

/* run_name: the name a row's call runs under (errors, the variable). reduce_scatterv runs as
 * reduce_scatter: one variable for both (collectives.h). */
static const char *run_name(const char *row)
{
    return strcmp(row, "reduce_scatterv") == 0 ? "reduce_scatter" : row;
}

/* env_var writes CGLOO_<RUN NAME>_ALGORITHM into var. */
static const char *env_var(const char *row, char *var, size_t len)
{
    char upper[64];
    size_t n = 0;
    for (const char *p = run_name(row); *p && n + 1 < sizeof upper; p++)
        upper[n++] = (char)toupper((unsigned char)*p);
    upper[n] = '\0';
    snprintf(var, len, "CGLOO_%s_ALGORITHM", upper);
    return var;
}

static size_t count_names(const char *const *names)
{
    size_t n = 0;
    while (names && names[n])
        n++;
    return n;
}

/* ---- the names ----------------------------------------------------------------------------- */

static void test_names(void)
{
    CHECK(CGLOO_ARRAY_LEN(rows) == CGLOO_ARRAY_LEN(expected));
    for (size_t r = 0; r < CGLOO_ARRAY_LEN(rows); r++) {
        const char *const *got = cgloo_algorithm_names(rows[r].name);
        const struct expected *want = expected_for(rows[r].name);
        CHECK(got != NULL && want != NULL);
        size_t i = 0;
        for (; want->names[i]; i++)
            if (!got[i] || strcmp(got[i], want->names[i]) != 0)
                harness_fail(__FILE__, __LINE__, rows[r].name, want->names[i]);
        if (got[i])
            harness_fail(__FILE__, __LINE__, rows[r].name, "lists more names than expected");
    }
    CHECK(cgloo_algorithm_names(NULL) == NULL);
    CHECK(cgloo_algorithm_names("nothing") == NULL);
}

/* ---- each name finds its own entry ---------------------------------------------------------- */

/* find_one resolves `want` for a row on a 1-rank context, from opts or (opts NULL) from the
 * environment, and checks that it found the entry of that name. */
static void find_one(cgloo_context *ctx, const struct row *r, const char *want,
                     const cgloo_coll_opts *opts)
{
    coll c;
    int n = (int)count_names(cgloo_algorithm_names(r->name));
    CHECK_OK(cgloo__coll_begin(&c, ctx, run_name(r->name), CGLOO_INT32, opts));
    int a = cgloo__coll_find(&c, r->table, n, opts, -1); /* no fallback: an unread name fails */
    if (a < 0 || strcmp(r->table[a].name, want) != 0 || strcmp(c.algorithm, want) != 0)
        harness_fail(__FILE__, __LINE__, r->name, want);
}

static void test_find(void)
{
    cgloo_context *ctx;
    CHECK_OK(cgloo_context_create(0, 1, NULL, &ctx));
    CHECK_OK(cgloo_context_connect(ctx, NULL, NULL));
    for (size_t r = 0; r < CGLOO_ARRAY_LEN(rows); r++) {
        const char *const *names = cgloo_algorithm_names(rows[r].name);
        char var[96];
        env_var(rows[r].name, var, sizeof var);
        for (size_t i = 0; names[i]; i++) {
            cgloo_coll_opts o = {.algorithm = names[i]};
            find_one(ctx, &rows[r], names[i], &o);
            /* a context reads the variable at its first call of the collective */
            cgloo_context *fresh;
            CHECK(setenv(var, names[i], 1) == 0);
            CHECK_OK(cgloo_context_create(0, 1, NULL, &fresh));
            CHECK_OK(cgloo_context_connect(fresh, NULL, NULL));
            find_one(fresh, &rows[r], names[i], NULL);
            cgloo_context_destroy(fresh);
            CHECK(unsetenv(var) == 0);
        }
    }
    cgloo_context_destroy(ctx);
}

/* ---- each algorithm runs ------------------------------------------------------------------- */

/* One call: the row, how its algorithm is forced (NULL opts.algorithm: by the variable), and
 * the status it must return; data are checked only when that is CGLOO_OK. */
typedef struct call {
    const char *row;
    cgloo_context *ctx;
    int rank, size;
    const cgloo_coll_opts *o;
    int expect;
} call;

static void call_fail(const call *k, int line, const char *what)
{
    char detail[768], last[512] = "";
    cgloo_context_last_error(k->ctx, last, sizeof last);
    snprintf(detail, sizeof detail, "%s(%s) size %d rank %d: %s [%s]", k->row,
             k->o->algorithm ? k->o->algorithm : "from the environment", k->size, k->rank, what,
             last);
    harness_fail(__FILE__, line, k->row, detail);
}

/* CALLED(k, expr): expr returned k->expect; the data are worth checking when that is OK. */
static int called(const call *k, int line, int rc)
{
    if (rc != k->expect)
        call_fail(k, line, cgloo_status_name(rc));
    return rc == CGLOO_OK;
}
#define CALLED(k, expr) called(k, __LINE__, (expr))
#define EXPECT(k, cond)                                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            call_fail(k, __LINE__, #cond);                                                         \
    } while (0)

/* Element i of what rank r contributes (to destination d where it matters). */
static int32_t value(int r, int d, size_t i)
{
    return r * 10000 + d * 100 + (int32_t)i;
}

static int32_t sum_over_ranks(int size, size_t i)
{
    int32_t s = 0;
    for (int r = 0; r < size; r++)
        s += value(r, 0, i);
    return s;
}

/* The v forms' uneven counts: rank r's block has r % 3 elements (so some have none). */
static size_t vcount(int r)
{
    return (size_t)(r % 3);
}

/* blocks fills counts and offsets (size + 1) for the plain (COUNT each) or the v form. */
static size_t blocks(int size, int v, size_t *counts, size_t *off)
{
    off[0] = 0;
    for (int r = 0; r < size; r++) {
        counts[r] = v ? vcount(r) : COUNT;
        off[r + 1] = off[r] + counts[r];
    }
    return off[size];
}

static void run_allreduce(const call *k, int v)
{
    int32_t buf[COUNT];
    for (size_t i = 0; i < COUNT; i++)
        buf[i] = value(k->rank, 0, i);
    if (CALLED(k, cgloo_allreduce(k->ctx, buf, buf, COUNT, CGLOO_INT32, CGLOO_SUM, k->o)))
        for (size_t i = 0; i < COUNT; i++)
            EXPECT(k, buf[i] == sum_over_ranks(k->size, i));
}

static void run_reduce_scatter(const call *k, int v)
{
    size_t counts[MAX_RANKS], off[MAX_RANKS + 1];
    int32_t send[MAX_RANKS * COUNT], recv[COUNT];
    size_t total = blocks(k->size, v, counts, off);
    for (size_t j = 0; j < total; j++)
        send[j] = value(k->rank, 0, j);
    int rc = v ? cgloo_reduce_scatterv(k->ctx, send, recv, counts, CGLOO_INT32, CGLOO_SUM, k->o)
               : cgloo_reduce_scatter(k->ctx, send, recv, COUNT, CGLOO_INT32, CGLOO_SUM, k->o);
    if (CALLED(k, rc))
        for (size_t i = 0; i < counts[k->rank]; i++)
            EXPECT(k, recv[i] == sum_over_ranks(k->size, off[k->rank] + i));
}

static void run_allgather(const call *k, int v)
{
    size_t counts[MAX_RANKS], off[MAX_RANKS + 1];
    int32_t send[COUNT], recv[MAX_RANKS * COUNT];
    blocks(k->size, v, counts, off);
    for (size_t i = 0; i < counts[k->rank]; i++)
        send[i] = value(k->rank, 0, i);
    int rc = v ? cgloo_allgatherv(k->ctx, send, counts[k->rank], recv, counts, CGLOO_INT32, k->o)
               : cgloo_allgather(k->ctx, send, recv, COUNT, CGLOO_INT32, k->o);
    for (int r = 0; CALLED(k, rc) && r < k->size; r++)
        for (size_t i = 0; i < counts[r]; i++)
            EXPECT(k, recv[off[r] + i] == value(r, 0, i));
}

static void run_gather(const call *k, int v)
{
    size_t counts[MAX_RANKS], off[MAX_RANKS + 1];
    int32_t send[COUNT], recv[MAX_RANKS * COUNT];
    int root = k->size - 1;
    blocks(k->size, v, counts, off);
    for (size_t i = 0; i < counts[k->rank]; i++)
        send[i] = value(k->rank, 0, i);
    int rc = v ? cgloo_gatherv(k->ctx, send, counts[k->rank], recv, counts, CGLOO_INT32, root, k->o)
               : cgloo_gather(k->ctx, send, recv, COUNT, CGLOO_INT32, root, k->o);
    for (int r = 0; CALLED(k, rc) && k->rank == root && r < k->size; r++)
        for (size_t i = 0; i < counts[r]; i++)
            EXPECT(k, recv[off[r] + i] == value(r, 0, i));
}

static void run_scatter(const call *k, int v)
{
    size_t counts[MAX_RANKS], off[MAX_RANKS + 1];
    int32_t send[MAX_RANKS * COUNT], recv[COUNT];
    int root = k->size / 2;
    blocks(k->size, v, counts, off);
    for (int r = 0; r < k->size; r++)
        for (size_t i = 0; i < counts[r]; i++)
            send[off[r] + i] = value(root, r, i);
    int rc =
        v ? cgloo_scatterv(k->ctx, send, counts, recv, counts[k->rank], CGLOO_INT32, root, k->o)
          : cgloo_scatter(k->ctx, send, recv, COUNT, CGLOO_INT32, root, k->o);
    if (CALLED(k, rc))
        for (size_t i = 0; i < counts[k->rank]; i++)
            EXPECT(k, recv[i] == value(root, k->rank, i));
}

/* The v form's counts between ranks s and d: (s + d) % 3 elements, so every pair agrees. */
static size_t a2a_count(int v, int s, int d)
{
    return v ? (size_t)((s + d) % 3) : COUNT;
}

static void run_alltoall(const call *k, int v)
{
    size_t scounts[MAX_RANKS], rcounts[MAX_RANKS], soff[MAX_RANKS + 1] = {0},
                                                                    roff[MAX_RANKS + 1] = {0};
    int32_t send[MAX_RANKS * COUNT], recv[MAX_RANKS * COUNT];
    for (int p = 0; p < k->size; p++) {
        scounts[p] = a2a_count(v, k->rank, p);
        rcounts[p] = a2a_count(v, p, k->rank);
        soff[p + 1] = soff[p] + scounts[p];
        roff[p + 1] = roff[p] + rcounts[p];
        for (size_t i = 0; i < scounts[p]; i++)
            send[soff[p] + i] = value(k->rank, p, i);
    }
    int rc = v ? cgloo_alltoallv(k->ctx, send, scounts, recv, rcounts, CGLOO_INT32, k->o)
               : cgloo_alltoall(k->ctx, send, recv, COUNT, CGLOO_INT32, k->o);
    for (int p = 0; CALLED(k, rc) && p < k->size; p++)
        for (size_t i = 0; i < rcounts[p]; i++)
            EXPECT(k, recv[roff[p] + i] == value(p, k->rank, i));
}

static void run_broadcast(const call *k, int v)
{
    int32_t buf[COUNT];
    int root = k->size - 1;
    for (size_t i = 0; i < COUNT; i++)
        buf[i] = k->rank == root ? value(root, 0, i) : -1;
    if (CALLED(k, cgloo_broadcast(k->ctx, buf, COUNT, CGLOO_INT32, root, k->o)))
        for (size_t i = 0; i < COUNT; i++)
            EXPECT(k, buf[i] == value(root, 0, i));
}

static void run_reduce(const call *k, int v)
{
    int32_t send[COUNT], recv[COUNT];
    int root = k->size / 2;
    for (size_t i = 0; i < COUNT; i++)
        send[i] = value(k->rank, 0, i);
    int rc = cgloo_reduce(k->ctx, send, recv, COUNT, CGLOO_INT32, CGLOO_SUM, root, k->o);
    if (CALLED(k, rc) && k->rank == root)
        for (size_t i = 0; i < COUNT; i++)
            EXPECT(k, recv[i] == sum_over_ranks(k->size, i));
}

static void run_barrier(const call *k, int v)
{
    CALLED(k, cgloo_barrier(k->ctx, k->o));
}

/* How to call each row: the function and whether it is the v form. */
static const struct runner {
    const char *row;
    void (*run)(const call *k, int v);
    int v;
} runners[] = {
    {"allreduce", run_allreduce, 0},
    {"reduce_scatter", run_reduce_scatter, 0},
    {"reduce_scatterv", run_reduce_scatter, 1},
    {"allgather", run_allgather, 0},
    {"allgatherv", run_allgather, 1},
    {"broadcast", run_broadcast, 0},
    {"reduce", run_reduce, 0},
    {"gather", run_gather, 0},
    {"gatherv", run_gather, 1},
    {"scatter", run_scatter, 0},
    {"scatterv", run_scatter, 1},
    {"alltoall", run_alltoall, 0},
    {"alltoallv", run_alltoall, 1},
    {"barrier", run_barrier, 0},
};

static void run_row(const call *k)
{
    for (size_t i = 0; i < CGLOO_ARRAY_LEN(runners); i++)
        if (strcmp(runners[i].row, k->row) == 0) {
            runners[i].run(k, runners[i].v);
            return;
        }
    harness_fail(__FILE__, __LINE__, "no way to call a row of collectives.h", k->row);
}

/* ---- worlds of ranks as threads --------------------------------------------------------- */

static cgloo_store *store;

typedef struct world_arg {
    void (*body)(cgloo_context *ctx, int rank, int size, void *arg);
    void *arg;
} world_arg;

static void world_rank(int rank, int size, void *p)
{
    world_arg *w = p;
    rank_env e = mesh_connect(store, rank, size, TIMEOUT_MS);
    w->body(e.ctx, rank, size, w->arg);
    mesh_close(e);
}

static void in_world(int size, void (*body)(cgloo_context *, int, int, void *), void *arg)
{
    world_arg w = {body, arg};
    CHECK_OK(cgloo_store_hash_create(&store));
    run_ranks(size, world_rank, &w);
    cgloo_store_destroy(store);
}

/* Every row with every algorithm it lists, each forced through opts. */
static void by_opts_body(cgloo_context *ctx, int rank, int size, void *arg)
{
    for (size_t r = 0; r < CGLOO_ARRAY_LEN(rows); r++) {
        const char *const *names = cgloo_algorithm_names(rows[r].name);
        for (size_t i = 0; names[i]; i++) {
            cgloo_coll_opts o = {.algorithm = names[i], .timeout_ms = TIMEOUT_MS};
            call k = {rows[r].name, ctx, rank, size, &o, CGLOO_OK};
            run_row(&k);
        }
    }
}

static void test_forced_by_opts(void)
{
    static const int sizes[] = {1, 2, 3, 4, 5, 7, 8};
    for (size_t s = 0; s < CGLOO_ARRAY_LEN(sizes); s++)
        in_world(sizes[s], by_opts_body, NULL);
}

/* Every row once, its algorithm forced by the environment. */
static void by_env_body(cgloo_context *ctx, int rank, int size, void *arg)
{
    cgloo_coll_opts o = {.timeout_ms = TIMEOUT_MS};
    for (size_t r = 0; r < CGLOO_ARRAY_LEN(rows); r++) {
        call k = {rows[r].name, ctx, rank, size, &o, CGLOO_OK};
        run_row(&k);
    }
}

/* set_env_round points every row's variable at algorithm `round` of its list (wrapping). Rows
 * sharing a variable share their list too. */
static void set_env_round(size_t round)
{
    for (size_t r = 0; r < CGLOO_ARRAY_LEN(rows); r++) {
        const char *const *names = cgloo_algorithm_names(rows[r].name);
        char var[96];
        const char *name = names[round % count_names(names)];
        CHECK(setenv(env_var(rows[r].name, var, sizeof var), name, 1) == 0);
    }
}

static void test_forced_by_env(void)
{
    /* The harness runs each test in its own child process: the variables die with it. */
    static const int sizes[] = {3, 4};
    size_t rounds = 0;
    for (size_t r = 0; r < CGLOO_ARRAY_LEN(rows); r++) {
        size_t n = count_names(cgloo_algorithm_names(rows[r].name));
        rounds = n > rounds ? n : rounds;
    }
    for (size_t round = 0; round < rounds; round++) {
        set_env_round(round);
        for (size_t s = 0; s < CGLOO_ARRAY_LEN(sizes); s++)
            in_world(sizes[s], by_env_body, NULL);
    }
}

/* One row, with an unknown name in its variable: ENOTSUP on every rank, naming the call. */
static void unknown_body(cgloo_context *ctx, int rank, int size, void *arg)
{
    cgloo_coll_opts o = {.timeout_ms = TIMEOUT_MS};
    call k = {arg, ctx, rank, size, &o, CGLOO_ENOTSUP};
    char detail[512], name[64];
    run_row(&k);
    cgloo_context_last_error(ctx, detail, sizeof detail);
    snprintf(name, sizeof name, "%s(-)", run_name(k.row));
    EXPECT(&k, strstr(detail, name) && strstr(detail, "no_such"));
}

/* Each row with only its own variable set, so that a call reading another one would run. */
static void test_unknown_in_env(void)
{
    char var[96];
    for (size_t r = 0; r < CGLOO_ARRAY_LEN(rows); r++) {
        for (size_t q = 0; q < CGLOO_ARRAY_LEN(rows); q++)
            CHECK(unsetenv(env_var(rows[q].name, var, sizeof var)) == 0);
        CHECK(setenv(env_var(rows[r].name, var, sizeof var), "no_such", 1) == 0);
        in_world(3, unknown_body, (void *)rows[r].name);
    }
}

static const test_case tests[] = {
    {"names", test_names, 10},
    {"find", test_find, 10},
    {"forced_by_opts", test_forced_by_opts, 120},
    {"forced_by_env", test_forced_by_env, 120},
    {"unknown_in_env", test_unknown_in_env, 30},
};

TEST_MAIN(tests)
